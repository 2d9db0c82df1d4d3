//! PostgreSQL statement classification on PostgreSQL's own parser.
//!
//! Each statement gets a base action from its type (and, for wrappers such
//! as `EXPLAIN ANALYZE`, `PREPARE`, `DECLARE`, from the statement inside),
//! then `walk` looks at everything below it and can only raise the action:
//! a writable CTE, a row lock, a side-effect function anywhere in the tree.

use std::cell::Cell;

use pg_query::NodeEnum;
use pg_query::protobuf::{self, ObjectType, TransactionStmtKind, VariableSetKind, a_const};

use super::code;
use super::names::{Resolver, truncate_identifier};
use super::settings::{SettingValue, classify_setting};
use super::walk::walk;
use super::{Classified, Context, PathChange, Statement};
use crate::policy::Action;

/// Longer input is refused unparsed: classification is on the hot path and
/// its cost grows with the input.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

/// What one classification consults besides the tree: names, and whether
/// the value of a numeric constant decided anything.
pub(super) struct Scope<'a> {
    pub(super) names: Resolver<'a>,
    pub(super) numbers_read: Cell<bool>,
}

/// Classifies every statement of `sql` in `context` (see `names` for how
/// unqualified names resolve, `catalogue` for what is user code).
///
/// Never panics; an empty string or one of only comments gives no
/// statements; anything the parser refuses gives one `unknown` statement.
pub fn classify_postgres(sql: &str, context: &Context<'_>) -> Classified {
    let scope = Scope {
        names: Resolver::new(context.search_paths, context.user, context.catalogue),
        numbers_read: Cell::new(false),
    };
    let statements = classify_all(sql, &scope);
    Classified {
        statements,
        numbers_matter: scope.numbers_read.get(),
    }
}

fn classify_all(sql: &str, scope: &Scope<'_>) -> Vec<Statement> {
    if sql.len() > MAX_SQL_BYTES {
        let mut s = Statement::new(Action::Unknown, "too_large");
        s.reason = Some(format!(
            "statement text of {} bytes exceeds the {MAX_SQL_BYTES}-byte limit",
            sql.len()
        ));
        return vec![s];
    }
    let parsed = match pg_query::parse(sql, 0) {
        Ok(parsed) => parsed,
        Err(pg_query::Error::Decode(_)) => {
            // pg_query hands the tree over as protobuf, whose decoder stops
            // at 100 nested messages: about 50 chained operators (`a || b
            // || …`) or 30 nested subqueries. Deny rather than guess.
            return vec![unparsed(
                "statement nests too deeply for the parser interface (protobuf recursion limit)"
                    .into(),
            )];
        }
        Err(e) => return vec![unparsed(e.to_string())],
    };
    parsed
        .protobuf
        .stmts
        .iter()
        .map(
            |raw| match raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                Some(node) => {
                    let mut s = classify(node, scope);
                    // The statement's own kind first; calls inside it
                    // (set_config, advisory locks) were noted by classify.
                    if let Some(what) = outlives_transaction(node) {
                        s.outlives_transaction = Some(what);
                    }
                    if scope.names.take_unresolved() {
                        s.raise(
                            Action::Unknown,
                            "the session's search_path is not known (too many possible paths): \
                             qualify names with their schema, or SET search_path on its own outside a transaction"
                                .into(),
                        );
                    }
                    s
                }
                None => unparsed("empty statement node".into()),
            },
        )
        .collect()
}

