//! Per-statement verdicts for one session, whatever the protocol: a
//! classified statement (`sql::Statement`) is put to the policy as the
//! session's person and role, and the verdict says whether it may run,
//! why not in words for the client, and what the audit trail records.
//! `VerdictCache` remembers verdicts of texts seen before while nothing
//! they depend on has changed. The front end classifies (its own SQL
//! dialect and session state) and renders a denial in its own protocol.

use std::collections::HashMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::services::Services;
use super::statement::Judged;
use crate::identity::Identity;
use crate::policy::{AccessRequest, Action, Decision, RequestContext};
use crate::sql::Statement;

/// Why a statement is refused; a front end maps it to its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No policy permits it (or one forbids it).
    Policy,
    /// The gateway cannot let it through in this session (say, session
    /// state under transaction pooling).
    Unsupported,
}

/// The outcome for one statement text.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// Meaningful only when denied.
    pub denial: Denial,
    /// Kinds, tables and policies; shared, so a cached verdict costs its
    /// statements a reference count, not copies.
    pub judged: Arc<Judged>,
    /// For a denial: the client-facing message (action, tables, rule).
    pub reason: String,
}

/// Asks the policy about one session's statements.
pub struct Judge {
    services: Arc<Services>,
    identity: Arc<Identity>,
    target: String,
    role: String,
    /// Client address, environment and clock; statement fields are filled
    /// per statement.
    base: RequestContext,
}

impl Judge {
    pub fn new(
        services: Arc<Services>,
        identity: Arc<Identity>,
        target: String,
        role: String,
        base: RequestContext,
    ) -> Self {
        Judge {
            services,
            identity,
            target,
            role,
            base,
        }
    }

    /// Put one statement to the policy. A statement that runs user code
    /// needs `write`; without it, it may still run where a policy permits
    /// `unknown`.
    pub fn authorize(&self, stmt: &Statement) -> Decision {
        let decision = self.authorize_as(stmt, stmt.action);
        if decision.allowed || !stmt.runs_user_code || stmt.action != Action::Write {
            return decision;
        }
        let unknown = self.authorize_as(stmt, Action::Unknown);
        if unknown.allowed { unknown } else { decision }
    }

    fn authorize_as(&self, stmt: &Statement, action: Action) -> Decision {
        self.services.policy.authorize(&AccessRequest {
            identity: &self.identity,
            target: &self.target,
            role: &self.role,
            action,
            context: RequestContext {
                statement_kind: Some(stmt.kind.clone()),
                tables: stmt.tables.clone(),
                schemas: stmt.schemas.clone(),
                now: self.services.clock.now(),
                ..self.base.clone()
            },
        })
    }

    /// The verdict on one statement.
    pub fn judge(&self, stmt: &Statement) -> Verdict {
        let decision = self.authorize(stmt);
        self.verdict_for(stmt, decision)
    }

    pub fn verdict_for(&self, stmt: &Statement, decision: Decision) -> Verdict {
        Verdict {
            allowed: decision.allowed,
            denial: Denial::Policy,
            reason: if decision.allowed {
                String::new()
            } else {
                denial_message(stmt, &decision.reason)
            },
            judged: Arc::new(Judged {
                kind: stmt.kind.clone(),
                tables: stmt.tables.clone(),
                policy_ids: decision.policy_ids,
            }),
        }
    }

    /// A refusal of `stmt` with the reason given (it stays `unknown`
    /// unless a policy permits that).
    pub fn refusal(&self, mut stmt: Statement, why: String) -> Verdict {
        stmt.reason = Some(why);
        self.judge(&stmt)
    }

    /// Every statement of one text, judged in order: the first denial, or
    /// one allowed verdict naming every kind, table and permitting policy.
    pub fn judge_all(&self, statements: &[Statement]) -> Verdict {
        let mut kinds = Vec::with_capacity(statements.len());
        let mut tables = std::collections::BTreeSet::new();
        let mut policy_ids = std::collections::BTreeSet::new();
        for stmt in statements {
            kinds.push(stmt.kind.as_str());
            tables.extend(stmt.tables.iter().cloned());
            let decision = self.authorize(stmt);
            if !decision.allowed {
                return self.verdict_for(stmt, decision);
            }
            policy_ids.extend(decision.policy_ids);
        }
        allowed(&kinds, tables, policy_ids)
    }

