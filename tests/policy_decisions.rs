//! Decisions of the policy engine against the shipped example policy and
//! small purpose-written ones, through the public API only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use idgate::identity::Identity;
use idgate::policy::{AccessRequest, Action, Decision, PolicyEngine, PolicyError, RequestContext};
use time::OffsetDateTime;
use time::macros::datetime;

const EXAMPLE_POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.cedar");
const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/idgate.toml");

fn identity(sub: &str, groups: &[&str]) -> Identity {
    Identity {
        issuer_name: "corp".into(),
        issuer: "https://login.example.com/realms/corp".into(),
        sub: sub.into(),
        identity: format!("{sub}@example.com"),
        groups: groups.iter().map(|g| (*g).to_string()).collect(),
        expires_at: 2_000_000_000,
        issued_at: Some(1_999_999_000),
        jti: None,
        claims: BTreeMap::new(),
    }
}

/// A Monday (2025-01-06) at `hour`:00 UTC.
fn monday_at(hour: u8) -> OffsetDateTime {
    datetime!(2025-01-06 00:00 UTC) + time::Duration::hours(i64::from(hour))
}

fn business_hours() -> RequestContext {
    RequestContext {
        client_address: IpAddr::from([10, 1, 2, 3]),
        environment: vec!["prod".into()],
        now: Some(monday_at(11)),
        ..RequestContext::default()
    }
}

fn example() -> PolicyEngine {
    PolicyEngine::load(Path::new(EXAMPLE_POLICY))
        .unwrap_or_else(|e| panic!("example policy must load:\n{e}"))
}

fn load_err(text: &str) -> PolicyError {
    match PolicyEngine::from_source(text, "bad.cedar") {
        Ok(_) => panic!("policy should have been rejected:\n{text}"),
        Err(e) => e,
    }
}

fn connect(engine: &PolicyEngine, who: &Identity, role: &str) -> Decision {
    engine.authorize(&AccessRequest {
        identity: who,
        target: "orders",
        role,
        action: Action::Connect,
        context: business_hours(),
    })
}

fn statement(
    engine: &PolicyEngine,
    who: &Identity,
    role: &str,
    action: Action,
    hour: u8,
) -> Decision {
    engine.authorize(&AccessRequest {
        identity: who,
        target: "orders",
        role,
        action,
        context: RequestContext {
            statement_kind: Some("insert".into()),
            tables: vec!["public.orders".into()],
            schemas: vec!["public".into()],
            now: Some(monday_at(hour)),
            ..business_hours()
        },
    })
}

#[test]
fn analyst_may_connect_as_reader_but_not_as_admin() {
    let engine = example();
    let analyst = identity("ann", &["analysts"]);

    let reader = connect(&engine, &analyst, "reader");
    assert!(reader.allowed, "{}", reader.reason);
    assert_eq!(reader.policy_ids, ["analysts-read-orders"]);

    let admin = connect(&engine, &analyst, "admin");
    assert!(!admin.allowed);
    assert!(admin.policy_ids.is_empty());
}

#[test]
fn analyst_may_read_but_not_write_as_reader() {
    let engine = example();
    let analyst = identity("ann", &["analysts"]);
    assert!(statement(&engine, &analyst, "reader", Action::Read, 11).allowed);
    assert!(!statement(&engine, &analyst, "reader", Action::Write, 11).allowed);
}

#[test]
fn permission_flows_through_group_membership_only() {
    let engine = example();
    assert!(connect(&engine, &identity("dee", &["staff", "dbas"]), "admin").allowed);
    assert!(!connect(&engine, &identity("dee", &["staff"]), "admin").allowed);
}

#[test]
fn forbid_overrides_permit_and_is_named_in_the_decision() {
    let engine = example();
    let dba = identity("dee", &["dbas"]);

    let daytime = statement(&engine, &dba, "admin", Action::Write, 11);
    assert!(daytime.allowed, "{}", daytime.reason);
    assert_eq!(daytime.policy_ids, ["dbas-admin-orders"]);

    let night = statement(&engine, &dba, "admin", Action::Write, 23);
    assert!(!night.allowed);
    assert_eq!(night.policy_ids, ["no-writes-outside-business-hours"]);
    assert!(
        night.reason.contains("no-writes-outside-business-hours"),
        "{}",
        night.reason
    );
}

