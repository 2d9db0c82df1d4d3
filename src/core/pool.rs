//! Upstream connection pools, generic over the protocol: a front end
//! supplies a [`Connector`] (how to open a connection for a variant, and
//! whether an idle one is still alive); the pool decides who gets which.
//!
//! A pool opens at most `max_size` connections, each for one variant
//! (whatever must be equal for two clients to share a connection: the
//! read-only flag, startup settings). Only clients of the same variant
//! share a connection, so a read-only session's connection can never serve
//! a writer. When the pool is full and a client of another variant waits,
//! an idle connection is closed to make room.
//!
//! Waiters are served first come, first served. A connection comes back
//! through [`Pool::checkin`] only when its holder knows it is clean (at
//! rest, nothing in flight, reset in session mode); anything else drops
//! the [`Lease`], which closes the connection and frees its slot.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::PoolConfig;

/// What a front end gives a pool: how to open and check its connections.
pub trait Connector: Send + Sync + 'static {
    type Conn: Send + 'static;
    type Variant: Eq + Send + Sync + 'static;
    type Error: std::error::Error + Send + 'static;

    /// Open and log in a connection for `variant`, at rest and ready.
    fn open(
        &self,
        variant: &Self::Variant,
    ) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// Whether the server has neither closed `conn` nor sent anything
    /// unasked: no round trip, it runs under checkout.
    fn is_alive(conn: &mut Self::Conn) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Upstream(E),
    #[error("no upstream connection became free within {0:?} (pool max_size {1})")]
    Exhausted(Duration, usize),
}

struct Idle<C: Connector> {
    conn: C::Conn,
    variant: Arc<C::Variant>,
    since: Instant,
}

// Unboxed: under contention every checkin hands a connection over, and a
// box would be an allocation per transaction.
#[allow(clippy::large_enum_variant)]
enum Grant<C: Connector> {
    Conn(Idle<C>),
    /// A slot: the waiter opens a connection itself.
    Open,
}

struct Waiter<C: Connector> {
    variant: Arc<C::Variant>,
    tx: oneshot::Sender<Grant<C>>,
}

struct State<C: Connector> {
    /// Oldest first.
    idle: VecDeque<Idle<C>>,
    /// Connections that exist or are being opened, idle or leased.
    open: usize,
    waiters: VecDeque<Waiter<C>>,
}

pub struct Pool<C: Connector> {
    connector: C,
    config: PoolConfig,
    state: Mutex<State<C>>,
    /// One `Arc` per distinct variant, so matching a connection to a client
    /// is a pointer comparison.
    variants: Mutex<Vec<Arc<C::Variant>>>,
}

/// A connection checked out of its pool. Dropping it closes the connection;
/// [`Pool::checkin`] returns a clean one.
pub struct Lease<C: Connector> {
    pool: Arc<Pool<C>>,
    conn: Option<C::Conn>,
    variant: Arc<C::Variant>,
}

impl<C: Connector> Drop for Lease<C> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.forget();
        }
    }
}

impl<C: Connector> Lease<C> {
    pub fn conn(&mut self) -> &mut C::Conn {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until returned")
    }
}

/// Counts for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

