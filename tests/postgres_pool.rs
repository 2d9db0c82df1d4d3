//! Upstream pooling through the real gateway and the real PostgreSQL:
//! session-mode reuse and reset, variants that keep read-only sessions
//! apart, transaction mode with many clients on few connections, prepared
//! statements that follow their client, session state refused, dead and
//! idle connections, cancels and exhaustion.

mod support;

use std::sync::Arc;
use std::time::Duration;

use idgate::config::{PoolConfig, PoolMode};
use idgate::postgres::pool::PoolStats;
use support::*;

fn pooled(mode: PoolMode, max_size: usize) -> Options {
    Options {
        pool: PoolConfig {
            mode,
            max_size,
            ..PoolConfig::default()
        },
        ..Options::default()
    }
}

fn stats(h: &Harness, role: &str) -> PoolStats {
    h.running
        .as_ref()
        .expect("running")
        .postgres
        .pools
        .get(TARGET, role)
        .expect("pool")
        .stats()
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

async fn text(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Wait (bounded) until the pool has `idle` idle connections: a session's
/// connection goes back just after the client has gone.
async fn until_idle(h: &Harness, role: &str, idle: usize) {
    for _ in 0..500 {
        if stats(h, role).idle == idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pool never had {idle} idle: {:?}", stats(h, role));
}

#[tokio::test]
async fn session_mode_reuses_a_connection_and_resets_it_between_people() {
    let h = Harness::with(pooled(PoolMode::Session, 1)).await;
    let table = unique_name("pool_temp");
    let a = h.driver(&h.developer(), "writer").await.unwrap();
    let pid = backend_pid(&a).await;
    a.batch_execute(&format!(
        "set work_mem = '1234kB'; create temp table {table} (x int); prepare p as select 1"
    ))
    .await
    .unwrap();
    assert_eq!(text(&a, "show work_mem").await, "1234kB");
    drop(a);
    until_idle(&h, "writer", 1).await;

    let b = h
        .driver(&h.token("bob@example.com", &["developers"]), "writer")
        .await
        .unwrap();
    assert_eq!(backend_pid(&b).await, pid, "the one pooled connection");
    assert_ne!(text(&b, "show work_mem").await, "1234kB");
    let temp: i64 = b
        .query_one(
            "select count(*) from pg_class where relname = $1 and relpersistence = 't'",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0, "temp table survived the reset");
    let prepared: i64 = b
        .query_one(
            "select count(*) from pg_prepared_statements where name = 'p'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(prepared, 0);
    assert_eq!(
        text(
            &b,
            "select current_setting('application_name') || ' ' || current_setting('idgate.identity')"
        )
        .await,
        "idgate:bob@example.com bob@example.com"
    );
}

/// Analysts may only read through the writer role; developers may write.
const MIXED_POLICY: &str = r#"
@id("analysts-read")
permit(principal in Group::"analysts", action in [Action::"connect", Action::"read"], resource == Role::"app/writer");

@id("developers-write")
permit(principal in Group::"developers", action, resource in Target::"app");
"#;

#[tokio::test]
async fn read_only_and_writing_sessions_never_share_a_connection() {
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let h = Harness::with(Options {
            policy: MIXED_POLICY.into(),
            ..pooled(mode, 1)
        })
        .await;
        let reader = h.driver(&h.analyst(), "writer").await.unwrap();
        assert_eq!(
            text(&reader, "show default_transaction_read_only").await,
            "on"
        );
        drop(reader);
        until_idle(&h, "writer", 1).await;

        let writer = h.driver(&h.developer(), "writer").await.unwrap();
        assert_eq!(
            text(&writer, "show default_transaction_read_only").await,
            "off",
            "{mode:?}: a writer got the read-only connection"
        );
        drop(writer);
        until_idle(&h, "writer", 1).await;

        let reader = h.driver(&h.analyst(), "writer").await.unwrap();
        assert_eq!(
            text(&reader, "show default_transaction_read_only").await,
            "on",
            "{mode:?}: a reader got the writable connection"
        );
        assert!(stats(&h, "writer").open <= 1);
    }
}

#[tokio::test]
async fn transaction_mode_serves_many_clients_on_few_connections() {
    let h = Harness::with(pooled(PoolMode::Transaction, 2)).await;
    let table = unique_name("pool_tx");
    admin_sql_in(
        "idgate_test",
        &format!("create table {table} (client int, n int); grant all on {table} to idgate_scram"),
    )
    .await;
    let mut tasks = Vec::new();
    for client in 0..8 {
        let c = h.driver(&h.developer(), "writer").await.unwrap();
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                c.batch_execute(&format!(
                    "begin; insert into {table} values ({client}, {n}); commit"
                ))
                .await
                .unwrap();
                let rows: i64 = c
                    .query_one(
                        &format!("select count(*) from {table} where client = $1"),
                        &[&client],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(rows, i64::from(n) + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = stats(&h, "writer");
    assert!(s.open <= 2, "{s:?}");
    admin_sql_in("idgate_test", &format!("drop table {table}")).await;
}

#[tokio::test]
async fn prepared_statements_follow_their_client_across_connections() {
    let h = Harness::with(pooled(PoolMode::Transaction, 2)).await;
    // tokio-postgres names statements s0, s1, … per client: the same names
    // with different texts on shared connections.
    let mut tasks = Vec::new();
    for client in 0..6i32 {
        let c = h.driver(&h.developer(), "writer").await.unwrap();
        tasks.push(tokio::spawn(async move {
            let sql = format!("select $1::int + {client}");
            let stmt = c.prepare(&sql).await.unwrap();
            let other = c.prepare("select $1::text || '!'").await.unwrap();
            for i in 0..40i32 {
                let got: i32 = c.query_one(&stmt, &[&i]).await.unwrap().get(0);
                assert_eq!(
                    got,
                    i + client,
                    "client {client} ran someone else's statement"
                );
                let s: String = c.query_one(&other, &[&"x"]).await.unwrap().get(0);
                assert_eq!(s, "x!");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(stats(&h, "writer").open <= 2);
}

#[tokio::test]
async fn pgbench_runs_in_every_mode_under_transaction_pooling() {
    let db = unique_name("idgate_pool_bench");
    admin_sql(&format!("create database {db}")).await;
    let init = run(tokio::process::Command::new("pgbench").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-i",
        "-q",
        "-s",
        "1",
        &db,
    ]))
    .await;
    assert!(init.status.success(), "{}", stderr(&init));
    let h = Harness::with(Options {
        database: db.clone(),
        roles: vec![TestRole {
            name: "owner",
            user: "postgres",
            password: None,
        }],
        ..pooled(PoolMode::Transaction, 2)
    })
    .await;
    for mode in ["prepared", "extended", "simple"] {
        let out = h
            .pgbench(
                &h.developer(),
                "disable",
                &["-n", "-S", "-M", mode, "-c", "6", "-j", "2", "-t", "50"],
            )
            .await;
        assert!(
            stdout(&out).contains("number of transactions actually processed: 300/300"),
            "pgbench -M {mode}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert!(stats(&h, "owner").open <= 2);
    drop(h);
    admin_sql(&format!("drop database {db} with (force)")).await;
}

#[tokio::test]
async fn session_state_is_refused_under_transaction_pooling() {
    let h = Harness::with(pooled(PoolMode::Transaction, 2)).await;
    let c = h.driver(&h.developer(), "writer").await.unwrap();
    for sql in [
        "set work_mem = '2MB'",
        "reset work_mem",
        "prepare p as select 1",
        "listen channel",
        "create temp table pool_t (x int)",
        "begin; declare c cursor with hold for select 1; commit",
        "select set_config('work_mem', '2MB', false)",
        "select pg_advisory_lock(42)",
    ] {
        let err = c.batch_execute(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "0A000", "{sql}: {db:?}");
        assert!(
            db.message().contains("transaction pooling"),
            "{}",
            db.message()
        );
    }
    c.batch_execute("begin; set local work_mem = '2MB'; commit")
        .await
        .expect("SET LOCAL is fine");
    c.batch_execute(
        "begin; select set_config('work_mem', '2MB', true), pg_advisory_xact_lock(42); commit",
    )
    .await
    .expect("transaction-scoped settings and locks are fine");
    assert_eq!(text(&c, "select 'still usable'").await, "still usable");
}

#[tokio::test]
async fn a_pooled_connection_killed_while_idle_is_replaced_unnoticed() {
    let h = Harness::with(pooled(PoolMode::Session, 1)).await;
    let a = h.driver(&h.developer(), "writer").await.unwrap();
    let pid = backend_pid(&a).await;
    drop(a);
    until_idle(&h, "writer", 1).await;
    admin_sql(&format!("select pg_terminate_backend({pid}, 5000)")).await;

    let b = h.driver(&h.developer(), "writer").await.unwrap();
    assert_ne!(backend_pid(&b).await, pid);
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let h = Harness::with(Options {
        pool: PoolConfig {
            idle_timeout: Duration::from_millis(200),
            ..PoolConfig::default()
        },
        ..Options::default()
    })
    .await;
    let a = h.driver(&h.developer(), "writer").await.unwrap();
    backend_pid(&a).await;
    drop(a);
    until_idle(&h, "writer", 1).await;
    for _ in 0..500 {
        if stats(&h, "writer").open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("idle connection never closed: {:?}", stats(&h, "writer"));
}

#[tokio::test]
async fn a_cancel_reaches_the_connection_a_transaction_mode_client_holds() {
    let h = Harness::with(pooled(PoolMode::Transaction, 2)).await;
    let c = Arc::new(h.driver(&h.developer(), "writer").await.unwrap());
    let cancel = c.cancel_token();
    let running = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.batch_execute("select pg_sleep(30)").await })
    };
    // Cancel once the sleep is visibly running upstream.
    for _ in 0..500 {
        let busy: i64 = {
            let admin = h.driver(&h.developer(), "writer").await.unwrap();
            admin
                .query_one(
                    "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'",
                    &[],
                )
                .await
                .unwrap()
                .get(0)
        };
        if busy == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("cancelled in time")
        .unwrap()
        .expect_err("cancelled");
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014");
    assert_eq!(text(&c, "select 'after'").await, "after");
}

#[tokio::test]
async fn a_client_waiting_past_wait_timeout_is_told_why() {
    let h = Harness::with(Options {
        pool: PoolConfig {
            mode: PoolMode::Transaction,
            max_size: 1,
            wait_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        },
        ..Options::default()
    })
    .await;
    let holder = h.driver(&h.developer(), "writer").await.unwrap();
    holder.batch_execute("begin").await.unwrap();
    let waiter = h.driver(&h.developer(), "writer").await;
    let err = match waiter {
        // Logged in while the holder's transaction was not yet open.
        Ok(c) => c
            .batch_execute("select 1")
            .await
            .expect_err("no connection free"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("is busy") || format!("{err:?}").contains("is busy"),
        "{err:?}"
    );
    holder.batch_execute("commit").await.unwrap();
}
