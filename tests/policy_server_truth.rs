//! Issue #21: the gateway judges what the statement text says, not what
//! the server does. Same read-only grant as `policy_bypass_causes` (the
//! upstream login can write; `default_transaction_read_only=on`), a
//! database of its own per test, and a `forbid` on a forbidden schema
//! (`F`; `A` is the allowed one). Effects are read on PostgreSQL itself:
//! rows counted as the superuser, and whether a statement returned the
//! forbidden schema's secret. `(guard)` marks a regression guard; every
//! other variant was seen let through by today's code.
//!
//! 1. The gateway's picture of the session follows the text: after
//!    `SET search_path = F`, the gateway believes `public` and lets `keys`
//!    (F's) be read after: set_config(…) WHERE false; SET search_path FROM
//!    CURRENT; a second PREPARE of a taken name (which fails, leaving the
//!    first); set_config(…) LIMIT 0; set_config(…)::int (fails, rolled
//!    back); WHERE 1/0 = 1; CASE WHEN false; FROM an empty selection; a
//!    user function that sets search_path; a quoted mixed-case schema
//!    name (`"Vault…"`, lower-cased by the gateway); the same as a string
//!    literal; a quoted name with a comma (`"v,x…"`, split by the gateway);
//!    a database default search_path (ALTER DATABASE … SET) read with no
//!    SET, after RESET, and after SET … TO DEFAULT.
//! 2. A prepared statement is judged once, the server re-plans it: PREPARE
//!    under A, SET search_path = F, EXECUTE; the same over the extended
//!    protocol; the path changed by set_config; SET LOCAL in a transaction;
//!    SET and EXECUTE in one string; a parameterised PREPARE; a function
//!    re-resolved (`leak()`); the path changed in a multi-statement
//!    string before an extended execute; under transaction pooling an
//!    extended statement run after SET LOCAL, and after set_config(…, true).
//! 3. More than eight possible search paths resolve names to a placeholder
//!    no forbid names. After `SET search_path = F`, nine more paths that
//!    leave the server at F: BEGIN/SET LOCAL/COMMIT strings; the same as
//!    separate statements; SETs rolled back; set_config(…, true) in
//!    transactions; SET in multi-statement strings that fail; one failing
//!    string of nine SETs; Parse of SETs (extended protocol) rolled back;
//!    savepoints rolled back; then `keys` read (also `TABLE keys`, `notes`).
//! 4. Code runs through more than written-out calls, and names are not
//!    enough: a user operator; the same found through search_path; a cast;
//!    a domain CHECK; an aggregate's state function; a Parse whose
//!    parameter type is the domain; `lower(text)` shadowed in an earlier
//!    schema; `length(5)` resolving to `public.length(int)`; `+` shadowed
//!    in public; `pg_sleep(0)` resolving to `public.pg_sleep(int)`;
//!    `now()` shadowed; `A.pg_helper()`; a writing function called by
//!    name; the forbidden schema's function by name, and through
//!    search_path; a view calling a writing function; a row-security
//!    policy calling it. Writes take two calls of the function (the first
//!    turns the session's read-only default off, the second inserts), so
//!    each is run twice; zero rows must appear.
//!
//! Also: thirty ordinary reads that must not be refused, with and without
//! the fixture objects present.

#[path = "support/bypass.rs"]
mod bypass;
mod support;

use bypass::*;
use support::*;

/// Schemas beyond `F` that the policy forbids, and their quirks: a
/// mixed-case name and a name with a comma.
struct Extra {
    vault: String,
    comma: String,
}

