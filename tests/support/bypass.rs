//! Machinery shared by the policy-bypass tests (`policy_bypass_causes`,
//! `policy_server_truth`): a database of its own per test, owned by the
//! writable login the read-only grant uses, a gateway in front of it,
//! scenarios of statements run through the gateway, and every effect
//! checked directly on PostgreSQL as the superuser — never through the
//! client's own view of what happened.
//!
//! Placeholders in scenario SQL: `%a%` the allowed schema, `%f%` the
//! forbidden schema, `%db%` the database, `%victim%` the pid of an idle
//! backend of the same login, `%busy%` the pid of one running
//! `pg_sleep`, `%lo%` a large object the login owns, `%lock%` an advisory
//! lock key of this scenario, `%secret%` the forbidden data.

#![allow(dead_code)]

use std::time::Duration;

use bytes::BytesMut;
use idgate::config::{PoolConfig, PoolMode};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::*;

/// The person the read-only grant is for, as the gateway stamps them.
pub const ANALYST: &str = "ann@example.com";
/// A name a client must not be able to give itself.
pub const IMPOSTOR: &str = "idgate:ceo@example.com";

/// Analysts get connect, read, session and transaction on `app/writer`
/// (whose upstream login can write); nothing may touch the schema `forbidden`.
pub fn policy(forbidden: &str) -> String {
    format!(
        r#"
@id("analysts-read-only")
permit(
  principal in Group::"analysts",
  action in [Action::"connect", Action::"read", Action::"session", Action::"transaction"],
  resource == Role::"app/writer"
);

@id("forbidden-schema")
forbid(principal, action, resource)
when {{ context has schemas && context.schemas.contains("{forbidden}") }};
"#
    )
}

/// A database of one test: `allowed` and `forbidden` schemas, owned by
/// `idgate_scram`. Dropped (with force) when the value is dropped, also
/// when the test panics.
pub struct Db {
    pub name: String,
    pub allowed: String,
    pub forbidden: String,
    pub secret: String,
    /// The superuser in this database.
    pub admin: Client,
}

impl Db {
    pub async fn create() -> Db {
        let name = unique_name("idgate_bypass");
        admin_sql(&format!("create database {name} owner idgate_scram")).await;
        let allowed = unique_name("open");
        let forbidden = unique_name("secret");
        let secret = unique_name("topsecret").replace('_', "x");
        let admin = connect_direct(&name, "postgres", None).await;
        let db = Db {
            name,
            allowed,
            forbidden,
            secret,
            admin,
        };
        db.as_owner(
            "create schema %a%; create schema %f%;
             create table %a%.items (id int primary key, name text);
             insert into %a%.items values (1, 'one'), (2, 'two'), (3, 'three');
             create table %a%.notes (id int, body text);
             insert into %a%.notes values (1, 'hello');
             create table %a%.audit (n int);
             create sequence %a%.seq;
             create table %f%.keys (id int, secret text);
             insert into %f%.keys values (1, '%secret%');
             create table %f%.notes (id int, body text);
             insert into %f%.notes values (1, '%secret%');
             create function %f%.leak() returns text language sql
               as $$ select secret from %f%.keys limit 1 $$;
             create function %a%.leak() returns text language sql as $$ select 'nothing' $$;
             -- A write a read-only session can reach in two calls: the
             -- first turns the session's read-only default off (hidden from
             -- the gateway inside the function), the second inserts.
             create function %a%.w(x int) returns boolean language plpgsql as $$
             begin
               if current_setting('transaction_read_only')::boolean then
                 perform set_config('default_transaction_read_only', 'off', false);
               else
                 insert into %a%.audit values (x);
               end if;
               return true;
             end $$;",
        )
        .await;
        db
    }

    /// `sql` with the placeholders of this database filled in.
    pub fn fill(&self, sql: &str) -> String {
        sql.replace("%a%", &self.allowed)
            .replace("%f%", &self.forbidden)
            .replace("%db%", &self.name)
            .replace("%secret%", &self.secret)
    }

    /// Runs `sql` (placeholders filled) as `idgate_scram`, the owner.
    pub async fn as_owner(&self, sql: &str) {
        let sql = format!("set role idgate_scram; {}; reset role", self.fill(sql));
        self.admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("fixture SQL failed: {e:?}\n{sql}"));
    }

    /// Runs `sql` (placeholders filled) as the superuser.
    pub async fn as_admin(&self, sql: &str) {
        let sql = self.fill(sql);
        self.admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("admin SQL failed: {e:?}\n{sql}"));
    }

    /// One value of a superuser query, as text ('' for NULL).
    pub async fn value(&self, sql: &str) -> String {
        let sql = self.fill(sql);
        let msgs = self.admin.simple_query(&sql).await.expect(&sql);
        msgs.iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// What a scenario may not change, read as the superuser.
    pub async fn state(&self) -> String {
        self.value(
            "select (select count(*) from %a%.audit) || ' audit rows; items ' || \
             coalesce((select string_agg(id || ':' || name, ',' order by id) from %a%.items), '') || \
             '; ' || (select count(*) from pg_largeobject_metadata) || ' large objects; seq ' || \
             (select last_value from %a%.seq)",
        )
        .await
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (host, port) = pg_host_port();
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q"])
            .arg(format!(
                "host={host} port={port} dbname=postgres user=postgres"
            ))
            .args([
                "-c",
                &format!("drop database if exists {} with (force)", self.name),
            ])
            .output();
    }
}

