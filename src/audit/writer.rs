//! The audit file writer: a cheap cloneable [`AuditLog`] handle in front of
//! one writer thread that chains, appends and fsyncs in batches.
//!
//! A thread of its own, not a task: hashing, the write and the fsync then
//! never run on the event loop that relays statements, and the loop never
//! keeps a timer for the commit delay (which made every idle wait arm and
//! cancel a kernel timer) nor hands each batch to the blocking pool.
//!
//! Recorders render straight into one shared pending buffer, which the
//! writer swaps for its empty spare once per batch: no allocation and no
//! channel operation per event, and both buffers stay warm in cache. The
//! lock is held only to append or to swap, never across I/O or an await.
//!
//! After each batch is on disk the writer replaces the seal (`seal.rs`)
//! with one naming the new end of the chain: one small extra write and
//! fsync per group commit, none per event. A clean shutdown ends the file
//! with an `audit_end` line, sealed like the rest.
//!
//! Single writer per file: two processes appending to the same file would
//! fork the chain, and retrying a failed batch truncates back to the last
//! committed length, which assumes nobody else appends.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Notify, oneshot};

use super::chain::{Chain, end_body, event_body};
use super::file::{AppendTarget, Tail, open_blocking};
use super::{AuditError, AuditEvent, AuditKey, EventDetails, EventTemplate};

/// Pending bytes beyond which recorders wait for the writer instead of
/// appending (an event is always taken by an empty queue, however large).
/// Room for a burst while one write+fsync is in flight; nothing is dropped.
const MAX_PENDING: usize = 16 << 20;
/// Pending bytes that end the commit delay early: a batch this large gains
/// nothing from waiting.
const FULL_BATCH: usize = 2 << 20;
/// How long a batch of non-durable events (statements) may wait for more
/// before it is written and fsynced, like PostgreSQL's `commit_delay`: at
/// most one fsync per 20 ms from statement traffic instead of one per
/// statement. `record` never waits for the fsync, so what a crash can lose
/// is unchanged in kind: events still in memory, for up to 20 ms. Durable
/// events (logins, revocations) end the wait at once.
///
/// Why 20 ms: an fsync here costs about 140 µs of CPU whatever the batch
/// size (the block layer and the virtual disk's doorbell); at 5 ms that was
/// 1.7 µs per select-only transaction, at 20 ms it is 1.1 µs (measured in
/// the writer thread's own CPU time under `pgbench -S -c 16`).
const COMMIT_DELAY: Duration = Duration::from_millis(20);
/// A spare buffer grown past this (huge statements) is not kept.
const MAX_KEPT_BUFFER: usize = 4 << 20;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Events waiting for the writer: canonical bodies back to back.
#[derive(Default)]
struct Pending {
    bodies: Vec<u8>,
    /// Where each body ends in `bodies`.
    ends: Vec<usize>,
    /// Who to tell once the events queued so far are synced.
    synced: Vec<oneshot::Sender<()>>,
    writer: WriterState,
    /// Set by [`AuditWriter::shutdown`] (or its drop): no more events.
    closed: bool,
}

/// What the writer thread is doing, so recorders wake it only when it
/// waits for what they bring: a wakeup is a syscall and a context switch.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Writing a batch: nobody needs to wake it.
    #[default]
    Busy,
    /// Waiting for a first event.
    Idle,
    /// In the commit delay: only a durable event, a full batch or a stop
    /// ends it early.
    Gathering,
}

impl Pending {
    fn push_end(&mut self) {
        self.ends.push(self.bodies.len());
    }

    fn has_room(&self) -> bool {
        self.bodies.is_empty() || self.bodies.len() < MAX_PENDING
    }

