//! The data path after login.
//!
//! Client → upstream: messages that carry or name SQL (Query, Parse, Bind,
//! Execute, Describe, Sync, Close, FunctionCall, Terminate) are held until
//! complete and put to the session's `StatementPolicy` before a byte of
//! them moves on. A denied Query (or FunctionCall) is replaced by a
//! stand-in that makes the upstream raise the denial itself; a denied Parse
//! by an Execute of a portal that cannot exist, whose error the other
//! direction rewrites into the denial. Either way the upstream's
//! transaction state and ReadyForQuery stay what the client expects: the
//! statement failed.
//!
//! Upstream → client: the small messages the statement tracker reads
//! (CommandComplete, errors, ReadyForQuery, …) are held whole; DataRows and
//! everything else stream through untouched.
//!
//! Server connections come from the (target, role) pool. In session mode a
//! client keeps one for its whole session, reset with `DISCARD ALL` before
//! it goes back. In transaction mode a client holds one only from its first
//! message to the ReadyForQuery(I) that leaves nothing in flight; between
//! transactions it holds no server connection and almost no buffer (read
//! buffers live with the server connections). Prepared statements follow
//! the client: the relay knows every connection's statements and, before a
//! Bind or Describe of one the connection lacks, slips in the client's own
//! Parse (closing a same-named stranger first) and swallows the answers.
//!
//! Hand-written on purpose: this is the hot path. Each direction reuses one
//! read buffer and forwards a read with one write unless a message had to
//! be replaced or inserted; nothing is copied except those. The two
//! directions run concurrently so neither can stall the other; the shared
//! lock is never held across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod outgoing;

use outgoing::{Outgoing, keep_tail};

use super::cancel::CancelKey;
use super::codec::{
    self, CodecError, ErrorFields, Splitter, backend, frontend, object, sqlstate, status,
};
use super::enforce::{self, StatementPolicy};
use super::pool::{Lease, Pool, PoolError, ServerConn};
use super::statements::StatementTracker;
use crate::audit::AuditError;
use crate::config::PoolMode;
use crate::core::judge::Verdict;
use crate::core::scope::Scope;
use crate::core::statement::{Completed, StatementAudit, StatementInfo};
use crate::sessions::LiveSession;
use crate::tls::{Stream, StreamRead, StreamWrite};