async fn fixture() -> (Db, Extra) {
    let db = Db::create().await;
    let n: u32 = rand::random();
    let extra = Extra {
        vault: format!("Vault{n:08x}"),
        comma: format!("v,x{n:08x}"),
    };
    db.as_owner(&format!(
        "create schema \"{v}\"; create table \"{v}\".keys (id int, secret text);
         insert into \"{v}\".keys values (1, '%secret%');
         create schema \"{c}\"; create table \"{c}\".keys (id int, secret text);
         insert into \"{c}\".keys values (1, '%secret%');
         create table public.notes (id int, body text); insert into public.notes values (1, 'public');
         create function %a%.set_path() returns text language plpgsql as $$
           begin return set_config('search_path', '%f%', false); end $$;",
        v = extra.vault,
        c = extra.comma
    ))
    .await;
    (db, extra)
}

fn policy_with(db: &Db, extra: &Extra) -> String {
    format!(
        "{}\n@id(\"more-forbidden\")\nforbid(principal, action, resource) when {{ context has schemas && (context.schemas.contains(\"{}\") || context.schemas.contains(\"{}\")) }};\n",
        policy(&db.forbidden),
        extra.vault,
        extra.comma
    )
}

async fn gateway(db: &Db, extra: &Extra, pooled: bool) -> Harness {
    // As `read_only_gateway`, with the longer policy.
    let pool = if pooled {
        idgate::config::PoolConfig {
            mode: idgate::config::PoolMode::Transaction,
            max_size: 1,
            ..Default::default()
        }
    } else {
        Default::default()
    };
    Harness::with(Options {
        policy: policy_with(db, extra),
        database: db.name.clone(),
        roles: vec![WRITER],
        pool,
        ..Options::default()
    })
    .await
}

fn forbidden_then(trick: &str) -> Vec<Step> {
    vec![
        q(Any, "SET search_path = %f%"),
        q(Any, trick.to_owned()),
        q(Refused, "SELECT * FROM keys"),
    ]
}

#[tokio::test]
async fn cause1_the_gateway_follows_the_text_not_the_server() {
    let (db, extra) = fixture().await;
    let h = gateway(&db, &extra, false).await;
    let vault = format!("SET search_path = \"{}\"", extra.vault);
    let vault_literal = format!("SET search_path = '{}'", extra.vault);
    let comma = format!("SET search_path = \"{}\"", extra.comma);
    let variants = vec![
        v(
            "reproduction: set_config(…) WHERE false",
            forbidden_then("SELECT set_config('search_path', 'public', false) WHERE false"),
        ),
        v(
            "reproduction: SET search_path FROM CURRENT",
            forbidden_then("SET search_path FROM CURRENT"),
        ),
        v(
            "reproduction: a second PREPARE of a taken name",
            vec![
                q(Any, "SET search_path = %a%"),
                q(Any, "PREPARE p AS SELECT body FROM notes"),
                q(Any, "SET search_path = %f%"),
                q(Any, "PREPARE p AS SELECT 'harmless'"),
                q(Refused, "EXECUTE p"),
            ],
        ),
        v(
            "set_config(…) LIMIT 0",
            forbidden_then("SELECT set_config('search_path', 'public', false) LIMIT 0"),
        ),
        v(
            "set_config(…)::int fails and is rolled back",
            forbidden_then("SELECT set_config('search_path', 'public', false)::int"),
        ),
        v(
            "WHERE 1/0 = 1",
            forbidden_then("SELECT set_config('search_path', 'public', false) WHERE 1/0 = 1"),
        ),
        v(
            "CASE WHEN false",
            forbidden_then(
                "SELECT CASE WHEN false THEN set_config('search_path', 'public', false) END",
            ),
        ),
        v(
            "FROM an empty selection",
            forbidden_then(
                "SELECT set_config('search_path', 'public', false) FROM %a%.items WHERE id < 0",
            ),
        ),
        v(
            "a user function sets search_path",
            vec![
                // User code: refused for a session without write, so the
                // path never changes and `keys` finds nothing.
                q(Refused, "SELECT %a%.set_path()"),
                q(Any, "SELECT * FROM keys"),
            ],
        ),
        v(
            "a quoted mixed-case schema name",
            vec![q(Any, vault.clone()), q(Refused, "SELECT * FROM keys")],
        ),
        v(
            "a mixed-case schema name as a string literal",
            vec![q(Any, vault_literal), q(Refused, "SELECT * FROM keys")],
        ),
        v(
            "a quoted schema name with a comma",
            vec![q(Any, comma), q(Refused, "SELECT * FROM keys")],
        ),
    ];
    check_all(&h, &db, false, "#21 cause 1", &variants).await;
}

