//! One client connection, start to end: startup and TLS, token login, role
//! choice and the `connect` decision, the upstream login, then the relay
//! until either side leaves. Every step that can refuse the client answers
//! with a real PostgreSQL ErrorResponse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::cancel;
use super::codec::{self, ErrorFields, StartupMessage, idgate, sqlstate};
use super::enforce::StatementPolicy;
use super::pool::{self, Lease, Pool, PoolError, ServerConn, Variant};
use super::relay;
use super::upstream::UpstreamError;
use crate::audit::{AuditError, AuditEvent, Decision, EventKind};
use crate::config::{OnExpiry, PoolMode, TargetConfig};
use crate::gateway::{AuthError, Gateway};
use crate::identity::{Identity, unix_now};
use crate::policy::{AccessRequest, Action, RequestContext, RoleChoice};
use crate::secret::Secret;
use crate::sessions::revocation::TokenFacts;
use crate::sessions::{EndReason, Entitlement, RefreshSecret, SessionHandle, SessionInfo};
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
fn check_startup_params(params: &[(String, String)]) -> Result<(), Refusal> {
    for (name, value) in params {
        let name = name.to_ascii_lowercase();
        if name == "client_encoding" && !crate::sql::client_encoding_is_safe(value) {
            return Err(Refusal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("client_encoding {value} is not supported through the gateway"),
            )
            .hint("use UTF8 (PGCLIENTENCODING=UTF8): in this encoding a byte of a character can look like a quote or backslash, so the gateway could not read statements as the server does"));
        }
        if name == idgate::REFRESH && refresh_flag(value).is_none() {
            return Err(Refusal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("startup parameter {} must be on or off", idgate::REFRESH),
            ));
        }
        if !PASSTHROUGH_PARAMS.contains(&name.as_str()) && !GATEWAY_PARAMS.contains(&name.as_str())
        {
            return Err(Refusal::new(
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

fn no_tls() -> Refusal {
    Refusal::new(
        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
        "token authentication requires TLS",
    )
    .hint("connect with sslmode=require")
}

/// A refusal to send the client before closing.
struct Refusal {
    code: &'static str,
    message: String,
    hint: Option<String>,
}

impl Refusal {
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

/// Serve one accepted client socket to the end, or until `shutdown`.
pub async fn run(gw: Arc<Gateway>, tcp: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let _ = tcp.set_nodelay(true);
    // Login futures are boxed: a future's size is fixed at its largest state,
    // and keeping TLS handshakes and token validation inline would make
    // every idle session carry that size for its whole life.
    let handshake = tokio::time::timeout(
        gw.config.gateway.handshake_timeout,
        Box::pin(startup(&gw, tcp)),
    );
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
    let mut session = Session::new(&gw, peer);
    if let Some((_, ticket)) = params.iter().find(|(k, _)| k == idgate::REFRESH_SESSION) {
        let refresh = tokio::time::timeout(
            gw.config.gateway.handshake_timeout,
            Box::pin(session.refresh(&mut client, ticket, &params)),
        );
        let result = tokio::select! {
            r = refresh => r.unwrap_or_else(|_| Err(Refusal::new(
                sqlstate::CONNECTION_FAILURE,
                "refresh did not finish in time",
            ))),
            () = shutdown.cancelled() => Err(Refusal::new(sqlstate::ADMIN_SHUTDOWN, "the gateway is shutting down")),
        };
        if let Err(refusal) = result {
            let _ = send_refusal(&mut client, &refusal).await;
        }
        return;
    }
    let login = tokio::time::timeout(
        gw.config.gateway.handshake_timeout,
        Box::pin(session.login(&mut client, &params)),
    );
    let result = tokio::select! {
        r = login => match r {
            Ok(r) => r,
            Err(_) => Err(Refusal::new(
                sqlstate::CONNECTION_FAILURE,
                "login did not finish in time",
            )),
        },
        () = shutdown.cancelled() => Err(Refusal::new(sqlstate::ADMIN_SHUTDOWN, "the gateway is shutting down")),
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
    let _ = send_refusal(
        &mut stream,
        &Refusal::new(
            sqlstate::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        ),
    )
    .await;
}

/// Read startup packets until a StartupMessage, upgrading to TLS on
/// request. `None` means the connection was a cancel or was closed.
async fn startup(
    gw: &Gateway,
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
            Ok(StartupMessage::SslRequest) => match (&gw.tls, stream) {
                (Some(tls), Stream::Plain(mut tcp)) => {
                    tcp.write_all(b"S").await?;
                    let tls = tokio_rustls::TlsAcceptor::from(Arc::clone(tls))
                        .accept(tcp)
                        .await?;
                    stream = Stream::Tls(Box::new(tls.into()));
                }
                (None, Stream::Plain(mut tcp)) => {
                    tcp.write_all(b"N").await?;
                    stream = Stream::Plain(tcp);
                }
                (_, tls @ Stream::Tls(_)) => {
                    let mut s = tls;
                    let _ = send_refusal(
                        &mut s,
                        &Refusal::new(sqlstate::PROTOCOL_VIOLATION, "SSLRequest inside TLS"),
                    )
                    .await;
                    return Ok(None);
                }
            },
            Ok(StartupMessage::GssEncRequest) => stream.write_all(b"N").await?,
            Ok(StartupMessage::Cancel { pid, key }) => {
                if let Some(target) = gw.cancels.lookup(pid, key) {
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
                    &Refusal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
                )
                .await;
                return Ok(None);
            }
        }
    }
}

async fn send_refusal(client: &mut Stream, r: &Refusal) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    codec::error_response(
        &mut buf,
        &ErrorFields {
            hint: r.hint.as_deref(),
            ..ErrorFields::fatal(r.code, &r.message)
        },
    );
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

/// Audit context of one client session.
pub(super) struct Session {
    gw: Arc<Gateway>,
    pub(super) id: String,
    peer: SocketAddr,
    /// `peer` as audited, formatted once.
    peer_text: String,
    started: Instant,
    /// Shared with the statement policy: one copy of the claims per session.
    identity: Option<Arc<Identity>>,
    target: Option<String>,
    role: Option<String>,
    /// The client asked for a refresh secret (`idgate.refresh`).
    refreshable: bool,
}

impl Session {
    fn new(gw: &Arc<Gateway>, peer: SocketAddr) -> Self {
        let id: [u8; 12] = rand::random();
        Self {
            gw: Arc::clone(gw),
            id: hex::encode(id),
            peer,
            peer_text: peer.to_string(),
            started: Instant::now(),
            identity: None,
            target: None,
            role: None,
            refreshable: false,
        }
    }

    /// An audit event carrying everything known about this session.
    pub(super) fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = AuditEvent::new(kind);
        e.session_id = Some(self.id.clone());
        e.client_addr = Some(self.peer_text.clone());
        e.target.clone_from(&self.target);
        e.role.clone_from(&self.role);
        if let Some(id) = &self.identity {
            e.issuer = Some(id.issuer.clone());
            e.subject = Some(id.sub.clone());
            e.identity = Some(id.identity.clone());
            e.groups.clone_from(&id.groups);
        }
        e
    }

    /// Login decisions wait for fsync: once a client is told it is in, the
    /// trail already says so.
    async fn audit(&self, e: AuditEvent) -> Result<(), AuditError> {
        self.gw.audit.record_durable(e).await
    }

    /// Session start and end follow a durable login, so they are queued
    /// like statements (in order, flushed within the commit delay).
    async fn audit_queued(&self, e: AuditEvent) -> Result<(), AuditError> {
        self.gw.audit.record(e).await
    }

    /// As `audit`, on the login path: an audit trail that cannot record is
    /// a refusal, never a silent gap.
    async fn audit_or_refuse(&self, e: AuditEvent) -> Result<(), Refusal> {
        let m = &self.gw.metrics;
        match e.event {
            EventKind::AuthOk => m.login("ok", "allowed"),
            EventKind::AuthFailed => m.login("failed", e.error.as_deref().unwrap_or("no_tls")),
            EventKind::Denied => m.login("denied", "policy"),
            _ => {}
        }
        self.audit(e).await.map_err(|err| {
            tracing::error!("audit trail unavailable: {err}");
            Refusal::new(
                sqlstate::CONNECTION_FAILURE,
                "audit trail unavailable; logins are suspended",
            )
        })
    }

    fn context(&self, target: &TargetConfig) -> RequestContext {
        RequestContext {
            client_address: self.peer.ip(),
            environment: target.environment.clone(),
            now: self.gw.clock.now(),
            ..RequestContext::default()
        }
    }

    async fn login(
        &mut self,
        client: &mut Stream,
        params: &[(String, String)],
    ) -> Result<Established, Refusal> {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
            return Err(Refusal::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "replication connections are not supported through idgate",
            ));
        }
        let user = param("user").unwrap_or("");
        let database = param("database").unwrap_or(user);
        self.target = Some(database.to_owned());
        self.refreshable = param(idgate::REFRESH).and_then(refresh_flag) == Some(true);
        let gw = Arc::clone(&self.gw);
        let Some(target) = gw.config.target(database) else {
            let names: Vec<&str> = gw.config.targets.iter().map(|t| t.name.as_str()).collect();
            return Err(Refusal::new(
                sqlstate::INVALID_CATALOG_NAME,
                format!("target \"{database}\" does not exist"),
            )
            .hint(format!("set dbname to one of: {}", names.join(", "))));
        };
        if !self.may_send_token(client) {
            let mut e = self.event(EventKind::AuthFailed);
            e.reason = Some("token offered without TLS".into());
            self.audit_or_refuse(e).await?;
            return Err(no_tls());
        }

        let token = self.read_token(client).await?;
        let identity = match gw.authenticate(token.expose()).await {
            Ok(identity) => identity,
            Err(err) => {
                let (message, kind) = (err.to_string(), err.kind());
                let (reason, hint) = match err {
                    AuthError::Invalid(e) => (
                        e.to_string(),
                        "get a fresh token from your identity provider and pass it as the password",
                    ),
                    AuthError::Revoked { what, identity } => {
                        // Audited under the person it names.
                        self.identity = Some(Arc::new(*identity));
                        (
                            format!("revoked: {what}"),
                            "log in to your identity provider again and use the new token",
                        )
                    }
                };
                let mut e = self.event(EventKind::AuthFailed);
                e.reason = Some(reason);
                e.error = Some(kind.to_owned());
                self.audit_or_refuse(e).await?;
                return Err(Refusal::new(sqlstate::INVALID_PASSWORD, message).hint(hint));
            }
        };
        self.identity = Some(Arc::new(identity));
        let identity = self.identity.as_ref().expect("just set");

        let role_name = match self.choose_role(target, user) {
            Ok(role) => role,
            Err(refusal) => {
                let mut e = self.event(EventKind::Denied);
                e.decision = Some(Decision::Deny);
                e.reason = Some(refusal.message.clone());
                self.audit_or_refuse(e).await?;
                return Err(refusal);
            }
        };
        self.role = Some(role_name.clone());
        let decision = gw.policy.authorize(&AccessRequest {
            identity,
            target: &target.name,
            role: &role_name,
            action: Action::Connect,
            context: self.context(target),
        });
        if !decision.allowed {
            let mut e = self.event(EventKind::Denied);
            e.decision = Some(Decision::Deny);
            e.policy_ids = decision.policy_ids;
            e.reason = Some(decision.reason.clone());
            self.audit_or_refuse(e).await?;
            return Err(Refusal::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "permission denied to connect as role \"{role_name}\": {}",
                    decision.reason
                ),
            ));
        }
        let mut e = self.event(EventKind::AuthOk);
        e.decision = Some(Decision::Allow);
        e.policy_ids = decision.policy_ids;
        self.audit_or_refuse(e).await?;

        let (pool, variant, lease) = self.connect_upstream(target, &role_name, params).await?;
        Ok(Established {
            pool,
            variant,
            lease,
            target: target.clone(),
        })
    }

    /// A token may travel only over TLS, or over loopback when allowed.
    fn may_send_token(&self, client: &Stream) -> bool {
        client.is_tls()
            || (self.peer.ip().is_loopback() && self.gw.config.gateway.allow_plaintext_loopback)
    }

    /// Ask for the token and read it from the PasswordMessage.
    async fn read_token(&self, client: &mut Stream) -> Result<Secret, Refusal> {
        let mut buf = BytesMut::with_capacity(64);
        codec::authentication(&mut buf, codec::auth::CLEARTEXT_PASSWORD);
        let io_err = |_| Refusal::new(sqlstate::CONNECTION_FAILURE, "connection lost during login");
        client.write_all(&buf).await.map_err(io_err)?;
        client.flush().await.map_err(io_err)?;
        buf.clear();
        let (tag, len) = loop {
            match codec::frame_at(&buf, MAX_PASSWORD_MESSAGE) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {}
                Err(_) => {
                    return Err(Refusal::new(
                        sqlstate::INVALID_PASSWORD,
                        "token rejected: longer than 16 KiB",
                    ));
                }
            }
            if client.read_buf(&mut buf).await.map_err(io_err)? == 0 {
                return Err(Refusal::new(
                    sqlstate::CONNECTION_FAILURE,
                    "client left during login",
                ));
            }
        };
        let bad = || {
            Refusal::new(
                sqlstate::PROTOCOL_VIOLATION,
                "expected a password message carrying the token",
            )
        };
        if tag != b'p' {
            return Err(bad());
        }
        let password = codec::parse_password(&buf[5..len]).map_err(|_| bad())?;
        let token = std::str::from_utf8(password).map_err(|_| bad())?;
        Ok(Secret::new(token.trim()))
    }

    /// The requested role if the target defines it; otherwise the only role
    /// the policy lets this caller connect as.
    fn choose_role(&self, target: &TargetConfig, requested: &str) -> Result<String, Refusal> {
        let identity = self.identity.as_ref().expect("validated before");
        let names: Vec<&str> = target.roles.iter().map(|r| r.name.as_str()).collect();
        let choice = self.gw.policy.choose_role(
            identity,
            &target.name,
            &names,
            requested,
            &self.context(target),
        );
        match choice {
            RoleChoice::Requested(role) | RoleChoice::OnlyPermitted(role) => Ok(role),
            RoleChoice::NonePermitted => Err(Refusal::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!(
                    "role \"{requested}\" is not defined for target \"{}\", and no policy permits you any of its roles",
                    target.name
                ),
            )),
            RoleChoice::Ambiguous(many) => Err(Refusal::new(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!(
                    "role \"{requested}\" is not defined for target \"{}\"",
                    target.name
                ),
            )
            .hint(format!(
                "set user to one of the roles you may use: {}",
                many.join(", ")
            ))),
        }
    }

    /// A pooled upstream connection for `role`: opened for this session's
    /// variant (read-only or not, and its startup parameters).
    async fn connect_upstream(
        &self,
        target: &TargetConfig,
        role_name: &str,
        params: &[(String, String)],
    ) -> Result<(Arc<Pool>, Arc<Variant>, Lease), Refusal> {
        check_startup_params(params)?;
        let identity = self.identity.as_ref().expect("validated before");
        let pool = Arc::clone(
            self.gw
                .pools
                .get(&target.name, role_name)
                .expect("every role of every target has a pool"),
        );
        let read_only =
            !self
                .gw
                .policy
                .may_write(identity, &target.name, role_name, &self.context(target));
        let mut passthrough: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| PASSTHROUGH_PARAMS.contains(&k.as_str()))
            .collect();
        passthrough.sort();
        let variant = pool.intern(Variant {
            read_only,
            params: passthrough,
        });
        match pool.checkout(&variant).await {
            Ok(lease) => Ok((pool, variant, lease)),
            Err(err) => {
                tracing::warn!(target = %target.name, role = role_name, "upstream login failed: {err}");
                let mut e = self.event(EventKind::SessionEnd);
                e.error = Some(err.to_string());
                self.audit_or_refuse(e).await?;
                Err(match err {
                    PoolError::Upstream(UpstreamError::Refused(n)) => Refusal {
                        code: sqlstate::CONNECTION_FAILURE,
                        message: format!("upstream refused the login: {} ({})", n.message, n.code),
                        hint: Some("the gateway's upstream credentials or the database need attention; tell its operator".into()),
                    },
                    PoolError::Exhausted(..) => Refusal::new(sqlstate::TOO_MANY_CONNECTIONS, err.to_string())
                        .hint("every upstream connection of this role is busy; try again, or ask the operator to raise pool max_size"),
                    other => Refusal::new(sqlstate::CONNECTION_FAILURE, format!("upstream unavailable: {other}")),
                })
            }
        }
    }

    /// Session mode: name the person on the server connection, for
    /// `pg_stat_activity` and server logs. `DISCARD ALL` undoes it when the
    /// connection goes back to the pool.
    async fn name_upstream(&self, conn: &mut ServerConn) -> std::io::Result<()> {
        let identity = &self.identity.as_ref().expect("logged in").identity;
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
            Ok(b'I') if conn.buf.is_empty() => Ok(()),
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
        let transaction_mode = pool.mode() == PoolMode::Transaction;
        let conn = lease.conn();
        if !transaction_mode && let Err(e) = Box::pin(self.name_upstream(conn)).await {
            tracing::warn!(session = %self.id, "naming the upstream session failed: {e}");
            let _ = send_refusal(
                &mut client,
                &Refusal::new(sqlstate::CONNECTION_FAILURE, "upstream unavailable"),
            )
            .await;
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
                &Refusal::new(sqlstate::FEATURE_NOT_SUPPORTED, "the target's server settings are not supported through the gateway")
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
            self.gw
                .cancels
                .register(if transaction_mode { None } else { upstream_key });
        let refresh = self.refreshable.then(RefreshSecret::generate);
        if let Some(secret) = &refresh {
            let ticket = format!("{}:{}", self.id, secret.to_hex());
            codec::parameter_status(&mut hello, idgate::SESSION, &ticket);
        }
        codec::backend_key_data(&mut hello, cancel_key.pid, cancel_key.key);
        codec::ready_for_query(&mut hello, b'I');
        let lease = if transaction_mode {
            // Taken again when the client sends something.
            pool.checkin(lease);
            None
        } else {
            Some(lease)
        };
        // Registered before the client learns its ticket: a refresh can
        // never arrive for a session not yet known.
        let live = self.register(&target, refresh, shutdown);
        if client.write_all(&hello).await.is_err() || client.flush().await.is_err() {
            return;
        }
        if self
            .audit_queued(self.event(EventKind::SessionStart))
            .await
            .is_err()
        {
            return;
        }

        let identity = self.identity.clone().expect("logged in");
        let role = self.role.clone().expect("logged in");
        let user = target
            .roles
            .iter()
            .find(|r| r.name == role)
            .map(|r| r.user.clone())
            .unwrap_or_default();
        let catalogue = Arc::clone(
            self.gw
                .catalogues
                .get(&target.name)
                .expect("every target has a catalogue"),
        );
        catalogue.wait_read().await;
        let policy = StatementPolicy::new(
            Arc::clone(&self.gw),
            identity,
            target.name.clone(),
            role,
            user,
            self.context(&target),
            catalogue,
            start_path,
            transaction_mode,
        );
        let upstreams = relay::Upstreams {
            pool: &pool,
            lease,
            variant: &variant,
            cancel: transaction_mode.then_some(&cancel_key),
        };
        let outcome = relay::run(client, upstreams, &self, policy, &live.session).await;
        drop(cancel_key);
        let mut e = self.event(EventKind::SessionEnd);
        e.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        match (outcome, live.session.end_reason()) {
            (_, Some(reason)) => {
                self.gw.metrics.session_ended(reason.label());
                e.reason = Some(reason.message());
            }
            (Err(err), None) => e.error = Some(err.to_string()),
            (Ok(()), None) => {}
        }
        if let Err(err) = self.audit_queued(e).await {
            tracing::error!(session = %self.id, "audit trail unavailable at session end: {err}");
        }
    }

    /// Enter the registry, with deadlines for token expiry and session age.
    fn register(
        &self,
        target: &TargetConfig,
        refresh: Option<RefreshSecret>,
        shutdown: &CancellationToken,
    ) -> SessionHandle {
        let identity = self.identity.as_ref().expect("logged in");
        let started_at = unix_now() - i64::try_from(self.started.elapsed().as_secs()).unwrap_or(0);
        let handle = self.gw.sessions.register(
            SessionInfo {
                id: self.id.clone(),
                issuer: identity.issuer_name.clone(),
                subject: identity.sub.clone(),
                identity: identity.identity.clone(),
                sid: identity.sid().map(Into::into),
                jti: identity.jti.clone(),
                target: target.name.clone(),
                role: self.role.clone().unwrap_or_default(),
                client_addr: self.peer_text.clone(),
                started_at,
            },
            Entitlement::of(identity, refresh),
            shutdown,
        );
        // A revocation made while this login was under way found no session
        // to end; it still covers this one.
        if let Some(what) = self
            .gw
            .revocations
            .refusing(&TokenFacts::of(identity), unix_now())
        {
            handle.session.end(EndReason::Revoked(what.to_string()));
        }
        let g = &self.gw.config.gateway;
        if g.on_expiry == OnExpiry::Disconnect {
            self.gw.expiry.watch_token(&handle.session, g.expiry_grace);
        }
        if let Some(age) = g.max_session_age {
            let at = tokio::time::Instant::from_std(self.started) + age;
            self.gw.expiry.watch(&handle.session, at, EndReason::MaxAge);
        }
        handle
    }

    pub(super) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.gw.metrics
    }

    pub(super) fn audit_log(&self) -> &crate::audit::AuditLog {
        &self.gw.audit
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
