//! Per-statement policy for one session: every Query and Parse is
//! classified (`sql::classify_postgres`) and each of its statements is put
//! to the policy before a byte of it reaches the upstream.
//!
//! What a statement means depends on session state: the search path, what
//! a prepared name stands for, the target's catalogue. The gateway believes
//! only what the server confirms. A statement that says it changes the path
//! adds its path to the possible ones (names then stand for every table
//! they could be); only a lone `SET search_path` outside a transaction,
//! answered `SET` and idle, narrows them to one (`confirm_search_path`).
//! A prepared name stands for every text it may have been given, and is
//! judged again at `EXECUTE` and at each Bind when the path or the
//! catalogue changed since, because the server re-plans it then. Past the
//! limits, names are unknown and refused, never guessed.
//!
//! A denied statement is not dropped: the relay sends the upstream a
//! stand-in that raises the denial there (`raise_statement`), so the
//! upstream's own transaction state and ReadyForQuery stay exactly what the
//! client expects (an error inside a transaction block aborts it, as it
//! would have without the gateway).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::catalogue::TargetCatalogue;
use super::codec::sqlstate;
use crate::core::judge::{self, Denial, Judge, Verdict, VerdictCache};
use crate::core::statement::{Judged, StatementInfo};
use crate::policy::Action;
use crate::sql::{self, Catalogue, Classified, PathChange, Statement};

/// The SQLSTATE of a denial: 42501, or 0A000 for what transaction
/// pooling cannot do.
pub fn denial_code(denial: Denial) -> &'static str {
    match denial {
        Denial::Policy => sqlstate::INSUFFICIENT_PRIVILEGE,
        Denial::Unsupported => sqlstate::FEATURE_NOT_SUPPORTED,
    }
}

pub struct StatementPolicy {
    judge: Judge,
    /// The upstream login, which `$user` in a search path stands for.
    user: String,
    catalogue: Arc<TargetCatalogue>,
    /// Every search path that may be in effect upstream; empty when that
    /// is not known (unqualified names are then `unknown`).
    search_paths: Vec<Vec<String>>,
    /// Where `RESET search_path` goes: what the server said the session
    /// starts with (`None`: it did not say).
    start_path: Option<Vec<String>>,
    /// `PREPARE name AS …` (names are case-folded like identifiers) →
    /// every PREPARE text the name may stand for, with the index of the
    /// PREPARE in it: a second PREPARE of a taken name fails upstream and
    /// leaves the first in place, so neither is forgotten.
    prepared: HashMap<String, Vec<(Arc<str>, usize)>>,
    /// Protocol-level statements: name → every text it may stand for, with
    /// the generation it was last judged in.
    parsed: HashMap<String, Vec<Parsed>>,
    /// Verdicts for statement texts seen before (numbers blanked, see
    /// `sql::classification_key`), valid while the search paths, the
    /// catalogue and the hour of the week they were decided in stay the
    /// same. Only texts without side effects on this struct are cached.
    verdicts: VerdictCache,
    /// Bumped whenever `search_paths` changes.
    paths_generation: u64,
    /// The target pools by transaction: session state is refused.
    transaction_pooling: bool,
    /// Where `check` builds a cache key that differs from the text.
    key_scratch: String,
    /// Why nothing more can be judged: the server now reads statements
    /// differently from the gateway.
    tainted: Option<String>,
    /// A lone session-level `SET search_path` the last `check` passed
    /// while settled: the path it sets, to believe once the server
    /// answered it (`SET`, then idle).
    path_to_confirm: Option<Vec<String>>,
}

struct Parsed {
    text: Arc<str>,
    generation: (u64, u64),
}

/// Beyond this many possible search paths the path is unknown: unqualified
/// names are refused until a confirmed `SET search_path`.
const MAX_SEARCH_PATHS: usize = 8;

/// Beyond this many texts one prepared name may stand for, it stands for
/// something unknown.
const MAX_DEFINITIONS: usize = 8;

