//! Issue #13: eight ways a read-only session got past the statement policy
//! (the eighth, the admin API, is tested elsewhere). Every test here runs a
//! read-only grant (`connect`, `read`, `session`, `transaction` on
//! `app/writer`, whose upstream login `idgate_scram` CAN write, with
//! `default_transaction_read_only=on` upstream) in front of a database of
//! its own, and checks the effect on PostgreSQL itself: rows counted as
//! the superuser, an idle and a busy victim backend of the same login
//! still alive (pg_stat_activity read from outside, and the victim
//! answering), large objects and advisory locks in the catalog, and — for
//! transaction pooling — what the next client on the same pooled server
//! connection finds (search_path, read-only, idgate.identity, encoding).
//! `(guard)` marks a regression guard: a near-miss today's code already
//! refuses. Every other variant was seen let through by today's code.
//!
//! 1. The verdict cache merges statements that differ only in numbers
//!    (`EXPLAIN (ANALYZE 0)` judged a read, `ANALYZE 1` then hits it):
//!    pg_terminate_backend of the victim; set_config spelled with chr()
//!    turning read-only off, then an INSERT; pg_cancel_backend of the busy
//!    victim; idgate.identity spoofed; DELETE and UPDATE after read-only
//!    off; lo_unlink of the victim's large object; options in another
//!    order (`COSTS 0, ANALYZE 0`); (guard) `ANALYZE false` then `true`.
//!    Pooled: an advisory lock left on the connection; search_path set with
//!    chr() left for the next client.
//! 2. A three-part function name (`db.pg_catalog.set_config`) is a read:
//!    read-only off then a writing function inserts; idgate.identity
//!    spoofed; search_path to the forbidden schema and its table read;
//!    transaction_read_only off locally and a write in the same string;
//!    standard_conforming_strings off and a string-hidden INSERT;
//!    client_encoding SJIS and a string-hidden write; every part quoted;
//!    (guard) the two-part name. Pooled: search_path, idgate.identity and a
//!    three-part pg_advisory_lock left for the next client.
//! 3. A startup client_encoding the gateway cannot lex as the server does
//!    is passed upstream: with SJIS (PGCLIENTENCODING), sjis (conninfo
//!    keyword, lower case), MSKANJI and WIN936 (aliases), SHIFT_JIS_2004,
//!    BIG5, GBK, GB18030 a string literal ending in a multi-byte character
//!    whose second byte is `\` hides `SET SESSION CHARACTERISTICS … READ
//!    WRITE` and a DELETE, which deletes a row; UHC and JOHAB (no such
//!    trick found, but the gateway cannot lex them either) are accepted at
//!    login. After the fix each is refused at login with a message naming
//!    client_encoding. (guard) UTF8, SQL_ASCII and LATIN1 still log in.
//! 4. Non-literal values for lexical settings count as harmless:
//!    standard_conforming_strings `'of'||'f'`, `lower('OFF')`, `(select
//!    'off')`, `concat('o','ff')`, a Parse with `$1` bound to off;
//!    client_encoding `'SJ'||'IS'`, a Parse with `$1` bound to SJIS,
//!    `'GB'||'K'`, `'BIG'||'5'`, `upper('sjis')`; each followed by the
//!    string trick that writes. (guard) the literal `'off'`; (guard, in the
//!    cause 2 pooling test) `'SJ'||'IS'` at session level under transaction
//!    pooling, refused with 0A000 today.
//! 5. Attribute notation hides calls: `(pid).pg_terminate_backend`,
//!    `(pid).pg_cancel_backend`, `(oid).lo_unlink`, `(0::oid).lo_create`,
//!    `(-1).lo_creat`, the pid from pg_stat_activity `(a.pid).…`, in a
//!    WHERE clause, a quoted `"pg_terminate_backend"`, `(v.o).lo_unlink`
//!    from VALUES; (guard) the written-out call. Pooled: `(n).pg_advisory_lock`,
//!    `(n::bigint).pg_try_advisory_lock`, `(n).pg_advisory_lock_shared`.
//! 6. ts_rewrite(tsquery, text) runs SQL text: it terminates the victim,
//!    turns read-only off (then a write), returns a forbidden row, cancels
//!    the busy victim, spoofs idgate.identity, unlinks a large object; the
//!    text dollar-quoted, built by concatenation, `pg_catalog.ts_rewrite`;
//!    (guard) query_to_xml. Pooled: an advisory lock and a search_path left.
//! 7. Unqualified names resolve against the first schema of search_path
//!    only: `public, F`, `pg_temp, F`, `"$user", nosuch, F`, `A, F` (the
//!    allowed schema first), `pg_catalog, F`, set_config('search_path'),
//!    SET LOCAL in a transaction, another table (`notes`), `TABLE keys`;
//!    a forbidden schema named after the login, found through `"$user"`
//!    with no SET at all; (guard) `F, public`.
//!
//! Also: a client naming itself as the gateway names people
//!    (`application_name = 'idgate:…'`): SET, SET TO a quoted identifier,
//!    set_config, a Parse with `$1`, SET SESSION; checked in
//!    pg_stat_activity from outside.

