//! `idgate tunnel TARGET`: a local listener for clients that cannot hold a
//! token (GUI tools, clients that cap password length). Each local
//! connection is logged in to the gateway over TLS with a fresh token and
//! then relayed byte for byte. While it lives, the tunnel hands the gateway
//! each newer token on a separate refresh connection (see
//! `codec::idgate`), so the session outlives its login token for as long
//! as the person stays entitled.
//!
//! Local clients connect without TLS and without a password: whoever
//! reaches the listener acts as you, so it listens on loopback only.
//!
//! This file is the PostgreSQL tunnel and what both share; `mysql` is the
//! tunnel for a MySQL target.

mod mysql;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::endpoint::{Endpoint, EndpointArgs, EndpointError, SslMode};
use super::settings::Protocol;
use super::token_source::{self, TokenArgs, TokenSource, TokenSourceError};
use crate::secret::Secret;
use crate::wire::postgres::{self as codec, ErrorFields, StartupMessage, idgate, sqlstate};

/// Largest message the tunnel reads whole from the gateway during a login
/// (greetings are small; the rest is relayed without reading).
const MAX_LOGIN_MESSAGE: usize = 1 << 20;
/// What a login token must still be valid for.
const LOGIN_MIN_VALID: Duration = Duration::from_secs(10);
/// A session is extended when a fifth of its token's remaining life is
/// left, and at least this long before it expires.
const MIN_REFRESH_MARGIN: Duration = Duration::from_millis(1500);
/// Longest pause between attempts to extend a session that failed for a
/// passing reason (gateway unreachable, token source failing).
const RETRY: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug, Clone)]
pub struct TunnelArgs {
    /// The target, as the gateway names it; local clients may name any
    /// database.
    pub target: String,
    /// The role to use; default: the local client's user name, or else the
    /// one role the policy permits you.
    #[arg(long)]
    pub role: Option<String>,
    /// Where local clients connect (loopback only); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("--listen {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Token(#[from] TokenSourceError),
}

impl TunnelError {
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            TunnelError::NotLoopback(_) => {
                "anyone who reaches the tunnel acts as you: listen on 127.0.0.1 or [::1]".into()
            }
            TunnelError::Listen { .. } => "pick another port with --listen 127.0.0.1:PORT".into(),
            TunnelError::Endpoint(e) => e.hint(),
            TunnelError::Token(e) => e.hint(),
        }
    }

    /// 2 for usage errors, 1 for failures.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            TunnelError::NotLoopback(_) => 2,
            TunnelError::Listen { .. } => 1,
            TunnelError::Endpoint(e) => e.exit_code(),
            TunnelError::Token(e) => e.exit_code(),
        }
    }
}