fn same<V: Eq>(a: &Arc<V>, b: &Arc<V>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl<C: Connector> Pool<C> {
    pub fn new(connector: C, config: PoolConfig) -> Arc<Self> {
        Arc::new(Pool {
            connector,
            config,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                open: 0,
                waiters: VecDeque::new(),
            }),
            variants: Mutex::new(Vec::new()),
        })
    }

    pub fn connector(&self) -> &C {
        &self.connector
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The pool's own `Arc` for `variant`. Distinct variants are few
    /// (read-only or not, times the client settings in use); a pool that
    /// sees unusually many forgets them, which only costs the shortcut.
    pub fn intern(&self, variant: C::Variant) -> Arc<C::Variant> {
        const MAX_VARIANTS: usize = 64;
        let mut known = crate::lock(&self.variants);
        if let Some(v) = known.iter().find(|v| ***v == variant) {
            return Arc::clone(v);
        }
        if known.len() >= MAX_VARIANTS {
            known.clear();
        }
        let v = Arc::new(variant);
        known.push(Arc::clone(&v));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<C>> {
        crate::lock(&self.state)
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.lock();
        PoolStats {
            open: s.open,
            idle: s.idle.len(),
            waiting: s.waiters.len(),
        }
    }

    fn lease(self: &Arc<Self>, conn: C::Conn, variant: Arc<C::Variant>) -> Lease<C> {
        Lease {
            pool: Arc::clone(self),
            conn: Some(conn),
            variant,
        }
    }

    /// An idle, live connection of `variant` if there is one, at once.
    pub fn try_checkout(self: &Arc<Self>, variant: &Arc<C::Variant>) -> Option<Lease<C>> {
        let mut idle = {
            let mut s = self.lock();
            let at = s.idle.iter().rposition(|c| same(&c.variant, variant))?;
            s.idle.remove(at).expect("position is in range")
        };
        if !C::is_alive(&mut idle.conn) {
            drop(idle);
            self.forget();
            return None;
        }
        Some(self.lease(idle.conn, idle.variant))
    }

    /// A connection of `variant`: an idle one if there is, else a new one
    /// while under `max_size`, else the first to come back.
    pub async fn checkout(
        self: &Arc<Self>,
        variant: &Arc<C::Variant>,
    ) -> Result<Lease<C>, PoolError<C::Error>> {
        if let Some(lease) = self.try_checkout(variant) {
            return Ok(lease);
        }
        enum Next<C: Connector> {
            Open,
            /// Closed outside the lock; boxed, as this path is rare.
            Replace(Box<Idle<C>>),
            Wait(oneshot::Receiver<Grant<C>>),
        }
        let next = {
            let mut s = self.lock();
            if s.open < self.config.max_size {
                s.open += 1;
                Next::Open
            } else if let Some(other) = s.idle.pop_front() {
                Next::Replace(Box::new(other))
            } else {
                let (tx, rx) = oneshot::channel();
                s.waiters.push_back(Waiter {
                    variant: Arc::clone(variant),
                    tx,
                });
                Next::Wait(rx)
            }
        };
        let granted = match next {
            Next::Open => Grant::Open,
            Next::Replace(other) => {
                drop(other);
                Grant::Open
            }
            Next::Wait(mut rx) => {
                match tokio::time::timeout(self.config.wait_timeout, &mut rx).await {
                    Ok(Ok(grant)) => grant,
                    // The pool never drops a waiter's sender unanswered.
                    Ok(Err(_)) => unreachable!("waiter sender dropped"),
                    Err(_) => {
                        rx.close();
                        match rx.try_recv() {
                            // Granted just as the wait ran out: take it.
                            Ok(grant) => grant,
                            Err(_) => {
                                return Err(PoolError::Exhausted(
                                    self.config.wait_timeout,
                                    self.config.max_size,
                                ));
                            }
                        }
                    }
                }
            }
        };
        // A dead connection's slot is ours: open a fresh one in its place.
        let reusable = match granted {
            Grant::Conn(mut idle) => C::is_alive(&mut idle.conn).then_some(idle.conn),
            Grant::Open => None,
        };
        let conn = match reusable {
            Some(conn) => conn,
            None => match self.connector.open(variant).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.forget();
                    return Err(PoolError::Upstream(e));
                }
            },
        };
        Ok(self.lease(conn, Arc::clone(variant)))
    }

    /// Return a clean connection (at rest, nothing in flight, reset if
    /// the mode needs it).
    pub fn checkin(&self, mut lease: Lease<C>) {
        let Some(conn) = lease.conn.take() else {
            return;
        };
        let idle = Idle {
            conn,
            variant: Arc::clone(&lease.variant),
            since: Instant::now(),
        };
        let mut closing = None;
        {
            let mut s = self.lock();
            let mut idle = Some(idle);
            while let Some(waiter) = s.waiters.pop_front() {
                let c = idle.take().expect("kept until handed over");
                let grant = if same(&waiter.variant, &c.variant) {
                    Grant::Conn(c)
                } else {
                    closing = Some(c);
                    Grant::Open
                };
                match waiter.tx.send(grant) {
                    Ok(()) => break,
                    // That waiter gave up; try the next one.
                    Err(Grant::Conn(c)) => idle = Some(c),
                    Err(Grant::Open) => idle = closing.take(),
                }
            }
            if let Some(c) = idle {
                s.idle.push_back(c);
            }
        }
        drop(closing);
    }

    /// A connection is gone: free its slot, or hand it to a waiter.
    fn forget(&self) {
        let mut s = self.lock();
        s.open -= 1;
        while let Some(waiter) = s.waiters.pop_front() {
            if waiter.tx.send(Grant::Open).is_ok() {
                s.open += 1;
                return;
            }
        }
    }

    /// Close connections idle longer than `idle_timeout`.
    pub fn reap(&self, now: Instant) {
        let expired: Vec<Idle<C>> = {
            let mut s = self.lock();
            let keep = s
                .idle
                .iter()
                .position(|c| now.duration_since(c.since) < self.config.idle_timeout)
                .unwrap_or(s.idle.len());
            let expired: Vec<Idle<C>> = s.idle.drain(..keep).collect();
            s.open -= expired.len();
            expired
        };
        drop(expired);
    }
}