/// Session state a statement creates that its transaction's end does not
/// undo.
fn outlives_transaction(node: &NodeEnum) -> Option<&'static str> {
    use VariableSetKind as K;
    /// `CURSOR_OPT_HOLD` in PostgreSQL's parsenodes.h.
    const CURSOR_OPT_HOLD: i32 = 0x0020;
    let temporary = |rel: Option<&protobuf::RangeVar>| rel.is_some_and(|r| r.relpersistence == "t");
    match node {
        NodeEnum::VariableSetStmt(v) => {
            let kind = VariableSetKind::try_from(v.kind).unwrap_or(K::Undefined);
            let session = match kind {
                K::VarSetMulti => v.name.eq_ignore_ascii_case("session characteristics"),
                _ => !v.is_local,
            };
            session.then_some("a session-level SET or RESET")
        }
        NodeEnum::PrepareStmt(_) => Some("PREPARE"),
        NodeEnum::DeallocateStmt(_) => Some("DEALLOCATE"),
        NodeEnum::ListenStmt(_) => Some("LISTEN"),
        NodeEnum::DiscardStmt(_) => Some("DISCARD"),
        NodeEnum::DeclareCursorStmt(d) if d.options & CURSOR_OPT_HOLD != 0 => {
            Some("a WITH HOLD cursor")
        }
        NodeEnum::CreateStmt(c) if temporary(c.relation.as_ref()) => Some("a temporary table"),
        NodeEnum::CreateTableAsStmt(c)
            if temporary(c.into.as_ref().and_then(|i| i.rel.as_ref())) =>
        {
            Some("a temporary table")
        }
        NodeEnum::ViewStmt(v) if temporary(v.view.as_ref()) => Some("a temporary view"),
        NodeEnum::CreateSeqStmt(c) if temporary(c.sequence.as_ref()) => {
            Some("a temporary sequence")
        }
        _ => None,
    }
}

fn unparsed(message: String) -> Statement {
    let mut s = Statement::new(Action::Unknown, "unparsed");
    s.reason = Some(message);
    s
}

fn classify(node: &NodeEnum, scope: &Scope<'_>) -> Statement {
    match node {
        NodeEnum::ExplainStmt(e) => explain(e, scope),
        NodeEnum::PrepareStmt(p) => {
            let inner = inner(p.query.as_deref(), scope);
            let mut s = inner.clone();
            s.kind = "prepare".into();
            s.prepare = Some((p.name.clone(), Box::new(inner)));
            s
        }
        NodeEnum::DeclareCursorStmt(d) => {
            let mut s = inner(d.query.as_deref(), scope);
            s.kind = "declare_cursor".into();
            s
        }
        _ => {
            let findings = walk(node);
            let mut s = base(node, scope);
            s.tables = scope.names.resolve_all(&findings.relations);
            let (tables, schemas) = named_objects(node, scope);
            s.tables.extend(tables);
            s.schemas.extend(schemas);
            code::apply_findings(&mut s, &findings, scope);
            if s.kind.is_empty() {
                s.kind = kind_from_type_name(findings.root);
            }
            s.finish();
            s
        }
    }
}

/// The statement inside a wrapper; a wrapper without one (which the parser
/// never produces) is unknown.
fn inner(query: Option<&protobuf::Node>, scope: &Scope<'_>) -> Statement {
    match query.and_then(|n| n.node.as_ref()) {
        Some(node) => classify(node, scope),
        None => unparsed("wrapper without a statement".into()),
    }
}

/// `EXPLAIN` only plans; `EXPLAIN ANALYZE` runs the statement, so it is the
/// statement. An `analyze` option counts unless explicitly false.
fn explain(e: &protobuf::ExplainStmt, scope: &Scope<'_>) -> Statement {
    let analyze = e.options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze") => !d
            .arg
            .as_deref()
            .and_then(|v| value_text(v, scope))
            .is_some_and(|v| is_false(&v)),
        _ => false,
    });
    let inner = inner(e.query.as_deref(), scope);
    if analyze {
        let mut s = inner;
        if s.action != Action::Read {
            s.reason = Some(match s.reason.take() {
                Some(r) => format!("EXPLAIN ANALYZE executes the statement: {r}"),
                None => "EXPLAIN ANALYZE executes the statement".into(),
            });
        }
        s
    } else {
        // Planning alone runs no user code the gateway could miss: what it
        // evaluates early are immutable built-ins.
        let mut s = Statement::new(Action::Read, "explain");
        s.tables = inner.tables;
        s.finish();
        s
    }
}