#[tokio::test]
async fn cause1_a_database_default_search_path_the_gateway_never_saw() {
    let (db, extra) = fixture().await;
    db.as_admin("alter database %db% set search_path = %f%")
        .await;
    let h = gateway(&db, &extra, false).await;
    let variants = vec![
        v("no SET at all", vec![q(Refused, "SELECT * FROM keys")]),
        v(
            "after RESET search_path",
            vec![
                q(Any, "RESET search_path"),
                q(Refused, "SELECT * FROM keys"),
            ],
        ),
        v(
            "after SET search_path TO DEFAULT",
            vec![
                q(Any, "SET search_path TO DEFAULT"),
                q(Refused, "SELECT * FROM keys"),
            ],
        ),
    ];
    check_all(&h, &db, false, "#21 cause 1 (database default)", &variants).await;
}

#[tokio::test]
async fn cause2_prepared_statements_are_replanned_by_the_server() {
    let (db, extra) = fixture().await;
    let h = gateway(&db, &extra, false).await;
    let sql_prepare = || {
        vec![
            q(Any, "SET search_path = %a%"),
            q(Any, "PREPARE p AS SELECT body FROM notes"),
        ]
    };
    let ext_prepare = || {
        vec![
            q(Any, "SET search_path = %a%"),
            prepare(Any, "SELECT body FROM notes"),
        ]
    };
    let with = |mut first: Vec<Step>, rest: Vec<Step>| {
        first.extend(rest);
        first
    };
    let variants = vec![
        v(
            "reproduction: PREPARE, SET search_path, EXECUTE",
            with(
                sql_prepare(),
                vec![q(Any, "SET search_path = %f%"), q(Refused, "EXECUTE p")],
            ),
        ),
        v(
            "reproduction: extended protocol prepare, SET search_path, execute",
            with(
                ext_prepare(),
                vec![q(Any, "SET search_path = %f%"), Run(Refused)],
            ),
        ),
        v(
            "extended, the path changed by set_config",
            with(
                ext_prepare(),
                vec![
                    q(Any, "SELECT set_config('search_path', '%f%', false)"),
                    Run(Refused),
                ],
            ),
        ),
        v(
            "SET LOCAL in a transaction, then EXECUTE",
            with(
                sql_prepare(),
                vec![
                    q(Any, "BEGIN"),
                    q(Any, "SET LOCAL search_path = %f%"),
                    q(Refused, "EXECUTE p"),
                    q(Any, "COMMIT"),
                ],
            ),
        ),
        v(
            "SET and EXECUTE in one string",
            with(
                sql_prepare(),
                vec![q(Refused, "SET search_path = %f%; EXECUTE p")],
            ),
        ),
        v(
            "a parameterised PREPARE",
            vec![
                q(Any, "SET search_path = %a%"),
                q(
                    Any,
                    "PREPARE p(int) AS SELECT body FROM notes WHERE id = $1",
                ),
                q(Any, "SET search_path = %f%"),
                q(Refused, "EXECUTE p(1)"),
            ],
        ),
        v(
            "a function re-resolved: leak()",
            vec![
                q(Any, "SET search_path = %a%"),
                q(Any, "PREPARE p AS SELECT leak()"),
                q(Any, "SET search_path = %f%"),
                q(Refused, "EXECUTE p"),
            ],
        ),
        v(
            "extended, the path changed in a multi-statement string",
            with(
                ext_prepare(),
                vec![
                    q(Any, "SELECT 1; SET search_path = %f%; SELECT 2"),
                    Run(Refused),
                ],
            ),
        ),
    ];
    check_all(&h, &db, false, "#21 cause 2", &variants).await;
}