const READ_BUFFER: usize = 32 * 1024;
/// What an idle client keeps for reading its next message.
const IDLE_READ: usize = 256;
/// An idle client checks out a server connection once it has a whole
/// message, or this much of a large one.
const ASSIGN_AT: usize = 8 * 1024;
/// Largest SQL-carrying client message we hold to check (PostgreSQL's own
/// limit is 1 GB); CopyData is never held.
const MAX_HELD_CLIENT: usize = 256 * 1024 * 1024;
/// Largest server message we hold (errors and command tags are small).
const MAX_HELD_SERVER: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("client connection: {0}")]
    Client(std::io::Error),
    #[error("upstream connection: {0}")]
    Upstream(std::io::Error),
    #[error("upstream closed the connection")]
    UpstreamClosed,
    #[error("protocol: {0}")]
    Protocol(#[from] CodecError),
    #[error("audit trail unavailable: {0}")]
    Audit(#[from] AuditError),
    #[error("upstream pool: {0}")]
    Pool(#[from] PoolError),
    #[error("ended: {0}")]
    Ended(&'static str),
}

/// State both directions touch, behind one short-held lock.
struct Shared {
    tracker: StatementTracker,
    /// Denied Parses whose stand-in error is still to come back.
    parse_denials: VecDeque<ParseDenial>,
    /// ReadyForQuery messages seen from the upstream.
    ready_count: u64,
    /// The transaction status of the last one (`I`, `T` or `E`).
    ready_status: u8,
    /// Messages sent upstream that end in a ReadyForQuery.
    sync_points: u64,
    /// `sync_points` when the current server connection was assigned.
    phase_base: u64,
    /// An extended-protocol message went up since the last Sync.
    unsynced: bool,
    /// Each direction is between a read and the end of its forwarding.
    c2s_busy: bool,
    s2c_busy: bool,
    /// Part of a streamed client message has gone up.
    client_mid: bool,
    /// Nothing of the server's is read but unforwarded.
    server_clean: bool,
    transaction_mode: bool,
    /// The assigned connection's prepared statements (moved in and out of
    /// the `ServerConn` per assignment).
    server_prepared: HashMap<String, Arc<[u8]>>,
    /// Parses and Closes sent and not yet answered, in order, to swallow
    /// the answers to our own and to keep `server_prepared` true.
    parses: VecDeque<Sent>,
    closes: VecDeque<Sent>,
    /// A lone `SET search_path` sent while settled, until its answer.
    path_pending: Option<PendingPath>,
    /// A path the server confirmed, for the statement policy to believe.
    path_confirmed: Option<Vec<String>>,
    /// Why the server can no longer be followed (a ParameterStatus the
    /// gateway cannot read statements under): every later statement is
    /// refused.
    taint: Option<String>,
    /// The session's upstream defaults to read-only transactions.
    read_only: bool,
}

struct PendingPath {
    /// The ReadyForQuery (by count) that answers it.
    ready_number: u64,
    path: Vec<String>,
    /// Its CommandComplete came.
    completed: bool,
}

struct Sent {
    /// The ReadyForQuery (by count) closing its pipeline.
    ready_number: u64,
    /// Slipped in by the relay: its answer is not the client's.
    injected: bool,
    /// The statement it names (`None` for a portal Close).
    statement: Option<Box<str>>,
}

/// Stands for "exists upstream with a text we do not know": never equal to
/// a real definition, which has at least a NUL.
fn unknown_definition() -> Arc<[u8]> {
    Arc::from(&[][..])
}

impl Shared {
    /// Idle, every message answered, nothing half-sent either way.
    fn clean(&self) -> bool {
        self.ready_status == status::IDLE
            && self.ready_count == self.sync_points
            && !self.unsynced
            && !self.client_mid
            && self.server_clean
            && self.parse_denials.is_empty()
            && self.parses.is_empty()
            && self.closes.is_empty()
    }

    /// Transaction mode: the connection can go back to the pool now.
    fn releasable(&self) -> bool {
        self.transaction_mode
            && !self.c2s_busy
            && !self.s2c_busy
            && self.sync_points > self.phase_base
            && self.clean()
    }

    fn next_ready(&self) -> u64 {
        self.sync_points + 1
    }

    /// Slip in a Close of statement `name`; its answer is swallowed.
    fn inject_close(&mut self, name: &str, out: &mut Outgoing) {
        out.replace(|b| codec::close(b, object::STATEMENT, name));
        let ready_number = self.next_ready();
        self.closes.push_back(Sent {
            ready_number,
            injected: true,
            statement: None,
        });
        self.server_prepared.remove(name);
    }

    /// Slip in a Parse of `name` as `definition`; its answer is swallowed.
    fn inject_parse(&mut self, name: &str, definition: &Arc<[u8]>, out: &mut Outgoing) {
        out.replace(|b| codec::parse_message(b, name, definition));
        let ready_number = self.next_ready();
        self.parses.push_back(Sent {
            ready_number,
            injected: true,
            statement: Some(name.into()),
        });
        set(&mut self.server_prepared, name, Arc::clone(definition));
    }

    /// An error skips the rest of its pipeline: its unanswered Parses made
    /// nothing, its unanswered Closes closed nothing.
    fn on_error(&mut self) {
        let current = self.ready_count + 1;
        while self
            .parses
            .front()
            .is_some_and(|p| p.ready_number == current)
        {
            let p = self.parses.pop_front().expect("front exists");
            match p.statement {
                // A failed or skipped unnamed Parse may leave an older
                // unnamed statement in place.
                Some(name) if name.is_empty() => {
                    self.server_prepared
                        .insert(String::new(), unknown_definition());
                }
                Some(name) => {
                    self.server_prepared.remove(&*name);
                }
                None => {}
            }
        }
        while self
            .closes
            .front()
            .is_some_and(|c| c.ready_number == current)
        {
            let c = self.closes.pop_front().expect("front exists");
            if let Some(name) = c.statement {
                self.server_prepared
                    .entry(name.into())
                    .or_insert_with(unknown_definition);
            }
        }
    }
}

struct ParseDenial {
    /// The ReadyForQuery (by count) that closes its pipeline: if the
    /// stand-in's error has not come by then, an earlier error made the
    /// upstream skip it, as it would have skipped the real Parse.
    ready_number: u64,
    /// The stand-in's portal name, found again in the upstream's error.
    portal: String,
    code: &'static str,
    message: String,
}

/// Where this session's server connections come from.
pub(super) struct Upstreams<'a> {
    /// The session, for the refusal when no connection can be had.
    pub scope: &'a Scope,
    pub pool: &'a Arc<Pool>,
    /// Held for the session (session mode), or taken per transaction.
    pub lease: Option<Lease>,
    pub variant: &'a Arc<super::pool::Variant>,
    pub cancel: Option<&'a CancelKey>,
}

/// What the client side keeps across server assignments.
struct ClientSide {
    rx: StreamRead,
    tx: StreamWrite,
    /// Bytes read while no server connection was assigned.
    buf: BytesMut,
    splitter: Splitter,
    out: Outgoing,
    server_splitter: Splitter,
    server_out: Outgoing,
}

enum PhaseEnd {
    /// Transaction mode: the connection is clean and may go back.
    Released,
    ClientGone,
}

/// Relay until the client terminates, either side closes, or `live` is
/// ended (revoked, killed, expired, shutdown): then a running statement is
/// cancelled upstream, its server connection closed, and the client told
/// why with 57P01.
pub(super) async fn run(
    client: Stream,
    mut upstreams: Upstreams<'_>,
    session: &Scope,
    policy: StatementPolicy,
    live: &LiveSession,
) -> Result<(), RelayError> {
    let transaction_mode = upstreams.pool.mode() == PoolMode::Transaction;
    let shared = Mutex::new(Shared {
        tracker: StatementTracker::default(),
        parse_denials: VecDeque::new(),
        ready_count: 0,
        // The login ended with ReadyForQuery(I), which the relay did not see.
        ready_status: status::IDLE,
        sync_points: 0,
        phase_base: 0,
        unsynced: false,
        c2s_busy: false,
        s2c_busy: false,
        client_mid: false,
        server_clean: true,
        transaction_mode,
        server_prepared: HashMap::new(),
        parses: VecDeque::new(),
        closes: VecDeque::new(),
        path_pending: None,
        path_confirmed: None,
        taint: None,
        read_only: upstreams.variant.read_only,
    });
    let (rx, tx) = crate::tls::split(client);
    let mut client = ClientSide {
        rx,
        tx,
        buf: BytesMut::new(),
        splitter: Splitter::default(),
        out: Outgoing::default(),
        server_splitter: Splitter::default(),
        server_out: Outgoing::default(),
    };
    let portal_prefix = format!("idgate-denied-{}-", session.id);
    let audit = StatementAudit::new(session, live);
    let mut gate = ClientGate {
        policy,
        shared: &shared,
        portal_prefix: &portal_prefix,
        denial_count: 0,
        denials: Vec::new(),
        statements: HashMap::new(),
    };

    // Biased: no random draw per wake-up, and an ended session is seen
    // before more of its traffic is relayed.
    let outcome = tokio::select! {
        biased;
        () = live.ended().cancelled() => Err(RelayError::Ended(
            live.end_reason().map_or("shutdown", |r| r.label()),
        )),
        r = serve(&mut client, &mut upstreams, &mut gate, &shared, &audit) => r,
    };
    let mut done = Vec::new();
    if let Some(lease) = upstreams.lease.as_mut() {
        // Completed statements whose audit the end cut short.
        done.append(&mut lease.conn().completed);
    }
    crate::lock(&shared).tracker.abandon(&mut done);
    let audited = audit.completed(&mut done).await;
    if let Some(mut lease) = upstreams.lease.take() {
        let clean = outcome.is_ok() && crate::lock(&shared).clean();
        if clean {
            lease.conn().prepared = std::mem::take(&mut crate::lock(&shared).server_prepared);
            Box::pin(give_back(upstreams.pool, lease, transaction_mode)).await;
        } else if matches!(outcome, Err(RelayError::Ended(_))) {
            // Closing alone would leave a running query running.
            Box::pin(cancel_running(upstreams.pool, lease.conn())).await;
        }
    }
    if let Some(reason) = live.end_reason() {
        let mut buf = BytesMut::new();
        codec::error_response(
            &mut buf,
            &ErrorFields::fatal(sqlstate::ADMIN_SHUTDOWN, &reason.message()),
        );
        let _ = client.tx.write_all(&buf).await;
    }
    let _ = client.tx.shutdown().await;
    outcome.and(audited.map_err(RelayError::from))
}

/// Cancel whatever the connection runs, before it is closed.
async fn cancel_running(pool: &Pool, conn: &ServerConn) {
    let Some(target) = pool.cancel_target(conn) else {
        return;
    };
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        super::cancel::forward(&target),
    );
    if !matches!(sent.await, Ok(Ok(()))) {
        tracing::warn!(upstream = %target.upstream, "could not cancel the statement of an ended session");
    }
}

/// Return a clean connection; session mode resets it first. A connection
/// that will not reset is closed instead.
async fn give_back(pool: &Pool, mut lease: Lease, transaction_mode: bool) {
    if !transaction_mode {
        let conn = lease.conn();
        let mut msg = BytesMut::with_capacity(32);
        codec::query(&mut msg, "DISCARD ALL");
        let reset = async {
            conn.tx.write_all(&msg).await?;
            conn.tx.flush().await?;
            super::pool::read_until_ready(&mut conn.rx, &mut conn.buf).await
        };
        match reset.await {
            Ok(Ok(status::IDLE)) if conn.buf.is_empty() => conn.prepared.clear(),
            _ => return,
        }
    }
    pool.checkin(lease);
}

async fn serve(
    client: &mut ClientSide,
    upstreams: &mut Upstreams<'_>,
    gate: &mut ClientGate<'_>,
    shared: &Mutex<Shared>,
    audit: &StatementAudit<'_>,
) -> Result<(), RelayError> {
    loop {
        if upstreams.lease.is_none() {
            // Between transactions: wait for a message before taking a
            // server connection.
            while !wants_server(&client.buf) {
                if client.buf.capacity() - client.buf.len() < IDLE_READ / 2 {
                    client.buf.reserve(IDLE_READ);
                }
                if client
                    .rx
                    .read_buf(&mut client.buf)
                    .await
                    .map_err(RelayError::Client)?
                    == 0
                {
                    return Ok(());
                }
            }
            // The slow path (waiting, opening) is boxed: its future is large
            // and would otherwise sit in every idle session.
            let lease = match upstreams.pool.try_checkout(upstreams.variant) {
                Some(lease) => Ok(lease),
                None => Box::pin(upstreams.pool.checkout(upstreams.variant)).await,
            };
            let lease = match lease {
                Ok(lease) => lease,
                Err(e) => {
                    let refusal = upstreams
                        .scope
                        .upstream_failed(super::session::upstream_failure(&e), &e);
                    let mut buf = BytesMut::new();
                    super::session::refusal_response(&mut buf, &refusal);
                    let _ = client.tx.write_all(&buf).await;
                    return Err(e.into());
                }
            };
            upstreams.lease = Some(lease);
        }
        let lease = upstreams.lease.as_mut().expect("assigned above");
        let conn = lease.conn();
        if let Some(cancel) = upstreams.cancel
            && let Some(target) = upstreams.pool.cancel_target(conn)
        {
            cancel.set(Some(target));
        }
        {
            let mut s = crate::lock(shared);
            s.phase_base = s.sync_points;
            s.server_prepared = std::mem::take(&mut conn.prepared);
        }
        let end = phase(client, conn, gate, shared, audit).await?;
        match end {
            PhaseEnd::ClientGone => return Ok(()),
            PhaseEnd::Released => {
                if let Some(cancel) = upstreams.cancel {
                    cancel.set(None);
                }
                let mut lease = upstreams.lease.take().expect("assigned");
                let conn = lease.conn();
                conn.prepared = std::mem::take(&mut crate::lock(shared).server_prepared);
                // A message the client has begun stays with the client.
                client.buf.extend_from_slice(&conn.cbuf);
                conn.cbuf.clear();
                if client.buf.capacity() > 4 * IDLE_READ && client.buf.is_empty() {
                    client.buf = BytesMut::new();
                }
                upstreams.pool.checkin(lease);
            }
        }
    }
}

/// Whether an idle client's bytes are worth a server connection: a whole
/// message, or a good part of a large one.
fn wants_server(buf: &[u8]) -> bool {
    match codec::frame_header(buf) {
        Ok(Some((_, len))) => buf.len() >= len || buf.len() >= ASSIGN_AT,
        Ok(None) => false,
        // Malformed: let the relay refuse it.
        Err(_) => true,
    }
}

/// Relay over one assigned server connection until it can go back
/// (transaction mode) or the client leaves.
async fn phase(
    client: &mut ClientSide,
    conn: &mut ServerConn,
    gate: &mut ClientGate<'_>,
    shared: &Mutex<Shared>,
    audit: &StatementAudit<'_>,
) -> Result<PhaseEnd, RelayError> {
    if conn.cbuf.capacity() < READ_BUFFER {
        conn.cbuf.reserve(READ_BUFFER);
    }
    if conn.buf.capacity() < READ_BUFFER {
        conn.buf.reserve(READ_BUFFER);
    }
    conn.cbuf.extend_from_slice(&client.buf);
    client.buf.clear();
    let ServerConn {
        rx: server_rx,
        tx: server_tx,
        buf: server_buf,
        cbuf,
        completed,
        ..
    } = conn;
    let ClientSide {
        rx: client_rx,
        tx: client_tx,
        splitter,
        out,
        server_splitter,
        server_out,
        ..
    } = client;
    let portal_prefix = gate.portal_prefix;
    tokio::select! {
        biased;
        r = client_to_upstream(client_rx, server_tx, cbuf, splitter, out, gate, audit) => r,
        r = upstream_to_client(server_rx, client_tx, server_buf, server_splitter, server_out, completed, shared, portal_prefix, audit) => r,
    }
}

/// Client messages held whole before forwarding.
fn client_holds(tag: u8) -> bool {
    matches!(
        tag,
        frontend::QUERY
            | frontend::PARSE
            | frontend::BIND
            | frontend::EXECUTE
            | frontend::DESCRIBE
            | frontend::SYNC
            | frontend::CLOSE
            | frontend::TERMINATE
            | frontend::FUNCTION_CALL
    )
}

/// Server messages held whole: the ones the tracker reads, Parse and
/// Close completions (some answer the relay's own messages), and
/// ParameterStatus (what the server says its settings now are).
fn server_holds(tag: u8) -> bool {
    matches!(
        tag,
        backend::COMMAND_COMPLETE
            | backend::ERROR_RESPONSE
            | backend::EMPTY_QUERY_RESPONSE
            | backend::PORTAL_SUSPENDED
            | backend::READY_FOR_QUERY
            | backend::PARSE_COMPLETE
            | backend::CLOSE_COMPLETE
            | backend::PARAMETER_STATUS
    )
}

/// Policy and bookkeeping for client messages.
struct ClientGate<'a> {
    policy: StatementPolicy,
    shared: &'a Mutex<Shared>,
    portal_prefix: &'a str,
    denial_count: u64,
    /// Denials of the current read, audited after it is forwarded.
    denials: Vec<(Arc<StatementInfo>, String)>,
    /// Transaction mode: the client's prepared statements (name → Parse
    /// body after the name), to re-prepare wherever it lands.
    statements: HashMap<String, Arc<[u8]>>,
}

