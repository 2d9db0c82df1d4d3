//! Admission: a login request in (target, requested role, token, whether
//! the token came over TLS), an admitted session or a refusal out. Every
//! refusal has a kind, which is its metric label and what a front end
//! maps to its own error code, and a message written for the person at
//! the client: what went wrong and what to do, never an upstream host,
//! user or server text (those go to the log, under the session id the
//! message quotes as its reference). Every decision is audited durably
//! before the client hears it.

use std::sync::Arc;

use super::scope::Scope;
use super::services::AuthError;
use crate::audit::{AuditEvent, Decision, EventKind};
use crate::config::TargetConfig;
use crate::policy::{AccessRequest, Action, RoleChoice};
use crate::secret::Secret;

/// Why a client is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No target of that name (for this protocol).
    UnknownTarget,
    /// A token offered without TLS where that is not allowed.
    NoTls,
    /// The validator refused the token.
    BadToken,
    /// A revocation covers the token.
    Revoked,
    /// No policy permits the caller any role of the target.
    NoRole,
    /// The role was not named and several are permitted.
    AmbiguousRole,
    /// Policy refused `connect` as the role.
    Denied,
    /// The audit trail cannot record: logins are suspended.
    AuditUnavailable,
    /// The upstream refused the gateway's own login.
    UpstreamLogin,
    /// The upstream could not be reached or broke off.
    UpstreamUnavailable,
    /// Every pooled connection of the role is busy.
    PoolExhausted,
    /// Something the client asked for is not available through the gateway.
    Unsupported,
    /// The client did not speak the protocol.
    Protocol,
    /// Login did not finish within `handshake_timeout`.
    Timeout,
    /// The gateway is stopping.
    Shutdown,
    /// Over `max_connections`.
    TooManyClients,
}

impl RefusalKind {
    /// The metric label (and audit `error` where one is written).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::UnknownTarget => "unknown_target",
            RefusalKind::NoTls => "no_tls",
            RefusalKind::BadToken => "bad_token",
            RefusalKind::Revoked => "revoked",
            RefusalKind::NoRole => "no_role",
            RefusalKind::AmbiguousRole => "ambiguous_role",
            RefusalKind::Denied => "policy",
            RefusalKind::AuditUnavailable => "audit_unavailable",
            RefusalKind::UpstreamLogin => "upstream_login",
            RefusalKind::UpstreamUnavailable => "upstream_unavailable",
            RefusalKind::PoolExhausted => "pool_exhausted",
            RefusalKind::Unsupported => "unsupported",
            RefusalKind::Protocol => "protocol",
            RefusalKind::Timeout => "timeout",
            RefusalKind::Shutdown => "shutdown",
            RefusalKind::TooManyClients => "too_many_clients",
        }
    }
}

/// A refusal to send the client before closing: user-facing text only.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    pub hint: Option<String>,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn shutdown() -> Self {
        Self::new(RefusalKind::Shutdown, "the gateway is shutting down")
            .hint("connect again in a moment")
    }

    pub fn timeout() -> Self {
        Self::new(RefusalKind::Timeout, "login did not finish in time")
    }

    pub fn too_many_clients() -> Self {
        Self::new(
            RefusalKind::TooManyClients,
            "sorry, too many clients already",
        )
    }
}

/// Why an upstream could not serve a session, as a front end's upstream
/// error classifies itself. The detail stays in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The server refused the role's credentials or database.
    Login,
    /// Unreachable, TLS failed, or the connection broke.
    Unavailable,
    /// The pool had no connection to give in time.
    Exhausted,
}

/// A session the core let in.
pub struct Admitted {
    pub target: TargetConfig,
    pub role: String,
    /// No policy lets this caller write as this role: the upstream
    /// session is made read-only too, as defence in depth.
    pub read_only: bool,
}

