//! The running gateway: every shared component built from one `Config`, and
//! the listener tasks that serve it. `idgate serve`, `idgate dev` and the
//! integration tests all start the gateway through `Gateway::start`.

mod refresh;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, AuditWriter};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::identity::{Identity, LogoutError, LogoutToken, TokenError, TokenValidator, unix_now};
use crate::metrics::Metrics;
use crate::policy::{Clock, PolicyEngine};
use crate::postgres::cancel::CancelMap;
use crate::postgres::catalogue::TargetCatalogue;
use crate::postgres::pool::Pools;
use crate::sessions::{
    EndReason, ExpiryWatcher, Registry, Revocation, RevocationMatch, Revocations,
    revocation::TokenFacts,
};

pub use refresh::{RefreshError, RefreshOutcome, RefreshRequest};

/// State shared by every session. Built once; sessions hold an `Arc`.
pub struct Gateway {
    pub config: Config,
    /// Private on purpose: a person's token is judged only through
    /// `authenticate`, which adds the revocation check, so no entry point
    /// can accept a revoked token by asking the validator alone.
    validator: TokenValidator,
    pub policy: PolicyEngine,
    pub audit: AuditLog,
    pub tls: Option<Arc<ServerConfig>>,
    /// Per target name; `None` where upstream TLS is disabled.
    pub upstream_tls: HashMap<String, Option<Arc<ClientConfig>>>,
    pub cancels: Arc<CancelMap>,
    /// Upstream connection pools, per (target, role).
    pub pools: Pools,
    /// What each target's catalogue holds, kept current (by target name).
    pub catalogues: HashMap<String, Arc<TargetCatalogue>>,
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
}

/// A started gateway: where it listens and how to stop it.
pub struct Running {
    pub postgres_addr: SocketAddr,
    /// Where the admin API listens, when `admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    audit_writer: AuditWriter,
}

impl Gateway {
    /// Load policy, TLS and audit, fetch issuer keys, bind the listener.
    pub async fn start(config: Config) -> anyhow::Result<Running> {
        Self::start_with_clock(config, Clock::System).await
    }

    /// As `start`, with the time policies see fixed (tests).
    pub async fn start_with_clock(config: Config, clock: Clock) -> anyhow::Result<Running> {
        Self::start_inner(config, clock, true).await
    }

    /// As `start`, but audit events are discarded, not written: only for
    /// measuring what the audit trail costs (`idgate dev --no-audit`).
    pub async fn start_unaudited(config: Config) -> anyhow::Result<Running> {
        Self::start_inner(config, Clock::System, false).await
    }

    async fn start_inner(
        mut config: Config,
        clock: Clock,
        audited: bool,
    ) -> anyhow::Result<Running> {
        // Every secret up front: a missing one stops the gateway here, not
        // at a client's first login.
        config.read_secrets()?;
        let policy = PolicyEngine::load(&config.policy.file)?;
        let tls = match &config.gateway.tls {
            Some(files) => Some(crate::tls::server_config(
                &files.cert_file,
                &files.key_file,
            )?),
            None => None,
        };
        let mut upstream_tls = HashMap::new();
        for t in &config.targets {
            let c = crate::tls::upstream_config(t.upstream_tls, t.upstream_ca_file.as_deref())
                .with_context(|| format!("target {}", t.name))?;
            upstream_tls.insert(t.name.clone(), c);
        }
        let (audit, audit_writer) = if audited {
            let key = config.audit.read_key()?;
            AuditLog::open(&config.audit.file, key.as_ref())
                .await
                .with_context(|| format!("audit file {}", config.audit.file.display()))?
        } else {
            AuditLog::discarding()
        };
        let validator = TokenValidator::new(config.issuers.clone());
        validator.warm_up().await;
        let listener = TcpListener::bind(config.gateway.postgres_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.gateway.postgres_listen))?;
        let postgres_addr = listener.local_addr()?;
        let admin_listener = match config.gateway.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (admin_listen)"))?,
            ),
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let pools = Pools::new(&config.targets, &upstream_tls);
        let cluster = match &config.cluster {
            Some(c) => Some(Arc::new(
                Cluster::new(c).with_context(|| format!("[cluster] redis {}", c.redis))?,
            )),
            None => None,
        };
        let catalogues = config
            .targets
            .iter()
            .map(|t| (t.name.clone(), Arc::default()))
            .collect();
        let gateway = Arc::new(Gateway {
            config,
            pools,
            catalogues,
            validator,
            policy,
            audit,
            tls,
            upstream_tls,
            cancels: Arc::new(CancelMap::default()),
            clock,
            sessions: Arc::new(Registry::default()),
            revocations: Revocations::default(),
            expiry: Arc::new(ExpiryWatcher::default()),
            cluster,
            metrics: Metrics::default(),
        });
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::postgres::serve(
            Arc::clone(&gateway),
            listener,
            shutdown.clone(),
        ));
        tokio::spawn(reap_idle(Arc::downgrade(&gateway), shutdown.clone()));
        for target in &gateway.config.targets {
            let pool = target
                .roles
                .first()
                .and_then(|r| gateway.pools.get(&target.name, &r.name));
            if let (Some(pool), Some(catalogue)) = (pool, gateway.catalogues.get(&target.name)) {
                Arc::clone(catalogue).watch(Arc::clone(pool), shutdown.clone());
            }
        }
        tokio::spawn(Arc::clone(&gateway.expiry).run(shutdown.clone()));
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            let Some(gw) = weak.upgrade() else { return };
            for w in
                crate::postgres::grants::read_only_roles_that_can_write(&gw.pools, &gw.policy).await
            {
                tracing::warn!("{w}");
            }
        });
        if let Some(cluster) = &gateway.cluster {
            let weak = Arc::downgrade(&gateway);
            tokio::spawn(Arc::clone(cluster).run(weak.clone(), shutdown.clone()));
            tokio::spawn(Arc::clone(cluster).sync_sessions(weak, shutdown.clone()));
        }
        tracing::info!("PostgreSQL front end listening on {postgres_addr}");
        if let (Some(listener), Some(addr)) = (admin_listener, admin_addr) {
            tokio::spawn(crate::admin::serve(
                Arc::clone(&gateway),
                listener,
                shutdown.clone(),
            ));
            tracing::info!("admin API listening on {addr}");
        }
        Ok(Running {
            postgres_addr,
            admin_addr,
            gateway,
            shutdown,
            server,
            audit_writer,
        })
    }
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

impl Gateway {
    /// The one check of a person's token, shared by every entry point
    /// (database login, admin API): valid per the validator, and not
    /// covered by a revocation (by subject, `sid` or `jti`).
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

impl Running {
    /// A token that, when cancelled, stops the gateway.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop accepting, end sessions, and flush the audit trail.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        drop(self.gateway);
        self.audit_writer.shutdown().await;
    }

    /// Run until `shutdown_token` is cancelled, then stop.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }
}

/// Close pooled connections past their idle timeout until the gateway stops.
async fn reap_idle(gateway: std::sync::Weak<Gateway>, shutdown: CancellationToken) {
    let Some(every) = gateway.upgrade().map(|g| g.pools.reap_interval()) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match gateway.upgrade() {
            Some(g) => g.pools.reap(),
            None => return,
        }
    }
}
