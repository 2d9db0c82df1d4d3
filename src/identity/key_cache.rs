//! One issuer's signing keys, cached. Refresh rules, in order:
//! - no keys yet: fetch inline (at most once per `no_keys_retry`), else fail
//!   closed with `KeysUnavailable`;
//! - unknown `kid`: refetch inline at most once per `unknown_kid_refetch`, so
//!   a flood of bogus kids costs the issuer one request per interval;
//! - keys older than `max_age`: keep answering from cache and refresh in a
//!   background task (never blocks a login on the issuer); those attempts are
//!   also spaced by `unknown_kid_refetch`, so while the issuer is down we do
//!   not spawn a doomed fetch per login.
//!
//! Refreshes are single-flight behind an async mutex; the key set itself sits
//! behind a std lock that is never held across an await. A failed refresh
//! keeps the old keys, so an issuer outage does not lock anyone out.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::discovery::IssuerHttp;
use super::error::TokenError;
use super::jwks::KeySet;
use crate::config::IssuerConfig;

/// How eagerly keys are refetched. The defaults follow the spec; tests
/// shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRefreshPolicy {
    /// Minimum gap between refetches triggered by an unknown `kid`.
    pub unknown_kid_refetch: Duration,
    /// Minimum gap between attempts while we hold no keys at all. Shorter
    /// than the above so a gateway that started during an issuer outage
    /// recovers quickly, yet still cannot hammer it.
    pub no_keys_retry: Duration,
    /// Age after which keys are refreshed in the background.
    pub max_age: Duration,
}

impl Default for KeyRefreshPolicy {
    fn default() -> Self {
        KeyRefreshPolicy {
            unknown_kid_refetch: Duration::from_secs(30),
            no_keys_retry: Duration::from_secs(5),
            max_age: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct KeyState {
    keys: Arc<KeySet>,
    /// Bumped on every successful fetch; lets a waiter see that someone
    /// else refreshed while it queued for the refresh lock.
    generation: u64,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    /// From config, or learnt once through discovery.
    jwks_uri: Option<String>,
}

#[derive(Debug)]
pub(crate) struct IssuerKeys {
    pub config: IssuerConfig,
    http: IssuerHttp,
    policy: KeyRefreshPolicy,
    state: RwLock<KeyState>,
    refresh_lock: Arc<Mutex<()>>,
    /// JWKS downloads that succeeded and failed, for metrics.
    pub fetched: std::sync::atomic::AtomicU64,
    pub fetch_failures: std::sync::atomic::AtomicU64,
}

impl IssuerKeys {
    pub fn new(config: IssuerConfig, http: IssuerHttp, policy: KeyRefreshPolicy) -> Self {
        let state = KeyState {
            jwks_uri: config.jwks_uri.clone(),
            ..KeyState::default()
        };
        IssuerKeys {
            config,
            http,
            policy,
            state: RwLock::new(state),
            refresh_lock: Arc::new(Mutex::new(())),
            fetched: std::sync::atomic::AtomicU64::new(0),
            fetch_failures: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The key set to look `kid` up in, refreshed first when the rules above
    /// say so.
    pub async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<KeySet>, TokenError> {
        let (keys, generation, fetched_at) = self.current();
        if keys.is_empty() {
            self.refresh(generation, self.policy.no_keys_retry).await;
            let (keys, ..) = self.current();
            if keys.is_empty() {
                return Err(self.unavailable());
            }
            return Ok(keys);
        }
        if kid.is_some_and(|kid| !keys.has_kid(kid)) {
            self.refresh(generation, self.policy.unknown_kid_refetch)
                .await;
            return Ok(self.current().0);
        }
        if fetched_at.is_some_and(|t| t.elapsed() > self.policy.max_age) {
            self.refresh_in_background();
        }
        Ok(keys)
    }

    /// Fetches now, ignoring the rate limits (used at start-up); waits for a
    /// refresh already running rather than racing it.
    pub async fn refresh_now(&self) -> Result<(), String> {
        let _guard = self.refresh_lock.lock().await;
        self.fetch_locked().await
    }

    fn current(&self) -> (Arc<KeySet>, u64, Option<Instant>) {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        (Arc::clone(&st.keys), st.generation, st.fetched_at)
    }

    fn unavailable(&self) -> TokenError {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let reason = match (&st.last_error, st.generation) {
            (Some(e), _) => e.clone(),
            (None, 0) => "not fetched yet".to_string(),
            (None, _) => "the issuer publishes no usable signing keys".to_string(),
        };
        TokenError::KeysUnavailable {
            issuer: self.config.name.clone(),
            reason,
        }
    }

    fn attempted_within(&self, interval: Duration) -> bool {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.last_attempt.is_some_and(|t| t.elapsed() < interval)
    }

    /// Single-flight, rate-limited refresh. `seen_generation` is what the
    /// caller looked at: if it moved while we waited for the lock, the
    /// caller's reason to refresh has already been served.
    async fn refresh(&self, seen_generation: u64, min_interval: Duration) {
        let _guard = self.refresh_lock.lock().await;
        let moved = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            st.generation != seen_generation
        };
        if moved || self.attempted_within(min_interval) {
            return;
        }
        // Failures are logged and recorded inside; callers read the state.
        let _ = self.fetch_locked().await;
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.attempted_within(self.policy.unknown_kid_refetch) {
            return;
        }
        let Ok(guard) = Arc::clone(&self.refresh_lock).try_lock_owned() else {
            return; // a refresh is already running
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _guard = guard;
            let _ = this.fetch_locked().await;
        });
    }

    /// Downloads and installs the key set. Caller holds `refresh_lock`.
    async fn fetch_locked(&self) -> Result<(), String> {
        let result = self.download().await;
        let counter = if result.is_ok() {
            &self.fetched
        } else {
            &self.fetch_failures
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        st.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                if keys.is_empty() {
                    tracing::warn!(issuer = %self.config.name, "JWKS has no usable signing keys");
                }
                st.keys = Arc::new(keys);
                st.generation += 1;
                st.fetched_at = st.last_attempt;
                st.last_error = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    issuer = %self.config.name,
                    error = %e,
                    cached_keys = st.keys.keys.len(),
                    "cannot refresh signing keys; keeping cached keys"
                );
                st.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<KeySet, String> {
        let known = {
            let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
            st.jwks_uri.clone()
        };
        let uri = match known {
            Some(uri) => uri,
            None => {
                let uri = self.http.discover_jwks_uri(&self.config.issuer).await?;
                let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
                st.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = self.http.get_limited(&uri).await?;
        KeySet::parse(&body, &self.config.name)
    }
}
