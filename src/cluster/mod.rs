//! Several gateways, one view (SPEC §8): revocations and live sessions
//! shared through Redis.
//!
//! - A revocation is stored under `{ns}:revocation:{hash}` with a TTL that
//!   ends when no token it covers can still be valid (gateways that start
//!   later load them), and published on `{ns}:events`, on which every
//!   gateway ends its matching sessions at once.
//! - A kill of a session another gateway holds is published the same way.
//! - Each gateway keeps its live sessions under `{ns}:session:{id}`,
//!   refreshed every few seconds with a short TTL, so the admin API can list
//!   every gateway's sessions.
//!
//! A gateway that loses Redis keeps enforcing what it knows, retries, and
//! says so in `/readyz`; on reconnecting it loads the stored revocations
//! again, so nothing revoked meanwhile is missed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::core::services::Services;
use crate::identity::unix_now;
use crate::sessions::{Revocation, RevocationMatch, SessionSnapshot};

/// Every Redis call gives up after this; the caller decides what then.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often live sessions are written, and how long an entry outlives
/// its last write.
const SYNC_EVERY: Duration = Duration::from_secs(5);
const SESSION_TTL_SECS: u64 = 15;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// What travels on the events channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Message {
    Revoke(Revocation),
    Kill { session: String },
}

