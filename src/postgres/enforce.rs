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

use time::OffsetDateTime;

use super::codec::sqlstate;
use super::statements::{Judged, StatementInfo};
use crate::gateway::Gateway;
use crate::identity::Identity;
use crate::policy::{AccessRequest, Action, RequestContext};
use crate::sql::{self, Statement};

/// The outcome for one Query or Parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// SQLSTATE of a denial: 42501, or 0A000 for what transaction pooling
    /// cannot do.
    pub code: &'static str,
    /// Kinds, tables and policies; shared, so a cached verdict costs its
    /// statements a reference count, not copies.
    pub judged: Arc<Judged>,
    /// For a denial: the client-facing message (action, tables, rule).
    pub reason: String,
}

pub struct StatementPolicy {
    gw: Arc<Gateway>,
    identity: Arc<Identity>,
    target: String,
    role: String,
    /// Client address, environment and clock; statement fields are filled
    /// per statement.
    base: RequestContext,
    /// Every search path that may be in effect upstream, current first.
    /// Usually one; see `remember` for when it grows.
    search_paths: Vec<Vec<String>>,
    /// `PREPARE name AS …` (names are case-folded like identifiers).
    prepared: HashMap<String, Statement>,
    /// What an `EXECUTE` of a name never seen prepared is: unknown.
    unknown_execute: Statement,
    /// Verdicts for statement texts seen before (numbers blanked, see
    /// `sql::classification_key`), valid while the search paths and the
    /// hour of the week they were decided in stay the same. Only texts
    /// without side effects on this struct are cached.
    /// foldhash: a lookup per statement, and std's SipHash cost ~250
    /// instructions of it; keys are only this session's own texts.
    verdicts: HashMap<String, CachedVerdict, foldhash::fast::RandomState>,
    /// Bumped whenever `search_paths` changes.
    paths_generation: u64,
    /// The target pools by transaction: session state is refused.
    transaction_pooling: bool,
    /// Where `check` builds a cache key that differs from the text.
    key_scratch: String,
}

struct CachedVerdict {
    verdict: Verdict,
    paths_generation: u64,
    hour_of_week: u16,
}

/// Sessions repeat a small working set; a runaway one is simply reset.
const MAX_CACHED_VERDICTS: usize = 1024;

/// Beyond this many possible search paths a session's unqualified names
/// are not worth resolving: they resolve to nothing, which schema-limited
/// policies refuse.
const MAX_SEARCH_PATHS: usize = 8;

impl StatementPolicy {
    pub fn new(
        gw: Arc<Gateway>,
        identity: Arc<Identity>,
        target: String,
        role: String,
        base: RequestContext,
        transaction_pooling: bool,
    ) -> Self {
        Self {
            transaction_pooling,
            gw,
            identity,
            target,
            role,
            base,
            search_paths: vec![sql::default_search_path()],
            prepared: HashMap::new(),
            unknown_execute: Statement::new(Action::Unknown, "execute"),
            verdicts: HashMap::default(),
            paths_generation: 0,
            key_scratch: String::new(),
        }
    }

    /// Classify `text` and put every statement in it to the policy. All of
    /// a multi-statement string is refused if any statement is. `settled`
    /// says the session is idle with nothing in flight, so a lone
    /// session-level `SET search_path` here certainly takes effect for good.
    pub fn check(&mut self, text: &str, settled: bool) -> Verdict {
        let hour_of_week = self.hour_of_week();
        let key = sql::classification_key(text, &mut self.key_scratch);
        if let Some(hit) = self.verdicts.get(key)
            && hit.paths_generation == self.paths_generation
            && hit.hour_of_week == hour_of_week
        {
            return hit.verdict.clone();
        }
        let key = key.to_owned();
        let (verdict, cacheable) = self.check_uncached(text, settled);
        if cacheable {
            if self.verdicts.len() >= MAX_CACHED_VERDICTS {
                self.verdicts.clear();
            }
            self.verdicts.insert(
                key,
                CachedVerdict {
                    verdict: verdict.clone(),
                    paths_generation: self.paths_generation,
                    hour_of_week,
                },
            );
        }
        verdict
    }