#[path = "support/bypass.rs"]
mod bypass;
mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use bypass::*;
use support::*;

async fn session_mode(cause: &str, variants: Vec<Variant>) {
    let db = Db::create().await;
    let h = read_only_gateway(&db, false).await;
    check_all(&h, &db, false, cause, &variants).await;
}

async fn pooled_mode(cause: &str, variants: Vec<Variant>) {
    let db = Db::create().await;
    let h = read_only_gateway(&db, true).await;
    check_all(&h, &db, true, cause, &variants).await;
}

/// `EXPLAIN (ANALYZE 0) <sql with 1>` then `EXPLAIN (ANALYZE 1) <sql>`.
fn cached(prime: &str, attack: &str) -> Vec<Step> {
    vec![
        q(Any, format!("EXPLAIN (ANALYZE 0) {prime}")),
        q(Refused, format!("EXPLAIN (ANALYZE 1) {attack}")),
    ]
}

fn read_only_off_by_cache() -> Vec<Step> {
    let sql = format!(
        "SELECT set_config({}, {}, false)",
        chrs("default_transaction_read_only"),
        chrs("off")
    );
    cached(&sql, &sql)
}

#[tokio::test]
async fn cause1_verdict_cache_merges_statements_that_differ_in_numbers() {
    let mut insert = read_only_off_by_cache();
    insert.extend(cached(
        "INSERT INTO %a%.items VALUES (100, NULL)",
        "INSERT INTO %a%.items VALUES (101, NULL)",
    ));
    let mut delete = read_only_off_by_cache();
    delete.extend(cached(
        "DELETE FROM %a%.items WHERE id = 1",
        "DELETE FROM %a%.items WHERE id = 2",
    ));
    let mut update = read_only_off_by_cache();
    update.extend(cached(
        "UPDATE %a%.items SET id = 10 WHERE id = 1",
        "UPDATE %a%.items SET id = 20 WHERE id = 3",
    ));
    let identity = format!(
        "SELECT set_config({}, {}, false)",
        chrs("idgate.identity"),
        chrs("ceo@example.com")
    );
    session_mode(
        "#13 cause 1",
        vec![
            v(
                "reproduction: ANALYZE 0 then ANALYZE 1 pg_terminate_backend(victim)",
                cached(
                    "SELECT pg_terminate_backend(1)",
                    "SELECT pg_terminate_backend(%victim%)",
                ),
            ),
            v(
                "reproduction: set_config(chr()…) read-only off, then EXPLAIN (ANALYZE 1) INSERT",
                insert,
            ),
            v(
                "pg_cancel_backend of the busy victim",
                cached(
                    "SELECT pg_cancel_backend(1)",
                    "SELECT pg_cancel_backend(%busy%)",
                ),
            ),
            v(
                "idgate.identity spoofed with chr()",
                cached(&identity, &identity),
            ),
            v("DELETE after read-only off", delete),
            v("UPDATE after read-only off", update),
            v(
                "lo_unlink of a large object",
                cached("SELECT lo_unlink(1)", "SELECT lo_unlink(%lo%)"),
            ),
            v(
                "options in another order: (COSTS 0, ANALYZE 0)",
                vec![
                    q(
                        Any,
                        "EXPLAIN (COSTS 0, ANALYZE 0) SELECT pg_terminate_backend(1)",
                    ),
                    q(
                        Refused,
                        "EXPLAIN (COSTS 1, ANALYZE 1) SELECT pg_terminate_backend(%victim%)",
                    ),
                ],
            ),
            // Regression guard: no digits, no merge; refused today.
            guard(
                "ANALYZE false then ANALYZE true",
                vec![
                    q(
                        Any,
                        "EXPLAIN (ANALYZE false) SELECT pg_terminate_backend(1)",
                    ),
                    q(
                        Refused,
                        "EXPLAIN (ANALYZE true) SELECT pg_terminate_backend(%victim%)",
                    ),
                ],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cause1_verdict_cache_under_transaction_pooling() {
    let path = format!(
        "SELECT set_config({}, {}, false)",
        chrs("search_path"),
        chrs("pg_catalog")
    );
    pooled_mode(
        "#13 cause 1 (transaction pooling)",
        vec![
            v(
                "advisory lock left on the pooled connection",
                cached(
                    "SELECT pg_advisory_lock(1)",
                    "SELECT pg_advisory_lock(%lock%)",
                ),
            ),
            v(
                "search_path set with chr() left for the next client",
                cached(&path, &path),
            ),
        ],
    )
    .await;
}

/// The string trick for a server that reads backslashes in plain strings
/// (standard_conforming_strings off): the gateway sees two literals, the
/// server a literal, a statement and a comment.
const SCS_READ_WRITE: &str =
    "SELECT '\\', '; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; --'";
const SCS_INSERT: &str = "SELECT '\\', '; INSERT INTO %a%.items VALUES (50, $$x$$); --'";
/// The same trick for a server reading SJIS: `Á` is C3 81; in SJIS C3 is
/// one character and 81 5C (the backslash) another, so the quote closes.
const SJIS_READ_WRITE: &str =
    "SELECT E'\u{c1}\\' ; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; --'";
const SJIS_DELETE: &str = "SELECT E'\u{c1}\\' ; DELETE FROM %a%.items WHERE id = 1; --'";
/// GBK: 丁 is E4 B8 81; E4 B8 is one character, 81 5C another.
const GBK_READ_WRITE: &str =
    "SELECT E'\u{4e01}\\' ; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; --'";
const GBK_DELETE: &str = "SELECT E'\u{4e01}\\' ; DELETE FROM %a%.items WHERE id = 1; --'";
/// BIG5: 両 is E4 B8 A1; E4 B8 one character, A1 5C another.
const BIG5_READ_WRITE: &str =
    "SELECT E'\u{4e21}\\' ; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; --'";
const BIG5_DELETE: &str = "SELECT E'\u{4e21}\\' ; DELETE FROM %a%.items WHERE id = 1; --'";

fn then(first: Step, rest: &[&str]) -> Vec<Step> {
    let mut steps = vec![first];
    steps.extend(rest.iter().map(|s| q(Any, *s)));
    steps
}

#[tokio::test]
async fn cause2_three_part_function_names() {
    session_mode(
        "#13 cause 2",
        vec![
            v(
                "reproduction: db.pg_catalog.set_config read-only off, then a writing function",
                then(
                    q(
                        Refused,
                        "SELECT %db%.pg_catalog.set_config('default_transaction_read_only', 'off', false)",
                    ),
                    &["SELECT %a%.w(1)"],
                ),
            ),
            v(
                "reproduction: idgate.identity spoofed",
                vec![q(
                    Refused,
                    "SELECT %db%.pg_catalog.set_config('idgate.identity', 'ceo@example.com', false)",
                )],
            ),
            v(
                "reproduction: search_path to the forbidden schema, its table read",
                // Setting the path is harmless in itself; what it makes
                // `keys` mean must be refused.
                vec![
                    q(
                        Any,
                        "SELECT %db%.pg_catalog.set_config('search_path', '%f%', false)",
                    ),
                    q(Refused, "SELECT * FROM keys"),
                ],
            ),
            v(
                "transaction_read_only off locally and a write in the same string",
                vec![q(
                    Refused,
                    "BEGIN; SELECT %db%.pg_catalog.set_config('transaction_read_only', 'off', true); \
                     SELECT %a%.w(2); COMMIT",
                )],
            ),
            v(
                "standard_conforming_strings off, then a string-hidden INSERT",
                then(
                    q(
                        Refused,
                        "SELECT %db%.pg_catalog.set_config('standard_conforming_strings', 'off', false)",
                    ),
                    &[SCS_READ_WRITE, SCS_INSERT],
                ),
            ),
            v(
                "client_encoding SJIS, then a string-hidden DELETE",
                then(
                    q(
                        Refused,
                        "SELECT %db%.pg_catalog.set_config('client_encoding', 'SJIS', false)",
                    ),
                    &[SJIS_READ_WRITE, SJIS_DELETE],
                ),
            ),
            v(
                "every part quoted",
                then(
                    q(
                        Refused,
                        "SELECT \"%db%\".\"pg_catalog\".\"set_config\"('default_transaction_read_only', 'off', false)",
                    ),
                    &["SELECT %a%.w(3)"],
                ),
            ),
            // Regression guard: the two-part name is refused today.
            guard(
                "pg_catalog.set_config (two parts)",
                then(
                    q(
                        Refused,
                        "SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false)",
                    ),
                    &["SELECT %a%.w(4)"],
                ),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cause2_three_part_names_under_transaction_pooling() {
    pooled_mode(
        "#13 cause 2 (transaction pooling)",
        vec![
            v(
                "reproduction: search_path left on the pooled connection",
                vec![q(
                    Refused,
                    "SELECT %db%.pg_catalog.set_config('search_path', '%f%', false)",
                )],
            ),
            v(
                "reproduction: idgate.identity left on the pooled connection",
                vec![q(
                    Refused,
                    "SELECT %db%.pg_catalog.set_config('idgate.identity', 'ceo@example.com', false)",
                )],
            ),
            v(
                "read-only off left on the pooled connection",
                vec![q(
                    Refused,
                    "SELECT %db%.pg_catalog.set_config('default_transaction_read_only', 'off', false)",
                )],
            ),
            v(
                "db.pg_catalog.pg_advisory_lock left on the pooled connection",
                vec![q(Refused, "SELECT %db%.pg_catalog.pg_advisory_lock(%lock%)")],
            ),
            // Regression guard: a session-level set_config of a lexical
            // setting with a non-literal value is refused (0A000) under
            // transaction pooling today.
            guard(
                "set_config('client_encoding', 'SJ'||'IS', false)",
                vec![q(
                    Refused,
                    "SELECT set_config('client_encoding', 'SJ'||'IS', false)",
                )],
            ),
        ],
    )
    .await;
}

/// psql through the gateway with `encoding` as the startup client_encoding
/// (in the environment, or as a conninfo keyword), running each of `sqls`
/// (raw bytes) as its own Query.
async fn psql_encoded(
    h: &Harness,
    encoding: &str,
    keyword: bool,
    sqls: &[Vec<u8>],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("psql");
    let mut conninfo = h.conninfo("writer", "require");
    if keyword {
        conninfo.push_str(&format!(" client_encoding={encoding}"));
    } else {
        cmd.env("PGCLIENTENCODING", encoding);
    }
    cmd.arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0"])
        .env("PGPASSWORD", h.analyst());
    for sql in sqls {
        cmd.arg("-c").arg(OsStr::from_bytes(sql));
    }
    run(&mut cmd).await
}

/// The trick's two statements in bytes: `prefix` ends in a lead byte whose
/// character swallows the backslash in `encoding`.
fn encoded_trick(db: &Db, prefix: &[u8]) -> Vec<Vec<u8>> {
    [
        "; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; --'",
        "; DELETE FROM %a%.items; --'",
    ]
    .iter()
    .map(|rest| {
        let mut sql = b"SELECT E'".to_vec();
        sql.extend_from_slice(prefix);
        sql.extend_from_slice(b"\\' ");
        sql.extend_from_slice(db.fill(rest).as_bytes());
        sql
    })
    .collect()
}

#[tokio::test]
async fn cause3_startup_client_encoding_the_gateway_cannot_lex() {
    let db = Db::create().await;
    let h = read_only_gateway(&db, false).await;
    // (encoding, as a conninfo keyword, the bytes before the backslash)
    let cases: &[(&str, bool, Option<&[u8]>)] = &[
        ("SJIS", false, Some(b"\xc3\x81")),
        ("sjis", true, Some(b"\xc3\x81")),
        ("MSKANJI", false, Some(b"\xc3\x81")),
        ("SHIFT_JIS_2004", false, Some(b"\xc3\x81")),
        ("BIG5", false, Some(b"\xe4\xb8\xa1")),
        ("GBK", false, Some(b"\xe4\xb8\x81")),
        ("WIN936", true, Some(b"\xe4\xb8\x81")),
        ("GB18030", false, Some(b"\xe4\xb8\x81")),
        ("UHC", false, None),
        ("JOHAB", false, None),
    ];
    let mut failures = Vec::new();
    for (encoding, keyword, prefix) in cases {
        let before = db.state().await;
        let sqls = match prefix {
            Some(p) => encoded_trick(&db, p),
            None => vec![b"SELECT 'logged in'".to_vec()],
        };
        let out = psql_encoded(&h, encoding, *keyword, &sqls).await;
        let after = db.state().await;
        // Put back whatever the trick deleted, for the next encoding.
        db.as_admin(
            "insert into %a%.items values (1, 'one'), (2, 'two'), (3, 'three') \
             on conflict do nothing",
        )
        .await;
        let err = stderr(&out);
        let mut problems = Vec::new();
        if out.status.success() || !err.contains("client_encoding") {
            problems.push(format!(
                "login not refused with a client_encoding message (exit {:?}; stdout {:?}; stderr {:?})",
                out.status.code(),
                stdout(&out),
                err
            ));
        }
        if after != before {
            problems.push(format!("data changed: {before:?} -> {after:?}"));
        }
        let how = if *keyword {
            "conninfo"
        } else {
            "PGCLIENTENCODING"
        };
        if problems.is_empty() {
            eprintln!("[#13 cause 3] held: {encoding} ({how})");
        } else {
            eprintln!(
                "[#13 cause 3] LET THROUGH: {encoding} ({how})\n    {}",
                problems.join("\n    ")
            );
            failures.push(format!("{encoding} ({how}): {}", problems.join("; ")));
        }
    }
    // Regression guard: encodings the gateway lexes as the server does.
    for encoding in ["UTF8", "SQL_ASCII", "LATIN1"] {
        let out = psql_encoded(&h, encoding, false, &[b"SELECT 'fine'".to_vec()]).await;
        if !out.status.success() || stdout(&out).trim() != "fine" {
            failures.push(format!("{encoding} (guard) refused: {}", stderr(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "#13 cause 3: {} let through or refused wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn cause4_non_literal_values_for_lexical_settings() {
    let scs = |first: Step| then(first, &[SCS_READ_WRITE, SCS_INSERT]);
    let sjis = |first: Step| then(first, &[SJIS_READ_WRITE, SJIS_DELETE]);
    session_mode(
        "#13 cause 4",
        vec![
            v(
                "reproduction: standard_conforming_strings 'of'||'f'",
                scs(q(
                    Refused,
                    "SELECT set_config('standard_conforming_strings', 'of'||'f', false)",
                )),
            ),
            v(
                "reproduction: client_encoding 'SJ'||'IS'",
                sjis(q(
                    Refused,
                    "SELECT set_config('client_encoding', 'SJ'||'IS', false)",
                )),
            ),
            v(
                "reproduction: Parse set_config('client_encoding', $1) bound to SJIS",
                sjis(x(
                    Refused,
                    "select set_config('client_encoding', $1, false)",
                    &["SJIS"],
                )),
            ),
            v(
                "standard_conforming_strings lower('OFF')",
                scs(q(
                    Refused,
                    "SELECT set_config('standard_conforming_strings', lower('OFF'), false)",
                )),
            ),
            v(
                "standard_conforming_strings (select 'off')",
                scs(q(
                    Refused,
                    "SELECT set_config('standard_conforming_strings', (select 'off'), false)",
                )),
            ),
            v(
                "standard_conforming_strings concat('o', 'ff')",
                scs(q(
                    Refused,
                    "SELECT set_config('standard_conforming_strings', concat('o', 'ff'), false)",
                )),
            ),
            v(
                "Parse set_config('standard_conforming_strings', $1) bound to off",
                scs(x(
                    Refused,
                    "select set_config('standard_conforming_strings', $1, false)",
                    &["off"],
                )),
            ),
            v(
                "client_encoding 'GB'||'K'",
                then(
                    q(
                        Refused,
                        "SELECT set_config('client_encoding', 'GB'||'K', false)",
                    ),
                    &[GBK_READ_WRITE, GBK_DELETE],
                ),
            ),
            v(
                "client_encoding 'BIG'||'5'",
                then(
                    q(
                        Refused,
                        "SELECT set_config('client_encoding', 'BIG'||'5', false)",
                    ),
                    &[BIG5_READ_WRITE, BIG5_DELETE],
                ),
            ),
            v(
                "client_encoding upper('sjis')",
                sjis(q(
                    Refused,
                    "SELECT set_config('client_encoding', upper('sjis'), false)",
                )),
            ),
            // Regression guard: a literal value is refused today.
            guard(
                "standard_conforming_strings 'off' (literal)",
                scs(q(
                    Refused,
                    "SELECT set_config('standard_conforming_strings', 'off', false)",
                )),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cause5_attribute_notation_hides_calls() {
    session_mode(
        "#13 cause 5",
        vec![
            v(
                "reproduction: (pid).pg_terminate_backend",
                vec![q(Refused, "SELECT (%victim%).pg_terminate_backend")],
            ),
            v(
                "reproduction: (pid).pg_cancel_backend",
                vec![q(Refused, "SELECT (%busy%).pg_cancel_backend")],
            ),
            v(
                "reproduction: (oid).lo_unlink",
                vec![q(Refused, "SELECT (%lo%::oid).lo_unlink")],
            ),
            v(
                "reproduction: (0::oid).lo_create",
                vec![q(Refused, "SELECT (0::oid).lo_create")],
            ),
            v(
                "(-1).lo_creat",
                vec![q(Refused, "SELECT (-1).lo_creat")],
            ),
            v(
                "(a.pid).pg_terminate_backend from pg_stat_activity",
                vec![q(
                    Refused,
                    "SELECT (a.pid).pg_terminate_backend FROM pg_stat_activity a WHERE a.pid = %victim%",
                )],
            ),
            v(
                "in a WHERE clause",
                vec![q(Refused, "SELECT 1 WHERE (%victim%).pg_terminate_backend")],
            ),
            v(
                "quoted \"pg_terminate_backend\"",
                vec![q(Refused, "SELECT (%victim%).\"pg_terminate_backend\"")],
            ),
            v(
                "(v.o).lo_unlink from VALUES",
                vec![q(
                    Refused,
                    "SELECT (v.o).lo_unlink FROM (VALUES (%lo%::oid)) v(o)",
                )],
            ),
            v(
                "(t.s).pg_cancel_backend from a subquery",
                vec![q(
                    Refused,
                    "SELECT (t.s).pg_cancel_backend FROM (SELECT %busy%) t(s)",
                )],
            ),
            // Regression guard: the written-out call is refused today.
            guard(
                "pg_terminate_backend(pid)",
                vec![q(Refused, "SELECT pg_terminate_backend(%victim%)")],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cause5_attribute_notation_under_transaction_pooling() {
    pooled_mode(
        "#13 cause 5 (transaction pooling)",
        vec![
            v(
                "reproduction: (n).pg_advisory_lock",
                vec![q(Refused, "SELECT (%lock%).pg_advisory_lock")],
            ),
            v(
                "(n::bigint).pg_try_advisory_lock",
                vec![q(Refused, "SELECT (%lock%::bigint).pg_try_advisory_lock")],
            ),
            v(
                "(n).pg_advisory_lock_shared",
                vec![q(Refused, "SELECT (%lock%).pg_advisory_lock_shared")],
            ),
            // Regression guard: the written-out call is refused today (0A000).
            guard(
                "pg_advisory_lock(n)",
                vec![q(Refused, "SELECT pg_advisory_lock(%lock%)")],
            ),
        ],
    )
    .await;
}

fn ts_rewrite(inner: &str) -> String {
    format!(
        "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, {}')",
        inner.replace('\'', "''")
    )
}

#[tokio::test]
async fn cause6_ts_rewrite_runs_sql_text() {
    session_mode(
        "#13 cause 6",
        vec![
            v(
                "reproduction: terminates a session",
                vec![q(
                    Refused,
                    ts_rewrite("pg_terminate_backend(%victim%)::text::tsquery"),
                )],
            ),
            v(
                "reproduction: turns read-only off, then a write",
                then(
                    q(
                        Refused,
                        ts_rewrite(
                            "set_config('default_transaction_read_only', 'off', false)::tsquery",
                        ),
                    ),
                    &["SELECT %a%.w(5)"],
                ),
            ),
            v(
                "reproduction: returns a forbidden row",
                vec![q(
                    Refused,
                    "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, secret::tsquery FROM %f%.keys')",
                )],
            ),
            v(
                "cancels the busy victim",
                vec![q(
                    Refused,
                    ts_rewrite("pg_cancel_backend(%busy%)::text::tsquery"),
                )],
            ),
            v(
                "spoofs idgate.identity",
                vec![q(
                    Refused,
                    ts_rewrite("set_config('idgate.identity', 'ceo', false)::tsquery"),
                )],
            ),
            v(
                "unlinks a large object",
                vec![q(Refused, ts_rewrite("lo_unlink(%lo%)::text::tsquery"))],
            ),
            v(
                "the text dollar-quoted",
                vec![q(
                    Refused,
                    "SELECT ts_rewrite('a'::tsquery, $q$SELECT 'a'::tsquery, pg_terminate_backend(%victim%)::text::tsquery$q$)",
                )],
            ),
            v(
                "the text built by concatenation",
                vec![q(
                    Refused,
                    "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ' || 'pg_cancel_backend(%busy%)::text::tsquery')",
                )],
            ),
            v(
                "pg_catalog.ts_rewrite",
                vec![q(
                    Refused,
                    "SELECT pg_catalog.ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, secret::tsquery FROM %f%.keys')",
                )],
            ),
            // Regression guard: query_to_xml is on the list and refused today.
            guard(
                "query_to_xml of the forbidden table",
                vec![q(
                    Refused,
                    "SELECT query_to_xml('SELECT secret FROM %f%.keys', true, false, '')",
                )],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cause6_ts_rewrite_under_transaction_pooling() {
    pooled_mode(
        "#13 cause 6 (transaction pooling)",
        vec![
            v(
                "an advisory lock left on the pooled connection",
                vec![q(
                    Refused,
                    ts_rewrite("pg_advisory_lock(%lock%)::text::tsquery"),
                )],
            ),
            v(
                "a search_path left on the pooled connection",
                vec![q(
                    Refused,
                    ts_rewrite("set_config('search_path', '%f%', false)::tsquery"),
                )],
            ),
        ],
    )
    .await;
}

fn path_then_read(path: &'static str, read: &'static str) -> Vec<Step> {
    vec![q(Any, path), q(Refused, read)]
}

#[tokio::test]
async fn cause7_unqualified_names_resolve_against_the_whole_search_path() {
    session_mode(
        "#13 cause 7",
        vec![
            v(
                "reproduction: public, F",
                path_then_read("SET search_path = public, %f%", "SELECT * FROM keys"),
            ),
            v(
                "reproduction: pg_temp, F",
                path_then_read("SET search_path = pg_temp, %f%", "SELECT * FROM keys"),
            ),
            v(
                "reproduction: \"$user\", nosuch, F",
                path_then_read(
                    "SET search_path = \"$user\", nosuch, %f%",
                    "SELECT * FROM keys",
                ),
            ),
            v(
                "the allowed schema first: A, F",
                path_then_read("SET search_path = %a%, %f%", "SELECT * FROM keys"),
            ),
            v(
                "pg_catalog, F",
                path_then_read("SET search_path = pg_catalog, %f%", "SELECT * FROM keys"),
            ),
            v(
                "set_config('search_path', 'public, F')",
                path_then_read(
                    "SELECT set_config('search_path', 'public, %f%', false)",
                    "SELECT * FROM keys",
                ),
            ),
            v(
                "SET LOCAL inside a transaction",
                vec![
                    q(Any, "BEGIN"),
                    q(Any, "SET LOCAL search_path = public, %f%"),
                    q(Refused, "SELECT * FROM keys"),
                    q(Any, "COMMIT"),
                ],
            ),
            v(
                "another table: notes, which the allowed schema also has",
                path_then_read("SET search_path = public, %f%", "SELECT body FROM notes"),
            ),
            v(
                "TABLE keys",
                path_then_read("SET search_path = public, %f%", "TABLE keys"),
            ),
            // Regression guard: the forbidden schema first is refused today.
            guard(
                "F, public",
                path_then_read("SET search_path = %f%, public", "SELECT * FROM keys"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn cause7_a_forbidden_schema_named_after_the_login_through_user() {
    // "$user" is the first entry of the default path: a schema named after
    // the upstream login is searched before public, with no SET at all.
    let db = Db::create().await;
    db.as_owner(
        "create schema idgate_scram; \
         create table idgate_scram.keys (id int, secret text); \
         insert into idgate_scram.keys values (1, '%secret%')",
    )
    .await;
    let h = Harness::with(Options {
        policy: policy("idgate_scram"),
        database: db.name.clone(),
        roles: vec![WRITER],
        ..Options::default()
    })
    .await;
    check_all(
        &h,
        &db,
        false,
        "#13 cause 7 ($user)",
        &[
            v(
                "the default path, no SET",
                vec![q(Refused, "SELECT * FROM keys")],
            ),
            v(
                "SET search_path = \"$user\", public",
                path_then_read("SET search_path = \"$user\", public", "SELECT * FROM keys"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_client_may_not_take_the_name_the_gateway_gives_people() {
    session_mode(
        "#13 application_name",
        vec![
            v(
                "reproduction: SET application_name = 'idgate:ceo@example.com'",
                vec![q(
                    Refused,
                    "SET application_name = 'idgate:ceo@example.com'",
                )],
            ),
            v(
                "SET application_name TO a quoted identifier",
                vec![q(
                    Refused,
                    "SET application_name TO \"idgate:ceo@example.com\"",
                )],
            ),
            v(
                "set_config('application_name', …)",
                vec![q(
                    Refused,
                    "SELECT set_config('application_name', 'idgate:ceo@example.com', false)",
                )],
            ),
            v(
                "Parse set_config('application_name', $1) bound to the name",
                vec![x(
                    Refused,
                    "select set_config('application_name', $1, false)",
                    &["idgate:ceo@example.com"],
                )],
            ),
            v(
                "SET SESSION application_name",
                vec![q(
                    Refused,
                    "SET SESSION application_name = 'idgate:ceo@example.com'",
                )],
            ),
        ],
    )
    .await;
}
