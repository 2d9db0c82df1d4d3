//! Live client sessions: the registry the admin API lists, the end signal
//! that revocation, expiry and shutdown use to close a session at once,
//! and the revocation list that refuses old tokens at login (SPEC §8).
//!
//! Every logged-in session registers and holds a [`SessionHandle`]; its
//! `ended` token is a child of the gateway's shutdown token, so the relay
//! waits on one signal for every way a session can be ended from outside.
//! Why it ended is set before the token fires, so the session can tell the
//! client (57P01) and the audit trail.

mod expiry;
pub mod revocation;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use expiry::ExpiryWatcher;
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
    pub token_expires_at: i64,
}

/// A session as the admin API lists it, and as gateways share it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// The gateway holding it, when gateways share state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(flatten)]
    pub info: SessionInfo,
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

    fn matches(&self, m: &RevocationMatch) -> bool {
        let i = &self.info;
        match m {
            RevocationMatch::Subject { issuer, subject } => {
                i.issuer == *issuer && i.subject == *subject
            }
            RevocationMatch::Sid { issuer, sid } => {
                i.issuer == *issuer && i.sid.as_deref() == Some(sid.as_str())
            }
            RevocationMatch::Jti { issuer, jti } => {
                i.issuer == *issuer && i.jti.as_deref() == Some(jti.as_str())
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
        shutdown: &CancellationToken,
    ) -> SessionHandle {
        let session = Arc::new(LiveSession {
            info,
            statements: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            ended: shutdown.child_token(),
            reason: OnceLock::new(),
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
            token_expires_at: 2,
        }
    }

    #[test]
    fn revocation_ends_matching_sessions_only_and_says_why() {
        let registry = Arc::new(Registry::default());
        let shutdown = CancellationToken::new();
        let a = registry.register(info("a", "alice", Some("s1")), &shutdown);
        let b = registry.register(info("b", "alice", Some("s2")), &shutdown);
        let c = registry.register(info("c", "bob", Some("s1")), &shutdown);
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
        let a = registry.register(info("a", "alice", None), &shutdown);
        {
            let _b = registry.register(info("b", "bob", None), &shutdown);
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
}
