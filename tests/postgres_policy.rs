//! Per-statement policy through the real gateway and the real PostgreSQL.
//! The read-only caller logs in as an upstream role that CAN write, so every
//! refusal here is the gateway's doing: each write trick must come back as
//! 42501 and leave the data untouched, and ordinary reads must not be
//! refused.

mod support;

use support::*;
use tokio_postgres::SimpleQueryMessage;

const READ_ONLY_POLICY: &str = r#"
@id("analysts-read-only")
permit(
  principal in Group::"analysts",
  action in [Action::"connect", Action::"read", Action::"session", Action::"transaction"],
  resource == Role::"app/writer"
);
"#;

/// A schema of our own in `idgate_test`, owned by the writable login.
struct Fixture {
    schema: String,
}

impl Fixture {
    async fn create() -> Fixture {
        let schema = unique_name("pol");
        admin_sql_in(
            "idgate_test",
            &format!(
                "create schema {schema} authorization idgate_scram; \
                 set role idgate_scram; \
                 create table {schema}.t (id int primary key, v text); \
                 insert into {schema}.t values (1, 'a'), (2, 'b'), (3, 'c'); \
                 create sequence {schema}.s; \
                 create view {schema}.tv as select * from {schema}.t;"
            ),
        )
        .await;
        Fixture { schema }
    }

    async fn drop(self) {
        admin_sql_in(
            "idgate_test",
            &format!("drop schema {} cascade", self.schema),
        )
        .await;
    }
}

async fn read_only_gateway() -> Harness {
    Harness::with(Options {
        policy: READ_ONLY_POLICY.into(),
        ..Options::default()
    })
    .await
}

async fn session(h: &Harness, schema: &str) -> tokio_postgres::Client {
    let client = h.driver(&h.analyst(), "writer").await.expect("login");
    client
        .simple_query(&format!("set search_path to {schema}, public"))
        .await
        .expect("search_path is a harmless setting");
    client
}

async fn table_state(schema: &str) -> String {
    let (host, port) = pg_host_port();
    let out = run(tokio::process::Command::new("psql")
        .arg(format!("host={host} port={port} dbname=idgate_test user=postgres"))
        .args(["-X", "-A", "-t", "-c"])
        .arg(format!(
            "select count(*), string_agg(id || v, ',' order by id), (select last_value from {schema}.s) from {schema}.t"
        )))
    .await;
    stdout(&out).trim().to_owned()
}

/// Statements a read-only session must refuse (`$s` is the schema).
const WRITE_TRICKS: &[&str] = &[
    "insert into t values (10, 'x')",
    "insert into t select id + 100, v from t",
    "update t set v = 'y'",
    "delete from t",
    "DELETE FROM \"t\"",
    "merge into t using (select 1 as id) s on t.id = s.id when matched then delete",
    "truncate t",
    "with d as (delete from t returning *) select * from d",
    "with x as (select 1), u as (update t set v = 'z' returning 1) select * from x",
    "with recursive r(n) as (select 1) insert into t values (11, 'r')",
    "select * into t2 from t",
    "create table t3 as select * from t",
    "explain analyze delete from t",
    "do $$ begin delete from t; end $$",
    "call some_procedure()",
    "copy t from stdin",
    "copy t to program 'id'",
    "copy (select 1) to '/tmp/idgate-should-not-exist'",
    "prepare w as delete from t",
    "execute w",
    "lock table t",
    "select * from t for update",
    "select * from t for share",
    "select nextval('$s.s')",
    "select setval('$s.s', 42)",
    "select set_config('default_transaction_read_only', 'off', false)",
    "select set_config('transaction_read_only', 'off', true)",
    "select set_config('role', 'postgres', false)",
    "set default_transaction_read_only = off",
    "set default_transaction_read_only to false",
    "set transaction_read_only = off",
    "set session characteristics as transaction read write",
    "reset default_transaction_read_only",
    "set role postgres",
    "reset role",
    "set session authorization postgres",
    "reset session authorization",
    "reset all",
    "begin read write",
    "start transaction read write",
    "select 1; delete from t",
    "/* just a comment */ delete from t",
    "-- a comment\ndelete from t",
    "select $$ ; $$; delete from t",
    "select 'it''s fine'; update t set v = 'q'",
    "create table x (a int)",
    "drop table t",
    "alter table t add column z int",
    "create index on t (v)",
    "grant select on t to public",
    "comment on table t is 'x'",
    "vacuum t",
    "analyze t",
    "cluster t",
    "reindex table t",
    "refresh materialized view mv",
    "select pg_terminate_backend(1)",
    "select pg_catalog.pg_reload_conf()",
    "select lo_import('/etc/hostname')",
    "alter system set work_mem = '1MB'",
    "create function f() returns int as 'select 1' language sql",
    "create schema evil",
    "listen x; insert into t values (12, 'l')",
    "this is not sql",
    "set application_name = 'reports'",
];

