//! MySQL/MariaDB statements into the same actions and kinds as PostgreSQL's
//! (SPEC §5), parsed by `mysql_parse` (sqlparser's MySQL dialect) after
//! `mysql_lex` has opened the executable comments the server would run.
//! What a query does besides reading is looked for anywhere in a statement
//! (row locks, INTO a file, a wrapped write). Deny by default:
//! a statement sqlparser cannot read, or one this file does not know, is
//! `unknown`; a function that is not a known side-effect-free built-in
//! makes a statement need `write`; a setting not known to be harmless is
//! `admin`.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, ContextModifier, Expr, ObjectName, ObjectNamePart, Set, SetExpr, TransactionAccessMode,
    TransactionMode, Visit, Visitor,
};

use super::mysql_lex;
use super::mysql_parse::{self, Parsed};
use super::{Classified, Statement, stronger};
use crate::policy::Action;

/// Longer input is refused unparsed, as for PostgreSQL.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

/// Classifies every statement `sql` may run in `database` (the session's
/// current database, which unqualified table names belong to). A `USE`
/// statement's kind is `use` and its schema the database it switches to
/// (later statements of the same text are read in it): the front end must
/// re-check the target.
pub fn classify_mysql(sql: &str, database: &str) -> Classified {
    classify_nested(sql, database, 0)
}

/// A PREPARE's text is classified as a statement of its own; a text that
/// prepares a text that prepares… is not followed this deep.
const MAX_PREPARE_NESTING: usize = 2;

fn classify_nested(sql: &str, database: &str, nesting: usize) -> Classified {
    let statements = if sql.len() > MAX_SQL_BYTES {
        vec![unparsed(format!(
            "statement text of {} bytes exceeds the {MAX_SQL_BYTES}-byte limit",
            sql.len()
        ))]
    } else {
        match mysql_lex::readings(sql) {
            Ok(readings) => readings
                .iter()
                .flat_map(|text| match mysql_parse::parse(text) {
                    Ok(parsed) => {
                        // `USE other; SELECT … FROM t` reads other.t.
                        let mut current = database.to_owned();
                        parsed
                            .iter()
                            .map(|p| {
                                let s = classify(p, &current, nesting);
                                if s.kind == "use"
                                    && let Some(db) = s.schemas.first()
                                {
                                    current.clone_from(db);
                                }
                                s
                            })
                            .collect()
                    }
                    Err(e) => vec![unparsed(e.to_string())],
                })
                .collect(),
            Err(e) => vec![unparsed(e.to_string())],
        }
    };
    Classified {
        statements,
        // No verdict here reads the value of a number.
        numbers_matter: false,
    }
}

fn unparsed(message: String) -> Statement {
    let mut s = statement(Action::Unknown, "unparsed");
    s.reason = Some(message);
    s
}

fn statement(action: Action, kind: &str) -> Statement {
    Statement::new(action, kind)
}

fn classify(parsed: &Parsed, database: &str, nesting: usize) -> Statement {
    match parsed {
        Parsed::Prepare { name, text } => {
            let inner = classify_nested(text, database, nesting + 1).statements;
            let mut s = match inner.as_slice() {
                [one] if nesting < MAX_PREPARE_NESTING => one.clone(),
                _ => {
                    let mut u = statement(Action::Unknown, "prepare");
                    u.reason = Some(format!(
                        "PREPARE {name}: its text must be one statement the gateway can read"
                    ));
                    u
                }
            };
            s.prepare = Some((name.to_ascii_lowercase(), Box::new(s.clone())));
            s
        }
        Parsed::Execute { name, using } => {
            let mut arguments = statement(Action::Read, "execute");
            inspect(&mut arguments, using, database);
            if arguments.action != Action::Read {
                return arguments;
            }
            // The front end substitutes what `name` was prepared as.
            let mut s = statement(Action::Unknown, "execute");
            s.execute = Some(name.to_ascii_lowercase());
            s.reason = Some(format!("EXECUTE {name}: no PREPARE of that name was seen"));
            s
        }
        Parsed::Sql(node) => {
            let mut s = base(node);
            inspect(&mut s, node.as_ref(), database);
            s
        }
        Parsed::StartTransaction { read_write } => begin(*read_write),
        Parsed::SetGlobalTransaction => {
            let mut s = statement(Action::Admin, "set_global_transaction");
            s.reason =
                Some("SET GLOBAL TRANSACTION changes every new session's transactions".into());
            s
        }
        Parsed::Do(exprs) => {
            let mut s = statement(Action::Read, "do");
            inspect(&mut s, exprs, database);
            s
        }
        Parsed::Show { filter } => {
            let mut s = statement(Action::Read, "show");
            if let Some(filter) = filter {
                inspect(&mut s, filter.as_ref(), database);
            }
            s
        }
    }
}

