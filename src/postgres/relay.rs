//! The data path after login: bytes flow both ways unchanged while a
//! `FrameScanner` per direction finds message boundaries and feeds the
//! statement tracker, which turns them into audit events.
//!
//! Hand-written on purpose: this is the hot path. Each direction reuses one
//! read buffer, forwards whole reads with one write, and copies a message
//! body only when the tracker must see it (never DataRow or CopyData). The
//! two directions run concurrently so neither can stall the other; the
//! tracker's lock is never held across an await.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::codec::{CodecError, FrameScanner};
use super::session::Session;
use super::statements::{self, Completed, StatementTracker};
use crate::audit::{AuditError, Decision, EventKind};
use crate::tls::Stream;

const READ_BUFFER: usize = 32 * 1024;
/// Statement text beyond this is cut in the audit record (the statement
/// itself is forwarded whole).
const CLIENT_CAPTURE_LIMIT: usize = 1024 * 1024;
/// Server messages we read are CommandComplete, errors and ReadyForQuery.
const SERVER_CAPTURE_LIMIT: usize = 8 * 1024;

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
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let tracker = Mutex::new(StatementTracker::default());
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(upstream);

    let outcome = tokio::select! {
        r = client_to_upstream(&mut client_rx, &mut upstream_tx, &tracker) => r,
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

async fn client_to_upstream(
    rx: &mut (impl AsyncRead + Unpin),
    tx: &mut (impl AsyncWrite + Unpin),
    tracker: &Mutex<StatementTracker>,
) -> Result<(), RelayError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut scanner = FrameScanner::new(CLIENT_CAPTURE_LIMIT);
    loop {
        buf.clear();
        if rx.read_buf(&mut buf).await.map_err(RelayError::Client)? == 0 {
            return Ok(());
        }
        let mut terminated = false;
        {
            let mut t = lock(tracker);
            scanner.scan(&buf, statements::client_wants, |m| {
                if m.tag == b'X' {
                    terminated = true;
                } else {
                    t.on_client(m.tag, m.body, m.truncated);
                }
            })?;
        }
        tx.write_all(&buf).await.map_err(RelayError::Upstream)?;
        // TLS streams may hold written bytes until flushed.
        tx.flush().await.map_err(RelayError::Upstream)?;
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
                t.on_server(m.tag, m.body, &mut done)
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

async fn audit_completed(
    session: &Session,
    done: impl IntoIterator<Item = Completed>,
) -> Result<(), RelayError> {
    for c in done {
        let mut e = session.event(EventKind::Statement);
        e.statement = Some(crate::audit::redact_statement(&c.text).into_owned());
        e.duration_ms = Some(c.duration.as_secs_f64() * 1000.0);
        e.rows = c.rows;
        e.decision = Some(Decision::Allow);
        e.error = c.error;
        session.audit_log().record(e).await?;
    }
    Ok(())
}