    /// Nothing to gain from the rest of the commit delay: a durable event
    /// waits, the batch is full, or the log is closing.
    fn batch_ready(&self) -> bool {
        self.closed || !self.synced.is_empty() || self.bodies.len() >= FULL_BATCH
    }
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer (see [`WriterState`]).
    wake: Condvar,
    /// Wakes recorders waiting for room after the writer took a batch.
    room: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        crate::lock(&self.pending)
    }

    /// Appends one event rendered by `render` if there is room, and wakes
    /// a writer that waits for it; false, with `render` and `durable`
    /// untouched, if the queue is full.
    fn try_append<F>(
        &self,
        render: &mut Option<F>,
        durable: &mut Option<oneshot::Sender<()>>,
    ) -> Result<bool, AuditError>
    where
        F: FnOnce(&mut Vec<u8>) -> Result<(), AuditError>,
    {
        let mut p = self.lock();
        if p.closed {
            return Err(AuditError::Closed);
        }
        if !p.has_room() {
            return Ok(false);
        }
        let start = p.bodies.len();
        let render = render.take().expect("rendered once");
        if let Err(e) = render(&mut p.bodies) {
            p.bodies.truncate(start);
            return Err(e);
        }
        p.push_end();
        if let Some(tx) = durable.take() {
            p.synced.push(tx);
        }
        let wake = match p.writer {
            WriterState::Idle => true,
            WriterState::Gathering => p.batch_ready(),
            WriterState::Busy => false,
        };
        if wake {
            p.writer = WriterState::Busy;
        }
        drop(p);
        if wake {
            self.wake.notify_one();
        }
        Ok(true)
    }

    /// Appends `body`, waiting for room as long as needed.
    async fn append_waiting(
        &self,
        body: Vec<u8>,
        mut durable: Option<oneshot::Sender<()>>,
    ) -> Result<(), AuditError> {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the look, so a batch taken in between
            // still wakes this recorder.
            notified.as_mut().enable();
            let mut render = Some(|out: &mut Vec<u8>| {
                out.extend_from_slice(&body);
                Ok(())
            });
            if self.try_append(&mut render, &mut durable)? {
                return Ok(());
            }
            notified.await;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
        // Recorders waiting for room learn of the close.
        self.room.notify_waiters();
    }
}

/// Handle for recording audit events. Cheap to clone; every clone feeds the
/// same writer thread.
#[derive(Clone)]
pub struct AuditLog {
    /// `None` for [`AuditLog::discarding`].
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("discarding", &self.shared.is_none())
            .finish_non_exhaustive()
    }
}

/// Owner of the writer thread. Call [`AuditWriter::shutdown`] before the
/// process exits, or events still pending are lost with it. Dropped without
/// it, it closes the log and the thread writes what is pending, unwaited.
#[derive(Debug)]
pub struct AuditWriter {
    /// `None` for [`AuditLog::discarding`], which has no thread.
    thread: Option<WriterThread>,
}

