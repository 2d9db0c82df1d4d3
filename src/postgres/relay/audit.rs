//! Audit events for relayed statements: a denial when refused, a
//! `statement` with its outcome when complete.

use super::RelayError;
use crate::audit::{AuditEvent, Decision, EventKind};
use crate::postgres::session::Session;
use crate::postgres::statements::{Completed, StatementInfo};

fn statement_event(session: &Session, kind: EventKind, info: &StatementInfo) -> AuditEvent {
    let mut e = session.event(kind);
    e.statement = Some(crate::audit::redact_statement(&info.text).into_owned());
    let judged = &info.judged;
    if !judged.kind.is_empty() {
        e.statement_kind = Some(judged.kind.clone());
    }
    e.tables.clone_from(&judged.tables);
    e.policy_ids.clone_from(&judged.policy_ids);
    e
}

pub(super) async fn audit_denied(
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

pub(super) async fn audit_completed(
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
