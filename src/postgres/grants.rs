//! Defence in depth for read-only grants: a role that no policy lets write
//! is safest when its upstream user cannot write either, so a statement the
//! classifier misjudged still fails at the server. `check-config` and
//! `serve` ask each such role's upstream user what it may change and say
//! so when the answer is anything.

use std::time::Duration;

use super::pool::{self, Pools, Variant};
use crate::policy::PolicyEngine;

/// How long asking one role may take before it is reported as unanswered.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// What makes a user able to change the database, one reason per row; no
/// rows for a SELECT-only user. `has_*_privilege` counts ownership,
/// superuser and `pg_write_all_data` membership as the server does.
const WRITE_GRANTS: &str = "SELECT reason FROM ( \
    SELECT 1 AS o, 'is a superuser' AS reason FROM pg_catalog.pg_roles \
      WHERE rolname = current_user AND rolsuper \
    UNION ALL SELECT 2, 'may insert, update, delete or truncate in ' || count(*) \
      || ' table(s), e.g. ' || min(format('%I.%I', n.nspname, c.relname)) \
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
      WHERE c.relkind IN ('r', 'p', 'v', 'f') \
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname !~ '^pg_(temp|toast)' \
      AND (pg_catalog.has_table_privilege(c.oid, 'DELETE, TRUNCATE') \
        OR pg_catalog.has_any_column_privilege(c.oid, 'INSERT, UPDATE')) \
      HAVING count(*) > 0 \
    UNION ALL SELECT 3, 'may advance ' || count(*) || ' sequence(s)' \
      FROM pg_catalog.pg_class c WHERE c.relkind = 'S' \
      AND CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'USAGE, UPDATE') END \
      HAVING count(*) > 0 \
    UNION ALL SELECT 4, 'may create objects in schema ' || string_agg(quote_ident(nspname), ', ') \
      FROM pg_catalog.pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' \
      AND pg_catalog.has_schema_privilege(oid, 'CREATE') HAVING count(*) > 0 \
    UNION ALL SELECT 5, 'may create schemas' \
      WHERE pg_catalog.has_database_privilege(current_database(), 'CREATE') \
    UNION ALL SELECT 6, 'has CREATEROLE' FROM pg_catalog.pg_roles \
      WHERE rolname = current_user AND rolcreaterole \
    UNION ALL SELECT 7, 'has CREATEDB' FROM pg_catalog.pg_roles \
      WHERE rolname = current_user AND rolcreatedb \
    ) r ORDER BY o";

/// How to give a read-only role an upstream user that can only read.
pub const SELECT_ONLY_HINT: &str = "give the role an upstream user that can only read, e.g. \
    CREATE ROLE app_ro LOGIN PASSWORD '…'; GRANT pg_read_all_data TO app_ro; \
    (PostgreSQL 14+; before that GRANT USAGE ON SCHEMA s and SELECT ON ALL TABLES IN SCHEMA s), \
    and set the role's `user` to it";

/// One line per role that no policy lets write but whose upstream user
/// can (or that could not be asked), for `check-config` and `serve`.
pub async fn read_only_roles_that_can_write(pools: &Pools, policy: &PolicyEngine) -> Vec<String> {
    let mut roles: Vec<_> = pools
        .named()
        .filter(|(target, role, _)| policy.never_permits_write(target, role))
        .collect();
    roles.sort_by_key(|(target, role, _)| (*target, *role));
    let mut warnings = Vec::new();
    for (target, role, pool) in roles {
        let asked = tokio::time::timeout(ASK_TIMEOUT, async {
            let variant = pool.intern(Variant {
                read_only: true,
                params: Vec::new(),
            });
            let mut lease = pool.checkout(&variant).await.map_err(|e| e.to_string())?;
            let rows = pool::query_rows(lease.conn(), WRITE_GRANTS)
                .await
                .map_err(|e| e.to_string())??;
            pool.checkin(lease);
            Ok::<_, String>(rows)
        })
        .await;
        let user = pool.user();
        match asked {
            Ok(Ok(rows)) => {
                let reasons: Vec<&str> = rows
                    .iter()
                    .filter_map(|row| row.first().and_then(Option::as_deref))
                    .collect();
                // A superuser may do everything; the rest would only repeat it.
                let reasons = match reasons.first() {
                    Some(&"is a superuser") => &reasons[..1],
                    _ => &reasons[..],
                };
                if !reasons.is_empty() {
                    warnings.push(format!(
                        "role `{role}` of target `{target}` is read-only by policy, but its upstream user `{user}` {}: \
                         a statement the gateway misjudged could still write\n  hint: {SELECT_ONLY_HINT}",
                        reasons.join(", ")
                    ));
                }
            }
            Ok(Err(e)) => warnings.push(format!(
                "cannot ask what the upstream user `{user}` of role `{role}` (target `{target}`) may write: {e}"
            )),
            Err(_) => warnings.push(format!(
                "cannot ask what the upstream user `{user}` of role `{role}` (target `{target}`) may write: no answer within {ASK_TIMEOUT:?}"
            )),
        }
    }
    warnings
}
