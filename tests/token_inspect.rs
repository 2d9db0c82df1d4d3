//! `idgate token inspect` as a user runs it: the binary, a config file and
//! the embedded issuer serving keys over HTTP.

use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idgate::dev::DevIssuer;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const HOUR: Duration = Duration::from_secs(3600);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn write_config(dir: &std::path::Path, issuer: &str) -> std::path::PathBuf {
    let path = dir.join("idgate.toml");
    let text = format!(
        r#"[gateway]
postgres_listen = "127.0.0.1:0"
allow_plaintext_loopback = true

[[issuers]]
name = "dev"
issuer = "{issuer}"
audiences = ["idgate"]

[[issuers]]
name = "corp"
issuer = "https://login.example.com/realms/corp"
audiences = ["idgate"]

[[targets]]
name = "orders"
upstream = "127.0.0.1:5432"
database = "orders"

[[targets.roles]]
name = "reader"
user = "orders_ro"

[policy]
file = "policy.cedar"

[audit]
file = "audit.jsonl"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `idgate token inspect - [--config FILE]` with `token` on stdin.
async fn inspect(token: &str, config: Option<&std::path::Path>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_idgate"));
    cmd.args(["token", "inspect", "-"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(token.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("inspect finished")
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Setup {
    dev: DevIssuer,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

async fn setup() -> Setup {
    let dev = DevIssuer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dev.issuer_url());
    Setup {
        dev,
        _dir: dir,
        config,
    }
}

#[tokio::test]
async fn accepted_token_exits_zero_and_never_prints_the_signature() {
    let s = setup().await;
    let token = s.dev.mint_for("alice", &["analysts"], "idgate", HOUR);
    let out = inspect(&token, Some(&s.config)).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("result: ACCEPTED as dev/alice"), "{text}");
    assert!(text.contains("groups [analysts]"), "{text}");
    assert!(text.contains("pass     signature"), "{text}");
    let signature = token.rsplit_once('.').unwrap().1;
    assert!(!text.contains(signature), "{text}");
    assert!(!text.contains(&token));
}

#[tokio::test]
async fn expired_token_exits_one_and_says_how_long_ago() {
    let s = setup().await;
    let mut c = s.dev.claims_for("alice", &[], "idgate", HOUR);
    c["iat"] = json!(now() - 1000);
    c["nbf"] = json!(now() - 1000);
    c["exp"] = json!(now() - 312);
    let out = inspect(&s.dev.mint(c), Some(&s.config)).await;
    let text = stdout(&out);
    eprintln!("{text}"); // a quotable sample report
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL     exp"), "{text}");
    assert!(text.contains("token expired 31"), "{text}");
    assert!(text.contains("result: REFUSED (expired)"), "{text}");
    // Later checks still ran: the signature was fine.
    assert!(text.contains("pass     signature"), "{text}");
}

#[tokio::test]
async fn wrong_audience_shows_expected_and_got() {
    let s = setup().await;
    let token = s.dev.mint_for("alice", &[], "api://x", HOUR);
    let out = inspect(&token, Some(&s.config)).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("expected one of [idgate], got [api://x]"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_issuer_names_the_closest_configured_one() {
    let s = setup().await;
    let mut c = s.dev.claims_for("alice", &[], "idgate", HOUR);
    c["iss"] = json!("https://login.example.com/realms/crop");
    let out = inspect(&s.dev.mint(c), Some(&s.config)).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL     iss"), "{text}");
    assert!(
        text.contains("closest configured issuer: corp (`https://login.example.com/realms/corp`, edit distance 2)"),
        "{text}"
    );
}

#[tokio::test]
async fn without_config_it_decodes_but_cannot_judge() {
    let dev = DevIssuer::start().await.unwrap();
    let token = dev.mint_for("alice", &[], "idgate", HOUR);
    let out = inspect(&token, None).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("\"sub\": \"alice\""), "{text}");
    assert!(text.contains("exp = "), "{text}");
    assert!(
        text.contains("cannot judge acceptance without --config"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}

#[tokio::test]
async fn no_token_is_a_usage_error() {
    let out = inspect("\n", None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token given"));
}

#[tokio::test]
async fn a_token_valid_until_the_year_3000_fails_the_default_lifetime_cap() {
    let s = setup().await;
    // The config sets no max_lifetime: the default cap of 24 h applies.
    let ok = inspect(
        &s.dev.mint_for("alice", &[], "idgate", HOUR),
        Some(&s.config),
    )
    .await;
    let text = stdout(&ok);
    assert!(
        text.lines().any(|l| l.starts_with("  pass")
            && l.contains("max_lifetime")
            && l.ends_with("exp - iat = 3600 s, at most 86400 s")),
        "{text}"
    );
    let mut c = s.dev.claims_for("alice", &[], "idgate", HOUR);
    c["exp"] = json!(32_503_680_000_i64); // 3000-01-01
    let out = inspect(&s.dev.mint(c.clone()), Some(&s.config)).await;
    let text = stdout(&out);
    eprintln!("{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL     max_lifetime"), "{text}");
    assert!(text.contains("exceeds max_lifetime 86400 s"), "{text}");
    assert!(text.contains("result: REFUSED (lifetime)"), "{text}");
    // Without iat it is refused: a revocation could not cover it.
    c.as_object_mut().unwrap().remove("iat");
    let out = inspect(&s.dev.mint(c), Some(&s.config)).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("required claim `iat` is missing"), "{text}");
}
