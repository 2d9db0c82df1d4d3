//! The client's side of a MySQL login at the gateway, up to the token:
//! greeting, TLS when the client asks, the handshake response, and a
//! switch to `mysql_clear_password` so that the password the client sends
//! is the token itself. Whether that token may log in is the core's
//! question; this module only reads it, refusing it in plain text unless
//! the caller allows that (loopback).

use std::sync::Arc;

use bytes::BytesMut;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth;
use super::codec::{self, ErrPacket, Handshake, HandshakeResponse, caps, errcode};
use crate::secret::Secret;
use crate::tls::Stream;

/// What the gateway says it is: clients check the major version for
/// features (8.0 speaks every plugin and protocol detail they use).
pub const SERVER_VERSION: &str = "8.0.36-idgate";
/// The largest login packet a client may send (attributes included).
const MAX_LOGIN_PACKET: usize = 64 * 1024;
/// SERVER_STATUS_AUTOCOMMIT.
pub const STATUS_AUTOCOMMIT: u16 = 2;

/// What the gateway offers; a client's answer is limited to these.
pub const OFFERED: u32 = caps::LONG_PASSWORD
    | caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::IGNORE_SPACE
    | caps::PROTOCOL_41
    | caps::INTERACTIVE
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::DEPRECATE_EOF;

/// A client that has said who it is and given its token.
pub struct ClientLogin {
    pub stream: Stream,
    /// The sequence id the gateway's answer to the login (OK or ERR) takes.
    pub next_seq: u8,
    pub fields: Fields,
}

/// What the client said at login.
pub struct Fields {
    /// The role it asks for (the MySQL user name).
    pub user: String,
    /// The target it asks for (the database), if any.
    pub database: Option<String>,
    pub token: Secret,
    /// Capabilities both sides agreed on (what the relay must keep).
    pub capabilities: u32,
    pub charset: u8,
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("client protocol: {0}")]
    Protocol(#[from] codec::CodecError),
    #[error("client asked for TLS, which the gateway does not offer")]
    NoTls,
    #[error("the client sent its token without TLS")]
    Plaintext,
    #[error("the client does not speak MySQL protocol 4.1 with plugin auth")]
    OldClient,
    #[error("the client refused to send its token with mysql_clear_password")]
    NoClearPassword,
    #[error("character set {0} is not one the gateway reads as the server does")]
    Charset(u8),
}

impl HandshakeError {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HandshakeError::Io(_) => "client_io",
            HandshakeError::Protocol(_) => "protocol",
            HandshakeError::NoTls => "no_tls",
            HandshakeError::Plaintext => "plaintext",
            HandshakeError::OldClient => "old_client",
            HandshakeError::NoClearPassword => "no_clear_password",
            HandshakeError::Charset(_) => "charset",
        }
    }

    /// The ERR the client is sent, when the connection can still take one:
    /// what to do, without internal detail.
    pub fn client_error(&self) -> Option<ErrPacket> {
        let (code, state, message) = match self {
            HandshakeError::Io(_) => return None,
            HandshakeError::Protocol(_) | HandshakeError::OldClient => (
                errcode::ER_HANDSHAKE_ERROR,
                "08S01",
                "bad handshake: use a MySQL 4.1+ client".to_owned(),
            ),
            HandshakeError::NoTls => (
                errcode::ER_HANDSHAKE_ERROR,
                "08S01",
                "TLS is not configured on this gateway".to_owned(),
            ),
            HandshakeError::Plaintext => (
                errcode::ER_ACCESS_DENIED_ERROR,
                "28000",
                "the token must be sent over TLS: connect with --ssl (or ssl-mode=REQUIRED)"
                    .to_owned(),
            ),
            HandshakeError::NoClearPassword => (
                errcode::ER_ACCESS_DENIED_ERROR,
                "28000",
                "the gateway takes your token as a clear-text password: enable the \
                 mysql_clear_password plugin (mariadb/mysql --enable-cleartext-plugin, \
                 LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN=1)"
                    .to_owned(),
            ),
            HandshakeError::Charset(_) => (
                errcode::ER_HANDSHAKE_ERROR,
                "08S01",
                "use the utf8mb4 character set (or latin1/ascii) with this gateway".to_owned(),
            ),
        };
        Some(ErrPacket::new(code, state, message))
    }
}

