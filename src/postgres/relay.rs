//! The data path after login.
//!
//! Client → upstream: messages that carry or name SQL (Query, Parse, Bind,
//! Execute, Sync, Close, FunctionCall, Terminate) are held until complete
//! and put to the session's `StatementPolicy`; a denied one is replaced by a
//! stand-in that makes the upstream raise the denial. Everything else
//! (CopyData above all) streams through untouched.
//!
//! Upstream → client: bytes flow unchanged while a `FrameScanner` finds
//! message boundaries and feeds the statement tracker, which turns them
//! into audit events.
//!
//! Hand-written on purpose: this is the hot path. Each direction reuses one
//! read buffer and forwards a read with one write unless a message had to
//! be replaced; bodies are copied only for the few messages the tracker
//! reads. The two directions run concurrently so neither can stall the
//! other; the tracker's lock is never held across an await.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{self, CodecError, FrameScanner};
use super::enforce::{self, StatementPolicy, Verdict};
use super::session::Session;
use super::statements::{self, Completed, StatementInfo, StatementTracker};
use crate::audit::{AuditError, AuditEvent, Decision, EventKind};
use crate::tls::Stream;

const READ_BUFFER: usize = 32 * 1024;
/// Server messages we read are CommandComplete, errors and ReadyForQuery.
const SERVER_CAPTURE_LIMIT: usize = 8 * 1024;
/// Largest SQL-carrying message we hold to check (PostgreSQL's own limit
/// is 1 GB); CopyData is never held.
const MAX_HELD_MESSAGE: usize = 256 * 1024 * 1024;

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

/// Relay until the client terminates, either side closes, or `shutdown`.
pub(super) async fn run(
    client: Stream,
    upstream: Stream,
    session: &Session,
    policy: StatementPolicy,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let tracker = Mutex::new(StatementTracker::default());
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(upstream);
    let mut gate = ClientGate {
        policy,
        tracker: &tracker,
        denied_statements: HashSet::new(),
        stand_ins: BytesMut::new(),
        denials: Vec::new(),
    };

    let outcome = tokio::select! {
        r = client_to_upstream(&mut client_rx, &mut upstream_tx, &mut gate, session) => r,
        r = upstream_to_client(&mut upstream_rx, &mut client_tx, &tracker, session) => r,
        () = shutdown.cancelled() => Err(RelayError::Shutdown),
    };
    let mut done = Vec::new();
    lock(&tracker).abandon(&mut done);
    let audited = audit_completed(session, done).await;
    let _ = upstream_tx.shutdown().await;
    let _ = client_tx.shutdown().await;
    outcome.and(audited)
}

fn lock(t: &Mutex<StatementTracker>) -> std::sync::MutexGuard<'_, StatementTracker> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Client messages held whole before forwarding.
fn held(tag: u8) -> bool {
    matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'S' | b'C' | b'X' | b'F')
}

/// A piece of what goes upstream for one read.
enum Segment {
    /// Bytes of the read buffer, forwarded as they came.
    Read(Range<usize>),
    /// A stand-in from `ClientGate::stand_ins`.
    StandIn(Range<usize>),
}

fn push_read(segments: &mut Vec<Segment>, range: Range<usize>) {
    if let Some(Segment::Read(last)) = segments.last_mut()
        && last.end == range.start
    {
        last.end = range.end;
        return;
    }
    segments.push(Segment::Read(range));
}

/// Policy and bookkeeping for client messages.
struct ClientGate<'a> {
    policy: StatementPolicy,
    tracker: &'a Mutex<StatementTracker>,
    /// Prepared statements whose Parse was denied and replaced: their
    /// Binds are replaced too, since the stand-in takes no parameters.
    denied_statements: HashSet<String>,
    /// Replacement messages for the current read.
    stand_ins: BytesMut,
    /// Denials of the current read, audited after it is forwarded.
    denials: Vec<(Arc<StatementInfo>, String)>,
}