impl<'a> ClientGate<'a> {
    /// Decide one whole held message: pass it, or replace it in `out`.
    fn on_message(
        &mut self,
        tag: u8,
        frame: &[u8],
        out: &mut Outgoing,
    ) -> Result<bool, CodecError> {
        let body = codec::body(frame);
        let mut passed = true;
        match tag {
            frontend::QUERY => {
                // Lossy: a client in another (ASCII-safe) client_encoding is
                // still checked; no byte below 0x80 is lost or merged.
                // The strict check first: its ASCII path is the faster one.
                let raw = body.split(|&b| b == 0).next().unwrap_or_default();
                let settled = self.settled();
                let text = std::str::from_utf8(raw)
                    .map_or_else(|_| String::from_utf8_lossy(raw), std::borrow::Cow::Borrowed);
                let verdict = self.policy.check(&text, settled);
                if let Some(path) = self.policy.take_path_to_confirm() {
                    let mut s = crate::lock(self.shared);
                    let ready_number = s.next_ready();
                    s.path_pending = Some(PendingPath {
                        ready_number,
                        path,
                        completed: false,
                    });
                }
                let info = self.info(&text, &verdict);
                passed = self.simple_query(info, verdict, out);
            }
            frontend::FUNCTION_CALL => {
                // The legacy fast-path call names a function by OID only, so
                // nothing is known about what it does: `unknown`.
                let (info, verdict) = self.policy.check_function_call();
                passed = self.simple_query(Arc::new(info), verdict, out);
            }
            frontend::PARSE => {
                let (name, sql) = codec::parse_parse(body)?;
                let types = codec::parse_parameter_types(body)?;
                let verdict = self.policy.check_parse(name, sql, types);
                let info = self.info(sql, &verdict);
                let mut s = crate::lock(self.shared);
                s.unsynced = true;
                s.tracker.on_parse(name, Arc::clone(&info));
                drop(s);
                if let Some((code, message)) = self.deny(info, verdict) {
                    let s = self.fail_in_place(code, message, out);
                    if s.transaction_mode {
                        // The client's statement of that name is gone.
                        self.statements.remove(name);
                    }
                    passed = false;
                } else {
                    let definition = &body[name.len() + 1..];
                    self.prepare_passed(name, definition, out);
                }
            }
            frontend::BIND => {
                let (portal, statement) = codec::parse_bind(body)?;
                if let Some(verdict) = self.policy.check_bind(statement)
                    && !verdict.allowed
                {
                    // Re-judged: the path or the catalogue changed since
                    // its Parse, and the server would plan it anew.
                    let info = self.info("<Bind of a prepared statement>", &verdict);
                    let (code, message) = self.deny(info, verdict).expect("denied");
                    let mut s = self.fail_in_place(code, message, out);
                    s.unsynced = true;
                    s.tracker.on_bind(portal, statement);
                    return Ok(false);
                }
                self.make_present(statement, out);
                let mut s = crate::lock(self.shared);
                s.unsynced = true;
                s.tracker.on_bind(portal, statement);
            }
            frontend::DESCRIBE => {
                let (kind, name) = codec::parse_close(body)?;
                if kind == object::STATEMENT {
                    self.make_present(name, out);
                }
                crate::lock(self.shared).unsynced = true;
            }
            frontend::EXECUTE => {
                let mut s = crate::lock(self.shared);
                s.unsynced = true;
                s.tracker.on_execute(codec::parse_name(body)?);
            }
            frontend::SYNC => {
                let mut s = crate::lock(self.shared);
                s.sync_points += 1;
                s.unsynced = false;
                s.tracker.on_sync();
            }
            frontend::CLOSE => {
                let (kind, name) = codec::parse_close(body)?;
                let mut s = crate::lock(self.shared);
                s.unsynced = true;
                s.tracker.on_close(kind, name);
                if s.transaction_mode {
                    let statement = (kind == object::STATEMENT).then(|| {
                        self.statements.remove(name);
                        s.server_prepared.remove(name);
                        Box::from(name)
                    });
                    let ready_number = s.next_ready();
                    s.closes.push_back(Sent {
                        ready_number,
                        injected: false,
                        statement,
                    });
                }
            }
            _ => {}
        }
        Ok(passed)
    }

