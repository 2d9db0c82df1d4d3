//! The gateway's side of a MySQL login, up to the token, with the real
//! `mariadb` client: plain text on loopback when allowed, TLS, the switch
//! to `mysql_clear_password`, and the refusals a client can cause.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use idgate::mysql::codec::ErrPacket;
use idgate::mysql::handshake::{self, ClientLogin, HandshakeError, send_error};
use tokio::net::TcpListener;

/// The gateway's TLS config, with a self-signed certificate.
fn tls_config() -> Arc<rustls::ServerConfig> {
    let (cert, key) = idgate::tls::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), key).unwrap();
    idgate::tls::server_config(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap()
}

/// Accepts one client with `plaintext_ok` and TLS, answers its login with
/// an ERR (so the client exits), and returns what was read and what the
/// client printed.
async fn one_login(
    plaintext_ok: bool,
    client_args: &[&str],
) -> (Result<ClientLogin, HandshakeError>, Output) {
    let tls = tls_config();
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

/// MySQL answers an SSLRequest with nothing, so a client sends its TLS
/// hello right behind it; when both come in one segment the hello is the
/// start of TLS, not bytes to refuse.
#[tokio::test]
async fn a_tls_hello_in_the_same_segment_as_the_ssl_request_starts_tls() {
    use bytes::BytesMut;
    use idgate::mysql::codec::{self, HandshakeResponse, caps};

    let (cert, key) = idgate::tls::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let tls = idgate::tls::server_config(&cert_file, &key_file).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut login = handshake::accept(tcp, Some(&tls), false, 8).await;
        if let Ok(l) = &mut login {
            let err = ErrPacket::new(1045, "28000", "login read; the test ends it here");
            send_error(&mut l.stream, l.next_seq, &err).await;
        }
        login
    });

    let client = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = [0u8; codec::HEADER_LEN];
        tcp.read_exact(&mut head).unwrap();
        let (_, len) = codec::decode_header(&head, 1024).unwrap();
        tcp.read_exact(&mut vec![0; len]).unwrap();

        let response = HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::CONNECT_WITH_DB,
            max_packet: 1 << 24,
            charset: codec::UTF8MB4,
            user: b"reader".to_vec(),
            auth_response: b"tok.en-42".to_vec(),
            database: Some(b"shop".to_vec()),
            auth_plugin: Some(b"mysql_clear_password".to_vec()),
            attributes: Vec::new(),
        };
        let mut payload = BytesMut::new();
        response.encode_ssl_request(&mut payload);
        let mut first = BytesMut::new();
        codec::write_packet(&mut first, 1, &payload);
        let config =
            idgate::tls::client_config(idgate::tls::CertCheck::CaFile(&cert_file)).unwrap();
        let mut conn =
            rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        first.extend_from_slice(&hello);
        tcp.write_all(&first).unwrap();

        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        let mut payload = BytesMut::new();
        response.encode(&mut payload);
        let mut packet = BytesMut::new();
        codec::write_packet(&mut packet, 2, &payload);
        stream.write_all(&packet).unwrap();
        let mut reply = [0u8; codec::HEADER_LEN + 1];
        stream.read_exact(&mut reply).unwrap();
        reply
    });

    let login = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server finished")
        .unwrap()
        .expect("login read");
    assert!(login.stream.is_tls());
    assert_eq!(login.fields.token.expose(), "tok.en-42");
    let reply = client.await.unwrap();
    assert_eq!(reply[codec::HEADER_LEN], 0xff, "the ERR, over TLS");
}
