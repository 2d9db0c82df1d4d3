//! What code a statement runs besides its own text: function calls (by
//! name, attribute notation, three-part names), operators and casts,
//! judged against the shipped built-ins list and the target's catalogue.
//! A session without `write` may run only provably built-in, side-effect
//! free code; anything else makes the statement need `write`.

use super::catalogue::{UserCode, UserObject};
use super::functions::{self, Effect};
use super::names::parse_identifier_list;
use super::postgres::{Scope, is_false, is_true};
use super::settings::{SettingValue, classify_setting};
use super::walk::{Call, Findings};
use super::{PathChange, Statement, builtins, stronger};
use crate::policy::Action;

/// Raises the statement's action by what was found inside it.
pub(super) fn apply_findings(s: &mut Statement, f: &Findings, scope: &Scope<'_>) {
    if let Some(kind) = f.nested_writes.first() {
        s.raise(
            Action::Write,
            format!(
                "contains a data-modifying {} (e.g. a writable CTE)",
                kind.to_ascii_uppercase()
            ),
        );
    }
    if f.row_locks {
        s.raise(Action::Write, "FOR UPDATE/SHARE takes row locks".into());
    }
    if f.select_into {
        s.raise(Action::Ddl, "SELECT INTO creates a table".into());
        if s.kind == "select" {
            s.kind = "select_into".into();
        }
    }
    for call in &f.calls {
        judge_call(s, call, scope);
    }
    for op in &f.operators {
        judge_operator(s, op, scope);
    }
    for cast in &f.casts {
        judge_cast(s, cast, scope);
    }
    let catalogue = scope.names.catalogue();
    if let Some(table) = s.tables.iter().find(|t| catalogue.relation_runs_code(t)) {
        let why = if catalogue.is_read() {
            format!(
                "reading {table} runs code that is not a side-effect-free built-in (a view or row-level policy calling it)"
            )
        } else {
            "the target's catalogue has not been read, so what reading a relation runs is unknown"
                .into()
        };
        s.runs_user_code(why);
    }
}

/// A function call, explicit or in attribute notation: admin-level and
/// named effects first, then whether it is provably a side-effect-free
/// built-in; anything else is user code.
fn judge_call(s: &mut Statement, call: &Call, scope: &Scope<'_>) {
    let Some((schema, function)) = functions::split_name(&call.name) else {
        s.raise(
            Action::Unknown,
            format!(
                "{}: not a function name PostgreSQL accepts",
                call.name.join(".")
            ),
        );
        return;
    };
    let shown = call.name.join(".");
    let user = user_code(schema, function, scope, |c, n| c.function(n));
    if user == UserCode::None {
        if functions::is_set_config(schema, function) {
            set_config(s, call);
            return;
        }
        if functions::takes_session_lock(schema, function) {
            s.outlives_transaction = Some("a session-level advisory lock");
        }
        if functions::names_sequence(schema, function)
            && let Some(Some(sequence)) = call.literal_args.first()
        {
            scope.names.resolve_text(sequence, &mut s.tables);
        }
    }
    if let Some(Effect { action, why }) = functions::effect_of(schema, function) {
        s.raise(action, format!("{shown}() {why}"));
    }
    match user {
        UserCode::In(objects) => {
            s.schemas.extend(schemas_of(objects));
            s.runs_user_code(format!("{shown}() is a user-defined function"));
        }
        UserCode::Unknown => s.runs_user_code(format!(
            "{shown}() cannot be told apart from user code (the target's catalogue is not known)"
        )),
        UserCode::None => match builtins::function(function) {
            Some(true) => {}
            Some(false) => s.runs_user_code(format!(
                "{shown}() is not a built-in known to be free of side effects"
            )),
            // In attribute notation a name that is no function is a column.
            None if call.attribute => {}
            None => s.runs_user_code(format!("{shown}() is not a built-in function")),
        },
    }
}

/// Which user-defined objects an unqualified or `schema`-qualified `name`
/// may resolve to, as the server resolves it: qualified, only that schema's;
/// unqualified, those in a schema of a possible path — except that one with
/// exactly a built-in's argument types loses to the built-in unless its
/// schema comes before `pg_catalog` in the path. An object in another
/// schema, qualified, is user code however it is looked up.
fn user_code(
    schema: Option<&str>,
    name: &str,
    scope: &Scope<'_>,
    lookup: impl Fn(&super::catalogue::Catalogue, &str) -> UserCode,
) -> UserCode {
    let in_schema = |schema: &str| {
        UserCode::In(vec![UserObject {
            schema: schema.to_owned(),
            same_as_builtin: false,
        }])
    };
    match schema {
        Some(schema) if !schema.eq_ignore_ascii_case("pg_catalog") => in_schema(schema),
        _ => match lookup(scope.names.catalogue(), name) {
            UserCode::In(objects) => {
                let path = if schema.is_some() {
                    None
                } else {
                    scope.names.path_schemas()
                };
                let reachable: Vec<UserObject> = objects
                    .into_iter()
                    .filter(|o| match (schema, path) {
                        (Some(_), _) => o.schema == "pg_catalog",
                        (None, Some(path)) => {
                            o.schema == "pg_catalog"
                                || (path.contains(&o.schema)
                                    && (!o.same_as_builtin
                                        || scope.names.before_catalog(&o.schema)))
                        }
                        // Unknown path: any schema may be on it, anywhere.
                        (None, None) => true,
                    })
                    .collect();
                if reachable.is_empty() {
                    UserCode::None
                } else {
                    UserCode::In(reachable)
                }
            }
            other => other,
        },
    }
}

