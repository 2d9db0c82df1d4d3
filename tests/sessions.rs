//! Live sessions end when they should: revocation through the admin API,
//! an administrator's kill, and token expiry, against the real PostgreSQL
//! with real psql sessions, one running a statement and one idle inside a
//! transaction. Also the admin API's authentication.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Harness, Options, eventually, stderr, unique_name};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

const ADMIN_POLICY: &str = r#"
@id("analysts-read")
permit(principal in Group::"analysts", action, resource == Role::"app/reader");

@id("security-administers")
permit(principal in Group::"security", action == Action::"administer", resource == Gateway::"idgate");
"#;

async fn harness() -> Harness {
    Harness::with(Options {
        policy: ADMIN_POLICY.into(),
        admin: true,
        ..Options::default()
    })
    .await
}

fn admin_token(h: &Harness) -> String {
    h.token("sec@example.com", &["security"])
}

/// psql through the gateway running `sql`, left running.
fn psql(h: &Harness, token: &str, sql: &str) -> Child {
    support::psql_running(&h.conninfo("reader", "require"), token, sql)
}

/// psql running a long `pg_sleep` through the gateway, returned once the
/// upstream shows it running, with the marker that finds its backend.
async fn sleeping(h: &Harness, token: &str, pg: &tokio_postgres::Client) -> (Child, String) {
    let marker = unique_name("sleep");
    let child = psql(h, token, &format!("select pg_sleep(60) /* {marker} */"));
    eventually("the statement to run upstream", || async {
        backends(pg, &marker, "active").await == 1
    })
    .await;
    (child, marker)
}

