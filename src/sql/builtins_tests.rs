//! Unit tests of the generated `builtins` lists (kept apart from the
//! generated file so that regenerating it leaves them alone).

use super::{FUNCTIONS, OPERATORS, function, operator};

fn assert_sorted_unique(what: &str, list: &[(&str, bool)]) {
    assert!(!list.is_empty(), "{what} is empty");
    for pair in list.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "{what} is not sorted and unique at {:?} / {:?}: rerun scripts/gen-builtins",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn lists_are_sorted_and_unique() {
    assert_sorted_unique("FUNCTIONS", FUNCTIONS);
    assert_sorted_unique("OPERATORS", OPERATORS);
}

#[test]
fn every_entry_is_found_by_lookup() {
    for (name, safe) in FUNCTIONS {
        assert_eq!(function(name), Some(*safe), "{name}");
    }
    for (symbol, safe) in OPERATORS {
        assert_eq!(operator(symbol), Some(*safe), "{symbol}");
    }
}

#[test]
fn everyday_functions_are_safe() {
    for name in [
        "lower",
        "count",
        "now",
        "abs",
        "to_char",
        "jsonb_path_query",
        "random",
        "pg_sleep",
        "current_setting",
        "currval",
        "pg_relation_size",
    ] {
        assert_eq!(function(name), Some(true), "{name} should be safe");
    }
}

#[test]
fn side_effect_functions_are_not_safe() {
    for name in [
        "ts_rewrite",
        "ts_stat",
        "query_to_xml",
        "table_to_xml",
        "database_to_xml",
        "cursor_to_xml",
        "set_config",
        "setseed",
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "lo_unlink",
        "lo_create",
        "lo_get",
        "pg_advisory_lock",
        "pg_try_advisory_lock",
        "pg_notify",
        "txid_current",
        "pg_current_xact_id",
        "pg_read_file",
        "pg_ls_dir",
        "pg_reload_conf",
        "dblink",
    ] {
        assert_ne!(function(name), Some(true), "{name} must not be safe");
    }
    // Extension functions are not built-ins at all.
    assert_eq!(function("dblink"), None);
}

#[test]
fn lookups_are_exact() {
    assert_eq!(function("LOWER"), None);
    assert_eq!(function(""), None);
    assert_eq!(function("no_such_function"), None);
    assert_eq!(operator("=="), None);
}

#[test]
fn everyday_operators_are_safe() {
    for symbol in ["=", "+", "||", "<>", "~~", "@>", "->>"] {
        assert_eq!(operator(symbol), Some(true), "{symbol} should be safe");
    }
}