/// Raises `s` for what is inside `node`: its tables, the functions it
/// calls, and what a query anywhere in it does besides reading.
fn inspect(s: &mut Statement, node: &impl Visit, database: &str) {
    let mut walk = Walk {
        database,
        ..Walk::default()
    };
    let _ = node.visit(&mut walk);
    if walk.unqualifiable {
        s.raise(
            Action::Unknown,
            "a table name the gateway cannot read".into(),
        );
    }
    if walk.locks {
        s.raise(Action::Write, "FOR UPDATE/SHARE takes row locks".into());
    }
    if walk.into_other_than_variable {
        s.raise(
            Action::Unknown,
            "SELECT … INTO other than a variable".into(),
        );
    }
    for inner in walk.writes {
        s.raise(inner.action, format!("{} inside a query", inner.kind));
    }
    let schemas = walk
        .tables
        .iter()
        .filter_map(|t| t.split_once('.').map(|(db, _)| db.to_owned()));
    s.schemas = s
        .schemas
        .drain(..)
        .chain(schemas)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    s.tables = walk.tables.into_iter().collect();
    for name in &walk.functions {
        judge_function(s, name);
    }
}

/// What a walk over a statement finds.
#[derive(Default)]
struct Walk<'a> {
    database: &'a str,
    tables: BTreeSet<String>,
    unqualifiable: bool,
    functions: Vec<ObjectName>,
    /// A query anywhere in it locks rows (`FOR UPDATE`, `LOCK IN SHARE
    /// MODE`, also in a subquery, a derived table or a CTE).
    locks: bool,
    /// A SELECT anywhere in it writes INTO something other than a user
    /// variable (a file, a table).
    into_other_than_variable: bool,
    /// Writes a query wraps (MySQL 8's `WITH … DELETE`, which sqlparser
    /// reads as a query).
    writes: Vec<Statement>,
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        match qualify(name, self.database) {
            Some(t) => {
                self.tables.insert(t);
            }
            None => self.unqualifiable = true,
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.functions.push(f.name.clone());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
        self.locks |= !q.locks.is_empty();
        self.body(&q.body);
        ControlFlow::Continue(())
    }
}

impl Walk<'_> {
    /// A query's body; the queries nested in it are visited on their own.
    fn body(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => {
                if select
                    .into
                    .as_ref()
                    .is_some_and(|into| !into.name.to_string().starts_with('@'))
                {
                    self.into_other_than_variable = true;
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.body(left);
                self.body(right);
            }
            SetExpr::Insert(inner)
            | SetExpr::Update(inner)
            | SetExpr::Delete(inner)
            | SetExpr::Merge(inner) => self.writes.push(base(inner)),
            SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => {}
        }
    }
}

/// `db.table` for a table name in `database`; `None` for a shape the
/// server would read otherwise.
fn qualify(name: &ObjectName, database: &str) -> Option<String> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [table] => Some(format!("{database}.{table}")),
        [db, table] => Some(format!("{db}.{table}")),
        _ => None,
    }
}

