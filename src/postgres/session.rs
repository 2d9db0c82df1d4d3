//! One client connection, start to end: startup and TLS, token login, role
//! choice and the `connect` decision, the upstream login, then the relay
//! until either side leaves. Every step that can refuse the client answers
//! with a real PostgreSQL ErrorResponse.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Frontend;
use super::cancel;
use super::codec::{self, ErrorFields, StartupMessage, idgate, sqlstate};
use super::enforce::StatementPolicy;
use super::pool::{self, Lease, Pool, PoolError, ServerConn, Variant};
use super::relay;
use super::upstream::UpstreamError;
use crate::config::{PoolMode, Protocol, TargetConfig};
use crate::core::admission::{Admitted, Refusal, RefusalKind, UpstreamFailure};
use crate::core::scope::Scope;
use crate::secret::Secret;
use crate::sessions::RefreshSecret;
use crate::tls::Stream;

mod refresh;

/// Longest token we accept (SPEC §4), plus the message framing.
const MAX_PASSWORD_MESSAGE: usize = 16 * 1024 + 5 + 1;

/// Startup parameters a client may pass through to the upstream
/// (`client_encoding` only with an encoding the gateway reads as the server
/// does).
const PASSTHROUGH_PARAMS: &[&str] = &[
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
];

/// Startup parameters the gateway takes itself: `user` and `database` name
/// the role and target, `application_name` is the gateway's to set (it
/// names the person), and `idgate.refresh` asks for a refresh secret.
const GATEWAY_PARAMS: &[&str] = &["user", "database", "application_name", idgate::REFRESH];

/// Every other startup parameter is refused rather than dropped: `options`
/// could set `role` or `default_transaction_read_only`, `replication` asks
/// for another protocol, `search_path` would change what names mean behind
/// the statement policy's back, and a parameter we do not know may do
/// anything.
fn check_startup_params(params: &[(String, String)]) -> Result<(), Fatal> {
    for (name, value) in params {
        let name = name.to_ascii_lowercase();
        if name == "client_encoding" && !crate::sql::client_encoding_is_safe(value) {
            return Err(Fatal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("client_encoding {value} is not supported through the gateway"),
            )
            .hint("use UTF8 (PGCLIENTENCODING=UTF8): in this encoding a byte of a character can look like a quote or backslash, so the gateway could not read statements as the server does"));
        }
        if name == idgate::REFRESH && refresh_flag(value).is_none() {
            return Err(Fatal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("startup parameter {} must be on or off", idgate::REFRESH),
            ));
        }
        if !PASSTHROUGH_PARAMS.contains(&name.as_str()) && !GATEWAY_PARAMS.contains(&name.as_str())
        {
            return Err(Fatal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("startup parameter {name} is not accepted through the gateway"),
            )
            .hint("remove it from the connection settings; run SET after connecting for settings a session may change"));
        }
    }
    Ok(())
}

/// The value of `idgate.refresh`, read as PostgreSQL reads a boolean.
fn refresh_flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Why the gateway cannot follow a server whose ParameterStatus says
/// `name` is `value`, if it cannot: it must read statement text exactly as
/// the server will.
pub(super) fn unfollowable_setting(name: &str, value: &str) -> Option<String> {
    let safe = match name {
        "client_encoding" => crate::sql::client_encoding_is_safe(value),
        "standard_conforming_strings" => crate::sql::standard_conforming_strings_is_safe(value),
        _ => return None,
    };
    (!safe).then(|| {
        format!("the server reports {name} = {value}, under which the gateway cannot read statements as the server does")
    })
}

fn no_tls() -> Fatal {
    Fatal::from(Refusal::new(
        RefusalKind::NoTls,
        "token authentication requires TLS",
    ))
}

/// A FATAL ErrorResponse to send the client before closing.
pub(super) struct Fatal {
    code: &'static str,
    message: String,
    hint: Option<String>,
}

