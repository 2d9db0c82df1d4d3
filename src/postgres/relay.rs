//! The data path after login.
//!
//! Client → upstream: messages that carry or name SQL (Query, Parse, Bind,
//! Execute, Sync, Close, FunctionCall, Terminate) are held until complete
//! and put to the session's `StatementPolicy` before a byte of them moves
//! on. A denied Query (or FunctionCall) is replaced by a stand-in that makes
//! the upstream raise the denial itself; a denied Parse by an Execute of a
//! portal that cannot exist, whose error the other direction rewrites into
//! the denial. Either way the upstream's transaction state and
//! ReadyForQuery stay what the client expects: the statement failed.
//!
//! Upstream → client: the small messages the statement tracker reads
//! (CommandComplete, errors, ReadyForQuery, …) are held whole; DataRows and
//! everything else stream through untouched.
//!
//! Hand-written on purpose: this is the hot path. Each direction reuses one
//! read buffer and forwards a read with one write unless a message had to
//! be replaced; nothing is copied except replacements. The two directions
//! run concurrently so neither can stall the other; the shared lock is
//! never held across an await.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{self, CodecError, ErrorFields, Piece, Splitter, sqlstate};
use super::enforce::{self, StatementPolicy, Verdict};
use super::session::Session;
use super::statements::{Completed, StatementInfo, StatementTracker};
use crate::audit::{AuditError, AuditEvent, Decision, EventKind};
use crate::tls::Stream;

const READ_BUFFER: usize = 32 * 1024;
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
    #[error("protocol: {0}")]
    Protocol(#[from] CodecError),
    #[error("audit trail unavailable: {0}")]
    Audit(#[from] AuditError),
    #[error("the gateway is shutting down")]
    Shutdown,
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
}

struct ParseDenial {
    /// The ReadyForQuery (by count) that closes its pipeline: if the
    /// stand-in's error has not come by then, an earlier error made the
    /// upstream skip it, as it would have skipped the real Parse.
    ready_number: u64,
    /// The stand-in's portal name, found again in the upstream's error.
    portal: String,
    message: String,
}

/// Relay until the client terminates, either side closes, or `shutdown`.
pub(super) async fn run(
    client: Stream,
    upstream: Stream,
    session: &Session,
    policy: StatementPolicy,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let shared = Mutex::new(Shared {
        tracker: StatementTracker::default(),
        parse_denials: VecDeque::new(),
        ready_count: 0,
        // The login ended with ReadyForQuery(I), which the relay did not see.
        ready_status: b'I',
    });
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(upstream);
    let portal_prefix = format!("idgate-denied-{}-", session.id);
    let mut gate = ClientGate {
        policy,
        shared: &shared,
        portal_prefix: &portal_prefix,
        denial_count: 0,
        sync_points: 0,
        denials: Vec::new(),
    };

    let outcome = tokio::select! {
        r = client_to_upstream(&mut client_rx, &mut upstream_tx, &mut gate, session) => r,
        r = upstream_to_client(&mut upstream_rx, &mut client_tx, &shared, &portal_prefix, session) => r,
        () = shutdown.cancelled() => Err(RelayError::Shutdown),
    };
    let mut done = Vec::new();
    lock(&shared).tracker.abandon(&mut done);
    let audited = audit_completed(session, done).await;
    let _ = upstream_tx.shutdown().await;
    let _ = client_tx.shutdown().await;
    outcome.and(audited)
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// What goes out for one read: ranges of the read buffer, with stand-ins
/// spliced in where a message was replaced. Adjacent ranges coalesce, so an
/// untouched read is one write.
#[derive(Default)]
struct Outgoing {
    segments: Vec<Segment>,
    stand_ins: BytesMut,
}

enum Segment {
    Read(Range<usize>),
    StandIn(Range<usize>),
}

impl Outgoing {
    /// Plan what goes out for the read in `buf`: streamed pieces pass,
    /// each whole held message goes to `on_held`, which may replace it and
    /// returns whether to pass it as is. Returns how much of `buf` was
    /// consumed (the rest is an incomplete held message).
    fn plan(
        &mut self,
        splitter: &mut Splitter,
        buf: &[u8],
        holds: fn(u8) -> bool,
        max_held: usize,
        mut on_held: impl FnMut(&mut Outgoing, u8, &[u8]) -> Result<bool, CodecError>,
    ) -> Result<usize, CodecError> {
        self.segments.clear();
        self.stand_ins.clear();
        let mut pos = 0;
        while let Some(piece) = splitter.next(buf, pos, holds, max_held)? {
            match piece {
                Piece::Stream(r) => {
                    pos = r.end;
                    self.pass(r);
                }
                Piece::Held { tag, frame } => {
                    pos = frame.end;
                    if on_held(self, tag, &buf[frame.clone()])? {
                        self.pass(frame);
                    }
                }
            }
        }
        Ok(pos)
    }

    fn pass(&mut self, range: Range<usize>) {
        if let Some(Segment::Read(last)) = self.segments.last_mut()
            && last.end == range.start
        {
            last.end = range.end;
            return;
        }
        self.segments.push(Segment::Read(range));
    }

    /// Append a replacement written by `write` into `stand_ins`.
    fn replace(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let start = self.stand_ins.len();
        write(&mut self.stand_ins);
        self.segments
            .push(Segment::StandIn(start..self.stand_ins.len()));
    }

    async fn send(&self, buf: &[u8], tx: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
        for segment in &self.segments {
            let bytes = match segment {
                Segment::Read(r) => &buf[r.clone()],
                Segment::StandIn(r) => &self.stand_ins[r.clone()],
            };
            tx.write_all(bytes).await?;
        }
        // TLS streams may hold written bytes until flushed.
        tx.flush().await
    }
}

/// Keep the unconsumed tail of `buf` (an incomplete held message) and make
/// sure there is room to read the rest of it.
fn keep_tail(buf: &mut BytesMut, pos: usize) {
    if pos == buf.len() {
        buf.clear();
    } else {
        buf.advance(pos);
        buf.reserve(Splitter::missing(buf, 0));
    }
    if buf.capacity() - buf.len() < READ_BUFFER / 4 {
        buf.reserve(READ_BUFFER);
    }
}

/// Client messages held whole before forwarding.
fn client_holds(tag: u8) -> bool {
    matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'S' | b'C' | b'X' | b'F')
}

/// Server messages held whole: the ones the tracker reads.
fn server_holds(tag: u8) -> bool {
    matches!(tag, b'C' | b'E' | b'I' | b's' | b'Z')
}

/// Policy and bookkeeping for client messages.
struct ClientGate<'a> {
    policy: StatementPolicy,
    shared: &'a Mutex<Shared>,
    portal_prefix: &'a str,
    denial_count: u64,
    /// Messages sent upstream that end in a ReadyForQuery.
    sync_points: u64,
    /// Denials of the current read, audited after it is forwarded.
    denials: Vec<(Arc<StatementInfo>, String)>,
}