    /// A Query or FunctionCall, judged: a sync point the tracker follows;
    /// a denied one is replaced by its stand-in. Whether it passes as is.
    fn simple_query(
        &mut self,
        info: Arc<StatementInfo>,
        verdict: Verdict,
        out: &mut Outgoing,
    ) -> bool {
        let mut s = crate::lock(self.shared);
        s.sync_points += 1;
        s.tracker.on_query(Arc::clone(&info));
        drop(s);
        match self.deny(info, verdict) {
            Some((code, reason)) => {
                out.replace(|b| codec::query(b, &enforce::raise_statement(code, &reason)));
                false
            }
            None => true,
        }
    }

    /// Transaction mode, a client Parse going up: record it on both sides;
    /// close a stranger of the same name on this connection first.
    fn prepare_passed(&mut self, name: &str, definition: &[u8], out: &mut Outgoing) {
        let mut s = crate::lock(self.shared);
        if !s.transaction_mode {
            return;
        }
        let definition = match self.statements.get(name) {
            Some(d) if **d == *definition => Arc::clone(d),
            _ => Arc::from(definition),
        };
        if !name.is_empty() && s.server_prepared.contains_key(name) {
            s.inject_close(name, out);
        }
        let ready_number = s.next_ready();
        s.parses.push_back(Sent {
            ready_number,
            injected: false,
            statement: Some(name.into()),
        });
        set(&mut s.server_prepared, name, Arc::clone(&definition));
        set(&mut self.statements, name, definition);
    }

