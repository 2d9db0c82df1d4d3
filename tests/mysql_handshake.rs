//! The gateway's side of a MySQL login, up to the token, with the real
//! `mariadb` client: plain text on loopback when allowed, TLS, the switch
//! to `mysql_clear_password`, and the refusals a client can cause.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use idgate::mysql::codec::ErrPacket;
use idgate::mysql::handshake::{self, ClientLogin, HandshakeError, send_error};
use tokio::net::TcpListener;

/// Accepts one client with `plaintext_ok` and TLS, answers its login with
/// an ERR (so the client exits), and returns what was read and what the
/// client printed.
async fn one_login(
    plaintext_ok: bool,
    client_args: &[&str],
) -> (Result<ClientLogin, HandshakeError>, Output) {
    let (cert, key) = idgate::tls::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), key).unwrap();
    let tls =
        idgate::tls::server_config(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls: Arc<_> = tls;
        let mut login = handshake::accept(tcp, Some(&tls), plaintext_ok, 7).await;
        if let Ok(l) = &mut login {
            let err = ErrPacket::new(1045, "28000", "login read; the test ends it here");
            send_error(&mut l.stream, l.next_seq, &err).await;
        }
        login
    });
    let client = tokio::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", "reader"])
        .args(client_args)
        .args(["shop", "-e", "select 1"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), client)
        .await
        .expect("client finished")
        .unwrap();
    let login = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished")
        .unwrap();
    (login, out)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn a_token_over_plain_loopback_when_allowed() {
    let (login, out) = one_login(
        true,
        &["--skip-ssl", "--enable-cleartext-plugin", "-ptok.en-123"],
    )
    .await;
    let login = login.expect("login read");
    assert!(!login.stream.is_tls());
    assert_eq!(login.fields.user, "reader");
    assert_eq!(login.fields.database.as_deref(), Some("shop"));
    assert_eq!(login.fields.token.expose(), "tok.en-123");
    assert!(stderr(&out).contains("login read"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_token_over_tls_after_a_switch_to_clear_text() {
    let (login, out) = one_login(
        false,
        &["--ssl", "--enable-cleartext-plugin", "-ptok.en-456"],
    )
    .await;
    let login = login.expect("login read");
    assert!(login.stream.is_tls());
    assert_eq!(login.fields.token.expose(), "tok.en-456");
    assert!(stderr(&out).contains("login read"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_token_without_tls_is_refused_before_it_is_sent() {
    let (login, out) = one_login(
        false,
        &["--skip-ssl", "--enable-cleartext-plugin", "-ptok.en-789"],
    )
    .await;
    assert!(
        matches!(login, Err(HandshakeError::Plaintext)),
        "{:?}",
        login.err()
    );
    assert!(
        stderr(&out).contains("must be sent over TLS"),
        "{}",
        stderr(&out)
    );
}

/// A truncated handshake response ends that login with an ERR, not a panic.
#[tokio::test]
async fn a_truncated_handshake_response_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        handshake::accept(tcp, None, true, 9).await.err()
    });
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut greeting = vec![0u8; 4];
    client.read_exact(&mut greeting).await.unwrap();
    let len = usize::from(greeting[0]) | usize::from(greeting[1]) << 8;
    let mut body = vec![0u8; len];
    client.read_exact(&mut body).await.unwrap();
    // Protocol 4.1 capabilities, then the packet stops short.
    client
        .write_all(&[6, 0, 0, 1, 0x00, 0x82, 0x08, 0x00, 0, 0])
        .await
        .unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    let err = server.await.unwrap();
    assert!(matches!(err, Some(HandshakeError::Protocol(_))), "{err:?}");
    assert_eq!(reply.get(4), Some(&0xff), "an ERR packet: {reply:?}");
}