impl Fatal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A core refusal in PostgreSQL's terms: its SQLSTATE, and the hint a
/// PostgreSQL client needs where the core gave none.
impl From<Refusal> for Fatal {
    fn from(r: Refusal) -> Self {
        let code = match r.kind {
            RefusalKind::UnknownTarget => sqlstate::INVALID_CATALOG_NAME,
            RefusalKind::NoTls | RefusalKind::AmbiguousRole => {
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION
            }
            RefusalKind::BadToken | RefusalKind::Revoked => sqlstate::INVALID_PASSWORD,
            RefusalKind::NoRole | RefusalKind::Denied => sqlstate::INSUFFICIENT_PRIVILEGE,
            RefusalKind::AuditUnavailable
            | RefusalKind::UpstreamLogin
            | RefusalKind::UpstreamUnavailable
            | RefusalKind::Timeout => sqlstate::CONNECTION_FAILURE,
            RefusalKind::PoolExhausted | RefusalKind::TooManyClients => {
                sqlstate::TOO_MANY_CONNECTIONS
            }
            RefusalKind::Unsupported => sqlstate::FEATURE_NOT_SUPPORTED,
            RefusalKind::Protocol => sqlstate::PROTOCOL_VIOLATION,
            RefusalKind::Shutdown => sqlstate::ADMIN_SHUTDOWN,
        };
        let hint = r.hint.or_else(|| match r.kind {
            RefusalKind::NoTls => Some("connect with sslmode=require".into()),
            _ => None,
        });
        Fatal {
            code,
            message: r.message,
            hint,
        }
    }
}

/// How a pool failure reads to the core.
pub(super) fn upstream_failure(e: &PoolError) -> UpstreamFailure {
    match e {
        PoolError::Exhausted(..) => UpstreamFailure::Exhausted,
        PoolError::Upstream(UpstreamError::Refused(_)) => UpstreamFailure::Login,
        PoolError::Upstream(_) => UpstreamFailure::Unavailable,
    }
}

/// Append the ErrorResponse of `r` to `buf`.
pub(super) fn refusal_response(buf: &mut BytesMut, r: &Refusal) {
    let fatal = Fatal::from(r.clone());
    write_fatal(buf, &fatal);
}

fn write_fatal(buf: &mut BytesMut, r: &Fatal) {
    codec::error_response(
        buf,
        &ErrorFields {
            hint: r.hint.as_deref(),
            ..ErrorFields::fatal(r.code, &r.message)
        },
    );
}

/// Serve one accepted client socket to the end, or until `shutdown`.
pub async fn run(fe: Arc<Frontend>, tcp: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    let timeout = fe.services.config.gateway.handshake_timeout;
    // Login futures are boxed: a future's size is fixed at its largest state,
    // and keeping TLS handshakes and token validation inline would make
    // every idle session carry that size for its whole life.
    let handshake = tokio::time::timeout(timeout, Box::pin(startup(&fe, tcp)));
    let handshake = tokio::select! {
        h = handshake => h,
        () = shutdown.cancelled() => return,
    };
    let (mut client, params) = match handshake {
        Ok(Ok(Some(ready))) => ready,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "startup failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "startup timed out");
            return;
        }
    };
    let mut session = Session::new(&fe, peer);
    if let Some((_, ticket)) = params.iter().find(|(k, _)| k == idgate::REFRESH_SESSION) {
        let refresh = tokio::time::timeout(
            timeout,
            Box::pin(session.refresh(&mut client, ticket, &params)),
        );
        let result = tokio::select! {
            r = refresh => r.unwrap_or_else(|_| Err(Fatal::new(
                sqlstate::CONNECTION_FAILURE,
                "refresh did not finish in time",
            ))),
            () = shutdown.cancelled() => Err(Refusal::shutdown().into()),
        };
        if let Err(refusal) = result {
            let _ = send_refusal(&mut client, &refusal).await;
        }
        return;
    }
    let login = tokio::time::timeout(timeout, Box::pin(session.login(&mut client, &params)));
    let result = tokio::select! {
        r = login => r.unwrap_or_else(|_| Err(Refusal::timeout().into())),
        () = shutdown.cancelled() => Err(Refusal::shutdown().into()),
    };
    match result {
        Ok(established) => Box::pin(session.serve(client, established, &shutdown)).await,
        Err(refusal) => {
            let _ = send_refusal(&mut client, &refusal).await;
        }
    }
}

