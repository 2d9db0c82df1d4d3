//! Upstream connection pools, one per (target, role).
//!
//! A pool opens at most `max_size` connections. Connections are opened
//! identity-neutral (`application_name=idgate`, no per-person setting) for
//! a [`Variant`]: whether the session is read-only, and the client's
//! startup parameters (encoding, DateStyle, …). Only clients of the same
//! variant share a connection, so a read-only session's connection can
//! never serve a writer, and no client sees another's startup settings.
//! When the pool is full and a client of another variant waits, an idle
//! connection is closed to make room.
//!
//! Waiters are served first come, first served. A connection comes back
//! through [`Pool::checkin`] only when its holder knows it is clean (idle,
//! nothing in flight, reset in session mode); anything else drops the
//! [`Lease`], which closes the connection and frees its slot.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::cancel::CancelTarget;
use super::statements::Completed;
use super::upstream::{self, UpstreamError};
use crate::config::{PoolConfig, RoleConfig, TargetConfig};
use crate::tls::{StreamRead, StreamWrite};

/// What a connection was opened with; only equal variants share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    pub read_only: bool,
    /// Client startup parameters passed upstream, names lower-cased, sorted.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("no upstream connection became free within {0:?} (pool max_size {1})")]
    Exhausted(Duration, usize),
}

/// An open upstream connection, positioned at ReadyForQuery(I).
pub struct ServerConn {
    pub rx: StreamRead,
    pub tx: StreamWrite,
    /// ParameterStatus values the server reported at login.
    pub parameters: Vec<(String, String)>,
    /// The search path a session starts with here, as the server said when
    /// asked at open (`None`: it would not say).
    pub start_search_path: Option<Vec<String>>,
    pub backend_key: Option<(i32, i32)>,
    /// Read buffers for upstream → client and client → upstream, kept
    /// with the connection so an idle client holds none.
    pub buf: BytesMut,
    pub cbuf: BytesMut,
    /// Named (and the unnamed) prepared statements that exist on this
    /// connection: name → Parse body after the name (text and types).
    pub prepared: HashMap<String, Arc<[u8]>>,
    /// Statements the reply being relayed completed, until audited: kept
    /// with the connection, like the buffers, so that its room is neither
    /// allocated per transaction nor held by an idle client.
    pub completed: Vec<Completed>,
    variant: Arc<Variant>,
    idle_since: Instant,
}

impl ServerConn {
    /// Whether the server has neither closed the connection nor sent
    /// anything unasked (a FATAL on termination, say): one non-blocking
    /// read, no round trip.
    fn is_alive(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(self.rx.read(&mut probe)).poll(&mut cx), Poll::Pending)
    }

    pub fn variant(&self) -> &Arc<Variant> {
        &self.variant
    }
}

fn same(a: &Arc<Variant>, b: &Arc<Variant>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

// Unboxed: under contention every checkin hands a connection over, and a
// box would be an allocation per transaction.
#[allow(clippy::large_enum_variant)]
enum Grant {
    Conn(ServerConn),
    /// A slot: the waiter opens a connection itself.
    Open,
}

struct Waiter {
    variant: Arc<Variant>,
    tx: oneshot::Sender<Grant>,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    idle: VecDeque<ServerConn>,
    /// Connections that exist or are being opened, idle or leased.
    open: usize,
    waiters: VecDeque<Waiter>,
}

pub struct Pool {
    target: TargetConfig,
    role: RoleConfig,
    tls: Option<Arc<ClientConfig>>,
    /// `host:port` shared by every cancel target of this pool.
    pub upstream: Arc<str>,
    config: PoolConfig,
    state: Mutex<State>,
    /// One `Arc` per distinct variant, so matching a connection to a client
    /// is a pointer comparison.
    variants: Mutex<Vec<Arc<Variant>>>,
}

/// A connection checked out of its pool. Dropping it closes the connection;
/// [`Pool::checkin`] returns a clean one.
pub struct Lease {
    pool: Arc<Pool>,
    pub conn: Option<ServerConn>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.forget();
        }
    }
}

impl Lease {
    pub fn conn(&mut self) -> &mut ServerConn {
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

impl Pool {
    pub fn new(
        target: TargetConfig,
        role: RoleConfig,
        tls: Option<Arc<ClientConfig>>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            upstream: Arc::from(target.upstream.as_str()),
            config: target.pool.clone(),
            target,
            role,
            tls,
            state: Mutex::new(State::default()),
            variants: Mutex::new(Vec::new()),
        })
    }

