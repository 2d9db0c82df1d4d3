//! Audit events for relayed statements: a denial when refused, a
//! `statement` with its outcome when complete. The session's own fields
//! are rendered once per relay, not per statement.

use super::RelayError;
use crate::audit::{AuditLog, Decision, EventDetails, EventKind, EventTemplate};
use crate::metrics::Metrics;
use crate::postgres::session::Session;
use crate::postgres::statements::{Completed, StatementInfo};
use crate::sessions::LiveSession;

pub(super) struct StatementAudit<'a> {
    log: &'a AuditLog,
    template: EventTemplate,
    /// Counts statements and bytes for the session registry.
    pub(super) live: &'a LiveSession,
    metrics: &'a Metrics,
}

impl<'a> StatementAudit<'a> {
    pub(super) fn new(session: &'a Session, live: &'a LiveSession) -> Self {
        StatementAudit {
            log: session.audit_log(),
            template: EventTemplate::new(&session.event(EventKind::Statement)),
            live,
            metrics: session.metrics(),
        }
    }

    pub(super) async fn denied(
        &self,
        info: &StatementInfo,
        reason: &str,
    ) -> Result<(), RelayError> {
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
    pub(super) async fn completed(&self, done: &mut Vec<Completed>) -> Result<(), RelayError> {
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