/// The action a statement needs before what is inside it is looked at.
fn base(node: &ast::Statement) -> Statement {
    use ast::Statement as S;
    match node {
        // What a query does besides reading (locks, INTO, a wrapped write)
        // is found by `inspect`, wherever in the statement it is.
        S::Query(_) => statement(Action::Read, "select"),
        S::Insert(_) => statement(Action::Write, "insert"),
        S::Update { .. } => statement(Action::Write, "update"),
        S::Delete(_) => statement(Action::Write, "delete"),
        S::Merge { .. } => statement(Action::Write, "merge"),
        S::Truncate { .. } => statement(Action::Write, "truncate"),
        S::LockTables { .. } => {
            let mut s = statement(Action::Write, "lock_tables");
            s.reason = Some("LOCK TABLES holds locks beyond the statement".into());
            s
        }
        S::UnlockTables => statement(Action::Session, "unlock_tables"),
        S::Call(_) => {
            let mut s = statement(Action::Write, "call");
            s.runs_user_code = true;
            s.reason = Some("CALL runs a stored procedure".into());
            s
        }
        S::CreateTable(_) => statement(Action::Ddl, "create_table"),
        S::CreateView { .. } => statement(Action::Ddl, "create_view"),
        S::CreateIndex(_) => statement(Action::Ddl, "create_index"),
        S::CreateDatabase { .. } | S::CreateSchema { .. } => {
            statement(Action::Ddl, "create_database")
        }
        S::CreateFunction(_) | S::CreateProcedure { .. } | S::CreateTrigger { .. } => {
            statement(Action::Ddl, "create_routine")
        }
        S::AlterTable { .. } => statement(Action::Ddl, "alter_table"),
        S::AlterView { .. } => statement(Action::Ddl, "alter_view"),
        S::AlterIndex { .. } => statement(Action::Ddl, "alter_index"),
        S::RenameTable(_) => statement(Action::Ddl, "rename_table"),
        S::Drop { .. } | S::DropFunction { .. } | S::DropProcedure { .. } => {
            statement(Action::Ddl, "drop")
        }
        S::Grant { .. } | S::Revoke { .. } => statement(Action::Admin, "grant"),
        S::CreateUser(_) | S::CreateRole { .. } => statement(Action::Admin, "create_user"),
        S::Flush { .. } => statement(Action::Admin, "flush"),
        S::Kill { .. } => statement(Action::Admin, "kill"),
        S::Analyze { .. } | S::OptimizeTable { .. } => statement(Action::Admin, "maintenance"),
        S::Install { .. } | S::Load { .. } | S::LoadData { .. } => statement(Action::Admin, "load"),
        S::StartTransaction { modes, .. } => begin(read_write(modes)),
        S::Commit { .. } => statement(Action::Transaction, "commit"),
        S::Rollback { .. } => statement(Action::Transaction, "rollback"),
        S::Savepoint { .. } => statement(Action::Transaction, "savepoint"),
        S::ReleaseSavepoint { .. } => statement(Action::Transaction, "release_savepoint"),
        S::ShowVariable { .. }
        | S::ShowVariables { .. }
        | S::ShowStatus { .. }
        | S::ShowCreate { .. }
        | S::ShowColumns { .. }
        | S::ShowDatabases { .. }
        | S::ShowSchemas { .. }
        | S::ShowTables { .. }
        | S::ShowViews { .. }
        | S::ShowCollation { .. }
        | S::ShowCharset(_)
        | S::ShowFunctions { .. }
        | S::ExplainTable { .. } => statement(Action::Read, "show"),
        S::Explain {
            analyze,
            statement: inner,
            ..
        } => {
            // EXPLAIN ANALYZE (and MariaDB's ANALYZE <statement>) runs it.
            if *analyze {
                let mut s = base(inner);
                s.kind = "explain_analyze".into();
                s
            } else {
                statement(Action::Read, "explain")
            }
        }
        // The database it switches to is its schema; the front end
        // re-checks it, a database being a target.
        S::Use(ast::Use::Object(name)) => match name.0.as_slice() {
            [ObjectNamePart::Identifier(db)] => {
                let mut s = statement(Action::Session, "use");
                s.schemas = vec![db.value.clone()];
                s
            }
            _ => {
                let mut s = statement(Action::Unknown, "use");
                s.reason = Some("a USE the gateway cannot read".into());
                s
            }
        },
        S::Set(set) => set_statement(set),
        S::Deallocate { .. } => statement(Action::Session, "deallocate"),
        _ => {
            let mut s = statement(Action::Unknown, "other");
            s.reason = Some("a statement the gateway does not classify".into());
            s
        }
    }
}

fn begin(read_write: bool) -> Statement {
    if read_write {
        let mut s = statement(Action::Admin, "begin_read_write");
        s.reason = Some("READ WRITE overrides the read-only mode the gateway enforces".into());
        s
    } else {
        statement(Action::Transaction, "begin")
    }
}

fn read_write(modes: &[TransactionMode]) -> bool {
    modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
        )
    })
}

