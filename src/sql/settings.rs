//! Which run-time settings (GUCs) a session may change on its own.
//!
//! Deny by default: a setting is `session` only if it is on the allow-list
//! below (formatting, planner costs, timeouts: nothing that widens what the
//! session may do). The settings that would undo a read-only grant or change
//! who the session is are `admin` with a reason that names them; so is every
//! setting we do not know, including custom ones such as `idgate.identity`,
//! which the gateway itself uses to stamp the person into the database.

use crate::policy::Action;

/// Settings that change identity or write permission.
const PROTECTED: &[(&str, &str)] = &[
    ("role", "changes the role the session acts as"),
    (
        "session_authorization",
        "changes the user the session acts as",
    ),
    (
        "default_transaction_read_only",
        "controls the read-only mode the gateway enforces",
    ),
    (
        "transaction_read_only",
        "controls the read-only mode the gateway enforces",
    ),
    (
        "session_replication_role",
        "disables triggers and foreign-key checks",
    ),
];

/// Settings any session may change.
const SESSION: &[&str] = &[
    "application_name",
    "search_path",
    "timezone",
    "datestyle",
    "intervalstyle",
    "extra_float_digits",
    "client_min_messages",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "transaction_timeout",
    "work_mem",
    "maintenance_work_mem",
    "hash_mem_multiplier",
    "temp_buffers",
    "random_page_cost",
    "seq_page_cost",
    "effective_cache_size",
    "effective_io_concurrency",
    "from_collapse_limit",
    "join_collapse_limit",
    "plan_cache_mode",
    "default_statistics_target",
    "bytea_output",
    "escape_string_warning",
    "xmlbinary",
    "xmloption",
    "default_text_search_config",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    // Turning row security off makes a query that RLS would filter fail
    // instead: it never shows more rows.
    "row_security",
    "default_transaction_isolation",
    "transaction_isolation",
    "default_transaction_deferrable",
    "transaction_deferrable",
    "synchronous_commit",
    "array_nulls",
    "quote_all_identifiers",
    "gin_fuzzy_search_limit",
    "max_parallel_workers_per_gather",
];

/// Families of planner settings any session may change.
const SESSION_PREFIXES: &[&str] = &["enable_", "jit", "cpu_", "geqo", "parallel_"];

/// Settings that change how statement text is read. The gateway parses
/// what the client sends with PostgreSQL's defaults (UTF-8, standard
/// conforming strings); a session that changed them could send text the
/// server reads differently from us (`'\'' ; DELETE …` is one string with
/// standard_conforming_strings on, a string and a DELETE with it off).
/// Allowed only with the value that keeps them as we read them.
const LEXICAL: &[(&str, &[&str])] = &[
    ("standard_conforming_strings", &["on", "true", "1"]),
    ("client_encoding", &["utf8", "utf-8", "unicode"]),
];

/// How changing `name` to `value` (`None`: reset or default) is classified,
/// and why if not `session`.
pub(crate) fn classify_setting(name: &str, value: Option<&str>) -> (Action, Option<String>) {
    let name = name.to_ascii_lowercase();
    if let Some((_, why)) = PROTECTED.iter().find(|(n, _)| *n == name) {
        return (Action::Admin, Some(format!("setting {name} {why}")));
    }
    if let Some((_, safe)) = LEXICAL.iter().find(|(n, _)| *n == name) {
        let value = value.map(|v| v.trim().to_ascii_lowercase());
        return match value {
            Some(v) if !safe.contains(&v.as_str()) => (
                Action::Admin,
                Some(format!(
                    "setting {name} to {v} would make the server read statements differently from the gateway"
                )),
            ),
            _ => (Action::Session, None),
        };
    }
    if SESSION.contains(&name.as_str()) || SESSION_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return (Action::Session, None);
    }
    (
        Action::Admin,
        Some(format!("setting {name} is not on the session allow-list")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_settings_are_session() {
        for name in [
            "application_name",
            "TimeZone",
            "enable_seqscan",
            "jit_above_cost",
        ] {
            assert_eq!(classify_setting(name, None).0, Action::Session, "{name}");
        }
    }

    #[test]
    fn read_only_and_identity_settings_are_admin() {
        for name in [
            "role",
            "session_authorization",
            "default_transaction_read_only",
        ] {
            assert_eq!(classify_setting(name, None).0, Action::Admin, "{name}");
        }
    }

    #[test]
    fn unknown_and_custom_settings_are_admin() {
        let (action, why) = classify_setting("idgate.identity", Some("x"));
        assert_eq!(action, Action::Admin);
        assert!(why.unwrap().contains("allow-list"));
    }

    #[test]
    fn lexical_settings_are_session_only_with_the_values_we_parse_with() {
        let on = classify_setting("standard_conforming_strings", Some("on"));
        assert_eq!(on.0, Action::Session);
        let off = classify_setting("standard_conforming_strings", Some("off"));
        assert_eq!(off.0, Action::Admin);
        assert_eq!(
            classify_setting("client_encoding", Some("UTF8")).0,
            Action::Session
        );
        assert_eq!(
            classify_setting("client_encoding", Some("SJIS")).0,
            Action::Admin
        );
    }
}
