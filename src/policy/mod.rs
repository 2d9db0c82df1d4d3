//! Authorization with Cedar: schema, entities, decisions (SPEC §7).
