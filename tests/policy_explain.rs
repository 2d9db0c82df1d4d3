//! `idgate policy explain` as a user runs it: the binary, a config file,
//! a policy file and the embedded issuer serving keys over HTTP.
//!
//! Statement assertions hold whether the classifier is the real one or the
//! stub that calls every statement `unknown`: policies here either permit
//! every statement action or none.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use idgate::dev::DevIssuer;

const HOUR: Duration = Duration::from_secs(3600);

const POLICY: &str = r#"
@id("analysts-read-orders")
permit (
  principal in Group::"analysts",
  action in [Action::"connect", Action::"read", Action::"session", Action::"unknown"],
  resource == Role::"orders/reader"
);

@id("dbas-everything")
permit (principal in Group::"dbas", action, resource in Target::"orders");

@id("interns-connect-only")
permit (principal in Group::"interns", action == Action::"connect", resource == Role::"orders/reader");

@id("no-weekend-logins")
forbid (principal, action == Action::"connect", resource)
when { context.weekday_utc >= 5 };

@id("office-only-for-dbas")
forbid (principal in Group::"dbas", action, resource)
unless { context.client_ip.isInRange(ip("10.0.0.0/8")) };
"#;

struct Setup {
    dev: DevIssuer,
    _dir: tempfile::TempDir,
    config: PathBuf,
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

fn write_config(dir: &Path, issuer: &str) -> PathBuf {
    std::fs::write(dir.join("policy.cedar"), POLICY).unwrap();
    let path = dir.join("idgate.toml");
    let text = format!(
        r#"[gateway]
postgres_listen = "127.0.0.1:0"
allow_plaintext_loopback = true

[[issuers]]
name = "dev"
issuer = "{issuer}"
audiences = ["idgate"]

[[targets]]
name = "orders"
upstream = "127.0.0.1:5432"
database = "orders"
environment = ["prod"]

[[targets.roles]]
name = "reader"
user = "orders_ro"

[[targets.roles]]
name = "admin"
user = "orders_admin"

[policy]
file = "policy.cedar"

[audit]
file = "audit.jsonl"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A Monday, inside business hours.
const MONDAY: &str = "2025-01-06T10:00:00Z";
const SUNDAY: &str = "2025-01-05T10:00:00Z";

impl Setup {
    fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.dev.mint_for(sub, groups, "idgate", HOUR)
    }

    async fn explain(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_idgate"));
        cmd.args(["policy", "explain", "--config"])
            .arg(&self.config)
            .args(["--token", token, "--target", "orders"])
            .args(args)
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("explain finished")
            .unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn permitted_connect_exits_zero_and_names_the_policy() {
    let s = setup().await;
    let token = s.token("ann", &["analysts"]);
    let out = s
        .explain(&token, &["--role", "reader", "--at", MONDAY])
        .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("token:    accepted as dev/ann"), "{text}");
    assert!(
        text.contains("target:   orders (environment [prod])"),
        "{text}"
    );
    assert!(text.contains("role:     reader (as requested)"), "{text}");
    assert!(
        text.contains("time:     2025-01-06T10:00:00Z (hour_utc 10, weekday_utc 0 = Monday)"),
        "{text}"
    );
    assert!(
        text.contains("connect   ALLOW  permitted by analysts-read-orders"),
        "{text}"
    );
    assert!(text.ends_with("result: ALLOWED\n"), "{text}");
    assert!(!text.contains(&token), "the token is never printed");
}

#[tokio::test]
async fn no_permitting_policy_exits_one_and_says_so() {
    let s = setup().await;
    let out = s
        .explain(
            &s.token("eve", &["contractors"]),
            &["--role", "reader", "--at", MONDAY],
        )
        .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(r#"connect   DENY   no policy permits connect on Role::"orders/reader" for User::"dev/eve""#),
        "{text}"
    );
    assert!(text.ends_with("result: DENIED\n"), "{text}");
}

#[tokio::test]
async fn forbid_by_time_is_named_and_at_sets_the_clock() {
    let s = setup().await;
    let token = s.token("ann", &["analysts"]);
    let sunday = s
        .explain(&token, &["--role", "reader", "--at", SUNDAY])
        .await;
    let text = stdout(&sunday);
    assert_eq!(sunday.status.code(), Some(1), "{text}{}", stderr(&sunday));
    assert!(text.contains("weekday_utc 6 = Sunday"), "{text}");
    assert!(
        text.contains("connect   DENY   forbidden by no-weekend-logins"),
        "{text}"
    );

    // The same instant written with an offset is the same decision.
    let offset = s
        .explain(
            &token,
            &["--role", "reader", "--at", "2025-01-06T05:00:00-05:00"],
        )
        .await;
    assert_eq!(offset.status.code(), Some(0), "{}", stdout(&offset));
}

#[tokio::test]
async fn without_role_the_only_permitted_role_is_used_like_the_gateway_does() {
    let s = setup().await;
    let out = s
        .explain(&s.token("ann", &["analysts"]), &["--at", MONDAY])
        .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("role:     reader (none given; the only role of orders you may connect as)"),
        "{text}"
    );

    let dba = s
        .explain(
            &s.token("dee", &["dbas"]),
            &["--at", MONDAY, "--client-ip", "10.1.2.3"],
        )
        .await;
    let text = stdout(&dba);
    assert_eq!(dba.status.code(), Some(1), "{text}");
    assert!(
        text.contains("none chosen: pass --role, one of reader, admin"),
        "{text}"
    );
}

#[tokio::test]
async fn client_ip_reaches_address_rules() {
    let s = setup().await;
    let token = s.token("dee", &["dbas"]);
    let office = s
        .explain(
            &token,
            &["--role", "admin", "--at", MONDAY, "--client-ip", "10.1.2.3"],
        )
        .await;
    assert_eq!(office.status.code(), Some(0), "{}", stdout(&office));

    let elsewhere = s
        .explain(&token, &["--role", "admin", "--at", MONDAY])
        .await;
    let text = stdout(&elsewhere);
    assert_eq!(elsewhere.status.code(), Some(1), "{text}");
    assert!(text.contains("0.0.0.0 (unspecified"), "{text}");
    assert!(text.contains("forbidden by office-only-for-dbas"), "{text}");
}

#[tokio::test]
async fn each_statement_gets_a_decision_and_any_denial_exits_one() {
    let s = setup().await;
    let allowed = s
        .explain(
            &s.token("dee", &["dbas"]),
            &[
                "--role",
                "admin",
                "--at",
                MONDAY,
                "--client-ip",
                "10.0.0.1",
                "--sql",
                "SELECT 1",
            ],
        )
        .await;
    let text = stdout(&allowed);
    assert_eq!(allowed.status.code(), Some(0), "{text}{}", stderr(&allowed));
    assert!(text.contains("statement 1  "), "{text}");
    assert!(
        text.contains("  ALLOW  permitted by dbas-everything"),
        "{text}"
    );

    let denied = s
        .explain(
            &s.token("ivy", &["interns"]),
            &["--role", "reader", "--at", MONDAY, "--sql", "SELECT 1"],
        )
        .await;
    let text = stdout(&denied);
    assert_eq!(denied.status.code(), Some(1), "{text}{}", stderr(&denied));
    assert!(
        text.contains("connect   ALLOW  permitted by interns-connect-only"),
        "{text}"
    );
    assert!(text.contains("statement 1  "), "{text}");
    assert!(text.contains("  DENY   no policy permits"), "{text}");
}

#[tokio::test]
async fn rejected_token_exits_one_with_the_reason() {
    let s = setup().await;
    let wrong_audience = s.dev.mint_for("ann", &["analysts"], "someone-else", HOUR);
    let out = s.explain(&wrong_audience, &["--role", "reader"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error: token rejected: "), "{err}");
    assert!(err.contains("audience"), "{err}");
    assert!(err.contains("idgate token inspect"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[tokio::test]
async fn usage_errors_exit_two() {
    let s = setup().await;
    let token = s.token("ann", &["analysts"]);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_idgate"));
    cmd.args(["policy", "explain", "--config"])
        .arg(&s.config)
        .args(["--token", &token, "--target", "nosuch"]);
    let unknown_target = cmd.output().await.unwrap();
    let err = stderr(&unknown_target);
    assert_eq!(unknown_target.status.code(), Some(2), "{err}");
    assert!(
        err.contains("target \"nosuch\" is not in the config"),
        "{err}"
    );
    assert!(err.contains("--target is one of: orders"), "{err}");

    let bad_time = s.explain(&token, &["--at", "monday"]).await;
    assert_eq!(bad_time.status.code(), Some(2), "{}", stderr(&bad_time));
    assert!(stderr(&bad_time).contains("RFC 3339"));
}