/// Turn away a client over the connection limit, in the protocol's terms.
pub async fn refuse_busy(tcp: TcpStream) {
    let mut stream = Stream::Plain(tcp);
    let _ = send_refusal(&mut stream, &Refusal::too_many_clients().into()).await;
}

/// Read startup packets until a StartupMessage, upgrading to TLS on
/// request. `None` means the connection was a cancel or was closed.
async fn startup(
    fe: &Frontend,
    tcp: TcpStream,
) -> std::io::Result<Option<(Stream, Vec<(String, String)>)>> {
    let mut stream = Stream::Plain(tcp);
    let mut packet = BytesMut::with_capacity(256);
    loop {
        packet.clear();
        packet.resize(4, 0);
        // Exact reads: bytes after an SSLRequest belong to the TLS handshake.
        if stream.read_exact(&mut packet[..4]).await.is_err() {
            return Ok(None);
        }
        let len = match codec::startup_len(&packet) {
            Ok(Some(len)) => len,
            Ok(None) | Err(_) => return Ok(None),
        };
        packet.resize(len, 0);
        stream.read_exact(&mut packet[4..]).await?;
        match codec::parse_startup(&packet) {
            Ok(StartupMessage::SslRequest) => match (&fe.services.tls, stream) {
                (Some(tls), Stream::Plain(mut tcp)) => {
                    tcp.write_all(&[codec::encryption::YES]).await?;
                    let tls = tokio_rustls::TlsAcceptor::from(Arc::clone(tls))
                        .accept(tcp)
                        .await?;
                    stream = Stream::Tls(Box::new(tls.into()));
                }
                (None, Stream::Plain(mut tcp)) => {
                    tcp.write_all(&[codec::encryption::NO]).await?;
                    stream = Stream::Plain(tcp);
                }
                (_, tls @ Stream::Tls(_)) => {
                    let mut s = tls;
                    let _ = send_refusal(
                        &mut s,
                        &Fatal::new(sqlstate::PROTOCOL_VIOLATION, "SSLRequest inside TLS"),
                    )
                    .await;
                    return Ok(None);
                }
            },
            Ok(StartupMessage::GssEncRequest) => stream.write_all(&[codec::encryption::NO]).await?,
            Ok(StartupMessage::Cancel { pid, key }) => {
                if let Some(target) = fe.cancels.lookup(pid, key) {
                    if let Err(e) = cancel::forward(&target).await {
                        tracing::warn!("forwarding cancel to {}: {e}", target.upstream);
                    }
                } else {
                    tracing::debug!("dropped cancel for an unknown key");
                }
                return Ok(None);
            }
            Ok(StartupMessage::Startup { params }) => return Ok(Some((stream, params))),
            Err(e) => {
                let _ = send_refusal(
                    &mut stream,
                    &Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
                )
                .await;
                return Ok(None);
            }
        }
    }
}

async fn send_refusal(client: &mut Stream, r: &Fatal) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    write_fatal(&mut buf, r);
    client.write_all(&buf).await?;
    client.flush().await
}

/// What a successful login hands to the relay.
struct Established {
    pool: Arc<Pool>,
    variant: Arc<Variant>,
    lease: Lease,
    target: TargetConfig,
}

/// One client session of this front end: the core's scope, and what
/// only PostgreSQL needs.
pub(super) struct Session {
    fe: Arc<Frontend>,
    scope: Scope,
    /// The client asked for a refresh secret (`idgate.refresh`).
    refreshable: bool,
}

impl Session {
    fn new(fe: &Arc<Frontend>, peer: SocketAddr) -> Self {
        Self {
            fe: Arc::clone(fe),
            scope: Scope::new(&fe.services, peer, Protocol::Postgres),
            refreshable: false,
        }
    }

