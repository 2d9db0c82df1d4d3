//! The handles every front end is given: token validation (with the
//! revocation check), policy, audit, the live-session registry, expiry,
//! the cluster, metrics, the clock. Built once by `gateway.rs` and passed
//! down; nothing here knows a protocol.

use std::sync::Arc;

use rustls::ServerConfig;

use super::pool::PoolSet;
use crate::audit::AuditLog;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::identity::{Identity, LogoutError, LogoutToken, TokenError, TokenValidator, unix_now};
use crate::metrics::Metrics;
use crate::policy::{Clock, PolicyEngine};
use crate::sessions::{
    EndReason, ExpiryWatcher, Registry, Revocation, RevocationMatch, Revocations,
    revocation::TokenFacts,
};

/// State shared by every session of every front end.
pub struct Services {
    pub config: Config,
    /// Private on purpose: a person's token is judged only through
    /// `authenticate`, which adds the revocation check, so no entry point
    /// can accept a revoked token by asking the validator alone.
    validator: TokenValidator,
    pub policy: PolicyEngine,
    pub audit: AuditLog,
    /// The gateway's own TLS, offered to clients of every front end.
    pub tls: Option<Arc<ServerConfig>>,
    /// The time policies see.
    pub clock: Clock,
    /// Live client sessions.
    pub sessions: Arc<Registry>,
    /// What was revoked, refused at login.
    pub revocations: Revocations,
    /// Ends sessions at token expiry or maximum age.
    pub expiry: Arc<ExpiryWatcher>,
    /// Revocations and sessions shared with other gateways (`[cluster]`).
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Metrics,
    /// Every front end's upstream pools, for metrics.
    pub pools: Vec<Arc<dyn PoolSet>>,
}

/// The parts `Services::new` takes as they are.
pub struct Parts {
    pub config: Config,
    pub validator: TokenValidator,
    pub policy: PolicyEngine,
    pub audit: AuditLog,
    pub tls: Option<Arc<ServerConfig>>,
    pub clock: Clock,
    pub cluster: Option<Arc<Cluster>>,
    pub pools: Vec<Arc<dyn PoolSet>>,
}

/// Why a token presented to the gateway does not let its bearer in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The validator refused the token.
    #[error("token rejected: {0}")]
    Invalid(#[from] TokenError),
    /// The token is valid, but a revocation covers it. The identity is
    /// kept for the audit trail, never shown.
    #[error("token rejected: access was revoked ({what}) after this token was issued")]
    Revoked {
        what: RevocationMatch,
        identity: Box<Identity>,
    },
}

impl AuthError {
    /// The label for audit `error` and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Invalid(e) => e.kind(),
            AuthError::Revoked { .. } => "revoked",
        }
    }
}

impl Services {
    pub fn new(p: Parts) -> Self {
        Services {
            config: p.config,
            validator: p.validator,
            policy: p.policy,
            audit: p.audit,
            tls: p.tls,
            clock: p.clock,
            sessions: Arc::new(Registry::default()),
            revocations: Revocations::default(),
            expiry: Arc::new(ExpiryWatcher::default()),
            cluster: p.cluster,
            metrics: Metrics::default(),
            pools: p.pools,
        }
    }

    /// The one check of a person's token, shared by every entry point
    /// (database logins of every front end, admin API): valid per the
    /// validator, and not covered by a revocation (by subject, `sid` or
    /// `jti`).
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let identity = self.validator.validate(token).await?;
        match self
            .revocations
            .refusing(&TokenFacts::of(&identity), unix_now())
        {
            Some(what) => Err(AuthError::Revoked {
                what,
                identity: Box::new(identity),
            }),
            None => Ok(identity),
        }
    }

    /// Validates an OIDC back-channel logout token. Not subject to
    /// revocations: it is the issuer's word, can only revoke, and is
    /// applied as of its `iat`, so refusing it would only keep sessions
    /// alive that the issuer ended.
    pub async fn validate_logout(&self, token: &str) -> Result<LogoutToken, LogoutError> {
        self.validator.validate_logout(token).await
    }

    /// JWKS downloads per issuer name: (succeeded, failed).
    pub fn jwks_fetches(&self) -> Vec<(&str, u64, u64)> {
        self.validator.jwks_fetches()
    }

    /// When a revocation of `what` made at `at` lapses: once no token it
    /// covers can still be accepted (`Config::revocation_horizon`). A
    /// session revocation refuses no login; it only ends that session now.
    #[must_use]
    pub fn revocation_until(&self, what: &RevocationMatch, at: i64) -> i64 {
        match what {
            RevocationMatch::Session(_) => at,
            _ => at.saturating_add(
                i64::try_from(self.config.revocation_horizon().as_secs()).unwrap_or(i64::MAX),
            ),
        }
    }

    /// Applies a revocation, made here or on another gateway: matching live
    /// sessions end at once, and (unless it names one session) older tokens
    /// are refused at login until it lapses. The ids of the ended sessions.
    pub fn apply_revocation(&self, mut r: Revocation) -> Vec<String> {
        // Kept at least as long as a token it covers can be accepted here,
        // even if the gateway that made it has shorter lifetimes configured.
        r.until = r.until.max(self.revocation_until(&r.what, r.at));
        let reason = EndReason::Revoked(r.what.to_string());
        let ended = self.sessions.end_matching(&r.what, &reason);
        if !matches!(r.what, RevocationMatch::Session(_)) {
            self.revocations.add(r);
        }
        ended
    }
}