    /// Transaction mode, before a Bind or Describe of `name`: make this
    /// connection's statement of that name the client's own, or make sure
    /// there is none if the client has none.
    fn make_present(&mut self, name: &str, out: &mut Outgoing) {
        let mut s = crate::lock(self.shared);
        if !s.transaction_mode {
            return;
        }
        let server = s.server_prepared.get(name);
        let present = server.is_some();
        match self.statements.get(name) {
            Some(mine) => {
                if server.is_some_and(|d| Arc::ptr_eq(d, mine) || **d == **mine) {
                    return;
                }
                if !name.is_empty() && present {
                    s.inject_close(name, out);
                }
                s.inject_parse(name, mine, out);
            }
            None if present => {
                // Someone else's: the client must get "does not exist".
                s.inject_close(name, out);
            }
            None => {}
        }
    }

    /// Idle upstream with every message so far answered. Also hands the
    /// statement policy what the server has confirmed since.
    fn settled(&mut self) -> bool {
        let mut s = crate::lock(self.shared);
        if let Some(path) = s.path_confirmed.take() {
            self.policy.confirm_search_path(path);
        }
        if let Some(why) = s.taint.clone() {
            self.policy.taint(why);
        }
        s.ready_status == status::IDLE && s.ready_count == s.sync_points
    }