/// A tokio-postgres connection straight to PostgreSQL (not the gateway).
pub async fn connect_direct(db: &str, user: &str, password: Option<&str>) -> Client {
    let (host, port) = pg_host_port();
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .dbname(db)
        .user(user)
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = password {
        config.password(p);
    }
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("direct connection");
    tokio::spawn(connection);
    client
}

pub async fn read_only_gateway(db: &Db, transaction_pooling: bool) -> Harness {
    let pool = if transaction_pooling {
        PoolConfig {
            mode: PoolMode::Transaction,
            max_size: 1,
            ..PoolConfig::default()
        }
    } else {
        PoolConfig::default()
    };
    Harness::with(Options {
        policy: policy(&db.forbidden),
        database: db.name.clone(),
        roles: vec![WRITER],
        pool,
        ..Options::default()
    })
    .await
}

/// Whether a step must be refused by the gateway.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Expect {
    /// 42501 "permission denied for…" (or, under transaction pooling,
    /// 0A000 "…transaction pooling…"): the gateway's refusal.
    Refused,
    /// Whatever happens (a harmless step, or one the server refuses).
    Any,
}

pub use Expect::{Any, Refused};

/// One thing a client does through the gateway.
#[derive(Clone, Debug)]
pub enum Step {
    /// A simple-protocol Query.
    Q(Expect, String),
    /// Parse/Bind/Execute of an unnamed statement with text parameters.
    X(Expect, String, Vec<String>),
    /// Parse a named statement (tokio-postgres `prepare`), kept for `Run`.
    Prepare(Expect, String),
    /// Bind/Execute the statement of the last `Prepare`.
    Run(Expect),
    /// Parse `sql` with the type of `$1` given as the OID of type `ty`
    /// (`%a%.d`), then bind the integer `value` to it.
    Typed(Expect, String, String, i32),
}

pub use Step::Run;

pub fn q(e: Expect, sql: impl Into<String>) -> Step {
    Step::Q(e, sql.into())
}

pub fn x(e: Expect, sql: impl Into<String>, params: &[&str]) -> Step {
    Step::X(
        e,
        sql.into(),
        params.iter().map(|p| (*p).to_owned()).collect(),
    )
}

pub fn prepare(e: Expect, sql: impl Into<String>) -> Step {
    Step::Prepare(e, sql.into())
}

pub fn typed(e: Expect, sql: impl Into<String>, ty: impl Into<String>, value: i32) -> Step {
    Step::Typed(e, sql.into(), ty.into(), value)
}

/// `text` as a quote-free expression: `chr(100)||chr(101)…`.
pub fn chrs(text: &str) -> String {
    text.chars()
        .map(|c| format!("chr({})", c as u32))
        .collect::<Vec<_>>()
        .join("||")
}

use Step::{Prepare, Q, Typed, X};

