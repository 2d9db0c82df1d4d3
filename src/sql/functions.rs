//! Built-in functions whose call does something worth naming: admin-level
//! effects (signalling backends, server files, replication), writes, and
//! session state. This list only sharpens the verdict and its reason: what
//! may run at all for a session without `write` is decided by the shipped
//! allow-list of side-effect-free built-ins (`builtins`), so a function
//! missing here is refused anyway.
//!
//! Core names match unqualified or qualified with `pg_catalog`; extension
//! names match in any schema, since extensions install wherever they are
//! told. Matching ignores case: a quoted `"NEXTVAL"` is a different
//! function in PostgreSQL, so flagging it too only errs on the strong side.

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
    ("ts_rewrite", HIDDEN_SQL),
    ("cursor_to_xml", HIDDEN_SQL),
    ("cursor_to_xmlschema", HIDDEN_SQL),
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

/// A function name as written, `[schema.]name` with an optional database
/// in front (`db.schema.name`, which PostgreSQL accepts for the current
/// database): `(schema, name)`. More parts is no function name at all.
pub(crate) fn split_name(parts: &[String]) -> Option<(Option<&str>, &str)> {
    match parts {
        [function] => Some((None, function)),
        [schema, function] | [_, schema, function] => Some((Some(schema), function)),
        _ => None,
    }
}

/// Whether a function so qualified is looked for in `pg_catalog`: written
/// unqualified (it is searched first unless the path says otherwise) or
/// qualified with it.
fn in_catalog(schema: Option<&str>) -> bool {
    schema.is_none_or(|s| s.eq_ignore_ascii_case("pg_catalog"))
}

/// The effect of calling `function` (in `schema`, if qualified), if it is
/// one we know changes something.
pub(crate) fn effect_of(schema: Option<&str>, function: &str) -> Option<Effect> {
    let function = function.to_ascii_lowercase();
    if in_catalog(schema) {
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

/// Whether this is `set_config`, which needs its arguments looked at.
pub(crate) fn is_set_config(schema: Option<&str>, function: &str) -> bool {
    in_catalog(schema) && function.eq_ignore_ascii_case(SET_CONFIG)
}

/// Whether this is a session-level advisory lock function (taking or
/// releasing): unlike the `_xact_` ones, its lock outlives the transaction.
pub(crate) fn takes_session_lock(schema: Option<&str>, function: &str) -> bool {
    let f = function.to_ascii_lowercase();
    in_catalog(schema)
        && (f.starts_with("pg_advisory_") || f.starts_with("pg_try_advisory_"))
        && !f.contains("_xact_")
}

/// Whether this advances, sets or reads a sequence named by its first
/// argument.
pub(crate) fn names_sequence(schema: Option<&str>, function: &str) -> bool {
    matches!(effect_of(schema, function), Some(e) if e == SEQUENCE)
        || (in_catalog(schema) && function.eq_ignore_ascii_case("currval"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    fn effect(parts: &[&str]) -> Option<Effect> {
        let parts = name(parts);
        let (schema, function) = split_name(&parts)?;
        effect_of(schema, function)
    }

    #[test]
    fn core_functions_match_unqualified_and_in_pg_catalog_only() {
        assert!(effect(&["nextval"]).is_some());
        assert!(effect(&["PG_CATALOG", "NextVal"]).is_some());
        assert!(effect(&["public", "nextval"]).is_none());
        assert!(effect(&["currval"]).is_none());
    }

    #[test]
    fn a_database_in_front_of_the_schema_changes_nothing() {
        let parts = name(&["db", "pg_catalog", "set_config"]);
        let (schema, function) = split_name(&parts).unwrap();
        assert!(is_set_config(schema, function));
        assert!(effect(&["db", "pg_catalog", "pg_terminate_backend"]).is_some());
        assert!(split_name(&name(&["a", "b", "c", "d"])).is_none());
    }

    #[test]
    fn extension_functions_match_in_any_schema() {
        let e = effect(&["ext", "dblink_exec"]).expect("dblink_exec");
        assert_eq!(e.action, Action::Admin);
    }

    #[test]
    fn advisory_locks_are_session_effects() {
        let e = effect(&["pg_advisory_xact_lock"]).expect("advisory");
        assert_eq!(e.action, Action::Session);
    }
}