/// Every pool of one front end, by (target, role); built once at start.
pub struct Pools<C: Connector> {
    by_role: HashMap<(String, String), Arc<Pool<C>>>,
}

impl<C: Connector> Default for Pools<C> {
    fn default() -> Self {
        Pools {
            by_role: HashMap::new(),
        }
    }
}

impl<C: Connector> Pools<C> {
    pub fn insert(&mut self, target: &str, role: &str, pool: Arc<Pool<C>>) {
        self.by_role
            .insert((target.to_owned(), role.to_owned()), pool);
    }

    pub fn get(&self, target: &str, role: &str) -> Option<&Arc<Pool<C>>> {
        self.by_role.get(&(target.to_owned(), role.to_owned()))
    }

    /// Every pool with its (target, role).
    pub fn named(&self) -> impl Iterator<Item = (&str, &str, &Arc<Pool<C>>)> {
        self.by_role
            .iter()
            .map(|((target, role), pool)| (target.as_str(), role.as_str(), pool))
    }
}

/// What the core needs of a front end's pools, whatever their protocol:
/// gauges for metrics, and idle reaping.
pub trait PoolSet: Send + Sync {
    /// (target, role, counts) of every pool.
    fn stats(&self) -> Vec<(String, String, PoolStats)>;
    /// Close idle connections past their pools' `idle_timeout`.
    fn reap(&self, now: Instant);
    /// The shortest `idle_timeout` of any pool.
    fn shortest_idle_timeout(&self) -> Option<Duration>;
}

impl<C: Connector> PoolSet for Pools<C> {
    fn stats(&self) -> Vec<(String, String, PoolStats)> {
        self.named()
            .map(|(t, r, p)| (t.to_owned(), r.to_owned(), p.stats()))
            .collect()
    }

    fn reap(&self, now: Instant) {
        for pool in self.by_role.values() {
            pool.reap(now);
        }
    }

    fn shortest_idle_timeout(&self) -> Option<Duration> {
        self.by_role.values().map(|p| p.config.idle_timeout).min()
    }
}

/// Close pooled connections past their idle timeout, in every front
/// end's pools, until `shutdown` (or until the pools are dropped).
pub async fn reap_idle(sets: Vec<Weak<dyn PoolSet>>, shutdown: CancellationToken) {
    let shortest = sets
        .iter()
        .filter_map(Weak::upgrade)
        .filter_map(|s| s.shortest_idle_timeout())
        .min();
    let every = shortest
        .map_or(Duration::from_secs(60), |t| t / 2)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let mut any = false;
        for set in sets.iter().filter_map(Weak::upgrade) {
            set.reap(now);
            any = true;
        }
        if !any {
            return;
        }
    }
}
