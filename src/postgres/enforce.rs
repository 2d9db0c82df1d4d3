//! Per-statement policy for one session: every Query and Parse is
//! classified (`sql::classify_postgres`) and each of its statements is put
//! to the policy before a byte of it reaches the upstream. The session's
//! search path and SQL-level PREPAREd statements are tracked here so that
//! unqualified names and `EXECUTE name` are judged as what they really are.
//!
//! A denied statement is not dropped: the relay sends the upstream a
//! stand-in that raises the denial there (`raise_statement`), so the
//! upstream's own transaction state and ReadyForQuery stay exactly what the
//! client expects (an error inside a transaction block aborts it, as it
//! would have without the gateway).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::statements::StatementInfo;
use crate::gateway::Gateway;
use crate::identity::Identity;
use crate::policy::{AccessRequest, Action, RequestContext};
use crate::sql::{self, Statement};

/// The outcome for one Query or Parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// Classifier kinds, `;`-joined.
    pub kind: String,
    pub tables: Vec<String>,
    /// Permits when allowed; the deciding policies when denied.
    pub policy_ids: Vec<String>,
    /// For a denial: the client-facing message (action, tables, rule).
    pub reason: String,
}

pub struct StatementPolicy {
    gw: Arc<Gateway>,
    identity: Identity,
    target: String,
    role: String,
    /// Client address, environment and clock; statement fields are filled
    /// per statement.
    base: RequestContext,
    search_path: Vec<String>,
    /// `PREPARE name AS …` (names are case-folded like identifiers).
    prepared: HashMap<String, Statement>,
}

impl StatementPolicy {
    pub fn new(
        gw: Arc<Gateway>,
        identity: Identity,
        target: String,
        role: String,
        base: RequestContext,
    ) -> Self {
        Self {
            gw,
            identity,
            target,
            role,
            base,
            search_path: sql::default_search_path(),
            prepared: HashMap::new(),
        }
    }

    /// Classify `text` and put every statement in it to the policy. All of
    /// a multi-statement string is refused if any statement is.
    pub fn check(&mut self, text: &str) -> Verdict {
        let statements = sql::classify_postgres(text, &self.search_path);
        let mut kinds = Vec::with_capacity(statements.len());
        let mut tables = BTreeSet::new();
        let mut policy_ids = BTreeSet::new();
        for stmt in &statements {
            let effective = self.effective(stmt);
            kinds.push(stmt.kind.as_str());
            tables.extend(effective.tables.iter().cloned());
            let decision = self.gw.policy.authorize(&AccessRequest {
                identity: &self.identity,
                target: &self.target,
                role: &self.role,
                action: effective.action,
                context: self.context_for(effective),
            });
            if !decision.allowed {
                return Verdict {
                    allowed: false,
                    kind: stmt.kind.clone(),
                    tables: effective.tables.clone(),
                    reason: denial_message(effective, &decision.reason),
                    policy_ids: decision.policy_ids,
                };
            }
            policy_ids.extend(decision.policy_ids);
        }
        for stmt in statements.iter() {
            self.remember(stmt);
        }
        Verdict {
            allowed: true,
            kind: if kinds.is_empty() {
                "empty".into()
            } else {
                kinds.join(";")
            },
            tables: tables.into_iter().collect(),
            policy_ids: policy_ids.into_iter().collect(),
            reason: String::new(),
        }
    }

    /// A FunctionCall message: a function named only by OID, so `unknown`.
    pub fn check_function_call(&mut self) -> (StatementInfo, Verdict) {
        let stmt = Statement {
            kind: "function_call".into(),
            ..UNKNOWN_EXECUTE.clone()
        };
        let decision = self.gw.policy.authorize(&AccessRequest {
            identity: &self.identity,
            target: &self.target,
            role: &self.role,
            action: stmt.action,
            context: self.context_for(&stmt),
        });
        let verdict = Verdict {
            allowed: decision.allowed,
            kind: stmt.kind.clone(),
            tables: Vec::new(),
            reason: if decision.allowed {
                String::new()
            } else {
                denial_message(&stmt, &decision.reason)
            },
            policy_ids: decision.policy_ids,
        };
        let info = StatementInfo {
            kind: verdict.kind.clone(),
            policy_ids: verdict.policy_ids.clone(),
            denied: !verdict.allowed,
            ..StatementInfo::new("<FunctionCall message>")
        };
        (info, verdict)
    }

    /// What a statement really does: `EXECUTE name` is the PREPAREd
    /// statement, `PREPARE name AS s` needs what `s` needs.
    fn effective<'a>(&'a self, stmt: &'a Statement) -> &'a Statement {
        if let Some((_, inner)) = &stmt.prepare {
            return inner;
        }
        match &stmt.execute {
            Some(name) => self.prepared.get(name).unwrap_or(&UNKNOWN_EXECUTE),
            None => stmt,
        }
    }

    fn remember(&mut self, stmt: &Statement) {
        if let Some((name, inner)) = &stmt.prepare {
            self.prepared.insert(name.clone(), (**inner).clone());
        }
        // Tracked when allowed, before the server confirms: a SET that then
        // fails leaves us resolving names against a path the session does
        // not have. That errs only for unqualified names, and the upstream
        // still enforces its own privileges.
        if let Some(path) = &stmt.sets_search_path {
            self.search_path.clone_from(path);
        }
    }

    fn context_for(&self, stmt: &Statement) -> RequestContext {
        RequestContext {
            statement_kind: Some(stmt.kind.clone()),
            tables: stmt.tables.clone(),
            schemas: stmt.schemas.clone(),
            ..self.base.clone()
        }
    }
}

/// An `EXECUTE` of a name we never saw prepared: nothing is known about it.
static UNKNOWN_EXECUTE: Statement = Statement {
    action: Action::Unknown,
    kind: String::new(),
    tables: Vec::new(),
    schemas: Vec::new(),
    reason: None,
    sets_search_path: None,
    prepare: None,
    execute: None,
};

fn denial_message(stmt: &Statement, reason: &str) -> String {
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

/// SQL that makes the upstream itself raise `message` as SQLSTATE 42501.
/// The dollar-quote tag is random so nothing in the message can end it.
pub fn raise_statement(message: &str) -> String {
    let tag: u64 = rand::random();
    let literal = message.replace('\'', "''");
    format!(
        "DO $idgate_{tag:016x}$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '{literal}'; END$idgate_{tag:016x}$"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_statement_quotes_the_message() {
        let sql = raise_statement("no policy permits write on t's table $$ x");
        assert!(sql.contains("'no policy permits write on t''s table $$ x'"));
        assert!(sql.starts_with("DO $idgate_"));
    }

    #[test]
    fn denial_names_action_kind_tables_and_rule() {
        let stmt = Statement {
            action: Action::Write,
            kind: "delete".into(),
            tables: vec!["public.orders".into()],
            ..UNKNOWN_EXECUTE.clone()
        };
        assert_eq!(
            denial_message(&stmt, "forbidden by read-only"),
            "permission denied for write (delete) on public.orders: forbidden by read-only"
        );
    }
}
