//! Follows statements through the relayed protocol so each one can be
//! audited with its outcome: simple queries complete at ReadyForQuery,
//! extended-protocol Executes at their CommandComplete (or error), and
//! prepared statement and portal names are resolved back to their SQL.
//! Pure state, no I/O: the relay feeds it messages from both directions.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec;

/// Statement text beyond this is cut in the audit record (the statement
/// itself is forwarded whole).
const AUDIT_TEXT_LIMIT: usize = 64 * 1024;
/// Marks audit text cut at the limit.
const TRUNCATED: &str = " …[truncated]";

/// What classification and policy made of a statement text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judged {
    /// Classifier kinds, `;`-joined for multi-statement strings.
    pub kind: String,
    pub tables: Vec<String>,
    /// Permits when allowed; the deciding policies when denied.
    pub policy_ids: Vec<String>,
}

/// What the policy check learnt about one Query or Parse, shared by every
/// execution of it (a prepared statement may run millions of times).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatementInfo {
    /// Statement text as audited (redaction is the audit writer's job).
    pub text: String,
    /// Shared with the verdict (and its cache entry).
    pub judged: Arc<Judged>,
    /// Denied statements were audited as `denied` when refused; their
    /// (substituted) execution is not audited again.
    pub denied: bool,
}

thread_local! {
    /// Records of audited statements, reused so that a steady stream of
    /// statements allocates none. Per thread, not per session: an idle
    /// session keeps nothing here.
    static SPARE: RefCell<Vec<Arc<StatementInfo>>> = const { RefCell::new(Vec::new()) };
}
/// Enough for every session of a busy thread to find one.
const SPARE_MAX: usize = 64;
/// Records whose text grew beyond this are freed, not kept.
const SPARE_TEXT_MAX: usize = 1024;

impl StatementInfo {
    pub fn new(sql: &str, judged: Arc<Judged>, denied: bool) -> Self {
        let mut text = String::new();
        push_audit_text(&mut text, sql);
        Self {
            text,
            judged,
            denied,
        }
    }

    /// A shared record for `sql`, in a spare one when this thread has one.
    pub fn shared(sql: &str, judged: Arc<Judged>, denied: bool) -> Arc<Self> {
        if let Some(mut spare) = SPARE.with_borrow_mut(Vec::pop)
            && let Some(info) = Arc::get_mut(&mut spare)
        {
            info.text.clear();
            push_audit_text(&mut info.text, sql);
            info.judged = judged;
            info.denied = denied;
            return spare;
        }
        Arc::new(Self::new(sql, judged, denied))
    }

    /// Done with `info` (its statement is audited): kept for
    /// [`shared`](Self::shared) if nothing else holds it.
    pub fn recycle(mut info: Arc<Self>) {
        if Arc::get_mut(&mut info).is_none_or(|i| i.text.capacity() > SPARE_TEXT_MAX) {
            return;
        }
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < SPARE_MAX {
                spare.push(info);
            }
        });
    }
}

/// Append `sql`, cut at the audit limit on a character boundary.
fn push_audit_text(out: &mut String, sql: &str) {
    if sql.len() <= AUDIT_TEXT_LIMIT {
        out.push_str(sql);
        return;
    }
    let mut end = AUDIT_TEXT_LIMIT;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&sql[..end]);
    out.push_str(TRUNCATED);
}

/// A statement whose outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub info: Arc<StatementInfo>,
    pub duration: Duration,
    pub rows: Option<u64>,
    pub error: Option<String>,
}

enum Pending {
    Simple(Running),
    Execute(Running),
    Sync,
}

struct Running {
    info: Arc<StatementInfo>,
    started: Instant,
    rows: Option<u64>,
    error: Option<String>,
}

impl Running {
    fn new(info: Arc<StatementInfo>) -> Self {
        Self {
            info,
            started: Instant::now(),
            rows: None,
            error: None,
        }
    }

