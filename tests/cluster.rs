//! Two gateway processes (`idgate serve`) sharing the real Redis: a
//! revocation or a kill made on one ends a session held by the other
//! within a second; each lists the other's sessions; a gateway whose Redis
//! is unreachable still enforces locally and says so in `/readyz`.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use idgate::dev::DevIssuer;
use serde_json::{Value, json};
use support::{AUDIENCE, TARGET, admin_api, eventually, stderr, unique_name};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const POLICY: &str = r#"
@id("analysts-read")
permit(principal in Group::"analysts", action, resource == Role::"app/reader");

@id("security-administers")
permit(principal in Group::"security", action == Action::"administer", resource == Gateway::"idgate");
"#;

struct Gateway {
    _process: Child,
    _dir: tempfile::TempDir,
    postgres: String,
    admin: String,
}

/// `idgate serve` with its own files, sharing `redis` under `namespace`.
async fn gateway(issuer: &DevIssuer, redis: &str, namespace: &str) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &issuer.issuer_url(), redis, namespace);
    let mut process = Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args(["serve", "--config"])
        .arg(dir.path().join("idgate.toml"))
        .env("IDGATE_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("idgate serve runs");
    let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
    let (mut postgres, mut admin) = (None, None);
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let addr = line.rsplit(' ').next().unwrap_or_default().to_owned();
            if line.contains("PostgreSQL front end listening on") {
                postgres = Some(addr);
            } else if line.contains("admin API listening on") {
                admin = Some(addr);
            }
            if postgres.is_some() && admin.is_some() {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "idgate serve did not start");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Gateway {
        _process: process,
        _dir: dir,
        postgres: postgres.expect("postgres address"),
        admin: format!("http://{}", admin.expect("admin address")),
    }
}

fn write_config(dir: &Path, issuer: &str, redis: &str, namespace: &str) {
    let (cert, key) = idgate::tls::self_signed(&["localhost", "127.0.0.1"]).expect("cert");
    std::fs::write(dir.join("gateway.crt"), cert).expect("write cert");
    std::fs::write(dir.join("gateway.key"), key).expect("write key");
    std::fs::write(dir.join("policy.cedar"), POLICY).expect("write policy");
    let text = format!(
        r#"[gateway]
postgres_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
tls_cert_file = "gateway.crt"
tls_key_file = "gateway.key"
allow_plaintext_loopback = true

[[issuers]]
name = "test"
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
algorithms = ["ES256"]
identity_claim = "email"
max_lifetime = "2h"

[[targets]]
name = "{TARGET}"
upstream = "{upstream}"
database = "idgate_test"

[[targets.roles]]
name = "reader"
user = "idgate_ro"

[policy]
file = "policy.cedar"

[audit]
file = "audit.jsonl"

[cluster]
redis = "{redis}"
namespace = "{namespace}"
"#,
        upstream = support::pg_addr(),
    );
    std::fs::write(dir.join("idgate.toml"), text).expect("write config");
}

