//! The MySQL front end end to end, against the machine's MariaDB with the
//! real `mariadb` client: token login, the read-only grant through an
//! upstream user that can write, identity on the upstream session, audit,
//! revocation and expiry of live sessions, KILL, pooling with
//! COM_RESET_CONNECTION, and malformed packets.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Harness, MYSQL_DATABASE, MYSQL_TARGET, Options, mysql_wire, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POLICY: &str = r#"
@id("analysts-read-shop")
permit(principal in Group::"analysts", action in [Action::"connect", Action::"read", Action::"session", Action::"transaction"], resource == Role::"shop/reader");

@id("developers-write-shop")
permit(principal in Group::"developers", action, resource in Target::"shop");

@id("security-administers")
permit(principal in Group::"security", action == Action::"administer", resource == Gateway::"idgate");
"#;

async fn harness() -> Harness {
    Harness::with(Options {
        policy: POLICY.into(),
        mysql: true,
        admin: true,
        ..Options::default()
    })
    .await
}

fn mysql_port(h: &Harness) -> String {
    h.mysql_addr.expect("MySQL front end").port().to_string()
}

/// The `mariadb` client through the gateway, plain text on loopback.
fn mariadb(h: &Harness, token: &str, role: &str, sql: &str) -> tokio::process::Command {
    mariadb_to(h, token, role, MYSQL_TARGET, sql)
}