#[tokio::test]
async fn cause2_prepared_statements_under_transaction_pooling() {
    let (db, extra) = fixture().await;
    let h = gateway(&db, &extra, true).await;
    let variants = vec![
        v(
            "extended statement run after SET LOCAL",
            vec![
                prepare(Any, "SELECT body FROM notes"),
                q(Any, "BEGIN"),
                q(Any, "SET LOCAL search_path = %f%"),
                Run(Refused),
                q(Any, "COMMIT"),
            ],
        ),
        v(
            "extended statement run after set_config(…, true)",
            vec![
                prepare(Any, "SELECT body FROM notes"),
                q(Any, "BEGIN"),
                q(Any, "SELECT set_config('search_path', '%f%', true)"),
                Run(Refused),
                q(Any, "COMMIT"),
            ],
        ),
    ];
    check_all(
        &h,
        &db,
        true,
        "#21 cause 2 (transaction pooling)",
        &variants,
    )
    .await;
}

/// `SET search_path = F`, then nine more possible paths made by `each`
/// (`{n}` numbered), then the read.
fn overflow(each: &str, read: &'static str) -> Vec<Step> {
    let mut steps = vec![q(Any, "SET search_path = %f%")];
    for n in 1..=9 {
        for part in each.split('\u{1}') {
            steps.push(q(Any, part.replace("{n}", &n.to_string())));
        }
    }
    steps.push(q(Refused, read));
    steps
}

#[tokio::test]
async fn cause3_too_many_possible_search_paths_fail_open() {
    let (db, extra) = fixture().await;
    let h = gateway(&db, &extra, false).await;
    // Every extra path leaves the server's path at F: it ends with its
    // transaction, is rolled back, or its string fails.
    let mut one_string = String::new();
    for n in 1..=9 {
        one_string.push_str(&format!("SET search_path = d{n}; "));
    }
    one_string.push_str("SELECT 1/0");
    let mut parsed = vec![q(Any, "SET search_path = %f%")];
    for n in 1..=9 {
        parsed.push(q(Any, "BEGIN"));
        parsed.push(Step::X(Any, format!("SET search_path = d{n}"), Vec::new()));
        parsed.push(q(Any, "ROLLBACK"));
    }
    parsed.push(q(Refused, "SELECT * FROM keys"));
    let variants = vec![
        v(
            "BEGIN; SET LOCAL; COMMIT strings",
            overflow(
                "BEGIN; SET LOCAL search_path = d{n}; COMMIT",
                "SELECT * FROM keys",
            ),
        ),
        v(
            "separate BEGIN, SET LOCAL, COMMIT",
            overflow(
                "BEGIN\u{1}SET LOCAL search_path = d{n}\u{1}COMMIT",
                "SELECT * FROM keys",
            ),
        ),
        v(
            "SETs rolled back (the server's path never changes)",
            overflow(
                "BEGIN\u{1}SET search_path = d{n}\u{1}ROLLBACK",
                "SELECT * FROM keys",
            ),
        ),
        v(
            "set_config(…, true) in transactions",
            overflow(
                "BEGIN\u{1}SELECT set_config('search_path', 'd{n}', true)\u{1}COMMIT",
                "SELECT * FROM keys",
            ),
        ),
        v(
            "SET in multi-statement strings that fail",
            overflow("SET search_path = d{n}; SELECT 1/0", "SELECT * FROM keys"),
        ),
        v(
            "one failing string of nine SETs",
            vec![
                q(Any, "SET search_path = %f%"),
                q(Any, one_string),
                q(Refused, "SELECT * FROM keys"),
            ],
        ),
        v("Parse of SETs (extended protocol), rolled back", parsed),
        v(
            "savepoints rolled back",
            overflow(
                "BEGIN\u{1}SAVEPOINT s\u{1}SET search_path = d{n}\u{1}ROLLBACK TO s\u{1}COMMIT",
                "SELECT * FROM keys",
            ),
        ),
        v(
            "then TABLE keys",
            overflow(
                "BEGIN\u{1}SET search_path = d{n}\u{1}ROLLBACK",
                "TABLE keys",
            ),
        ),
        v(
            "then notes (which A also has)",
            overflow(
                "BEGIN\u{1}SET search_path = d{n}\u{1}ROLLBACK",
                "SELECT body FROM notes",
            ),
        ),
    ];
    check_all(&h, &db, false, "#21 cause 3", &variants).await;
}

