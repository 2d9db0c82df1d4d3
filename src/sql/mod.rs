//! Statement classification: which policy action a SQL statement is, and
//! which tables and schemas it touches. PostgreSQL statements are parsed
//! with PostgreSQL's own parser (pg_query); anything it cannot parse is
//! `Action::Unknown`, which policies deny unless they permit `unknown`.

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
    pub tables: Vec<String>,
    /// The schemas of `tables`, deduplicated.
    pub schemas: Vec<String>,
    /// Why a statement that looks like a read was classified otherwise
    /// (e.g. "writable CTE", "nextval() advances a sequence").
    pub reason: Option<String>,
    /// For `SET search_path …`: the new path, so the session can track it.
    pub sets_search_path: Option<Vec<String>>,
}

/// The search path a new PostgreSQL session starts with.
pub fn default_search_path() -> Vec<String> {
    vec!["$user".into(), "public".into()]
}

// TEMPORARY STUB, replaced by the sql branch: `policy explain` is written
// against this signature; until the classifier lands every statement is
// `unknown`. Drop this at merge.
pub fn classify_postgres(sql: &str, search_path: &[String]) -> Vec<Statement> {
    let _ = (sql, search_path);
    vec![Statement {
        action: Action::Unknown,
        kind: "unparsed".into(),
        tables: Vec::new(),
        schemas: Vec::new(),
        reason: Some("the statement classifier is not built yet".into()),
        sets_search_path: None,
    }]
}