impl ClientGate<'_> {
    /// Decide one whole held message: `None` forwards it as is, `Some`
    /// names its stand-in in `stand_ins`.
    fn on_message(&mut self, tag: u8, body: &[u8]) -> Result<Option<Range<usize>>, CodecError> {
        match tag {
            b'Q' => {
                // Lossy: a client in another client_encoding is still checked.
                let raw = body.split(|&b| b == 0).next().unwrap_or_default();
                let sql = String::from_utf8_lossy(raw);
                let (info, verdict) = self.judge(&sql);
                lock(self.tracker).on_query(Arc::clone(&info));
                Ok(self.stand_in_if_denied(info, verdict, codec::query))
            }
            b'P' => {
                let (name, sql) = codec::parse_parse(body)?;
                let (info, verdict) = self.judge(sql);
                lock(self.tracker).on_parse(name, Arc::clone(&info));
                if verdict.allowed {
                    self.denied_statements.remove(name);
                } else {
                    self.denied_statements.insert(name.to_owned());
                }
                Ok(self
                    .stand_in_if_denied(info, verdict, |buf, raise| codec::parse(buf, name, raise)))
            }
            b'B' => {
                let (portal, statement) = codec::parse_bind(body)?;
                lock(self.tracker).on_bind(portal, statement);
                if !self.denied_statements.contains(statement) {
                    return Ok(None);
                }
                let start = self.stand_ins.len();
                codec::bind_without_parameters(&mut self.stand_ins, portal, statement);
                Ok(Some(start..self.stand_ins.len()))
            }
            b'E' => {
                lock(self.tracker).on_execute(codec::parse_name(body)?);
                Ok(None)
            }
            b'S' => {
                lock(self.tracker).on_sync();
                Ok(None)
            }
            b'C' => {
                let (kind, name) = codec::parse_close(body)?;
                if kind == b'S' {
                    self.denied_statements.remove(name);
                }
                lock(self.tracker).on_close(kind, name);
                Ok(None)
            }
            b'F' => {
                // The legacy fast-path call names a function by OID only;
                // nothing can be known about what it does.
                let (info, verdict) = self.policy.check_function_call();
                let info = Arc::new(info);
                lock(self.tracker).on_query(Arc::clone(&info));
                Ok(self.stand_in_if_denied(info, verdict, codec::query))
            }
            _ => Ok(None),
        }
    }

    fn judge(&mut self, sql: &str) -> (Arc<StatementInfo>, Verdict) {
        let verdict = self.policy.check(sql);
        let info = StatementInfo {
            kind: verdict.kind.clone(),
            tables: verdict.tables.clone(),
            policy_ids: verdict.policy_ids.clone(),
            denied: !verdict.allowed,
            ..StatementInfo::new(sql)
        };
        (Arc::new(info), verdict)
    }

    fn stand_in_if_denied(
        &mut self,
        info: Arc<StatementInfo>,
        verdict: Verdict,
        write: impl FnOnce(&mut BytesMut, &str),
    ) -> Option<Range<usize>> {
        if verdict.allowed {
            return None;
        }
        let start = self.stand_ins.len();
        write(
            &mut self.stand_ins,
            &enforce::raise_statement(&verdict.reason),
        );
        self.denials.push((info, verdict.reason));
        Some(start..self.stand_ins.len())
    }
}

async fn client_to_upstream(
    rx: &mut (impl AsyncRead + Unpin),
    tx: &mut (impl AsyncWrite + Unpin),
    gate: &mut ClientGate<'_>,
    session: &Session,
) -> Result<(), RelayError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut segments = Vec::with_capacity(8);
    // Bytes of a streamed (not held) message still to come.
    let mut streaming = 0usize;
    loop {
        if buf.capacity() - buf.len() < READ_BUFFER / 4 {
            buf.reserve(READ_BUFFER);
        }
        if rx.read_buf(&mut buf).await.map_err(RelayError::Client)? == 0 {
            return Ok(());
        }
        segments.clear();
        gate.stand_ins.clear();
        let mut pos = 0;
        let mut terminated = false;
        while pos < buf.len() {
            if streaming > 0 {
                let n = streaming.min(buf.len() - pos);
                push_read(&mut segments, pos..pos + n);
                streaming -= n;
                pos += n;
                continue;
            }
            let Some((tag, len)) = codec::frame_header(&buf[pos..])? else {
                break;
            };
            if !held(tag) {
                let n = len.min(buf.len() - pos);
                push_read(&mut segments, pos..pos + n);
                streaming = len - n;
                pos += n;
                continue;
            }
            if len > MAX_HELD_MESSAGE {
                return Err(CodecError::TooLong(len).into());
            }
            if buf.len() - pos < len {
                // Wait for the rest; make room for it in one go.
                buf.reserve(len - (buf.len() - pos));
                break;
            }
            match gate.on_message(tag, &buf[pos + 5..pos + len])? {
                None => push_read(&mut segments, pos..pos + len),
                Some(stand_in) => segments.push(Segment::StandIn(stand_in)),
            }
            terminated |= tag == b'X';
            pos += len;
        }
        for segment in &segments {
            let bytes = match segment {
                Segment::Read(r) => &buf[r.clone()],
                Segment::StandIn(r) => &gate.stand_ins[r.clone()],
            };
            tx.write_all(bytes).await.map_err(RelayError::Upstream)?;
        }
        // TLS streams may hold written bytes until flushed.
        tx.flush().await.map_err(RelayError::Upstream)?;
        if pos == buf.len() {
            buf.clear();
        } else {
            buf.advance(pos);
        }
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
    tracker: &Mutex<StatementTracker>,
    session: &Session,
) -> Result<(), RelayError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut scanner = FrameScanner::new(SERVER_CAPTURE_LIMIT);
    let mut done = Vec::new();
    loop {
        buf.clear();
        if rx.read_buf(&mut buf).await.map_err(RelayError::Upstream)? == 0 {
            return Ok(());
        }
        {
            let mut t = lock(tracker);
            scanner.scan(&buf, statements::server_wants, |m| {
                t.on_server(m.tag, m.body, &mut done);
            })?;
        }
        tx.write_all(&buf).await.map_err(RelayError::Client)?;
        tx.flush().await.map_err(RelayError::Client)?;
        if !done.is_empty() {
            // Statements the trail cannot record end the session.
            audit_completed(session, done.drain(..)).await?;
        }
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