#[tokio::test]
async fn read_only_session_refuses_every_write_trick_and_changes_nothing() {
    let fixture = Fixture::create().await;
    let before = table_state(&fixture.schema).await;
    let h = read_only_gateway().await;
    let mut failures = Vec::new();
    for trick in WRITE_TRICKS {
        let sql = trick.replace("$s", &fixture.schema);
        // A fresh session each time: a refused statement can leave a
        // transaction aborted, which would mask the next one.
        let client = session(&h, &fixture.schema).await;
        match client.simple_query(&sql).await {
            Ok(_) => failures.push(format!("{sql}: was allowed")),
            Err(e) => match e.as_db_error() {
                Some(db) if db.code().code() == "42501" => {
                    if !db.message().contains("permission denied for") {
                        failures.push(format!(
                            "{sql}: 42501 not from the gateway: {}",
                            db.message()
                        ));
                    }
                }
                Some(db) => failures.push(format!(
                    "{sql}: refused by the server ({} {}) not the gateway",
                    db.code().code(),
                    db.message()
                )),
                None => failures.push(format!("{sql}: {e}")),
            },
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} write tricks not refused by the gateway:\n{}",
        failures.len(),
        WRITE_TRICKS.len(),
        failures.join("\n")
    );
    assert_eq!(table_state(&fixture.schema).await, before, "data changed");
    drop(h);
    fixture.drop().await;
}

/// Ordinary reads a read-only session must not refuse.
const LEGIT_READS: &[&str] = &[
    "select * from t",
    "select count(*) from t where v = 'a'",
    "with x as (select * from t) select * from x",
    "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r",
    "select * from tv",
    "select t.id, u.v from t join t u on u.id = t.id",
    "explain select * from t",
    "explain (costs off) select * from t where id = 1",
    "show work_mem",
    "show all",
    "set extra_float_digits = 3",
    "set search_path to public",
    "set timezone = 'UTC'",
    "set statement_timeout = '5s'",
    "reset statement_timeout",
    "begin; select 1; commit",
    "begin read only; select * from t; rollback",
    "start transaction isolation level repeatable read; select 1; commit",
    "set search_path to $s; select * from t",
    "select 'delete from t'",
    "select 'update t set v = 1; drop table t'",
    "select $$ insert into t values (1) $$",
    "select 1 as \"delete\", 2 as \"update\"",
    "select currval('$s.s') is null",
    "select now(), current_user, version()",
    "select * from pg_catalog.pg_tables limit 1",
    "select * from information_schema.tables limit 1",
    "values (1), (2)",
    "table t",
    "prepare r as select * from t where id = $1; execute r(1); deallocate r",
];

#[tokio::test]
async fn read_only_session_allows_ordinary_reads() {
    let fixture = Fixture::create().await;
    admin_sql_in(
        "idgate_test",
        &format!("select nextval('{}.s')", fixture.schema),
    )
    .await;
    let h = read_only_gateway().await;
    let mut failures = Vec::new();
    for read in LEGIT_READS {
        let sql = read.replace("$s", &fixture.schema);
        let client = session(&h, &fixture.schema).await;
        // Server errors (e.g. currval before nextval) are fine; a refusal
        // by the gateway is not.
        if let Err(e) = client.simple_query(&sql).await {
            match e.as_db_error() {
                Some(db) if db.code().code() != "42501" => {}
                Some(db) => failures.push(format!("{sql}: {}", db.message())),
                None => failures.push(format!("{sql}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} reads refused:\n{}",
        failures.len(),
        LEGIT_READS.len(),
        failures.join("\n")
    );
    drop(h);
    fixture.drop().await;
}

#[tokio::test]
async fn writes_through_the_extended_protocol_are_refused_at_parse() {
    let fixture = Fixture::create().await;
    let before = table_state(&fixture.schema).await;
    let h = read_only_gateway().await;
    let client = session(&h, &fixture.schema).await;

    let e = client
        .prepare("update t set v = $1 where id = $2")
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "42501", "{}", db.message());
    assert!(db.message().contains("write"), "{}", db.message());

    let e = client.execute("delete from t", &[]).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");

    // The session is still usable, and reads through Parse still work.
    let rows = client
        .query("select v from t where id = $1", &[&1])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "a");
    assert_eq!(table_state(&fixture.schema).await, before);
    drop(h);
    fixture.drop().await;
}

#[tokio::test]
async fn a_refused_write_inside_a_transaction_aborts_it() {
    let fixture = Fixture::create().await;
    let h = read_only_gateway().await;
    let client = session(&h, &fixture.schema).await;
    client.simple_query("begin").await.unwrap();
    let e = client.simple_query("delete from t").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");
    let e = client.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code().code(),
        "25P02",
        "the transaction must be aborted, as without the gateway"
    );
    client.simple_query("rollback").await.unwrap();
    let rows = client.simple_query("select 1").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))));
    drop(h);
    fixture.drop().await;
}

