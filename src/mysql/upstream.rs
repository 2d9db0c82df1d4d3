//! Opening a connection to a MySQL/MariaDB server as the role's login: TLS
//! per `upstream_tls` (SSLRequest, then the handshake response inside it),
//! then whichever auth plugin the server asks for, switches included, up
//! to the OK packet.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth;
use super::codec::{self, AuthReply, ErrPacket, Handshake, HandshakeResponse, caps};
use crate::config::{ConfigError, RoleConfig, TargetConfig, UpstreamTls};
use crate::tls::Stream;

/// Generous bound for packets during login.
const MAX_LOGIN_PACKET: usize = 64 * 1024;
/// Auth round trips after the first answer; a server asking for more is
/// not one the gateway should log in to.
const MAX_AUTH_ROUNDS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach upstream {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("upstream I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream {addr} does not offer TLS and upstream_tls is {mode}")]
    TlsRefused { addr: String, mode: &'static str },
    #[error("upstream TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("upstream refused the login: {} ({})", .0.message, .0.code)]
    Refused(ErrPacket),
    #[error("upstream asks for auth plugin `{0}`, which the gateway does not speak")]
    Plugin(String),
    #[error(
        "upstream wants the password in full (caching_sha2_password) and the connection is not TLS; set upstream_tls = \"require\""
    )]
    FullAuthNeedsTls,
    #[error("the role's upstream password: {0}")]
    Password(#[from] ConfigError),
    #[error("upstream protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Unfollowable(String),
}

impl UpstreamError {
    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "upstream_unreachable",
            UpstreamError::Io(_) => "upstream_io",
            UpstreamError::TlsRefused { .. } | UpstreamError::Tls(_) => "upstream_tls",
            UpstreamError::Refused(_) => "upstream_refused",
            UpstreamError::Plugin(_) | UpstreamError::FullAuthNeedsTls => "upstream_auth_plugin",
            UpstreamError::Password(_) => "upstream_password",
            UpstreamError::Protocol(_) => "upstream_protocol",
            UpstreamError::Unfollowable(_) => "upstream_sql_mode",
        }
    }
}

impl From<codec::CodecError> for UpstreamError {
    fn from(e: codec::CodecError) -> Self {
        UpstreamError::Protocol(e.to_string())
    }
}

/// A logged-in upstream connection, positioned after the login's OK.
pub struct Upstream {
    pub stream: Stream,
    /// The server's id for this connection (what `KILL` names).
    pub connection_id: u32,
    pub server_version: String,
    /// Capabilities both sides agreed on.
    pub capabilities: u32,
}

/// Reads whole packets; used only during login, where allocation is fine.
struct PacketReader {
    buf: BytesMut,
}

impl PacketReader {
    async fn next(
        &mut self,
        r: &mut (impl AsyncRead + Unpin),
    ) -> Result<(u8, Bytes), UpstreamError> {
        loop {
            if let Some((seq, len)) = codec::frame_at(&self.buf, MAX_LOGIN_PACKET)? {
                let mut packet = self.buf.split_to(codec::HEADER_LEN + len);
                return Ok((seq, packet.split_off(codec::HEADER_LEN).freeze()));
            }
            if r.read_buf(&mut self.buf).await? == 0 {
                return Err(UpstreamError::Protocol(
                    "connection closed during login".into(),
                ));
            }
        }
    }
}

async fn send(
    w: &mut (impl AsyncWrite + Unpin),
    seq: u8,
    payload: &[u8],
) -> Result<(), UpstreamError> {
    let mut out = BytesMut::with_capacity(payload.len() + codec::HEADER_LEN);
    codec::write_packet(&mut out, seq, payload);
    w.write_all(&out).await?;
    Ok(())
}

