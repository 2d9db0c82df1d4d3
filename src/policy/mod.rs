//! Authorization with Cedar (SPEC §7): the shipped schema, the policy file
//! validated against it, per-request entities, and decisions that name the
//! policies that produced them.
//!
//! Only this module decides whether an action is allowed. It fails closed:
//! a policy that errors during evaluation, or a request that cannot be
//! expressed against the schema, is a deny that says why, never a skip.
//!
//! Code map: `schema.cedarschema` is the model policies are written
//! against, `entities` builds one request's entities and context, `error`
//! renders load problems with `file:line:col`, and `explain` is
//! `idgate policy explain`.
//!
//! Deviation from SPEC §7: the token's claims are *tags* on the `User`
//! (`principal.getTag("department")`), not a `claims` attribute, because a
//! strict-mode record needs a fixed set of fields and claims differ by
//! issuer. Only string-valued top-level claims become tags.

mod entities;
mod error;
pub mod explain;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::ffi::DetailedError;
use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, EntityUid, PolicyId,
    PolicySet, ResourceConstraint, Schema, ValidationMode, Validator,
};

use time::{OffsetDateTime, UtcOffset};

pub use entities::GATEWAY_ID;
pub use error::{PolicyError, PolicyProblem};

use crate::identity::Identity;

/// The Cedar schema policies are validated against; see the file for the
/// entity and action model.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

/// The annotation that names a policy: `@id("analysts-read")`.
const ID_ANNOTATION: &str = "id";

const PARSE_HINT: &str = "see https://docs.cedarpolicy.com/policies/syntax-policy.html; \
    a policy looks like `permit(principal in Group::\"analysts\", action == Action::\"connect\", resource == Role::\"orders/reader\");`";
const VALIDATION_HINT: &str = "policies are checked against idgate's schema (src/policy/schema.cedarschema): \
    entity types User, Group, Target, Role, Gateway; actions connect, read, write, ddl, admin, session, \
    transaction, unknown (resource Role) and administer (resource Gateway)";

/// What the caller wants to do. The statement actions come from the SQL
/// classifier; `Administer` is the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Connect,
    Read,
    Write,
    Ddl,
    Admin,
    Session,
    Transaction,
    Unknown,
    Administer,
}