pub struct Cluster {
    client: redis::Client,
    ns: String,
    /// This gateway's id in session entries.
    pub gateway_id: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    subscribed: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.ns)
            .field("gateway_id", &self.gateway_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(config: &ClusterConfig) -> Result<Self, ClusterError> {
        let id: [u8; 6] = rand::random();
        Ok(Cluster {
            client: redis::Client::open(config.redis.as_str())?,
            ns: config.namespace.clone(),
            gateway_id: hex::encode(id),
            conn: tokio::sync::Mutex::new(None),
            subscribed: AtomicBool::new(false),
        })
    }

    /// Subscribed to the events channel with the stored revocations loaded.
    pub fn is_connected(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    fn channel(&self) -> String {
        format!("{}:events", self.ns)
    }

    fn revocation_key(&self, what: &RevocationMatch) -> String {
        let json = serde_json::to_vec(what).unwrap_or_default();
        format!(
            "{}:revocation:{}",
            self.ns,
            hex::encode(Sha256::digest(json))
        )
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.ns)
    }

    /// A command connection, opened on first use and after a failure.
    async fn with_conn<T, F, Fut>(&self, call: F) -> Result<T, ClusterError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let mut slot = self.conn.lock().await;
            let conn = match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = self.client.get_multiplexed_async_connection().await?;
                    *slot = Some(c.clone());
                    c
                }
            };
            drop(slot);
            call(conn).await.map_err(ClusterError::from)
        };
        let result = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::Timeout(CALL_TIMEOUT)),
        };
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result
    }

    /// Stores `r` until it lapses and tells every gateway.
    pub async fn share_revocation(&self, r: &Revocation) -> Result<(), ClusterError> {
        let ttl = u64::try_from(r.until - unix_now()).unwrap_or(0).max(1);
        let stored = serde_json::to_string(r).unwrap_or_default();
        let message = serde_json::to_string(&Message::Revoke(r.clone())).unwrap_or_default();
        let key = self.revocation_key(&r.what);
        let channel = self.channel();
        self.with_conn(|mut c| async move {
            redis::pipe()
                .set_ex(&key, stored, ttl)
                .ignore()
                .publish(&channel, message)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Asks the gateway holding session `id` to end it; false if no
    /// gateway lists it.
    pub async fn kill(&self, id: &str) -> Result<bool, ClusterError> {
        let key = self.session_key(id);
        let message = serde_json::to_string(&Message::Kill {
            session: id.to_owned(),
        })
        .unwrap_or_default();
        let channel = self.channel();
        self.with_conn(|mut c| async move {
            let known: bool = c.exists(&key).await?;
            if known {
                let _: usize = c.publish(&channel, message).await?;
            }
            Ok(known)
        })
        .await
    }

    /// Every gateway's live sessions, as last written.
    pub async fn sessions(&self) -> Result<Vec<SessionSnapshot>, ClusterError> {
        self.stored(format!("{}:session:*", self.ns)).await
    }

    /// The values of every key matching `pattern` that parse as `T` (keys
    /// may lapse between the scan and the read).
    async fn stored<T: serde::de::DeserializeOwned>(
        &self,
        pattern: String,
    ) -> Result<Vec<T>, ClusterError> {
        let values: Vec<String> = self
            .with_conn(|mut c| async move {
                let keys = scan(&mut c, &pattern).await?;
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let values: Vec<Option<String>> = c.mget(&keys).await?;
                Ok(values.into_iter().flatten().collect())
            })
            .await?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect())
    }

    /// Follows the events channel until `stop`, reconnecting with backoff.
    pub async fn run(self: Arc<Self>, gw: Weak<Services>, stop: CancellationToken) {
        let mut backoff = RETRY_MIN;
        loop {
            match self.follow(&gw, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    if self.subscribed.swap(false, Ordering::Relaxed) || backoff == RETRY_MIN {
                        tracing::warn!("cluster: {e}; enforcing local revocations only, retrying");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// One subscription: subscribe, load what is stored, then apply
    /// messages until the connection drops (Err) or `stop` (Ok).
    async fn follow(
        &self,
        gw: &Weak<Services>,
        stop: &CancellationToken,
    ) -> Result<(), ClusterError> {
        let mut pubsub = timed(self.client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(self.channel())).await?;
        // After subscribing, so a revocation made meanwhile is either
        // stored (and loaded here) or published (and received below).
        let stored: Vec<Revocation> = self.stored(format!("{}:revocation:*", self.ns)).await?;
        let Some(g) = gw.upgrade() else {
            return Ok(());
        };
        for r in stored {
            g.apply_revocation(r);
        }
        drop(g);
        self.subscribed.store(true, Ordering::Relaxed);
        tracing::info!(gateway = %self.gateway_id, "cluster: following {}", self.channel());
        let mut messages = pubsub.into_on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                () = stop.cancelled() => return Ok(()),
            };
            let Some(msg) = msg else {
                return Err(ClusterError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "subscription closed",
                ))));
            };
            let Some(g) = gw.upgrade() else {
                return Ok(());
            };
            match serde_json::from_slice::<Message>(msg.get_payload_bytes()) {
                Ok(Message::Revoke(r)) => {
                    g.apply_revocation(r);
                }
                Ok(Message::Kill { session }) => {
                    g.sessions.kill(&session);
                }
                Err(e) => tracing::warn!("cluster: ignoring a message that does not parse: {e}"),
            }
        }
    }

    /// Writes this gateway's live sessions every few seconds until `stop`.
    pub async fn sync_sessions(self: Arc<Self>, gw: Weak<Services>, stop: CancellationToken) {
        let mut written: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let Some(g) = gw.upgrade() else {
                return;
            };
            let live = g.sessions.list();
            drop(g);
            let mut pipe = redis::pipe();
            let mut now_live = HashSet::new();
            for s in &live {
                let entry = s.snapshot(Some(&self.gateway_id));
                let json = serde_json::to_string(&entry).unwrap_or_default();
                pipe.set_ex(self.session_key(&s.info.id), json, SESSION_TTL_SECS)
                    .ignore();
                now_live.insert(s.info.id.clone());
            }
            for gone in written.difference(&now_live) {
                pipe.del(self.session_key(gone)).ignore();
            }
            let result = self
                .with_conn(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await;
            match result {
                Ok(()) => written = now_live,
                Err(e) => tracing::debug!("cluster: session list not written: {e}"),
            }
        }
    }
}

async fn timed<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, ClusterError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ClusterError::Timeout(CALL_TIMEOUT)),
    }
}

/// All keys matching `pattern` (SCAN, not KEYS: never blocks the server).
async fn scan(c: &mut MultiplexedConnection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