impl StatementPolicy {
    pub fn new(
        judge: Judge,
        user: String,
        catalogue: Arc<TargetCatalogue>,
        start_path: Option<Vec<String>>,
        transaction_pooling: bool,
    ) -> Self {
        Self {
            transaction_pooling,
            judge,
            user,
            catalogue,
            search_paths: start_path.iter().cloned().collect(),
            start_path,
            prepared: HashMap::new(),
            parsed: HashMap::new(),
            verdicts: VerdictCache::default(),
            paths_generation: 0,
            key_scratch: String::new(),
            tainted: None,
            path_to_confirm: None,
        }
    }

    /// From now on every statement is refused with `why` (the server
    /// reported a setting under which it reads statements differently).
    pub fn taint(&mut self, why: String) {
        self.tainted.get_or_insert(why);
    }

    /// The server answered a lone `SET search_path` outside a transaction:
    /// that path, and no other, is now in effect.
    pub fn confirm_search_path(&mut self, path: Vec<String>) {
        if self.search_paths != [path.clone()] {
            self.search_paths = vec![path];
            self.paths_generation += 1;
        }
    }

    fn generation(&self) -> (u64, u64) {
        (self.paths_generation, self.catalogue.generation())
    }

    /// Classify `text` and put every statement in it to the policy. All of
    /// a multi-statement string is refused if any statement is. `settled`
    /// says the session is idle with nothing in flight, so a lone
    /// session-level `SET search_path` here can be confirmed by its answer.
    pub fn check(&mut self, text: &str, settled: bool) -> Verdict {
        self.path_to_confirm = None;
        if let Some(why) = &self.tainted {
            return self.refusal(Statement::new(Action::Unknown, "tainted"), why.clone());
        }
        let hour_of_week = self.judge.hour_of_week();
        let generation = self.generation();
        let key = sql::classification_key(text, &mut self.key_scratch);
        let (hit, exact) = self.verdicts.get(key, text, generation, hour_of_week);
        if let Some(verdict) = hit {
            return verdict.clone();
        }
        let key = key.to_owned();
        let (verdict, cacheable, numbers_matter) = self.check_uncached(text, settled, None);
        if cacheable {
            self.verdicts.insert(
                key,
                text,
                numbers_matter || exact,
                verdict.clone(),
                generation,
                hour_of_week,
            );
        }
        verdict
    }

    /// The path a `SET search_path` passed by the last `check` sets, once:
    /// the relay believes it when the server has answered it.
    pub fn take_path_to_confirm(&mut self) -> Option<Vec<String>> {
        self.path_to_confirm.take()
    }

    /// A Parse: its text as `check` judges it, and its declared parameter
    /// types, a value of which may run user code on its way in (a
    /// constrained domain). The name is remembered for `check_bind`.
    pub fn check_parse(
        &mut self,
        name: &str,
        text: &str,
        mut parameter_types: impl Iterator<Item = u32>,
    ) -> Verdict {
        let (catalogue, _) = self.catalogue.current();
        let coded = parameter_types.find(|oid| catalogue.type_oid_runs_code(*oid));
        let verdict = match coded {
            None => self.check(text, false),
            Some(oid) if self.tainted.is_none() => {
                let why = format!("a parameter of type {oid} runs user code on its way in");
                self.check_uncached(text, false, Some(why)).0
            }
            Some(_) => self.check(text, false),
        };
        if verdict.allowed {
            self.remember_parse(name, text);
        }
        verdict
    }

    /// `name` may now stand for `text` too. The same text again (a driver
    /// re-parsing its unnamed statement) allocates nothing.
    fn remember_parse(&mut self, name: &str, text: &str) {
        let generation = self.generation();
        if !self.parsed.contains_key(name) {
            self.parsed.insert(name.to_owned(), Vec::new());
        }
        let definitions = self.parsed.get_mut(name).expect("inserted above");
        if let Some(last) = definitions.last_mut()
            && *last.text == *text
        {
            last.generation = generation;
            return;
        }
        if name.is_empty() {
            // The unnamed statement: a Parse replaces it, unless the Parse
            // is skipped after an error; then the old one stays.
            definitions.drain(..definitions.len().saturating_sub(1));
        }
        definitions.push(Parsed {
            text: Arc::from(text),
            generation,
        });
    }

