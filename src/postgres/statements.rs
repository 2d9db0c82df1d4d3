//! Follows statements through the relayed protocol so each one can be
//! audited with its outcome: simple queries complete at ReadyForQuery,
//! extended-protocol Executes at their CommandComplete (or error), and
//! prepared statement and portal names are resolved back to their SQL.
//! Pure state, no I/O: the relay feeds it messages from both directions.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::codec;

/// Marks audit text cut at the capture limit.
const TRUNCATED: &str = " …[truncated]";

/// A statement whose outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub text: String,
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
    text: String,
    started: Instant,
    rows: Option<u64>,
    error: Option<String>,
}

impl Running {
    fn new(text: String) -> Self {
        Self {
            text,
            started: Instant::now(),
            rows: None,
            error: None,
        }
    }

    fn done(self) -> Completed {
        Completed {
            text: self.text,
            duration: self.started.elapsed(),
            rows: self.rows,
            error: self.error,
        }
    }
}

#[derive(Default)]
pub struct StatementTracker {
    prepared: HashMap<String, String>,
    portals: HashMap<String, String>,
    pending: VecDeque<Pending>,
}

/// Client message types the relay and tracker need to see (Terminate
/// included, so the relay knows the client said goodbye).
pub fn client_wants(tag: u8) -> bool {
    matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'S' | b'C' | b'X')
}

/// Server message types the tracker needs to see.
pub fn server_wants(tag: u8) -> bool {
    matches!(tag, b'C' | b'E' | b'I' | b's' | b'Z')
}

fn text_of(sql: &str, truncated: bool) -> String {
    if truncated {
        format!("{sql}{TRUNCATED}")
    } else {
        sql.to_owned()
    }
}

impl StatementTracker {
    pub fn on_client(&mut self, tag: u8, body: &[u8], truncated: bool) {
        match tag {
            b'Q' => {
                let sql = lossy_cstr(body);
                self.pending
                    .push_back(Pending::Simple(Running::new(text_of(&sql, truncated))));
            }
            b'P' => {
                if let Ok((name, sql)) = codec::parse_parse(body) {
                    self.prepared
                        .insert(name.to_owned(), text_of(sql, truncated));
                } else if truncated {
                    // The SQL ran past the capture limit, so its NUL is missing.
                    let (name, rest) = codec::cstr(body).unwrap_or(("", body));
                    let sql = String::from_utf8_lossy(rest);
                    self.prepared.insert(name.to_owned(), text_of(&sql, true));
                }
            }
            b'B' => {
                if let Ok((portal, stmt)) = codec::parse_bind(body) {
                    let text = self.prepared.get(stmt).cloned().unwrap_or_default();
                    self.portals.insert(portal.to_owned(), text);
                }
            }
            b'E' => {
                let portal = codec::parse_name(body).unwrap_or("");
                let text = self.portals.get(portal).cloned().unwrap_or_default();
                self.pending.push_back(Pending::Execute(Running::new(text)));
            }
            b'S' => self.pending.push_back(Pending::Sync),
            b'C' => {
                if let Ok((kind, name)) = codec::parse_close(body) {
                    match kind {
                        b'S' => self.prepared.remove(name),
                        _ => self.portals.remove(name),
                    };
                }
            }
            _ => {}
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
                        done.push(r.done());
                    }
                }
                _ => {}
            },
            b'I' | b's' => {
                if let Some(Pending::Execute(_)) = self.pending.front()
                    && let Some(Pending::Execute(r)) = self.pending.pop_front()
                {
                    done.push(r.done());
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
                            done.push(r.done());
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
                            done.push(r.done());
                            break;
                        }
                        Pending::Execute(mut r) => {
                            r.error = Some(
                                "not executed: an earlier message in the pipeline failed".into(),
                            );
                            done.push(r.done());
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
                done.push(r.done());
            }
        }
    }
}

fn lossy_cstr(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
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

    #[test]
    fn simple_query_sums_rows_and_completes_at_ready() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_client(b'Q', b"insert into t values (1); select 1\0", false);
        t.on_server(b'C', &complete("INSERT 0 1"), &mut done);
        t.on_server(b'C', &complete("SELECT 1"), &mut done);
        assert!(done.is_empty());
        t.on_server(b'Z', b"I", &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].text, "insert into t values (1); select 1");
        assert_eq!(done[0].rows, Some(2));
        assert_eq!(done[0].error, None);
    }

    #[test]
    fn extended_execute_resolves_prepared_statement_text() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_client(b'P', b"s1\0select $1\0\0\0", false);
        t.on_client(b'B', b"\0s1\0\0\0\0\0\0\0", false);
        t.on_client(b'E', b"\0\0\0\0\0", false);
        t.on_client(b'S', b"", false);
        t.on_server(b'C', &complete("SELECT 1"), &mut done);
        t.on_server(b'Z', b"I", &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].text, "select $1");
        assert_eq!(done[0].rows, Some(1));
    }

    #[test]
    fn error_in_pipeline_marks_later_executes_skipped() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_client(b'P', b"\0select 1/0\0\0\0", false);
        t.on_client(b'B', b"\0\0\0\0\0\0\0\0", false);
        t.on_client(b'E', b"\0\0\0\0\0", false);
        t.on_client(b'E', b"\0\0\0\0\0", false);
        t.on_client(b'S', b"", false);
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
        t.on_client(b'Q', b"select nope\0", false);
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
    fn truncated_text_is_marked() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_client(b'Q', b"select 'aaaa", true);
        t.on_server(b'Z', b"I", &mut done);
        assert!(done[0].text.ends_with(TRUNCATED));
    }

    #[test]
    fn unfinished_statements_are_reported_on_abandon() {
        let mut t = StatementTracker::default();
        let mut done = Vec::new();
        t.on_client(b'Q', b"select pg_sleep(10)\0", false);
        t.abandon(&mut done);
        assert_eq!(done.len(), 1);
        assert!(done[0].error.is_some());
    }
}
