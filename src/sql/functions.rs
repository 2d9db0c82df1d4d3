//! Built-in functions whose call changes something: the one list of them.
//!
//! A `SELECT` is only a read if nothing it calls writes. We cannot see into
//! user-defined functions (that needs the catalog), so this covers
//! PostgreSQL's own functions and the common extensions' (dblink, adminpack,
//! pg_stat_statements). Core names match unqualified or qualified with
//! `pg_catalog` (an unqualified call resolves to `pg_catalog` first unless
//! the search path says otherwise); extension names match in any schema,
//! since extensions install wherever they are told. Matching ignores case:
//! a quoted `"NEXTVAL"` is a different function in PostgreSQL, so flagging
//! it too only errs on the strong side.

use crate::policy::Action;

/// What calling a function amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    pub action: Action,
    pub why: &'static str,
}

const fn effect(action: Action, why: &'static str) -> Effect {
    Effect { action, why }
}

const SEQUENCE: Effect = effect(Action::Write, "advances or sets a sequence");
const XID: Effect = effect(
    Action::Write,
    "assigns a transaction id (a write in a read-only transaction)",
);
const LARGE_OBJECT_WRITE: Effect = effect(Action::Write, "modifies a large object");
const SERVER_FILES: Effect = effect(Action::Admin, "reads or writes server-side files");
const BACKENDS: Effect = effect(Action::Admin, "signals other backends");
const SERVER_CONTROL: Effect = effect(
    Action::Admin,
    "controls the server (config, WAL, backup, recovery)",
);
const REPLICATION: Effect = effect(Action::Admin, "manages replication slots or origins");
const STATISTICS: Effect = effect(Action::Admin, "resets or rewrites statistics");
const MAINTENANCE: Effect = effect(
    Action::Admin,
    "maintenance that modifies indexes or relations",
);
const REMOTE_SQL: Effect = effect(Action::Admin, "runs SQL on another connection (dblink)");
const ADVISORY_LOCK: Effect = effect(Action::Session, "takes or releases an advisory lock");
const NOTIFY: Effect = effect(Action::Session, "sends a notification");
const HIDDEN_SQL: Effect = effect(
    Action::Admin,
    "runs SQL given as text, whose tables the gateway cannot check",
);
const INTERNAL: Effect = effect(Action::Admin, "internal or superuser-only function");