/// The action a statement type needs by itself, before looking inside.
/// An empty kind means "name it after its type".
fn base(node: &NodeEnum, scope: &Scope<'_>) -> Statement {
    use Action::*;
    let (action, kind, reason): (Action, &str, Option<&str>) = match node {
        NodeEnum::SelectStmt(_) => (Read, "select", None),
        NodeEnum::InsertStmt(_) => (Write, "insert", None),
        NodeEnum::UpdateStmt(_) => (Write, "update", None),
        NodeEnum::DeleteStmt(_) => (Write, "delete", None),
        NodeEnum::MergeStmt(_) => (Write, "merge", None),
        NodeEnum::TruncateStmt(_) => (Write, "truncate", None),
        NodeEnum::LockStmt(_) => (Write, "lock", Some("LOCK takes table locks")),
        NodeEnum::CallStmt(_) => (Write, "call", Some("CALL runs a procedure")),
        NodeEnum::DoStmt(_) => (Write, "do", Some("DO block runs arbitrary code")),
        NodeEnum::RefreshMatViewStmt(_) => (Write, "refresh_materialized_view", None),
        NodeEnum::CopyStmt(c) => return copy(c),
        NodeEnum::CreateTableAsStmt(c) => {
            let kind = if c.is_select_into {
                "select_into"
            } else if c.objtype == ObjectType::ObjectMatview as i32 {
                "create_materialized_view"
            } else {
                "create_table_as"
            };
            (Ddl, kind, None)
        }
        NodeEnum::ExecuteStmt(e) => {
            let mut s = Statement::new(Unknown, "execute");
            s.execute = Some(e.name.clone());
            s.reason = Some(format!(
                "EXECUTE {} runs a prepared statement; resolve it to its PREPARE",
                e.name
            ));
            return s;
        }
        NodeEnum::DeallocateStmt(_) => (Session, "deallocate", None),
        NodeEnum::ClosePortalStmt(_) => (Read, "close", None),
        NodeEnum::FetchStmt(f) => (Read, if f.ismove { "move" } else { "fetch" }, None),
        NodeEnum::ListenStmt(_) => (Session, "listen", None),
        NodeEnum::UnlistenStmt(_) => (Session, "unlisten", None),
        NodeEnum::NotifyStmt(_) => (Session, "notify", None),
        NodeEnum::VariableShowStmt(_) => (Read, "show", None),
        NodeEnum::VariableSetStmt(v) => return set(v, scope),
        NodeEnum::AlterSystemStmt(_) => (
            Admin,
            "alter_system",
            Some("ALTER SYSTEM changes the server configuration"),
        ),
        NodeEnum::TransactionStmt(t) => return transaction(t, scope),
        NodeEnum::ConstraintsSetStmt(_) => (Transaction, "set_constraints", None),
        NodeEnum::DiscardStmt(d) => {
            if d.target == protobuf::DiscardMode::DiscardAll as i32 {
                (
                    Admin,
                    "discard_all",
                    Some("DISCARD ALL resets every setting, including read-only mode"),
                )
            } else {
                (Session, "discard", None)
            }
        }
        NodeEnum::CheckPointStmt(_) => (
            Admin,
            "checkpoint",
            Some("CHECKPOINT is server maintenance"),
        ),
        NodeEnum::LoadStmt(_) => (
            Admin,
            "load",
            Some("LOAD loads a shared library into the server"),
        ),
        NodeEnum::VacuumStmt(v) => (
            Admin,
            if v.is_vacuumcmd { "vacuum" } else { "analyze" },
            Some("maintenance"),
        ),
        NodeEnum::ClusterStmt(_) => (Admin, "cluster", Some("maintenance")),
        NodeEnum::ReindexStmt(_) => (Admin, "reindex", Some("maintenance")),
        NodeEnum::GrantStmt(g) => (
            Admin,
            if g.is_grant { "grant" } else { "revoke" },
            Some("changes privileges"),
        ),
        NodeEnum::GrantRoleStmt(g) => (
            Admin,
            if g.is_grant {
                "grant_role"
            } else {
                "revoke_role"
            },
            Some("changes role membership"),
        ),
        NodeEnum::AlterDefaultPrivilegesStmt(_) => (Admin, "", Some("changes privileges")),
        NodeEnum::CreateRoleStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::DropRoleStmt(_)
        | NodeEnum::DropOwnedStmt(_)
        | NodeEnum::ReassignOwnedStmt(_) => (Admin, "", Some("manages roles")),
        NodeEnum::CreatedbStmt(_)
        | NodeEnum::DropdbStmt(_)
        | NodeEnum::AlterDatabaseStmt(_)
        | NodeEnum::AlterDatabaseSetStmt(_)
        | NodeEnum::AlterDatabaseRefreshCollStmt(_)
        | NodeEnum::CreateTableSpaceStmt(_)
        | NodeEnum::DropTableSpaceStmt(_)
        | NodeEnum::AlterTableSpaceOptionsStmt(_)
        | NodeEnum::AlterTableMoveAllStmt(_) => {
            (Admin, "", Some("manages databases or tablespaces"))
        }
        NodeEnum::CreateSubscriptionStmt(_)
        | NodeEnum::AlterSubscriptionStmt(_)
        | NodeEnum::DropSubscriptionStmt(_)
        | NodeEnum::CreatePublicationStmt(_)
        | NodeEnum::AlterPublicationStmt(_) => (Admin, "", Some("manages replication")),
        NodeEnum::CreateEventTrigStmt(_)
        | NodeEnum::AlterEventTrigStmt(_)
        | NodeEnum::CreatePlangStmt(_)
        | NodeEnum::CreateFdwStmt(_)
        | NodeEnum::AlterFdwStmt(_)
        | NodeEnum::CreateForeignServerStmt(_)
        | NodeEnum::AlterForeignServerStmt(_)
        | NodeEnum::CreateUserMappingStmt(_)
        | NodeEnum::AlterUserMappingStmt(_)
        | NodeEnum::DropUserMappingStmt(_) => (
            Admin,
            "",
            Some("superuser-level object (event trigger, language, foreign server, user mapping)"),
        ),
        NodeEnum::DropStmt(d) => {
            let kind = match ObjectType::try_from(d.remove_type) {
                Ok(t) => format!("drop_{}", object_type_name(t)),
                Err(_) => "drop".into(),
            };
            return Statement::new(Ddl, &kind);
        }
        NodeEnum::CreateStmt(_) => (Ddl, "create_table", None),
        NodeEnum::IndexStmt(_) => (Ddl, "create_index", None),
        NodeEnum::ViewStmt(_) => (Ddl, "create_view", None),
        NodeEnum::RuleStmt(_) => (Ddl, "create_rule", None),
        NodeEnum::CreateTrigStmt(_) => (Ddl, "create_trigger", None),
        NodeEnum::CreateSeqStmt(_) => (Ddl, "create_sequence", None),
        NodeEnum::CommentStmt(_) => (Ddl, "comment", None),
        NodeEnum::SecLabelStmt(_) => (Ddl, "security_label", None),
        // Every other statement the parser knows creates, alters or drops
        // some object; a statement type added in a later PostgreSQL falls
        // here too, and is at least DDL.
        _ => (Ddl, "", None),
    };
    let mut s = Statement::new(action, kind);
    s.reason = reason.map(str::to_owned);
    s
}