    fn done(self, out: &mut Vec<Completed>) {
        if self.info.denied {
            return;
        }
        out.push(Completed {
            info: self.info,
            duration: self.started.elapsed(),
            rows: self.rows,
            error: self.error,
        });
    }
}

#[derive(Default)]
pub struct StatementTracker {
    prepared: HashMap<String, Arc<StatementInfo>>,
    portals: HashMap<String, Arc<StatementInfo>>,
    pending: VecDeque<Pending>,
}

impl StatementTracker {
    /// A simple Query (or a FunctionCall, which completes the same way).
    pub fn on_query(&mut self, info: Arc<StatementInfo>) {
        self.pending.push_back(Pending::Simple(Running::new(info)));
    }

    pub fn on_parse(&mut self, name: &str, info: Arc<StatementInfo>) {
        if let Some(old) = self.prepared.insert(name.to_owned(), info) {
            StatementInfo::recycle(old);
        }
    }

    pub fn on_bind(&mut self, portal: &str, statement: &str) {
        let info = self.prepared.get(statement).cloned().unwrap_or_default();
        if let Some(old) = self.portals.insert(portal.to_owned(), info) {
            StatementInfo::recycle(old);
        }
    }

    pub fn on_execute(&mut self, portal: &str) {
        let info = self.portals.get(portal).cloned().unwrap_or_default();
        self.pending.push_back(Pending::Execute(Running::new(info)));
    }

    pub fn on_sync(&mut self) {
        self.pending.push_back(Pending::Sync);
    }

    /// Close ('C' from the client): `kind` is `S` (statement) or `P` (portal).
    pub fn on_close(&mut self, kind: u8, name: &str) {
        let closed = match kind {
            b'S' => self.prepared.remove(name),
            _ => self.portals.remove(name),
        };
        if let Some(old) = closed {
            StatementInfo::recycle(old);
        }
    }

    /// Feed one server message; statements it completes go to `done`.
    pub fn on_server(&mut self, tag: u8, body: &[u8], done: &mut Vec<Completed>) {
        match tag {
            b'C' => match self.pending.front_mut() {
                Some(Pending::Simple(r)) => {
                    if let Some(n) = codec::command_complete_rows(body) {
                        r.rows = Some(r.rows.unwrap_or(0) + n);
                    }
                }
                Some(Pending::Execute(_)) => {
                    if let Some(Pending::Execute(mut r)) = self.pending.pop_front() {
                        r.rows = codec::command_complete_rows(body);
                        r.done(done);
                    }
                }
                _ => {}
            },
            b'I' | b's' => {
                if let Some(Pending::Execute(_)) = self.pending.front()
                    && let Some(Pending::Execute(r)) = self.pending.pop_front()
                {
                    r.done(done);
                }
            }
            b'E' => {
                let message = codec::parse_error(body);
                let error = format!("{}: {}", message.code, message.message);
                match self.pending.front_mut() {
                    Some(Pending::Simple(r)) => r.error = Some(error),
                    Some(Pending::Execute(_)) => {
                        if let Some(Pending::Execute(mut r)) = self.pending.pop_front() {
                            r.error = Some(error);
                            r.done(done);
                        }
                    }
                    _ => {}
                }
            }
            b'Z' => {
                // Executes still queued before the Sync were skipped by the
                // server after an earlier error in the same pipeline.
                while let Some(p) = self.pending.pop_front() {
                    match p {
                        Pending::Simple(r) => {
                            r.done(done);
                            break;
                        }
                        Pending::Execute(mut r) => {
                            r.error = Some(
                                "not executed: an earlier message in the pipeline failed".into(),
                            );
                            r.done(done);
                        }
                        Pending::Sync => break,
                    }
                }
            }
            _ => {}
        }
    }

