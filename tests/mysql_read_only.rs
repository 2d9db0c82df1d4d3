//! The MySQL read-only corpus (tests/fixtures/mysql_read_only.toml, checked
//! against a real MariaDB by scripts/check-mysql-tricks) through the MySQL
//! classifier and the real policy engine, with the read-only grant of
//! tests/fixtures/mysql_read_only.cedar: every trick must have a statement
//! the grant refuses, every read must be allowed statement by statement.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use idgate::identity::Identity;
use idgate::policy::{AccessRequest, Decision, PolicyEngine, RequestContext};
use idgate::sql::{Statement, classify_mysql};
use serde::Deserialize;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mysql_read_only.toml"
);
const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mysql_read_only.cedar"
);
/// What `$db` stands for here: the session's current database.
const DATABASE: &str = "shop";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    setup: Vec<String>,
    state: Vec<String>,
    teardown: Vec<String>,
    tricks: Vec<Entry>,
    reads: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sql: String,
    why: String,
    #[serde(default)]
    #[expect(dead_code, reason = "for scripts/check-mysql-tricks")]
    server_error: Option<toml::Value>,
    #[serde(default)]
    not_run: Option<String>,
    /// The classifier cannot refuse this trick; what holds instead.
    #[serde(default)]
    gap: Option<String>,
}

impl Entry {
    fn sql(&self) -> String {
        self.sql.replace("$db", DATABASE)
    }
}

fn corpus() -> Corpus {
    let text = std::fs::read_to_string(CORPUS).expect("the corpus file");
    toml::from_str(&text).unwrap_or_else(|e| panic!("{CORPUS}: {e}"))
}

fn read_only_grant() -> PolicyEngine {
    PolicyEngine::load(Path::new(POLICY)).unwrap_or_else(|e| panic!("{POLICY}: {e}"))
}

fn analyst() -> Identity {
    Identity {
        issuer_name: "corp".into(),
        issuer: "https://login.example.com/realms/corp".into(),
        sub: "ann".into(),
        identity: "ann@example.com".into(),
        groups: vec!["analysts".into()],
        expires_at: 2_000_000_000,
        issued_at: None,
        jti: None,
        claims: BTreeMap::new(),
    }
}

/// Each statement of `sql` with the grant's decision on it, as the front
/// end asks: one question per statement, its kind and tables in context.
fn decide(engine: &PolicyEngine, sql: &str) -> Vec<(Statement, Decision)> {
    let who = analyst();
    classify_mysql(sql, DATABASE)
        .statements
        .into_iter()
        .map(|s| {
            let decision = engine.authorize(&AccessRequest {
                identity: &who,
                target: "app",
                role: "writer",
                action: s.action,
                context: RequestContext {
                    statement_kind: Some(s.kind.clone()),
                    tables: s.tables.clone(),
                    schemas: s.schemas.clone(),
                    ..RequestContext::default()
                },
            });
            (s, decision)
        })
        .collect()
}

