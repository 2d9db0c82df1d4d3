//! Live client sessions: the registry the admin API lists, the end signal
//! that revocation, expiry and shutdown use to close a session at once,
//! and the revocation list that refuses old tokens at login (SPEC §8).
//!
//! Every logged-in session registers and holds a [`SessionHandle`]; its
//! `ended` token is a child of the gateway's shutdown token, so the relay
//! waits on one signal for every way a session can be ended from outside.
//! Why it ended is set before the token fires, so the session can tell the
//! client (57P01) and the audit trail.
//!
//! A session may outlive its login token: a client holding its
//! [`RefreshSecret`] hands the gateway a newer token of the same person
//! (`Gateway::refresh_session`), which moves the session's token expiry.

mod expiry;
mod refresh_secret;
pub mod revocation;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;

pub use expiry::ExpiryWatcher;
pub use refresh_secret::RefreshSecret;
pub use revocation::{Revocation, RevocationMatch, Revocations};

/// Why a session was ended from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// A revocation matched; says what was revoked.
    Revoked(String),
    /// An administrator killed this session.
    Killed,
    /// The token expired (plus grace) under `on_expiry = "disconnect"`.
    TokenExpired,
    /// `max_session_age` passed.
    MaxAge,
    /// The gateway is shutting down.
    Shutdown,
}

impl EndReason {
    /// The client-facing message (sent with SQLSTATE 57P01).
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            EndReason::Revoked(what) => {
                format!("terminating connection: access was revoked ({what})")
            }
            EndReason::Killed => {
                "terminating connection: the session was ended by an administrator".to_owned()
            }
            EndReason::TokenExpired => {
                "terminating connection: the token expired; get a new token and reconnect"
                    .to_owned()
            }
            EndReason::MaxAge => {
                "terminating connection: the session reached its maximum age; reconnect".to_owned()
            }
            EndReason::Shutdown => {
                "terminating connection: the gateway is shutting down".to_owned()
            }
        }
    }

    /// The label for audit `reason` and metrics.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            EndReason::Revoked(_) => "revoked",
            EndReason::Killed => "killed",
            EndReason::TokenExpired => "token_expired",
            EndReason::MaxAge => "max_age",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// What the registry knows about one live session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    /// The configured issuer's name.
    pub issuer: String,
    pub subject: String,
    pub identity: String,
    /// The token's `sid` claim (the IdP's login session), if any.
    pub sid: Option<String>,
    pub jti: Option<String>,
    pub target: String,
    pub role: String,
    pub client_addr: String,
    /// Unix seconds.
    pub started_at: i64,
}

/// What entitles a session, beyond who it is: how long its token lasts, the
/// groups it logged in with (a refresh must carry the same), and the secret
/// that lets its client refresh it, if it asked for one.
#[derive(Debug)]
pub struct Entitlement {
    /// Unix seconds: the `exp` of the login token.
    pub expires_at: i64,
    pub groups: Vec<String>,
    pub refresh: Option<RefreshSecret>,
}

impl Entitlement {
    /// The entitlement a validated login token gives.
    #[must_use]
    pub fn of(identity: &Identity, refresh: Option<RefreshSecret>) -> Self {
        Entitlement {
            expires_at: identity.expires_at,
            groups: sorted_groups(identity),
            refresh,
        }
    }
}

fn sorted_groups(identity: &Identity) -> Vec<String> {
    let mut groups = identity.groups.clone();
    groups.sort();
    groups.dedup();
    groups
}

/// A session as the admin API lists it, and as gateways share it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// The gateway holding it, when gateways share state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(flatten)]
    pub info: SessionInfo,
    /// Unix seconds: the `exp` of the newest token entitling it (the login
    /// token's, or the last refresh's).
    pub token_expires_at: i64,
    pub statements: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A registered session, shared by the registry and the session itself.
#[derive(Debug)]
pub struct LiveSession {
    pub info: SessionInfo,
    /// Statements completed (allowed or denied).
    pub statements: AtomicU64,
    /// Bytes relayed from the client and to it.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    ended: CancellationToken,
    reason: OnceLock<EndReason>,
    /// Unix seconds; moved by each accepted refresh.
    token_expires_at: AtomicI64,
    /// Sorted: what a refreshing token's groups must equal.
    groups: Vec<String>,
    refresh: Option<RefreshSecret>,
    /// The `sid` and `jti` of the last refreshing token: revoking them ends
    /// the session as revoking the login token's does.
    refreshed: Mutex<Option<TokenMarks>>,
}

#[derive(Debug)]
struct TokenMarks {
    sid: Option<String>,
    jti: Option<String>,
}