struct WriterThread {
    shared: Arc<Shared>,
    done: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for WriterThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterThread").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `path` for appending (creating it with mode 0600) and starts
    /// the writer thread. Lines are HMAC'd under `key` when given, plain
    /// SHA-256 otherwise.
    ///
    /// A new file starts with its `audit_start` header line (naming the
    /// chain kind) and its seal. An existing file is continued only if its
    /// header names the same kind, its seal checks out and the line the
    /// seal names is still there, and its last line is complete and checks
    /// out on its own (its `hash` becomes the chain head). The rest of the
    /// file is not re-verified here (that would make start-up cost grow
    /// with the file); use [`super::verify`].
    pub async fn open(
        path: &Path,
        key: Option<&AuditKey>,
    ) -> Result<(AuditLog, AuditWriter), AuditError> {
        let owned = path.to_path_buf();
        let chain = Chain::new(key);
        let (file, tail) = tokio::task::spawn_blocking(move || open_blocking(&owned, chain))
            .await
            .map_err(|e| AuditError::Io {
                path: path.to_path_buf(),
                source: io::Error::other(e),
            })??;
        Self::start(Arc::new(file), tail).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A log that accepts every event and keeps none: no file, no writer
    /// thread. Only for measuring what the audit trail costs
    /// (`idgate dev --no-audit`); callers still build their events.
    #[must_use]
    pub fn discarding() -> (AuditLog, AuditWriter) {
        (AuditLog { shared: None }, AuditWriter { thread: None })
    }

    fn start<T: AppendTarget>(target: Arc<T>, tail: Tail) -> io::Result<(AuditLog, AuditWriter)> {
        let (done_tx, done) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("idgate-audit".into())
            .spawn(move || {
                run_writer(&theirs, &target, tail);
                let _ = done_tx.send(());
            })?;
        Ok((
            AuditLog {
                shared: Some(Arc::clone(&shared)),
            },
            AuditWriter {
                thread: Some(WriterThread {
                    shared,
                    done: Some(done),
                }),
            },
        ))
    }

    /// Queues `event`, waiting for room if the queue is full (never drops).
    /// Returns once queued, not once on disk: a crash can still lose it.
    /// Fills `time` with the current UTC time if empty.
    ///
    /// Errors only when the event cannot be serialized or the writer has
    /// stopped ([`AuditError::Closed`]).
    ///
    /// The event is queued before the returned future is first polled when
    /// there is room; only a full queue makes the future wait, boxed. So
    /// the future stays small: every idle session holds one inside its own.
    pub fn record(
        &self,
        event: AuditEvent,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + '_ {
        self.enqueue(move |out| {
            out.extend_from_slice(&prepare(event)?);
            Ok(())
        })
    }

    /// As [`record`](Self::record), for an event of a session whose own
    /// fields `template` has rendered already: the cheap way to audit
    /// statement after statement, rendered straight into the queue.
    pub fn record_rendered(
        &self,
        template: &EventTemplate,
        details: &EventDetails<'_>,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + '_ {
        self.enqueue(|out| {
            let mut time = [0; TIME_LEN];
            let time = format_time(OffsetDateTime::now_utc(), &mut time)?;
            template.render_into(details, time, out);
            Ok(())
        })
    }

    fn enqueue(
        &self,
        render: impl FnOnce(&mut Vec<u8>) -> Result<(), AuditError>,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + '_ {
        let mut render = Some(render);
        let queued = match &self.shared {
            None => Ok(None),
            Some(shared) => match shared.try_append(&mut render, &mut None) {
                Ok(true) => Ok(None),
                // Full: render on the side and wait for room.
                Ok(false) => {
                    let mut body = Vec::new();
                    let render = render.take().expect("not used when full");
                    render(&mut body).map(|()| Some((shared, body)))
                }
                Err(e) => Err(e),
            },
        };
        async move {
            match queued? {
                None => Ok(()),
                Some((shared, body)) => Box::pin(shared.append_waiting(body, None)).await,
            }
        }
    }

    /// Like [`record`](Self::record) but returns only after the event is
    /// written and fsynced. For authentication events, whose loss would
    /// hide who got in. While the disk keeps failing this keeps waiting
    /// (the writer retries); wrap it in a timeout if the caller must not.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let (synced, on_disk) = oneshot::channel();
        shared.append_waiting(prepare(event)?, Some(synced)).await?;
        on_disk.await.map_err(|_| AuditError::Closed)
    }
}

impl AuditWriter {
    /// Stops accepting events (later `record`s fail with
    /// [`AuditError::Closed`]), writes and fsyncs everything already
    /// queued, and waits for the thread to end. If the disk keeps failing
    /// this keeps retrying, because giving up would lose events.
    pub async fn shutdown(mut self) {
        let Some(thread) = &mut self.thread else {
            return;
        };
        thread.shared.close();
        let done = thread.done.take().expect("taken once, here");
        if done.await.is_err() {
            tracing::error!("audit writer thread failed; events pending at that moment were lost");
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        if let Some(thread) = &self.thread {
            thread.shared.close();
        }
    }
}

/// Serializes on the caller's task so that this work runs in parallel
/// across sessions; the writer only hashes and concatenates.
fn prepare(mut event: AuditEvent) -> Result<Vec<u8>, AuditError> {
    if event.time.is_empty() {
        let mut time = [0; TIME_LEN];
        event.time = format_time(OffsetDateTime::now_utc(), &mut time)?.to_owned();
    }
    Ok(event_body(&event)?)
}
/// `2025-01-02T03:04:05.678Z`
const TIME_LEN: usize = 24;

/// `t` in UTC as RFC 3339 with milliseconds, written by hand: the general
/// formatter cost more than the rest of a statement's event.
fn format_time(t: OffsetDateTime, buf: &mut [u8; TIME_LEN]) -> Result<&str, time::error::Format> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // RFC 3339 has four-digit years only.
        return Err(time::error::Format::InvalidComponent("year"));
    }
    let fields: [(usize, u32, usize); 7] = [
        (0, year.unsigned_abs(), 4),
        (5, u32::from(u8::from(t.month())), 2),
        (8, u32::from(t.day()), 2),
        (11, u32::from(t.hour()), 2),
        (14, u32::from(t.minute()), 2),
        (17, u32::from(t.second()), 2),
        (20, u32::from(t.millisecond()), 3),
    ];
    *buf = *b"0000-00-00T00:00:00.000Z";
    for (at, mut value, width) in fields {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    Ok(std::str::from_utf8(buf).expect("ASCII digits"))
}

/// `2025-01-02T03:04:05.678Z` now, for the writer's own records (empty
/// in the year 10000).
pub(super) fn now_text() -> String {
    let mut time = [0; TIME_LEN];
    format_time(OffsetDateTime::now_utc(), &mut time).map_or_else(|_| String::new(), str::to_owned)
}

fn run_writer<T: AppendTarget>(shared: &Shared, target: &Arc<T>, mut tail: Tail) {
    // The batch being written; its buffers are swapped with the pending
    // ones, so the two take turns.
    let mut batch = Pending::default();
    // Reused: a fresh buffer per batch cost page faults on every batch.
    let mut lines = Vec::new();
    let mut seal_failing = false;
    loop {
        let stopping = take_batch(shared, &mut batch);
        shared.room.notify_waiters();
        if stopping {
            // A clean end, in the same write as the last events.
            batch.bodies.extend_from_slice(&end_body(&now_text()));
            batch.push_end();
        }
        if !batch.ends.is_empty() {
            lines.clear();
            if lines.capacity() > MAX_KEPT_BUFFER {
                lines = Vec::new();
            }
            lines.reserve(batch.bodies.len() + batch.ends.len() * 160);
            let mut start = 0;
            for &end in &batch.ends {
                tail.chain
                    .append_line(&mut tail.head, &batch.bodies[start..end], &mut lines);
                start = end;
            }
            persist(target.as_ref(), &lines, tail.bytes, batch.ends.len());
            tail.bytes += lines.len() as u64;
            tail.events += batch.ends.len() as u64;
            for synced in batch.synced.drain(..) {
                // The recorder may have given up waiting; the event is on
                // disk regardless.
                let _ = synced.send(());
            }
            // After the lines are durable, never before: a seal may lag
            // the file but must not run ahead of it. A failure only lets
            // it lag (the next batch tries again), so it is reported, not
            // retried here.
            match target.replace_seal(&tail.seal_record()) {
                Ok(()) if seal_failing => {
                    seal_failing = false;
                    tracing::info!("audit seal written again");
                }
                Ok(()) => {}
                Err(e) if !seal_failing => {
                    seal_failing = true;
                    tracing::error!(
                        error = %e,
                        "audit seal could not be replaced; lines cut off the end after its last update would go unnoticed until it is"
                    );
                }
                Err(_) => {}
            }
            batch.bodies.clear();
            batch.ends.clear();
            if batch.bodies.capacity() > MAX_KEPT_BUFFER {
                batch.bodies = Vec::new();
            }
        }
        if stopping {
            break;
        }
    }
}

/// Waits for a first event, lets up to `COMMIT_DELAY` of events join it
/// (unless a durable event, a full batch or a stop ends the delay), and
/// swaps what is pending into the empty `batch`. True once closed: nothing
/// can be pending after that.
fn take_batch(shared: &Shared, batch: &mut Pending) -> bool {
    let mut p = shared.lock();
    while p.ends.is_empty() && !p.closed {
        p.writer = WriterState::Idle;
        p = wait(&shared.wake, p, None);
    }
    if !p.batch_ready() {
        let deadline = Instant::now() + COMMIT_DELAY;
        while !p.batch_ready() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            p.writer = WriterState::Gathering;
            p = wait(&shared.wake, p, Some(left));
        }
    }
    p.writer = WriterState::Busy;
    std::mem::swap(&mut p.bodies, &mut batch.bodies);
    std::mem::swap(&mut p.ends, &mut batch.ends);
    std::mem::swap(&mut p.synced, &mut batch.synced);
    p.closed
}