fn object_type_name(t: ObjectType) -> String {
    t.as_str_name()
        .trim_start_matches("OBJECT_")
        .to_ascii_lowercase()
}

/// `CamelCaseStmt` → `camel_case`, for statement types without a curated kind.
fn kind_from_type_name(name: &str) -> String {
    let name = name.strip_suffix("Stmt").unwrap_or(name);
    let mut kind = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            kind.push('_');
        }
        kind.push(c.to_ascii_lowercase());
    }
    if kind.is_empty() {
        "statement".into()
    } else {
        kind
    }
}

/// `COPY`: to the client is a read, from the client a write; anything that
/// touches the server's files or runs a program is admin.
fn copy(c: &protobuf::CopyStmt) -> Statement {
    let (action, kind, reason) = match (c.is_from, c.is_program, c.filename.is_empty()) {
        (true, true, _) => (
            Action::Admin,
            "copy_from_program",
            Some("COPY runs a program on the server"),
        ),
        (false, true, _) => (
            Action::Admin,
            "copy_to_program",
            Some("COPY runs a program on the server"),
        ),
        (true, false, false) => (
            Action::Admin,
            "copy_from_file",
            Some("COPY reads a server-side file"),
        ),
        (false, false, false) => (
            Action::Admin,
            "copy_to_file",
            Some("COPY writes a server-side file"),
        ),
        (true, false, true) => (Action::Write, "copy_from", None),
        (false, false, true) => (Action::Read, "copy_to", None),
    };
    let mut s = Statement::new(action, kind);
    s.reason = reason.map(str::to_owned);
    s
}