/// Connect to `target` as `role`, asking for `wanted` capabilities (those
/// of the client the connection will serve; the server's own limit them)
/// and the client's `charset` (a collation id), with `attributes` as
/// connection attributes.
pub async fn connect(
    target: &TargetConfig,
    tls: Option<&Arc<ClientConfig>>,
    role: &RoleConfig,
    wanted: u32,
    charset: u8,
    attributes: &[(&str, &str)],
) -> Result<Upstream, UpstreamError> {
    let mut tcp = TcpStream::connect(&target.upstream)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: target.upstream.clone(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let mut reader = PacketReader {
        buf: BytesMut::with_capacity(1024),
    };
    let (_, first) = reader.next(&mut tcp).await?;
    if first.first() == Some(&codec::header::ERR) {
        return Err(UpstreamError::Refused(ErrPacket::decode(&first)?));
    }
    let handshake = Handshake::decode(&first)?;
    let required = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
    if handshake.capabilities & required != required {
        return Err(UpstreamError::Protocol(
            "server lacks protocol 4.1 with plugin auth".into(),
        ));
    }
    let mut capabilities = (wanted | required | caps::CONNECT_WITH_DB | caps::CONNECT_ATTRS)
        & handshake.capabilities
        & !(caps::SSL | caps::COMPRESS | caps::LOCAL_FILES);
    let mut response = HandshakeResponse {
        capabilities,
        max_packet: 1 << 24,
        charset,
        user: role.user.as_bytes().to_vec(),
        database: Some(target.database.as_bytes().to_vec()),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        ..HandshakeResponse::default()
    };
    let mut seq = 1;
    let mut stream = match tls {
        Some(config) if handshake.capabilities & caps::SSL != 0 => {
            capabilities |= caps::SSL;
            response.capabilities = capabilities;
            let mut req = BytesMut::new();
            response.encode_ssl_request(&mut req);
            send(&mut tcp, seq, &req).await?;
            seq += 1;
            let name = ServerName::try_from(target.upstream_host().to_owned())
                .map_err(|e| UpstreamError::Protocol(format!("bad upstream host name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            Stream::Tls(Box::new(tls.into()))
        }
        Some(_) if target.upstream_tls != UpstreamTls::Prefer => {
            return Err(UpstreamError::TlsRefused {
                addr: target.upstream.clone(),
                mode: if target.upstream_tls == UpstreamTls::Require {
                    "require"
                } else {
                    "verify-full"
                },
            });
        }
        _ => Stream::Plain(tcp),
    };
    let password = role.password.as_ref().map(|p| p.read()).transpose()?;
    let password = password.as_ref().map_or(&[][..], |p| p.expose().as_bytes());
    let mut plugin = handshake.auth_plugin.clone();
    let mut nonce = handshake.scramble.clone();
    // A plugin we cannot answer gets an empty native answer; the server
    // then switches to the user's plugin.
    let first_answer = auth::respond(&plugin, password, &nonce).unwrap_or_else(|| {
        plugin = auth::NATIVE_PASSWORD.to_vec();
        Vec::new()
    });
    response.auth_response = first_answer;
    response.auth_plugin = Some(plugin.clone());
    let mut out = BytesMut::new();
    response.encode(&mut out);
    send(&mut stream, seq, &out).await?;

    for _ in 0..=MAX_AUTH_ROUNDS {
        let (got, payload) = reader.next(&mut stream).await?;
        seq = got.wrapping_add(1);
        match AuthReply::decode(&payload)? {
            AuthReply::Ok => {
                return Ok(Upstream {
                    stream,
                    connection_id: handshake.connection_id,
                    server_version: String::from_utf8_lossy(&handshake.server_version).into(),
                    capabilities,
                });
            }
            AuthReply::Err(e) => return Err(UpstreamError::Refused(e)),
            AuthReply::Switch { plugin: p, data } => {
                plugin = p.to_vec();
                nonce = data.to_vec();
                let answer = if plugin == auth::CLEAR_PASSWORD && stream.is_tls() {
                    auth::clear_password(password)
                } else {
                    auth::respond(&plugin, password, &nonce).ok_or_else(|| {
                        UpstreamError::Plugin(String::from_utf8_lossy(&plugin).into())
                    })?
                };
                send(&mut stream, seq, &answer).await?;
            }
            AuthReply::More(data) if plugin == auth::CACHING_SHA2_PASSWORD => match data {
                [auth::FAST_AUTH_OK] => {}
                [auth::FULL_AUTH] if stream.is_tls() => {
                    send(&mut stream, seq, &auth::clear_password(password)).await?;
                }
                [auth::FULL_AUTH] => return Err(UpstreamError::FullAuthNeedsTls),
                _ => return Err(UpstreamError::Protocol("unexpected auth data".into())),
            },
            AuthReply::More(_) => {
                return Err(UpstreamError::Protocol("unexpected auth data".into()));
            }
        }
    }
    Err(UpstreamError::Protocol("too many auth round trips".into()))
}