pub struct Variant {
    pub name: &'static str,
    /// A near-miss today's code already refuses, kept so a fix does not
    /// regress (said in the test's comment and report).
    pub guard: bool,
    pub steps: Vec<Step>,
}

pub fn v(name: &'static str, steps: Vec<Step>) -> Variant {
    Variant {
        name,
        guard: false,
        steps,
    }
}

pub fn guard(name: &'static str, steps: Vec<Step>) -> Variant {
    Variant {
        name,
        guard: true,
        steps,
    }
}

/// An integer sent in binary for a parameter of any integer-like type (a
/// domain over int4 included).
#[derive(Debug)]
struct AnyInt(i32);

impl ToSql for AnyInt {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(&Type::INT4, out)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The outcome of one step: rows as text, or the error's code and message.
type Outcome = Result<String, (String, String)>;

fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None => ("client".into(), e.to_string()),
    }
}

fn simple_rows(msgs: &[SimpleQueryMessage]) -> String {
    let mut out = String::new();
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            for i in 0..r.len() {
                out.push_str(r.get(i).unwrap_or("NULL"));
                out.push('|');
            }
            out.push('\n');
        }
    }
    out
}

fn rows_text(rows: &[tokio_postgres::Row]) -> String {
    let mut out = String::new();
    for r in rows {
        for i in 0..r.len() {
            let cell = r
                .try_get::<_, Option<String>>(i)
                .ok()
                .flatten()
                .or_else(|| {
                    r.try_get::<_, Option<bool>>(i)
                        .ok()
                        .flatten()
                        .map(|b| b.to_string())
                })
                .unwrap_or_default();
            out.push_str(&cell);
            out.push('|');
        }
        out.push('\n');
    }
    out
}

/// Whether `outcome` is the gateway's refusal.
pub fn is_refusal(outcome: &Outcome) -> bool {
    match outcome {
        Err((code, msg)) => {
            (code == "42501" && msg.starts_with("permission denied for"))
                || (code == "0A000" && msg.contains("transaction pooling"))
        }
        Ok(_) => false,
    }
}

/// What a scenario's world looks like: the victims and the values the
/// placeholders stand for.
struct Victims {
    idle: Client,
    idle_pid: i32,
    busy: Option<(i32, tokio::task::JoinHandle<()>)>,
    lo: Option<String>,
    lock: i32,
}

async fn victims(db: &Db, text: &str) -> Victims {
    let idle = connect_direct(&db.name, "idgate_scram", Some("scram-secret")).await;
    let idle_pid: i32 = idle
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let busy = if text.contains("%busy%") {
        let c = connect_direct(&db.name, "idgate_scram", Some("scram-secret")).await;
        let pid: i32 = c
            .query_one("select pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let task = tokio::spawn(async move {
            let _ = c.simple_query("select pg_sleep(60)").await;
            // Keep the client (and its connection) until aborted.
            std::future::pending::<()>().await;
        });
        let check = format!(
            "select count(*) from pg_stat_activity where pid = {pid} and state = 'active' \
             and query = 'select pg_sleep(60)'"
        );
        eventually("the busy victim to be running", || async {
            db.value(&check).await == "1"
        })
        .await;
        Some((pid, task))
    } else {
        None
    };
    let lo = if text.contains("%lo%") {
        Some(
            db.value("set role idgate_scram; select lo_create(0)::text")
                .await,
        )
    } else {
        None
    };
    db.as_admin("reset role").await;
    Victims {
        idle,
        idle_pid,
        busy,
        lo,
        lock: rand::random::<i32>().abs() % 1_000_000_000 + 1,
    }
}

fn fill_step(db: &Db, v: &Victims, sql: &str) -> String {
    db.fill(sql)
        .replace("%victim%", &v.idle_pid.to_string())
        .replace(
            "%busy%",
            &v.busy.as_ref().map(|b| b.0).unwrap_or(0).to_string(),
        )
        .replace("%lo%", v.lo.as_deref().unwrap_or("0"))
        .replace("%lock%", &v.lock.to_string())
}