/// Core functions (unqualified or `pg_catalog.`), exact names.
const CORE: &[(&str, Effect)] = &[
    // Sequences. currval/lastval only read.
    ("nextval", SEQUENCE),
    ("setval", SEQUENCE),
    // Transaction ids: assigning one is what a read-only transaction refuses.
    ("txid_current", XID),
    ("pg_current_xact_id", XID),
    // Large objects: server-side import/export touch the server's files.
    ("lo_import", SERVER_FILES),
    ("lo_export", SERVER_FILES),
    ("lo_create", LARGE_OBJECT_WRITE),
    ("lo_creat", LARGE_OBJECT_WRITE),
    ("lo_unlink", LARGE_OBJECT_WRITE),
    ("lo_put", LARGE_OBJECT_WRITE),
    ("lo_from_bytea", LARGE_OBJECT_WRITE),
    ("lowrite", LARGE_OBJECT_WRITE),
    ("lo_truncate", LARGE_OBJECT_WRITE),
    ("lo_truncate64", LARGE_OBJECT_WRITE),
    // Files on the server.
    ("pg_read_file", SERVER_FILES),
    ("pg_read_binary_file", SERVER_FILES),
    ("pg_stat_file", SERVER_FILES),
    ("pg_current_logfile", SERVER_FILES),
    // Other backends.
    ("pg_terminate_backend", BACKENDS),
    ("pg_cancel_backend", BACKENDS),
    ("pg_log_backend_memory_contexts", BACKENDS),
    // The server itself.
    ("pg_reload_conf", SERVER_CONTROL),
    ("pg_rotate_logfile", SERVER_CONTROL),
    ("pg_switch_wal", SERVER_CONTROL),
    ("pg_switch_xlog", SERVER_CONTROL),
    ("pg_promote", SERVER_CONTROL),
    ("pg_create_restore_point", SERVER_CONTROL),
    ("pg_backup_start", SERVER_CONTROL),
    ("pg_backup_stop", SERVER_CONTROL),
    ("pg_start_backup", SERVER_CONTROL),
    ("pg_stop_backup", SERVER_CONTROL),
    ("pg_wal_replay_pause", SERVER_CONTROL),
    ("pg_wal_replay_resume", SERVER_CONTROL),
    ("pg_xlog_replay_pause", SERVER_CONTROL),
    ("pg_xlog_replay_resume", SERVER_CONTROL),
    ("pg_log_standby_snapshot", SERVER_CONTROL),
    ("pg_logical_emit_message", SERVER_CONTROL),
    ("pg_import_system_collations", SERVER_CONTROL),
    ("pg_nextoid", INTERNAL),
    ("pg_extension_config_dump", INTERNAL),
    // Replication.
    ("pg_create_physical_replication_slot", REPLICATION),
    ("pg_create_logical_replication_slot", REPLICATION),
    ("pg_drop_replication_slot", REPLICATION),
    ("pg_copy_physical_replication_slot", REPLICATION),
    ("pg_copy_logical_replication_slot", REPLICATION),
    ("pg_replication_slot_advance", REPLICATION),
    ("pg_logical_slot_get_changes", REPLICATION),
    ("pg_logical_slot_get_binary_changes", REPLICATION),
    ("pg_logical_slot_peek_changes", REPLICATION),
    ("pg_logical_slot_peek_binary_changes", REPLICATION),
    ("pg_sync_replication_slots", REPLICATION),
    // Statistics.
    ("pg_restore_relation_stats", STATISTICS),
    ("pg_clear_relation_stats", STATISTICS),
    ("pg_restore_attribute_stats", STATISTICS),
    ("pg_clear_attribute_stats", STATISTICS),
    // Index maintenance through functions.
    ("brin_summarize_new_values", MAINTENANCE),
    ("brin_summarize_range", MAINTENANCE),
    ("brin_desummarize_range", MAINTENANCE),
    ("gin_clean_pending_list", MAINTENANCE),
    // SQL in a string: read-only (they run it through read-only SPI), but
    // the tables it reads are invisible to schema and table policies, and
    // database_to_xml reads everything.
    ("query_to_xml", HIDDEN_SQL),
    ("query_to_xmlschema", HIDDEN_SQL),
    ("query_to_xml_and_xmlschema", HIDDEN_SQL),
    ("table_to_xml", HIDDEN_SQL),
    ("table_to_xmlschema", HIDDEN_SQL),
    ("table_to_xml_and_xmlschema", HIDDEN_SQL),
    ("schema_to_xml", HIDDEN_SQL),
    ("schema_to_xmlschema", HIDDEN_SQL),
    ("schema_to_xml_and_xmlschema", HIDDEN_SQL),
    ("database_to_xml", HIDDEN_SQL),
    ("database_to_xmlschema", HIDDEN_SQL),
    ("database_to_xml_and_xmlschema", HIDDEN_SQL),
    ("ts_stat", HIDDEN_SQL),
    // Notifications and advisory locks: session-level effects.
    ("pg_notify", NOTIFY),
];

/// Core function families (unqualified or `pg_catalog.`), by prefix.
const CORE_PREFIXES: &[(&str, Effect)] = &[
    ("pg_advisory_", ADVISORY_LOCK),
    ("pg_try_advisory_", ADVISORY_LOCK),
    ("pg_ls_", SERVER_FILES),
    ("pg_stat_reset", STATISTICS),
    ("pg_replication_origin_", REPLICATION),
    ("binary_upgrade_", INTERNAL),
];

