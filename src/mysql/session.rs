//! One MySQL client connection, start to end: the handshake up to the
//! token (`handshake`), admission by the core, an upstream connection from
//! the (target, role) pool named for the person, the OK that lets the
//! client in, the command loop (`relay`), and the end: a clean connection
//! is reset and goes back to the pool, any other is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::codec::{self, ErrPacket, errcode};
use super::handshake::{self, ClientLogin, HandshakeError, STATUS_AUTOCOMMIT};
use super::pool::{Lease, PROTOCOL_CAPS, Pool, PoolError, ServerConn, Variant};
use super::relay;
use super::upstream::UpstreamError;
use super::{Frontend, LiveConn};
use crate::config::{Protocol, TargetConfig};
use crate::core::admission::{Refusal, RefusalKind, UpstreamFailure};
use crate::core::scope::Scope;
use crate::tls::Stream;

/// MySQL's own errors for the core's refusals: 1045 for every login
/// check (the message says which), the server's codes for the rest.
pub(super) fn refusal_error(r: &Refusal) -> ErrPacket {
    let (code, state) = match r.kind {
        RefusalKind::UnknownTarget => (errcode::ER_BAD_DB_ERROR, "42000"),
        RefusalKind::NoTls
        | RefusalKind::BadToken
        | RefusalKind::Revoked
        | RefusalKind::NoRole
        | RefusalKind::AmbiguousRole
        | RefusalKind::Denied => (errcode::ER_ACCESS_DENIED_ERROR, "28000"),
        RefusalKind::PoolExhausted | RefusalKind::TooManyClients => {
            (errcode::ER_CON_COUNT_ERROR, "08004")
        }
        RefusalKind::Unsupported => (errcode::ER_NOT_SUPPORTED_YET, "42000"),
        RefusalKind::Protocol | RefusalKind::Timeout => (errcode::ER_HANDSHAKE_ERROR, "08S01"),
        RefusalKind::Shutdown => (errcode::ER_SERVER_SHUTDOWN, "08S01"),
        RefusalKind::AuditUnavailable
        | RefusalKind::UpstreamLogin
        | RefusalKind::UpstreamUnavailable => (errcode::ER_UNKNOWN_ERROR, "HY000"),
    };
    let hint = r.hint.clone().or_else(|| match r.kind {
        RefusalKind::NoTls => Some("connect with --ssl (ssl-mode=REQUIRED)".into()),
        _ => None,
    });
    let message = match hint {
        Some(hint) => format!("{} (hint: {hint})", r.message),
        None => r.message.clone(),
    };
    ErrPacket::new(code, state, message)
}

/// How a pool failure reads to the core.
pub(super) fn upstream_failure(e: &PoolError) -> UpstreamFailure {
    match e {
        PoolError::Exhausted(..) => UpstreamFailure::Exhausted,
        PoolError::Upstream(UpstreamError::Refused(_) | UpstreamError::Password(_)) => {
            UpstreamFailure::Login
        }
        PoolError::Upstream(_) => UpstreamFailure::Unavailable,
    }
}

/// Serve one accepted client socket to the end, or until `shutdown`.
pub(super) async fn run(
    fe: Arc<Frontend>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let services = Arc::clone(&fe.services);
    let connection_id = fe.next_connection_id();
    let mut scope = Scope::new(&services, peer, Protocol::Mysql);
    let plaintext_ok = scope.may_send_token(false);
    let timeout = services.config.gateway.handshake_timeout;
    // Boxed: the login's future is large and would otherwise sit in every
    // idle session for its whole life.
    let login = tokio::time::timeout(
        timeout,
        Box::pin(handshake::accept(
            tcp,
            services.tls.as_ref(),
            plaintext_ok,
            connection_id,
        )),
    );
    let login = tokio::select! {
        l = login => l,
        () = shutdown.cancelled() => return,
    };
    let mut client = match login {
        Ok(Ok(client)) => client,
        Ok(Err(HandshakeError::Plaintext)) => {
            // Refused (with its ERR) by the handshake; the trail says so.
            let _ = scope.check_transport(false).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, kind = e.kind(), "MySQL handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "MySQL handshake timed out");
            return;
        }
    };
    let admit = tokio::time::timeout(timeout, Box::pin(admit(&fe, &mut scope, &mut client)));
    let admitted = tokio::select! {
        a = admit => a.unwrap_or_else(|_| Err(Refusal::timeout())),
        () = shutdown.cancelled() => Err(Refusal::shutdown()),
    };
    match admitted {
        Ok(established) => {
            Box::pin(serve(
                fe,
                scope,
                client,
                established,
                connection_id,
                &shutdown,
            ))
            .await;
        }
        Err(refusal) => {
            let seq = client.next_seq;
            handshake::send_error(&mut client.stream, seq, &refusal_error(&refusal)).await;
        }
    }
}

