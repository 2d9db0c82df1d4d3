//! A raw MySQL client for tests that need what the `mariadb` client does
//! not do: a command byte of their own, a malformed packet, or every reply
//! read to its end through the gateway's own reply tracker.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use idgate::mysql::codec::{self, HandshakeResponse, caps, com};
use idgate::mysql::response::{Ended, Progress, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Logged in through the gateway at `addr` as `role` in the MySQL test
/// target (plain text on loopback, multi-statements on), the token as the
/// `mysql_clear_password` answer.
pub async fn login(addr: SocketAddr, token: &str, role: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    packet(&mut tcp).await;
    let response = HandshakeResponse {
        capabilities: caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
            | caps::CONNECT_WITH_DB
            | caps::MULTI_STATEMENTS
            | caps::MULTI_RESULTS
            | caps::DEPRECATE_EOF,
        max_packet: 1 << 24,
        charset: codec::UTF8MB4,
        user: role.as_bytes().to_vec(),
        auth_response: token.as_bytes().to_vec(),
        database: Some(super::MYSQL_TARGET.as_bytes().to_vec()),
        auth_plugin: Some(b"mysql_clear_password".to_vec()),
        attributes: Vec::new(),
    };
    let mut payload = BytesMut::new();
    response.encode(&mut payload);
    send(&mut tcp, 1, &payload).await;
    let ok = packet(&mut tcp).await;
    assert_eq!(ok.first(), Some(&0), "logged in: {ok:?}");
    tcp
}

/// Writes `payload` as packets from sequence id `seq`.
pub async fn send(tcp: &mut TcpStream, seq: u8, payload: &[u8]) {
    let mut out = BytesMut::new();
    codec::write_packet(&mut out, seq, payload);
    tcp.write_all(&out).await.expect("send");
}

/// The next packet's payload.
pub async fn packet(tcp: &mut TcpStream) -> Vec<u8> {
    packet_with_seq(tcp).await.1
}

/// The next packet: (sequence id, payload).
pub async fn packet_with_seq(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; codec::HEADER_LEN];
    tokio::time::timeout(Duration::from_secs(30), tcp.read_exact(&mut head))
        .await
        .expect("a packet in time")
        .expect("a packet");
    let (seq, len) = codec::decode_header(&head, codec::MAX_PAYLOAD).expect("a header");
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.expect("payload");
    (seq, payload)
}

/// One command whose reply is one packet (OK or ERR); that packet.
pub async fn command(tcp: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    send(tcp, 0, payload).await;
    packet(tcp).await
}

/// One COM_QUERY, its reply read to the end: `Err` with the error it
/// ended in.
pub async fn query(tcp: &mut TcpStream, sql: &str) -> Result<(), String> {
    let mut payload = vec![com::QUERY];
    payload.extend_from_slice(sql.as_bytes());
    send(tcp, 0, &payload).await;
    let mut reply = Reply::to(com::QUERY, true);
    loop {
        let p = packet(tcp).await;
        if reply.feed(&p).expect("a reply the codec reads") == Progress::Done {
            return match reply.ended() {
                Some(Ended::Err(e)) => Err(format!("{} {}", e.code, e.message)),
                _ => Ok(()),
            };
        }
    }
}

/// The error code of an ERR payload.
pub fn err_code(payload: &[u8]) -> Option<u16> {
    (payload.first() == Some(&0xff)).then(|| u16::from_le_bytes([payload[1], payload[2]]))
}
