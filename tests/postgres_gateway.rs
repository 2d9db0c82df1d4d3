//! End to end through the gateway with real clients and the real
//! PostgreSQL: login checks, roles, the relay (simple, extended, COPY),
//! cancels and the audit trail.

mod support;

use std::time::Duration;

use support::*;

#[tokio::test]
async fn psql_over_tls_runs_a_query_and_is_audited_by_name() {
    let mut h = Harness::start().await;
    let out = h
        .psql(
            &h.analyst(),
            "reader",
            "select 40 + 2 as answer, current_user",
        )
        .await;
    assert!(out.status.success(), "psql failed: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "42|idgate_ro");

    let events = h.stop_and_read_audit().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["auth_ok", "session_start", "statement", "session_end"],
        "{events:#?}"
    );
    let stmt = &events[2];
    assert_eq!(stmt["statement"], "select 40 + 2 as answer, current_user");
    assert_eq!(stmt["identity"], "ann@example.com");
    assert_eq!(stmt["role"], "reader");
    assert_eq!(stmt["target"], TARGET);
    assert_eq!(stmt["rows"], 1);
    assert_eq!(stmt["groups"][0], "analysts");
    let line = std::fs::read_to_string(h.audit_file()).unwrap();
    let token = h.analyst();
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !line.contains(signature),
        "token leaked into the audit trail"
    );
}

#[tokio::test]
async fn upstream_sees_who_is_behind_the_shared_login() {
    let h = Harness::start().await;
    let out = h
        .psql(
            &h.analyst(),
            "reader",
            "select application_name || ' ' || current_setting('idgate.identity') from pg_stat_activity where pid = pg_backend_pid()",
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "idgate:ann@example.com ann@example.com"
    );
}

async fn login_error(h: &Harness, token: &str, role: &str) -> tokio_postgres::error::DbError {
    let Err(err) = h.driver(token, role).await else {
        panic!("login must fail");
    };
    err.as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"))
        .clone()
}

#[tokio::test]
async fn bad_tokens_are_refused_with_28p01_and_say_which_check_failed() {
    let h = Harness::start().await;
    let expired = h.issuer.mint(serde_json::json!({
        "iss": h.issuer.issuer_url(), "aud": AUDIENCE, "sub": "ann",
        "exp": now() - 600, "iat": now() - 900,
    }));
    let wrong_aud = h.issuer.mint(serde_json::json!({
        "iss": h.issuer.issuer_url(), "aud": "someone-else", "sub": "ann",
        "exp": now() + 600, "iat": now(),
    }));
    for (token, needle) in [
        (expired.as_str(), "expired"),
        (wrong_aud.as_str(), "audience"),
        ("garbage", "malformed"),
    ] {
        let e = login_error(&h, token, "reader").await;
        assert_eq!(e.code().code(), "28P01", "{}", e.message());
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
        assert!(!e.message().contains(token), "token echoed back");
    }
}

#[tokio::test]
async fn psql_reports_a_wrong_token_as_authentication_failure() {
    let h = Harness::start().await;
    let out = h.psql("not-a-token", "reader", "select 1").await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token rejected"), "{}", stderr(&out));
}

#[tokio::test]
async fn analyst_cannot_take_a_role_the_policy_does_not_grant() {
    let mut h = Harness::start().await;
    let e = login_error(&h, &h.analyst(), "writer").await;
    assert_eq!(e.code().code(), "42501", "{}", e.message());
    assert!(e.message().contains("no policy permits"), "{}", e.message());
    let events = h.stop_and_read_audit().await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "denied" && e["role"] == "writer")
    );
}

#[tokio::test]
async fn forbid_policy_is_named_in_the_denial() {
    let h = Harness::with(Options {
        policy: format!(
            "{DEFAULT_POLICY}\n@id(\"no-legacy\")\nforbid(principal, action, resource == Role::\"app/legacy\");\n"
        ),
        ..Options::default()
    })
    .await;
    let e = login_error(&h, &h.developer(), "legacy").await;
    assert_eq!(e.code().code(), "42501");
    assert!(e.message().contains("no-legacy"), "{}", e.message());
}

#[tokio::test]
async fn unknown_role_falls_back_to_the_only_permitted_one() {
    let h = Harness::start().await;
    let client = h.driver(&h.analyst(), "postgres").await.expect("login");
    let row = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "idgate_ro");
}