/// Objects through which code runs without a written-out call. Each ends in
/// `A.w`, which turns read-only off on its first call and inserts into
/// `A.audit` on its second.
const CODE_PATHS: &str = "
create function %a%.op_fn(int, int) returns boolean language sql as $$ select %a%.w($1) $$;
create operator %a%.<~~> (leftarg = int, rightarg = int, function = %a%.op_fn);
create type %a%.ct as (v int);
create function %a%.to_ct(int) returns %a%.ct language plpgsql as $$
  begin perform %a%.w($1); return row($1)::%a%.ct; end $$;
create cast (int as %a%.ct) with function %a%.to_ct(int);
create domain %a%.d as int check (%a%.w(value));
create function %a%.agg_sf(int, int) returns int language plpgsql as $$
  begin perform %a%.w($2); return coalesce($1, 0) + $2; end $$;
create aggregate %a%.agg(int) (sfunc = %a%.agg_sf, stype = int);
create function %a%.lower(text) returns text language plpgsql as $$
  begin perform %a%.w(1); return $1; end $$;
create function public.length(int) returns int language plpgsql as $$
  begin perform %a%.w($1); return $1; end $$;
create function public.plus_w(int, int) returns int language plpgsql as $$
  begin perform %a%.w($1); return $1 OPERATOR(pg_catalog.+) $2; end $$;
create operator public.+ (leftarg = int, rightarg = int, function = public.plus_w);
create function public.pg_sleep(int) returns void language plpgsql as $$
  begin perform %a%.w($1); end $$;
create function public.now() returns timestamptz language plpgsql as $$
  begin perform %a%.w(1); return statement_timestamp(); end $$;
create function %a%.pg_helper() returns boolean language sql as $$ select %a%.w(1) $$;
create view %a%.v as select %a%.w(1) as w;
create table %a%.rls (n int); insert into %a%.rls values (1);
alter table %a%.rls enable row level security;
alter table %a%.rls force row level security;
create policy p on %a%.rls using (%a%.w(n));
";

/// `sql` twice, each to be refused.
fn twice(sql: &'static str) -> Vec<Step> {
    vec![q(Refused, sql), q(Refused, sql)]
}

fn after(first: &'static str, sql: &'static str) -> Vec<Step> {
    let mut steps = vec![q(Any, first)];
    steps.extend(twice(sql));
    steps
}

