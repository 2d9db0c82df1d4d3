//! The audit file writer: a cheap cloneable [`AuditLog`] handle in front of
//! one writer thread that chains, appends and fsyncs in batches.
//!
//! A thread of its own, not a task: hashing, the write and the fsync then
//! never run on the event loop that relays statements, and the loop never
//! keeps a timer for the commit delay (which made every idle wait arm and
//! cancel a kernel timer) nor hands each batch to the blocking pool.
//!
//! Single writer per file: two processes appending to the same file would
//! fork the chain, and retrying a failed batch truncates back to the last
//! committed length, which assumes nobody else appends.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::chain::{GENESIS_HASH, check_line, event_body, seal_into};
use super::{AuditError, AuditEvent, EventDetails, EventTemplate};

/// Queue depth between recorders and the writer. Large enough to absorb a
/// burst while one fsync is in flight; when full, `record` waits instead of
/// dropping.
const CHANNEL_CAPACITY: usize = 16 * 1024;
/// Upper bound of events per write+fsync.
const MAX_BATCH: usize = 4096;
/// How long a batch of non-durable events (statements) may wait for more
/// before it is written and fsynced, like PostgreSQL's `commit_delay`: at
/// most one fsync per 5 ms from statement traffic instead of one per
/// statement. `record` never waited for the fsync, so what a crash can lose
/// is unchanged in kind: events queued in memory, now for up to 5 ms more.
/// Durable events (logins) end the wait at once.
///
/// The writer sleeps through the delay instead of receiving as events
/// arrive: waking it for every statement cost a cross-thread wakeup each,
/// about half the gateway's CPU under select-only load. Statements queue
/// meanwhile (a burst beyond the channel waits in `record` for the rest of
/// the delay); only `record_durable` wakes the writer early.
const COMMIT_DELAY: Duration = Duration::from_millis(5);
/// A batch buffer grown past this (huge statements) is not kept.
const MAX_KEPT_BUFFER: usize = 4 << 20;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Tail read size when looking for the last line of an existing file.
const TAIL_CHUNK: u64 = 64 * 1024;

/// One queued event: its canonical body, and who to tell once it is synced.
struct Entry {
    body: Vec<u8>,
    synced: Option<oneshot::Sender<()>>,
}

enum Msg {
    Event(Entry),
    /// From [`AuditWriter::shutdown`]: write what is queued, then end.
    Stop,
}

/// Handle for recording audit events. Cheap to clone; every clone feeds the
/// same writer thread.
#[derive(Clone, Debug)]
pub struct AuditLog {
    /// `None` for [`AuditLog::discarding`].
    queue: Option<Queue>,
}

#[derive(Clone, Debug)]
struct Queue {
    tx: mpsc::Sender<Msg>,
    durable: Arc<DurableSignal>,
}

/// Ends the writer's commit delay when a durable event is queued.
#[derive(Debug, Default)]
struct DurableSignal {
    queued: Mutex<bool>,
    cv: Condvar,
}

impl DurableSignal {
    fn raise(&self) {
        *crate::lock(&self.queued) = true;
        self.cv.notify_one();
    }

    fn clear(&self) {
        *crate::lock(&self.queued) = false;
    }