fn describe(decided: &[(Statement, Decision)]) -> String {
    decided
        .iter()
        .map(|(s, d)| {
            format!(
                "{} {} ({}){}",
                s.action,
                s.kind,
                if d.allowed { "allowed" } else { "refused" },
                s.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn refused(decided: &[(Statement, Decision)]) -> bool {
    decided.iter().any(|(_, d)| !d.allowed)
}

#[test]
fn every_write_trick_has_a_statement_the_read_only_grant_refuses() {
    let engine = read_only_grant();
    let failures: Vec<String> = corpus()
        .tricks
        .iter()
        .filter(|t| t.gap.is_none())
        .filter_map(|t| {
            let decided = decide(&engine, &t.sql());
            (!refused(&decided))
                .then(|| format!("{:?} ({}): {}", t.sql(), t.why, describe(&decided)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} tricks not refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_ordinary_read_is_allowed_statement_by_statement() {
    let engine = read_only_grant();
    let failures: Vec<String> = corpus()
        .reads
        .iter()
        .filter_map(|r| {
            let decided = decide(&engine, &r.sql());
            (decided.is_empty() || refused(&decided))
                .then(|| format!("{:?} ({}): {}", r.sql(), r.why, describe(&decided)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} reads refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A gap the classifier has closed must lose its note, so the corpus says
/// what the gateway does.
#[test]
fn a_trick_marked_as_a_gap_still_gets_through_the_classifier() {
    let engine = read_only_grant();
    for t in corpus().tricks.iter().filter(|t| t.gap.is_some()) {
        let decided = decide(&engine, &t.sql());
        assert!(
            !refused(&decided),
            "{:?} is refused now ({}): drop its `gap`",
            t.sql(),
            describe(&decided)
        );
    }
}

#[test]
fn the_corpus_is_large_enough_and_every_entry_says_why() {
    let corpus = corpus();
    let refusable = corpus.tricks.iter().filter(|t| t.gap.is_none()).count();
    let run = corpus.tricks.iter().filter(|t| t.not_run.is_none()).count();
    assert!(
        refusable >= 50,
        "{refusable} tricks the classifier must refuse"
    );
    assert!(run >= 50, "{run} tricks checked against the server");
    assert!(corpus.reads.len() >= 25, "{} reads", corpus.reads.len());
    let mut seen = BTreeSet::new();
    for e in corpus.tricks.iter().chain(&corpus.reads) {
        assert!(!e.why.trim().is_empty(), "{:?} says not why", e.sql);
        assert!(seen.insert(&e.sql), "{:?} is listed twice", e.sql);
    }
    assert!(
        corpus
            .reads
            .iter()
            .all(|r| r.not_run.is_none() && r.gap.is_none()),
        "reads are all run against the server and have no gaps"
    );
}

/// The corpus end to end: through the gateway's MySQL front end to the
/// real MariaDB, with the read-only grant on a role whose upstream user
/// can write. Every trick is refused (by the gateway, or for a marked gap
/// by the upstream session's read-only mode) and changes nothing; every
/// read runs.
#[tokio::test]
async fn through_the_gateway_every_trick_is_refused_and_changes_nothing() {
    let corpus = corpus();
    let db = support::unique_name("ro");
    let with_db = |sql: &str| sql.replace("$db", &db);
    support::mysql_root(&format!(
        "CREATE DATABASE `{db}`; GRANT ALL ON `{db}`.* TO 'idgate_native'@'%'"
    ))
    .await;
    for sql in &corpus.setup {
        support::mysql_root_in(&db, &with_db(sql), "$$$").await;
    }
    let state = || async {
        let mut out = Vec::new();
        for sql in &corpus.state {
            out.push(support::mysql_root_in(&db, &with_db(sql), "$$$").await);
        }
        out
    };
    let before = state().await;
    let policy = std::fs::read_to_string(POLICY)
        .expect("the grant")
        .replace("Role::\"app/writer\"", "Role::\"shop/writer\"");
    let h = support::Harness::with(support::Options {
        policy,
        mysql: true,
        mysql_database: Some(db.clone()),
        ..support::Options::default()
    })
    .await;
    let addr = h.mysql_addr.expect("MySQL");
    let token = h.analyst();

    let mut let_through = Vec::new();
    let mut refused = 0;
    for t in corpus.tricks.iter().filter(|t| t.not_run.is_none()) {
        let sql = with_db(&t.sql);
        let mut tcp = support::mysql_wire::login(addr, &token, "writer").await;
        match support::mysql_wire::query(&mut tcp, &sql).await {
            Ok(()) => let_through.push(format!("{sql:?} ({})", t.why)),
            Err(_) => refused += 1,
        }
    }
    let after = state().await;
    let mut reads_refused = Vec::new();
    for r in &corpus.reads {
        let sql = with_db(&r.sql);
        let mut tcp = support::mysql_wire::login(addr, &token, "writer").await;
        if let Err(e) = support::mysql_wire::query(&mut tcp, &sql).await {
            reads_refused.push(format!("{sql:?}: {e}"));
        }
    }
    for sql in &corpus.teardown {
        support::mysql_root(&with_db(sql)).await;
    }
    assert!(
        let_through.is_empty(),
        "{} tricks ran:\n{}",
        let_through.len(),
        let_through.join("\n")
    );
    assert!(refused >= 40, "{refused} tricks refused");
    assert_eq!(before, after, "a refused trick changed the database");
    assert!(
        reads_refused.is_empty(),
        "{} reads refused:\n{}",
        reads_refused.len(),
        reads_refused.join("\n")
    );
    assert!(corpus.reads.len() >= 20);
}