#[tokio::test]
async fn cause4_code_runs_through_more_than_written_out_calls() {
    let (db, extra) = fixture().await;
    db.as_owner(CODE_PATHS).await;
    let h = gateway(&db, &extra, false).await;
    let variants = vec![
        v("a user operator", twice("SELECT 1 OPERATOR(%a%.<~~>) 2")),
        v(
            "the operator found through search_path",
            after("SET search_path = %a%, pg_catalog", "SELECT 1 <~~> 2"),
        ),
        v("a cast", twice("SELECT 5::%a%.ct")),
        v("a domain CHECK", twice("SELECT 5::%a%.d")),
        v(
            "an aggregate's state function",
            twice("SELECT %a%.agg(x) FROM generate_series(1, 2) x"),
        ),
        v(
            "a Parse whose parameter type is the domain",
            vec![
                typed(Refused, "SELECT $1 IS NOT NULL", "%a%.d", 7),
                typed(Refused, "SELECT $1 IS NOT NULL", "%a%.d", 8),
            ],
        ),
        v(
            "lower(text) shadowed in an earlier schema",
            after("SET search_path = %a%, pg_catalog", "SELECT lower('X')"),
        ),
        v(
            "length(5) resolves to public.length(int)",
            twice("SELECT length(5)"),
        ),
        v(
            "+ shadowed in public",
            after("SET search_path = public, pg_catalog", "SELECT 1 + 2"),
        ),
        v(
            "pg_sleep(0) resolves to public.pg_sleep(int)",
            twice("SELECT pg_sleep(0)"),
        ),
        v(
            "now() shadowed in public",
            after("SET search_path = public, pg_catalog", "SELECT now()"),
        ),
        v(
            "A.pg_helper(), not in pg_catalog",
            twice("SELECT %a%.pg_helper()"),
        ),
        v(
            "a writing function called by name",
            twice("SELECT %a%.w(9)"),
        ),
        v(
            "the forbidden schema's function by name",
            vec![q(Refused, "SELECT %f%.leak()")],
        ),
        v(
            "the forbidden schema's function through search_path",
            vec![q(Any, "SET search_path = %f%"), q(Refused, "SELECT leak()")],
        ),
        v(
            "a view calling a writing function",
            twice("SELECT * FROM %a%.v"),
        ),
        v(
            "a row-security policy calling a writing function",
            twice("SELECT * FROM %a%.rls"),
        ),
    ];
    check_all(&h, &db, false, "#21 cause 4", &variants).await;
}

/// Ordinary reads a read-only session must be able to run (`%a%` the
/// allowed schema, whose `items` has ids 1–3).
const READS: &[&str] = &[
    "SELECT * FROM %a%.items ORDER BY id",
    "SELECT a.id, b.name FROM %a%.items a JOIN %a%.items b USING (id) WHERE a.id > 1",
    "WITH x AS (SELECT * FROM %a%.items) SELECT count(*) FROM x",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
    "SELECT id, row_number() OVER (ORDER BY id), sum(id) OVER () FROM %a%.items",
    "SELECT id, lag(name) OVER (ORDER BY id) FROM %a%.items",
    "EXPLAIN SELECT * FROM %a%.items WHERE id = 1",
    "EXPLAIN (COSTS OFF, VERBOSE) SELECT name FROM %a%.items",
    "SHOW search_path",
    "SHOW timezone",
    "SET timezone = 'UTC'",
    "SET statement_timeout = '5s'",
    "SET search_path = %a%, public",
    "BEGIN; DECLARE c CURSOR FOR SELECT * FROM %a%.items ORDER BY id; FETCH 2 FROM c; CLOSE c; COMMIT",
    "SELECT count(*), sum(id), string_agg(name, ',' ORDER BY id), max(name) FROM %a%.items",
    "SELECT date_trunc('day', timestamp '2024-05-06 07:08:09'), extract(year FROM date '2024-01-01'), \
     age(timestamp '2024-01-01', timestamp '2020-01-01'), current_date",
    "SELECT json_build_object('a', 1), '{\"a\": 1}'::jsonb -> 'a', jsonb_agg(name) FROM %a%.items",
    "SELECT name FROM %a%.items WHERE EXISTS (SELECT 1 FROM %a%.notes WHERE notes.id = items.id)",
    "SELECT name, count(*) FROM %a%.items GROUP BY name HAVING count(*) >= 1",
    "SELECT id FROM %a%.items UNION SELECT id FROM %a%.notes ORDER BY 1",
    "SELECT i.id, g FROM %a%.items i CROSS JOIN LATERAL generate_series(1, i.id) g",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT current_user, session_user, current_database()",
    "SELECT upper(name), substr(name, 1, 2), replace(name, 'o', '0'), coalesce(NULL, name) FROM %a%.items",
    "SELECT CASE WHEN id > 1 THEN 'big' ELSE 'small' END, regexp_replace(name, 'e', 'E', 'g') FROM %a%.items",
    "SELECT * FROM pg_catalog.pg_class LIMIT 1",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = '%a%'",
    "SELECT body FROM %a%.notes",
    "TABLE %a%.items",
    "BEGIN READ ONLY; SELECT * FROM %a%.items; COMMIT",
];