/// Runs the steps on `client`, returning each outcome.
pub async fn run_steps(
    db: &Db,
    client: &Client,
    steps: &[Step],
    fill: &dyn Fn(&str) -> String,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut prepared: Option<tokio_postgres::Statement> = None;
    let _ = db;
    for step in steps {
        let outcome = match step {
            Q(_, sql) => client
                .simple_query(&fill(sql))
                .await
                .map(|m| simple_rows(&m))
                .map_err(|e| db_error(&e)),
            X(_, sql, params) => {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                client
                    .query(&fill(sql), &params)
                    .await
                    .map(|r| rows_text(&r))
                    .map_err(|e| db_error(&e))
            }
            Prepare(_, sql) => match client.prepare(&fill(sql)).await {
                Ok(s) => {
                    prepared = Some(s);
                    Ok(String::new())
                }
                Err(e) => Err(db_error(&e)),
            },
            Run(_) => match &prepared {
                Some(s) => client
                    .query(s, &[])
                    .await
                    .map(|r| rows_text(&r))
                    .map_err(|e| db_error(&e)),
                None => Err(("client".into(), "nothing prepared".into())),
            },
            Typed(_, sql, ty, value) => {
                let ty_name = fill(ty);
                let oid: u32 = db
                    .value(&format!("select '{ty_name}'::regtype::oid"))
                    .await
                    .parse()
                    .expect("type oid");
                let ty = Type::new(ty_name, oid, Kind::Domain(Type::INT4), db.allowed.clone());
                match client.prepare_typed(&fill(sql), &[ty]).await {
                    Ok(s) => client
                        .query(&s, &[&AnyInt(*value)])
                        .await
                        .map(|r| rows_text(&r))
                        .map_err(|e| db_error(&e)),
                    Err(e) => Err(db_error(&e)),
                }
            }
        };
        out.push(outcome);
    }
    out
}

fn expectation(step: &Step) -> Expect {
    match step {
        Q(e, _) | X(e, _, _) | Prepare(e, _) | Run(e) | Typed(e, _, _, _) => *e,
    }
}

fn show(step: &Step) -> String {
    match step {
        Q(_, s) | X(_, s, _) | Prepare(_, s) | Typed(_, s, _, _) => s.clone(),
        Run(_) => "<execute the prepared statement>".into(),
    }
}

/// The settings a pooled server connection holds, read by a client that
/// lands on it: pid, search_path, read-only, identity, application name,
/// standard_conforming_strings, client_encoding.
const POOLED_STATE: &str = "select pg_backend_pid()::text || ' search_path=' || current_setting('search_path') \
     || ' read_only=' || current_setting('default_transaction_read_only') \
     || ' identity=' || coalesce(current_setting('idgate.identity', true), '') \
     || ' app=' || current_setting('application_name') \
     || ' scs=' || current_setting('standard_conforming_strings') \
     || ' encoding=' || current_setting('client_encoding')";

async fn pooled_state(h: &Harness) -> Result<String, String> {
    let c = h
        .driver(&h.token("bob@example.com", &["analysts"]), "writer")
        .await
        .map_err(|e| e.to_string())?;
    let msgs = c
        .simple_query(POOLED_STATE)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(simple_rows(&msgs).trim_end_matches(['|', '\n']).to_owned())
}