    /// Sleeps until `deadline` or a raise, whichever is first.
    fn wait_until(&self, deadline: Instant) {
        let mut queued = crate::lock(&self.queued);
        while !*queued {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            queued = self
                .cv
                .wait_timeout(queued, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Event(e) => f
                .debug_struct("Event")
                .field("bytes", &e.body.len())
                .finish_non_exhaustive(),
            Msg::Stop => f.write_str("Stop"),
        }
    }
}

/// Owner of the writer thread. Call [`AuditWriter::shutdown`] before the
/// process exits, or queued events are lost with it.
#[derive(Debug)]
pub struct AuditWriter {
    /// `None` for [`AuditLog::discarding`], which has no thread.
    thread: Option<WriterThread>,
}

#[derive(Debug)]
struct WriterThread {
    stop: mpsc::Sender<Msg>,
    done: oneshot::Receiver<()>,
}

impl AuditLog {
    /// Opens `path` for appending (creating it with mode 0600) and starts
    /// the writer task. An existing file is continued: its last line must
    /// be complete and check out on its own, and its `hash` becomes the
    /// chain head. The rest of the file is not re-verified here (that would
    /// make start-up cost grow with the file); use [`super::verify`].
    pub async fn open(path: &Path) -> Result<(AuditLog, AuditWriter), AuditError> {
        let owned = path.to_path_buf();
        let (file, head, len) = tokio::task::spawn_blocking(move || open_blocking(&owned))
            .await
            .map_err(|e| AuditError::Io {
                path: path.to_path_buf(),
                source: io::Error::other(e),
            })??;
        Self::start(Arc::new(file), head, len).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A log that accepts every event and keeps none: no file, no writer
    /// thread. Only for measuring what the audit trail costs
    /// (`idgate dev --no-audit`); callers still build their events.
    #[must_use]
    pub fn discarding() -> (AuditLog, AuditWriter) {
        (AuditLog { queue: None }, AuditWriter { thread: None })
    }

    fn start<T: AppendTarget>(
        target: Arc<T>,
        head: String,
        len: u64,
    ) -> io::Result<(AuditLog, AuditWriter)> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (done_tx, done) = oneshot::channel();
        let durable = Arc::new(DurableSignal::default());
        let signal = Arc::clone(&durable);
        std::thread::Builder::new()
            .name("idgate-audit".into())
            .spawn(move || {
                run_writer(rx, &signal, &target, head, len);
                let _ = done_tx.send(());
            })?;
        Ok((
            AuditLog {
                queue: Some(Queue {
                    tx: tx.clone(),
                    durable,
                }),
            },
            AuditWriter {
                thread: Some(WriterThread { stop: tx, done }),
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
    /// The event is serialized before the returned future is first polled,
    /// and a queue with room takes it without waiting; only a full queue
    /// boxes the wait. So the future stays small: every idle session holds
    /// one inside its own.
    pub fn record(
        &self,
        event: AuditEvent,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + '_ {
        self.enqueue(|| prepare(event))
    }

    /// As [`record`](Self::record), for an event of a session whose own
    /// fields `template` has rendered already: the cheap way to audit
    /// statement after statement.
    pub fn record_rendered(
        &self,
        template: &EventTemplate,
        details: &EventDetails<'_>,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + '_ {
        self.enqueue(|| {
            let mut time = [0; TIME_LEN];
            Ok(template.render(details, format_time(OffsetDateTime::now_utc(), &mut time)?))
        })
    }

    /// Renders with `body` (unless discarding) before the future exists,
    /// so only a full queue makes the future wait.
    fn enqueue(
        &self,
        body: impl FnOnce() -> Result<Vec<u8>, AuditError>,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + '_ {
        let prepared = match &self.queue {
            None => Ok(None),
            Some(queue) => body().map(|body| Some((queue, Entry { body, synced: None }))),
        };
        async move {
            let Some((queue, entry)) = prepared? else {
                return Ok(());
            };
            match queue.tx.try_send(Msg::Event(entry)) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(msg)) => Box::pin(queue.tx.send(msg))
                    .await
                    .map_err(|_| AuditError::Closed),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::Closed),
            }
        }
    }

    /// Like [`record`](Self::record) but returns only after the event is
    /// written and fsynced. For authentication events, whose loss would
    /// hide who got in. While the disk keeps failing this keeps waiting
    /// (the writer retries); wrap it in a timeout if the caller must not.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditError> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let (synced, on_disk) = oneshot::channel();
        let entry = Entry {
            body: prepare(event)?,
            synced: Some(synced),
        };
        queue
            .tx
            .send(Msg::Event(entry))
            .await
            .map_err(|_| AuditError::Closed)?;
        // After the send, so a writer woken here finds the event queued.
        queue.durable.raise();
        on_disk.await.map_err(|_| AuditError::Closed)
    }
}

impl AuditWriter {
    /// Stops accepting events (later `record`s fail with
    /// [`AuditError::Closed`]), writes and fsyncs everything already
    /// queued, and waits for the thread to end. If the disk keeps failing
    /// this keeps retrying, because giving up would lose events.
    ///
    /// Dropped without this, the thread serves until every [`AuditLog`]
    /// is gone.
    pub async fn shutdown(self) {
        let Some(thread) = self.thread else {
            return;
        };
        // Err: the thread already ended; nothing is left to wait for.
        if thread.stop.send(Msg::Stop).await.is_ok() && thread.done.await.is_err() {
            tracing::error!("audit writer thread failed; events queued at that moment were lost");
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

fn run_writer<T: AppendTarget>(
    mut rx: mpsc::Receiver<Msg>,
    durable: &DurableSignal,
    target: &Arc<T>,
    mut head: String,
    mut committed: u64,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Reused: a fresh buffer per batch cost page faults on every batch.
    let mut lines = Vec::new();
    let mut stopping = false;
    loop {
        if !stopping {
            match rx.blocking_recv() {
                Some(Msg::Event(e)) => batch.push(e),
                Some(Msg::Stop) => stopping = true,
                None => break,
            }
        }
        if stopping {
            // Refuse new sends; what is queued is still taken below.
            rx.close();
        } else if batch.iter().all(|e| e.synced.is_none()) {
            stopping = gather(&mut rx, &mut batch, durable);
        }
        stopping |= drain(&mut rx, &mut batch);
        if batch.is_empty() {
            if stopping {
                break;
            }
            continue;
        }
        lines.clear();
        if lines.capacity() > MAX_KEPT_BUFFER {
            lines = Vec::new();
        }
        lines.reserve(batch.iter().map(|e| e.body.len() + 160).sum());
        for entry in &batch {
            seal_into(&mut head, &entry.body, &mut lines);
        }
        persist(target.as_ref(), &lines, committed, batch.len());
        committed += lines.len() as u64;
        for entry in batch.drain(..) {
            if let Some(synced) = entry.synced {
                // The recorder may have given up waiting; the event is on
                // disk regardless.
                let _ = synced.send(());
            }
        }
    }
}

/// Lets up to `COMMIT_DELAY` of events join `batch`: sleeps through the
/// delay unless a durable event is sent or the batch is already full.
/// True once a stop has been received.
fn gather(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Entry>, durable: &DurableSignal) -> bool {
    let deadline = Instant::now() + COMMIT_DELAY;
    // Cleared before looking at the queue: a durable event queued after
    // this look raises the signal again and ends the sleep.
    durable.clear();
    let before = batch.len();
    if drain(rx, batch) {
        return true;
    }
    if batch.len() == MAX_BATCH || batch[before..].iter().any(|e| e.synced.is_some()) {
        return false;
    }
    durable.wait_until(deadline);
    false
}

/// Moves what is queued into `batch`, up to `MAX_BATCH`, without waiting.
/// True if a stop was among it (or every sender is gone).
fn drain(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Entry>) -> bool {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Msg::Event(e)) => batch.push(e),
            Ok(Msg::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => return true,
            Err(mpsc::error::TryRecvError::Empty) => return false,
        }
    }
    false
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

/// Where batches go. A trait so tests can inject failing disks.
trait AppendTarget: Send + Sync + 'static {
    /// Optionally truncates to `truncate_to`, then appends `data` and makes
    /// it durable.
    fn append_synced(&self, data: &[u8], truncate_to: Option<u64>) -> io::Result<()>;
}

impl AppendTarget for File {
    fn append_synced(&self, data: &[u8], truncate_to: Option<u64>) -> io::Result<()> {
        if let Some(len) = truncate_to {
            self.set_len(len)?;
        }
        // One write call per batch (write_all loops only on short writes).
        (&*self).write_all(data)?;
        self.sync_data()
    }
}

/// Opens or creates the file and finds the chain head: (file, head, length).
fn open_blocking(path: &Path) -> Result<(File, String, u64), AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existed = path.exists();
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    warn_if_readable_by_others(path, &meta);
    if !existed {
        // A new file's directory entry must be durable too, or a crash could
        // lose the whole file along with its fsynced content.
        sync_parent_dir(path);
    }
    let len = meta.len();
    if len == 0 {
        return Ok((file, GENESIS_HASH.to_owned(), 0));
    }
    let last = read_last_line(&mut file, len).map_err(io_err)?;
    let Some(last) = last else {
        return Err(AuditError::TornTail {
            path: path.to_path_buf(),
        });
    };
    let checked = check_line(&last).map_err(|problem| AuditError::BadTail {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok((file, checked.hash, len))
}

/// The last line without its newline, or None if the file does not end in
/// a newline (torn write). `len` must be > 0.
fn read_last_line(file: &mut File, len: u64) -> io::Result<Option<Vec<u8>>> {
    let mut last_byte = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last_byte)?;
    if last_byte[0] != b'\n' {
        return Ok(None);
    }
    // Read backwards in chunks until a newline before the final one shows up.
    let end = len - 1;
    let mut start = end;
    let mut tail: Vec<u8> = Vec::new();
    while start > 0 {
        let chunk = TAIL_CHUNK.min(start);
        start -= chunk;
        let mut buf = vec![0u8; usize::try_from(chunk).map_err(io::Error::other)?];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        let found = buf.iter().rposition(|&b| b == b'\n');
        buf.extend_from_slice(&tail);
        tail = buf;
        if let Some(pos) = found {
            tail.drain(..=pos);
            break;
        }
    }
    Ok(Some(tail))
}

fn warn_if_readable_by_others(path: &Path, meta: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "audit log is accessible to group/others; statements may be sensitive, consider chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
}

fn sync_parent_dir(path: &Path) {
    let parent: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Err(e) = File::open(&parent).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %parent.display(), error = %e, "could not fsync the audit log's directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;
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
    }