async fn reads_pass(db: &Db, h: &Harness) -> Vec<String> {
    let mut failures = Vec::new();
    for read in READS {
        let sql = db.fill(read);
        let client = h.driver(&h.analyst(), "writer").await.expect("login");
        if let Err(e) = client.simple_query(&sql).await {
            failures.push(format!("{sql}: {e:?}"));
        }
    }
    // Prepared SELECTs over the extended protocol.
    let client = h.driver(&h.analyst(), "writer").await.expect("login");
    let stmt = client
        .prepare(&db.fill("SELECT name FROM %a%.items WHERE id = $1"))
        .await;
    match stmt {
        Ok(stmt) => {
            for id in 1..=3i32 {
                if let Err(e) = client.query(&stmt, &[&id]).await {
                    failures.push(format!("prepared select ({id}): {e:?}"));
                }
            }
        }
        Err(e) => failures.push(format!("prepare select: {e:?}")),
    }
    if let Err(e) = client
        .query_one(
            &db.fill("SELECT count(*) FROM %a%.items WHERE id > $1"),
            &[&0i32],
        )
        .await
    {
        failures.push(format!("query with a parameter: {e:?}"));
    }
    failures
}

#[tokio::test]
async fn ordinary_reads_are_not_refused_with_or_without_the_fixture_objects() {
    let plain = Db::create().await;
    let (db, extra) = fixture().await;
    db.as_owner(CODE_PATHS).await;
    let mut failures = Vec::new();
    {
        let h = read_only_gateway(&plain, false).await;
        failures.extend(
            reads_pass(&plain, &h)
                .await
                .into_iter()
                .map(|f| format!("without fixture objects: {f}")),
        );
    }
    {
        let h = gateway(&db, &extra, false).await;
        failures.extend(
            reads_pass(&db, &h)
                .await
                .into_iter()
                .map(|f| format!("with fixture objects: {f}")),
        );
    }
    assert!(
        failures.is_empty(),
        "{} reads refused or failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Defence in depth (#21): the same grant over an upstream user that can
/// only read (`pg_read_all_data`) loses nothing a reader would miss, and
/// the writes the gateway refuses fail at the server too.
#[tokio::test]
async fn ordinary_reads_pass_over_a_select_only_upstream_user() {
    let (db, extra) = fixture().await;
    db.as_owner(CODE_PATHS).await;
    let h = Harness::with(Options {
        policy: policy_with(&db, &extra),
        database: db.name.clone(),
        roles: vec![TestRole {
            name: "writer",
            user: "idgate_ro",
            password: None,
        }],
        ..Options::default()
    })
    .await;
    let failures = reads_pass(&db, &h).await;
    assert!(
        failures.is_empty(),
        "{} reads refused or failed over a SELECT-only user:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let before = db.state().await;
    let client = h.driver(&h.analyst(), "writer").await.expect("login");
    for sql in [
        "SELECT %a%.w(1)",
        "INSERT INTO %a%.audit VALUES (1)",
        "SELECT nextval('%a%.seq')",
    ] {
        assert!(client.simple_query(&db.fill(sql)).await.is_err(), "{sql}");
    }
    assert_eq!(db.state().await, before);
}

/// Whether `sql` through `client` is the gateway's refusal (42501).
async fn refused(client: &tokio_postgres::Client, sql: &str) -> bool {
    match client.simple_query(sql).await {
        Err(e) => e.as_db_error().is_some_and(|d| {
            d.code().code() == "42501" && d.message().starts_with("permission denied for")
        }),
        Ok(_) => false,
    }
}

/// The catalogue is read again when it changes: a table or function made
/// after the gateway started is judged as if it had been there before.
#[tokio::test]
async fn objects_created_after_the_gateway_started_are_noticed() {
    let db = Db::create().await;
    let h = read_only_gateway(&db, false).await;
    let client = h.driver(&h.analyst(), "writer").await.expect("login");
    client
        .simple_query(&db.fill("SET search_path = %f%, %a%"))
        .await
        .expect("set path");
    db.as_owner("create table %a%.late (v text); insert into %a%.late values ('open')")
        .await;
    eventually("the allowed schema's new table to be readable", || {
        let client = &client;
        async move { client.simple_query("SELECT v FROM late").await.is_ok() }
    })
    .await;
    // The same name, now first on the path in the forbidden schema.
    db.as_owner("create table %f%.late (v text); insert into %f%.late values ('%secret%')")
        .await;
    eventually("the forbidden schema's new table to shadow it", || {
        let client = &client;
        async move { refused(client, "SELECT v FROM late").await }
    })
    .await;
    // A built-in name overloaded after start: upper(int) is the user's.
    assert!(!refused(&client, "SELECT upper('x')").await);
    db.as_owner(
        "create function %a%.upper(int) returns text language sql as $$ select 'user code' $$",
    )
    .await;
    eventually("a new overload of a built-in to count as user code", || {
        let client = &client;
        async move { refused(client, "SELECT upper(5)").await }
    })
    .await;
    assert!(!refused(&client, "SELECT pg_catalog.upper('x')").await);
}

/// Defence in depth (#21): every transaction of a session without `write`
/// starts read-only at the server, whatever way it starts, and nothing the
/// client may send makes it read-write (after its first query PostgreSQL
/// itself refuses to).
#[tokio::test]
async fn every_transaction_starts_read_only_and_stays_so() {
    let db = Db::create().await;
    for pooled in [false, true] {
        let h = read_only_gateway(&db, pooled).await;
        let client = h.driver(&h.analyst(), "writer").await.expect("login");
        for (start, end) in [
            ("", ""),
            ("BEGIN", "COMMIT"),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE", "ROLLBACK"),
            ("START TRANSACTION", "COMMIT"),
            ("BEGIN DEFERRABLE", "COMMIT"),
        ] {
            if !start.is_empty() {
                client.simple_query(start).await.expect(start);
            }
            let rows = client
                .simple_query("SHOW transaction_read_only")
                .await
                .expect("show");
            let value = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            });
            assert_eq!(
                value.as_deref(),
                Some("on"),
                "after `{start}` (pooled {pooled})"
            );
            if !end.is_empty() {
                client.simple_query(end).await.expect(end);
            }
        }
        let variants = vec![
            v(
                "BEGIN; SET TRANSACTION READ WRITE",
                vec![
                    q(Any, "BEGIN"),
                    q(Refused, "SET TRANSACTION READ WRITE"),
                    q(Any, "ROLLBACK"),
                ],
            ),
            v("BEGIN READ WRITE", vec![q(Refused, "BEGIN READ WRITE")]),
            v(
                "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
                vec![q(
                    Refused,
                    "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
                )],
            ),
            v(
                "SET LOCAL transaction_read_only",
                vec![
                    q(Any, "BEGIN"),
                    q(Refused, "SET LOCAL transaction_read_only = off"),
                    q(Any, "ROLLBACK"),
                ],
            ),
            v(
                "set_config('transaction_read_only', …, true)",
                vec![
                    q(Any, "BEGIN"),
                    q(
                        Refused,
                        "SELECT set_config('transaction_read_only', 'off', true)",
                    ),
                    q(Any, "ROLLBACK"),
                ],
            ),
            v(
                "SET SESSION CHARACTERISTICS … READ WRITE",
                vec![q(
                    Refused,
                    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
                )],
            ),
            v(
                "SET default_transaction_read_only",
                vec![q(Refused, "SET default_transaction_read_only = off")],
            ),
            v("RESET ALL", vec![q(Refused, "RESET ALL")]),
            v("DISCARD ALL", vec![q(Refused, "DISCARD ALL")]),
        ];
        check_all(&h, &db, pooled, "read-only transactions", &variants).await;
    }
}