async fn ready(base: &str) -> u16 {
    reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

/// psql through `gw` running `sql`, left running.
fn psql(gw: &Gateway, token: &str, sql: &str) -> Child {
    support::psql_running(&conninfo(gw), token, sql)
}

fn conninfo(gw: &Gateway) -> String {
    let (host, port) = gw.postgres.rsplit_once(':').expect("host:port");
    format!("host={host} port={port} dbname={TARGET} user=reader sslmode=require")
}

async fn sessions(gw: &Gateway, admin: &str) -> Vec<Value> {
    let (status, body) = admin_api(
        &gw.admin,
        reqwest::Method::GET,
        "/api/sessions",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("list").clone()
}

fn admin_token(issuer: &DevIssuer) -> String {
    issuer.mint_for(
        "sec@example.com",
        &["security"],
        AUDIENCE,
        Duration::from_secs(300),
    )
}

/// Whether `gw` lists a session of `identity`.
async fn lists(gw: &Gateway, admin: &str, identity: &str) -> bool {
    sessions(gw, admin)
        .await
        .iter()
        .any(|s| s["identity"] == identity)
}

/// A fresh analyst running `pg_sleep` through `gw`, returned once `gw`
/// lists the session: (identity, token, psql).
async fn sleeper(
    issuer: &DevIssuer,
    gw: &Gateway,
    admin: &str,
    name: &str,
) -> (String, String, Child) {
    let user = format!("{}@example.com", unique_name(name));
    let token = issuer.mint_for(&user, &["analysts"], AUDIENCE, Duration::from_secs(300));
    let running = psql(gw, &token, "select pg_sleep(60)");
    eventually("the gateway to list the session", || async {
        lists(gw, admin, user.as_str()).await
    })
    .await;
    (user, token, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_or_kill_on_one_gateway_ends_a_session_on_the_other_within_a_second() {
    let issuer = DevIssuer::start().await.expect("issuer");
    let namespace = unique_name("idgate-test");
    let redis = "redis://127.0.0.1:6379";
    let a = gateway(&issuer, redis, &namespace).await;
    let b = gateway(&issuer, redis, &namespace).await;
    eventually("both gateways to follow the cluster", || async {
        ready(&a.admin).await == 200 && ready(&b.admin).await == 200
    })
    .await;
    let admin = admin_token(&issuer);

    // Revocation on A, session on B.
    let (user, token, running) = sleeper(&issuer, &b, &admin, "c").await;
    eventually("A to list B's session", || async {
        lists(&a, &admin, user.as_str()).await
    })
    .await;
    let revoked = Instant::now();
    let (status, body) = admin_api(
        &a.admin,
        reqwest::Method::POST,
        "/api/revocations",
        Some(&admin),
        Some(json!({"subject": user})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("not_shared").is_none(), "{body}");
    // Stored for as long as a token it covers can live: the configured
    // max_lifetime (2 h) plus the default clock skew (60 s).
    let mut conn = redis::Client::open(redis)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:revocation:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert!(
        (2 * 3600 + 60 - 10..=2 * 3600 + 60).contains(&ttl),
        "TTL {ttl}"
    );
    let out = support::ends_within(running, Duration::from_secs(5)).await;
    let across = revoked.elapsed();
    assert!(String::from_utf8_lossy(&out.stderr).contains("access was revoked"));
    assert!(across < Duration::from_secs(1), "ended after {across:?}");
    println!("revoke-to-disconnect across two gateways: {across:?}");

    // B refuses the old token too, and so does a gateway started later.
    let refused = psql(&b, &token, "select 1")
        .wait_with_output()
        .await
        .expect("psql");
    assert!(stderr(&refused).contains("revoked"), "{}", stderr(&refused));
    let c = gateway(&issuer, redis, &namespace).await;
    eventually("C to follow the cluster", || async {
        ready(&c.admin).await == 200
    })
    .await;
    let late = psql(&c, &token, "select 1")
        .wait_with_output()
        .await
        .expect("psql");
    assert!(stderr(&late).contains("revoked"), "{}", stderr(&late));

    // A kill on A of a session on B.
    let (other, _, running) = sleeper(&issuer, &b, &admin, "k").await;
    eventually("A to list B's session", || async {
        lists(&a, &admin, other.as_str()).await
    })
    .await;
    let listed = sessions(&a, &admin).await;
    let id = listed
        .iter()
        .find(|s| s["identity"] == other.as_str())
        .and_then(|s| s["id"].as_str())
        .expect("listed with an id")
        .to_owned();
    let killed = Instant::now();
    let (status, body) = admin_api(
        &a.admin,
        reqwest::Method::DELETE,
        &format!("/api/sessions/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let out = support::ends_within(running, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended by an administrator"));
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "ended after {:?}",
        killed.elapsed()
    );
}

#[tokio::test]
async fn without_redis_a_gateway_enforces_locally_and_is_not_ready() {
    let issuer = DevIssuer::start().await.expect("issuer");
    // Nothing listens on port 1.
    let g = gateway(&issuer, "redis://127.0.0.1:1", &unique_name("idgate-test")).await;
    assert_eq!(ready(&g.admin).await, 503);
    let admin = admin_token(&issuer);
    let (user, _, running) = sleeper(&issuer, &g, &admin, "local").await;
    let (status, body) = admin_api(
        &g.admin,
        reqwest::Method::POST,
        "/api/revocations",
        Some(&admin),
        Some(json!({"subject": user})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["not_shared"].is_string(), "{body}");
    let out = support::ends_within(running, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("access was revoked"));
}