fn set_statement(set: &Set) -> Statement {
    match set {
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => match values.as_slice() {
            [value] => assignment(*scope, variable, value),
            _ => statement(Action::Unknown, "set"),
        },
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| assignment(a.scope, &a.name, &a.value))
            .reduce(|a, b| if stronger(b.action, a.action) { b } else { a })
            .unwrap_or_else(|| statement(Action::Unknown, "set")),
        Set::SetNames { charset_name, .. } => {
            if charset_is_safe(&charset_name.value) {
                statement(Action::Session, "set_names")
            } else {
                let mut s = statement(Action::Admin, "set_names");
                s.reason = Some(format!(
                    "character set {} can hide a quote inside a multi-byte character",
                    charset_name.value
                ));
                s
            }
        }
        Set::SetNamesDefault {} | Set::SetTimeZone { .. } => statement(Action::Session, "set"),
        Set::SetTransaction { modes, .. } => {
            if read_write(modes) {
                let mut s = statement(Action::Admin, "set_transaction_read_write");
                s.reason =
                    Some("READ WRITE overrides the read-only mode the gateway enforces".into());
                s
            } else {
                statement(Action::Transaction, "set_transaction")
            }
        }
        _ => statement(Action::Admin, "set"),
    }
}

/// One `SET name = value`: a user variable is the session's own; a system
/// variable only when it is on the harmless list and not global.
fn assignment(scope: Option<ContextModifier>, name: &ObjectName, value: &Expr) -> Statement {
    let parts: Vec<String> = name.0.iter().map(|p| p.to_string()).collect();
    let first = parts.first().map(String::as_str).unwrap_or_default();
    if first.starts_with('@') && !first.starts_with("@@") {
        return statement(Action::Session, "set_user_variable");
    }
    // `@@session.x` and `@@local.x` are the session's; `@@global.x`,
    // MySQL 8's `@@persist.x` and a key cache's `@@cache.x` are not.
    let qualifier = match parts.as_slice() {
        [_] => None,
        [q, _] => Some(q.to_ascii_lowercase()),
        _ => Some(String::new()),
    };
    let global = matches!(scope, Some(ContextModifier::Global))
        || qualifier
            .as_deref()
            .is_some_and(|q| !matches!(q, "@@session" | "@@local"));
    let variable = parts
        .last()
        .map(|v| v.trim_start_matches('@').to_ascii_lowercase())
        .unwrap_or_default();
    let mut s = statement(Action::Admin, "set");
    if global {
        let global = if matches!(scope, Some(ContextModifier::Global)) {
            "GLOBAL "
        } else {
            ""
        };
        s.reason = Some(format!(
            "SET {global}{} changes the server for everyone",
            parts.join(".")
        ));
    } else if variable == "autocommit" {
        s = statement(Action::Transaction, "set");
    } else if HARMLESS_VARIABLES.contains(&variable.as_str()) {
        s = statement(Action::Session, "set");
    } else if variable == "sql_mode" {
        match sql_mode_is_safe(value) {
            Ok(()) => s = statement(Action::Session, "set_sql_mode"),
            Err(why) => s.reason = Some(why),
        }
    } else {
        s.reason = Some(format!(
            "{variable} is not a setting a session may change through the gateway"
        ));
    }
    s
}

/// A new `sql_mode` may only add modes that leave the lexical rules alone
/// (`mysql_lex` assumes backslash escapes and `"` strings), given as
/// strings, or `CONCAT` of strings and the current `@@sql_mode` (which the
/// gateway keeps safe), as JDBC drivers and ORMs send it.
fn sql_mode_is_safe(value: &Expr) -> Result<(), String> {
    match value {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(modes) | ast::Value::DoubleQuotedString(modes) => {
                unsafe_sql_mode(modes).map_or(Ok(()), |m| {
                    Err(format!(
                        "sql_mode {m} changes how the gateway must read SQL"
                    ))
                })
            }
            _ => Err("sql_mode set to a value the gateway cannot read".into()),
        },
        Expr::Identifier(i) if i.value.eq_ignore_ascii_case("@@sql_mode") => Ok(()),
        Expr::CompoundIdentifier(parts)
            if parts.len() == 2
                && parts[0].value.eq_ignore_ascii_case("@@session")
                && parts[1].value.eq_ignore_ascii_case("sql_mode") =>
        {
            Ok(())
        }
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("concat") => match &f.args {
            ast::FunctionArguments::List(list)
                if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                list.args.iter().try_for_each(|arg| match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => sql_mode_is_safe(e),
                    _ => Err("sql_mode set to a value the gateway cannot read".into()),
                })
            }
            _ => Err("sql_mode set to a value the gateway cannot read".into()),
        },
        _ => Err("sql_mode set to a value the gateway cannot read".into()),
    }
}