    fn info(&mut self, sql: &str, verdict: &Verdict) -> Arc<StatementInfo> {
        StatementInfo::shared(sql, Arc::clone(&verdict.judged), !verdict.allowed)
    }

    /// Replace the message in `out` with an Execute of a portal that cannot
    /// exist: the upstream fails it, skips the rest of the pipeline as it
    /// would have, and the other direction turns its error into `message`.
    fn fail_in_place(
        &mut self,
        code: &'static str,
        message: String,
        out: &mut Outgoing,
    ) -> std::sync::MutexGuard<'a, Shared> {
        self.denial_count += 1;
        let portal = format!("{}{}", self.portal_prefix, self.denial_count);
        out.replace(|b| codec::execute(b, &portal));
        let mut s = crate::lock(self.shared);
        let ready_number = s.next_ready();
        s.parse_denials.push_back(ParseDenial {
            ready_number,
            portal,
            code,
            message,
        });
        s
    }

    /// For a denial, queue its audit event and return its code and the
    /// client message.
    fn deny(
        &mut self,
        info: Arc<StatementInfo>,
        verdict: Verdict,
    ) -> Option<(&'static str, String)> {
        if verdict.allowed {
            return None;
        }
        self.denials.push((info, verdict.reason.clone()));
        Some((enforce::denial_code(verdict.denial), verdict.reason))
    }
}