impl Action {
    /// The Cedar action id, `Action::"<this>"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Read => "read",
            Action::Write => "write",
            Action::Ddl => "ddl",
            Action::Admin => "admin",
            Action::Session => "session",
            Action::Transaction => "transaction",
            Action::Unknown => "unknown",
            Action::Administer => "administer",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about the request that are not entities (the Cedar `context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Client IP address (`context.client_ip`). IPv4-mapped IPv6 addresses
    /// are evaluated as IPv4, so `10.0.0.0/8` matches `::ffff:10.1.2.3`.
    pub client_address: IpAddr,
    /// The target's environment tags, e.g. `["prod"]`.
    pub environment: Vec<String>,
    /// Classifier kind of the statement; required for statement actions,
    /// ignored for `connect` and `administer`.
    pub statement_kind: Option<String>,
    /// Tables the statement touches, schema-qualified.
    pub tables: Vec<String>,
    /// Schemas of `tables`.
    pub schemas: Vec<String>,
    /// The time of the decision, from which `hour_utc` and `weekday_utc`
    /// are derived; `None` means now. Tests and `policy explain --at` set
    /// it, so time-of-day rules are checked without waiting.
    pub now: Option<OffsetDateTime>,
}

impl Default for RequestContext {
    /// Unspecified client address (`0.0.0.0`, inside no range but
    /// `0.0.0.0/0`), no environment, no statement, the current time.
    fn default() -> RequestContext {
        RequestContext {
            client_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            environment: Vec::new(),
            statement_kind: None,
            tables: Vec::new(),
            schemas: Vec::new(),
            now: None,
        }
    }
}

impl RequestContext {
    /// The instant the decision is made for, in UTC.
    pub fn decision_time(&self) -> OffsetDateTime {
        self.now
            .map_or_else(OffsetDateTime::now_utc, |t| t.to_offset(UtcOffset::UTC))
    }
}

/// Where the gateway's policy decisions take the time from. Tests use a
/// fixed clock to check time-of-day rules through the whole gateway
/// without waiting for the hour to come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    #[default]
    System,
    Fixed(OffsetDateTime),
}

impl Clock {
    /// The value for `RequestContext::now`.
    pub fn now(self) -> Option<OffsetDateTime> {
        match self {
            Clock::System => None,
            Clock::Fixed(t) => Some(t),
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    pub identity: &'a Identity,
    /// Target name; ignored for `Administer`, whose resource is the gateway.
    pub target: &'a str,
    /// Role name within the target; ignored for `Administer`.
    pub role: &'a str,
    pub action: Action,
    pub context: RequestContext,
}

/// The answer, with the policy ids that produced it for audit and for the
/// client-facing denial message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Allowed: the permits that matched. Denied: the forbids that matched,
    /// or the policies that failed to evaluate; empty when nothing matched.
    pub policy_ids: Vec<String>,
    pub reason: String,
}

impl Decision {
    fn deny(policy_ids: Vec<String>, reason: String) -> Decision {
        Decision {
            allowed: false,
            policy_ids,
            reason,
        }
    }
}

/// How the role of a login was chosen; see `PolicyEngine::choose_role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChoice {
    /// The client named a role the target defines.
    Requested(String),
    /// The client named no role of the target, and the policy permits
    /// exactly one.
    OnlyPermitted(String),
    /// The client named no role of the target, and the policy permits none.
    NonePermitted,
    /// The client named no role of the target, and the policy permits
    /// several: the client must pick one of these.
    Ambiguous(Vec<String>),
}

impl RoleChoice {
    /// The chosen role, if there is one.
    pub fn role(&self) -> Option<&str> {
        match self {
            RoleChoice::Requested(r) | RoleChoice::OnlyPermitted(r) => Some(r),
            RoleChoice::NonePermitted | RoleChoice::Ambiguous(_) => None,
        }
    }
}

/// Loaded, validated policies plus the schema; cheap to share behind `Arc`.
#[derive(Debug)]
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    authorizer: Authorizer,
    warnings: Vec<String>,
}

impl PolicyEngine {
    /// Reads and validates the policy file named in `[policy] file`.
    pub fn load(path: &Path) -> Result<PolicyEngine, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::from_source(&text, &origin)
    }

    /// Parses and validates policy text; `origin` names it in errors.
    pub fn from_source(text: &str, origin: &str) -> Result<PolicyEngine, PolicyError> {
        let schema = builtin_schema()?;
        let parsed = PolicySet::from_str(text).map_err(|errors| {
            PolicyError::Invalid(
                errors
                    .iter()
                    .map(|e| {
                        let detail = DetailedError::from(e);
                        error::problem_from_detailed(origin, text, None, &detail, PARSE_HINT)
                    })
                    .collect(),
            )
        })?;
        let policies = rename_by_annotation(&parsed, text, origin)?;

        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        let problems: Vec<PolicyProblem> = validation
            .validation_errors()
            .map(|e| {
                let detail = DetailedError::from(e);
                error::problem_from_detailed(
                    origin,
                    text,
                    Some(e.policy_id().to_string()),
                    &detail,
                    VALIDATION_HINT,
                )
            })
            .collect();
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let warnings = validation
            .validation_warnings()
            .map(|w| {
                let detail = DetailedError::from(w);
                error::problem_from_detailed(
                    origin,
                    text,
                    Some(w.policy_id().to_string()),
                    &detail,
                    VALIDATION_HINT,
                )
                .to_string()
            })
            .collect();
        Ok(PolicyEngine {
            schema,
            policies,
            authorizer: Authorizer::new(),
            warnings,
        })
    }

    /// Validator warnings (e.g. a policy that can never apply), rendered
    /// like errors, for `check-config` to print.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Policy ids in the loaded set, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }

    pub fn authorize(&self, req: &AccessRequest<'_>) -> Decision {
        let query = match entities::build(req, req.context.decision_time(), &self.schema) {
            Ok(query) => query,
            Err(message) => {
                return Decision::deny(
                    Vec::new(),
                    format!("denied: cannot evaluate {}: {message}", req.action),
                );
            }
        };
        let response =
            self.authorizer
                .is_authorized(&query.request, &self.policies, &query.entities);
        let diagnostics = response.diagnostics();

        // Cedar skips a policy that errors and decides with the rest; for a
        // gateway that would turn a broken forbid into an allow, so any
        // error denies.
        let errors: Vec<_> = diagnostics.errors().collect();
        if !errors.is_empty() {
            let ids = errors
                .iter()
                .map(|e| match e {
                    cedar_policy::AuthorizationError::PolicyEvaluationError(pe) => {
                        pe.policy_id().to_string()
                    }
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Decision::deny(
                ids,
                format!("denied: policy evaluation failed: {}", messages.join("; ")),
            );
        }

        let mut ids: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        ids.sort();
        match response.decision() {
            CedarDecision::Allow => Decision {
                allowed: true,
                reason: format!("permitted by {}", ids.join(", ")),
                policy_ids: ids,
            },
            CedarDecision::Deny if ids.is_empty() => Decision::deny(
                ids,
                format!(
                    "no policy permits {} on {} for {}",
                    req.action, query.resource, query.principal
                ),
            ),
            CedarDecision::Deny => Decision {
                allowed: false,
                reason: format!("forbidden by {}", ids.join(", ")),
                policy_ids: ids,
            },
        }
    }

    /// The roles among `roles` the identity may `connect` as on `target`,
    /// in the order given. Used to pick the default role when the client
    /// names none or an unknown one (SPEC §4: only if exactly one).
    pub fn permitted_roles(
        &self,
        identity: &Identity,
        target: &str,
        roles: &[&str],
        ctx: &RequestContext,
    ) -> Vec<String> {
        roles
            .iter()
            .filter(|role| {
                self.authorize(&AccessRequest {
                    identity,
                    target,
                    role,
                    action: Action::Connect,
                    context: ctx.clone(),
                })
                .allowed
            })
            .map(|role| (*role).to_string())
            .collect()
    }

    /// Picks the role a login uses, as the gateway does (SPEC §4): the
    /// requested one if `roles` (the target's configured roles) contains
    /// it, whether or not the policy then permits it; otherwise the only
    /// role the caller may `connect` as.
    pub fn choose_role(
        &self,
        identity: &Identity,
        target: &str,
        roles: &[&str],
        requested: &str,
        ctx: &RequestContext,
    ) -> RoleChoice {
        if roles.contains(&requested) {
            return RoleChoice::Requested(requested.to_string());
        }
        let mut permitted = self.permitted_roles(identity, target, roles, ctx);
        match permitted.len() {
            0 => RoleChoice::NonePermitted,
            1 => RoleChoice::OnlyPermitted(permitted.remove(0)),
            _ => RoleChoice::Ambiguous(permitted),
        }
    }

    /// Whether no policy could ever permit `write` on `target`/`role`,
    /// for anyone: judged from the policies' scopes alone (a permit whose
    /// action scope may include `write` and whose resource scope may
    /// include the role counts, whatever its `when`), so a role it names
    /// is read-only for certain. `check-config` and `serve` use it to
    /// point out read-only roles whose upstream user can write.
    pub fn never_permits_write(&self, target: &str, role: &str) -> bool {
        let (Ok(write), Ok(role_uid), Ok(target_uid)) = (
            entities::uid("Action", Action::Write.as_str()),
            entities::uid("Role", &format!("{target}/{role}")),
            entities::uid("Target", target),
        ) else {
            return false;
        };
        let covers_role = |uid: &EntityUid| *uid == role_uid || *uid == target_uid;
        !self.policies.policies().any(|p| {
            let action = match p.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(a) => a == write,
                ActionConstraint::In(actions) => actions.contains(&write),
            };
            let resource = match p.resource_constraint() {
                ResourceConstraint::Any | ResourceConstraint::Is(_) => true,
                ResourceConstraint::Eq(uid) => uid == role_uid,
                ResourceConstraint::In(uid) | ResourceConstraint::IsIn(_, uid) => covers_role(&uid),
            };
            p.effect() == Effect::Permit && action && resource
        })
    }

    /// Whether this caller could be permitted `write` on the role at all,
    /// at the time and from the address in `ctx`: the `write` action is
    /// evaluated with `statement_kind` `""` and empty `tables` and
    /// `schemas` (a write that names nothing in particular).
    ///
    /// The relay uses it for defence in depth: a session for which this is
    /// false is put into upstream read-only mode, on top of the
    /// per-statement checks. Consequences for policy authors:
    /// - a forbid that depends on the kind or the tables (`… when
    ///   { context.tables.contains("public.payroll") }`) leaves this true,
    ///   and the statement checks enforce it;
    /// - a permit that names a kind or a table positively (`permit … when
    ///   { context.statement_kind == "insert" }`) makes this false, so such
    ///   a session is read-only upstream and its permitted writes fail
    ///   there. Write such grants as `containsAll` of an allowed set (true
    ///   for the empty set), or as a broad permit narrowed by forbids.
    ///
    /// An evaluation error is false, like every other error here.
    pub fn may_write(
        &self,
        identity: &Identity,
        target: &str,
        role: &str,
        ctx: &RequestContext,
    ) -> bool {
        self.authorize(&AccessRequest {
            identity,
            target,
            role,
            action: Action::Write,
            context: RequestContext {
                statement_kind: Some(String::new()),
                tables: Vec::new(),
                schemas: Vec::new(),
                ..ctx.clone()
            },
        })
        .allowed
    }
}

fn builtin_schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| PolicyError::Schema(DetailedError::from(&e).message))
}