/// Whether the gateway reads statements as a server does whose sql_mode
/// is `modes` (as `@@sql_mode` shows it); why not, when it does not.
pub fn sql_mode_is_followable(modes: &str) -> Result<(), String> {
    unsafe_sql_mode(modes).map_or(Ok(()), |m| {
        Err(format!(
            "the server's sql_mode includes {m}, under which the gateway cannot read statements as the server does"
        ))
    })
}

/// The first mode of the comma-separated `modes` not in `SAFE_SQL_MODES`.
fn unsafe_sql_mode(modes: &str) -> Option<String> {
    modes
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .find(|m| !m.is_empty() && !SAFE_SQL_MODES.contains(&m.as_str()))
}

/// SQL modes that change neither how a text is split into tokens nor what
/// a statement may reach (not ANSI_QUOTES, NO_BACKSLASH_ESCAPES, the
/// combinations that include ANSI_QUOTES, ORACLE's parser, IGNORE_SPACE,
/// PIPES_AS_CONCAT).
const SAFE_SQL_MODES: &[&str] = &[
    "ALLOW_INVALID_DATES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "HIGH_NOT_PRECEDENCE",
    "NO_AUTO_CREATE_USER",
    "NO_AUTO_VALUE_ON_ZERO",
    "NO_DIR_IN_CREATE",
    "NO_ENGINE_SUBSTITUTION",
    "NO_FIELD_OPTIONS",
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_ZERO_DATE",
    "NO_ZERO_IN_DATE",
    "ONLY_FULL_GROUP_BY",
    "PAD_CHAR_TO_FULL_LENGTH",
    "REAL_AS_FLOAT",
    "STRICT_ALL_TABLES",
    "STRICT_TRANS_TABLES",
    "TIME_ROUND_FRACTIONAL",
    "TIME_TRUNCATE_FRACTIONAL",
    "TRADITIONAL",
];

/// Session variables that change neither what a statement may reach nor
/// how the gateway must read the next one.
const HARMLESS_VARIABLES: &[&str] = &[
    "big_tables",
    "character_set_results",
    "collation_connection",
    "default_week_format",
    "div_precision_increment",
    "group_concat_max_len",
    "interactive_timeout",
    "lc_time_names",
    "max_execution_time",
    "max_statement_time",
    "net_read_timeout",
    "net_write_timeout",
    "optimizer_search_depth",
    "profiling",
    "sql_auto_is_null",
    "sql_select_limit",
    "sql_safe_updates",
    "time_zone",
    "transaction_isolation",
    "tx_isolation",
    "wait_timeout",
];

/// Client character sets in which every byte of a multi-byte character is
/// non-ASCII, so the gateway finds quotes and backslashes where the server
/// does (the "GBK trick" needs one of the others).
pub fn charset_is_safe(name: &str) -> bool {
    let name = name.trim_matches(['\'', '"', '`']).to_ascii_lowercase();
    matches!(
        name.as_str(),
        "utf8"
            | "utf8mb3"
            | "utf8mb4"
            | "latin1"
            | "ascii"
            | "binary"
            | "latin2"
            | "cp1250"
            | "cp1251"
            | "cp1252"
            | "cp1256"
            | "cp1257"
            | "utf8mb4_general_ci"
    )
}

fn judge_function(s: &mut Statement, name: &ObjectName) {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.to_string().to_ascii_lowercase())
        .collect();
    let safe = match parts.as_slice() {
        [f] => SAFE_FUNCTIONS.binary_search(&f.as_str()).is_ok(),
        // `db.f` is always a stored function.
        _ => false,
    };
    if !safe && !s.runs_user_code {
        s.runs_user_code = true;
        let reason = format!(
            "{} is not a built-in function known to be free of side effects",
            parts.join(".")
        );
        if s.action == Action::Write {
            s.reason.get_or_insert(reason);
        } else {
            s.raise(Action::Write, reason);
        }
    }
}