    /// Policies see the hour and the weekday (UTC), nothing finer. From
    /// the Unix time alone: 1970-01-01 was a Thursday, 72 hours after the
    /// start of its week.
    fn hour_of_week(&self) -> u16 {
        let now = self.gw.clock.now().unwrap_or_else(OffsetDateTime::now_utc);
        let hours = now.unix_timestamp().div_euclid(3600) + 72;
        u16::try_from(hours.rem_euclid(7 * 24)).expect("below 168")
    }

    /// Returns the verdict and whether it may be cached: not when a
    /// statement changes what later ones mean (search path, PREPARE) or
    /// depends on earlier ones (EXECUTE).
    fn check_uncached(&mut self, text: &str, settled: bool) -> (Verdict, bool) {
        let mut statements = self.classify(text);
        let cacheable = statements
            .iter()
            .all(|s| s.sets_search_path.is_none() && s.prepare.is_none() && s.execute.is_none());
        // A path set mid-string applies to the statements after it: judge
        // them against it too (unsure, so added to the possible paths).
        let mid_string: Vec<Vec<String>> = statements
            .iter()
            .rev()
            .skip(1)
            .filter_map(|s| s.sets_search_path.clone())
            .collect();
        if !mid_string.is_empty() {
            for path in &mid_string {
                self.add_possible_search_path(path);
            }
            statements = self.classify(text);
        }
        let mut kinds = Vec::with_capacity(statements.len());
        let mut tables = BTreeSet::new();
        let mut policy_ids = BTreeSet::new();
        for stmt in &statements {
            // Known before the statements after it in the same string.
            if let Some((name, inner)) = &stmt.prepare {
                self.prepared.insert(name.clone(), (**inner).clone());
            }
            if self.transaction_pooling
                && let Some(what) = stmt.outlives_transaction
            {
                let verdict = Verdict {
                    allowed: false,
                    code: sqlstate::FEATURE_NOT_SUPPORTED,
                    judged: Arc::new(Judged {
                        kind: stmt.kind.clone(),
                        tables: stmt.tables.clone(),
                        policy_ids: Vec::new(),
                    }),
                    reason: format!(
                        "{what} is not available through this target's transaction pooling: \
                         the next transaction may run on another server connection \
                         (use SET LOCAL inside a transaction, or ask for a target pooled by session)"
                    ),
                };
                return (verdict, cacheable);
            }
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
                let verdict = Verdict {
                    allowed: false,
                    code: sqlstate::INSUFFICIENT_PRIVILEGE,
                    judged: Arc::new(Judged {
                        kind: stmt.kind.clone(),
                        tables: effective.tables.clone(),
                        policy_ids: decision.policy_ids,
                    }),
                    reason: denial_message(effective, &decision.reason),
                };
                return (verdict, cacheable);
            }
            policy_ids.extend(decision.policy_ids);
        }
        let lone = statements.len() == 1;
        for stmt in statements.iter() {
            self.remember(stmt, settled && lone);
        }
        let verdict = Verdict {
            allowed: true,
            code: sqlstate::INSUFFICIENT_PRIVILEGE,
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
        };
        (verdict, cacheable)
    }

    /// Classified against every search path that may be in effect: when
    /// there are several, each statement's tables and schemas are the union
    /// over them, so a policy sees every table an unqualified name could be.
    fn classify(&self, text: &str) -> Vec<Statement> {
        let (first, others) = self
            .search_paths
            .split_first()
            .expect("at least one search path");
        let mut statements = sql::classify_postgres(text, first);
        for path in others {
            for (stmt, alt) in statements
                .iter_mut()
                .zip(sql::classify_postgres(text, path))
            {
                union_into(&mut stmt.tables, alt.tables);
                union_into(&mut stmt.schemas, alt.schemas);
                if let (Some((_, inner)), Some((_, alt_inner))) = (&mut stmt.prepare, alt.prepare) {
                    union_into(&mut inner.tables, alt_inner.tables);
                    union_into(&mut inner.schemas, alt_inner.schemas);
                }
            }
        }
        statements
    }

    /// A FunctionCall message: a function named only by OID, so `unknown`.
    pub fn check_function_call(&mut self) -> (StatementInfo, Verdict) {
        let stmt = Statement::new(Action::Unknown, "function_call");
        let decision = self.gw.policy.authorize(&AccessRequest {
            identity: &self.identity,
            target: &self.target,
            role: &self.role,
            action: stmt.action,
            context: self.context_for(&stmt),
        });
        let verdict = Verdict {
            allowed: decision.allowed,
            code: sqlstate::INSUFFICIENT_PRIVILEGE,
            reason: if decision.allowed {
                String::new()
            } else {
                denial_message(&stmt, &decision.reason)
            },
            judged: Arc::new(Judged {
                kind: stmt.kind.clone(),
                tables: Vec::new(),
                policy_ids: decision.policy_ids,
            }),
        };
        let info = StatementInfo::new(
            "<FunctionCall message>",
            Arc::clone(&verdict.judged),
            !verdict.allowed,
        );
        (info, verdict)
    }

    /// What a statement really does: `EXECUTE name` is the PREPAREd
    /// statement, `PREPARE name AS s` needs what `s` needs.
    fn effective<'a>(&'a self, stmt: &'a Statement) -> &'a Statement {
        if let Some((_, inner)) = &stmt.prepare {
            return inner;
        }
        match &stmt.execute {
            Some(name) => self.prepared.get(name).unwrap_or(&self.unknown_execute),
            None => stmt,
        }
    }

    /// Track the search path changes of an allowed statement.
    ///
    /// A search path set by a lone, session-level `SET` while the session
    /// is settled replaces what we track. Any other change (inside a
    /// transaction, `SET LOCAL`, part of a multi-statement string or a
    /// pipeline) may be rolled back or end with the transaction, so the
    /// new path is added to the possible ones instead: names then resolve
    /// against all of them until the next settled `SET`. Unsure means more
    /// tables, never fewer: a schema-limited policy can only refuse more.
    fn remember(&mut self, stmt: &Statement, settled: bool) {
        let Some(path) = &stmt.sets_search_path else {
            return;
        };
        if settled && !stmt.search_path_is_local {
            if self.search_paths != [path.clone()] {
                self.search_paths = vec![path.clone()];
                self.paths_generation += 1;
            }
        } else {
            self.add_possible_search_path(path);
        }
    }

    fn add_possible_search_path(&mut self, path: &[String]) {
        if self.search_paths.iter().any(|p| p == path) {
            return;
        }
        self.paths_generation += 1;
        if self.search_paths.len() >= MAX_SEARCH_PATHS {
            // Unresolvable from here on: unqualified names resolve to a
            // schema no policy names.
            self.search_paths = vec![vec!["pg_idgate_unknown_search_path".into()]];
        } else {
            self.search_paths.insert(0, path.to_vec());
        }
    }

    fn context_for(&self, stmt: &Statement) -> RequestContext {
        RequestContext {
            statement_kind: Some(stmt.kind.clone()),
            tables: stmt.tables.clone(),
            schemas: stmt.schemas.clone(),
            now: self.gw.clock.now(),
            ..self.base.clone()
        }
    }
}

fn union_into(into: &mut Vec<String>, more: Vec<String>) {
    into.extend(more);
    into.sort_unstable();
    into.dedup();
}

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

/// SQL that makes the upstream itself raise `message` as SQLSTATE `code`.
/// The dollar-quote tag is random so nothing in the message can end it.
pub fn raise_statement(code: &str, message: &str) -> String {
    let tag: u64 = rand::random();
    let literal = message.replace('\'', "''");
    format!(
        "DO $idgate_{tag:016x}$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = '{literal}'; END$idgate_{tag:016x}$"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_statement_quotes_the_message() {
        let sql = raise_statement("42501", "no policy permits write on t's table $$ x");
        assert!(sql.contains("'no policy permits write on t''s table $$ x'"));
        assert!(sql.starts_with("DO $idgate_"));
    }

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
