//! The person's side for a MySQL target, against a real gateway and
//! MariaDB: `idgate tunnel` (the real binary) with the real `mariadb`
//! client given no password, over TLS to a gateway that refuses tokens in
//! plain text, and in plain text on loopback when asked; a refusal
//! reaching the local client as the gateway's own error; a tunnelled
//! session ending at its token's expiry (no refresh for MySQL yet);
//! `idgate connect` running `mariadb` with the token only in `MYSQL_PWD`;
//! and, with a hand-written client, the local logins of other auth
//! plugins than the mariadb client's.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::BoxFuture;
use idgate::cli::endpoint::{Endpoint, EndpointArgs, SslMode};
use idgate::cli::settings::Protocol;
use idgate::cli::token_source::{TokenSource, TokenSourceError};
use idgate::cli::tunnel::{self, Tunnel};
use idgate::dev::DevIssuer;
use idgate::secret::Secret;
use idgate::wire::mysql::{self as codec, ErrPacket, Handshake, HandshakeResponse, caps};
use support::mint::Mint;
use support::tunnel::TunnelProcess;
use support::{Harness, MYSQL_DATABASE, MYSQL_TARGET, Options, stderr, stdout, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
@id("analysts-read-shop")
permit(principal in Group::"analysts", action in [Action::"connect", Action::"read", Action::"session", Action::"transaction"], resource == Role::"shop/reader");

@id("developers-write-shop")
permit(principal in Group::"developers", action, resource in Target::"shop");
"#;

/// A gateway serving MySQL whose issuer the test's mint signs for.
struct Setup {
    h: Harness,
    mint: Arc<Mint>,
    /// The token command for `--token-command`.
    command: String,
}

/// `plaintext_loopback`: whether the gateway takes a token in plain text
/// from loopback; without it, only a TLS login gets in.
async fn setup(subject: &str, ttl: Duration, plaintext_loopback: bool) -> Setup {
    let issuer = Arc::new(DevIssuer::start().await.expect("issuer"));
    let h = Harness::with(Options {
        policy: POLICY.into(),
        mysql: true,
        allow_plaintext_loopback: plaintext_loopback,
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

    fn mysql_port(&self) -> u16 {
        self.h.mysql_addr.expect("MySQL front end").port()
    }

    /// `--protocol mysql --gateway … --port … --ca-file … --token-command …`.
    fn gateway_args(&self) -> Vec<String> {
        vec![
            "--protocol".into(),
            "mysql".into(),
            "--gateway".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.mysql_port().to_string(),
            "--ca-file".into(),
            self.cert(),
            "--token-command".into(),
            self.command.clone(),
        ]
    }
}

/// A fresh table with three rows, as MariaDB's root.
async fn table() -> String {
    let t = unique_name("t");
    root(&format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT); INSERT INTO {t} VALUES (1,'a'),(2,'b'),(3,'c')"
    ))
    .await;
    t
}

async fn root(sql: &str) -> String {
    support::mysql_root(sql).await
}

async fn tunnel(s: &Setup, extra: &[&str]) -> TunnelProcess {
    let mut args = s.gateway_args();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    tunnel_with(&args).await
}

/// `idgate tunnel shop ARGS`, once it says where it listens.
async fn tunnel_with(args: &[String]) -> TunnelProcess {
    let mut all = vec![MYSQL_TARGET.to_owned()];
    all.extend_from_slice(args);
    support::tunnel::start(&all, "idgate=debug").await
}

/// The `mariadb` client at the tunnel, with no password anywhere it
/// could find one.
fn mariadb_without_password(port: u16, user: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "-h", "127.0.0.1", "-P", &port.to_string()])
        .args(["-u", user, "-N", "-B", "--connect-timeout=10"])
        .args(args)
        .env_remove("MYSQL_PWD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn through(port: u16, user: &str, args: &[&str]) -> Output {
    support::run(&mut mariadb_without_password(port, user, args)).await
}

