//! Statement classification, pure (no database): every write trick a
//! read-only grant must withstand, ordinary reads that must stay reads, and
//! table resolution.

use idgate::policy::Action;
use idgate::sql::{Catalogue, Context, MAX_SQL_BYTES, PathChange, Statement, default_search_path};

use Action::{Admin, Ddl, Read, Session, Transaction, Unknown, Write};

/// Offline: the default path, no user code in the catalogue, no `$user`
/// schema.
fn classify_postgres(sql: &str, path: &[String]) -> Vec<Statement> {
    let catalogue = Catalogue::empty();
    let paths = [path.to_vec()];
    let context = Context {
        search_paths: &paths,
        user: "",
        catalogue: &catalogue,
    };
    idgate::sql::classify_postgres(sql, &context).statements
}

fn classify(sql: &str) -> Vec<Statement> {
    classify_postgres(sql, &default_search_path())
}

/// The strongest action of a (multi-)statement string: what a read-only
/// session must be refused for.
fn strongest(statements: &[Statement]) -> Option<&Statement> {
    let rank = |a: Action| match a {
        Read => 0,
        Transaction | Session => 1,
        Write => 2,
        Ddl => 3,
        Admin => 4,
        _ => 5,
    };
    statements.iter().max_by_key(|s| rank(s.action))
}