/// `BEGIN`/`START TRANSACTION`, `COMMIT`, savepoints, two-phase commit.
fn transaction(t: &protobuf::TransactionStmt, scope: &Scope<'_>) -> Statement {
    use TransactionStmtKind as K;
    let kind = TransactionStmtKind::try_from(t.kind).unwrap_or(K::Undefined);
    let (action, name, reason) = match kind {
        K::TransStmtBegin | K::TransStmtStart => {
            if transaction_modes_read_write(&t.options, scope) {
                (
                    Action::Admin,
                    "begin_read_write",
                    Some("READ WRITE overrides the read-only mode the gateway enforces"),
                )
            } else {
                (Action::Transaction, "begin", None)
            }
        }
        K::TransStmtCommit => (Action::Transaction, "commit", None),
        K::TransStmtRollback => (Action::Transaction, "rollback", None),
        K::TransStmtSavepoint => (Action::Transaction, "savepoint", None),
        K::TransStmtRelease => (Action::Transaction, "release_savepoint", None),
        K::TransStmtRollbackTo => (Action::Transaction, "rollback_to_savepoint", None),
        K::TransStmtPrepare => (
            Action::Admin,
            "prepare_transaction",
            Some("two-phase commit"),
        ),
        K::TransStmtCommitPrepared => (Action::Admin, "commit_prepared", Some("two-phase commit")),
        K::TransStmtRollbackPrepared => {
            (Action::Admin, "rollback_prepared", Some("two-phase commit"))
        }
        K::Undefined => (
            Action::Unknown,
            "transaction",
            Some("unrecognised transaction statement"),
        ),
    };
    let mut s = Statement::new(action, name);
    s.reason = reason.map(str::to_owned);
    s
}

/// Whether a list of transaction modes (`BEGIN …`, `SET TRANSACTION …`)
/// asks for READ WRITE. `transaction_read_only` with anything but a true
/// value counts.
fn transaction_modes_read_write(options: &[protobuf::Node], scope: &Scope<'_>) -> bool {
    options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname == "transaction_read_only" => !d
            .arg
            .as_deref()
            .and_then(|v| value_text(v, scope))
            .is_some_and(|v| is_true(&v)),
        _ => false,
    })
}

/// `SET`, `RESET`, `SET ROLE`, `SET SESSION AUTHORIZATION`,
/// `SET TRANSACTION …`, `SET SESSION CHARACTERISTICS …`.
fn set(v: &protobuf::VariableSetStmt, scope: &Scope<'_>) -> Statement {
    use VariableSetKind as K;
    let kind = VariableSetKind::try_from(v.kind).unwrap_or(K::Undefined);
    let name = v.name.to_ascii_lowercase();
    match kind {
        K::VarResetAll => {
            let mut s = Statement::new(Action::Admin, "reset_all");
            s.reason = Some("RESET ALL resets read-only mode and the role".into());
            s
        }
        K::VarSetMulti => match name.as_str() {
            "transaction" | "session characteristics" => {
                let read_write = transaction_modes_read_write(&v.args, scope);
                let (action, kind) = match (name.as_str(), read_write) {
                    (_, true) => (Action::Admin, "set_transaction_read_write"),
                    ("transaction", false) => (Action::Transaction, "set_transaction"),
                    _ => (Action::Session, "set_session_characteristics"),
                };
                let mut s = Statement::new(action, kind);
                if read_write {
                    s.reason =
                        Some("READ WRITE overrides the read-only mode the gateway enforces".into());
                }
                s
            }
            "transaction snapshot" => {
                Statement::new(Action::Transaction, "set_transaction_snapshot")
            }
            _ => {
                let mut s = Statement::new(Action::Admin, "set");
                s.reason = Some(format!("unrecognised SET form {name}"));
                s
            }
        },
        K::VarSetValue | K::VarSetDefault | K::VarSetCurrent | K::VarReset | K::Undefined => {
            let reset = matches!(kind, K::VarReset);
            let value = match kind {
                K::VarSetValue => {
                    let values: Vec<String> =
                        v.args.iter().filter_map(|a| value_text(a, scope)).collect();
                    Some(values.join(","))
                }
                _ => None,
            };
            let setting = match (kind, &value) {
                (K::VarSetValue, Some(v)) => SettingValue::Literal(v),
                // FROM CURRENT keeps the value as it is: no safer or worse
                // than going back to the session's start value.
                (K::VarSetDefault | K::VarReset | K::VarSetCurrent, _) => SettingValue::Default,
                _ => SettingValue::Computed,
            };
            let (action, reason) = classify_setting(&name, setting);
            let label = match (name.as_str(), reset) {
                ("role", false) => "set_role",
                ("role", true) => "reset_role",
                ("session_authorization", false) => "set_session_authorization",
                ("session_authorization", true) => "reset_session_authorization",
                (_, false) => "set",
                (_, true) => "reset",
            };
            let mut s = Statement::new(action, label);
            s.reason = reason;
            if name == "search_path" {
                s.search_path_is_local = v.is_local;
                s.sets_search_path = match kind {
                    // Each value is one schema name exactly as written (the
                    // server quotes it as an identifier), commas and case
                    // included; only its length is cut.
                    K::VarSetValue => Some(PathChange::To(
                        v.args
                            .iter()
                            .filter_map(|a| value_text(a, scope))
                            .map(|mut schema| {
                                truncate_identifier(&mut schema);
                                schema
                            })
                            .collect(),
                    )),
                    K::VarSetDefault | K::VarReset => Some(PathChange::Default),
                    // FROM CURRENT: the path stays what it is.
                    _ => None,
                };
            }
            s
        }
    }
}

