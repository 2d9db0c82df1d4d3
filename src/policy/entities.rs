//! Builds the Cedar request and entity store for one decision from an
//! `AccessRequest`. Every uid is built from a type name and an `EntityId`,
//! never by formatting Cedar text, so a `sub` or group containing `"` or
//! `::` is just data and cannot inject syntax.

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
    Schema,
};
use time::OffsetDateTime;

use super::{AccessRequest, Action};

/// The id of the single `Gateway` entity, resource of `administer`.
pub const GATEWAY_ID: &str = "idgate";

/// A request ready for `Authorizer::is_authorized`.
pub(crate) struct CedarQuery {
    pub request: Request,
    pub entities: Entities,
    /// The resource as Cedar prints it, for "no policy permits" messages.
    pub resource: EntityUid,
    pub principal: EntityUid,
}

pub(crate) fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(type_name)
        .map_err(|e| format!("invalid entity type `{type_name}`: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn strings<'a>(values: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .into_iter()
            .map(|v| RestrictedExpression::new_string(v.clone())),
    )
}

/// Builds entities, context and request, checking all of them against the
/// schema. Any error is returned as text: the caller turns it into a deny.
pub(crate) fn build(
    req: &AccessRequest<'_>,
    now_utc: OffsetDateTime,
    schema: &Schema,
) -> Result<CedarQuery, String> {
    let identity = req.identity;
    let principal = uid("User", &identity.principal_id())?;

    let groups: BTreeSet<&String> = identity.groups.iter().collect();
    let mut group_uids = Vec::with_capacity(groups.len());
    let mut entities = Vec::with_capacity(groups.len() + 3);
    for group in groups {
        let group_uid = uid("Group", group)?;
        entities.push(Entity::new_no_attrs(group_uid.clone(), HashSet::new()));
        group_uids.push(group_uid);
    }

    // Only string claims become tags: the schema types tags as String, and
    // rendering numbers or objects as text would invite wrong comparisons.
    let tags = identity.claims.iter().filter_map(|(name, value)| {
        value.as_str().map(|s| {
            (
                name.clone(),
                RestrictedExpression::new_string(s.to_string()),
            )
        })
    });
    let user = Entity::new_with_tags(
        principal.clone(),
        [
            (
                "issuer".to_string(),
                RestrictedExpression::new_string(identity.issuer.clone()),
            ),
            (
                "sub".to_string(),
                RestrictedExpression::new_string(identity.sub.clone()),
            ),
            (
                "identity".to_string(),
                RestrictedExpression::new_string(identity.identity.clone()),
            ),
        ],
        group_uids,
        tags,
    )
    .map_err(|e| format!("cannot build principal entity: {e}"))?;
    entities.push(user);

    // `::ffff:10.1.2.3` from a dual-stack listener is the IPv4 client
    // 10.1.2.3; evaluated as IPv6 it would escape every IPv4 range rule.
    let client_ip = (
        "client_ip".to_string(),
        RestrictedExpression::new_ip(req.context.client_address.to_canonical().to_string()),
    );
    let hour = (
        "hour_utc".to_string(),
        RestrictedExpression::new_long(i64::from(now_utc.hour())),
    );
    let weekday = (
        "weekday_utc".to_string(),
        RestrictedExpression::new_long(i64::from(now_utc.weekday().number_days_from_monday())),
    );
    let environment = ("environment".to_string(), strings(&req.context.environment));

    let resource;
    let context_pairs;
    if req.action == Action::Administer {
        resource = uid("Gateway", GATEWAY_ID)?;
        entities.push(Entity::new_no_attrs(resource.clone(), HashSet::new()));
        context_pairs = vec![client_ip, hour, weekday];
    } else {
        // "TARGET/ROLE" must split one way only: with a '/' in the target,
        // `a/b` + `c` and `a` + `b/c` would be the same Role and a policy
        // written for one would grant the other.
        if req.target.contains('/') {
            return Err(format!(
                "target name `{}` contains '/', which makes Role ids ambiguous",
                req.target
            ));
        }
        let target = uid("Target", req.target)?;
        entities.push(
            Entity::new(
                target.clone(),
                [("environment".to_string(), strings(&req.context.environment))].into(),
                HashSet::new(),
            )
            .map_err(|e| format!("cannot build target entity: {e}"))?,
        );
        resource = uid("Role", &format!("{}/{}", req.target, req.role))?;
        entities.push(
            Entity::new(
                resource.clone(),
                [
                    (
                        "target".to_string(),
                        RestrictedExpression::new_string(req.target.to_string()),
                    ),
                    (
                        "name".to_string(),
                        RestrictedExpression::new_string(req.role.to_string()),
                    ),
                ]
                .into(),
                [target].into(),
            )
            .map_err(|e| format!("cannot build role entity: {e}"))?,
        );
        let mut pairs = vec![client_ip, hour, weekday, environment];
        if req.action != Action::Connect {
            // Statement actions require these fields in the schema; a
            // statement without a kind is refused rather than guessed.
            let kind =
                req.context.statement_kind.clone().ok_or_else(|| {
                    format!("action {} needs a statement kind", req.action.as_str())
                })?;
            pairs.push((
                "statement_kind".to_string(),
                RestrictedExpression::new_string(kind),
            ));
            pairs.push(("tables".to_string(), strings(&req.context.tables)));
            pairs.push(("schemas".to_string(), strings(&req.context.schemas)));
        }
        context_pairs = pairs;
    }

    let action = uid("Action", req.action.as_str())?;
    let context =
        Context::from_pairs(context_pairs).map_err(|e| format!("cannot build context: {e}"))?;
    let entities = Entities::from_entities(entities, Some(schema))
        .map_err(|e| format!("entities do not match the schema: {e}"))?;
    let request = Request::new(
        principal.clone(),
        action,
        resource.clone(),
        context,
        Some(schema),
    )
    .map_err(|e| format!("request does not match the schema: {e}"))?;
    Ok(CedarQuery {
        request,
        entities,
        resource,
        principal,
    })
}