/// Turn away a client over the connection limit, in the protocol's terms.
pub(super) async fn refuse_busy(tcp: TcpStream) {
    let mut stream = Stream::Plain(tcp);
    let err = refusal_error(&Refusal::too_many_clients());
    handshake::send_error(&mut stream, 0, &err).await;
}

/// The core's admission, then an upstream connection named for the person.
async fn admit(
    fe: &Frontend,
    scope: &mut Scope,
    client: &mut ClientLogin,
) -> Result<Established, Refusal> {
    let fields = &client.fields;
    let target = scope.find_target(fields.database.as_deref().unwrap_or_default())?;
    scope.check_transport(client.stream.is_tls()).await?;
    let admitted = scope.admit(target, &fields.user, &fields.token).await?;
    let pool = Arc::clone(
        fe.pools
            .get(&admitted.target.name, &admitted.role)
            .expect("every role of every target has a pool"),
    );
    let variant = pool.intern(Variant {
        read_only: admitted.read_only,
        capabilities: fields.capabilities & PROTOCOL_CAPS,
        charset: fields.charset,
    });
    let mut lease = match pool.checkout(&variant).await {
        Ok(lease) => lease,
        Err(e) => return Err(scope.refuse_upstream(upstream_failure(&e), &e).await),
    };
    let identity = &scope.identity.as_ref().expect("admitted").identity;
    if let Err(e) = name_person(lease.conn(), identity).await {
        return Err(scope
            .refuse_upstream(UpstreamFailure::Unavailable, &e)
            .await);
    }
    Ok(Established {
        target: admitted.target,
        pool,
        lease,
        variant,
    })
}

/// What a successful login hands to the relay.
struct Established {
    target: TargetConfig,
    pool: Arc<Pool>,
    lease: Lease,
    variant: Arc<Variant>,
}

/// Name the person on the upstream session, for MariaDB's own views
/// (`@idgate_identity`, in `performance_schema.user_variables_by_thread`
/// and to the session itself). A reset between people clears it.
pub(super) async fn name_person(
    conn: &mut ServerConn,
    identity: &str,
) -> Result<(), UpstreamError> {
    // A hex literal: nothing in the identity can end the string.
    let sql = format!(
        "SET @idgate_identity = CONVERT(X'{}' USING utf8mb4)",
        hex::encode(identity)
    );
    conn.run(&sql).await
}

/// Let the client in, relay its commands, and end.
async fn serve(
    fe: Arc<Frontend>,
    scope: Scope,
    mut client: ClientLogin,
    established: Established,
    connection_id: u32,
    shutdown: &CancellationToken,
) {
    let Established {
        target,
        pool,
        mut lease,
        variant,
    } = established;
    let live = scope.register(&target, None, shutdown);
    let identity = scope.identity.clone().expect("admitted");
    let role = scope.role.clone().expect("admitted");
    let _entry = fe.enter(
        connection_id,
        LiveConn {
            issuer: identity.issuer.clone(),
            subject: identity.sub.clone(),
            target: target.name.clone(),
            role: role.clone(),
            variant: Arc::clone(&variant),
            upstream_id: lease.conn().connection_id,
            session: Arc::clone(&live.session),
        },
    );
    let mut ok = BytesMut::with_capacity(16);
    let mut payload = BytesMut::with_capacity(11);
    codec::encode_ok(&mut payload, 0, STATUS_AUTOCOMMIT);
    codec::write_packet(&mut ok, client.next_seq, &payload);
    if client.stream.write_all(&ok).await.is_err() || client.stream.flush().await.is_err() {
        return;
    }
    if scope.audit_start().await.is_err() {
        return;
    }
    let outcome = relay::run(
        &fe,
        &scope,
        scope.judge(&target),
        &mut client.stream,
        &mut lease,
        &variant,
        &live.session,
    )
    .await;
    let error = match outcome {
        Ok(()) => {
            match lease.conn().reset().await {
                Ok(()) => pool.checkin(lease),
                Err(e) => tracing::debug!(session = %scope.id, "reset before reuse failed: {e}"),
            }
            None
        }
        Err(e) => Some(e.to_string()),
    };
    scope.end(&live.session, error).await;
}

/// Connection ids the gateway gives its MySQL clients (and KILL names).
#[derive(Debug)]
pub(super) struct ConnectionIds(AtomicU32);

impl Default for ConnectionIds {
    fn default() -> Self {
        ConnectionIds(AtomicU32::new(1))
    }
}

impl ConnectionIds {
    pub(super) fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}