/// Extension functions, by prefix, in any schema.
const EXTENSION_PREFIXES: &[(&str, Effect)] = &[
    ("dblink", REMOTE_SQL),
    // tablefunc runs the query text it is given.
    ("crosstab", HIDDEN_SQL),
    ("connectby", HIDDEN_SQL),
    // adminpack
    ("pg_file_", SERVER_FILES),
    ("pg_logdir_ls", SERVER_FILES),
    // pg_stat_statements, pg_visibility
    ("pg_stat_statements_reset", STATISTICS),
    ("pg_truncate_visibility_map", MAINTENANCE),
];

/// `set_config(name, value, is_local)`: classified by the setting it sets,
/// see `settings`.
pub(crate) const SET_CONFIG: &str = "set_config";

/// The effect of calling the function named `name` (parts as written), if
/// it is one we know changes something.
pub(crate) fn effect_of(name: &[String]) -> Option<Effect> {
    let (schema, function) = match name {
        [function] => (None, function),
        [schema, function] => (Some(schema), function),
        [_, schema, function] => (Some(schema), function),
        _ => return None,
    };
    let function = function.to_ascii_lowercase();
    let core = schema.is_none_or(|s| s.eq_ignore_ascii_case("pg_catalog"));
    if core {
        if let Some((_, e)) = CORE.iter().find(|(n, _)| *n == function) {
            return Some(*e);
        }
        if let Some((_, e)) = CORE_PREFIXES.iter().find(|(p, _)| function.starts_with(p)) {
            return Some(*e);
        }
    }
    EXTENSION_PREFIXES
        .iter()
        .find(|(p, _)| function.starts_with(p))
        .map(|(_, e)| *e)
}

/// Whether `name` is `set_config`, which needs its arguments looked at.
pub(crate) fn is_set_config(name: &[String]) -> bool {
    match name {
        [f] => f.eq_ignore_ascii_case(SET_CONFIG),
        [s, f] => s.eq_ignore_ascii_case("pg_catalog") && f.eq_ignore_ascii_case(SET_CONFIG),
        _ => false,
    }
}

/// Whether `name` is a session-level advisory lock function (taking or
/// releasing): unlike the `_xact_` ones, its lock outlives the transaction.
pub(crate) fn takes_session_lock(name: &[String]) -> bool {
    let core = match name {
        [_] => true,
        [s, _] => s.eq_ignore_ascii_case("pg_catalog"),
        _ => false,
    };
    let f = name
        .last()
        .map(|f| f.to_ascii_lowercase())
        .unwrap_or_default();
    core && (f.starts_with("pg_advisory_") || f.starts_with("pg_try_advisory_"))
        && !f.contains("_xact_")
}

/// Whether `name` advances or sets a sequence named by its first argument.
pub(crate) fn names_sequence(name: &[String]) -> bool {
    matches!(effect_of(name), Some(e) if e == SEQUENCE)
        || name
            .last()
            .is_some_and(|f| f.eq_ignore_ascii_case("currval"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn core_functions_match_unqualified_and_in_pg_catalog_only() {
        assert!(effect_of(&name(&["nextval"])).is_some());
        assert!(effect_of(&name(&["PG_CATALOG", "NextVal"])).is_some());
        assert!(effect_of(&name(&["public", "nextval"])).is_none());
        assert!(effect_of(&name(&["currval"])).is_none());
    }

    #[test]
    fn extension_functions_match_in_any_schema() {
        let e = effect_of(&name(&["ext", "dblink_exec"])).expect("dblink_exec");
        assert_eq!(e.action, Action::Admin);
    }

    #[test]
    fn advisory_locks_are_session_effects() {
        let e = effect_of(&name(&["pg_advisory_xact_lock"])).expect("advisory");
        assert_eq!(e.action, Action::Session);
    }
}