/// Reads one whole packet (login only: allocation is fine here).
async fn read_packet(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<(u8, BytesMut), HandshakeError> {
    loop {
        if let Some((seq, len)) = codec::frame_at(buf, MAX_LOGIN_PACKET)? {
            let mut packet = buf.split_to(codec::HEADER_LEN + len);
            return Ok((seq, packet.split_off(codec::HEADER_LEN)));
        }
        if r.read_buf(buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Reads exactly one packet, nothing past it: the client's first answer,
/// which may be an SSLRequest that its TLS ClientHello follows at once
/// (MySQL has no reply to an SSLRequest). Bytes of that hello must stay
/// in the socket for the TLS handshake.
async fn read_packet_exact(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<(u8, BytesMut), HandshakeError> {
    let mut head = [0u8; codec::HEADER_LEN];
    r.read_exact(&mut head).await?;
    let (seq, len) = codec::packet_header(head);
    if len > MAX_LOGIN_PACKET {
        return Err(codec::CodecError::TooLong(len).into());
    }
    let mut payload = BytesMut::zeroed(len);
    r.read_exact(&mut payload).await?;
    Ok((seq, payload))
}

async fn write_payload(
    w: &mut (impl AsyncWrite + Unpin),
    seq: u8,
    payload: &[u8],
) -> Result<(), HandshakeError> {
    let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
    codec::write_packet(&mut out, seq, payload);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Sends `err` as the packet of sequence `seq`, ignoring a client gone.
pub async fn send_error(w: &mut (impl AsyncWrite + Unpin), seq: u8, err: &ErrPacket) {
    let mut payload = BytesMut::new();
    err.encode(&mut payload);
    let _ = write_payload(w, seq, &payload).await;
}

/// Greets the client on `tcp` and reads its login up to the token.
/// `plaintext_ok`: a token may come without TLS (loopback, when allowed).
/// A refused login gets its ERR here, when the client can still take one.
pub async fn accept(
    tcp: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
    plaintext_ok: bool,
    connection_id: u32,
) -> Result<ClientLogin, HandshakeError> {
    let mut slot = Some(Stream::Plain(tcp));
    let mut seq = 0;
    let result = login(&mut slot, &mut seq, tls, plaintext_ok, connection_id).await;
    match (result, slot) {
        (Ok(fields), Some(stream)) => Ok(ClientLogin {
            stream,
            next_seq: seq.wrapping_add(1),
            fields,
        }),
        (Ok(_), None) => Err(std::io::Error::from(std::io::ErrorKind::NotConnected).into()),
        (Err(e), stream) => {
            if let (Some(err), Some(mut stream)) = (e.client_error(), stream) {
                send_error(&mut stream, seq.wrapping_add(1), &err).await;
            }
            Err(e)
        }
    }
}

/// The login on the stream in `slot` (empty only while TLS is being set
/// up); `seq` follows the last packet read. The returned login's `stream`
/// and `next_seq` are filled in by `accept`.
async fn login(
    slot: &mut Option<Stream>,
    seq: &mut u8,
    tls: Option<&Arc<ServerConfig>>,
    plaintext_ok: bool,
    connection_id: u32,
) -> Result<Fields, HandshakeError> {
    let mut scramble = [0u8; codec::SCRAMBLE_LEN];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut scramble);
    // The nonce is never used (the token is checked, not a hash), but
    // clients expect printable, NUL-free bytes.
    for b in &mut scramble {
        *b = b'!' + (*b % 90);
    }
    let offered = OFFERED | if tls.is_some() { caps::SSL } else { 0 };
    let greeting = Handshake {
        server_version: SERVER_VERSION.as_bytes().to_vec(),
        connection_id,
        scramble: scramble.to_vec(),
        capabilities: offered,
        mariadb_capabilities: 0,
        charset: codec::UTF8MB4,
        status: STATUS_AUTOCOMMIT,
        // Where the token may come in plain text, ask for it at once;
        // elsewhere a client that skips TLS answers with a hash of it,
        // and is refused before it ever sends it in the clear.
        auth_plugin: if plaintext_ok {
            auth::CLEAR_PASSWORD.to_vec()
        } else {
            auth::NATIVE_PASSWORD.to_vec()
        },
    };
    let mut out = BytesMut::new();
    greeting.encode(&mut out);
    let stream = slot.as_mut().expect("a stream until TLS");
    write_payload(stream, 0, &out).await?;
    let mut buf = BytesMut::with_capacity(512);
    let mut payload;
    (*seq, payload) = read_packet_exact(stream).await?;
    if HandshakeResponse::is_ssl_request(&payload) {
        let config = tls.ok_or(HandshakeError::NoTls)?;
        if stream.is_tls() {
            return Err(codec::CodecError::Malformed("SSLRequest").into());
        }
        let Some(Stream::Plain(tcp)) = slot.take() else {
            unreachable!("checked above")
        };
        let accepted = tokio_rustls::TlsAcceptor::from(Arc::clone(config))
            .accept(tcp)
            .await?;
        let stream = slot.insert(Stream::Tls(Box::new(accepted.into())));
        (*seq, payload) = read_packet(stream, &mut buf).await?;
    }
    let stream = slot.as_mut().expect("a stream after TLS");
    let response = HandshakeResponse::decode(&payload)?;
    let required = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
    if response.capabilities & required != required {
        return Err(HandshakeError::OldClient);
    }
    if !charset_is_safe(response.charset) {
        return Err(HandshakeError::Charset(response.charset));
    }
    if !stream.is_tls() && !plaintext_ok {
        return Err(HandshakeError::Plaintext);
    }
    // A client that agrees to clear text answered the greeting's plugin
    // already; any other is asked to switch.
    let token = if response.auth_plugin.as_deref() == Some(auth::CLEAR_PASSWORD) {
        response.auth_response.clone()
    } else {
        let mut switch = BytesMut::new();
        codec::encode_auth_switch(&mut switch, auth::CLEAR_PASSWORD, &[]);
        write_payload(stream, seq.wrapping_add(1), &switch).await?;
        match read_packet(stream, &mut buf).await {
            Ok((s, answer)) => {
                *seq = s;
                answer.to_vec()
            }
            // Clients that refuse clear text hang up here.
            Err(HandshakeError::Io(_)) => return Err(HandshakeError::NoClearPassword),
            Err(e) => return Err(e),
        }
    };
    let token = token.strip_suffix(&[0]).unwrap_or(&token);
    if token.is_empty() {
        return Err(HandshakeError::NoClearPassword);
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Fields {
        user: text(&response.user),
        database: response.database.as_deref().map(text),
        token: Secret::new(text(token)),
        capabilities: response.capabilities & (offered | caps::SSL),
        charset: response.charset,
        attributes: response
            .attributes
            .iter()
            .map(|(k, v)| (text(k), text(v)))
            .collect(),
    })
}

/// Collation ids of character sets in which a quote or backslash byte is
/// always itself (no multi-byte character hides one): the gateway reads
/// statements as the server does. Ids from `SHOW COLLATION`.
fn charset_is_safe(collation: u8) -> bool {
    matches!(
        collation,
        // latin1, ascii, binary
        5 | 8 | 11 | 15 | 31 | 47 | 48 | 49 | 63 | 65 | 94
        // utf8mb3 and utf8mb4
        | 33 | 45 | 46 | 83 | 192..=215 | 223..=247 | 255
    )
}