/// A constant as text: `'x'`, `x`, `1`, `true`. Reading a number notes
/// that the verdict depends on it, so that the verdict cache, which merges
/// texts differing only in numbers, keeps this text apart.
fn value_text(node: &protobuf::Node, scope: &Scope<'_>) -> Option<String> {
    let number = |text: String| {
        scope.numbers_read.set(true);
        Some(text)
    };
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            a_const::Val::Sval(s) => Some(s.sval.clone()),
            a_const::Val::Ival(i) => number(i.ival.to_string()),
            a_const::Val::Fval(f) => number(f.fval.clone()),
            a_const::Val::Boolval(b) => Some(b.boolval.to_string()),
            a_const::Val::Bsval(b) => Some(b.bsval.clone()),
        },
        NodeEnum::String(s) => Some(s.sval.clone()),
        NodeEnum::Integer(i) => number(i.ival.to_string()),
        NodeEnum::Float(f) => number(f.fval.clone()),
        NodeEnum::Boolean(b) => Some(b.boolval.to_string()),
        _ => None,
    }
}

pub(super) fn is_false(v: &str) -> bool {
    ["false", "off", "0"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
}

pub(super) fn is_true(v: &str) -> bool {
    ["true", "on", "1"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

/// Objects named by plain name lists rather than relation nodes, as
/// `(tables, schemas)`: `DROP TABLE a.b`, `COMMENT ON TABLE a.b`,
/// `CREATE SCHEMA s`, `DROP SCHEMA s`.
fn named_objects(node: &NodeEnum, scope: &Scope<'_>) -> (Vec<String>, Vec<String>) {
    const RELATIONS: [ObjectType; 6] = [
        ObjectType::ObjectTable,
        ObjectType::ObjectView,
        ObjectType::ObjectMatview,
        ObjectType::ObjectSequence,
        ObjectType::ObjectIndex,
        ObjectType::ObjectForeignTable,
    ];
    let is_relation = |t: i32| RELATIONS.iter().any(|r| *r as i32 == t);
    match node {
        NodeEnum::DropStmt(d) if is_relation(d.remove_type) => {
            let mut tables = Vec::new();
            for o in &d.objects {
                scope
                    .names
                    .resolve_name_list(&name_parts(o, scope), &mut tables);
            }
            (tables, Vec::new())
        }
        NodeEnum::DropStmt(d) if d.remove_type == ObjectType::ObjectSchema as i32 => (
            Vec::new(),
            d.objects
                .iter()
                .filter_map(|o| value_text(o, scope))
                .collect(),
        ),
        NodeEnum::CommentStmt(c) if is_relation(c.objtype) => {
            let mut tables = Vec::new();
            if let Some(o) = c.object.as_deref() {
                scope
                    .names
                    .resolve_name_list(&name_parts(o, scope), &mut tables);
            }
            (tables, Vec::new())
        }
        NodeEnum::CreateSchemaStmt(c) if !c.schemaname.is_empty() => {
            (Vec::new(), vec![c.schemaname.clone()])
        }
        _ => (Vec::new(), Vec::new()),
    }
}

/// `List[String a, String b]` → `["a", "b"]`.
fn name_parts(node: &protobuf::Node, scope: &Scope<'_>) -> Vec<String> {
    match node.node.as_ref() {
        Some(NodeEnum::List(l)) => l
            .items
            .iter()
            .filter_map(|i| value_text(i, scope))
            .collect(),
        Some(NodeEnum::String(s)) => vec![s.sval.clone()],
        _ => Vec::new(),
    }
}
