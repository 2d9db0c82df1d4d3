//! One client session as the core sees it, whatever its protocol: who
//! (once known), from where, to which target and role; its audit events;
//! and, once admitted, its registry entry with the deadlines that end it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::judge::Judge;
use super::services::Services;
use crate::audit::{AuditError, AuditEvent, EventKind};
use crate::config::{OnExpiry, Protocol, TargetConfig};
use crate::identity::{Identity, unix_now};
use crate::policy::RequestContext;
use crate::sessions::revocation::TokenFacts;
use crate::sessions::{
    EndReason, Entitlement, LiveSession, RefreshSecret, SessionHandle, SessionInfo,
};

/// Audit context of one client session.
pub struct Scope {
    pub services: Arc<Services>,
    pub id: String,
    pub peer: SocketAddr,
    /// `peer` as audited, formatted once.
    peer_text: String,
    pub started: Instant,
    pub protocol: Protocol,
    /// Shared with the statement judge: one copy of the claims per session.
    pub identity: Option<Arc<Identity>>,
    pub target: Option<String>,
    pub role: Option<String>,
}

impl Scope {
    pub fn new(services: &Arc<Services>, peer: SocketAddr, protocol: Protocol) -> Self {
        let id: [u8; 12] = rand::random();
        Self {
            services: Arc::clone(services),
            id: hex::encode(id),
            peer,
            peer_text: peer.to_string(),
            started: Instant::now(),
            protocol,
            identity: None,
            target: None,
            role: None,
        }
    }

    /// An audit event carrying everything known about this session.
    pub fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = AuditEvent::new(kind);
        e.session_id = Some(self.id.clone());
        e.client_addr = Some(self.peer_text.clone());
        e.protocol = Some(self.protocol.as_str().into());
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
    pub async fn audit_durable(&self, e: AuditEvent) -> Result<(), AuditError> {
        self.services.audit.record_durable(e).await
    }

    /// Session start and end follow a durable login, so they are queued
    /// like statements (in order, flushed within the commit delay).
    pub async fn audit_queued(&self, e: AuditEvent) -> Result<(), AuditError> {
        self.services.audit.record(e).await
    }

    /// The statement judge of this admitted session at `target`.
    pub fn judge(&self, target: &TargetConfig) -> Judge {
        Judge::new(
            Arc::clone(&self.services),
            Arc::clone(self.identity.as_ref().expect("admitted")),
            target.name.clone(),
            self.role.clone().expect("admitted"),
            self.context(target),
        )
    }

    /// Audit that the admitted session has started (after its client was
    /// told it is in).
    pub async fn audit_start(&self) -> Result<(), AuditError> {
        self.audit_queued(self.event(EventKind::SessionStart)).await
    }

    /// What policies see of this session at `target` (statement fields
    /// are filled per statement).
    pub fn context(&self, target: &TargetConfig) -> RequestContext {
        RequestContext {
            client_address: self.peer.ip(),
            environment: target.environment.clone(),
            now: self.services.clock.now(),
            ..RequestContext::default()
        }
    }

    /// Enter the registry, with deadlines for token expiry and session
    /// age. Call once admitted, before the client hears it is in.
    pub fn register(
        &self,
        target: &TargetConfig,
        refresh: Option<RefreshSecret>,
        shutdown: &CancellationToken,
    ) -> SessionHandle {
        let services = &self.services;
        let identity = self.identity.as_ref().expect("admitted");
        let started_at = unix_now() - i64::try_from(self.started.elapsed().as_secs()).unwrap_or(0);
        let handle = services.sessions.register(
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
        if let Some(what) = services
            .revocations
            .refusing(&TokenFacts::of(identity), unix_now())
        {
            handle.session.end(EndReason::Revoked(what.to_string()));
        }
        let g = &services.config.gateway;
        if g.on_expiry == OnExpiry::Disconnect {
            services.expiry.watch_token(&handle.session, g.expiry_grace);
        }
        if let Some(age) = g.max_session_age {
            let at = tokio::time::Instant::from_std(self.started) + age;
            services
                .expiry
                .watch(&handle.session, at, EndReason::MaxAge);
        }
        handle
    }

    /// Audit the end of an admitted session: why it was ended from
    /// outside, or the error that ended it (`error`, internal detail for
    /// the trail, never shown to the client).
    pub async fn end(&self, live: &LiveSession, error: Option<String>) {
        let mut e = self.event(EventKind::SessionEnd);
        e.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        match (live.end_reason(), error) {
            (Some(reason), _) => {
                self.services.metrics.session_ended(reason.label());
                e.reason = Some(reason.message());
            }
            (None, Some(err)) => e.error = Some(err),
            (None, None) => {}
        }
        if let Err(err) = self.audit_queued(e).await {
            tracing::error!(session = %self.id, "audit trail unavailable at session end: {err}");
        }
    }
}