    /// Policies see the hour and the weekday (UTC), nothing finer. From
    /// the Unix time alone: 1970-01-01 was a Thursday, 72 hours after the
    /// start of its week.
    pub fn hour_of_week(&self) -> u16 {
        let now = self
            .services
            .clock
            .now()
            .unwrap_or_else(OffsetDateTime::now_utc);
        let hours = now.unix_timestamp().div_euclid(3600) + 72;
        u16::try_from(hours.rem_euclid(7 * 24)).expect("below 168")
    }
}

/// An allowed verdict over statements of `kinds` (`;`-joined; `empty`
/// for none).
pub fn allowed(
    kinds: &[&str],
    tables: std::collections::BTreeSet<String>,
    policy_ids: std::collections::BTreeSet<String>,
) -> Verdict {
    Verdict {
        allowed: true,
        denial: Denial::Policy,
        judged: Arc::new(Judged {
            kind: if kinds.is_empty() {
                "empty".into()
            } else {
                kinds.join(";")
            },
            tables: tables.into_iter().collect(),
            policy_ids: policy_ids.into_iter().collect(),
        }),
        reason: String::new(),
    }
}

/// What the client reads when a statement is refused.
pub fn denial_message(stmt: &Statement, reason: &str) -> String {
    let what = if stmt.kind.is_empty() {
        stmt.action.to_string()
    } else {
        format!("{} ({})", stmt.action, stmt.kind)
    };
    let on = if stmt.tables.is_empty() {
        String::new()
    } else {
        format!(" on {}", stmt.tables.join(", "))
    };
    let why = stmt
        .reason
        .as_deref()
        .map(|r| format!(" [{r}]"))
        .unwrap_or_default();
    format!("permission denied for {what}{on}{why}: {reason}")
}

/// Verdicts for statement texts seen before, valid while what they were
/// decided in (a front end's generation: search paths, catalogue; and the
/// hour of the week) stays the same. A front end caches only texts whose
/// verdict depends on nothing else.
/// foldhash: a lookup per statement, and std's SipHash cost ~250
/// instructions of it; keys are only this session's own texts.
#[derive(Default)]
pub struct VerdictCache {
    entries: HashMap<String, Cached, foldhash::fast::RandomState>,
}

enum Cached {
    Verdict {
        verdict: Verdict,
        generation: (u64, u64),
        hour_of_week: u16,
    },
    /// A number in the text decided the verdict: look up the exact text.
    ByExactText,
}

/// Sessions repeat a small working set; a runaway one is simply reset.
const MAX_CACHED_VERDICTS: usize = 1024;

impl VerdictCache {
    /// The cached verdict for `text`, whose key (`sql::classification_key`,
    /// numbers blanked) is `key`. The flag says the key stood for exact
    /// texts (a number decided its verdict).
    pub fn get(
        &self,
        key: &str,
        text: &str,
        generation: (u64, u64),
        hour_of_week: u16,
    ) -> (Option<&Verdict>, bool) {
        let mut exact = false;
        let hit = match self.entries.get(key) {
            Some(Cached::ByExactText) if key != text => {
                exact = true;
                self.entries.get(text)
            }
            other => other,
        };
        match hit {
            Some(Cached::Verdict {
                verdict,
                generation: g,
                hour_of_week: h,
            }) if *g == generation && *h == hour_of_week => (Some(verdict), exact),
            _ => (None, exact),
        }
    }

    /// Remember `verdict` for `text` (under `key`, or under the exact text
    /// when a number decided it).
    pub fn insert(
        &mut self,
        key: String,
        text: &str,
        exact: bool,
        verdict: Verdict,
        generation: (u64, u64),
        hour_of_week: u16,
    ) {
        if self.entries.len() >= MAX_CACHED_VERDICTS {
            self.entries.clear();
        }
        let entry = Cached::Verdict {
            verdict,
            generation,
            hour_of_week,
        };
        if exact && key != text {
            self.entries.insert(key, Cached::ByExactText);
            self.entries.insert(text.to_owned(), entry);
        } else {
            self.entries.insert(key, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_names_action_kind_tables_and_rule() {
        let stmt = Statement {
            action: Action::Write,
            kind: "delete".into(),
            tables: vec!["public.orders".into()],
            ..Statement::new(Action::Unknown, "")
        };
        assert_eq!(
            denial_message(&stmt, "forbidden by read-only"),
            "permission denied for write (delete) on public.orders: forbidden by read-only"
        );
    }
}