/// Built-in functions of MySQL 8 and MariaDB 10.11 that neither write, nor
/// lock, nor read files, nor wait on replication, nor burn CPU on purpose
/// (`BENCHMARK`). `SLEEP` only waits, as PostgreSQL's `pg_sleep`, which the
/// PostgreSQL list allows: a long read ties up a connection just as well.
/// Only names native to both: where a server has no native function of a
/// name, an unqualified call runs the current database's stored function
/// of that name (MariaDB 10.11 has no `ANY_VALUE`, `BIN_TO_UUID`,
/// `REGEXP_LIKE`, `UUID_TO_BIN`; MySQL 8 no `LASTVAL`, `NATURAL_SORT_KEY`,
/// `SFORMAT`). scripts/check-mysql-tricks checks each name against a
/// server. Sorted (binary search).
const SAFE_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "adddate",
    "addtime",
    "aes_decrypt",
    "aes_encrypt",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "bin",
    "bit_and",
    "bit_count",
    "bit_length",
    "bit_or",
    "bit_xor",
    "cast",
    "ceil",
    "ceiling",
    "char",
    "char_length",
    "character_length",
    "charset",
    "coalesce",
    "coercibility",
    "collation",
    "compress",
    "concat",
    "concat_ws",
    "connection_id",
    "conv",
    "convert",
    "convert_tz",
    "cos",
    "cot",
    "count",
    "crc32",
    "cume_dist",
    "curdate",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "curtime",
    "database",
    "date",
    "date_add",
    "date_format",
    "date_sub",
    "datediff",
    "day",
    "dayname",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "degrees",
    "dense_rank",
    "elt",
    "exp",
    "export_set",
    "extract",
    "field",
    "find_in_set",
    "first_value",
    "floor",
    "format",
    "found_rows",
    "from_base64",
    "from_days",
    "from_unixtime",
    "get_format",
    "greatest",
    "group_concat",
    "hex",
    "hour",
    "if",
    "ifnull",
    "inet6_aton",
    "inet6_ntoa",
    "inet_aton",
    "inet_ntoa",
    "insert",
    "instr",
    "interval",
    "is_free_lock",
    "is_ipv4",
    "is_ipv6",
    "is_used_lock",
    "isnull",
    "json_array",
    "json_array_append",
    "json_array_insert",
    "json_arrayagg",
    "json_contains",
    "json_contains_path",
    "json_depth",
    "json_extract",
    "json_insert",
    "json_keys",
    "json_length",
    "json_merge",
    "json_merge_patch",
    "json_merge_preserve",
    "json_object",
    "json_objectagg",
    "json_overlaps",
    "json_pretty",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_search",
    "json_set",
    "json_type",
    "json_unquote",
    "json_valid",
    "json_value",
    "lag",
    "last_day",
    "last_insert_id",
    "last_value",
    "lcase",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "locate",
    "log",
    "log10",
    "log2",
    "lower",
    "lpad",
    "ltrim",
    "make_set",
    "makedate",
    "maketime",
    "max",
    "md5",
    "microsecond",
    "mid",
    "min",
    "minute",
    "mod",
    "month",
    "monthname",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "oct",
    "octet_length",
    "ord",
    "percent_rank",
    "period_add",
    "period_diff",
    "pi",
    "position",
    "pow",
    "power",
    "quarter",
    "quote",
    "radians",
    "rand",
    "random_bytes",
    "rank",
    "regexp_instr",
    "regexp_replace",
    "regexp_substr",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_count",
    "row_number",
    "rpad",
    "rtrim",
    "schema",
    "sec_to_time",
    "second",
    "session_user",
    "sha",
    "sha1",
    "sha2",
    "sign",
    "sin",
    "sleep",
    "soundex",
    "space",
    "sqrt",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "str_to_date",
    "strcmp",
    "subdate",
    "substr",
    "substring",
    "substring_index",
    "subtime",
    "sum",
    "sysdate",
    "system_user",
    "tan",
    "time",
    "time_format",
    "time_to_sec",
    "timediff",
    "timestamp",
    "timestampadd",
    "timestampdiff",
    "to_base64",
    "to_days",
    "to_seconds",
    "trim",
    "truncate",
    "ucase",
    "uncompress",
    "uncompressed_length",
    "unhex",
    "unix_timestamp",
    "upper",
    "user",
    "utc_date",
    "utc_time",
    "utc_timestamp",
    "uuid",
    "uuid_short",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "week",
    "weekday",
    "weekofyear",
    "weight_string",
    "year",
    "yearweek",
];

#[cfg(test)]
mod tests;
