//! Cancel keys: every client gets a random BackendKeyData from the gateway,
//! mapped here to its upstream's real key. A CancelRequest is forwarded only
//! when both its pid and secret match a live session, so one client can
//! never cancel another's query, and upstream keys never leave the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::codec;

/// Where a cancel for one client session must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelTarget {
    pub upstream: Arc<str>,
    pub pid: i32,
    pub key: i32,
}

#[derive(Default)]
pub struct CancelMap {
    /// `None` while the session holds no server connection (transaction
    /// pooling between transactions): nothing to cancel.
    live: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
}

/// Where one session's cancels go right now. Its own lock, so a session
/// re-pointing it per transaction never contends with other sessions.
#[derive(Default)]
struct CancelSlot(Mutex<Option<CancelTarget>>);

impl CancelSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CancelTarget>> {
        crate::lock(&self.0)
    }
}

/// The key handed to one client; unregisters itself when the session ends.
pub struct CancelKey {
    map: Arc<CancelMap>,
    slot: Arc<CancelSlot>,
    pub pid: i32,
    pub key: i32,
}

impl CancelKey {
    /// Point this key at the session's current server connection.
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.slot.lock() = target;
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.map.lock().remove(&(self.pid, self.key));
    }
}

impl CancelMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), Arc<CancelSlot>>> {
        // A panic elsewhere must not disable cancels for everyone.
        crate::lock(&self.live)
    }

    pub fn register(self: &Arc<Self>, target: Option<CancelTarget>) -> CancelKey {
        let mut live = self.lock();
        loop {
            // Positive pids look like real backends to clients that print them.
            let pid = rand::random::<i32>() & i32::MAX;
            let key = rand::random::<i32>();
            if let std::collections::hash_map::Entry::Vacant(entry) = live.entry((pid, key)) {
                let slot = Arc::new(CancelSlot(Mutex::new(target)));
                entry.insert(Arc::clone(&slot));
                return CancelKey {
                    map: Arc::clone(self),
                    slot,
                    pid,
                    key,
                };
            }
        }
    }

    pub fn lookup(&self, pid: i32, key: i32) -> Option<CancelTarget> {
        let slot = self.lock().get(&(pid, key)).cloned()?;
        slot.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Send the upstream its own CancelRequest. Like libpq, over a fresh plain
/// connection; the server answers nothing.
pub async fn forward(target: &CancelTarget) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect(&*target.upstream).await?;
    let mut buf = BytesMut::with_capacity(16);
    codec::cancel_request(&mut buf, target.pid, target.key);
    tcp.write_all(&buf).await?;
    tcp.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32) -> CancelTarget {
        CancelTarget {
            upstream: "127.0.0.1:5432".into(),
            pid,
            key: 42,
        }
    }

    #[test]
    fn only_the_exact_key_finds_the_session() {
        let map = Arc::new(CancelMap::default());
        let a = map.register(Some(target(1)));
        let b = map.register(Some(target(2)));
        assert_eq!(map.lookup(a.pid, a.key), Some(target(1)));
        assert_eq!(map.lookup(b.pid, b.key), Some(target(2)));
        assert_eq!(map.lookup(a.pid, a.key.wrapping_add(1)), None);
        assert_eq!(map.lookup(a.pid, b.key), None);
    }

    #[test]
    fn key_is_forgotten_when_session_ends() {
        let map = Arc::new(CancelMap::default());
        let a = map.register(Some(target(1)));
        let (pid, key) = (a.pid, a.key);
        drop(a);
        assert_eq!(map.lookup(pid, key), None);
        assert!(map.is_empty());
    }
}