impl LiveSession {
    /// Ends the session with `reason`, unless it was already ended (the
    /// first reason stays).
    pub fn end(&self, reason: EndReason) {
        if !self.ended.is_cancelled() {
            let _ = self.reason.set(reason);
        }
        self.ended.cancel();
    }

    pub fn count_statement(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` bytes relayed; `from_client` says which way.
    pub fn count_bytes(&self, from_client: bool, n: usize) {
        let counter = if from_client {
            &self.bytes_in
        } else {
            &self.bytes_out
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Its figures now, held by `gateway` when gateways share state.
    #[must_use]
    pub fn snapshot(&self, gateway: Option<&str>) -> SessionSnapshot {
        SessionSnapshot {
            gateway: gateway.map(Into::into),
            info: self.info.clone(),
            token_expires_at: self.token_expires_at(),
            statements: self.statements.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }

    /// Fires when the session must end: revoked, killed, expired, or the
    /// gateway shutting down.
    #[must_use]
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    /// Why it ended; shutdown when the parent token fired.
    #[must_use]
    pub fn end_reason(&self) -> Option<EndReason> {
        if !self.ended.is_cancelled() {
            return None;
        }
        Some(self.reason.get().cloned().unwrap_or(EndReason::Shutdown))
    }

    /// Unix seconds: when the newest token entitling it expires.
    #[must_use]
    pub fn token_expires_at(&self) -> i64 {
        self.token_expires_at.load(Ordering::Acquire)
    }

    /// Whether `presented` is this session's refresh secret (compared in
    /// constant time); never, when its client asked for none.
    #[must_use]
    pub fn refresh_secret_matches(&self, presented: &str) -> bool {
        self.refresh.as_ref().is_some_and(|s| s.matches(presented))
    }

    /// Whether `identity` carries exactly the groups the session logged in
    /// with: the statement policy keeps judging with the login's claims,
    /// so a refresh must not stand for different ones.
    #[must_use]
    pub fn same_groups(&self, identity: &Identity) -> bool {
        sorted_groups(identity) == self.groups
    }

    /// A newer token of the same person now entitles the session: its
    /// expiry becomes the token's, and revoking the token's `sid` or `jti`
    /// ends the session. The caller has checked the person and the policy.
    pub fn extend(&self, identity: &Identity) {
        *crate::lock(&self.refreshed) = Some(TokenMarks {
            sid: identity.sid().map(Into::into),
            jti: identity.jti.clone(),
        });
        self.token_expires_at
            .store(identity.expires_at, Ordering::Release);
    }

    fn matches(&self, m: &RevocationMatch) -> bool {
        let i = &self.info;
        let refreshed = || crate::lock(&self.refreshed);
        match m {
            RevocationMatch::Subject { issuer, subject } => {
                i.issuer == *issuer && i.subject == *subject
            }
            RevocationMatch::Sid { issuer, sid } => {
                i.issuer == *issuer
                    && (i.sid.as_deref() == Some(sid.as_str())
                        || refreshed()
                            .as_ref()
                            .is_some_and(|t| t.sid.as_deref() == Some(sid.as_str())))
            }
            RevocationMatch::Jti { issuer, jti } => {
                i.issuer == *issuer
                    && (i.jti.as_deref() == Some(jti.as_str())
                        || refreshed()
                            .as_ref()
                            .is_some_and(|t| t.jti.as_deref() == Some(jti.as_str())))
            }
            RevocationMatch::Session(id) => i.id == *id,
        }
    }
}

/// The live sessions of this gateway.
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Arc<LiveSession>>>,
}

/// Held by a session while it lives; deregisters on drop.
#[derive(Debug)]
pub struct SessionHandle {
    registry: Arc<Registry>,
    pub session: Arc<LiveSession>,
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.session.info.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveSession>>> {
        crate::lock(&self.live)
    }

    /// Registers a session whose end also follows `shutdown`.
    pub fn register(
        self: &Arc<Self>,
        info: SessionInfo,
        entitlement: Entitlement,
        shutdown: &CancellationToken,
    ) -> SessionHandle {
        let session = Arc::new(LiveSession {
            info,
            statements: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            ended: shutdown.child_token(),
            reason: OnceLock::new(),
            token_expires_at: AtomicI64::new(entitlement.expires_at),
            groups: entitlement.groups,
            refresh: entitlement.refresh,
            refreshed: Mutex::new(None),
        });
        self.lock()
            .insert(session.info.id.clone(), Arc::clone(&session));
        SessionHandle {
            registry: Arc::clone(self),
            session,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live session `id`, if this gateway holds it.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.lock().get(id).cloned()
    }

    /// Every live session, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<Arc<LiveSession>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (a.info.started_at, &a.info.id).cmp(&(b.info.started_at, &b.info.id)));
        all
    }

    /// Ends every live session `m` matches; returns their ids.
    pub fn end_matching(&self, m: &RevocationMatch, reason: &EndReason) -> Vec<String> {
        let matched: Vec<Arc<LiveSession>> = self
            .lock()
            .values()
            .filter(|s| s.matches(m))
            .cloned()
            .collect();
        for s in &matched {
            s.end(reason.clone());
        }
        matched.iter().map(|s| s.info.id.clone()).collect()
    }

    /// Ends one session by id; false if there is none.
    pub fn kill(&self, id: &str) -> bool {
        let session = self.lock().get(id).cloned();
        session.is_some_and(|s| {
            s.end(EndReason::Killed);
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, sub: &str, sid: Option<&str>) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            issuer: "corp".into(),
            subject: sub.into(),
            identity: format!("{sub}@example.com"),
            sid: sid.map(Into::into),
            jti: Some(format!("jti-{id}")),
            target: "main".into(),
            role: "reader".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: 1,
        }
    }

    fn plain() -> Entitlement {
        Entitlement {
            expires_at: 2,
            groups: vec!["analysts".into()],
            refresh: None,
        }
    }

    fn identity(sub: &str, groups: &[&str], jti: &str, exp: i64) -> Identity {
        Identity {
            issuer_name: "corp".into(),
            issuer: "https://login.example.com".into(),
            sub: sub.into(),
            identity: sub.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            expires_at: exp,
            issued_at: Some(1),
            jti: Some(jti.into()),
            claims: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn revocation_ends_matching_sessions_only_and_says_why() {
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let a = registry.register(info("a", "alice", Some("s1")), plain(), &shutdown);
        let b = registry.register(info("b", "alice", Some("s2")), plain(), &shutdown);
        let c = registry.register(info("c", "bob", Some("s1")), plain(), &shutdown);
        let reason = EndReason::Revoked("sid s1".into());
        let ended = registry.end_matching(
            &RevocationMatch::Sid {
                issuer: "corp".into(),
                sid: "s1".into(),
            },
            &reason,
        );
        let mut ended = ended;
        ended.sort();
        assert_eq!(ended, ["a", "c"]);
        assert_eq!(a.session.end_reason(), Some(reason));
        assert_eq!(b.session.end_reason(), None);
        assert!(c.session.ended().is_cancelled());
    }

    #[test]
    fn shutdown_ends_every_session_and_handles_deregister() {
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let a = registry.register(info("a", "alice", None), plain(), &shutdown);
        {
            let _b = registry.register(info("b", "bob", None), plain(), &shutdown);
            assert_eq!(registry.len(), 2);
        }
        assert_eq!(registry.len(), 1);
        shutdown.cancel();
        assert_eq!(a.session.end_reason(), Some(EndReason::Shutdown));
        assert!(registry.kill("a"));
        // The first reason stays.
        assert_eq!(a.session.end_reason(), Some(EndReason::Shutdown));
        assert!(!registry.kill("nobody"));
    }

    #[test]
    fn a_refresh_moves_the_expiry_and_its_jti_revokes_the_session() {
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let secret = RefreshSecret::generate();
        let presented = secret.to_hex();
        let a = registry.register(
            info("a", "alice", None),
            Entitlement {
                refresh: Some(secret),
                ..plain()
            },
            &shutdown,
        );
        let live = registry.get("a").expect("registered");
        assert!(live.refresh_secret_matches(&presented));
        assert!(!live.refresh_secret_matches(&"0".repeat(presented.len())));
        assert!(!live.refresh_secret_matches("short"));
        assert!(live.same_groups(&identity("alice", &["analysts", "analysts"], "x", 9)));
        assert!(!live.same_groups(&identity("alice", &["analysts", "admins"], "x", 9)));

        live.extend(&identity("alice", &["analysts"], "jti-new", 100));
        assert_eq!(live.token_expires_at(), 100);
        assert_eq!(live.snapshot(None).token_expires_at, 100);
        let revoke = |jti: &str| RevocationMatch::Jti {
            issuer: "corp".into(),
            jti: jti.into(),
        };
        let reason = EndReason::Revoked("jti".into());
        assert!(
            registry
                .end_matching(&revoke("jti-other"), &reason)
                .is_empty()
        );
        assert_eq!(registry.end_matching(&revoke("jti-new"), &reason), ["a"]);
        assert!(a.session.ended().is_cancelled());
    }

    #[test]
    fn a_session_that_asked_for_no_refresh_matches_no_secret() {
        let registry = Arc::new(Registry::default());
        let _a = registry.register(info("a", "alice", None), plain(), &CancellationToken::new());
        let live = registry.get("a").expect("registered");
        assert!(!live.refresh_secret_matches(&RefreshSecret::generate().to_hex()));
    }
}