    /// A Bind of statement `name`: judged again when the path or the
    /// catalogue changed since its Parse, because the server re-plans it.
    /// `None` when nothing changed (or the name is unknown to us, which
    /// the server refuses).
    pub fn check_bind(&mut self, name: &str) -> Option<Verdict> {
        let generation = self.generation();
        let definitions = self.parsed.get(name)?;
        if definitions.iter().all(|d| d.generation == generation) {
            return None;
        }
        if definitions.len() > MAX_DEFINITIONS {
            let why = format!("statement {name} may stand for too many texts to judge");
            return Some(self.refusal(Statement::new(Action::Unknown, "bind"), why));
        }
        let texts: Vec<Arc<str>> = definitions.iter().map(|d| Arc::clone(&d.text)).collect();
        for text in &texts {
            let verdict = self.check(text, false);
            if !verdict.allowed {
                return Some(verdict);
            }
        }
        if let Some(definitions) = self.parsed.get_mut(name) {
            for d in definitions {
                d.generation = generation;
            }
        }
        None
    }

    /// A refusal of `stmt` as `unknown` with the reason given.
    fn refusal(&self, stmt: Statement, why: String) -> Verdict {
        self.judge.refusal(stmt, why)
    }

    /// Returns the verdict, whether it may be cached (not when a statement
    /// changes what later ones mean — search path, PREPARE — or depends on
    /// earlier ones — EXECUTE), and whether a number decided it.
    /// `user_code` marks every statement as running user code, for a reason
    /// the text does not show (a parameter type).
    fn check_uncached(
        &mut self,
        text: &str,
        settled: bool,
        user_code: Option<String>,
    ) -> (Verdict, bool, bool) {
        let Classified {
            mut statements,
            mut numbers_matter,
        } = self.classify(text);
        let cacheable = user_code.is_none()
            && statements.iter().all(|s| {
                s.sets_search_path.is_none() && s.prepare.is_none() && s.execute.is_none()
            });
        // A path set mid-string applies to the statements after it: judge
        // them against it too (unsure, so added to the possible paths).
        let mid_string: Vec<PathChange> = statements
            .iter()
            .rev()
            .skip(1)
            .filter_map(|s| s.sets_search_path.clone())
            .collect();
        if !mid_string.is_empty() {
            for change in &mid_string {
                self.add_possible_search_path(change);
            }
            let again = self.classify(text);
            statements = again.statements;
            numbers_matter |= again.numbers_matter;
        }
        if let Some(why) = &user_code {
            for s in &mut statements {
                s.reason.get_or_insert_with(|| why.clone());
                s.runs_user_code = true;
                if s.action == Action::Read {
                    s.action = Action::Write;
                }
            }
        }
        let mut kinds = Vec::with_capacity(statements.len());
        let mut tables = BTreeSet::new();
        let mut policy_ids = BTreeSet::new();
        for (index, stmt) in statements.iter().enumerate() {
            // Known before the statements after it in the same string.
            if let Some((name, _)) = &stmt.prepare {
                let definitions = self.prepared.entry(name.clone()).or_default();
                definitions.push((Arc::from(text), index));
            }
            if self.transaction_pooling
                && let Some(what) = stmt.outlives_transaction
            {
                let verdict = Verdict {
                    allowed: false,
                    denial: Denial::Unsupported,
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
                return (verdict, cacheable, numbers_matter);
            }
            let effective = self.effective(stmt);
            kinds.push(stmt.kind.as_str());
            let mut denied = None;
            for judged in &effective {
                tables.extend(judged.tables.iter().cloned());
                let decision = self.judge.authorize(judged);
                if decision.allowed {
                    policy_ids.extend(decision.policy_ids);
                } else {
                    denied = Some((judged, decision));
                    break;
                }
            }
            if let Some((judged, decision)) = denied {
                return (
                    self.judge.verdict_for(judged, decision),
                    cacheable,
                    numbers_matter,
                );
            }
        }
        let lone = statements.len() == 1;
        for stmt in &statements {
            if let Some(change) = &stmt.sets_search_path {
                self.add_possible_search_path(change);
                if settled && lone && !stmt.search_path_is_local && stmt.kind == "set" {
                    self.path_to_confirm = self.path_after(change);
                }
            }
        }
        (
            judge::allowed(&kinds, tables, policy_ids),
            cacheable,
            numbers_matter,
        )
    }

    /// Classified against every search path that may be in effect.
    fn classify(&self, text: &str) -> Classified {
        let (catalogue, _) = self.catalogue.current();
        self.classify_in(text, &catalogue)
    }

    fn classify_in(&self, text: &str, catalogue: &Catalogue) -> Classified {
        sql::classify_postgres(
            text,
            &sql::Context {
                search_paths: &self.search_paths,
                user: &self.user,
                catalogue,
            },
        )
    }

    /// A FunctionCall message: a function named only by OID, so `unknown`.
    pub fn check_function_call(&mut self) -> (StatementInfo, Verdict) {
        let stmt = Statement::new(Action::Unknown, "function_call");
        let verdict = self.judge.judge(&stmt);
        let info = StatementInfo::new(
            "<FunctionCall message>",
            Arc::clone(&verdict.judged),
            !verdict.allowed,
        );
        (info, verdict)
    }

    /// What a statement really does: `PREPARE name AS s` needs what `s`
    /// needs; `EXECUTE name` is every statement the name may stand for,
    /// judged again now, as the server re-plans it against today's path
    /// and objects.
    fn effective(&self, stmt: &Statement) -> Vec<Statement> {
        if let Some((_, inner)) = &stmt.prepare {
            return vec![(**inner).clone()];
        }
        let Some(name) = &stmt.execute else {
            return vec![stmt.clone()];
        };
        let unknown = |why: String| {
            let mut s = Statement::new(Action::Unknown, "execute");
            s.reason = Some(why);
            vec![s]
        };
        let Some(definitions) = self.prepared.get(name) else {
            return unknown(format!("EXECUTE {name}: no PREPARE of that name was seen"));
        };
        if definitions.len() > MAX_DEFINITIONS {
            return unknown(format!(
                "EXECUTE {name}: the name may stand for too many statements"
            ));
        }
        let (catalogue, _) = self.catalogue.current();
        let mut out = Vec::new();
        for (text, index) in definitions {
            let again = self.classify_in(text, &catalogue);
            match again
                .statements
                .into_iter()
                .nth(*index)
                .and_then(|s| s.prepare)
            {
                Some((_, inner)) => out.push(*inner),
                None => return unknown(format!("EXECUTE {name}: its PREPARE no longer parses")),
            }
        }
        out
    }

    /// The path a change leads to; `None` when that is not known.
    fn path_after(&self, change: &PathChange) -> Option<Vec<String>> {
        match change {
            PathChange::To(path) => Some(path.clone()),
            PathChange::Default => self.start_path.clone(),
        }
    }

    /// A statement may have changed the path: names resolve against the
    /// new one too until the server confirms one. Too many possibilities,
    /// or a change to something not known, and the path is unknown.
    fn add_possible_search_path(&mut self, change: &PathChange) {
        let Some(path) = self.path_after(change) else {
            if !self.search_paths.is_empty() {
                self.search_paths.clear();
                self.paths_generation += 1;
            }
            return;
        };
        if self.search_paths.is_empty() || self.search_paths.contains(&path) {
            return;
        }
        self.paths_generation += 1;
        if self.search_paths.len() >= MAX_SEARCH_PATHS {
            self.search_paths.clear();
        } else {
            self.search_paths.insert(0, path);
        }
    }
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
}