/// Why the gateway did not extend a session.
#[derive(Debug, thiserror::Error)]
pub enum RefreshFailure {
    /// The gateway judged and refused: trying again will not help.
    #[error("the gateway refused ({code}): {message}")]
    Refused { code: String, message: String },
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("connection to the gateway lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(&'static str),
}

/// What every local connection shares.
struct Shared {
    endpoint: Endpoint,
    tokens: Box<dyn TokenSource>,
    target: String,
    role: Option<String>,
}

/// A bound tunnel, ready to serve.
pub struct Tunnel {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// `idgate tunnel`: bind, say where, serve until `stop`.
pub async fn run(args: TunnelArgs, stop: CancellationToken) -> Result<(), TunnelError> {
    let listener = listen(args.listen).await?;
    let settings = args.endpoint.settings().map_err(EndpointError::from)?;
    let endpoint = Endpoint::new(&settings, &args.target, args.endpoint.sslmode)?;
    let tokens = token_source::from_args(&args.tokens, &settings);
    let tunnel = Tunnel::new(listener, endpoint, tokens, args.target, args.role);
    println!("{}", tunnel.greeting());
    tunnel.serve(stop).await;
    Ok(())
}

/// A listener on `addr`, which must be a loopback address.
pub async fn listen(addr: SocketAddr) -> Result<TcpListener, TunnelError> {
    if !addr.ip().is_loopback() {
        return Err(TunnelError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| TunnelError::Listen { addr, source })
}

impl Tunnel {
    #[must_use]
    pub fn new(
        listener: TcpListener,
        endpoint: Endpoint,
        tokens: Box<dyn TokenSource>,
        target: String,
        role: Option<String>,
    ) -> Tunnel {
        Tunnel {
            listener,
            shared: Arc::new(Shared {
                endpoint,
                tokens,
                target,
                role,
            }),
        }
    }

    /// Where local clients connect.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// One line saying where to connect, with a client line to paste
    /// (psql, or mariadb for a MySQL target).
    #[must_use]
    pub fn greeting(&self) -> String {
        let addr = self.local_addr();
        let s = &self.shared;
        let client = match s.endpoint.protocol {
            Protocol::Postgres => {
                let user = s
                    .role
                    .as_ref()
                    .map(|r| format!(" user={r}"))
                    .unwrap_or_default();
                format!(
                    "psql \"host={} port={} dbname={}{user} sslmode=disable\"",
                    addr.ip(),
                    addr.port(),
                    s.target
                )
            }
            Protocol::Mysql => {
                let user = s
                    .role
                    .as_ref()
                    .map(|r| format!(" -u {r}"))
                    .unwrap_or_default();
                format!(
                    "mariadb -h {} -P {}{user} --skip-ssl {}",
                    addr.ip(),
                    addr.port(),
                    s.target
                )
            }
        };
        let plain = if s.endpoint.sslmode == SslMode::Disable {
            " (plain text)"
        } else {
            ""
        };
        format!(
            "idgate tunnel: {} ({}) via {}{plain} ready on {addr}; connect without a password: {client}",
            s.target,
            s.endpoint.protocol.as_str(),
            s.endpoint.addr(),
        )
    }

    /// Serve local clients until `stop`; each connection runs on its own.
    pub async fn serve(self, stop: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((local, peer)) => {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        let served = match shared.endpoint.protocol {
                            Protocol::Postgres => serve_local(&shared, local).await,
                            Protocol::Mysql => mysql::serve_local(&shared, local).await,
                        };
                        if let Err(e) = served {
                            tracing::debug!(%peer, "local connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One local client, start to end.
async fn serve_local(shared: &Arc<Shared>, mut local: TcpStream) -> std::io::Result<()> {
    let _ = local.set_nodelay(true);
    let Some(params) = local_startup(shared, &mut local).await? else {
        return Ok(());
    };
    let user = shared
        .role
        .clone()
        .or_else(|| param(&params, "user").map(Into::into))
        .unwrap_or_default();
    let token = match shared.tokens.token(LOGIN_MIN_VALID).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot get a token: {e}");
            return refuse(
                &mut local,
                &format!("idgate tunnel: cannot get a token: {e}"),
                &e.hint(),
            )
            .await;
        }
    };
    let mut gateway = match shared.endpoint.connect().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("{e}");
            return refuse(&mut local, &format!("idgate tunnel: {e}"), &e.hint()).await;
        }
    };
    let mut startup: Vec<(&str, &str)> = vec![
        ("user", &user),
        ("database", &shared.target),
        (idgate::REFRESH, "on"),
    ];
    // The gateway judges which of the client's other parameters are
    // harmless; the tunnel's own names are not the client's to set.
    startup.extend(
        params
            .iter()
            .filter(|(k, _)| {
                k != "user" && k != "database" && !k.to_ascii_lowercase().starts_with("idgate.")
            })
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let greeting = match login(&mut gateway, &startup, &token).await? {
        Login::Refused(error) => return local.write_all(&error).await,
        Login::In(greeting) => greeting,
    };
    local.write_all(&greeting.forward).await?;
    let keeper = greeting.ticket.map(|ticket| {
        let exp = token_source::expires_at(&token).unwrap_or(0);
        tokio::spawn(keep_alive(Arc::clone(shared), user, ticket, exp))
    });
    let relayed = tokio::io::copy_bidirectional(&mut local, &mut gateway).await;
    if let Some(k) = keeper {
        k.abort();
    }
    relayed.map(|_| ())
}

/// Reads the local client's startup packets up to its StartupMessage:
/// no TLS locally (traffic to the gateway is TLS), cancels forwarded.
async fn local_startup(
    shared: &Shared,
    local: &mut TcpStream,
) -> std::io::Result<Option<Vec<(String, String)>>> {
    let mut packet = BytesMut::with_capacity(256);
    loop {
        packet.clear();
        packet.resize(4, 0);
        if local.read_exact(&mut packet[..4]).await.is_err() {
            return Ok(None);
        }
        let Ok(Some(len)) = codec::startup_len(&packet) else {
            return Ok(None);
        };
        packet.resize(len, 0);
        local.read_exact(&mut packet[4..]).await?;
        match codec::parse_startup(&packet) {
            Ok(StartupMessage::SslRequest | StartupMessage::GssEncRequest) => {
                local.write_all(b"N").await?;
            }
            Ok(StartupMessage::Cancel { pid, key }) => {
                // The gateway's own cancel key passed through unchanged.
                let mut cancel = BytesMut::with_capacity(16);
                codec::cancel_request(&mut cancel, pid, key);
                match shared.endpoint.connect().await {
                    Ok(mut gateway) => {
                        gateway.write_all(&cancel).await?;
                        gateway.shutdown().await?;
                    }
                    Err(e) => tracing::warn!("cannot forward a cancel request: {e}"),
                }
                return Ok(None);
            }
            Ok(StartupMessage::Startup { params }) => return Ok(Some(params)),
            Err(e) => {
                refuse(local, &e.to_string(), "").await?;
                return Ok(None);
            }
        }
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Tells the local client why it cannot connect, as a server would.
async fn refuse(local: &mut TcpStream, message: &str, hint: &str) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    codec::error_response(
        &mut buf,
        &ErrorFields {
            hint: (!hint.is_empty()).then_some(hint),
            ..ErrorFields::fatal(sqlstate::UNABLE_TO_CONNECT, message)
        },
    );
    local.write_all(&buf).await
}

enum Login {
    /// The gateway's ErrorResponse, to pass on.
    Refused(BytesMut),
    In(Greeting),
}

struct Greeting {
    /// AuthenticationOk through ReadyForQuery, less the ticket.
    forward: BytesMut,
    ticket: Option<Secret>,
}

/// Logs in to the gateway with `token` for the cleartext password request.
async fn login(
    gateway: &mut (impl AsyncRead + AsyncWrite + Unpin),
    startup: &[(&str, &str)],
    token: &Secret,
) -> std::io::Result<Login> {
    let mut out = BytesMut::with_capacity(512);
    codec::startup_message(&mut out, startup);
    gateway.write_all(&out).await?;
    gateway.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut greeting = Greeting {
        forward: BytesMut::with_capacity(512),
        ticket: None,
    };
    loop {
        let message = read_message(gateway, &mut buf).await?;
        match message[0] {
            b'R' => match codec::be_i32(&message[5..]) {
                codec::auth::CLEARTEXT_PASSWORD => {
                    out.clear();
                    codec::password_message(&mut out, token.expose().as_bytes());
                    gateway.write_all(&out).await?;
                    gateway.flush().await?;
                }
                codec::auth::OK => greeting.forward.extend_from_slice(&message),
                _ => return Err(protocol("an authentication method other than a token")),
            },
            b'E' => return Ok(Login::Refused(message)),
            b'S' => match codec::parse_parameter_status(&message[5..]) {
                Ok((name, value)) if name == idgate::SESSION => {
                    greeting.ticket = Some(Secret::new(value));
                }
                _ => greeting.forward.extend_from_slice(&message),
            },
            b'Z' => {
                greeting.forward.extend_from_slice(&message);
                greeting.forward.extend_from_slice(&buf);
                return Ok(Login::In(greeting));
            }
            _ => greeting.forward.extend_from_slice(&message),
        }
    }
}

fn protocol(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// The next whole message from `stream`, reading into `buf` as needed.
async fn read_message(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> std::io::Result<BytesMut> {
    loop {
        match codec::frame_at(buf, MAX_LOGIN_MESSAGE) {
            Ok(Some((tag, len))) if tag != b'R' || len >= 9 => return Ok(buf.split_to(len)),
            Ok(Some(_)) => return Err(protocol("a short authentication message")),
            Ok(None) => {}
            Err(_) => return Err(protocol("an oversized or malformed message")),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Hands the gateway a newer token for the session `ticket` names, on a
/// connection of its own. Also what a test uses to offer forged ones.
pub async fn refresh(
    endpoint: &Endpoint,
    target: &str,
    user: &str,
    ticket: &Secret,
    token: &Secret,
) -> Result<(), RefreshFailure> {
    let mut gateway = endpoint.connect().await?;
    let startup = [
        ("user", user),
        ("database", target),
        (idgate::REFRESH_SESSION, ticket.expose()),
    ];
    match login(&mut gateway, &startup, token).await? {
        Login::In(_) => {
            let mut bye = BytesMut::with_capacity(5);
            codec::terminate(&mut bye);
            gateway.write_all(&bye).await?;
            let _ = gateway.shutdown().await;
            Ok(())
        }
        Login::Refused(error) => {
            let e = codec::parse_error(&error[5..]);
            Err(RefreshFailure::Refused {
                code: e.code,
                message: e.message,
            })
        }
    }
}

/// How long until the Unix time `exp`.
fn until(exp: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(exp)
        .map(Duration::from_secs)
        .unwrap_or_default()
        .saturating_sub(now)
}

/// Keeps one session alive past its token: shortly before the token
/// expires, fetch a newer one and hand it to the gateway. Stops when the
/// gateway refuses (the session then ends at its token's expiry) or when
/// the session ends (the task is aborted).
async fn keep_alive(shared: Arc<Shared>, user: String, ticket: Secret, mut exp: i64) {
    let id = ticket
        .expose()
        .split_once(':')
        .map_or("", |(id, _)| id)
        .to_owned();
    loop {
        let left = until(exp);
        let margin = (left / 5).max(MIN_REFRESH_MARGIN);
        tokio::time::sleep(left.saturating_sub(margin)).await;
        loop {
            let left = until(exp);
            if left.is_zero() {
                tracing::warn!(session = %id, "could not extend the session before its token expired");
                return;
            }
            match extend(&shared, &user, &ticket, exp).await {
                Ok(newer) => {
                    let until = time::OffsetDateTime::from_unix_timestamp(newer)
                        .map_or_else(|_| newer.to_string(), |t| t.to_string());
                    tracing::info!(session = %id, "session extended until {until}");
                    exp = newer;
                    break;
                }
                Err(ExtendError::Refused(e)) => {
                    tracing::warn!(session = %id, "{e}; the session ends when its token expires");
                    return;
                }
                Err(ExtendError::Passing(why)) => {
                    tracing::debug!(session = %id, "cannot extend the session yet: {why}");
                    tokio::time::sleep(RETRY.min(left / 2)).await;
                }
            }
        }
    }
}

enum ExtendError {
    Refused(RefreshFailure),
    /// Worth trying again while the token lasts.
    Passing(String),
}

/// One attempt: a token that outlives the current one, handed over.
async fn extend(
    shared: &Shared,
    user: &str,
    ticket: &Secret,
    exp: i64,
) -> Result<i64, ExtendError> {
    let token = shared
        .tokens
        .token(until(exp) + Duration::from_secs(1))
        .await
        .map_err(|e| ExtendError::Passing(e.to_string()))?;
    let newer = token_source::expires_at(&token).unwrap_or(0);
    if newer <= exp {
        return Err(ExtendError::Passing(
            "the token source gave no token newer than the session's".into(),
        ));
    }
    match refresh(&shared.endpoint, &shared.target, user, ticket, &token).await {
        Ok(()) => Ok(newer),
        Err(e @ RefreshFailure::Refused { .. }) => Err(ExtendError::Refused(e)),
        Err(e) => Err(ExtendError::Passing(e.to_string())),
    }
}
