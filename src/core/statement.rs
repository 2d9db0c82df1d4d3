//! What the core knows of a statement, whatever the protocol: what
//! classification and policy made of its text (`Judged`), the record
//! shared by every execution of it (`StatementInfo`), its outcome
//! (`Completed`), and the audit events of a session's statements
//! (`StatementAudit`: a denial when refused, a `statement` with its
//! outcome when complete; the session's own fields rendered once).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditError, AuditLog, Decision, EventDetails, EventKind, EventTemplate};
use crate::core::scope::Scope;
use crate::metrics::Metrics;
use crate::sessions::LiveSession;

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

pub struct StatementAudit<'a> {
    log: &'a AuditLog,
    template: EventTemplate,
    /// Counts statements and bytes for the session registry.
    pub live: &'a LiveSession,
    metrics: &'a Metrics,
}

impl<'a> StatementAudit<'a> {
    pub fn new(scope: &'a Scope, live: &'a LiveSession) -> Self {
        StatementAudit {
            log: &scope.services.audit,
            template: EventTemplate::new(&scope.event(EventKind::Statement)),
            live,
            metrics: &scope.services.metrics,
        }
    }

    pub async fn denied(&self, info: &StatementInfo, reason: &str) -> Result<(), AuditError> {
        let text = crate::audit::redact_statement(&info.text);
        let details = EventDetails {
            decision: Some(Decision::Deny),
            reason: Some(reason),
            ..details(EventKind::Denied, info, &text)
        };
        self.log.record_rendered(&self.template, &details).await?;
        self.live.count_statement();
        self.metrics.statement(false);
        Ok(())
    }

    /// Audit `done` in order, taking each statement out once its event is
    /// queued: if this is cut short, `done` keeps exactly the unaudited.
    pub async fn completed(&self, done: &mut Vec<Completed>) -> Result<(), AuditError> {
        let mut queued = Queued { done, count: 0 };
        while let Some(c) = queued.done.get(queued.count) {
            let text = crate::audit::redact_statement(&c.info.text);
            let details = EventDetails {
                decision: Some(Decision::Allow),
                duration_ms: Some(c.duration.as_secs_f64() * 1000.0),
                error: c.error.as_deref(),
                rows: c.rows,
                ..details(EventKind::Statement, &c.info, &text)
            };
            self.log.record_rendered(&self.template, &details).await?;
            queued.count += 1;
            self.live.count_statement();
            self.metrics.statement(true);
        }
        Ok(())
    }
}

/// Removes the statements whose events are queued, however the loop ends;
/// their records go back for reuse.
struct Queued<'v> {
    done: &'v mut Vec<Completed>,
    count: usize,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        for c in self.done.drain(..self.count) {
            StatementInfo::recycle(c.info);
        }
    }
}

fn details<'a>(kind: EventKind, info: &'a StatementInfo, text: &'a str) -> EventDetails<'a> {
    let judged = &info.judged;
    EventDetails {
        statement: Some(text),
        statement_kind: (!judged.kind.is_empty()).then_some(judged.kind.as_str()),
        tables: &judged.tables,
        policy_ids: &judged.policy_ids,
        ..EventDetails::new(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
