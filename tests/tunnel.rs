//! The person's side against a real gateway: `idgate tunnel` (the real
//! binary) with psql, pgbench and a driver that cancels, none of them given
//! a password; a tunnel session kept alive across several short token
//! lifetimes until a revocation ends it; refreshes the gateway refuses (a
//! wrong secret, another person's token, other groups); and `idgate
//! connect`.
//!
//! Tokens reach the binary the way a person's token command gives them: a
//! command (`curl`) that fetches a freshly minted token from the test's
//! own mint (`support::mint`), which signs with a development issuer the
//! gateway trusts.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idgate::cli::endpoint::{Endpoint, EndpointArgs, SslMode};
use idgate::cli::tunnel::RefreshFailure;
use idgate::dev::DevIssuer;
use idgate::secret::Secret;
use serde_json::{Value, json};
use support::mint::Mint;
use support::tunnel::TunnelProcess;
use support::{Harness, Options, eventually, stderr, stdout, unique_name};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const POLICY: &str = r#"
@id("analysts-read")
permit(principal in Group::"analysts", action, resource == Role::"app/reader");

@id("security-administers")
permit(principal in Group::"security", action == Action::"administer", resource == Gateway::"idgate");
"#;

/// A gateway whose issuer the test's mint signs for, with its admin API.
struct Setup {
    h: Harness,
    mint: Arc<Mint>,
    /// The token command for `--token-command`.
    command: String,
}

async fn setup(subject: &str, ttl: Duration) -> Setup {
    let issuer = Arc::new(DevIssuer::start().await.expect("issuer"));
    let h = Harness::with(Options {
        policy: POLICY.into(),
        admin: true,
        issuer_url: Some(issuer.issuer_url()),
        ..Options::default()
    })
    .await;
    let (mint, command) = Mint::serve(issuer, subject, &["analysts"], ttl).await;
    Setup { h, mint, command }
}

impl Setup {
    fn cert(&self) -> String {
        self.h.dir.path().join("gateway.crt").display().to_string()
    }

    /// `--gateway … --port … --ca-file … --token-command …`.
    fn gateway_args(&self) -> Vec<String> {
        vec![
            "--gateway".into(),
            self.h.addr.ip().to_string(),
            "--port".into(),
            self.h.addr.port().to_string(),
            "--ca-file".into(),
            self.cert(),
            "--token-command".into(),
            self.command.clone(),
        ]
    }

    /// The gateway as `idgate::cli` reaches it, certificate checked.
    fn endpoint(&self) -> Endpoint {
        let args = EndpointArgs {
            profile: None,
            gateway: Some(self.h.addr.ip().to_string()),
            port: Some(self.h.addr.port()),
            protocol: None,
            ca_file: Some(self.cert().into()),
            sslmode: SslMode::VerifyFull,
        };
        Endpoint::new(
            &args.settings().expect("settings"),
            support::TARGET,
            args.sslmode,
        )
        .expect("endpoint")
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let admin = self.mint.issuer.mint_for(
            "sec@example.com",
            &["security"],
            support::AUDIENCE,
            Duration::from_secs(300),
        );
        let (status, body) =
            support::admin_api(&self.h.admin_url(), method, path, Some(&admin), body).await;
        assert!((200..300).contains(&status), "{status}: {body}");
        body
    }

    /// The live session of `identity`, as the admin API lists it.
    async fn session_of(&self, identity: &str) -> Option<Value> {
        let list = self
            .admin(reqwest::Method::GET, "/api/sessions", None)
            .await;
        list.as_array()
            .expect("a list")
            .iter()
            .find(|s| s["identity"] == identity)
            .cloned()
    }
}

async fn tunnel(s: &Setup) -> TunnelProcess {
    let mut args: Vec<String> = vec![support::TARGET.into(), "--role".into(), "reader".into()];
    args.extend(s.gateway_args());
    support::tunnel::start(&args, "idgate=info").await
}

impl TunnelProcess {
    /// libpq settings for the tunnel: no password, whatever database name.
    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=anything user=someone sslmode=prefer connect_timeout=10",
            self.port
        )
    }
}

/// psql with no password anywhere it could find one.
fn psql_without_password(conninfo: &str) -> Command {
    let mut psql = Command::new("psql");
    psql.arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/dev/null")
        .kill_on_drop(true);
    psql
}