impl ClientGate<'_> {
    /// Decide one whole held message: pass it, or replace it in `out`.
    fn on_message(
        &mut self,
        tag: u8,
        frame: &[u8],
        out: &mut Outgoing,
    ) -> Result<bool, CodecError> {
        let body = &frame[5..];
        let mut passed = true;
        match tag {
            b'Q' => {
                self.sync_points += 1;
                // Lossy: a client in another client_encoding is still checked.
                let raw = body.split(|&b| b == 0).next().unwrap_or_default();
                let settled = self.settled();
                let (info, verdict) = self.judge(&String::from_utf8_lossy(raw), settled);
                lock(self.shared).tracker.on_query(Arc::clone(&info));
                if let Some(reason) = self.deny(info, verdict) {
                    out.replace(|b| codec::query(b, &enforce::raise_statement(&reason)));
                    passed = false;
                }
            }
            b'F' => {
                self.sync_points += 1;
                // The legacy fast-path call names a function by OID only, so
                // nothing is known about what it does: `unknown`.
                let (info, verdict) = self.policy.check_function_call();
                let info = Arc::new(info);
                lock(self.shared).tracker.on_query(Arc::clone(&info));
                if let Some(reason) = self.deny(info, verdict) {
                    out.replace(|b| codec::query(b, &enforce::raise_statement(&reason)));
                    passed = false;
                }
            }
            b'P' => {
                let (name, sql) = codec::parse_parse(body)?;
                // A Parse is not when a statement runs: never settled.
                let (info, verdict) = self.judge(sql, false);
                lock(self.shared).tracker.on_parse(name, Arc::clone(&info));
                if let Some(message) = self.deny(info, verdict) {
                    self.denial_count += 1;
                    let portal = format!("{}{}", self.portal_prefix, self.denial_count);
                    out.replace(|b| codec::execute(b, &portal));
                    lock(self.shared).parse_denials.push_back(ParseDenial {
                        ready_number: self.sync_points + 1,
                        portal,
                        message,
                    });
                    passed = false;
                }
            }
            b'B' => {
                let (portal, statement) = codec::parse_bind(body)?;
                lock(self.shared).tracker.on_bind(portal, statement);
            }
            b'E' => lock(self.shared)
                .tracker
                .on_execute(codec::parse_name(body)?),
            b'S' => {
                self.sync_points += 1;
                lock(self.shared).tracker.on_sync();
            }
            b'C' => {
                let (kind, name) = codec::parse_close(body)?;
                lock(self.shared).tracker.on_close(kind, name);
            }
            _ => {}
        }
        Ok(passed)
    }

    /// Idle upstream with every message so far answered. Counted before
    /// this Query's own sync point was added.
    fn settled(&self) -> bool {
        let s = lock(self.shared);
        s.ready_status == b'I' && s.ready_count + 1 == self.sync_points
    }

    fn judge(&mut self, sql: &str, settled: bool) -> (Arc<StatementInfo>, Verdict) {
        let verdict = self.policy.check(sql, settled);
        let info = StatementInfo {
            kind: verdict.kind.clone(),
            tables: verdict.tables.clone(),
            policy_ids: verdict.policy_ids.clone(),
            denied: !verdict.allowed,
            ..StatementInfo::new(sql)
        };
        (Arc::new(info), verdict)
    }

    /// For a denial, queue its audit event and return the client message.
    fn deny(&mut self, info: Arc<StatementInfo>, verdict: Verdict) -> Option<String> {
        if verdict.allowed {
            return None;
        }
        self.denials.push((info, verdict.reason.clone()));
        Some(verdict.reason)
    }
}

