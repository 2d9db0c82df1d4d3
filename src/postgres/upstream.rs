//! Opening a connection to the upstream server as the role's login: TLS per
//! `upstream_tls`, then trust, cleartext, md5 or SCRAM-SHA-256, up to the
//! first ReadyForQuery.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, ErrorNotice, auth, backend, encryption};
use super::scram::{self, ScramClient};
use crate::config::{ConfigError, RoleConfig, TargetConfig, UpstreamTls};
use crate::secret::Secret;
use crate::tls::Stream;

/// Generous bound for messages during login (ParameterStatus, errors).
const MAX_LOGIN_MESSAGE: usize = 64 * 1024;

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
    Refused(ErrorNotice),
    #[error("upstream asks for a password but role has none configured")]
    NoPassword,
    #[error("the role's upstream password: {0}")]
    Password(#[from] ConfigError),
    #[error("upstream SCRAM: {0}")]
    Scram(#[from] scram::ScramError),
    #[error("upstream protocol: {0}")]
    Protocol(String),
}

/// A logged-in upstream connection, positioned after its first ReadyForQuery.
pub struct Upstream {
    pub stream: Stream,
    /// ParameterStatus values the server reported, in order.
    pub parameters: Vec<(String, String)>,
    /// The server's BackendKeyData, for forwarding cancels.
    pub backend_key: Option<(i32, i32)>,
}

/// Reads whole messages; used only during login, where allocation is fine.
struct MessageReader {
    buf: BytesMut,
}

impl MessageReader {
    async fn next(
        &mut self,
        r: &mut (impl AsyncRead + Unpin),
    ) -> Result<(u8, Bytes), UpstreamError> {
        loop {
            match codec::frame_at(&self.buf, MAX_LOGIN_MESSAGE) {
                Ok(Some((tag, len))) => {
                    let mut frame = self.buf.split_to(len);
                    return Ok((tag, frame.split_off(5).freeze()));
                }
                Ok(None) => {}
                Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
            }
            if r.read_buf(&mut self.buf).await? == 0 {
                return Err(UpstreamError::Protocol(
                    "connection closed during login".into(),
                ));
            }
        }
    }
}

fn mode_name(mode: UpstreamTls) -> &'static str {
    match mode {
        UpstreamTls::Disable => "disable",
        UpstreamTls::Prefer => "prefer",
        UpstreamTls::Require => "require",
        UpstreamTls::VerifyFull => "verify-full",
    }
}

/// The role's password, read only when the server asks for one.
fn password(role: &RoleConfig) -> Result<Secret, UpstreamError> {
    Ok(role
        .password
        .as_ref()
        .ok_or(UpstreamError::NoPassword)?
        .read()?)
}

/// Connect to `target` as `role`. `startup` carries the parameters to send
/// besides `user` and `database`.
pub async fn connect(
    target: &TargetConfig,
    tls: Option<&Arc<ClientConfig>>,
    role: &RoleConfig,
    startup: &[(&str, &str)],
) -> Result<Upstream, UpstreamError> {
    let tcp = TcpStream::connect(&target.upstream)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: target.upstream.clone(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let mut stream = negotiate_tls(tcp, target, tls).await?;

    let mut params = vec![
        ("user", role.user.as_str()),
        ("database", target.database.as_str()),
    ];
    params.extend_from_slice(startup);
    let mut out = BytesMut::new();
    codec::startup_message(&mut out, &params);
    stream.write_all(&out).await?;

    let mut reader = MessageReader {
        buf: BytesMut::with_capacity(1024),
    };
    let mut scram: Option<ScramClient> = None;
    let mut parameters = Vec::new();
    let mut backend_key = None;
    loop {
        let (tag, body) = reader.next(&mut stream).await?;
        match tag {
            backend::AUTHENTICATION => {
                if body.len() < 4 {
                    return Err(UpstreamError::Protocol(
                        "short Authentication message".into(),
                    ));
                }
                let code = codec::be_i32(&body);
                let data = &body[4..];
                out.clear();
                match code {
                    auth::OK => continue,
                    auth::CLEARTEXT_PASSWORD => {
                        let pw = password(role)?;
                        codec::password_message(&mut out, pw.expose().as_bytes());
                    }
                    auth::MD5_PASSWORD => {
                        let pw = password(role)?;
                        let salt: [u8; 4] = data
                            .try_into()
                            .map_err(|_| UpstreamError::Protocol("bad md5 salt".into()))?;
                        let digest = scram::md5_password(&role.user, pw.expose(), &salt);
                        codec::password_message(&mut out, digest.as_bytes());
                    }
                    auth::SASL => {
                        let offered = data
                            .split(|&b| b == 0)
                            .any(|m| m == scram::MECHANISM.as_bytes());
                        if !offered {
                            return Err(UpstreamError::Protocol(
                                "upstream offers no SASL mechanism we support".into(),
                            ));
                        }
                        let pw = password(role)?;
                        let client = ScramClient::new(pw.expose());
                        codec::sasl_initial_response(
                            &mut out,
                            scram::MECHANISM,
                            client.client_first().as_bytes(),
                        );
                        scram = Some(client);
                    }
                    auth::SASL_CONTINUE => {
                        let client = scram.as_mut().ok_or_else(|| {
                            UpstreamError::Protocol("unexpected SASLContinue".into())
                        })?;
                        let reply = client.client_final(data)?;
                        codec::sasl_response(&mut out, reply.as_bytes());
                    }
                    auth::SASL_FINAL => {
                        let client = scram.as_ref().ok_or_else(|| {
                            UpstreamError::Protocol("unexpected SASLFinal".into())
                        })?;
                        client.verify_server_final(data)?;
                        continue;
                    }
                    other => {
                        return Err(UpstreamError::Protocol(format!(
                            "unsupported authentication request {other}"
                        )));
                    }
                }
                stream.write_all(&out).await?;
            }
            backend::PARAMETER_STATUS => {
                if let Some((name, rest)) = codec::cstr(&body)
                    && let Some((value, _)) = codec::cstr(rest)
                {
                    parameters.push((name.to_owned(), value.to_owned()));
                }
            }
            backend::BACKEND_KEY_DATA if body.len() == 8 => {
                backend_key = Some((codec::be_i32(&body[..4]), codec::be_i32(&body[4..])));
            }
            backend::ERROR_RESPONSE => {
                return Err(UpstreamError::Refused(codec::parse_error(&body)));
            }
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {}
            backend::READY_FOR_QUERY => {
                return Ok(Upstream {
                    stream,
                    parameters,
                    backend_key,
                });
            }
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message '{}' during login",
                    other as char
                )));
            }
        }
    }
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    target: &TargetConfig,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Stream, UpstreamError> {
    let Some(config) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let mut req = BytesMut::new();
    codec::ssl_request(&mut req);
    tcp.write_all(&req).await?;
    let answer = tcp.read_u8().await?;
    match answer {
        encryption::YES => {
            let name = ServerName::try_from(target.upstream_host().to_owned())
                .map_err(|e| UpstreamError::Protocol(format!("bad upstream host name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            Ok(Stream::Tls(Box::new(stream.into())))
        }
        encryption::NO if target.upstream_tls == UpstreamTls::Prefer => Ok(Stream::Plain(tcp)),
        encryption::NO => Err(UpstreamError::TlsRefused {
            addr: target.upstream.clone(),
            mode: mode_name(target.upstream_tls),
        }),
        other => Err(UpstreamError::Protocol(format!(
            "unexpected answer '{}' to SSLRequest",
            other as char
        ))),
    }
}
