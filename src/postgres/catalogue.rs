//! Reads a target's catalogue into `sql::Catalogue`, and keeps it current.
//!
//! One `TargetCatalogue` per target, shared by its sessions. A background
//! task asks a pooled connection every `REFRESH` for a cheap fingerprint of
//! the catalogues that matter (relations, functions, operators, casts,
//! domain constraints, rules, policies) and reads everything again when it
//! changed. Until the first reading every lookup answers "unknown", so
//! nothing runs that could be user code: logins wait (briefly) for it.
//! User objects are those at or above PostgreSQL's FirstNormalObjectId
//! (16384); below it is what initdb made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::pool::{Pool, ServerConn, Variant, query_rows};
use crate::sql::{self, Catalogue};

/// How often the fingerprint is checked: how long a function or view
/// created outside the gateway may go unnoticed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How long a login waits for the first reading.
const FIRST_READ_WAIT: Duration = Duration::from_secs(5);

pub struct TargetCatalogue {
    current: Mutex<Arc<Catalogue>>,
    generation: AtomicU64,
    fingerprint: Mutex<Option<String>>,
    read: Notify,
}

impl Default for TargetCatalogue {
    fn default() -> Self {
        Self {
            current: Mutex::new(Arc::new(Catalogue::unread())),
            generation: AtomicU64::new(0),
            fingerprint: Mutex::new(None),
            read: Notify::new(),
        }
    }
}

impl TargetCatalogue {
    /// The catalogue as last read, and its generation.
    pub fn current(&self) -> (Arc<Catalogue>, u64) {
        let current = Arc::clone(&crate::lock(&self.current));
        (current, self.generation())
    }

    /// Bumped at every new reading.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Wait until the catalogue has been read once (bounded).
    pub async fn wait_read(&self) {
        if self.current().0.is_read() {
            return;
        }
        let notified = self.read.notified();
        if self.current().0.is_read() {
            return;
        }
        let _ = tokio::time::timeout(FIRST_READ_WAIT, notified).await;
    }

    /// Check the fingerprint on `conn` and read everything again when it
    /// changed. The connection is idle afterwards.
    pub async fn refresh(&self, conn: &mut ServerConn) -> Result<(), String> {
        let print = single_value(conn, FINGERPRINT).await?;
        if crate::lock(&self.fingerprint).as_deref() == Some(print.as_str()) {
            return Ok(());
        }
        let catalogue = read(conn).await?;
        *crate::lock(&self.current) = Arc::new(catalogue);
        *crate::lock(&self.fingerprint) = Some(print);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.read.notify_waiters();
        Ok(())
    }

    /// Keep the catalogue current through connections of `pool` until
    /// `shutdown`.
    pub fn watch(self: Arc<Self>, pool: Arc<Pool>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let variant = pool.intern(Variant {
                read_only: true,
                params: Vec::new(),
            });
            loop {
                match pool.checkout(&variant).await {
                    Ok(mut lease) => {
                        let result = self.refresh(lease.conn()).await;
                        match result {
                            Ok(()) => pool.checkin(lease),
                            Err(e) => tracing::warn!(
                                target = pool.target_name(),
                                "reading the target's catalogue failed: {e}"
                            ),
                        }
                    }
                    Err(e) => tracing::debug!(
                        target = pool.target_name(),
                        "no connection to read the catalogue: {e}"
                    ),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(REFRESH) => {}
                }
            }
        });
    }
}

/// Changes whenever an object that classification reads is created,
/// altered or dropped (row counts and the newest row version of each
/// catalogue; temporary relations of other sessions left out).
const FINGERPRINT: &str = "SELECT concat_ws(',', \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_class WHERE relpersistence <> 't'), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_namespace), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_proc), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_operator), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_cast), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_constraint WHERE contypid <> 0), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_rewrite), \
    (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_catalog.pg_policy))";

/// Relations of every schema but other sessions' temporary ones.
const RELATIONS: &str = "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S') \
    AND n.nspname !~ '^pg_(temp|toast)'";

/// User functions, and whether each takes exactly a built-in's arguments.
const FUNCTIONS: &str = "SELECT n.nspname, p.proname, EXISTS (SELECT 1 FROM pg_catalog.pg_proc b \
      WHERE b.oid < 16384 AND b.proname = p.proname AND b.proargtypes = p.proargtypes)::text \
    FROM pg_catalog.pg_proc p \
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid >= 16384";

/// User operators, and whether each takes exactly a built-in's operands.
const OPERATORS: &str = "SELECT n.nspname, o.oprname, EXISTS (SELECT 1 FROM pg_catalog.pg_operator b \
      WHERE b.oid < 16384 AND b.oprname = o.oprname AND b.oprleft = o.oprleft \
      AND b.oprright = o.oprright)::text \
    FROM pg_catalog.pg_operator o \
    JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid >= 16384";