    #[tokio::test]
    async fn failed_partial_writes_are_retried_without_losing_or_duplicating_events() {
        let disk = Arc::new(FlakyDisk {
            failures: Mutex::new(3),
            content: Mutex::new(Vec::new()),
        });
        let (log, writer) =
            AuditLog::start(Arc::clone(&disk), GENESIS_HASH.to_owned(), 0).expect("start");
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
        let report = crate::audit::verify(&path).expect("chain verifies after retries");
        assert_eq!(report.lines, 51);
    }

    #[tokio::test]
    async fn durable_event_sent_while_a_batch_gathers_returns_and_keeps_its_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let (log, writer) = AuditLog::open(&path).await.expect("open");
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

        assert_eq!(crate::audit::verify(&path).expect("verifies").lines, 4);
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
            ("statement", Some(0)),
            ("statement", Some(1)),
            ("auth_ok", None),
            ("statement", Some(2)),
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
        let (log, writer) = AuditLog::open(&path).await.expect("open");
        log.record(AuditEvent::new(EventKind::SessionStart))
            .await
            .expect("record");
        writer.shutdown().await;
        let text = std::fs::read_to_string(&path).expect("read");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect("json");
        let time = v["time"].as_str().expect("time is a string");
        // 2025-01-02T03:04:05.678Z
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
    }

    #[test]
    fn last_line_is_found_across_chunk_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let long = "x".repeat(usize::try_from(TAIL_CHUNK).expect("fits") * 2 + 7);
        std::fs::write(&path, format!("first\n{long}\n")).expect("write");
        let mut f = File::open(&path).expect("open");
        let len = f.metadata().expect("meta").len();
        let last = read_last_line(&mut f, len)
            .expect("read")
            .expect("complete");
        assert_eq!(last, long.as_bytes());
    }
}