#[tokio::test]
async fn unknown_target_is_3d000() {
    let h = Harness::start().await;
    let out = run(tokio::process::Command::new("psql")
        .arg(format!(
            "host={} port={} dbname=nope user=reader sslmode=require",
            h.addr.ip(),
            h.addr.port()
        ))
        .args(["-X", "-c", "select 1"])
        .env("PGPASSWORD", h.analyst()))
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("target \"nope\" does not exist"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn plaintext_is_refused_unless_loopback_is_allowed() {
    let h = Harness::with(Options {
        allow_plaintext_loopback: false,
        ..Options::default()
    })
    .await;
    let e = login_error(&h, &h.analyst(), "reader").await;
    assert_eq!(e.code().code(), "28000");
    assert!(e.message().contains("requires TLS"), "{}", e.message());
    let out = h.psql(&h.analyst(), "reader", "select 1").await;
    assert!(out.status.success(), "TLS still works: {}", stderr(&out));
}

#[tokio::test]
async fn scram_and_md5_upstream_logins_work() {
    let h = Harness::start().await;
    for (role, user) in [("writer", "idgate_scram"), ("legacy", "idgate_md5")] {
        let client = h.driver(&h.developer(), role).await.expect(role);
        let row = client
            .query_one("select current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user);
    }
}

#[tokio::test]
async fn extended_protocol_and_prepared_statements_are_relayed_and_audited() {
    let mut h = Harness::start().await;
    let client = h.driver(&h.developer(), "writer").await.unwrap();
    let stmt = client.prepare("select $1::int * 2").await.unwrap();
    for i in 0..3 {
        let row = client.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i * 2);
    }
    let err = client.query("select 1/0", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "22012");
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = h.stop_and_read_audit().await;
    let statements: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "statement")
        .collect();
    assert_eq!(
        statements
            .iter()
            .filter(|e| e["statement"] == "select $1::int * 2")
            .count(),
        3
    );
    assert!(statements.iter().any(
        |e| e["statement"] == "select 1/0" && e["error"].as_str().unwrap().starts_with("22012")
    ));
}

#[tokio::test]
async fn copy_in_and_out_pass_through() {
    let h = Harness::start().await;
    let rows: String = (1..=500).map(|i| format!("{i},row {i}\n")).collect();
    let script = format!(
        "create temp table t(n int, s text);\n\\copy t from stdin with (format csv)\n{rows}\\.\nselect count(*), sum(n) from t;\n\\copy (select n from t where n <= 3 order by n) to stdout\n"
    );
    let path = h.dir.path().join("copy.sql");
    std::fs::write(&path, script).unwrap();
    let out = run(tokio::process::Command::new("psql")
        .arg(h.conninfo("writer", "require"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&path)
        .env("PGPASSWORD", h.developer()))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "500|125250\n1\n2\n3");
}

#[tokio::test]
async fn cancel_reaches_only_the_right_query() {
    let h = Harness::start().await;
    let victim = h.driver(&h.developer(), "writer").await.unwrap();
    let bystander = h.driver(&h.developer(), "writer").await.unwrap();
    let cancel = victim.cancel_token();

    let marker = unique_name("victim");
    let sql = format!("select pg_sleep(20) /* {marker} */");
    let slow = tokio::spawn(async move { victim.simple_query(&sql).await });
    let other =
        tokio::spawn(async move { bystander.simple_query("select pg_sleep(2), 'done'").await });
    // Cancel once the query runs upstream: earlier, there is nothing to cancel.
    let pg = support::direct().await;
    eventually("the victim's query to run upstream", || async {
        pg.query_one(
            "select count(*) from pg_stat_activity where state = 'active' and query like '%' || $1 || '%' and pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 1
    })
    .await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();

    let err = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("cancel took effect")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014");
    let rows = other
        .await
        .unwrap()
        .expect("bystander's query was not cancelled");
    assert!(!rows.is_empty());
}

#[tokio::test]
async fn cancel_with_a_forged_key_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;
    let client = h.driver(&h.developer(), "writer").await.unwrap();
    let running =
        tokio::spawn(async move { client.simple_query("select pg_sleep(1), 'done'").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for pid in 0..50 {
        let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        let mut buf = bytes::BytesMut::new();
        idgate::postgres::codec::cancel_request(&mut buf, pid, 12345);
        tcp.write_all(&buf).await.unwrap();
    }
    assert!(
        running.await.unwrap().is_ok(),
        "a forged cancel got through"
    );
}

#[tokio::test]
async fn pgbench_runs_in_simple_extended_and_prepared_modes() {
    let db = unique_name("idgate_bench");
    admin_sql(&format!("create database {db}")).await;
    let h = Harness::with(Options {
        database: db.clone(),
        roles: vec![TestRole {
            name: "owner",
            user: "postgres",
            password: None,
        }],
        ..Options::default()
    })
    .await;
    let token = h.developer();
    let init = h.pgbench(&token, "require", &["-i", "-q", "-s", "1"]).await;
    assert!(init.status.success(), "pgbench -i: {}", stderr(&init));
    for mode in ["simple", "extended", "prepared"] {
        let out = h
            .pgbench(
                &token,
                "require",
                &["-M", mode, "-c", "4", "-j", "2", "-t", "50", "-n"],
            )
            .await;
        assert!(out.status.success(), "pgbench -M {mode}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("number of transactions actually processed: 200/200"),
            "{mode}: {}",
            stdout(&out)
        );
    }
    drop(h);
    admin_sql(&format!("drop database {db} with (force)")).await;
}

#[tokio::test]
async fn psycopg_driver_does_copy_and_prepared_statements() {
    let h = Harness::start().await;
    let python = std::env::var("IDGATE_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/drivers/psycopg_check.py"
    );
    let dsn = format!(
        "{} password={}",
        h.conninfo("writer", "require"),
        h.developer()
    );
    let out = run(tokio::process::Command::new(python)
        .arg(script)
        .env("IDGATE_DSN", dsn))
    .await;
    assert!(
        out.status.success(),
        "psycopg: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("psycopg ok"));
}

#[tokio::test]
async fn token_from_a_certified_external_provider_is_accepted() {
    let provider = oidc_provider::ExternalProvider::start()
        .await
        .expect("oidc-provider starts (run scripts/setup)");
    let h = Harness::with(Options {
        issuer_url: Some(provider.issuer.clone()),
        identity_claim: "sub".into(),
        ..Options::default()
    })
    .await;
    let token = provider.client_credentials_token().await.expect("token");
    let out = h.psql(&token, "reader", "select current_user").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn caller_with_no_permitted_role_is_refused_and_audited() {
    let mut h = Harness::start().await;
    let outsider = h.token("eve@example.com", &["visitors"]);
    let e = login_error(&h, &outsider, "postgres").await;
    assert_eq!(e.code().code(), "42501", "{}", e.message());
    let events = h.stop_and_read_audit().await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "denied" && e["identity"] == "eve@example.com"),
        "{events:#?}"
    );
}
