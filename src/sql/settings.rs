//! Which run-time settings (GUCs) a session may change on its own.
//!
//! Deny by default: a setting is `session` only if it is on the allow-list
//! below (formatting, planner costs, timeouts: nothing that widens what the
//! session may do). The settings that would undo a read-only grant or change
//! who the session is are `admin` with a reason that names them; so is every
//! setting we do not know, including custom ones such as `idgate.identity`
//! and `application_name`, which the gateway itself uses to stamp the
//! person into the database.

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
    (
        "application_name",
        "is how the gateway names the person in pg_stat_activity",
    ),
];

/// Settings any session may change.
const SESSION: &[&str] = &[
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

/// How a statement sets a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettingValue<'a> {
    /// A constant written in the statement.
    Literal(&'a str),
    /// `RESET`, `SET … TO DEFAULT`: back to the session's start value.
    Default,
    /// An expression or a parameter: unknown until it runs.
    Computed,
}

/// Settings that change how statement text is read. The gateway parses
/// what the client sends as PostgreSQL does with standard conforming
/// strings and an ASCII-safe encoding; a session that changed them could
/// send text the server reads differently from us (`'\'' ; DELETE …` is
/// one string with standard_conforming_strings on, a string and a DELETE
/// with it off). Allowed only to a literal value that keeps them as we
/// read them; a reset goes back to what the login was checked with.
const LEXICAL: &[&str] = &["standard_conforming_strings", "client_encoding"];

/// How changing `name` to `value` is classified, and why if not `session`.
pub(crate) fn classify_setting(name: &str, value: SettingValue<'_>) -> (Action, Option<String>) {
    let name = name.to_ascii_lowercase();
    if let Some((_, why)) = PROTECTED.iter().find(|(n, _)| *n == name) {
        return (Action::Admin, Some(format!("setting {name} {why}")));
    }
    if LEXICAL.contains(&name.as_str()) {
        let safe = match value {
            SettingValue::Default => true,
            SettingValue::Computed => false,
            SettingValue::Literal(v) if name == "client_encoding" => client_encoding_is_safe(v),
            SettingValue::Literal(v) => is_true_spelling(v),
        };
        return if safe {
            (Action::Session, None)
        } else {
            let value = match value {
                SettingValue::Literal(v) => format!("to {v}"),
                _ => "to a value that is not a literal".into(),
            };
            (
                Action::Admin,
                Some(format!(
                    "setting {name} {value} would make the server read statements differently from the gateway"
                )),
            )
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

/// Every spelling PostgreSQL's boolean parser reads as true.
fn is_true_spelling(v: &str) -> bool {
    ["on", "true", "tru", "tr", "t", "yes", "ye", "y", "1"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

/// Client encodings whose every multi-byte character is made of bytes
/// above 0x7F, so that a quote, backslash or semicolon in the bytes is one
/// wherever it appears: the encodings PostgreSQL accepts as a server
/// encoding, under the names and aliases it knows (compared as PostgreSQL
/// does: lower case, letters and digits only). The client-only encodings
/// (SJIS, BIG5, GBK, UHC, GB18030, JOHAB, SHIFT_JIS_2004) are not here: a
/// second byte of 0x5C is a backslash to us and part of a character to the
/// server.
const SAFE_ENCODINGS: &[&str] = &[
    "utf8",
    "unicode",
    "sqlascii",
    "eucjp",
    "euccn",
    "euckr",
    "euctw",
    "eucjis2004",
    "muleinternal",
    "latin1",
    "latin2",
    "latin3",
    "latin4",
    "latin5",
    "latin6",
    "latin7",
    "latin8",
    "latin9",
    "latin10",
    "iso88591",
    "iso88592",
    "iso88593",
    "iso88594",
    "iso88595",
    "iso88596",
    "iso88597",
    "iso88598",
    "iso88599",
    "iso885910",
    "iso885913",
    "iso885914",
    "iso885915",
    "iso885916",
    "win1250",
    "win1251",
    "win1252",
    "win1253",
    "win1254",
    "win1255",
    "win1256",
    "win1257",
    "win1258",
    "windows1250",
    "windows1251",
    "windows1252",
    "windows1253",
    "windows1254",
    "windows1255",
    "windows1256",
    "windows1257",
    "windows1258",
    "win866",
    "alt",
    "win874",
    "windows866",
    "windows874",
    "koi8",
    "koi8r",
    "koi8u",
    "tcvn",
    "tcvn5712",
    "abc",
    "vscii",
];

/// Whether the gateway reads text in client encoding `name` as the server
/// does.
pub fn client_encoding_is_safe(name: &str) -> bool {
    let clean: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SAFE_ENCODINGS.contains(&clean.as_str())
}

/// Whether the gateway reads text as the server does with
/// standard_conforming_strings at `value` (as reported by the server).
pub fn standard_conforming_strings_is_safe(value: &str) -> bool {
    is_true_spelling(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_settings_are_session() {
        for name in ["TimeZone", "enable_seqscan", "jit_above_cost"] {
            assert_eq!(
                classify_setting(name, SettingValue::Default).0,
                Action::Session,
                "{name}"
            );
        }
    }

    #[test]
    fn read_only_and_identity_settings_are_admin() {
        for name in [
            "role",
            "session_authorization",
            "default_transaction_read_only",
            "application_name",
        ] {
            assert_eq!(
                classify_setting(name, SettingValue::Default).0,
                Action::Admin,
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_and_custom_settings_are_admin() {
        let (action, why) = classify_setting("idgate.identity", SettingValue::Literal("x"));
        assert_eq!(action, Action::Admin);
        assert!(why.unwrap().contains("allow-list"));
    }

    #[test]
    fn lexical_settings_are_session_only_with_the_values_we_parse_with() {
        use SettingValue::{Computed, Default, Literal};
        let scs = "standard_conforming_strings";
        assert_eq!(classify_setting(scs, Literal("on")).0, Action::Session);
        assert_eq!(classify_setting(scs, Literal("off")).0, Action::Admin);
        assert_eq!(classify_setting(scs, Literal("of")).0, Action::Admin);
        assert_eq!(classify_setting(scs, Computed).0, Action::Admin);
        assert_eq!(classify_setting(scs, Default).0, Action::Session);
        let enc = "client_encoding";
        assert_eq!(classify_setting(enc, Literal("UTF-8")).0, Action::Session);
        assert_eq!(classify_setting(enc, Literal("latin1")).0, Action::Session);
        for bad in [
            "SJIS",
            "Shift_JIS_2004",
            "big5",
            "GBK",
            "uhc",
            "gb18030",
            "johab",
        ] {
            assert_eq!(
                classify_setting(enc, Literal(bad)).0,
                Action::Admin,
                "{bad}"
            );
        }
        assert_eq!(classify_setting(enc, Computed).0, Action::Admin);
    }
}