/// psql reading statements from a pipe we hold: `begin` and a marker
/// query, then idle inside the transaction.
async fn psql_idle_in_transaction(h: &Harness, token: &str, marker: &str) -> Child {
    let mut child = Command::new("psql")
        .arg(h.conninfo("reader", "require"))
        .args(["-X", "-A", "-t"])
        .env("PGPASSWORD", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("psql runs");
    let stdin = child.stdin.as_mut().expect("stdin");
    stdin
        .write_all(format!("begin;\nselect '{marker}';\n").as_bytes())
        .await
        .expect("write to psql");
    stdin.flush().await.expect("flush");
    child
}

/// Backends whose current or last query mentions `marker`, in `state`.
async fn backends(pg: &tokio_postgres::Client, marker: &str, state: &str) -> i64 {
    pg.query_one(
        "select count(*) from pg_stat_activity where state = $2 and query like '%' || $1 || '%' and pid <> pg_backend_pid()",
        &[&marker, &state],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

async fn api(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    support::admin_api(&h.admin_url(), method, path, token, body).await
}

async fn live_sessions(h: &Harness) -> Vec<Value> {
    let (status, body) = api(
        h,
        reqwest::Method::GET,
        "/api/sessions",
        Some(&admin_token(h)),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("a list").clone()
}

#[tokio::test]
async fn revocation_ends_running_and_idle_sessions_within_a_second_and_refuses_the_old_token() {
    let h = harness().await;
    let pg = support::direct().await;
    let user = format!("{}@example.com", unique_name("rev"));
    let token = h.token(&user, &["analysts"]);
    let idle_marker = unique_name("idle");

    let (running, running_marker) = sleeping(&h, &token, &pg).await;
    let idle = psql_idle_in_transaction(&h, &token, &idle_marker).await;
    eventually("the idle transaction upstream", || async {
        backends(&pg, &idle_marker, "idle in transaction").await == 1
    })
    .await;
    let listed = live_sessions(&h).await;
    assert_eq!(
        listed
            .iter()
            .filter(|s| s["identity"] == user.as_str())
            .count(),
        2,
        "{listed:?}"
    );

    let revoked_at = Instant::now();
    let (status, body) = api(
        &h,
        reqwest::Method::POST,
        "/api/revocations",
        Some(&admin_token(&h)),
        Some(json!({"subject": user})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(2), "{body}");

    let out = support::ends_within(running, Duration::from_secs(5)).await;
    let ended_running = revoked_at.elapsed();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access was revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the upstream statement to be cancelled", || async {
        backends(&pg, &running_marker, "active").await == 0
    })
    .await;
    eventually("the upstream transaction to end", || async {
        backends(&pg, &idle_marker, "idle in transaction").await == 0
    })
    .await;
    let ended_both = revoked_at.elapsed();
    assert!(
        ended_running < Duration::from_secs(1),
        "running session ended after {ended_running:?}"
    );
    assert!(
        ended_both < Duration::from_secs(1),
        "both sessions ended after {ended_both:?}"
    );
    assert!(
        live_sessions(&h)
            .await
            .iter()
            .all(|s| s["identity"] != user.as_str())
    );
    drop(idle);

    let again = h.psql(&token, "reader", "select 1").await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("revoked"), "{}", stderr(&again));
    // A token issued after the revocation is fine.
    let mut claims = h.issuer.claims_for(
        &user,
        &["analysts"],
        support::AUDIENCE,
        Duration::from_secs(300),
    );
    claims["iat"] = json!(claims["iat"].as_i64().expect("iat") + 1);
    let fresh = h.issuer.mint(claims);
    let ok = h.psql(&fresh, "reader", "select 1").await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    println!(
        "revoke-to-disconnect, one gateway: running statement {ended_running:?}, both sessions {ended_both:?}"
    );

    let metrics = || async {
        reqwest::get(format!("{}/metrics", h.admin_url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    // psql exits once it has sent Terminate; the gateway deregisters the
    // session when it has read it, a moment later.
    eventually("the last session to deregister", || async {
        metrics().await.lines().any(|l| l == "idgate_sessions 0")
    })
    .await;
    let metrics = metrics().await;
    for line in [
        "idgate_sessions 0",
        "idgate_sessions_ended_total{reason=\"revoked\"} 2",
        "idgate_logins_total{outcome=\"failed\",reason=\"revoked\"} 1",
        "idgate_revocations_total 1",
        "idgate_jwks_fetches_total{issuer=\"test\",result=\"ok\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    assert!(metrics.contains("idgate_statements_total{decision=\"allow\"}"));
    assert!(
        metrics.contains("idgate_pool_connections{target=\"app\",role=\"reader\",state=\"open\"}")
    );
}

#[tokio::test]
async fn an_administrator_kills_one_session_by_id() {
    let h = harness().await;
    let pg = support::direct().await;
    let (child, _) = sleeping(&h, &h.analyst(), &pg).await;
    let sessions = live_sessions(&h).await;
    let id = sessions[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(sessions[0]["role"], "reader");
    assert_eq!(sessions[0]["target"], support::TARGET);

    let path = format!("/api/sessions/{id}");
    let admin = admin_token(&h);
    let kill = || api(&h, reqwest::Method::DELETE, &path, Some(&admin), None);
    assert_eq!(kill().await.0, 204);
    let out = support::ends_within(child, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended by an administrator"));
    assert_eq!(kill().await.0, 404);
}

#[tokio::test]
async fn admin_api_wants_a_valid_token_with_the_administer_permit() {
    let h = harness().await;
    let (status, _) = api(&h, reqwest::Method::GET, "/api/sessions", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = api(
        &h,
        reqwest::Method::GET,
        "/api/sessions",
        Some("not-a-token"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = api(
        &h,
        reqwest::Method::GET,
        "/api/sessions",
        Some(&h.analyst()),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = api(
        &h,
        reqwest::Method::GET,
        "/api/sessions",
        Some(&admin_token(&h)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &h,
        reqwest::Method::POST,
        "/api/revocations",
        Some(&admin_token(&h)),
        Some(json!({"subject": "a", "jti": "b"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api(&h, reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
}

/// An administrator's token with extra claims (`sid`, a fixed `jti`).
fn admin_token_with(h: &Harness, sub: &str, extra: Value) -> String {
    let mut claims = h.issuer.claims_for(
        sub,
        &["security"],
        support::AUDIENCE,
        Duration::from_secs(300),
    );
    for (k, v) in extra.as_object().expect("an object") {
        claims[k] = v.clone();
    }
    h.issuer.mint(claims)
}

/// Every `/api` call a holder of `token` might make, with its status.
async fn every_api_call(h: &Harness, token: &str, victim_session: &str) -> Vec<(String, u16)> {
    use reqwest::Method;
    let calls = [
        (Method::GET, "/api/sessions".to_owned(), None),
        (Method::GET, "/api/revocations".to_owned(), None),
        (
            Method::DELETE,
            format!("/api/sessions/{victim_session}"),
            None,
        ),
        (
            Method::POST,
            "/api/revocations".to_owned(),
            Some(json!({"subject": "sec@example.com"})),
        ),
    ];
    let mut out = Vec::new();
    for (method, path, body) in calls {
        let (status, answer) = api(h, method.clone(), &path, Some(token), body).await;
        if status == 401 {
            assert!(
                answer["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("revoked")),
                "{method} {path}: {answer}"
            );
            assert!(!answer.to_string().contains(token), "the token is echoed");
        }
        out.push((format!("{method} {path}"), status));
    }
    out
}

#[tokio::test]
async fn a_revoked_administrator_is_refused_by_every_admin_api_call() {
    let h = harness().await;
    let pg = support::direct().await;
    let admin = admin_token(&h);
    // An innocent session, running a statement.
    let (innocent, _) = sleeping(&h, &h.analyst(), &pg).await;
    let innocent_id = live_sessions(&h).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Three administrators, each revoked a different way.
    let by_subject = h.token("fired-admin", &["security"]);
    let by_sid = admin_token_with(&h, "sid-admin", json!({"sid": "idp-login-1"}));
    let by_jti = admin_token_with(&h, "jti-admin", json!({"jti": "stolen-token-1"}));
    for token in [&by_subject, &by_sid, &by_jti] {
        let (status, body) =
            api(&h, reqwest::Method::GET, "/api/sessions", Some(token), None).await;
        assert_eq!(status, 200, "valid before the revocation: {body}");
    }
    for revocation in [
        json!({"subject": "fired-admin"}),
        json!({"sid": "idp-login-1"}),
        json!({"jti": "stolen-token-1"}),
    ] {
        let (status, body) = api(
            &h,
            reqwest::Method::POST,
            "/api/revocations",
            Some(&admin),
            Some(revocation),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    for (who, token) in [("subject", &by_subject), ("sid", &by_sid), ("jti", &by_jti)] {
        for (call, status) in every_api_call(&h, token, &innocent_id).await {
            assert_eq!(status, 401, "revoked by {who}: {call} answered {status}");
        }
        // As at the database.
        let db = h.psql(token, "reader", "select 1").await;
        assert!(!db.status.success());
        assert!(stderr(&db).contains("revoked"), "{}", stderr(&db));
    }

    // The innocent session survived every attempt, the real administrator
    // was not revoked and still works.
    let listed = live_sessions(&h).await;
    assert!(
        listed.iter().any(|s| s["id"] == innocent_id.as_str()),
        "{listed:?}"
    );
    let (status, revocations) = api(
        &h,
        reqwest::Method::GET,
        "/api/revocations",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        revocations.as_array().map(Vec::len),
        Some(3),
        "{revocations}"
    );
    assert!(
        !revocations.to_string().contains("sec@example.com"),
        "{revocations}"
    );
    // A token of the same person with another jti is not covered by the
    // jti revocation.
    let other_jti = admin_token_with(&h, "jti-admin", json!({}));
    let (status, _) = api(
        &h,
        reqwest::Method::GET,
        "/api/sessions",
        Some(&other_jti),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let path = format!("/api/sessions/{innocent_id}");
    let (status, _) = api(&h, reqwest::Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, 204, "the real administrator can still kill it");
    let out = support::ends_within(innocent, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended by an administrator"));
}

#[tokio::test]
async fn revocations_are_kept_as_long_as_the_tokens_they_cover_can_live() {
    for max_lifetime in [None, Some(Duration::from_secs(2 * 3600))] {
        let h = Harness::with(Options {
            policy: ADMIN_POLICY.into(),
            admin: true,
            max_lifetime,
            ..Options::default()
        })
        .await;
        let admin = admin_token(&h);
        let (status, body) = api(
            &h,
            reqwest::Method::POST,
            "/api/revocations",
            Some(&admin),
            Some(json!({"subject": "someone"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (_, list) = api(
            &h,
            reqwest::Method::GET,
            "/api/revocations",
            Some(&admin),
            None,
        )
        .await;
        let r = &list[0];
        let kept = r["until"].as_i64().expect("until") - r["at"].as_i64().expect("at");
        // The harness's issuer has a clock skew of 30 s.
        let expected = max_lifetime.map_or(24 * 3600, |d| d.as_secs() as i64) + 30;
        assert_eq!(kept, expected, "max_lifetime {max_lifetime:?}: {r}");

        // One shared by a gateway configured with shorter lifetimes is
        // kept as long as this gateway accepts the tokens it covers.
        let gw = &h.running.as_ref().expect("running").services;
        let at = r["at"].as_i64().expect("at");
        gw.apply_revocation(idgate::sessions::Revocation {
            what: idgate::sessions::RevocationMatch::Subject {
                issuer: "test".into(),
                subject: "elsewhere".into(),
            },
            at,
            until: at + 60,
        });
        let (_, list) = api(
            &h,
            reqwest::Method::GET,
            "/api/revocations",
            Some(&admin),
            None,
        )
        .await;
        let shared = list
            .as_array()
            .expect("a list")
            .iter()
            .find(|r| r["what"]["subject"]["subject"] == "elsewhere")
            .unwrap_or_else(|| panic!("{list}"));
        assert_eq!(shared["until"].as_i64(), Some(at + expected), "{shared}");
    }
}

#[tokio::test]
async fn a_token_valid_until_the_year_3000_is_refused_with_its_reason() {
    let h = harness().await;
    let mut claims = h.issuer.claims_for(
        "forever@example.com",
        &["analysts", "security"],
        support::AUDIENCE,
        Duration::from_secs(300),
    );
    claims["exp"] = json!(32_503_680_000_i64); // 3000-01-01
    let token = h.issuer.mint(claims);
    let db = h.psql(&token, "reader", "select 1").await;
    assert!(!db.status.success());
    assert!(
        stderr(&db).contains("exceeds max_lifetime 86400 s"),
        "{}",
        stderr(&db)
    );
    let (status, body) = api(
        &h,
        reqwest::Method::GET,
        "/api/sessions",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("max_lifetime"), "{body}");
}

#[tokio::test]
async fn a_session_ends_when_its_token_expires() {
    let h = harness().await;
    let claims = h.issuer.claims_for(
        "short@example.com",
        &["analysts"],
        support::AUDIENCE,
        Duration::from_secs(3),
    );
    let exp = claims["exp"].as_i64().expect("exp");
    let token = h.issuer.mint(claims);
    let child = psql(&h, &token, "select pg_sleep(60)");
    let out = support::ends_within(child, Duration::from_secs(10)).await;
    let now = time::OffsetDateTime::now_utc();
    let late = now - time::OffsetDateTime::from_unix_timestamp(exp).expect("exp");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token expired"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        late > time::Duration::seconds(-1) && late < time::Duration::seconds(1),
        "ended {late} after exp"
    );
}

fn logout_claims(h: &Harness, sub: &str, sid: &str) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "iss": h.issuer.issuer_url(),
        "aud": support::AUDIENCE,
        "iat": now,
        "exp": now + 120,
        "jti": unique_name("logout"),
        "sub": sub,
        "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    })
}

async fn backchannel(h: &Harness, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/backchannel-logout", h.admin_url()))
        .form(&[("logout_token", token)])
        .send()
        .await
        .expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_backchannel_logout_ends_the_sessions_of_its_sid_and_refuses_their_tokens() {
    let h = harness().await;
    let pg = support::direct().await;
    let user = format!("{}@example.com", unique_name("bcl"));
    let sid = unique_name("sid");
    let mut claims = h.issuer.claims_for(
        &user,
        &["analysts"],
        support::AUDIENCE,
        Duration::from_secs(300),
    );
    claims["sid"] = json!(sid);
    let token = h.issuer.mint(claims);
    let other = h.token(&user, &["analysts"]);
    let (running, marker) = sleeping(&h, &token, &pg).await;

    let logout = h.issuer.sign_raw(
        &json!({"alg": "ES256", "typ": "logout+jwt", "kid": h.issuer.kid()}),
        &logout_claims(&h, &user, &sid),
    );
    let sent = Instant::now();
    let (status, body) = backchannel(&h, &logout).await;
    assert_eq!(status, 200, "{body}");
    let out = support::ends_within(running, Duration::from_secs(5)).await;
    let ended = sent.elapsed();
    assert!(String::from_utf8_lossy(&out.stderr).contains("access was revoked"));
    eventually("the upstream statement to end", || async {
        backends(&pg, &marker, "active").await == 0
    })
    .await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "ended after {:?}",
        sent.elapsed()
    );
    println!("back-channel logout to disconnect: {ended:?}");

    let again = h.psql(&token, "reader", "select 1").await;
    assert!(stderr(&again).contains("revoked"), "{}", stderr(&again));
    // A token of another login session (no sid) of the same person is not
    // covered by a sid logout.
    let ok = h.psql(&other, "reader", "select 1").await;
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[tokio::test]
async fn malformed_logout_tokens_are_refused() {
    let h = harness().await;
    let header = json!({"alg": "ES256", "typ": "logout+jwt", "kid": h.issuer.kid()});
    let good = logout_claims(&h, "a@example.com", "s");
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut without = |name: &'static str, claim: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("object").remove(claim);
        cases.push((name, h.issuer.sign_raw(&header, &c)));
    };
    without("no events", "events");
    without("no jti", "jti");
    without("no iat", "iat");
    without("no aud", "aud");
    let mut c = good.clone();
    c.as_object_mut().expect("object").remove("sub");
    c.as_object_mut().expect("object").remove("sid");
    cases.push(("neither sub nor sid", h.issuer.sign_raw(&header, &c)));
    let mut c = good.clone();
    c["nonce"] = json!("n");
    cases.push(("a nonce", h.issuer.sign_raw(&header, &c)));
    let mut c = good.clone();
    c["aud"] = json!("someone-else");
    cases.push(("another audience", h.issuer.sign_raw(&header, &c)));
    let mut c = good.clone();
    c["events"] = json!({"http://schemas.openid.net/event/other": {}});
    cases.push(("another event", h.issuer.sign_raw(&header, &c)));
    let mut c = good.clone();
    c["exp"] = json!(c["iat"].as_i64().expect("iat") - 3600);
    cases.push(("expired", h.issuer.sign_raw(&header, &c)));
    cases.push((
        "an access token",
        h.issuer.sign_raw(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": h.issuer.kid()}),
            &good,
        ),
    ));
    // Another first character of the signature: a different value, still
    // canonical base64url.
    let signed = h.issuer.sign_raw(&header, &good);
    let at = signed.rfind('.').expect("three segments") + 1;
    let first = if signed.as_bytes()[at] == b'A' {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{first}{}", &signed[..at], &signed[at + 1..]);
    cases.push(("a bad signature", tampered));
    cases.push(("an ordinary login token", h.analyst()));
    cases.push(("garbage", "not.a.token".into()));
    for (name, token) in cases {
        let (status, body) = backchannel(&h, &token).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"], "invalid_request", "{name}");
    }
    let (status, _) = backchannel(&h, &h.issuer.sign_raw(&header, &good)).await;
    assert_eq!(status, 200, "the well-formed one is accepted");
}

async fn idgate(h: &Harness, args: &[&str], token: &str) -> std::process::Output {
    support::run(
        Command::new(env!("CARGO_BIN_EXE_idgate"))
            .args(args)
            .args(["--admin", &h.admin_url()])
            .env("IDGATE_TOKEN", token),
    )
    .await
}

#[tokio::test]
async fn the_command_line_lists_kills_and_revokes_through_the_admin_api() {
    let h = harness().await;
    let admin = admin_token(&h);
    let pg = support::direct().await;
    let (running, _) = sleeping(&h, &h.analyst(), &pg).await;

    let list = idgate(&h, &["sessions", "list"], &admin).await;
    assert!(list.status.success(), "{}", stderr(&list));
    let table = support::stdout(&list);
    assert!(
        table.contains("ann@example.com") && table.contains("1 session(s)"),
        "{table}"
    );
    let id = table
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a row")
        .to_owned();

    let kill = idgate(&h, &["sessions", "kill", &id], &admin).await;
    assert!(kill.status.success(), "{}", stderr(&kill));
    assert!(support::stdout(&kill).contains("ended"));
    let out = support::ends_within(running, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended by an administrator"));

    let revoke = idgate(&h, &["revoke", "--subject", "ann@example.com"], &admin).await;
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    assert!(
        support::stdout(&revoke).contains("revoked subject test/ann@example.com"),
        "{}",
        support::stdout(&revoke)
    );

    let refused = idgate(&h, &["sessions", "list"], &h.developer()).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("may not administer"),
        "{}",
        stderr(&refused)
    );
    // The subject just revoked is refused before its permits are asked.
    let revoked = idgate(&h, &["sessions", "list"], &h.analyst()).await;
    assert!(!revoked.status.success());
    assert!(stderr(&revoked).contains("revoked"), "{}", stderr(&revoked));
}

#[tokio::test]
async fn with_on_expiry_allow_a_session_outlives_its_token() {
    let h = Harness::with(Options {
        policy: ADMIN_POLICY.into(),
        admin: true,
        on_expiry: idgate::config::OnExpiry::Allow,
        ..Options::default()
    })
    .await;
    let token = h.issuer.mint_for(
        "long@example.com",
        &["analysts"],
        support::AUDIENCE,
        Duration::from_secs(2),
    );
    let out = support::ends_within(
        psql(&h, &token, "select pg_sleep(4); select 'still here'"),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("still here"));
}