/// Runs `variant` in a fresh session and returns what went wrong: steps
/// that should have been refused and were not, and every effect seen on
/// the database. Empty: the variant was held.
pub async fn check_variant(h: &Harness, db: &Db, pooled: bool, variant: &Variant) -> Vec<String> {
    let all_text: String = variant.steps.iter().map(show).collect();
    let vict = victims(db, &all_text).await;
    let before = db.state().await;
    let pooled_before = if pooled {
        Some(
            pooled_state(h)
                .await
                .expect("baseline of the pooled connection"),
        )
    } else {
        None
    };
    let mut problems = Vec::new();
    let client = h.driver(&h.analyst(), "writer").await.expect("login");
    let fill = |s: &str| fill_step(db, &vict, s);
    let outcomes = run_steps(db, &client, &variant.steps, &fill).await;
    for (i, (step, outcome)) in variant.steps.iter().zip(&outcomes).enumerate() {
        if expectation(step) == Refused && !is_refusal(outcome) {
            let what = match outcome {
                Ok(rows) => format!("allowed, returned {:?}", rows.trim()),
                Err((code, msg)) => format!("not refused by the gateway but {code} {msg}"),
            };
            problems.push(format!("step {} `{}`: {what}", i + 1, show(step)));
        }
        if let Ok(rows) = outcome
            && rows.contains(&db.secret)
        {
            problems.push(format!(
                "step {} `{}` returned the forbidden data",
                i + 1,
                show(step)
            ));
        }
    }
    // The session's own identity, while it is still connected.
    if !pooled
        && let Ok(msgs) = client
            .simple_query("select current_setting('idgate.identity', true)")
            .await
    {
        let got = simple_rows(&msgs);
        if got.trim().trim_end_matches('|') != ANALYST {
            problems.push(format!("idgate.identity is now {:?}", got.trim()));
        }
    }
    let impostors = db
        .value(&format!(
            "select count(*) from pg_stat_activity where datname = '{}' \
             and application_name = '{IMPOSTOR}'",
            db.name
        ))
        .await;
    if impostors != "0" {
        problems.push(format!("pg_stat_activity shows a backend named {IMPOSTOR}"));
    }
    let locks = db
        .value(&format!(
            "select count(*) from pg_locks where locktype = 'advisory' and objid = {}",
            vict.lock
        ))
        .await;
    if locks != "0" {
        problems.push(format!("an advisory lock {} is held", vict.lock));
    }
    drop(client);
    let after = db.state().await;
    if after != before {
        problems.push(format!("data changed: before {before:?}, after {after:?}"));
    }
    // The idle victim: still listed, and still answering.
    let listed = db
        .value(&format!(
            "select count(*) from pg_stat_activity where pid = {}",
            vict.idle_pid
        ))
        .await;
    let answers = vict.idle.simple_query("select 1").await.is_ok();
    if listed != "1" || !answers {
        problems.push(format!(
            "the idle victim backend {} was terminated",
            vict.idle_pid
        ));
    }
    if let Some((pid, task)) = &vict.busy {
        let active = db
            .value(&format!(
                "select count(*) from pg_stat_activity where pid = {pid} and state = 'active'"
            ))
            .await;
        if active != "1" || task.is_finished() {
            problems.push(format!(
                "the busy victim backend {pid} was cancelled or terminated"
            ));
        }
        db.as_admin(&format!("select pg_terminate_backend({pid})"))
            .await;
        task.abort();
    }
    if let Some(lo) = &vict.lo {
        let exists = db
            .value(&format!(
                "select count(*) from pg_largeobject_metadata where oid = {lo}"
            ))
            .await;
        if exists != "1" {
            problems.push(format!("large object {lo} was deleted"));
        }
        db.as_admin(&format!(
            "select lo_unlink(oid) from pg_largeobject_metadata where oid = {lo}"
        ))
        .await;
    }
    if let Some(before) = pooled_before {
        match pooled_state(h).await {
            Ok(after) if after == before => {}
            Ok(after) => problems.push(format!(
                "the next client on the pooled connection finds {after:?}, not {before:?}"
            )),
            Err(e) => problems.push(format!("the next client could not use the pool: {e}")),
        }
    }
    problems
}

/// Runs every variant, prints what each came to, and fails listing every
/// variant that was not held.
pub async fn check_all(h: &Harness, db: &Db, pooled: bool, cause: &str, variants: &[Variant]) {
    let mut failures = Vec::new();
    for variant in variants {
        let problems = check_variant(h, db, pooled, variant).await;
        let label = if variant.guard {
            "regression guard"
        } else {
            "bypass"
        };
        if problems.is_empty() {
            eprintln!("[{cause}] held ({label}): {}", variant.name);
        } else {
            eprintln!(
                "[{cause}] LET THROUGH ({label}): {}\n    {}",
                variant.name,
                problems.join("\n    ")
            );
            failures.push(format!(
                "{} ({label}):\n    {}",
                variant.name,
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{cause}: {} of {} variants let through:\n{}",
        failures.len(),
        variants.len(),
        failures.join("\n")
    );
}