/// As `mariadb`, naming `database`.
fn mariadb_to(
    h: &Harness,
    token: &str,
    role: &str,
    database: &str,
    sql: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.args(["--skip-ssl", "-h", "127.0.0.1", "-P", &mysql_port(h)])
        .args(["-u", role, "-N", "-B", "--connect-timeout=10", database])
        .args(["-e", sql])
        .env("MYSQL_PWD", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(h: &Harness, token: &str, role: &str, sql: &str) -> Output {
    support::run(&mut mariadb(h, token, role, sql)).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// MariaDB as root, directly.
async fn root(sql: &str) -> String {
    support::mysql_root(sql).await
}

/// A fresh table with three rows, readable by the fixture user.
async fn table() -> String {
    let t = unique_name("t");
    root(&format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT); INSERT INTO {t} VALUES (1,'a'),(2,'b'),(3,'c')"
    ))
    .await;
    t
}

#[tokio::test]
async fn a_reader_logs_in_with_a_token_reads_and_is_named_upstream() {
    let mut h = harness().await;
    let t = table().await;
    let token = h.analyst();
    let out = run(
        &h,
        &token,
        "reader",
        &format!("SELECT name FROM {t} WHERE id = 2; SELECT @idgate_identity; SELECT @@session.tx_read_only"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "b\nann@example.com\n1\n");
    for forge in [
        "SET @idgate_identity = 'boss@example.com'",
        "SET @IDGATE_IDENTITY := 'boss@example.com'",
        "SELECT 'boss@example.com' INTO @idgate_identity",
        "SELECT @idgate_identity := 'boss@example.com'",
    ] {
        let out = run(&h, &token, "reader", forge).await;
        assert!(
            stderr(&out).contains("only the gateway sets it"),
            "{forge}: {}",
            stderr(&out)
        );
    }

    let events = h.stop_and_read_audit().await;
    let statement = events
        .iter()
        .find(|e| {
            e["event"] == "statement" && e["statement"].as_str().is_some_and(|s| s.contains(&t))
        })
        .expect("the read is audited");
    assert_eq!(statement["protocol"], "mysql");
    assert_eq!(statement["identity"], "ann@example.com");
    assert_eq!(statement["target"], MYSQL_TARGET);
    assert_eq!(statement["role"], "reader");
    assert_eq!(statement["decision"], "allow");
    let login = events
        .iter()
        .find(|e| e["event"] == "auth_ok")
        .expect("auth_ok");
    assert_eq!(login["protocol"], "mysql");
}

#[tokio::test]
async fn writes_are_refused_for_a_reader_with_mysql_errors_and_change_nothing() {
    let h = harness().await;
    let t = table().await;
    let token = h.analyst();
    for sql in [
        format!("DELETE FROM {t}"),
        format!("UPDATE {t} SET name = 'x'"),
        format!("SELECT 1; DELETE FROM {t}"),
        format!("/*!DELETE FROM {t}*/"),
        "SET SESSION TRANSACTION READ WRITE".to_owned(),
    ] {
        let out = run(&h, &token, "reader", &sql).await;
        assert!(!out.status.success(), "{sql} ran");
        let err = stderr(&out);
        assert!(
            err.contains("ERROR 1142") || err.contains("ERROR 1227"),
            "{sql}: {err}"
        );
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    assert_eq!(
        root(&format!("SELECT group_concat(name ORDER BY id) FROM {t}")).await,
        "a,b,c\n"
    );
    // A developer may write through the same upstream user.
    let out = run(
        &h,
        &h.developer(),
        "writer",
        &format!("DELETE FROM {t} WHERE id = 3"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(root(&format!("SELECT count(*) FROM {t}")).await, "2\n");
}

#[tokio::test]
async fn bad_tokens_unknown_targets_and_other_databases_are_refused() {
    let h = harness().await;
    let out = run(&h, "not-a-token", "reader", "SELECT 1").await;
    assert!(stderr(&out).contains("ERROR 1045"), "{}", stderr(&out));
    assert!(stderr(&out).contains("token rejected"), "{}", stderr(&out));

    let out = support::run(&mut mariadb_to(
        &h,
        &h.analyst(),
        "reader",
        "mysql",
        "SELECT 1",
    ))
    .await;
    assert!(stderr(&out).contains("ERROR 1049"), "{}", stderr(&out));

    let out = run(&h, &h.analyst(), "reader", "USE mysql").await;
    assert!(stderr(&out).contains("ERROR 1044"), "{}", stderr(&out));
    let out = run(
        &h,
        &h.analyst(),
        "reader",
        &format!("USE {MYSQL_TARGET}; SELECT DATABASE()"),
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!("{MYSQL_DATABASE}\n"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn revocation_ends_a_live_mariadb_session_within_a_second() {
    let h = harness().await;
    let user = format!("{}@example.com", unique_name("rev"));
    let token = h.token(&user, &["developers"]);
    let child = mariadb(&h, &token, "writer", "SELECT SLEEP(60)")
        .spawn()
        .expect("mariadb runs");
    support::eventually("the session to be live", || async {
        let (_, list) = support::admin_api(
            &h.admin_url(),
            reqwest::Method::GET,
            "/api/sessions",
            Some(&h.token("sec@example.com", &["security"])),
            None,
        )
        .await;
        list.as_array()
            .is_some_and(|l| l.iter().any(|s| s["identity"] == user.as_str()))
    })
    .await;
    let revoked_at = Instant::now();
    let (status, body) = support::admin_api(
        &h.admin_url(),
        reqwest::Method::POST,
        "/api/revocations",
        Some(&h.token("sec@example.com", &["security"])),
        Some(json!({"subject": user})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let out = support::ends_within(child, Duration::from_secs(5)).await;
    let took = revoked_at.elapsed();
    assert!(
        stderr(&out).contains("access was revoked"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(1), "ended after {took:?}");
    support::eventually("the upstream statement to be killed", || async {
        root("SELECT count(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(60)'")
            .await
            == "0\n"
    })
    .await;
    let again = run(&h, &token, "writer", "SELECT 1").await;
    assert!(stderr(&again).contains("revoked"), "{}", stderr(&again));
}

#[tokio::test]
async fn a_session_ends_when_its_token_expires() {
    let h = harness().await;
    let claims = h.issuer.claims_for(
        "short@example.com",
        &["developers"],
        support::AUDIENCE,
        Duration::from_secs(3),
    );
    let token = h.issuer.mint(claims);
    let child = mariadb(&h, &token, "writer", "SELECT SLEEP(60)")
        .spawn()
        .expect("mariadb runs");
    let out = support::ends_within(child, Duration::from_secs(10)).await;
    assert!(stderr(&out).contains("token expired"), "{}", stderr(&out));
}

#[tokio::test]
async fn kill_query_reaches_only_the_persons_own_connection() {
    let h = harness().await;
    let alice = h.token(
        &format!("{}@example.com", unique_name("alice")),
        &["developers"],
    );
    let bob = h.token(
        &format!("{}@example.com", unique_name("bob")),
        &["developers"],
    );
    let marker = unique_name("victim");
    let victim = mariadb(
        &h,
        &alice,
        "writer",
        &format!("SELECT SLEEP(20) AS {marker}"),
    )
    .spawn()
    .expect("mariadb runs");
    support::eventually("the statement upstream", || async {
        root(&format!(
            "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(20) AS {marker}'"
        ))
        .await
            == "1\n"
    })
    .await;
    // Bob cannot kill anything of Alice's, by any id; nor a server id.
    let server_id = root(&format!(
        "SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(20) AS {marker}'"
    ))
    .await;
    let out = run(
        &h,
        &bob,
        "writer",
        &format!("KILL QUERY {}", server_id.trim()),
    )
    .await;
    assert!(!out.status.success());
    for id in 1..=64 {
        let out = run(&h, &bob, "writer", &format!("KILL QUERY {id}")).await;
        assert!(
            !out.status.success() && stderr(&out).contains("ERROR 1094"),
            "KILL QUERY {id}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        root(&format!(
            "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(20) AS {marker}'"
        ))
        .await,
        "1\n",
        "Bob's KILLs reached nothing"
    );
    // Alice can: her own connection's statement stops.
    let mut killed = false;
    for id in 1..=64 {
        if run(&h, &alice, "writer", &format!("KILL QUERY {id}"))
            .await
            .status
            .success()
        {
            killed = true;
            break;
        }
    }
    assert!(killed, "Alice could not kill her own statement");
    let out = support::ends_within(victim, Duration::from_secs(10)).await;
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_pooled_connection_is_reset_between_people() {
    let h = Harness::with(Options {
        policy: POLICY.into(),
        mysql: true,
        pool: idgate::config::PoolConfig {
            max_size: 1,
            ..idgate::config::PoolConfig::default()
        },
        ..Options::default()
    })
    .await;
    let first = run(
        &h,
        &h.analyst(),
        "reader",
        "SET @left_behind = 'ann'; SELECT CONNECTION_ID()",
    )
    .await;
    assert!(first.status.success(), "{}", stderr(&first));
    let bob = h.token("bob@example.com", &["analysts"]);
    let second = run(
        &h,
        &bob,
        "reader",
        "SELECT CONNECTION_ID(); SELECT coalesce(@left_behind, 'none'); SELECT @idgate_identity",
    )
    .await;
    assert!(second.status.success(), "{}", stderr(&second));
    let lines: Vec<String> = stdout(&second).lines().map(str::to_owned).collect();
    assert_eq!(
        lines[0],
        stdout(&first).trim(),
        "the same server connection"
    );
    assert_eq!(lines[1], "none");
    assert_eq!(lines[2], "bob@example.com");
}

async fn login_packet(h: &Harness) -> TcpStream {
    let mut tcp = TcpStream::connect(h.mysql_addr.expect("MySQL"))
        .await
        .expect("connect");
    let mut greeting = [0u8; 512];
    let n = tcp.read(&mut greeting).await.expect("greeting");
    assert!(n > 4, "a greeting");
    tcp
}

async fn gone(mut tcp: TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest))
        .await
        .expect("the gateway closes the connection")
        .ok();
    rest
}

#[tokio::test]
async fn malformed_packets_end_only_their_connection() {
    let h = harness().await;
    // A handshake response cut short.
    let mut tcp = login_packet(&h).await;
    tcp.write_all(&[40, 0, 0, 1, 0x85, 0xa6]).await.unwrap();
    drop(tcp.shutdown().await);
    gone(tcp).await;
    // A length far past any login packet.
    let mut tcp = login_packet(&h).await;
    tcp.write_all(&[0xff, 0xff, 0xff, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    gone(tcp).await;
    // The wrong sequence id.
    let mut tcp = login_packet(&h).await;
    tcp.write_all(&[4, 0, 0, 9, 1, 2, 3, 4]).await.unwrap();
    gone(tcp).await;
    // Garbage that is not a packet at all.
    let mut tcp = login_packet(&h).await;
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    gone(tcp).await;

    let out = run(&h, &h.analyst(), "reader", "SELECT 41 + 1").await;
    assert_eq!(stdout(&out), "42\n", "{}", stderr(&out));
}

#[tokio::test]
async fn forged_tokens_are_refused_on_the_mysql_port() {
    let h = harness().await;
    let genuine = h.analyst();
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    // As the PostgreSQL suite's: expired, another audience, garbage; and
    // unsigned (alg none), a flipped signature, a broken encoding.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = h.issuer.mint(json!({
        "iss": h.issuer.issuer_url(), "aud": support::AUDIENCE, "sub": "ann",
        "exp": now - 600, "iat": now - 900, "groups": ["analysts"],
    }));
    let wrong_aud = h.issuer.mint(json!({
        "iss": h.issuer.issuer_url(), "aud": "someone-else", "sub": "ann",
        "exp": now + 600, "iat": now, "groups": ["analysts"],
    }));
    let none_header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let forged = [
        expired,
        wrong_aud,
        "garbage".to_owned(),
        format!("{none_header}.{}.", parts[1]),
        {
            let mut sig = parts[2].clone().into_bytes();
            sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
            parts[2] = String::from_utf8(sig).unwrap();
            parts.join(".")
        },
        h.token("ann@example.com", &["analysts"]).replace('.', ".."),
    ];
    for token in forged {
        let out = run(&h, &token, "reader", "SELECT 1").await;
        let err = stderr(&out);
        assert!(err.contains("ERROR 1045"), "{token}: {err}");
        assert!(err.contains("token rejected"), "{token}: {err}");
        assert!(!err.contains(&token), "the token is echoed back: {err}");
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn raw_login(h: &Harness, token: &str) -> TcpStream {
    mysql_wire::login(h.mysql_addr.expect("MySQL"), token, "reader").await
}

#[tokio::test]
async fn unlisted_commands_are_refused_and_the_session_goes_on() {
    let h = harness().await;
    let mut tcp = raw_login(&h, &h.analyst()).await;
    // COM_STATISTICS, COM_CHANGE_USER, COM_BINLOG_DUMP, COM_REGISTER_SLAVE,
    // COM_SET_OPTION, COM_STMT_FETCH, COM_PROCESS_KILL, an unknown byte.
    for refused in [
        &[0x09][..],
        &[0x11, b'r', b'o', b'o', b't', 0],
        &[0x12, 4, 0, 0, 0],
        &[0x15],
        &[0x1b, 0, 0],
        &[0x1c, 1, 0, 0, 0, 1, 0, 0, 0],
        &[0x0c, 1, 0, 0, 0],
        &[0x7f],
    ] {
        let reply = mysql_wire::command(&mut tcp, refused).await;
        assert_eq!(
            mysql_wire::err_code(&reply),
            Some(1047),
            "0x{:02x}: {reply:?}",
            refused[0]
        );
    }
    let ping = mysql_wire::command(&mut tcp, &[0x0e]).await;
    assert_eq!(ping.first(), Some(&0), "COM_PING: {ping:?}");
    // LOAD DATA LOCAL is never offered: the server is asked without
    // CLIENT_LOCAL_FILES, and the statement needs more than read anyway.
    let local = mysql_wire::command(
        &mut tcp,
        b"\x03LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
    )
    .await;
    assert!(mysql_wire::err_code(&local).is_some(), "{local:?}");
}

#[tokio::test]
async fn a_malformed_command_ends_only_its_session() {
    let h = harness().await;
    // The wrong sequence id for a command.
    let mut tcp = raw_login(&h, &h.analyst()).await;
    tcp.write_all(&[1, 0, 0, 5, 0x0e]).await.unwrap();
    let reply = mysql_wire::packet(&mut tcp).await;
    assert_eq!(mysql_wire::err_code(&reply), Some(1156), "{reply:?}");
    gone(tcp).await;
    // A command announced far larger than the gateway holds.
    let mut tcp = raw_login(&h, &h.analyst()).await;
    tcp.write_all(&[0xff, 0xff, 0xff, 0, 0x03]).await.unwrap();
    tcp.write_all(&[0xff, 0xff, 0xff, 1]).await.unwrap();
    drop(tcp.shutdown().await);
    gone(tcp).await;
    // A command cut off by the client going away.
    let mut tcp = raw_login(&h, &h.analyst()).await;
    tcp.write_all(&[9, 0, 0, 0, 0x03, b'S']).await.unwrap();
    drop(tcp.shutdown().await);
    gone(tcp).await;

    let out = run(&h, &h.analyst(), "reader", "SELECT 6 * 7").await;
    assert_eq!(stdout(&out), "42\n", "{}", stderr(&out));
}