/// Types a value of which runs user code on its way in: domains with
/// constraints, the two ends of user-defined casts, types with user-defined
/// input functions, and domains, arrays and composites built on them.
const CODED_TYPES: &str = "WITH RECURSIVE coded(oid) AS ( \
    SELECT contypid FROM pg_catalog.pg_constraint WHERE contypid <> 0 \
    UNION SELECT castsource FROM pg_catalog.pg_cast WHERE castfunc >= 16384 \
    UNION SELECT casttarget FROM pg_catalog.pg_cast WHERE castfunc >= 16384 \
    UNION SELECT oid FROM pg_catalog.pg_type WHERE typinput >= 16384 OR typreceive >= 16384 \
    UNION SELECT t.oid FROM pg_catalog.pg_type t JOIN coded c \
      ON t.typbasetype = c.oid OR t.typelem = c.oid \
      OR (t.typrelid <> 0 AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid = t.typrelid AND a.atttypid = c.oid))) \
    SELECT n.nspname, t.typname, t.oid::text FROM coded \
    JOIN pg_catalog.pg_type t ON t.oid = coded.oid \
    JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.oid >= 16384";

/// What reading a relation runs: view definitions and the expressions of
/// row-level policies on tables that enforce them. Deparsed with only
/// `pg_catalog` on the path, so every other name comes qualified.
const RELATION_CODE: &str = "BEGIN READ ONLY; SET LOCAL search_path = pg_catalog; \
    SELECT n.nspname, c.relname, 'SELECT * FROM (' || rtrim(pg_get_viewdef(c.oid), '; ') || ') v' \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind = 'v' AND c.oid >= 16384 \
    UNION ALL \
    SELECT n.nspname, c.relname, 'SELECT ' || coalesce(pg_get_expr(p.polqual, p.polrelid), 'true') \
      || ', ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), 'true') \
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relrowsecurity; \
    COMMIT";

async fn rows(conn: &mut ServerConn, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    match query_rows(conn, sql).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(message)) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

async fn single_value(conn: &mut ServerConn, sql: &str) -> Result<String, String> {
    let rows = rows(conn, sql).await?;
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .ok_or_else(|| "no answer".to_owned())
}

/// Pairs `(schema, name)` of a two-column answer.
fn pairs(rows: Vec<Vec<Option<String>>>) -> impl Iterator<Item = (String, String, Option<String>)> {
    rows.into_iter().filter_map(|row| {
        let mut it = row.into_iter();
        Some((it.next()??, it.next()??, it.next().flatten()))
    })
}

async fn read(conn: &mut ServerConn) -> Result<Catalogue, String> {
    let mut catalogue = Catalogue::default();
    for (schema, name, _) in pairs(rows(conn, RELATIONS).await?) {
        catalogue.add_relation(&schema, &name);
    }
    let same = |v: Option<String>| v.as_deref() == Some("true");
    for (schema, name, builtin) in pairs(rows(conn, FUNCTIONS).await?) {
        catalogue.add_function(&schema, &name, same(builtin));
    }
    for (schema, name, builtin) in pairs(rows(conn, OPERATORS).await?) {
        catalogue.add_operator(&schema, &name, same(builtin));
    }
    for (schema, name, oid) in pairs(rows(conn, CODED_TYPES).await?) {
        if let Some(oid) = oid.and_then(|o| o.parse().ok()) {
            catalogue.add_coded_type(&schema, &name, oid);
        }
    }
    let code: Vec<(String, String, String)> = pairs(rows(conn, RELATION_CODE).await?)
        .filter_map(|(schema, name, text)| Some((schema, name, text?)))
        .collect();
    catalogue.finish();
    mark_coded_relations(&mut catalogue, &code);
    Ok(catalogue)
}

/// Marks every relation whose reading runs user code, by classifying what
/// it runs; a view over such a relation runs it too, so until nothing
/// changes. What is still undecided after a bounded number of rounds (a
/// long chain of views) is marked, not guessed.
fn mark_coded_relations(catalogue: &mut Catalogue, code: &[(String, String, String)]) {
    const ROUNDS: usize = 16;
    let path = [vec!["pg_catalog".to_owned()]];
    let mut pending: Vec<&(String, String, String)> = code.iter().collect();
    for _ in 0..ROUNDS {
        let context = sql::Context {
            search_paths: &path,
            user: "",
            catalogue,
        };
        let (coded, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, _, text)| {
            sql::classify_postgres(text, &context)
                .statements
                .iter()
                .any(|s| s.runs_user_code || s.action != crate::policy::Action::Read)
        });
        if coded.is_empty() {
            return;
        }
        for (schema, name, _) in coded {
            catalogue.add_coded_relation(schema, name);
        }
        pending = rest;
    }
    for (schema, name, _) in pending {
        catalogue.add_coded_relation(schema, name);
    }
}