    async fn login(
        &mut self,
        client: &mut Stream,
        params: &[(String, String)],
    ) -> Result<Established, Fatal> {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
            return Err(Fatal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "replication connections are not supported through idgate",
            ));
        }
        let user = param("user").unwrap_or("");
        let database = param("database").unwrap_or(user);
        self.refreshable = param(idgate::REFRESH).and_then(refresh_flag) == Some(true);
        let target = self.scope.find_target(database)?;
        self.scope.check_transport(client.is_tls()).await?;
        let token = self.read_token(client).await?;
        let admitted = self.scope.admit(target, user, &token).await?;
        drop(token);
        let (pool, variant, lease) = self.connect_upstream(&admitted, params).await?;
        Ok(Established {
            pool,
            variant,
            lease,
            target: admitted.target,
        })
    }

    /// Ask for the token and read it from the PasswordMessage.
    async fn read_token(&self, client: &mut Stream) -> Result<Secret, Fatal> {
        let mut buf = BytesMut::with_capacity(64);
        codec::authentication(&mut buf, codec::auth::CLEARTEXT_PASSWORD);
        let io_err = |_| Fatal::new(sqlstate::CONNECTION_FAILURE, "connection lost during login");
        client.write_all(&buf).await.map_err(io_err)?;
        client.flush().await.map_err(io_err)?;
        buf.clear();
        let (tag, len) = loop {
            match codec::frame_at(&buf, MAX_PASSWORD_MESSAGE) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {}
                Err(_) => {
                    return Err(Fatal::new(
                        sqlstate::INVALID_PASSWORD,
                        "token rejected: longer than 16 KiB",
                    ));
                }
            }
            if client.read_buf(&mut buf).await.map_err(io_err)? == 0 {
                return Err(Fatal::new(
                    sqlstate::CONNECTION_FAILURE,
                    "client left during login",
                ));
            }
        };
        let bad = || {
            Fatal::new(
                sqlstate::PROTOCOL_VIOLATION,
                "expected a password message carrying the token",
            )
        };
        if tag != codec::frontend::PASSWORD {
            return Err(bad());
        }
        let password = codec::parse_password(codec::body(&buf[..len])).map_err(|_| bad())?;
        let token = std::str::from_utf8(password).map_err(|_| bad())?;
        Ok(Secret::new(token.trim()))
    }

    /// A pooled upstream connection for the admitted role: opened for
    /// this session's variant (read-only or not, and its startup
    /// parameters).
    async fn connect_upstream(
        &self,
        admitted: &Admitted,
        params: &[(String, String)],
    ) -> Result<(Arc<Pool>, Arc<Variant>, Lease), Fatal> {
        check_startup_params(params)?;
        let pool = Arc::clone(
            self.fe
                .pools
                .get(&admitted.target.name, &admitted.role)
                .expect("every role of every target has a pool"),
        );
        let mut passthrough: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| PASSTHROUGH_PARAMS.contains(&k.as_str()))
            .collect();
        passthrough.sort();
        let variant = pool.intern(Variant {
            read_only: admitted.read_only,
            params: passthrough,
        });
        match pool.checkout(&variant).await {
            Ok(lease) => Ok((pool, variant, lease)),
            Err(err) => Err(self
                .scope
                .refuse_upstream(upstream_failure(&err), &err)
                .await
                .into()),
        }
    }

    /// Session mode: name the person on the server connection, for
    /// `pg_stat_activity` and server logs. `DISCARD ALL` undoes it when the
    /// connection goes back to the pool.
    async fn name_upstream(&self, conn: &mut ServerConn) -> std::io::Result<()> {
        let identity = &self.scope.identity.as_ref().expect("logged in").identity;
        let application_name = truncate(&format!("idgate:{identity}"), 63);
        let mut msg = BytesMut::with_capacity(256);
        codec::parse_unnamed(
            &mut msg,
            "SELECT set_config('application_name', $1, false), set_config('idgate.identity', $2, false)",
        );
        codec::bind_text(&mut msg, &[&application_name, identity]);
        codec::execute(&mut msg, "");
        codec::sync(&mut msg);
        conn.tx.write_all(&msg).await?;
        conn.tx.flush().await?;
        match pool::read_until_ready(&mut conn.rx, &mut conn.buf).await? {
            Ok(codec::status::IDLE) if conn.buf.is_empty() => Ok(()),
            Ok(_) => Err(std::io::Error::other("unexpected transaction state")),
            Err(message) => Err(std::io::Error::other(message)),
        }
    }

    /// Greet the client as the upstream would, then relay until the end.
    async fn serve(
        self,
        mut client: Stream,
        established: Established,
        shutdown: &CancellationToken,
    ) {
        let Established {
            pool,
            variant,
            mut lease,
            target,
        } = established;
        let scope = &self.scope;
        let transaction_mode = pool.mode() == PoolMode::Transaction;
        let conn = lease.conn();
        if !transaction_mode && let Err(e) = Box::pin(self.name_upstream(conn)).await {
            let refusal = scope.upstream_failed(
                UpstreamFailure::Unavailable,
                &format!("naming the upstream session: {e}"),
            );
            let _ = send_refusal(&mut client, &refusal.into()).await;
            return;
        }
        if let Some(why) = conn
            .parameters
            .iter()
            .find_map(|(name, value)| unfollowable_setting(name, value))
        {
            tracing::warn!(target = %target.name, "refusing sessions: {why}");
            let _ = send_refusal(
                &mut client,
                &Fatal::new(sqlstate::FEATURE_NOT_SUPPORTED, "the target's server settings are not supported through the gateway")
                    .hint("tell the gateway's operator: the target must use standard_conforming_strings = on"),
            )
            .await;
            return;
        }
        let start_path = conn.start_search_path.clone();
        let upstream_key = pool.cancel_target(conn);
        let mut hello = BytesMut::with_capacity(512);
        codec::authentication(&mut hello, codec::auth::OK);
        for (name, value) in &conn.parameters {
            codec::parameter_status(&mut hello, name, value);
        }
        let cancel_key =
            self.fe
                .cancels
                .register(if transaction_mode { None } else { upstream_key });
        let refresh = self.refreshable.then(RefreshSecret::generate);
        if let Some(secret) = &refresh {
            let ticket = format!("{}:{}", scope.id, secret.to_hex());
            codec::parameter_status(&mut hello, idgate::SESSION, &ticket);
        }
        codec::backend_key_data(&mut hello, cancel_key.pid, cancel_key.key);
        codec::ready_for_query(&mut hello, codec::status::IDLE);
        let lease = if transaction_mode {
            // Taken again when the client sends something.
            pool.checkin(lease);
            None
        } else {
            Some(lease)
        };
        // Registered before the client learns its ticket: a refresh can
        // never arrive for a session not yet known.
        let live = scope.register(&target, refresh, shutdown);
        if client.write_all(&hello).await.is_err() || client.flush().await.is_err() {
            return;
        }
        if scope.audit_start().await.is_err() {
            return;
        }

        let catalogue = Arc::clone(
            self.fe
                .catalogues
                .get(&target.name)
                .expect("every target has a catalogue"),
        );
        catalogue.wait_read().await;
        let policy = StatementPolicy::new(
            scope.judge(&target),
            pool.user().to_owned(),
            catalogue,
            start_path,
            transaction_mode,
        );
        let upstreams = relay::Upstreams {
            scope,
            pool: &pool,
            lease,
            variant: &variant,
            cancel: transaction_mode.then_some(&cancel_key),
        };
        let outcome = relay::run(client, upstreams, scope, policy, &live.session).await;
        drop(cancel_key);
        scope
            .end(&live.session, outcome.err().map(|e| e.to_string()))
            .await;
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 63), "abc");
    }
}