    /// The pool's own `Arc` for `variant`. Distinct variants are few
    /// (read-only or not, times the client settings in use); a pool that
    /// sees unusually many forgets them, which only costs the shortcut.
    pub fn intern(&self, variant: Variant) -> Arc<Variant> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Where a cancel of what `conn` runs must go; `None` for a server that
    /// sent no BackendKeyData.
    pub fn cancel_target(&self, conn: &ServerConn) -> Option<CancelTarget> {
        conn.backend_key.map(|(pid, key)| CancelTarget {
            upstream: Arc::clone(&self.upstream),
            pid,
            key,
        })
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.lock();
        PoolStats {
            open: s.open,
            idle: s.idle.len(),
            waiting: s.waiters.len(),
        }
    }

    /// An idle, live connection of `variant` if there is one, at once.
    pub fn try_checkout(self: &Arc<Self>, variant: &Arc<Variant>) -> Option<Lease> {
        let mut conn = {
            let mut s = self.lock();
            let at = s.idle.iter().rposition(|c| same(&c.variant, variant))?;
            s.idle.remove(at).expect("position is in range")
        };
        if !conn.is_alive() {
            drop(conn);
            self.forget();
            return None;
        }
        Some(Lease {
            pool: Arc::clone(self),
            conn: Some(conn),
        })
    }