/// Runs a table of `(sql, action, kind)`: the strongest statement of `sql`
/// must have that action and kind. Reports every mismatch at once.
fn check_table(rows: &[(&str, Action, &str)]) {
    let mut failures = Vec::new();
    for (sql, action, kind) in rows {
        let statements = classify(sql);
        match strongest(&statements) {
            Some(s) if s.action == *action && s.kind == *kind => {}
            other => failures.push(format!(
                "{sql:?}\n    expected {action} {kind}, got {:?}",
                other.map(|s| (s.action, s.kind.as_str(), s.reason.as_deref()))
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows misclassified:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[rustfmt::skip]
const WRITE_TRICKS: &[(&str, Action, &str)] = &[
    // Plain DML.
    ("INSERT INTO t VALUES (1)", Write, "insert"),
    ("UPDATE t SET a = 1", Write, "update"),
    ("DELETE FROM t", Write, "delete"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", Write, "merge"),
    ("TRUNCATE t", Write, "truncate"),
    ("INSERT INTO t SELECT * FROM s ON CONFLICT DO NOTHING", Write, "insert"),
    // Writable CTEs, nested and hidden behind reads.
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", Write, "select"),
    ("WITH a AS (SELECT 1), d AS (UPDATE t SET a = 1 RETURNING 1) SELECT * FROM a", Write, "select"),
    ("WITH x AS (WITH y AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM y) SELECT * FROM x", Write, "select"),
    ("SELECT * FROM (WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d) s", Write, "select"),
    // SELECT INTO and CREATE TABLE AS create a table.
    ("SELECT * INTO new_t FROM t", Ddl, "select_into"),
    ("CREATE TABLE new_t AS SELECT * FROM t", Ddl, "create_table_as"),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1", Ddl, "create_materialized_view"),
    // EXPLAIN ANALYZE runs the statement.
    ("EXPLAIN ANALYZE DELETE FROM t", Write, "delete"),
    ("EXPLAIN (ANALYZE) UPDATE t SET a = 1", Write, "update"),
    ("EXPLAIN (ANALYZE true, BUFFERS) INSERT INTO t VALUES (1)", Write, "insert"),
    ("EXPLAIN (ANALYZE on) WITH d AS (DELETE FROM t RETURNING 1) SELECT 1", Write, "select"),
    ("EXPLAIN ANALYZE SELECT nextval('s')", Write, "select"),
    // Code.
    ("DO $$ BEGIN DELETE FROM t; END $$", Write, "do"),
    ("DO LANGUAGE plpgsql $body$ BEGIN PERFORM 1; END $body$", Write, "do"),
    ("CALL do_things(1)", Write, "call"),
    // COPY.
    ("COPY t FROM STDIN", Write, "copy_from"),
    ("COPY t FROM PROGRAM 'curl evil'", Admin, "copy_from_program"),
    ("COPY t TO PROGRAM 'rm -rf /'", Admin, "copy_to_program"),
    ("COPY t TO '/tmp/x'", Admin, "copy_to_file"),
    ("COPY t FROM '/etc/passwd'", Admin, "copy_from_file"),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", Write, "copy_to"),
    // Prepared statements: the PREPARE carries its statement's action.
    ("PREPARE p AS DELETE FROM t", Write, "prepare"),
    ("PREPARE p(int) AS INSERT INTO t VALUES ($1)", Write, "prepare"),
    ("EXECUTE p", Unknown, "execute"),
    ("EXECUTE p(1)", Unknown, "execute"),
    ("EXPLAIN ANALYZE EXECUTE p", Unknown, "execute"),
    // DDL.
    ("CREATE TABLE t2 (a int)", Ddl, "create_table"),
    ("ALTER TABLE t ADD COLUMN b int", Ddl, "alter_table"),
    ("DROP TABLE t", Ddl, "drop_table"),
    ("DROP SCHEMA s CASCADE", Ddl, "drop_schema"),
    ("CREATE INDEX ON t (a)", Ddl, "create_index"),
    ("CREATE VIEW v AS SELECT * FROM t", Ddl, "create_view"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", Ddl, "create_function"),
    ("CREATE EXTENSION pgcrypto", Ddl, "create_extension"),
    ("COMMENT ON TABLE t IS 'x'", Ddl, "comment"),
    ("CREATE SCHEMA s", Ddl, "create_schema"),
    ("ALTER SEQUENCE s RESTART", Ddl, "alter_seq"),
    // Locks.
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", Write, "lock"),
    ("SELECT * FROM t FOR UPDATE", Write, "select"),
    ("SELECT * FROM t FOR SHARE", Write, "select"),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", Write, "select"),
    ("SELECT * FROM (SELECT * FROM t FOR KEY SHARE) s", Write, "select"),
    // Sequences and transaction ids.
    ("SELECT nextval('s')", Write, "select"),
    ("SELECT setval('s', 1)", Write, "select"),
    ("SELECT pg_catalog.nextval('s'::regclass)", Write, "select"),
    ("SELECT \"nextval\"('s')", Write, "select"),
    ("SELECT NEXTVAL('s')", Write, "select"),
    ("SELECT * FROM t WHERE id = nextval('s')", Write, "select"),
    ("SELECT a FROM t ORDER BY a LIMIT (SELECT nextval('s'))", Write, "select"),
    ("INSERT INTO t VALUES (1) RETURNING pg_terminate_backend(1)", Admin, "insert"),
    ("SELECT txid_current()", Write, "select"),
    ("SELECT pg_current_xact_id()", Write, "select"),
    ("SELECT lo_unlink(1234)", Write, "select"),
    ("SELECT lo_import('/etc/passwd')", Admin, "select"),
    // Admin functions anywhere.
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", Admin, "select"),
    ("SELECT pg_cancel_backend(1)", Admin, "select"),
    ("SELECT pg_reload_conf()", Admin, "select"),
    ("SELECT pg_read_file('/etc/passwd')", Admin, "select"),
    ("SELECT * FROM pg_ls_dir('.')", Admin, "select"),
    ("SELECT public.dblink_exec('host=x', 'DELETE FROM t')", Admin, "select"),
    ("SELECT CASE WHEN true THEN pg_switch_wal() END", Admin, "select"),
    ("VALUES (pg_promote())", Admin, "select"),
    // SQL hidden in a string reads tables no policy sees.
    ("SELECT query_to_xml('SELECT * FROM hr.salaries', true, false, '')", Admin, "select"),
    ("SELECT database_to_xml(true, false, '')", Admin, "select"),
    ("SELECT * FROM ext.crosstab('SELECT * FROM hr.salaries')", Admin, "select"),
    // set_config of read-only or role settings.
    ("SELECT set_config('default_transaction_read_only', 'off', false)", Admin, "select"),
    ("SELECT set_config('transaction_read_only', 'off', true)", Admin, "select"),
    ("SELECT pg_catalog.set_config('role', 'admin', false)", Admin, "select"),
    ("SELECT set_config('session_authorization', 'postgres', false)", Admin, "select"),
    ("SELECT set_config(name, 'off', false) FROM settings", Admin, "select"),
    ("SELECT set_config(setting_name => 'role', new_value => 'x', is_local => false)", Admin, "select"),
    ("SELECT set_config('search_path', 'hr' || '', false)", Admin, "select"),
    // SET / RESET that lift read-only mode or change identity.
    ("SET default_transaction_read_only = off", Admin, "set"),
    ("SET SESSION default_transaction_read_only TO false", Admin, "set"),
    ("SET transaction_read_only = off", Admin, "set"),
    ("RESET default_transaction_read_only", Admin, "reset"),
    ("RESET transaction_read_only", Admin, "reset"),
    ("SET ROLE admin", Admin, "set_role"),
    ("SET LOCAL ROLE admin", Admin, "set_role"),
    ("RESET ROLE", Admin, "reset_role"),
    ("SET SESSION AUTHORIZATION postgres", Admin, "set_session_authorization"),
    ("RESET SESSION AUTHORIZATION", Admin, "reset_session_authorization"),
    ("SET session_replication_role = replica", Admin, "set"),
    ("SET idgate.identity = 'someone-else'", Admin, "set"),
    ("SET standard_conforming_strings = off", Admin, "set"),
    ("SET client_encoding = 'SJIS'", Admin, "set"),
    ("RESET ALL", Admin, "reset_all"),
    ("DISCARD ALL", Admin, "discard_all"),
    ("SET TRANSACTION READ WRITE", Admin, "set_transaction_read_write"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", Admin, "set_transaction_read_write"),
    ("BEGIN READ WRITE", Admin, "begin_read_write"),
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", Admin, "begin_read_write"),
    ("ALTER SYSTEM SET default_transaction_read_only = off", Admin, "alter_system"),
    // Administration and maintenance.
    ("GRANT SELECT ON t TO PUBLIC", Admin, "grant"),
    ("REVOKE ALL ON t FROM bob", Admin, "revoke"),
    ("GRANT admin TO bob", Admin, "grant_role"),
    ("CREATE ROLE x LOGIN SUPERUSER", Admin, "create_role"),
    ("ALTER USER bob WITH PASSWORD 'x'", Admin, "alter_role"),
    ("VACUUM t", Admin, "vacuum"),
    ("ANALYZE t", Admin, "analyze"),
    ("CLUSTER t USING t_pkey", Admin, "cluster"),
    ("REINDEX TABLE t", Admin, "reindex"),
    ("CHECKPOINT", Admin, "checkpoint"),
    ("LOAD 'auto_explain'", Admin, "load"),
    ("PREPARE TRANSACTION 'x'", Admin, "prepare_transaction"),
    ("COMMIT PREPARED 'x'", Admin, "commit_prepared"),
    ("REFRESH MATERIALIZED VIEW mv", Write, "refresh_materialized_view"),
    // Hidden by comments and quoting: the parser sees through.
    ("SELECT 1; /* harmless */ DELETE FROM t", Write, "delete"),
    ("SELECT 1 -- ; \n; DELETE FROM t", Write, "delete"),
    ("/* SELECT */ DELETE /* FROM nothing */ FROM t", Write, "delete"),
    ("SELECT $$ x $$; DELETE FROM t", Write, "delete"),
    ("SELECT $tag$ ; $$ ; $tag$; UPDATE t SET a = 1", Write, "update"),
    ("SELECT E'\\''; DELETE FROM t", Write, "delete"),
    ("SELECT 1; SELECT 2; SELECT 3; INSERT INTO t VALUES (1)", Write, "insert"),
    ("SHOW search_path; BEGIN; SELECT 1; TRUNCATE t; COMMIT", Write, "truncate"),
];

/// Code the gateway cannot see into needs `write`; a session without it
/// may run it only where a policy permits `unknown`.
#[rustfmt::skip]
const USER_CODE: &[(&str, Action, &str)] = &[
    ("SELECT public.nextval('s')", Write, "select"),
    ("SELECT my_function(1)", Write, "select"),
    ("SELECT db.app.my_function(1)", Write, "select"),
    ("SELECT pg_advisory_lock(1)", Write, "select"),
    ("SELECT (42).pg_cancel_backend", Admin, "select"),
    ("SELECT (16516::oid).lo_unlink", Write, "select"),
    ("SELECT t.pg_terminate_backend FROM (SELECT 1) t(x)", Admin, "select"),
    ("SELECT ts_rewrite('a'::tsquery, 'SELECT 1')", Admin, "select"),
    ("SELECT 1 OPERATOR(app.###) 2", Write, "select"),
    ("SELECT \"lower\"('X')", Read, "select"),
    ("SELECT \"LOWER\"('X')", Write, "select"),
    ("SELECT sec_db.pg_catalog.set_config('default_transaction_read_only', 'off', false)", Admin, "select"),
    ("SET application_name = 'psql'", Admin, "set"),
    ("SELECT set_config('application_name', 'x', false)", Admin, "select"),
    ("SELECT set_config('standard_conforming_strings', 'of' || 'f', false)", Admin, "select"),
    ("SELECT set_config('client_encoding', $1, false)", Admin, "select"),
    ("SET client_encoding = 'SJIS'", Admin, "set"),
    ("SELECT a.b.c.d.e()", Unknown, "select"),
];

#[test]
fn user_code_needs_write_and_named_effects_keep_their_action() {
    check_table(USER_CODE);
}

#[test]
fn a_number_that_decides_the_verdict_is_reported() {
    let numbers = |sql: &str| {
        let catalogue = Catalogue::empty();
        let paths = [default_search_path()];
        let context = Context {
            search_paths: &paths,
            user: "",
            catalogue: &catalogue,
        };
        idgate::sql::classify_postgres(sql, &context).numbers_matter
    };
    assert!(numbers(
        "EXPLAIN (ANALYZE 0) SELECT pg_terminate_backend(1)"
    ));
    assert!(numbers("BEGIN TRANSACTION READ ONLY"));
    assert!(!numbers("SELECT * FROM t WHERE id = 41231 LIMIT 10"));
}

#[rustfmt::skip]
const ORDINARY_READS: &[(&str, Action, &str)] = &[
    ("SELECT 1", Read, "select"),
    ("SELECT * FROM t WHERE a = 1", Read, "select"),
    ("VALUES (1), (2)", Read, "select"),
    ("TABLE t", Read, "select"),
    ("WITH a AS (SELECT * FROM t) SELECT * FROM a", Read, "select"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", Read, "select"),
    ("SELECT * FROM t JOIN u USING (id) WHERE EXISTS (SELECT 1 FROM v)", Read, "select"),
    ("SELECT count(*), max(a), now(), currval('s'), lower('X') FROM t", Read, "select"),
    ("EXPLAIN SELECT * FROM t", Read, "explain"),
    ("EXPLAIN DELETE FROM t", Read, "explain"),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", Read, "explain"),
    ("EXPLAIN (COSTS off, VERBOSE) UPDATE t SET a = 1", Read, "explain"),
    ("EXPLAIN ANALYZE SELECT * FROM t", Read, "select"),
    ("SHOW search_path", Read, "show"),
    ("SHOW ALL", Read, "show"),
    ("SET search_path TO app, public", Session, "set"),
    ("SET TIME ZONE 'UTC'", Session, "set"),
    ("SET statement_timeout = '5s'", Session, "set"),
    ("SET LOCAL work_mem = '64MB'", Session, "set"),
    ("SET enable_seqscan = off", Session, "set"),
    ("SET client_encoding = 'UTF8'", Session, "set"),
    ("SET NAMES 'utf8'", Session, "set"),
    ("RESET statement_timeout", Session, "reset"),
    ("SELECT current_setting('search_path')", Read, "select"),
    ("BEGIN", Transaction, "begin"),
    ("BEGIN READ ONLY", Transaction, "begin"),
    ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", Transaction, "begin"),
    ("COMMIT", Transaction, "commit"),
    ("ROLLBACK", Transaction, "rollback"),
    ("SAVEPOINT a", Transaction, "savepoint"),
    ("RELEASE SAVEPOINT a", Transaction, "release_savepoint"),
    ("ROLLBACK TO SAVEPOINT a", Transaction, "rollback_to_savepoint"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Transaction, "set_transaction"),
    ("SET TRANSACTION READ ONLY", Transaction, "set_transaction"),
    ("DECLARE c CURSOR FOR SELECT * FROM t", Read, "declare_cursor"),
    ("FETCH 10 FROM c", Read, "fetch"),
    ("MOVE NEXT IN c", Read, "move"),
    ("CLOSE c", Read, "close"),
    ("LISTEN chan", Session, "listen"),
    ("UNLISTEN *", Session, "unlisten"),
    ("NOTIFY chan, 'x'", Session, "notify"),
    ("DEALLOCATE p", Session, "deallocate"),
    ("DEALLOCATE ALL", Session, "deallocate"),
    ("DISCARD PLANS", Session, "discard"),
    ("COPY t TO STDOUT", Read, "copy_to"),
    ("COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", Read, "copy_to"),
    ("PREPARE q AS SELECT * FROM t WHERE id = $1", Read, "prepare"),
    // Text that looks like SQL is not SQL.
    ("SELECT 'DELETE FROM t'", Read, "select"),
    ("SELECT 'x; DROP TABLE t; --'", Read, "select"),
    ("SELECT \"update\", \"DELETE\" FROM t", Read, "select"),
    ("SELECT $$ DELETE FROM t $$", Read, "select"),
    ("SELECT $fn$ INSERT INTO t VALUES (1) $fn$ AS body", Read, "select"),
    ("SELECT E'\\' ; DELETE FROM t; --'", Read, "select"),
    ("SELECT 1 /* ; DELETE FROM t; */", Read, "select"),
    ("SELECT 1 -- ; DELETE FROM t", Read, "select"),
    ("SELECT 'nextval(''s'')'", Read, "select"),
    ("SELECT * FROM \"for update\"", Read, "select"),
    ("SELECT * FROM t AS \"INSERT\" WHERE \"INSERT\".a = 'UPDATE t SET a = 1'", Read, "select"),
    ("SELECT to_json(t) FROM t", Read, "select"),
];

#[test]
fn write_tricks_are_not_reads() {
    check_table(WRITE_TRICKS);
}

#[test]
fn ordinary_reads_are_not_refused() {
    check_table(ORDINARY_READS);
}

#[test]
fn the_tables_hold_at_least_eighty_rows() {
    assert!(WRITE_TRICKS.len() + ORDINARY_READS.len() >= 80);
}

#[test]
fn each_statement_of_a_multi_statement_string_is_classified() {
    let s = classify("SELECT 1; DELETE FROM t; SET ROLE x; COMMIT");
    let actions: Vec<Action> = s.iter().map(|s| s.action).collect();
    assert_eq!(actions, vec![Read, Write, Admin, Transaction]);
}

#[test]
fn empty_and_comment_only_strings_have_no_statements() {
    assert!(classify("").is_empty());
    assert!(classify("   ").is_empty());
    assert!(classify("-- nothing\n/* at all */").is_empty());
    assert!(classify(";;").is_empty());
}

#[test]
fn unparseable_text_is_one_unknown_statement_with_the_parser_message() {
    for sql in [
        "SELEC 1",
        "SELECT 1; DELET FROM t",
        "SELECT 'unterminated",
        "\0",
    ] {
        let s = classify(sql);
        assert_eq!(s.len(), 1, "{sql:?}");
        assert_eq!(s[0].action, Unknown, "{sql:?}");
        assert_eq!(s[0].kind, "unparsed", "{sql:?}");
        assert!(
            s[0].reason.as_deref().is_some_and(|r| !r.is_empty()),
            "{sql:?}"
        );
    }
}

#[test]
fn oversized_text_is_unknown_without_parsing() {
    let sql = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
    let s = classify(&sql);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].action, s[0].kind.as_str()), (Unknown, "too_large"));
}

#[test]
fn deeply_nested_statements_do_not_crash() {
    // Parse trees deeper than the decoder allows come back unparsed;
    // shallower ones classify. Either way: no panic, no stack overflow.
    for depth in [10, 50, 200, 2000] {
        let sql = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        let s = classify(&sql);
        assert_eq!(s.len(), 1, "depth {depth}");
        assert!(matches!(s[0].action, Read | Unknown), "depth {depth}");
        let sql = format!(
            "SELECT * FROM {}t{}",
            "(SELECT * FROM ".repeat(depth),
            ") s".repeat(depth)
        );
        let s = classify(&sql);
        assert!(matches!(s[0].action, Read | Unknown), "depth {depth}");
    }
}

#[test]
fn trees_deeper_than_the_decoder_allows_are_unknown_with_a_short_reason() {
    // A known limit, failing closed: pg_query's protobuf decoding stops at
    // 100 nested messages, so about 50 chained operators are refused.
    let sql = format!("SELECT 'a'{}", " || 'b'".repeat(60));
    let s = classify(&sql);
    assert_eq!((s[0].action, s[0].kind.as_str()), (Unknown, "unparsed"));
    assert!(s[0].reason.as_deref().unwrap().contains("nests too deeply"));
    // Long flat lists are fine.
    let sql = format!("SELECT * FROM t WHERE a = 1{}", " OR a = 1".repeat(1000));
    assert_eq!(classify(&sql)[0].action, Read);
}

#[test]
fn a_write_reason_says_why() {
    let s = classify("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d");
    assert!(s[0].reason.as_deref().unwrap().contains("DELETE"));
    let s = classify("SELECT nextval('s')");
    assert!(s[0].reason.as_deref().unwrap().contains("nextval"));
    let s = classify("SET work_mem_typo = 1");
    assert!(
        s[0].reason
            .as_deref()
            .unwrap()
            .contains("not on the session allow-list")
    );
}

#[test]
fn prepare_exposes_its_name_and_inner_classification_and_execute_its_name() {
    let s = &classify("PREPARE del(int) AS DELETE FROM app.t WHERE id = $1")[0];
    let (name, inner) = s.prepare.as_ref().expect("prepare");
    assert_eq!(name, "del");
    assert_eq!((inner.action, inner.kind.as_str()), (Write, "delete"));
    assert_eq!(inner.tables, vec!["app.t"]);
    assert_eq!(s.tables, vec!["app.t"]);
    let e = &classify("EXECUTE del(1)")[0];
    assert_eq!(e.execute.as_deref(), Some("del"));
}

fn tables_with(sql: &str, search_path: &[&str]) -> Vec<String> {
    let path: Vec<String> = search_path.iter().map(|s| s.to_string()).collect();
    let statements = classify_postgres(sql, &path);
    assert_eq!(statements.len(), 1, "{sql}");
    statements[0].tables.clone()
}

fn tables(sql: &str) -> Vec<String> {
    tables_with(sql, &["$user", "public"])
}

#[test]
fn tables_are_schema_qualified_sorted_and_deduplicated() {
    assert_eq!(
        tables("SELECT * FROM b JOIN a ON true JOIN b AS b2 ON true"),
        vec!["public.a", "public.b"]
    );
    assert_eq!(tables("SELECT * FROM Sales.Orders"), vec!["sales.orders"]);
    assert_eq!(
        tables("SELECT * FROM \"Sales\".\"Orders\""),
        vec!["Sales.Orders"]
    );
}

#[test]
fn unqualified_tables_resolve_against_the_given_search_path() {
    // Every schema of the path: without the catalogue, the table may be in
    // any of them.
    assert_eq!(
        tables_with("SELECT * FROM orders", &["$user", "sales", "public"]),
        vec!["public.orders", "sales.orders"]
    );
    assert_eq!(
        tables_with("SELECT * FROM orders", &["reporting"]),
        vec!["reporting.orders"]
    );
    assert_eq!(
        tables_with("SELECT * FROM pg_authid", &["sales"]),
        vec!["pg_catalog.pg_authid", "sales.pg_authid"]
    );
    let s = &classify_postgres("SELECT * FROM orders", &["sales".to_string()])[0];
    assert_eq!(s.schemas, vec!["sales"]);
}

#[test]
fn tables_are_found_in_every_clause() {
    assert_eq!(
        tables(
            "SELECT (SELECT max(x) FROM s1.a) FROM s1.b \
             WHERE id IN (SELECT id FROM s1.c) AND EXISTS (SELECT 1 FROM s1.d) \
             UNION SELECT 1 FROM s1.e JOIN LATERAL (SELECT * FROM s1.f) z ON true"
        ),
        vec!["s1.a", "s1.b", "s1.c", "s1.d", "s1.e", "s1.f"]
    );
    assert_eq!(
        tables("UPDATE s.t SET a = u.a FROM s.u WHERE t.id = u.id RETURNING (SELECT 1 FROM s.v)"),
        vec!["s.t", "s.u", "s.v"]
    );
    assert_eq!(
        tables("INSERT INTO s.t SELECT * FROM s.u"),
        vec!["s.t", "s.u"]
    );
    assert_eq!(tables("DELETE FROM s.t USING s.u"), vec!["s.t", "s.u"]);
    assert_eq!(tables("COPY s.t FROM STDIN"), vec!["s.t"]);
    assert_eq!(tables("LOCK s.t, s.u"), vec!["s.t", "s.u"]);
    assert_eq!(tables("TRUNCATE s.t, s.u"), vec!["s.t", "s.u"]);
    assert_eq!(tables("EXPLAIN SELECT * FROM s.t"), vec!["s.t"]);
    assert_eq!(tables("DROP TABLE s.t, u"), vec!["public.u", "s.t"]);
    assert_eq!(tables("ALTER TABLE s.t ADD COLUMN c int"), vec!["s.t"]);
    assert_eq!(
        tables("CREATE TEMP TABLE scratch (a int)"),
        vec!["pg_temp.scratch"]
    );
    assert_eq!(
        tables("SELECT * INTO s.copy FROM s.t"),
        vec!["s.copy", "s.t"]
    );
    assert_eq!(tables("SELECT nextval('app.seq')"), vec!["app.seq"]);
    assert_eq!(tables("GRANT SELECT ON s.t TO bob"), vec!["s.t"]);
    assert_eq!(
        tables("SELECT * FROM information_schema.tables, pg_catalog.pg_class"),
        vec!["information_schema.tables", "pg_catalog.pg_class"]
    );
}

#[test]
fn cte_names_are_not_tables_but_their_bodies_are() {
    assert_eq!(
        tables("WITH a AS (SELECT * FROM s.t), b AS (SELECT * FROM a) SELECT * FROM a, b"),
        vec!["s.t"]
    );
    assert_eq!(
        tables("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r"),
        Vec::<String>::new()
    );
}

#[test]
fn a_cte_name_does_not_hide_a_same_named_table_outside_its_scope() {
    // The outer `secret` is the table; only the inner one is the CTE.
    assert_eq!(
        tables("SELECT * FROM secret, (WITH secret AS (SELECT 1) SELECT * FROM secret) s"),
        vec!["public.secret"]
    );
    // A non-recursive CTE's own name inside its body is the table.
    assert_eq!(
        tables("WITH secret AS (SELECT * FROM secret) SELECT * FROM secret"),
        vec!["public.secret"]
    );
    // DML targets are never CTE references.
    assert_eq!(
        tables("WITH t AS (SELECT 1) DELETE FROM t"),
        vec!["public.t"]
    );
}

#[test]
fn schema_ddl_reports_the_schema() {
    assert_eq!(classify("CREATE SCHEMA audit")[0].schemas, vec!["audit"]);
    assert_eq!(
        classify("DROP SCHEMA audit, other")[0].schemas,
        vec!["audit", "other"]
    );
}

#[test]
fn search_path_changes_are_reported() {
    let path = |sql: &str| classify(sql)[0].sets_search_path.clone();
    let to = |p: &[&str]| Some(PathChange::To(p.iter().map(|s| s.to_string()).collect()));
    assert_eq!(
        path("SET search_path TO app, public"),
        to(&["app", "public"])
    );
    assert_eq!(
        path("SET search_path = \"$user\", App"),
        to(&["$user", "app"])
    );
    // One schema per value, exactly as written: the server quotes it.
    assert_eq!(path("SET search_path = 'a, \"B\"'"), to(&["a, \"B\""]));
    assert_eq!(
        path("SET search_path = \"Vault\", 'Lit'"),
        to(&["Vault", "Lit"])
    );
    assert_eq!(path("SET SCHEMA 'app'"), to(&["app"]));
    assert_eq!(path("RESET search_path"), Some(PathChange::Default));
    assert_eq!(
        path("SET search_path TO DEFAULT"),
        Some(PathChange::Default)
    );
    // FROM CURRENT keeps the path as it is: no change, not a reset.
    assert_eq!(path("SET search_path FROM CURRENT"), None);
    assert_eq!(
        path("SELECT set_config('search_path', 'x, y', false)"),
        to(&["x", "y"])
    );
    assert_eq!(path("SET timezone = 'UTC'"), None);
    assert!(classify("SET LOCAL search_path = x")[0].search_path_is_local);
    assert!(!classify("SET search_path = x")[0].search_path_is_local);
    assert!(classify("SELECT set_config('search_path', 'x', true)")[0].search_path_is_local);
}

/// Median time of `classify_postgres` on a typical 200-byte SELECT.
/// `cargo test --release --test sql_classification -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release mode"]
fn timing_of_a_typical_select() {
    let sql = "SELECT o.id, o.created_at, c.name, sum(l.amount) AS total \
               FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id \
               JOIN sales.lines l ON l.order_id = o.id \
               WHERE o.created_at > now() - interval '7 days' GROUP BY 1, 2, 3 LIMIT 50";
    let path = default_search_path();
    let median = |f: &dyn Fn()| {
        for _ in 0..1_000 {
            f();
        }
        let mut samples: Vec<_> = (0..10_000)
            .map(|_| {
                let start = std::time::Instant::now();
                f();
                start.elapsed()
            })
            .collect();
        samples.sort();
        (
            samples[samples.len() / 2],
            samples[samples.len() * 99 / 100],
        )
    };
    let (all, all_p99) = median(&|| {
        std::hint::black_box(classify_postgres(std::hint::black_box(sql), &path));
    });
    // The parser alone (C parse, protobuf encode and decode), for comparison.
    let (parse, _) = median(&|| {
        std::hint::black_box(pg_query::parse(std::hint::black_box(sql), 0).ok());
    });
    println!(
        "{} bytes: classify_postgres median {all:?} (p99 {all_p99:?}); pg_query::parse alone median {parse:?}",
        sql.len()
    );
}

#[test]
fn what_outlives_a_transaction_is_named() {
    let lasting = [
        "set work_mem = '2MB'",
        "set session work_mem = '2MB'",
        "reset work_mem",
        "reset all",
        "set role reporting",
        "set session characteristics as transaction read only",
        "prepare p as select 1",
        "deallocate p",
        "listen ch",
        "discard plans",
        "declare c cursor with hold for select 1",
        "create temp table t (x int)",
        "create temporary table t as select 1",
        "create temp view v as select 1",
        "create temp sequence s",
        "select set_config('work_mem', '2MB', false)",
        "select pg_catalog.set_config('work_mem', '2MB', $1)",
        "select set_config($1, $2, $3)",
        "select pg_advisory_lock(1)",
        "select pg_try_advisory_lock_shared(1, 2)",
        "select pg_advisory_unlock_all()",
        "explain analyze select pg_advisory_lock(1)",
    ];
    for sql in lasting {
        assert!(
            classify(sql)[0].outlives_transaction.is_some(),
            "{sql} should be named as outliving its transaction"
        );
    }
    let passing = [
        "set local work_mem = '2MB'",
        "set transaction isolation level serializable",
        "select 1",
        "declare c cursor for select 1",
        "create table t (x int)",
        "begin",
        "commit",
        "unlisten *",
        "select set_config('work_mem', '2MB', true)",
        "select pg_advisory_xact_lock(1)",
        "select pg_try_advisory_xact_lock_shared(1)",
        "select app.pg_advisory_lock(1)",
    ];
    for sql in passing {
        assert_eq!(classify(sql)[0].outlives_transaction, None, "{sql}");
    }
}