#[tokio::test]
async fn read_only_session_is_read_only_upstream_too() {
    let h = read_only_gateway().await;
    let client = h.driver(&h.analyst(), "writer").await.unwrap();
    let row = client
        .query_one("show default_transaction_read_only", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
}

#[tokio::test]
async fn denial_names_the_action_the_tables_and_is_audited() {
    let fixture = Fixture::create().await;
    let mut h = read_only_gateway().await;
    let client = session(&h, &fixture.schema).await;
    let e = client.simple_query("delete from t").await.unwrap_err();
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains("write"), "{msg}");
    assert!(msg.contains(&format!("{}.t", fixture.schema)), "{msg}");
    assert!(msg.contains("no policy permits"), "{msg}");
    drop(client);
    let events = h.stop_and_read_audit().await;
    let denied = events
        .iter()
        .find(|e| e["event"] == "denied" && e["statement"] == "delete from t")
        .unwrap_or_else(|| panic!("no denied event: {events:#?}"));
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["tables"][0], format!("{}.t", fixture.schema));
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("no policy permits")
    );
    fixture.drop().await;
}

#[tokio::test]
async fn schema_limited_analyst_reads_only_permitted_schemas() {
    let allowed = Fixture::create().await;
    let other = Fixture::create().await;
    let policy = format!(
        r#"
@id("analysts-connect")
permit(principal in Group::"analysts", action in [Action::"connect", Action::"session", Action::"transaction"], resource == Role::"app/writer");

@id("analysts-read-own-schema")
permit(principal in Group::"analysts", action == Action::"read", resource == Role::"app/writer")
when {{ ["{}", "pg_catalog"].containsAll(context.schemas) && (context.tables.isEmpty() || !context.schemas.isEmpty()) }};
"#,
        allowed.schema
    );
    let h = Harness::with(Options {
        policy,
        ..Options::default()
    })
    .await;
    let client = session(&h, &allowed.schema).await;
    let own = format!("select count(*) from {}.t", allowed.schema);
    client
        .simple_query(&own)
        .await
        .expect("own schema is readable");
    client
        .simple_query("select count(*) from t")
        .await
        .expect("unqualified names resolve through the tracked search_path");
    // Remembered as allowed; must be judged again once the path changes.
    client.simple_query("select * from t").await.unwrap();

    let e = client
        .simple_query(&format!("select * from {}.t", other.schema))
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(db.message().contains(&other.schema), "{}", db.message());
    let e = client
        .simple_query(&format!(
            "select * from t join {}.t o using (id)",
            other.schema
        ))
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");

    // After switching the search path, unqualified names mean the other schema.
    client
        .simple_query(&format!("set search_path to {}", other.schema))
        .await
        .unwrap();
    let e = client.simple_query("select * from t").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");

    // A path set in a transaction that is rolled back never took effect:
    // `t` is still the other schema's, however the gateway tracks it.
    client.simple_query("begin").await.unwrap();
    client
        .simple_query(&format!("set search_path to {}", allowed.schema))
        .await
        .unwrap();
    client.simple_query("rollback").await.unwrap();
    let e = client.simple_query("select * from t").await.unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code().code(),
        "42501",
        "a rolled-back search_path must not open the other schema"
    );
    // Same with SET LOCAL, which ends with its transaction.
    client
        .simple_query(&format!(
            "begin; set local search_path to {}; commit",
            allowed.schema
        ))
        .await
        .unwrap();
    let e = client.simple_query("select * from t").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");
    drop(h);
    allowed.drop().await;
    other.drop().await;
}

/// The off-hours example's rule, with developers allowed everything else.
const OFF_HOURS_POLICY: &str = r#"
@id("developers-write")
permit(principal in Group::"developers", action, resource == Role::"app/writer");

@id("off-hours-read-only")
forbid(principal, action in [Action::"write", Action::"ddl", Action::"admin"], resource)
when { context.hour_utc < 8 || context.hour_utc >= 18 || context.weekday_utc >= 5 };
"#;

async fn write_at(
    when: time::OffsetDateTime,
    fixture: &Fixture,
) -> Result<(), tokio_postgres::Error> {
    let h = Harness::with(Options {
        policy: OFF_HOURS_POLICY.into(),
        now: Some(when),
        ..Options::default()
    })
    .await;
    let client = h.driver(&h.developer(), "writer").await.unwrap();
    client
        .simple_query(&format!("set search_path to {}", fixture.schema))
        .await
        .unwrap();
    client
        .simple_query("select * from t")
        .await
        .expect("reads work at any hour");
    client.simple_query("update t set v = v").await.map(|_| ())
}

#[tokio::test]
async fn off_hours_policy_blocks_writes_by_the_injected_clock() {
    use time::macros::datetime;
    let fixture = Fixture::create().await;
    // 2026-11-23 is a Monday.
    write_at(datetime!(2026-11-23 10:00 UTC), &fixture)
        .await
        .expect("Monday 10:00 UTC is business hours");
    for when in [
        datetime!(2026-11-23 03:00 UTC),
        datetime!(2026-11-23 18:00 UTC),
        datetime!(2026-11-29 10:00 UTC),
    ] {
        let e = write_at(when, &fixture).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{when}");
        assert!(
            db.message().contains("off-hours-read-only"),
            "{}",
            db.message()
        );
    }
    fixture.drop().await;
}