async fn client_to_upstream(
    rx: &mut (impl AsyncRead + Unpin),
    tx: &mut (impl AsyncWrite + Unpin),
    gate: &mut ClientGate<'_>,
    session: &Session,
) -> Result<(), RelayError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut splitter = Splitter::default();
    let mut out = Outgoing::default();
    loop {
        if rx.read_buf(&mut buf).await.map_err(RelayError::Client)? == 0 {
            return Ok(());
        }
        let mut terminated = false;
        let pos = out.plan(
            &mut splitter,
            &buf,
            client_holds,
            MAX_HELD_CLIENT,
            |out, tag, frame| {
                terminated |= tag == b'X';
                gate.on_message(tag, frame, out)
            },
        )?;
        out.send(&buf, tx).await.map_err(RelayError::Upstream)?;
        keep_tail(&mut buf, pos);
        for (info, reason) in gate.denials.drain(..) {
            audit_denied(session, &info, reason).await?;
        }
        if terminated {
            return Ok(());
        }
    }
}

async fn upstream_to_client(
    rx: &mut (impl AsyncRead + Unpin),
    tx: &mut (impl AsyncWrite + Unpin),
    shared: &Mutex<Shared>,
    portal_prefix: &str,
    session: &Session,
) -> Result<(), RelayError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut splitter = Splitter::default();
    let mut out = Outgoing::default();
    let mut done = Vec::new();
    loop {
        if rx.read_buf(&mut buf).await.map_err(RelayError::Upstream)? == 0 {
            return Ok(());
        }
        let pos = {
            let mut s = lock(shared);
            out.plan(
                &mut splitter,
                &buf,
                server_holds,
                MAX_HELD_SERVER,
                |out, tag, frame| {
                    let body = &frame[5..];
                    if tag == b'E'
                        && !s.parse_denials.is_empty()
                        && let Some(message) = s.take_denial(body, portal_prefix)
                    {
                        // The stand-in's "portal does not exist" becomes the
                        // denial; the tracker sees the denial too.
                        out.replace(|b| {
                            codec::error_response(
                                b,
                                &ErrorFields {
                                    severity: "ERROR",
                                    ..ErrorFields::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, &message)
                                },
                            );
                        });
                        s.tracker.on_server(tag, body, &mut done);
                        return Ok(false);
                    }
                    if tag == b'Z' {
                        s.ready_count += 1;
                        s.ready_status = body.first().copied().unwrap_or(b'E');
                        let ready = s.ready_count;
                        s.parse_denials.retain(|d| d.ready_number > ready);
                    }
                    s.tracker.on_server(tag, body, &mut done);
                    Ok(true)
                },
            )?
        };
        out.send(&buf, tx).await.map_err(RelayError::Client)?;
        keep_tail(&mut buf, pos);
        if !done.is_empty() {
            // Statements the trail cannot record end the session.
            audit_completed(session, done.drain(..)).await?;
        }
    }
}

impl Shared {
    /// If `error` is a Parse stand-in's, its denial message.
    fn take_denial(&mut self, error: &[u8], portal_prefix: &str) -> Option<String> {
        let message = codec::parse_error(error).message;
        if !message.contains(portal_prefix) {
            return None;
        }
        let at = self
            .parse_denials
            .iter()
            .position(|d| message.contains(&format!("\"{}\"", d.portal)))?;
        self.parse_denials.remove(at).map(|d| d.message)
    }
}

fn statement_event(session: &Session, kind: EventKind, info: &StatementInfo) -> AuditEvent {
    let mut e = session.event(kind);
    e.statement = Some(crate::audit::redact_statement(&info.text).into_owned());
    if !info.kind.is_empty() {
        e.statement_kind = Some(info.kind.clone());
    }
    e.tables.clone_from(&info.tables);
    e.policy_ids.clone_from(&info.policy_ids);
    e
}

async fn audit_denied(
    session: &Session,
    info: &StatementInfo,
    reason: String,
) -> Result<(), RelayError> {
    let mut e = statement_event(session, EventKind::Denied, info);
    e.decision = Some(Decision::Deny);
    e.reason = Some(reason);
    session.audit_log().record(e).await?;
    Ok(())
}

async fn audit_completed(
    session: &Session,
    done: impl IntoIterator<Item = Completed>,
) -> Result<(), RelayError> {
    for c in done {
        let mut e = statement_event(session, EventKind::Statement, &c.info);
        e.duration_ms = Some(c.duration.as_secs_f64() * 1000.0);
        e.rows = c.rows;
        e.decision = Some(Decision::Allow);
        e.error = c.error;
        session.audit_log().record(e).await?;
    }
    Ok(())
}