impl Scope {
    /// The target `name` served by this front end's protocol.
    pub fn find_target(&mut self, name: &str) -> Result<TargetConfig, Refusal> {
        self.target = Some(name.to_owned());
        let config = &self.services.config;
        if let Some(t) = config.target(name).filter(|t| t.protocol == self.protocol) {
            return Ok(t.clone());
        }
        let names: Vec<&str> = config
            .targets
            .iter()
            .filter(|t| t.protocol == self.protocol)
            .map(|t| t.name.as_str())
            .collect();
        let other = config.target(name).is_some();
        let message = if other {
            format!(
                "target \"{name}\" is not a {} target",
                self.protocol.as_str()
            )
        } else {
            format!("target \"{name}\" does not exist")
        };
        Err(
            Refusal::new(RefusalKind::UnknownTarget, message).hint(format!(
                "use one of these as the database: {}",
                names.join(", ")
            )),
        )
    }

    /// A token may travel only over TLS, or over loopback when allowed.
    pub fn may_send_token(&self, tls: bool) -> bool {
        tls || (self.peer.ip().is_loopback()
            && self.services.config.gateway.allow_plaintext_loopback)
    }

    /// `may_send_token`, audited when refused.
    pub async fn check_transport(&self, tls: bool) -> Result<(), Refusal> {
        if self.may_send_token(tls) {
            return Ok(());
        }
        let mut e = self.event(EventKind::AuthFailed);
        e.reason = Some("token offered without TLS".into());
        e.error = Some(RefusalKind::NoTls.label().into());
        self.audit_login(e).await?;
        Err(Refusal::new(
            RefusalKind::NoTls,
            "token authentication requires TLS",
        ))
    }

    /// Judge a login: the token (valid, not revoked), the role (the one
    /// requested if the target defines it, else the only one the policy
    /// permits), and `connect`. Every outcome is audited durably.
    pub async fn admit(
        &mut self,
        target: TargetConfig,
        requested_role: &str,
        token: &Secret,
    ) -> Result<Admitted, Refusal> {
        let services = Arc::clone(&self.services);
        let identity = match services.authenticate(token.expose()).await {
            Ok(identity) => identity,
            Err(err) => {
                let (message, kind) = (err.to_string(), err.kind());
                let (reason, refusal_kind, hint) = match err {
                    AuthError::Invalid(e) => (
                        e.to_string(),
                        RefusalKind::BadToken,
                        "get a fresh token from your identity provider (idgate login) and pass it as the password",
                    ),
                    AuthError::Revoked { what, identity } => {
                        // Audited under the person it names.
                        self.identity = Some(Arc::new(*identity));
                        (
                            format!("revoked: {what}"),
                            RefusalKind::Revoked,
                            "log in to your identity provider again and use the new token",
                        )
                    }
                };
                let mut e = self.event(EventKind::AuthFailed);
                e.reason = Some(reason);
                e.error = Some(kind.to_owned());
                self.audit_login(e).await?;
                return Err(Refusal::new(refusal_kind, message).hint(hint));
            }
        };
        let identity = Arc::new(identity);
        self.identity = Some(Arc::clone(&identity));
        let context = self.context(&target);
        let names: Vec<&str> = target.roles.iter().map(|r| r.name.as_str()).collect();
        let role = match services.policy.choose_role(
            &identity,
            &target.name,
            &names,
            requested_role,
            &context,
        ) {
            RoleChoice::Requested(role) | RoleChoice::OnlyPermitted(role) => role,
            choice => {
                let refusal = role_refusal(&target, requested_role, choice);
                let mut e = self.event(EventKind::Denied);
                e.decision = Some(Decision::Deny);
                e.reason = Some(refusal.message.clone());
                self.audit_login(e).await?;
                return Err(refusal);
            }
        };
        self.role = Some(role.clone());
        let decision = services.policy.authorize(&AccessRequest {
            identity: &identity,
            target: &target.name,
            role: &role,
            action: Action::Connect,
            context: context.clone(),
        });
        if !decision.allowed {
            let mut e = self.event(EventKind::Denied);
            e.decision = Some(Decision::Deny);
            e.policy_ids = decision.policy_ids;
            e.reason = Some(decision.reason.clone());
            self.audit_login(e).await?;
            return Err(Refusal::new(
                RefusalKind::Denied,
                format!(
                    "permission denied to connect as role \"{role}\": {}",
                    decision.reason
                ),
            ));
        }
        let mut e = self.event(EventKind::AuthOk);
        e.decision = Some(Decision::Allow);
        e.policy_ids = decision.policy_ids;
        self.audit_login(e).await?;
        let read_only = !services
            .policy
            .may_write(&identity, &target.name, &role, &context);
        Ok(Admitted {
            target,
            role,
            read_only,
        })
    }

