//! Statement classification: which policy action a SQL statement is, and
//! which tables and schemas it touches. PostgreSQL statements are parsed
//! with PostgreSQL's own parser (pg_query); anything it cannot parse is
//! `Action::Unknown`, which policies deny unless they permit `unknown`.
//!
//! MySQL/MariaDB statements are parsed with sqlparser's MySQL dialect
//! (`mysql_parse`, which owns the loop between statements), after
//! `mysql_lex` has blanked comments and opened the executable comments the
//! server would run, and judged (`mysql`) into the same actions and kinds.
//!
//! `postgres` classifies; `walk` finds what is inside a statement;
//! `builtins` is the shipped list of PostgreSQL's built-in functions and
//! operators and which are free of side effects; `functions` names the
//! effects of the dangerous ones; `settings` the settings a session may
//! change; `names` schema-qualifies names; `catalogue` is what the target's
//! own catalogue says is user code.

pub mod builtins;
mod catalogue;
mod code;
mod functions;
mod key;
mod mysql;
mod mysql_lex;
mod mysql_parse;
mod mysql_session;
mod names;
mod postgres;
mod settings;
mod walk;

pub use catalogue::{Catalogue, UserCode, UserObject};
pub use key::classification_key;
pub use mysql::{charset_is_safe, classify_mysql, sql_mode_is_followable};
pub use mysql_session::{Intercepted, mysql_intercepted};
pub use names::parse_identifier_list;
pub use postgres::{MAX_SQL_BYTES, classify_postgres};
pub use settings::{client_encoding_is_safe, standard_conforming_strings_is_safe};

/// What classification needs besides the text.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Every search path that may be in effect; none at all means the path
    /// is not known, and unqualified names make a statement `unknown`.
    pub search_paths: &'a [Vec<String>],
    /// The upstream login, which `$user` in a path stands for.
    pub user: &'a str,
    pub catalogue: &'a Catalogue,
}

/// The statements of one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub statements: Vec<Statement>,
    /// The value of some numeric constant decided part of the verdict
    /// (`EXPLAIN (ANALYZE 0)`): the text may not share a cache entry with
    /// texts that differ from it only in numbers.
    pub numbers_matter: bool,
}

/// How a statement changes the search path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    To(Vec<String>),
    /// `RESET`, `SET … TO DEFAULT`: back to the session's start value.
    Default,
}

use crate::policy::Action;

/// One classified statement of a (possibly multi-statement) SQL string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The policy action this statement needs.
    pub action: Action,
    /// A short, stable label for audit and policies, e.g. `select`,
    /// `insert`, `create_table`, `set`, `copy_from`, `do`, `unparsed`.
    pub kind: String,
    /// Tables (and views, sequences, functions' relations) it touches,
    /// schema-qualified: unqualified names resolved against the search path.
    /// Sorted, deduplicated.
    pub tables: Vec<String>,
    /// The schemas of `tables`, and schemas a statement creates or drops;
    /// sorted, deduplicated.
    pub schemas: Vec<String>,
    /// Why a statement that looks like a read was classified otherwise
    /// (e.g. "writable CTE", "nextval() advances a sequence").
    pub reason: Option<String>,
    /// For `SET search_path …`: the new path, so the session can track it.
    pub sets_search_path: Option<PathChange>,
    /// `sets_search_path` lasts only until the end of the transaction
    /// (`SET LOCAL`, `set_config(…, true)`).
    pub search_path_is_local: bool,
    /// For `PREPARE name AS …`: the name and the classification of the
    /// prepared statement, so the session can resolve a later `EXECUTE`.
    /// The PREPARE itself carries the inner statement's action and tables.
    pub prepare: Option<(String, Box<Statement>)>,
    /// For `EXECUTE name` (also under `EXPLAIN ANALYZE`): the prepared
    /// statement it runs. Such a statement is `unknown` until the session
    /// substitutes what it recorded for that name's PREPARE.
    pub execute: Option<String>,
    /// It runs code the gateway cannot see into: a user-defined function,
    /// operator, cast or view, or a built-in not known to be free of side
    /// effects. Such a statement needs `write` (it may write); a session
    /// without `write` may run it only where a policy permits `unknown`.
    pub runs_user_code: bool,
    /// What this statement leaves behind after its transaction ends, if
    /// anything (a session `SET`, a `PREPARE`, `LISTEN`, a temporary
    /// table, a `WITH HOLD` cursor): under transaction pooling the next
    /// transaction may run on another server connection, so it cannot work.
    pub outlives_transaction: Option<&'static str>,
}

impl Statement {
    /// A statement of `action` and `kind` touching nothing yet.
    pub fn new(action: Action, kind: &str) -> Statement {
        Statement {
            action,
            kind: kind.to_owned(),
            tables: Vec::new(),
            schemas: Vec::new(),
            reason: None,
            sets_search_path: None,
            search_path_is_local: false,
            prepare: None,
            execute: None,
            runs_user_code: false,
            outlives_transaction: None,
        }
    }

    /// Sorts and deduplicates `tables`, and adds their schemas to `schemas`.
    fn finish(&mut self) {
        self.tables.sort();
        self.tables.dedup();
        for table in &self.tables {
            if let Some((schema, _)) = table.split_once('.') {
                self.schemas.push(schema.to_owned());
            }
        }
        self.schemas.sort();
        self.schemas.dedup();
    }
}

/// The search path a new PostgreSQL session starts with.
pub fn default_search_path() -> Vec<String> {
    vec!["$user".into(), "public".into()]
}

/// Whether `a` asks for more than `b` when one statement needs both: a read
/// that also writes is a write, a write that also terminates backends is
/// admin. `unknown` is strongest: nothing permits it by accident.
fn stronger(a: Action, b: Action) -> bool {
    fn rank(action: Action) -> u8 {
        match action {
            Action::Read => 0,
            Action::Transaction | Action::Session => 1,
            Action::Write => 2,
            Action::Ddl => 3,
            Action::Admin => 4,
            Action::Connect | Action::Administer | Action::Unknown => 5,
        }
    }
    rank(a) > rank(b)
}