/// Gives each policy the id from its `@id("…")` annotation, keeping Cedar's
/// `policyN` for the rest, and rejects templates and duplicate ids.
fn rename_by_annotation(
    parsed: &PolicySet,
    text: &str,
    origin: &str,
) -> Result<PolicySet, PolicyError> {
    let mut problems = Vec::new();
    if parsed.templates().next().is_some() {
        let offset = text
            .find("?principal")
            .or_else(|| text.find("?resource"))
            .unwrap_or(0);
        problems.push(PolicyProblem {
            location: error::location(origin, text, offset),
            policy_id: None,
            message: "policy templates (`?principal`, `?resource`) are not supported".into(),
            hint: "write the entity out, e.g. `principal in Group::\"analysts\"`".into(),
        });
    }

    // Cedar numbers policies in source order; keep that order so that
    // duplicate-id errors point at the later of the two.
    let mut ordered: Vec<_> = parsed.policies().collect();
    ordered.sort_by_key(|p| default_index(p.id()));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut renamed = PolicySet::new();
    for policy in ordered {
        let id = policy
            .annotation(ID_ANNOTATION)
            .map_or_else(|| policy.id().to_string(), str::to_string);
        if id.trim().is_empty() {
            problems.push(PolicyProblem {
                location: duplicate_location(origin, text, &id, 1),
                policy_id: None,
                message: "empty @id annotation".into(),
                hint: "write @id(\"a-name\"), or drop the annotation to get policyN".into(),
            });
            continue;
        }
        let count = seen.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            problems.push(PolicyProblem {
                location: duplicate_location(origin, text, &id, *count),
                policy_id: Some(id.clone()),
                message: format!("policy id `{id}` is used more than once"),
                hint: "give every policy a distinct @id(\"…\"); ids appear in audit records and denials".into(),
            });
            continue;
        }
        if let Err(e) = renamed.add(policy.new_id(PolicyId::new(&id))) {
            problems.push(PolicyProblem {
                location: origin.to_string(),
                policy_id: Some(id),
                message: e.to_string(),
                hint: "give every policy a distinct @id(\"…\")".into(),
            });
        }
    }
    if problems.is_empty() {
        Ok(renamed)
    } else {
        Err(PolicyError::Invalid(problems))
    }
}

/// `policy12` → 12; annotated ids sort after, which cannot happen for ids
/// fresh from the parser.
fn default_index(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Where the `nth` `@id("id")` annotation is, falling back to the start of
/// the file for a clash with an unannotated `policyN`.
fn duplicate_location(origin: &str, text: &str, id: &str, nth: usize) -> String {
    let needle = format!("\"{id}\"");
    let annotations: Vec<usize> = text
        .match_indices(&needle)
        .map(|(i, _)| i)
        .filter(|&i| {
            let before = text[..i].trim_end();
            before
                .strip_suffix('(')
                .is_some_and(|b| b.trim_end().ends_with("@id"))
        })
        .collect();
    let offset = annotations
        .get(nth - 1)
        .or(annotations.last())
        .copied()
        .unwrap_or(0);
    error::location(origin, text, offset)
}