    /// Statements still running when the session ends.
    pub fn abandon(&mut self, done: &mut Vec<Completed>) {
        for p in self.pending.drain(..) {
            if let Pending::Simple(mut r) | Pending::Execute(mut r) = p {
                r.error = Some("session ended before the statement completed".into());
                r.done(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(tag: &str) -> Vec<u8> {
        format!("{tag}\0").into_bytes()
    }

    fn error(code: &str, msg: &str) -> Vec<u8> {
        format!("SERROR\0C{code}\0M{msg}\0\0").into_bytes()
    }

    fn info(sql: &str) -> Arc<StatementInfo> {
        Arc::new(StatementInfo::new(sql, Arc::default(), false))
    }

    #[test]
    fn simple_query_sums_rows_and_completes_at_ready() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_query(info("insert into t values (1); select 1"));
        t.on_server(b'C', &complete("INSERT 0 1"), &mut done);
        t.on_server(b'C', &complete("SELECT 1"), &mut done);
        assert!(done.is_empty());
        t.on_server(b'Z', b"I", &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].info.text, "insert into t values (1); select 1");
        assert_eq!(done[0].rows, Some(2));
        assert_eq!(done[0].error, None);
    }

    #[test]
    fn extended_execute_resolves_prepared_statement_text() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_parse("s1", info("select $1"));
        t.on_bind("", "s1");
        t.on_execute("");
        t.on_sync();
        t.on_server(b'C', &complete("SELECT 1"), &mut done);
        t.on_server(b'Z', b"I", &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].info.text, "select $1");
        assert_eq!(done[0].rows, Some(1));
    }

    #[test]
    fn error_in_pipeline_marks_later_executes_skipped() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_parse("", info("select 1/0"));
        t.on_bind("", "");
        t.on_execute("");
        t.on_execute("");
        t.on_sync();
        t.on_server(b'E', &error("22012", "division by zero"), &mut done);
        t.on_server(b'Z', b"I", &mut done);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].error.as_deref(), Some("22012: division by zero"));
        assert!(done[1].error.as_deref().unwrap().contains("not executed"));
    }

    #[test]
    fn simple_query_error_is_recorded() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_query(info("select nope"));
        t.on_server(
            b'E',
            &error("42703", "column \"nope\" does not exist"),
            &mut done,
        );
        t.on_server(b'Z', b"I", &mut done);
        assert_eq!(
            done[0].error.as_deref(),
            Some("42703: column \"nope\" does not exist")
        );
    }

    #[test]
    fn denied_statements_are_not_audited_again_when_their_stand_in_runs() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_query(Arc::new(StatementInfo::new(
            "delete from t",
            Arc::default(),
            true,
        )));
        t.on_server(b'E', &error("42501", "permission denied"), &mut done);
        t.on_server(b'Z', b"I", &mut done);
        assert!(done.is_empty());
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let text = |sql: &str| StatementInfo::new(sql, Arc::default(), false).text;
        let long = "x".repeat(AUDIT_TEXT_LIMIT + 10);
        assert!(text(&long).ends_with(TRUNCATED));
        assert_eq!(text("select 1"), "select 1");
    }

    #[test]
    fn a_spent_record_is_reused_and_a_held_one_is_not() {
        let judged = Arc::new(Judged {
            kind: "select".into(),
            ..Judged::default()
        });
        let first = StatementInfo::shared("select 1", Arc::default(), true);
        let at = Arc::as_ptr(&first);
        StatementInfo::recycle(first);
        let second = StatementInfo::shared("select 22", Arc::clone(&judged), false);
        assert_eq!(Arc::as_ptr(&second), at, "the spent record is reused");
        assert_eq!(second.text, "select 22");
        assert_eq!(second.judged, judged);
        assert!(!second.denied);

        let held = Arc::clone(&second);
        StatementInfo::recycle(second);
        let third = StatementInfo::shared("select 3", Arc::default(), false);
        assert_ne!(
            Arc::as_ptr(&third),
            Arc::as_ptr(&held),
            "a held record stays its holder's"
        );
        assert_eq!(held.text, "select 22");
    }

    #[test]
    fn unfinished_statements_are_reported_on_abandon() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_query(info("select pg_sleep(10)"));
        t.abandon(&mut done);
        assert_eq!(done.len(), 1);
        assert!(done[0].error.is_some());
    }
}