#[tokio::test]
async fn mariadb_reads_through_the_tunnel_over_tls_without_a_password() {
    // The gateway refuses tokens in plain text: only TLS gets in.
    let s = setup("ann@example.com", Duration::from_secs(300), false).await;
    let t = tunnel(&s, &["--role", "reader"]).await;
    assert!(
        t.greeting.contains("shop (mysql) via 127.0.0.1:")
            && t.greeting
                .contains(&format!("mariadb -h 127.0.0.1 -P {}", t.port)),
        "{}",
        t.greeting
    );
    let table = table().await;

    // The local client names any user and database, and no password.
    let out = through(
        t.port,
        "someone",
        &[
            "anything",
            "-e",
            &format!(
                "SELECT name FROM {table} WHERE id = 2; SELECT @idgate_identity; SELECT @@session.tx_read_only; SELECT DATABASE()"
            ),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("b\nann@example.com\n1\n{MYSQL_DATABASE}\n")
    );

    // The gateway's policy still holds, with its own errors.
    let out = through(t.port, "someone", &["-e", &format!("DELETE FROM {table}")]).await;
    assert!(!out.status.success(), "a reader deleted");
    assert!(stderr(&out).contains("ERROR 1142"), "{}", stderr(&out));
    assert_eq!(root(&format!("SELECT count(*) FROM {table}")).await, "3\n");

    // A read-only transaction, statement by statement.
    let out = through(
        t.port,
        "someone",
        &[
            "-e",
            &format!("START TRANSACTION READ ONLY; SELECT name FROM {table} WHERE id = 3; COMMIT"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "c\n");

    // Each local connection logged in with a token of its own.
    assert!(s.mint.issued() >= 3, "{} tokens", s.mint.issued());
}

#[tokio::test]
async fn without_role_the_local_user_is_the_role_and_refusals_are_the_gateways() {
    let s = setup("ann@example.com", Duration::from_secs(300), false).await;
    let t = tunnel(&s, &[]).await;
    let out = through(t.port, "reader", &["-e", "SELECT CURRENT_USER()"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("idgate_native@"),
        "{}",
        stdout(&out)
    );

    // A role the person may not use: the gateway's refusal, as is.
    let out = through(t.port, "writer", &["-e", "SELECT 1"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ERROR 1045"), "{}", stderr(&out));

    // Someone the policy does not know at all.
    s.mint.mint_for("eve@example.com", &["visitors"]);
    let out = through(t.port, "reader", &["-e", "SELECT 1"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ERROR 1045"), "{}", stderr(&out));
}

#[tokio::test]
async fn plain_text_to_a_loopback_gateway_only_when_asked() {
    let s = setup("ann@example.com", Duration::from_secs(300), true).await;
    let t = tunnel(&s, &["--role", "reader", "--sslmode", "disable"]).await;
    assert!(t.greeting.contains("(plain text)"), "{}", t.greeting);
    let out = through(t.port, "x", &["-e", "SELECT @idgate_identity"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ann@example.com\n");

    // Off loopback, plain text is refused before anything is sent.
    let out = support::run(
        Command::new(env!("CARGO_BIN_EXE_idgate"))
            .args(["tunnel", MYSQL_TARGET, "--protocol", "mysql"])
            .args(["--gateway", "gw.example.com", "--sslmode", "disable"])
            .args(["--token-command", "echo nothing"]),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not on loopback"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_token_source_that_fails_is_the_local_clients_login_error() {
    let args: Vec<String> = [
        "--protocol",
        "mysql",
        "--gateway",
        "127.0.0.1",
        "--port",
        "1",
        "--token-command",
        "echo 'not logged in' >&2; exit 1",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    let t = tunnel_with(&args).await;
    let out = through(t.port, "reader", &["-e", "SELECT 1"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    // At the usual place: after the login, not in place of the greeting.
    assert!(
        err.contains("ERROR 1045 (28000): idgate tunnel: cannot get a token"),
        "{err}"
    );
    assert!(err.contains("not logged in"), "{err}");

    // The same for a gateway that cannot be reached.
    let mut args = args;
    args[7] = "echo a-token".into();
    let t = tunnel_with(&args).await;
    let out = through(t.port, "reader", &["-e", "SELECT 1"]).await;
    let err = stderr(&out);
    assert!(
        err.contains("ERROR 1105 (HY000): idgate tunnel: cannot reach the gateway at 127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_tunnelled_mysql_session_ends_when_its_token_expires() {
    let s = setup("short@example.com", Duration::from_secs(3), false).await;
    s.mint.mint_for("short@example.com", &["developers"]);
    let t = tunnel(&s, &["--role", "writer"]).await;
    let out = support::ends_within(
        mariadb_without_password(t.port, "x", &["-e", "SELECT SLEEP(60)"])
            .spawn()
            .expect("mariadb runs"),
        Duration::from_secs(15),
    )
    .await;
    assert!(stderr(&out).contains("token expired"), "{}", stderr(&out));
}

/// A `mariadb` on PATH that writes down its arguments and whether it got
/// a token in `MYSQL_PWD`, then runs the real one.
fn recording_mariadb(dir: &Path) -> String {
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v mariadb"])
        .output()
        .expect("sh");
    let real = String::from_utf8(real.stdout).expect("path");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let script = bin.join("mariadb");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{log}/argv'\ncase \"$MYSQL_PWD\" in eyJ*) echo token > '{log}/pwd';; *) echo none > '{log}/pwd';; esac\nexec '{real}' \"$@\"\n",
            log = dir.display(),
            real = real.trim(),
        ),
    )
    .expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test]
async fn idgate_connect_runs_mariadb_with_the_token_only_in_its_environment() {
    let s = setup("ann@example.com", Duration::from_secs(300), false).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = recording_mariadb(dir.path());
    // The target's protocol, the gateway and its CA from the person's
    // config file, as they would set it once.
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("idgate")).expect("config dir");
    std::fs::write(
        config.join("idgate/config.toml"),
        format!(
            "gateway = \"127.0.0.1\"\nmysql_port = {}\nca_file = \"{}\"\n\n[targets.{MYSQL_TARGET}]\nprotocol = \"mysql\"\n",
            s.mysql_port(),
            s.cert()
        ),
    )
    .expect("config");
    let connect = |client_args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idgate"));
        c.args(["connect", MYSQL_TARGET, "--role", "reader"])
            .args(["--token-command", &s.command])
            .arg("--")
            .args(["--no-defaults", "-N", "-B"])
            .args(client_args)
            .env("PATH", &path)
            .env("XDG_CONFIG_HOME", &config)
            .env_remove("MYSQL_PWD")
            .env_remove("IDGATE_TOKEN")
            .env_remove("IDGATE_PROTOCOL");
        c
    };
    let out = support::run(&mut connect(&[
        "-e",
        "SELECT @idgate_identity, CURRENT_USER(), DATABASE()",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let row = stdout(&out);
    assert!(row.starts_with("ann@example.com\tidgate_native@"), "{row}");
    assert!(row.trim_end().ends_with(MYSQL_DATABASE), "{row}");
    assert_eq!(s.mint.issued(), 1);

    let argv = std::fs::read_to_string(dir.path().join("argv")).expect("argv");
    assert!(
        !argv.contains("eyJ"),
        "a token on mariadb's command line: {argv}"
    );
    assert!(!stdout(&out).contains("WARNING") && !stderr(&out).contains("WARNING"));
    for arg in [
        "--user=reader",
        &format!("--database={MYSQL_TARGET}"),
        "--ssl-verify-server-cert",
        &format!("--ssl-ca={}", s.cert()),
    ] {
        assert!(argv.lines().any(|l| l == arg), "{arg} in {argv}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pwd")).expect("pwd"),
        "token\n"
    );

    // mariadb's own exit code comes back.
    let out = support::run(&mut connect(&["-e", "SELECT * FROM no_such_table"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ERROR 1146"), "{}", stderr(&out));
}

/// A token source that gives one token.
struct OneToken(Secret);

impl TokenSource for OneToken {
    fn token(&self, _: Duration) -> BoxFuture<'_, Result<Secret, TokenSourceError>> {
        Box::pin(async { Ok(self.0.clone()) })
    }
}

/// Reads one whole packet: `(sequence id, payload)`.
async fn read_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> (u8, BytesMut) {
    loop {
        if let Some((seq, len)) = codec::frame_at(buf, 1 << 20).expect("a packet") {
            let mut packet = buf.split_to(codec::HEADER_LEN + len);
            return (seq, packet.split_off(codec::HEADER_LEN));
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_ne!(n, 0, "the tunnel hung up");
    }
}

async fn write_packet(stream: &mut TcpStream, seq: u8, payload: &[u8]) {
    let mut out = BytesMut::new();
    codec::write_packet(&mut out, seq, payload);
    stream.write_all(&out).await.expect("write");
}

/// What a client logging in to the tunnel with `plugin` is answered, and
/// whether a query then runs.
#[tokio::test]
async fn the_tunnel_lets_in_clients_of_any_auth_plugin_and_refuses_tls_locally() {
    let h = Harness::with(Options {
        policy: POLICY.into(),
        mysql: true,
        allow_plaintext_loopback: false,
        ..Options::default()
    })
    .await;
    let args = EndpointArgs {
        profile: None,
        gateway: Some("127.0.0.1".into()),
        port: Some(h.mysql_addr.expect("MySQL").port()),
        protocol: Some(Protocol::Mysql),
        ca_file: Some(h.dir.path().join("gateway.crt")),
        sslmode: SslMode::VerifyFull,
    };
    let endpoint = Endpoint::new(
        &args.settings().expect("settings"),
        MYSQL_TARGET,
        args.sslmode,
    )
    .expect("endpoint");
    let listener = tunnel::listen("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listen");
    let tunnel = Tunnel::new(
        listener,
        endpoint,
        Box::new(OneToken(Secret::new(h.analyst()))),
        MYSQL_TARGET.into(),
        Some("reader".into()),
    );
    let addr = tunnel.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(tunnel.serve(stop.clone()));

    let client_caps = caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH
        | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
        | caps::DEPRECATE_EOF;
    // MySQL 8's default plugin waits for "fast auth succeeded"; any other
    // is switched to mysql_native_password; both then get the OK.
    for (client_plugin, expect) in [
        (&b"caching_sha2_password"[..], &[1u8, 3][..]),
        (b"sha256_password", b"\xfemysql_native_password\0"),
        (b"mysql_native_password", b""),
    ] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut buf = BytesMut::new();
        let (seq, greeting) = read_packet(&mut s, &mut buf).await;
        assert_eq!(seq, 0);
        let greeting = Handshake::decode(&greeting).expect("a greeting");
        assert_eq!(greeting.capabilities & caps::SSL, 0, "no TLS locally");
        assert_eq!(greeting.auth_plugin, b"mysql_native_password");
        let mut login = BytesMut::new();
        HandshakeResponse {
            capabilities: client_caps,
            max_packet: 1 << 24,
            charset: codec::UTF8MB4,
            user: b"whoever".to_vec(),
            auth_response: vec![7; 32],
            database: None,
            auth_plugin: Some(client_plugin.to_vec()),
            attributes: Vec::new(),
        }
        .encode(&mut login);
        write_packet(&mut s, 1, &login).await;
        let mut next = 2;
        if !expect.is_empty() {
            let (seq, answer) = read_packet(&mut s, &mut buf).await;
            assert_eq!(seq, 2);
            assert!(answer.starts_with(expect), "{answer:?}");
            next = 3;
            if answer[0] == 0xfe {
                write_packet(&mut s, 3, &[9; 20]).await;
                next = 4;
            }
        }
        let (seq, ok) = read_packet(&mut s, &mut buf).await;
        assert_eq!(
            (seq, ok[0]),
            (next, 0),
            "OK after {client_plugin:?}: {ok:?}"
        );
        // Commands restart at 0 on both sides: bytes relay as they are.
        write_packet(&mut s, 0, b"\x03SELECT 42").await;
        let (seq, columns) = read_packet(&mut s, &mut buf).await;
        assert_eq!((seq, &columns[..]), (1, &[1u8][..]));
        write_packet(&mut s, 0, b"\x01").await;
    }

    // A client that insists on TLS is told the tunnel is plain text.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = BytesMut::new();
    read_packet(&mut s, &mut buf).await;
    let mut ssl = BytesMut::new();
    HandshakeResponse {
        capabilities: client_caps,
        max_packet: 1 << 24,
        charset: codec::UTF8MB4,
        ..HandshakeResponse::default()
    }
    .encode_ssl_request(&mut ssl);
    write_packet(&mut s, 1, &ssl).await;
    let (seq, err) = read_packet(&mut s, &mut buf).await;
    assert_eq!(seq, 2);
    let err = ErrPacket::decode(&err).expect("an ERR");
    assert!(err.message.contains("--skip-ssl"), "{}", err.message);
    stop.cancel();
}

#[tokio::test]
async fn ctrl_c_in_mariadb_kills_the_statement_through_the_tunnel() {
    let s = setup("dev@example.com", Duration::from_secs(300), false).await;
    s.mint.mint_for("dev@example.com", &["developers"]);
    let t = tunnel(&s, &["--role", "writer"]).await;
    let marker = unique_name("sleepy");
    let child = mariadb_without_password(
        t.port,
        "x",
        &["-e", &format!("SELECT SLEEP(30) AS {marker}")],
    )
    .spawn()
    .expect("mariadb runs");
    let running = format!(
        "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30) AS {marker}'"
    );
    support::eventually("the statement upstream", || async {
        root(&running).await == "1\n"
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    support::eventually("the statement to be killed", || async {
        root(&running).await == "0\n"
    })
    .await;
    let out = support::ends_within(child, Duration::from_secs(10)).await;
    assert!(
        stderr(&out).contains("Query execution was interrupted"),
        "{}",
        stderr(&out)
    );
}
