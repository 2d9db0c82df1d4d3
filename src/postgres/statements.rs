//! Follows statements through the relayed protocol so each one can be
//! audited with its outcome: simple queries complete at ReadyForQuery,
//! extended-protocol Executes at their CommandComplete (or error), and
//! prepared statement and portal names are resolved back to their SQL.
//! Pure state, no I/O: the relay feeds it messages from both directions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::codec::{self, backend, object};
use crate::core::statement::{Completed, StatementInfo};

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

    /// A Close from the client: `kind` names a statement or a portal.
    pub fn on_close(&mut self, kind: u8, name: &str) {
        let closed = match kind {
            object::STATEMENT => self.prepared.remove(name),
            _ => self.portals.remove(name),
        };
        if let Some(old) = closed {
            StatementInfo::recycle(old);
        }
    }

    /// Feed one server message; statements it completes go to `done`.
    pub fn on_server(&mut self, tag: u8, body: &[u8], done: &mut Vec<Completed>) {
        match tag {
            backend::COMMAND_COMPLETE => match self.pending.front_mut() {
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
            backend::EMPTY_QUERY_RESPONSE | backend::PORTAL_SUSPENDED => {
                if let Some(Pending::Execute(_)) = self.pending.front()
                    && let Some(Pending::Execute(r)) = self.pending.pop_front()
                {
                    r.done(done);
                }
            }
            backend::ERROR_RESPONSE => {
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
            backend::READY_FOR_QUERY => {
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
        t.on_server(
            backend::COMMAND_COMPLETE,
            &complete("INSERT 0 1"),
            &mut done,
        );
        t.on_server(backend::COMMAND_COMPLETE, &complete("SELECT 1"), &mut done);
        assert!(done.is_empty());
        t.on_server(backend::READY_FOR_QUERY, b"I", &mut done);
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
        t.on_server(backend::COMMAND_COMPLETE, &complete("SELECT 1"), &mut done);
        t.on_server(backend::READY_FOR_QUERY, b"I", &mut done);
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
        t.on_server(
            backend::ERROR_RESPONSE,
            &error("22012", "division by zero"),
            &mut done,
        );
        t.on_server(backend::READY_FOR_QUERY, b"I", &mut done);
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
            backend::ERROR_RESPONSE,
            &error("42703", "column \"nope\" does not exist"),
            &mut done,
        );
        t.on_server(backend::READY_FOR_QUERY, b"I", &mut done);
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
        t.on_server(
            backend::ERROR_RESPONSE,
            &error("42501", "permission denied"),
            &mut done,
        );
        t.on_server(backend::READY_FOR_QUERY, b"I", &mut done);
        assert!(done.is_empty());
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