    /// A connection of `variant`: an idle one if there is, else a new one
    /// while under `max_size`, else the first to come back.
    pub async fn checkout(self: &Arc<Self>, variant: &Arc<Variant>) -> Result<Lease, PoolError> {
        if let Some(lease) = self.try_checkout(variant) {
            return Ok(lease);
        }
        enum Next {
            Open,
            /// Closed outside the lock; boxed, as this path is rare.
            Replace(Box<ServerConn>),
            Wait(oneshot::Receiver<Grant>),
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
            Grant::Conn(mut conn) => conn.is_alive().then_some(conn),
            Grant::Open => None,
        };
        let conn = match reusable {
            Some(conn) => conn,
            None => match self.open(variant).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.forget();
                    return Err(e.into());
                }
            },
        };
        Ok(Lease {
            pool: Arc::clone(self),
            conn: Some(conn),
        })
    }

    /// Return a clean connection (ReadyForQuery(I) seen, nothing in flight,
    /// reset if the mode needs it).
    pub fn checkin(&self, mut lease: Lease) {
        let Some(mut conn) = lease.conn.take() else {
            return;
        };
        conn.idle_since = Instant::now();
        let mut closing = None;
        {
            let mut s = self.lock();
            let mut conn = Some(conn);
            while let Some(waiter) = s.waiters.pop_front() {
                let c = conn.take().expect("kept until handed over");
                let grant = if same(&waiter.variant, &c.variant) {
                    Grant::Conn(c)
                } else {
                    closing = Some(c);
                    Grant::Open
                };
                match waiter.tx.send(grant) {
                    Ok(()) => break,
                    // That waiter gave up; try the next one.
                    Err(Grant::Conn(c)) => conn = Some(c),
                    Err(Grant::Open) => conn = closing.take(),
                }
            }
            if let Some(c) = conn {
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
        let expired: Vec<ServerConn> = {
            let mut s = self.lock();
            let keep = s
                .idle
                .iter()
                .position(|c| now.duration_since(c.idle_since) < self.config.idle_timeout)
                .unwrap_or(s.idle.len());
            let expired: Vec<ServerConn> = s.idle.drain(..keep).collect();
            s.open -= expired.len();
            expired
        };
        drop(expired);
    }

    async fn open(&self, variant: &Arc<Variant>) -> Result<ServerConn, UpstreamError> {
        let mut startup: Vec<(&str, &str)> = variant
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        startup.push(("application_name", "idgate"));
        if variant.read_only {
            // Defence in depth: even a statement the classifier misjudged
            // cannot write, and RESET/DISCARD ALL come back to this.
            startup.push(("options", "-c default_transaction_read_only=on"));
        }
        let u = upstream::connect(&self.target, self.tls.as_ref(), &self.role, &startup).await?;
        let (rx, tx) = crate::tls::split(u.stream);
        let mut conn = ServerConn {
            rx,
            tx,
            parameters: u.parameters,
            start_search_path: None,
            backend_key: u.backend_key,
            buf: BytesMut::new(),
            cbuf: BytesMut::new(),
            prepared: HashMap::new(),
            completed: Vec::new(),
            variant: Arc::clone(variant),
            idle_since: Instant::now(),
        };
        // PostgreSQL before 18 does not report search_path: ask, so that
        // unqualified names resolve against what the server will use
        // (role and database defaults included), not an assumption.
        if let Ok(Ok(rows)) = query_rows(&mut conn, "SHOW search_path").await
            && let [row] = rows.as_slice()
            && let [Some(path)] = row.as_slice()
        {
            conn.start_search_path = Some(crate::sql::parse_identifier_list(path));
        }
        Ok(conn)
    }

    pub fn mode(&self) -> crate::config::PoolMode {
        self.config.mode
    }

    pub fn target_name(&self) -> &str {
        &self.target.name
    }

    /// The upstream user this pool logs in as.
    pub fn user(&self) -> &str {
        &self.role.user
    }
}

/// Every pool of the gateway, by (target, role); built once at start.
#[derive(Default)]
pub struct Pools {
    by_role: HashMap<(String, String), Arc<Pool>>,
}

impl Pools {
    pub fn new(
        targets: &[TargetConfig],
        tls: &HashMap<String, Option<Arc<ClientConfig>>>,
    ) -> Pools {
        let mut by_role = HashMap::new();
        for t in targets {
            let t_tls = tls.get(&t.name).cloned().flatten();
            for r in &t.roles {
                by_role.insert(
                    (t.name.clone(), r.name.clone()),
                    Pool::new(t.clone(), r.clone(), t_tls.clone()),
                );
            }
        }
        Pools { by_role }
    }

    pub fn get(&self, target: &str, role: &str) -> Option<&Arc<Pool>> {
        self.by_role.get(&(target.to_owned(), role.to_owned()))
    }

    /// Every pool with its (target, role), for metrics.
    pub fn named(&self) -> impl Iterator<Item = (&str, &str, &Arc<Pool>)> {
        self.by_role
            .iter()
            .map(|((target, role), pool)| (target.as_str(), role.as_str(), pool))
    }

    /// Close idle connections past their pools' `idle_timeout`.
    pub fn reap(&self) {
        let now = Instant::now();
        for pool in self.by_role.values() {
            pool.reap(now);
        }
    }

    /// How often `reap` is worth running.
    pub fn reap_interval(&self) -> Duration {
        self.by_role
            .values()
            .map(|p| p.config.idle_timeout / 2)
            .min()
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}

/// Read from `r` until a ReadyForQuery, returning its status, or an error
/// message if the server reported one.
/// Run `sql` (one simple Query) on `conn` and collect its rows as text;
/// the server's error message if it failed. The connection is idle after.
pub async fn query_rows(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Result<Vec<Vec<Option<String>>>, String>, std::io::Error> {
    let mut msg = BytesMut::with_capacity(sql.len() + 8);
    super::codec::query(&mut msg, sql);
    conn.tx.write_all(&msg).await?;
    conn.tx.flush().await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        while let Some((tag, len)) = super::codec::frame_at(&conn.buf, 64 * 1024 * 1024)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let frame = conn.buf.split_to(len);
            match tag {
                b'D' => rows.push(
                    super::codec::parse_data_row(&frame[5..])
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
                ),
                b'E' => error = Some(super::codec::parse_error(&frame[5..]).message),
                b'Z' => {
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    });
                }
                _ => {}
            }
        }
        if conn.buf.capacity() - conn.buf.len() < 4096 {
            conn.buf.reserve(64 * 1024);
        }
        if conn.rx.read_buf(&mut conn.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

pub async fn read_until_ready(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<Result<u8, String>, std::io::Error> {
    let mut error = None;
    loop {
        while let Some((tag, len)) = super::codec::frame_at(buf, 64 * 1024)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let frame = buf.split_to(len);
            match tag {
                b'E' => error = Some(super::codec::parse_error(&frame[5..]).message),
                b'Z' => {
                    let status = frame.get(5).copied().unwrap_or(b'E');
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(status),
                    });
                }
                _ => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        if r.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}