fn set(map: &mut HashMap<String, Arc<[u8]>>, name: &str, definition: Arc<[u8]>) {
    match map.get_mut(name) {
        Some(d) => *d = definition,
        None => {
            map.insert(name.to_owned(), definition);
        }
    }
}

async fn client_to_upstream(
    rx: &mut (impl AsyncRead + Unpin),
    tx: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    splitter: &mut Splitter,
    out: &mut Outgoing,
    gate: &mut ClientGate<'_>,
    audit: &StatementAudit<'_>,
) -> Result<PhaseEnd, RelayError> {
    // Bytes read before the assignment go first.
    loop {
        crate::lock(gate.shared).c2s_busy = true;
        let mut terminated = false;
        let pos = out.plan(
            splitter,
            buf,
            client_holds,
            MAX_HELD_CLIENT,
            |out, tag, frame| {
                if tag == frontend::TERMINATE {
                    // The server connection outlives the client: not forwarded.
                    terminated = true;
                    return Ok(false);
                }
                if terminated {
                    return Ok(false);
                }
                gate.on_message(tag, frame, out)
            },
        )?;
        audit.live.count_bytes(true, pos);
        out.send(buf, tx).await.map_err(RelayError::Upstream)?;
        keep_tail(buf, pos);
        for (info, reason) in gate.denials.drain(..) {
            audit.denied(&info, &reason).await?;
        }
        if terminated {
            return Ok(PhaseEnd::ClientGone);
        }
        {
            let mut s = crate::lock(gate.shared);
            s.c2s_busy = false;
            s.client_mid = splitter.mid_message();
            if s.releasable() {
                return Ok(PhaseEnd::Released);
            }
        }
        if rx.read_buf(buf).await.map_err(RelayError::Client)? == 0 {
            return Ok(PhaseEnd::ClientGone);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upstream_to_client(
    rx: &mut (impl AsyncRead + Unpin),
    tx: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    splitter: &mut Splitter,
    out: &mut Outgoing,
    done: &mut Vec<Completed>,
    shared: &Mutex<Shared>,
    portal_prefix: &str,
    audit: &StatementAudit<'_>,
) -> Result<PhaseEnd, RelayError> {
    loop {
        if rx.read_buf(buf).await.map_err(RelayError::Upstream)? == 0 {
            return Err(RelayError::UpstreamClosed);
        }
        let pos = {
            let mut s = crate::lock(shared);
            s.s2c_busy = true;
            out.plan(
                splitter,
                buf,
                server_holds,
                MAX_HELD_SERVER,
                |out, tag, frame| {
                    s.on_server_message(tag, codec::body(frame), out, portal_prefix, done)
                },
            )?
        };
        audit.live.count_bytes(false, pos);
        out.send(buf, tx).await.map_err(RelayError::Client)?;
        keep_tail(buf, pos);
        if !done.is_empty() {
            // Statements the trail cannot record end the session.
            audit.completed(done).await?;
        }
        let mut s = crate::lock(shared);
        s.s2c_busy = false;
        s.server_clean = buf.is_empty() && !splitter.mid_message();
        if s.releasable() {
            return Ok(PhaseEnd::Released);
        }
    }
}

impl Shared {
    /// One held server message: pass it (true), replace it, or swallow it.
    fn on_server_message(
        &mut self,
        tag: u8,
        body: &[u8],
        out: &mut Outgoing,
        portal_prefix: &str,
        done: &mut Vec<Completed>,
    ) -> Result<bool, CodecError> {
        match tag {
            backend::PARSE_COMPLETE | backend::CLOSE_COMPLETE if self.transaction_mode => {
                let sent = if tag == backend::PARSE_COMPLETE {
                    self.parses.pop_front()
                } else {
                    self.closes.pop_front()
                };
                return Ok(!sent.is_some_and(|s| s.injected));
            }
            backend::PARAMETER_STATUS => {
                let (name, value) = codec::parse_parameter_status(body)?;
                if let Some(why) = self.unfollowable(name, value) {
                    tracing::warn!("session can no longer be followed: {why}");
                    self.taint.get_or_insert(why);
                }
            }
            backend::COMMAND_COMPLETE => {
                let current = self.ready_count + 1;
                if let Some(p) = &mut self.path_pending
                    && p.ready_number == current
                    && codec::cstr(body).is_some_and(|(tag, _)| tag == "SET")
                {
                    p.completed = true;
                }
            }
            backend::ERROR_RESPONSE => {
                let current = self.ready_count + 1;
                if self
                    .path_pending
                    .as_ref()
                    .is_some_and(|p| p.ready_number == current)
                {
                    self.path_pending = None;
                }
                if self.transaction_mode {
                    self.on_error();
                }
                if !self.parse_denials.is_empty()
                    && let Some((code, message)) = self.take_denial(body, portal_prefix)
                {
                    // The stand-in's "portal does not exist" becomes the
                    // denial; the tracker sees the denial too.
                    out.replace(|b| {
                        codec::error_response(
                            b,
                            &ErrorFields {
                                severity: "ERROR",
                                ..ErrorFields::fatal(code, &message)
                            },
                        );
                    });
                    self.tracker.on_server(tag, body, done);
                    return Ok(false);
                }
            }
            backend::READY_FOR_QUERY => {
                self.ready_count += 1;
                self.ready_status = body.first().copied().unwrap_or(status::FAILED);
                let ready = self.ready_count;
                if self
                    .path_pending
                    .as_ref()
                    .is_some_and(|p| p.ready_number <= ready)
                {
                    let pending = self.path_pending.take().expect("checked");
                    // Answered `SET` and idle: outside any transaction, so
                    // nothing can roll it back.
                    if pending.ready_number == ready
                        && pending.completed
                        && self.ready_status == status::IDLE
                    {
                        self.path_confirmed = Some(pending.path);
                    }
                }
                self.parse_denials.retain(|d| d.ready_number > ready);
                self.parses.retain(|p| p.ready_number > ready);
                self.closes.retain(|c| c.ready_number > ready);
            }
            _ => {}
        }
        self.tracker.on_server(tag, body, done);
        Ok(true)
    }

    /// Why a ParameterStatus means the gateway can no longer judge this
    /// session's statements as the server will run them, if it does.
    fn unfollowable(&self, name: &str, value: &str) -> Option<String> {
        match name {
            // The gateway named the session; nothing the client may run
            // renames it, so a change is code the gateway did not see.
            "application_name" => Some(format!(
                "the server reports application_name changed to {value:?}, which the gateway sets to name the person"
            )),
            "default_transaction_read_only" if self.read_only && value != "on" => Some(
                "the server reports default_transaction_read_only off in a read-only session"
                    .into(),
            ),
            _ => super::session::unfollowable_setting(name, value),
        }
    }

    /// If `error` is a Parse stand-in's, its code and denial message.
    fn take_denial(&mut self, error: &[u8], portal_prefix: &str) -> Option<(&'static str, String)> {
        let message = codec::parse_error(error).message;
        if !message.contains(portal_prefix) {
            return None;
        }
        let at = self
            .parse_denials
            .iter()
            .position(|d| message.contains(&format!("\"{}\"", d.portal)))?;
        self.parse_denials.remove(at).map(|d| (d.code, d.message))
    }
}