#[test]
fn no_matching_policy_denies_saying_no_policy_permits() {
    let engine = example();
    let d = connect(&engine, &identity("eve", &[]), "reader");
    assert!(!d.allowed);
    assert!(d.policy_ids.is_empty());
    assert_eq!(
        d.reason,
        r#"no policy permits connect on Role::"orders/reader" for User::"corp/eve""#
    );
}

#[test]
fn unknown_attribute_fails_load_with_file_and_line() {
    let err = load_err(
        "// comment line\n\
         permit(principal, action == Action::\"connect\", resource)\n  \
         when { principal.department == \"sales\" };\n",
    );
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert!(
        problems[0].location.starts_with("bad.cedar:3:"),
        "{}",
        problems[0].location
    );
    assert_eq!(problems[0].policy_id.as_deref(), Some("policy0"));
    assert!(err.to_string().contains("department"), "{err}");
    assert!(err.to_string().contains("hint:"), "{err}");
}

#[test]
fn unknown_entity_type_fails_load_with_file_and_line() {
    let err = load_err(
        "@id(\"ok\") permit(principal, action == Action::\"connect\", resource);\n\
         @id(\"typo\")\n\
         permit(principal in Team::\"analysts\", action == Action::\"connect\", resource);\n",
    );
    // Cedar also reports that no action applies to the unknown type; the
    // first problem is the one that points at the typo itself.
    let problems = err.problems();
    assert!(!problems.is_empty());
    assert_eq!(problems[0].location, "bad.cedar:3:21", "{err}");
    assert_eq!(problems[0].policy_id.as_deref(), Some("typo"));
    assert!(problems[0].message.contains("Team"), "{err}");
}

#[test]
fn syntax_error_fails_load_with_file_line_and_column() {
    let err = load_err(
        "permit(principal, action, resource);\n\
         permit(principal action, resource);\n",
    );
    let text = err.to_string();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.location == "bad.cedar:2:18"),
        "{text}"
    );
    assert!(text.contains("hint:"), "{text}");
}

#[test]
fn missing_policy_file_names_the_path() {
    let err = PolicyEngine::load(Path::new("/nonexistent/idgate/policy.cedar")).err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.starts_with("/nonexistent/idgate/policy.cedar: cannot read"),
        "{text}"
    );
}

#[test]
fn quotes_in_subject_cannot_inject_another_principal() {
    let engine = PolicyEngine::from_source(
        r#"@id("alice-only") permit(principal == User::"corp/alice", action == Action::"connect", resource);"#,
        "inject.cedar",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    for sub in [
        r#"alice" || true || ""#,
        r#"x", User::"corp/alice"#,
        "alice\"",
        "alice\\\",",
    ] {
        let d = connect(&engine, &identity(sub, &[]), "reader");
        assert!(!d.allowed, "sub {sub:?} was allowed: {}", d.reason);
    }
    assert!(connect(&engine, &identity("alice", &[]), "reader").allowed);
}

#[test]
fn quotes_in_group_name_cannot_inject_membership() {
    let engine = example();
    let who = identity("mallory", &[r#"x"} Group::"analysts"#, "analysts\""]);
    assert!(!connect(&engine, &who, "reader").allowed);
}

#[test]
fn permitted_roles_returns_exactly_the_allowed_ones_in_order() {
    let engine = example();
    let ctx = business_hours();
    let roles = ["admin", "reader", "nosuchrole"];

    let analyst = identity("ann", &["analysts"]);
    assert_eq!(
        engine.permitted_roles(&analyst, "orders", &roles, &ctx),
        ["reader"]
    );

    let both = identity("bo", &["analysts", "dbas"]);
    assert_eq!(
        engine.permitted_roles(&both, "orders", &roles, &ctx),
        ["admin", "reader"]
    );

    let nobody = identity("eve", &[]);
    assert!(
        engine
            .permitted_roles(&nobody, "orders", &roles, &ctx)
            .is_empty()
    );
}

#[test]
fn example_config_names_the_example_policy_and_its_roles() {
    let text = std::fs::read_to_string(EXAMPLE_CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let config: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config["policy"]["file"].as_str(),
        Some("policy.cedar"),
        "policy file is resolved next to the config"
    );
    let roles: Vec<&str> = config["targets"][0]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(config["targets"][0]["name"].as_str(), Some("orders"));
    let dba = identity("dee", &["dbas", "analysts"]);
    let mut permitted = example().permitted_roles(&dba, "orders", &roles, &business_hours());
    permitted.sort();
    let mut expected = roles.clone();
    expected.sort();
    assert_eq!(permitted, expected, "every configured role is reachable");
}