fn wait<'a>(
    cv: &Condvar,
    guard: MutexGuard<'a, Pending>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, Pending> {
    match timeout {
        None => cv
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        Some(t) => {
            cv.wait_timeout(guard, t)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
        }
    }
}

/// Appends and syncs `lines`, retrying with backoff until it succeeds.
/// Events stay in memory meanwhile, and new ones back up in the bounded
/// channel, so recorders slow down instead of losing anything.
fn persist<T: AppendTarget>(target: &T, lines: &[u8], committed: u64, events: usize) {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1u32;
    // After a failure part of the batch may be on disk, and after a failed
    // fsync the kernel may have dropped dirty pages; either way the only
    // safe retry is to cut back to the last synced length and write the
    // whole batch again.
    let mut truncate_to = None;
    while let Err(e) = target.append_synced(lines, truncate_to) {
        tracing::error!(
            error = %e,
            attempt,
            events,
            retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            "audit write failed; events are held in memory and retried"
        );
        truncate_to = Some(committed);
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;
    use crate::audit::chain::GENESIS_HASH;
    use std::sync::Mutex;

    #[test]
    fn time_is_written_as_the_general_formatter_writes_it() {
        let description = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        for (secs, nanos) in [
            (0, 0),
            (1_767_225_599, 999_999_999),
            (951_782_400, 1_000_000),
            (4_102_444_800, 123_456_789),
            (1_234_567_890, 987_000_000),
        ] {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(nanos);
            let mut buf = [0; TIME_LEN];
            assert_eq!(
                format_time(t, &mut buf).unwrap(),
                t.format(description).unwrap()
            );
        }
        let offset = time::UtcOffset::from_hms(5, 30, 0).unwrap();
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut buf = [0; TIME_LEN];
        assert_eq!(
            format_time(t.to_offset(offset), &mut buf).unwrap(),
            "2023-11-14T22:13:20.000Z"
        );
    }

    /// A disk that fails the first `failures` appends after writing half of
    /// the data, like ENOSPC mid-write.
    struct FlakyDisk {
        failures: Mutex<u32>,
        content: Mutex<Vec<u8>>,
    }

    impl AppendTarget for FlakyDisk {
        fn append_synced(&self, data: &[u8], truncate_to: Option<u64>) -> io::Result<()> {
            let mut content = self
                .content
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            if let Some(len) = truncate_to {
                content.truncate(usize::try_from(len).map_err(io::Error::other)?);
            }
            let mut failures = self
                .failures
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            if *failures > 0 {
                *failures -= 1;
                content.extend_from_slice(&data[..data.len() / 2]);
                return Err(io::Error::other("disk full"));
            }
            content.extend_from_slice(data);
            Ok(())
        }

        fn replace_seal(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    fn fresh() -> Tail {
        Tail {
            chain: Chain::Unkeyed,
            head: GENESIS_HASH.to_owned(),
            events: 0,
            bytes: 0,
        }
    }

    #[tokio::test]
    async fn failed_partial_writes_are_retried_without_losing_or_duplicating_events() {
        let disk = Arc::new(FlakyDisk {
            failures: Mutex::new(3),
            content: Mutex::new(Vec::new()),
        });
        let (log, writer) = AuditLog::start(Arc::clone(&disk), fresh()).expect("start");
        for i in 0..50u64 {
            let ev = AuditEvent {
                rows: Some(i),
                ..AuditEvent::new(EventKind::Statement)
            };
            log.record(ev).await.expect("record");
        }
        log.record_durable(AuditEvent::new(EventKind::AuthOk))
            .await
            .expect("durable");
        writer.shutdown().await;

        let content = disk.content.lock().expect("lock").clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &content).expect("write copy");
        // Without a seal: these disks keep none.
        let report = crate::audit::verify(&path, None).expect("chain verifies after retries");
        assert_eq!(report.lines, 52, "50 + 1 durable + audit_end");
        assert!(report.closed);
    }

    /// A disk that holds every append until the test opens it.
    #[derive(Default)]
    struct HeldDisk {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
        content: Mutex<Vec<u8>>,
    }

    impl AppendTarget for HeldDisk {
        fn append_synced(&self, data: &[u8], _: Option<u64>) -> io::Result<()> {
            let mut open = self.open.lock().map_err(|_| io::Error::other("poisoned"))?;
            while !*open {
                open = self
                    .opened
                    .wait(open)
                    .map_err(|_| io::Error::other("poisoned"))?;
            }
            let mut content = self
                .content
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            content.extend_from_slice(data);
            Ok(())
        }

        fn replace_seal(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_queue_makes_recorders_wait_and_loses_nothing() {
        let disk = Arc::new(HeldDisk::default());
        let (log, writer) = AuditLog::start(Arc::clone(&disk), fresh()).expect("start");
        let big = "x".repeat(1 << 20);
        let event = |i| AuditEvent {
            rows: Some(i),
            statement: Some(big.clone()),
            ..AuditEvent::new(EventKind::Statement)
        };
        // The writer's first batch sits at the disk; the rest fills the
        // queue until a recorder has to wait.
        let mut recorded: u64 = 0;
        let mut waiting = None;
        for i in 0..64 {
            let mut record = Box::pin(log.record(event(i)));
            recorded += 1;
            tokio::select! {
                biased;
                r = &mut record => r.expect("record"),
                () = std::future::ready(()) => {
                    waiting = Some(record);
                    break;
                }
            }
        }
        let waiting = waiting.expect("a full queue makes a recorder wait");
        assert!(recorded * (1 << 20) > MAX_PENDING as u64, "{recorded}");
        *disk.open.lock().expect("lock") = true;
        disk.opened.notify_all();
        waiting.await.expect("queued once the writer took a batch");
        writer.shutdown().await;

        let content = disk.content.lock().expect("lock").clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &content).expect("write copy");
        let lines = crate::audit::verify(&path, None).expect("verifies").lines;
        assert_eq!(lines as u64, recorded + 1, "and audit_end");
        let rows: Vec<u64> = content
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && !crate::audit::chain::is_end_line(l))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).expect("json");
                v["rows"].as_u64().expect("rows")
            })
            .collect();
        assert_eq!(rows, (0..recorded).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn durable_event_sent_while_a_batch_gathers_returns_and_keeps_its_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let (log, writer) = AuditLog::open(&path, None).await.expect("open");
        let statement = |i| AuditEvent {
            rows: Some(i),
            ..AuditEvent::new(EventKind::Statement)
        };
        log.record(statement(0)).await.expect("record");
        log.record(statement(1)).await.expect("record");
        log.record_durable(AuditEvent::new(EventKind::AuthOk))
            .await
            .expect("durable");
        log.record(statement(2)).await.expect("record");
        writer.shutdown().await;

        assert_eq!(
            crate::audit::verify(&path, None).expect("verifies").lines,
            6
        );
        let text = std::fs::read_to_string(&path).expect("read");
        let order: Vec<(String, Option<u64>)> = text
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("json");
                (
                    v["event"].as_str().expect("event").to_owned(),
                    v["rows"].as_u64(),
                )
            })
            .collect();
        let expected = [
            ("audit_start", None),
            ("statement", Some(0)),
            ("statement", Some(1)),
            ("auth_ok", None),
            ("statement", Some(2)),
            ("audit_end", None),
        ]
        .map(|(event, rows)| (event.to_owned(), rows));
        assert_eq!(order, expected);
    }

    #[tokio::test]
    async fn discarding_log_accepts_every_event() {
        let (log, writer) = AuditLog::discarding();
        log.record(AuditEvent::new(EventKind::Statement))
            .await
            .expect("record");
        log.record_durable(AuditEvent::new(EventKind::AuthOk))
            .await
            .expect("durable");
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn record_fills_in_millisecond_utc_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let (log, writer) = AuditLog::open(&path, None).await.expect("open");
        log.record(AuditEvent::new(EventKind::SessionStart))
            .await
            .expect("record");
        writer.shutdown().await;
        let text = std::fs::read_to_string(&path).expect("read");
        let line = text.lines().nth(1).expect("after the header");
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let time = v["time"].as_str().expect("time is a string");
        // 2025-01-02T03:04:05.678Z
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
    }
}