/// The schemas of user objects, for schema policies.
fn schemas_of(objects: Vec<UserObject>) -> impl Iterator<Item = String> {
    objects.into_iter().map(|o| o.schema)
}

fn judge_operator(s: &mut Statement, op: &[String], scope: &Scope<'_>) {
    let Some((schema, symbol)) = functions::split_name(op) else {
        s.raise(
            Action::Unknown,
            format!("operator {}: not a name PostgreSQL accepts", op.join(".")),
        );
        return;
    };
    match user_code(schema, symbol, scope, |c, n| c.operator(n)) {
        UserCode::In(objects) => {
            s.schemas.extend(schemas_of(objects));
            s.runs_user_code(format!("operator {symbol} is user-defined"));
        }
        UserCode::Unknown => s.runs_user_code(format!(
            "operator {symbol} cannot be told apart from user code (the target's catalogue is not known)"
        )),
        UserCode::None => {
            if builtins::operator(symbol) != Some(true) {
                s.runs_user_code(format!(
                    "operator {symbol} is not a built-in known to be free of side effects"
                ));
            }
        }
    }
}

fn judge_cast(s: &mut Statement, type_name: &[String], scope: &Scope<'_>) {
    let Some((schema, name)) = functions::split_name(type_name) else {
        return;
    };
    let coded = match schema {
        // Qualified: user code only if that schema's type of that name is.
        Some(written) if !written.eq_ignore_ascii_case("pg_catalog") => {
            match scope.names.catalogue().coded_type(name) {
                UserCode::In(objects) if objects.iter().any(|o| o.schema == written) => {
                    UserCode::In(vec![UserObject {
                        schema: written.to_owned(),
                        same_as_builtin: false,
                    }])
                }
                UserCode::In(_) => UserCode::None,
                other => other,
            }
        }
        _ => user_code(schema, name, scope, |c, n| c.coded_type(n)),
    };
    match coded {
        UserCode::None => {}
        UserCode::In(objects) => {
            s.schemas.extend(schemas_of(objects));
            s.runs_user_code(format!(
                "a cast to {} runs user code (a constrained domain or a user-defined cast)",
                type_name.join(".")
            ));
        }
        UserCode::Unknown => s.runs_user_code(format!(
            "a cast to {} cannot be told apart from user code (the target's catalogue is not known)",
            type_name.join(".")
        )),
    }
}

/// `set_config(name, value, is_local)`: classified by the setting it sets.
fn set_config(s: &mut Statement, call: &Call) {
    let is_local = call.literal_args.get(2).cloned().flatten();
    // Only a literal true surely ends with the transaction.
    if !is_local.as_deref().is_some_and(is_true) {
        s.outlives_transaction = Some("set_config() without is_local true");
    }
    let setting = call
        .literal_args
        .first()
        .cloned()
        .flatten()
        .filter(|_| !call.named_args && !call.attribute);
    let Some(setting) = setting else {
        s.raise(
            Action::Admin,
            "set_config() with a setting name that is not a literal".into(),
        );
        return;
    };
    let value = call.literal_args.get(1).cloned().flatten();
    let as_set = match &value {
        Some(v) => SettingValue::Literal(v),
        None => SettingValue::Computed,
    };
    let (action, reason) = classify_setting(&setting, as_set);
    s.raise(
        action,
        reason.map_or_else(
            || format!("set_config('{setting}')"),
            |r| format!("set_config(): {r}"),
        ),
    );
    if setting.eq_ignore_ascii_case("search_path") {
        let Some(value) = value else {
            // Harmless in itself, but table resolution would no longer
            // know the path: a way around schema limits.
            s.raise(
                Action::Admin,
                "set_config('search_path') with a value that is not a literal".into(),
            );
            return;
        };
        s.sets_search_path = Some(PathChange::To(parse_identifier_list(&value)));
        // Local unless a literal false: an unsure path is added to the
        // possible ones, not made the only one.
        s.search_path_is_local = !is_local.as_deref().is_some_and(is_false);
    }
}

impl Statement {
    /// Raises the action to `action` if that is stronger, with its reason.
    pub(super) fn raise(&mut self, action: Action, reason: String) {
        if stronger(action, self.action) {
            self.action = action;
            self.reason = Some(reason);
        }
    }

    /// The statement runs code the gateway cannot see: it needs `write`,
    /// and without it is `unknown` (see `Statement::runs_user_code`).
    pub(super) fn runs_user_code(&mut self, reason: String) {
        if !self.runs_user_code {
            self.runs_user_code = true;
            if self.action != Action::Write {
                self.raise(Action::Write, reason);
            } else if self.reason.is_none() {
                self.reason = Some(reason);
            }
        }
    }
}
