//! `idgate tunnel` for a MySQL target. The local tool is greeted as a
//! server would greet it (in the gateway's own words: version, connection
//! id, capabilities, less TLS) and let in with any password or none; for
//! each local client the tunnel logs in to the gateway with TLS, as
//! `--role` (else the client's user), with the client's capabilities and
//! attributes, the target as the database, and a fresh token in answer to
//! the gateway's switch to `mysql_clear_password`.
//! The gateway's answer (OK or ERR) goes back as the answer to the local
//! login, in the local connection's sequence; after it, each command
//! restarts the sequence on both sides, so bytes are relayed as they come.
//!
//! No refresh: the MySQL front end has no refresh connection yet, so a
//! tunnelled MySQL session ends when the token it logged in with expires
//! (the local tool reconnects with a fresh one).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LOGIN_MIN_VALID, Shared};
use crate::cli::endpoint::{EndpointError, GatewayStream};
use crate::secret::Secret;
use crate::tls::Stream;
use crate::wire::mysql::{
    self as codec, AuthReply, ErrPacket, Handshake, HandshakeResponse, caps, errcode, header,
    plugin,
};

/// The largest login packet either side may send the tunnel.
const MAX_LOGIN_PACKET: usize = 1 << 20;
/// How long a local client and the gateway have to complete a login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// What the tunnel says it is when it cannot reach the gateway.
const STAND_IN_VERSION: &str = "8.0.36-idgate-tunnel";
/// SERVER_STATUS_AUTOCOMMIT.
const STATUS_AUTOCOMMIT: u16 = 2;
/// What every login to the gateway needs.
const REQUIRED: u32 = caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::CONNECT_WITH_DB;

/// One local client, start to end.
pub(super) async fn serve_local(shared: &Arc<Shared>, local: TcpStream) -> std::io::Result<()> {
    let _ = local.set_nodelay(true);
    let mut local = Peer::new(local);
    // The token first, on the token source's own time limit: a slow
    // token command must not hold a half-open login at the gateway.
    let token = match shared.tokens.token(LOGIN_MIN_VALID).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot get a token: {e}");
            let err = tunnel_error(
                errcode::ER_ACCESS_DENIED_ERROR,
                "28000",
                &format!("cannot get a token: {e}"),
                &e.hint(),
            );
            return tokio::time::timeout(LOGIN_TIMEOUT, refuse_login(&mut local, &err))
                .await
                .unwrap_or(Ok(()));
        }
    };
    let logged_in = tokio::time::timeout(LOGIN_TIMEOUT, login(shared, &mut local, &token)).await;
    let Ok(logged_in) = logged_in else {
        tracing::debug!("a MySQL login through the tunnel timed out");
        return Ok(());
    };
    let Some(mut gateway) = logged_in? else {
        return Ok(());
    };
    // Nothing should follow a login before its answer, but whatever did
    // goes on in order.
    if !local.buf.is_empty() {
        gateway.stream.write_all(&local.buf).await?;
    }
    if !gateway.buf.is_empty() {
        local.stream.write_all(&gateway.buf).await?;
    }
    tokio::io::copy_bidirectional(&mut local.stream, &mut gateway.stream)
        .await
        .map(|_| ())
}

/// One side of the login: its stream, what was read past the last packet,
/// and the sequence id of the last packet read.
struct Peer<S> {
    stream: S,
    buf: BytesMut,
    seq: u8,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    fn new(stream: S) -> Self {
        Peer {
            stream,
            buf: BytesMut::with_capacity(1024),
            seq: 0,
        }
    }

