//! Ends sessions at their deadline (token expiry plus grace, or maximum
//! age) from one task for the whole gateway: a timer per session would
//! sit in every idle session's memory.
//!
//! A token-expiry deadline remembers which expiry it was set for: once a
//! refresh has moved the session's expiry, the old deadline passes without
//! effect and the one set for the new expiry counts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{EndReason, LiveSession};

struct Deadline {
    at: Instant,
    session: Weak<LiveSession>,
    reason: EndReason,
    /// For a token-expiry deadline: the session's `token_expires_at` it
    /// was set for.
    token_exp: Option<i64>,
}

impl Deadline {
    /// Whether it still stands for `session` (no refresh superseded it).
    fn stands(&self, session: &LiveSession) -> bool {
        self.token_exp
            .is_none_or(|exp| exp == session.token_expires_at())
    }
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
pub struct ExpiryWatcher {
    heap: Mutex<BinaryHeap<Reverse<Deadline>>>,
    /// An earlier deadline than the task sleeps for was added.
    sooner: Notify,
}

impl std::fmt::Debug for ExpiryWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiryWatcher").finish_non_exhaustive()
    }
}

impl ExpiryWatcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<Deadline>>> {
        crate::lock(&self.heap)
    }

    /// End `session` with `reason` at `at`.
    pub fn watch(&self, session: &Arc<LiveSession>, at: Instant, reason: EndReason) {
        self.push(Deadline {
            at,
            session: Arc::downgrade(session),
            reason,
            token_exp: None,
        });
    }

    /// End `session` `grace` after its token expires, unless a refresh
    /// moves the expiry first (then call this again for the new one).
    pub fn watch_token(&self, session: &Arc<LiveSession>, grace: Duration) {
        let exp = session.token_expires_at();
        let left = time::OffsetDateTime::from_unix_timestamp(exp)
            .ok()
            .and_then(|exp| Duration::try_from(exp - time::OffsetDateTime::now_utc()).ok())
            .unwrap_or_default();
        self.push(Deadline {
            at: Instant::now() + left + grace,
            session: Arc::downgrade(session),
            reason: EndReason::TokenExpired,
            token_exp: Some(exp),
        });
    }

    fn push(&self, deadline: Deadline) {
        let mut heap = self.lock();
        let sooner = heap.peek().is_none_or(|Reverse(d)| deadline.at < d.at);
        heap.push(Reverse(deadline));
        drop(heap);
        if sooner {
            self.sooner.notify_one();
        }
    }

    /// Ends sessions as their deadlines pass, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let next = {
                let now = Instant::now();
                let mut heap = self.lock();
                while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                    let Reverse(d) = heap.pop().expect("peeked");
                    if let Some(s) = d.session.upgrade()
                        && d.stands(&s)
                    {
                        s.end(d.reason);
                    }
                }
                // Sessions that ended on their own leave dead entries; drop
                // them when they dominate, so the heap stays small.
                if heap.len() > 64
                    && heap
                        .iter()
                        .filter(|Reverse(d)| d.session.strong_count() == 0)
                        .count()
                        > heap.len() / 2
                {
                    heap.retain(|Reverse(d)| d.session.strong_count() > 0);
                }
                heap.peek().map(|Reverse(d)| d.at)
            };
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = self.sooner.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