/// psql reading statements from a pipe, answering line by line.
struct Interactive {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

impl Interactive {
    fn start(conninfo: &str) -> Interactive {
        let mut child = psql_without_password(conninfo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Interactive { child, out }
    }

    async fn send(&mut self, sql: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{sql}\n").as_bytes())
            .await
            .expect("write to psql");
        stdin.flush().await.expect("flush");
    }

    /// Runs `sql` (one row back) and returns the row.
    async fn query(&mut self, sql: &str) -> String {
        self.send(sql).await;
        tokio::time::timeout(Duration::from_secs(10), self.out.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {sql}"))
            .expect("read")
            .unwrap_or_else(|| panic!("psql ended before answering {sql}"))
    }
}

#[tokio::test]
async fn psql_pgbench_and_cancels_work_through_the_tunnel_without_a_password() {
    let s = setup("ann@example.com", Duration::from_secs(300)).await;
    let t = tunnel(&s).await;

    let out = support::run(
        psql_without_password(&t.conninfo())
            .args(["-c", "select current_user, current_database()"]),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro|idgate_test");

    let script = s.h.dir.path().join("select.sql");
    std::fs::write(&script, "select 1;\n").expect("script");
    let out = support::run(
        Command::new("pgbench")
            .args(["-h", "127.0.0.1", "-p", &t.port.to_string(), "-U", "reader"])
            .args(["-n", "-c", "2", "-t", "25", "-f"])
            .arg(&script)
            .arg("anything")
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/dev/null"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("number of transactions actually processed: 50/50"),
        "{}",
        stdout(&out)
    );

    // A driver's cancel goes to the tunnel, which passes it to the gateway.
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=reader dbname=app", t.port),
        tokio_postgres::NoTls,
    )
    .await
    .expect("driver connects through the tunnel");
    tokio::spawn(connection);
    let cancel = client.cancel_token();
    let started = Instant::now();
    let sleeping = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
    let pg = support::direct().await;
    eventually("the statement to run upstream", || async {
        pg.query_one(
            "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get::<_, i64>(0)
            == 1
    })
    .await;
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let err = sleeping
        .await
        .expect("joined")
        .expect_err("the statement was cancelled");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(s.mint.issued() >= 4);
}

/// Token lifetime in the long-session tests: short, so a few pass quickly.
const LIFETIME: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_tunnel_session_outlives_three_token_lifetimes_and_a_revocation_ends_it() {
    let subject = format!("{}@example.com", unique_name("long"));
    let mut s = setup(&subject, LIFETIME).await;
    let t = tunnel(&s).await;
    let mut psql = Interactive::start(&t.conninfo());

    let pid = psql.query("select pg_backend_pid();").await;
    let first = s.session_of(&subject).await.expect("listed");
    let first_exp = first["token_expires_at"].as_i64().expect("exp");
    let session_id = first["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    let mut tick = 0;
    while started.elapsed() < LIFETIME * 3 + Duration::from_secs(1) {
        tick += 1;
        let row = psql
            .query(&format!("select {tick}, pg_backend_pid();"))
            .await;
        assert_eq!(row, format!("{tick}|{pid}"), "the same session answers");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = s.session_of(&subject).await.expect("still listed");
    assert_eq!(now["id"], session_id.as_str());
    let exp = now["token_expires_at"].as_i64().expect("exp");
    assert!(
        exp >= first_exp + 3 * 3,
        "the expiry moved with each refresh: {first_exp} → {exp}"
    );

    // Someone holding the session id (it is listed) but not its secret.
    let forged = Secret::new(format!("{session_id}:{}", "ab".repeat(32)));
    let valid = Secret::new(s.mint.token());
    let refused = idgate::cli::tunnel::refresh(&s.endpoint(), "app", "reader", &forged, &valid)
        .await
        .expect_err("a wrong secret is refused");
    match &refused {
        RefreshFailure::Refused { code, message } => {
            assert_eq!(code, "28000");
            assert!(message.contains("no live session matches"), "{message}");
        }
        other => panic!("{other}"),
    }

    // A statement in flight when the person is revoked: ended at once.
    let marker = unique_name("revoked");
    psql.send(&format!("select pg_sleep(30) /* {marker} */;"))
        .await;
    let pg = support::direct().await;
    eventually("the statement to run upstream", || async {
        pg.query_one(
            "select count(*) from pg_stat_activity where query like '%' || $1 || '%' and state = 'active' and pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .expect("pg_stat_activity")
        .get::<_, i64>(0)
            == 1
    })
    .await;
    let revoked_at = Instant::now();
    s.admin(
        reqwest::Method::POST,
        "/api/revocations",
        Some(json!({ "subject": subject })),
    )
    .await;
    let out = support::ends_within(psql.child, Duration::from_secs(5)).await;
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "ended after {took:?}");
    assert!(
        stderr(&out).contains("access was revoked"),
        "{}",
        stderr(&out)
    );
    drop(t);
    let metrics = reqwest::get(format!("{}/metrics", s.h.admin_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for line in [
        r#"idgate_session_refreshes_total{outcome="ok",reason="allowed"}"#,
        r#"idgate_session_refreshes_total{outcome="refused",reason="wrong_secret"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    let events = s.h.stop_and_read_audit().await;
    let refreshes: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "session_refresh" && e["session_id"] == session_id.as_str())
        .collect();
    let allowed = refreshes
        .iter()
        .filter(|e| e["decision"] == "allow" && e["subject"] == subject.as_str())
        .count();
    assert!(allowed >= 3, "{refreshes:#?}");
    assert!(
        refreshes
            .iter()
            .any(|e| e["decision"] == "deny" && e["error"] == "wrong_secret"),
        "{refreshes:#?}"
    );
    let log = std::fs::read_to_string(s.h.audit_file()).expect("audit");
    assert!(!log.contains(&forged.expose()[session_id.len() + 1..]));
}

#[tokio::test]
async fn another_persons_token_does_not_extend_a_session_which_then_expires() {
    let other = format!("{}@example.com", unique_name("bob"));
    refused_refreshes_leave_the_session_to_expire(Some(&other), &["analysts"], "other_subject")
        .await;
}

#[tokio::test]
async fn a_token_with_other_groups_does_not_extend_a_session_which_then_expires() {
    refused_refreshes_leave_the_session_to_expire(
        None,
        &["analysts", "developers"],
        "other_groups",
    )
    .await;
}

/// A tunnel session whose token command switches, once the session is in,
/// to tokens of `subject` (else the same person) in `groups`: the gateway
/// refuses every refresh with `error`, audited under the token's person,
/// and the session ends at its first token's expiry.
async fn refused_refreshes_leave_the_session_to_expire(
    subject: Option<&str>,
    groups: &[&str],
    error: &str,
) {
    let person = format!("{}@example.com", unique_name("ann"));
    let offered = subject.unwrap_or(&person).to_owned();
    let mut s = setup(&person, LIFETIME).await;
    let t = tunnel(&s).await;
    let mut psql = Interactive::start(&t.conninfo());
    assert_eq!(psql.query("select 1;").await, "1");
    // Logged in: from now on, the token command answers differently (long
    // before the first refresh, due a fifth of the token's life before it
    // expires).
    s.mint.mint_for(&offered, groups);
    let session = s.session_of(&person).await.expect("listed");
    let exp = session["token_expires_at"].as_i64().expect("exp");
    let session_id = session["id"].as_str().expect("id").to_owned();
    psql.send("select pg_sleep(30);").await;
    let out = support::ends_within(psql.child, LIFETIME + Duration::from_secs(10)).await;
    let ended = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(stderr(&out).contains("token expired"), "{}", stderr(&out));
    assert!(
        (exp..=exp + 2).contains(&ended),
        "ended at {ended}, the first token's expiry is {exp}"
    );
    drop(t);

    let events = s.h.stop_and_read_audit().await;
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event"] == "session_refresh"
                && e["session_id"] == session_id.as_str()
                && e["decision"] == "deny"
        })
        .collect();
    assert!(!refused.is_empty(), "no refused refresh audited");
    assert!(
        refused
            .iter()
            .all(|e| e["error"] == error && e["subject"] == offered.as_str()),
        "{refused:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "session_refresh" && e["decision"] == "allow"),
        "no refresh was accepted"
    );
    let end = events
        .iter()
        .find(|e| e["event"] == "session_end" && e["session_id"] == session_id.as_str())
        .expect("session_end");
    assert!(
        end["reason"]
            .as_str()
            .is_some_and(|r| r.contains("token expired")),
        "{end}"
    );
}

#[tokio::test]
async fn idgate_connect_runs_psql_with_a_fresh_token_never_on_its_command_line() {
    let s = setup("ann@example.com", Duration::from_secs(300)).await;
    let connect = |psql_args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idgate"));
        c.args(["connect", support::TARGET, "--role", "reader"])
            .args(s.gateway_args())
            .arg("--")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(psql_args)
            .env_remove("PGPASSWORD")
            .env_remove("IDGATE_TOKEN")
            .env("PGPASSFILE", "/dev/null");
        c
    };
    let out = support::run(&mut connect(&["-c", "select current_user"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro");
    assert_eq!(s.mint.issued(), 1);

    // psql's own exit code comes back.
    let out = support::run(&mut connect(&["-c", "select 1/0"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("division by zero"),
        "{}",
        stderr(&out)
    );

    // What psql was started with, read by a shell psql starts.
    let out = support::run(&mut connect(&[
        "-c",
        r#"\! tr '\0' ' ' < /proc/$PPID/cmdline"#,
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let cmdline = stdout(&out);
    // Debian's psql is a wrapper that execs the real one.
    assert!(cmdline.contains("psql -X"), "{cmdline}");
    assert!(
        !cmdline.contains("eyJ"),
        "a token on psql's command line: {cmdline}"
    );
}