    /// The next whole packet's payload.
    async fn read(&mut self) -> std::io::Result<BytesMut> {
        loop {
            match codec::frame_at(&self.buf, MAX_LOGIN_PACKET) {
                Ok(Some((seq, len))) => {
                    self.seq = seq;
                    let mut packet = self.buf.split_to(codec::HEADER_LEN + len);
                    return Ok(packet.split_off(codec::HEADER_LEN));
                }
                Ok(None) => {}
                Err(e) => return Err(invalid(e.to_string())),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Sends `payload` as the packet after the last one read.
    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        self.send_at(self.seq, payload).await
    }

    async fn send_at(&mut self, seq: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
        self.seq = codec::write_packet(&mut out, seq, payload).wrapping_sub(1);
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// Sends `err` as the packet after the last one read.
    async fn refuse(&mut self, err: &ErrPacket) -> std::io::Result<()> {
        let mut payload = BytesMut::new();
        err.encode(&mut payload);
        self.send(&payload).await
    }
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// An ERR from the tunnel itself, with its hint.
fn tunnel_error(code: u16, state: &str, message: &str, hint: &str) -> ErrPacket {
    let message = if hint.is_empty() {
        format!("idgate tunnel: {message}")
    } else {
        format!("idgate tunnel: {message} (hint: {hint})")
    };
    ErrPacket::new(code, state, message)
}

fn endpoint_error(e: &EndpointError) -> ErrPacket {
    tunnel_error(
        errcode::ER_UNKNOWN_ERROR,
        "HY000",
        &e.to_string(),
        &e.hint(),
    )
}

/// Logs the local client in through the gateway: `None` when it was
/// refused (and told why), else the gateway connection, logged in.
async fn login(
    shared: &Shared,
    local: &mut Peer<TcpStream>,
    token: &Secret,
) -> std::io::Result<Option<Peer<GatewayStream>>> {
    let endpoint = &shared.endpoint;
    let tcp = match endpoint.tcp().await {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!("{e}");
            refuse_login(local, &endpoint_error(&e)).await?;
            return Ok(None);
        }
    };
    let mut gateway = Peer::new(tcp);
    let greeting = gateway.read().await?;
    if greeting.first() == Some(&header::ERR) {
        // Too many connections, and the like: the gateway's own words.
        local.send_at(0, &greeting).await?;
        return Ok(None);
    }
    let greeting = Handshake::decode(&greeting).map_err(|e| invalid(e.to_string()))?;

    let Some(client) = local_login(local, &greeting).await? else {
        return Ok(None);
    };

    // TLS to the gateway, unless plain text on loopback was asked for.
    let mut capabilities = (client.capabilities & greeting.capabilities & !caps::SSL) | REQUIRED;
    let mut gateway = if endpoint.uses_tls() {
        if greeting.capabilities & caps::SSL == 0 {
            let e = EndpointError::NoTls(endpoint.addr());
            local.refuse(&endpoint_error(&e)).await?;
            return Ok(None);
        }
        capabilities |= caps::SSL;
        let request = HandshakeResponse {
            capabilities,
            max_packet: client.max_packet,
            charset: client.charset,
            ..HandshakeResponse::default()
        };
        let mut payload = BytesMut::with_capacity(codec::SSL_REQUEST_LEN);
        request.encode_ssl_request(&mut payload);
        gateway.send(&payload).await?;
        if !gateway.buf.is_empty() {
            return Err(invalid("bytes from the gateway before TLS".into()));
        }
        let seq = gateway.seq;
        match endpoint.start_tls(gateway.stream).await {
            Ok(tls) => Peer {
                stream: tls,
                buf: BytesMut::with_capacity(1024),
                seq,
            },
            Err(e) => {
                tracing::warn!("{e}");
                local.refuse(&endpoint_error(&e)).await?;
                return Ok(None);
            }
        }
    } else {
        Peer {
            stream: Stream::Plain(gateway.stream),
            buf: gateway.buf,
            seq: gateway.seq,
        }
    };

    // Where the gateway asks for clear text at once (plain loopback), the
    // token goes in the response; else the gateway's switch asks for it.
    let at_once = greeting.auth_plugin == plugin::CLEAR_PASSWORD;
    let user = shared
        .role
        .clone()
        .map(String::into_bytes)
        .unwrap_or(client.user);
    let response = HandshakeResponse {
        capabilities,
        max_packet: client.max_packet,
        charset: client.charset,
        user,
        auth_response: if at_once {
            clear_password(token)
        } else {
            Vec::new()
        },
        database: Some(shared.target.clone().into_bytes()),
        auth_plugin: Some(greeting.auth_plugin.clone()),
        attributes: client.attributes,
    };
    let mut payload = BytesMut::with_capacity(512);
    response.encode(&mut payload);
    gateway.send(&payload).await?;
    let mut token_sent = at_once;
    loop {
        let answer = gateway.read().await?;
        match AuthReply::decode(&answer) {
            Ok(AuthReply::Ok | AuthReply::Err(_)) => {
                // The gateway's verdict is the answer to the local login.
                local.send(&answer).await?;
                return Ok((answer[0] == header::OK).then_some(gateway));
            }
            Ok(AuthReply::Switch { plugin: p, .. })
                if p == plugin::CLEAR_PASSWORD && !token_sent =>
            {
                gateway.send(&clear_password(token)).await?;
                token_sent = true;
            }
            Ok(AuthReply::Switch { plugin: p, .. }) => {
                let err = tunnel_error(
                    errcode::ER_HANDSHAKE_ERROR,
                    "08S01",
                    &format!(
                        "the gateway asked for {}, not a token",
                        String::from_utf8_lossy(p)
                    ),
                    "is --gateway/--port an idgate gateway's MySQL port?",
                );
                local.refuse(&err).await?;
                return Ok(None);
            }
            Ok(AuthReply::More(_)) | Err(_) => {
                let err = tunnel_error(
                    errcode::ER_HANDSHAKE_ERROR,
                    "08S01",
                    "unexpected answer from the gateway during login",
                    "",
                );
                local.refuse(&err).await?;
                return Ok(None);
            }
        }
    }
}

/// Refuses the local client at the usual place, after its login: an ERR
/// in place of the greeting reads to TLS-minded clients as tampering
/// ("the authenticity of the following error cannot be verified"). Used
/// where the tunnel fails before it has the gateway's greeting, so the
/// local client is greeted by a stand-in.
async fn refuse_login(local: &mut Peer<TcpStream>, err: &ErrPacket) -> std::io::Result<()> {
    let stand_in = Handshake {
        server_version: STAND_IN_VERSION.as_bytes().to_vec(),
        connection_id: 0,
        scramble: Vec::new(),
        capabilities: REQUIRED | caps::LONG_PASSWORD | caps::TRANSACTIONS,
        mariadb_capabilities: 0,
        charset: codec::UTF8MB4,
        status: STATUS_AUTOCOMMIT,
        auth_plugin: Vec::new(),
    };
    if local_login(local, &stand_in).await?.is_some() {
        local.refuse(err).await?;
    }
    Ok(())
}

/// The token as `mysql_clear_password` sends a password: NUL-terminated.
fn clear_password(token: &Secret) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(token.expose().len() + 1);
    bytes.extend_from_slice(token.expose().as_bytes());
    bytes.push(0);
    bytes
}

/// Greets the local client in the gateway's words (no TLS: it stays on
/// loopback) and reads its login, letting whatever password it has (or
/// none) pass: the gateway's answer is sent later. `None` when it was
/// refused (and told why).
async fn local_login(
    local: &mut Peer<TcpStream>,
    gateway: &Handshake,
) -> std::io::Result<Option<HandshakeResponse>> {
    let mut scramble = [0u8; codec::SCRAMBLE_LEN];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut scramble);
    // Unused (any password passes), but clients expect printable bytes.
    for b in &mut scramble {
        *b = b'!' + (*b % 90);
    }
    let greeting = Handshake {
        server_version: gateway.server_version.clone(),
        connection_id: gateway.connection_id,
        scramble: scramble.to_vec(),
        capabilities: gateway.capabilities & !(caps::SSL | caps::COMPRESS),
        mariadb_capabilities: gateway.mariadb_capabilities,
        charset: gateway.charset,
        status: gateway.status,
        // Every client speaks it; whatever it answers is let through.
        auth_plugin: plugin::NATIVE_PASSWORD.to_vec(),
    };
    let mut payload = BytesMut::with_capacity(128);
    greeting.encode(&mut payload);
    local.send_at(0, &payload).await?;
    let answer = local.read().await?;
    if HandshakeResponse::is_ssl_request(&answer) {
        let err = tunnel_error(
            errcode::ER_HANDSHAKE_ERROR,
            "08S01",
            "the tunnel speaks plain text on loopback (it uses TLS to the gateway)",
            "connect to the tunnel without TLS: --skip-ssl, or ssl-mode=DISABLED",
        );
        local.refuse(&err).await?;
        return Ok(None);
    }
    let client = match HandshakeResponse::decode(&answer) {
        Ok(c) if c.capabilities & caps::SECURE_CONNECTION != 0 => c,
        _ => {
            let err = tunnel_error(
                errcode::ER_HANDSHAKE_ERROR,
                "08S01",
                "bad handshake",
                "use a MySQL 4.1+ client",
            );
            local.refuse(&err).await?;
            return Ok(None);
        }
    };
    match client.auth_plugin.as_deref() {
        None => {}
        Some(p) if p == plugin::NATIVE_PASSWORD || p == plugin::CLEAR_PASSWORD => {}
        // MySQL 8's default: it waits for "fast auth succeeded" before
        // the OK.
        Some(p) if p == plugin::CACHING_SHA2_PASSWORD => {
            local
                .send(&[header::AUTH_MORE_DATA, plugin::FAST_AUTH_OK])
                .await?;
        }
        // Any other: asked to use ours, its answer let through.
        Some(_) => {
            let mut switch = BytesMut::with_capacity(64);
            codec::encode_auth_switch(&mut switch, plugin::NATIVE_PASSWORD, &scramble);
            local.send(&switch).await?;
            local.read().await?;
        }
    }
    Ok(Some(client))
}