    /// The upstream cannot serve this session: `detail` goes to the log
    /// under the session id; the client hears what to do and that id as
    /// a reference.
    pub fn upstream_failed(
        &self,
        failure: UpstreamFailure,
        detail: &(dyn std::fmt::Display + Sync),
    ) -> Refusal {
        let target = self.target.as_deref().unwrap_or_default();
        let role = self.role.as_deref().unwrap_or_default();
        tracing::warn!(session = %self.id, target, role, "upstream: {detail}");
        match failure {
            UpstreamFailure::Login => Refusal::new(
                RefusalKind::UpstreamLogin,
                format!(
                    "the gateway could not log in to target \"{target}\" as role \"{role}\" (reference {})",
                    self.id
                ),
            )
            .hint("the gateway's upstream credentials or the database need attention; tell its operator and quote the reference"),
            UpstreamFailure::Unavailable => Refusal::new(
                RefusalKind::UpstreamUnavailable,
                format!("target \"{target}\" is unavailable (reference {})", self.id),
            )
            .hint("try again shortly; if it persists, tell the gateway's operator and quote the reference"),
            UpstreamFailure::Exhausted => Refusal::new(
                RefusalKind::PoolExhausted,
                format!("every upstream connection of role \"{role}\" is busy"),
            )
            .hint("try again, or ask the gateway's operator to raise the pool's max_size"),
        }
    }

    /// As `upstream_failed`, at login: the admitted session ends before
    /// it starts, and the trail says so with the detail.
    pub async fn refuse_upstream(
        &self,
        failure: UpstreamFailure,
        detail: &(dyn std::fmt::Display + Sync),
    ) -> Refusal {
        let refusal = self.upstream_failed(failure, detail);
        self.services.metrics.login("failed", refusal.kind.label());
        let mut e = self.event(EventKind::SessionEnd);
        e.error = Some(detail.to_string());
        match self.audit_login(e).await {
            Ok(()) => refusal,
            Err(unrecorded) => unrecorded,
        }
    }

    /// Count and durably audit one login decision. An audit trail that
    /// cannot record is a refusal, never a silent gap.
    async fn audit_login(&self, e: AuditEvent) -> Result<(), Refusal> {
        let m = &self.services.metrics;
        match e.event {
            EventKind::AuthOk => m.login("ok", "allowed"),
            EventKind::AuthFailed => m.login("failed", e.error.as_deref().unwrap_or("no_tls")),
            EventKind::Denied => m.login("denied", "policy"),
            _ => {}
        }
        self.audit_durable(e).await.map_err(|err| {
            tracing::error!("audit trail unavailable: {err}");
            Refusal::new(
                RefusalKind::AuditUnavailable,
                "audit trail unavailable; logins are suspended",
            )
            .hint("tell the gateway's operator")
        })
    }
}

fn role_refusal(target: &TargetConfig, requested: &str, choice: RoleChoice) -> Refusal {
    match choice {
        RoleChoice::Ambiguous(many) => Refusal::new(
            RefusalKind::AmbiguousRole,
            format!(
                "role \"{requested}\" is not defined for target \"{}\"",
                target.name
            ),
        )
        .hint(format!(
            "set the user to one of the roles you may use: {}",
            many.join(", ")
        )),
        _ => Refusal::new(
            RefusalKind::NoRole,
            format!(
                "role \"{requested}\" is not defined for target \"{}\", and no policy permits you any of its roles",
                target.name
            ),
        ),
    }
}
