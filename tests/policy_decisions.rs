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

// --- the scenario examples in examples/*.cedar --------------------------

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn load_example(name: &str) -> PolicyEngine {
    let path = Path::new(EXAMPLES).join(name);
    PolicyEngine::load(&path).unwrap_or_else(|e| panic!("{name} must load:\n{e}"))
}

/// One request against `target`/`role` with the given context.
struct Ask<'a> {
    engine: &'a PolicyEngine,
    who: &'a Identity,
    target: &'a str,
    role: &'a str,
    context: RequestContext,
}

impl Ask<'_> {
    fn connect(&self) -> Decision {
        self.engine.authorize(&AccessRequest {
            identity: self.who,
            target: self.target,
            role: self.role,
            action: Action::Connect,
            context: self.context.clone(),
        })
    }

    /// `action` for a statement of `kind` touching `tables`
    /// ("schema.table"); schemas are derived from them.
    fn statement(&self, action: Action, kind: &str, tables: &[&str]) -> Decision {
        let mut schemas: Vec<String> = tables
            .iter()
            .filter_map(|t| t.split_once('.').map(|(s, _)| s.to_string()))
            .collect();
        schemas.sort();
        schemas.dedup();
        self.engine.authorize(&AccessRequest {
            identity: self.who,
            target: self.target,
            role: self.role,
            action,
            context: RequestContext {
                statement_kind: Some(kind.into()),
                tables: tables.iter().map(|t| (*t).to_string()).collect(),
                schemas,
                ..self.context.clone()
            },
        })
    }

    fn may_write(&self) -> bool {
        self.engine
            .may_write(self.who, self.target, self.role, &self.context)
    }
}

#[test]
fn every_example_policy_loads_against_the_schema_without_warnings() {
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(EXAMPLES).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|x| x == "cedar") {
            let engine =
                PolicyEngine::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            assert!(
                engine.warnings().is_empty(),
                "{}: {:?}",
                path.display(),
                engine.warnings()
            );
            assert!(!engine.policy_ids().is_empty(), "{}", path.display());
            loaded.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    loaded.sort();
    let loaded: Vec<String> = loaded.into_iter().flatten().collect();
    for name in [
        "off-hours-read-only.cedar",
        "policy.cedar",
        "read-only-reports.cedar",
        "schema-limited-analysts.cedar",
        "staging-write-prod-read.cedar",
    ] {
        assert!(
            loaded.iter().any(|l| l == name),
            "{name} missing: {loaded:?}"
        );
    }
}

#[test]
fn read_only_reports_permits_reading_and_nothing_that_changes_data() {
    let engine = load_example("read-only-reports.cedar");
    let reporter = identity("rita", &["reporting"]);
    let ask = Ask {
        engine: &engine,
        who: &reporter,
        target: "reports",
        role: "reader",
        context: business_hours(),
    };
    assert!(ask.connect().allowed);
    for (action, kind) in [
        (Action::Read, "select"),
        (Action::Session, "set"),
        (Action::Transaction, "begin"),
    ] {
        let d = ask.statement(action, kind, &["public.sales"]);
        assert!(d.allowed, "{action}: {}", d.reason);
        assert_eq!(d.policy_ids, ["reporting-read-reports"]);
    }
    for action in [Action::Write, Action::Ddl, Action::Admin, Action::Unknown] {
        let d = ask.statement(action, "insert", &["public.sales"]);
        assert!(!d.allowed, "{action} was allowed");
        assert!(d.reason.starts_with("no policy permits"), "{}", d.reason);
    }
    assert!(!ask.may_write(), "read-only sessions go read-only upstream");

    let outsider = identity("eve", &["analysts"]);
    assert!(
        !Ask {
            who: &outsider,
            ..ask
        }
        .connect()
        .allowed
    );
}

#[test]
fn schema_limited_analysts_read_only_their_schemas() {
    let engine = load_example("schema-limited-analysts.cedar");
    let analyst = identity("ann", &["analysts"]);
    let ask = Ask {
        engine: &engine,
        who: &analyst,
        target: "warehouse",
        role: "analyst",
        context: business_hours(),
    };
    assert!(ask.connect().allowed);
    let read = |tables: &[&str]| ask.statement(Action::Read, "select", tables);

    assert!(read(&["analytics.daily"]).allowed);
    // An unqualified `orders` arrives resolved against the search path.
    assert!(read(&["public.orders"]).allowed);
    assert!(read(&["analytics.daily", "public.orders"]).allowed);
    assert!(read(&[]).allowed, "SELECT 1 touches no schema");

    let mixed = read(&["analytics.daily", "finance.salaries"]);
    assert!(!mixed.allowed, "a join into another schema is refused");
    assert!(
        mixed.reason.starts_with("no policy permits"),
        "{}",
        mixed.reason
    );
    assert!(!read(&["finance.salaries"]).allowed);

    // Tables whose schema the classifier could not name are not "no schema".
    let unresolved = engine.authorize(&AccessRequest {
        identity: &analyst,
        target: "warehouse",
        role: "analyst",
        action: Action::Read,
        context: RequestContext {
            statement_kind: Some("select".into()),
            tables: vec!["salaries".into()],
            schemas: Vec::new(),
            ..business_hours()
        },
    });
    assert!(!unresolved.allowed);

    assert!(
        !ask.statement(Action::Write, "insert", &["analytics.daily"])
            .allowed
    );
    assert!(!ask.may_write());
}

#[test]
fn developers_write_in_staging_and_only_read_in_prod() {
    let engine = load_example("staging-write-prod-read.cedar");
    let dev = identity("dan", &["developers"]);
    let on = |target: &'static str, env: &[&str]| Ask {
        engine: &engine,
        who: &dev,
        target,
        role: "app",
        context: RequestContext {
            environment: env.iter().map(|e| (*e).to_string()).collect(),
            ..business_hours()
        },
    };
    let staging = on("orders-staging", &["staging"]);
    let prod = on("orders", &["prod"]);

    assert!(staging.connect().allowed);
    assert!(prod.connect().allowed);
    assert!(
        prod.statement(Action::Read, "select", &["public.orders"])
            .allowed
    );

    let write_staging = staging.statement(Action::Write, "insert", &["public.orders"]);
    assert!(write_staging.allowed, "{}", write_staging.reason);
    assert_eq!(write_staging.policy_ids, ["developers-write-staging"]);
    assert!(staging.may_write());

    let write_prod = prod.statement(Action::Write, "insert", &["public.orders"]);
    assert!(!write_prod.allowed);
    assert_eq!(write_prod.policy_ids, ["developers-no-writes-in-prod"]);
    assert!(!prod.statement(Action::Ddl, "create_table", &[]).allowed);
    assert!(!prod.may_write());

    // Tagged both by mistake: production wins.
    let both = on("orders-both", &["staging", "prod"]);
    assert!(
        !both
            .statement(Action::Write, "update", &["public.orders"])
            .allowed
    );
    // Untagged targets are not reachable at all.
    assert!(!on("scratch", &[]).connect().allowed);
}

#[test]
fn off_hours_forbid_follows_the_injected_clock() {
    let engine = load_example("off-hours-read-only.cedar");
    let eng = identity("erin", &["engineers"]);
    let at = |now: OffsetDateTime| Ask {
        engine: &engine,
        who: &eng,
        target: "orders",
        role: "engineer",
        context: RequestContext {
            now: Some(now),
            ..business_hours()
        },
    };
    let monday_10 = at(monday_at(10));
    let monday_03 = at(monday_at(3));
    let monday_18 = at(monday_at(18));
    let sunday_10 = at(datetime!(2025-01-05 10:00 UTC));
    let friday_17 = at(datetime!(2025-01-10 17:59 UTC));
    // 10:00 in New York is 15:00 UTC: business hours.
    let monday_ny = at(datetime!(2025-01-06 10:00 -05:00));

    for open in [&monday_10, &friday_17, &monday_ny] {
        let d = open.statement(Action::Write, "update", &["public.orders"]);
        assert!(d.allowed, "{}", d.reason);
        assert!(open.may_write());
    }
    for closed in [&monday_03, &monday_18, &sunday_10] {
        for action in [Action::Write, Action::Ddl, Action::Admin] {
            let d = closed.statement(action, "update", &["public.orders"]);
            assert!(!d.allowed, "{action} allowed off hours");
            assert_eq!(d.policy_ids, ["off-hours-read-only"]);
        }
        assert!(
            closed
                .statement(Action::Read, "select", &["public.orders"])
                .allowed
        );
        assert!(closed.connect().allowed);
        assert!(!closed.may_write());
    }
}

#[test]
fn client_ip_ranges_decide_connect() {
    let engine = PolicyEngine::from_source(
        r#"@id("office") permit(principal, action == Action::"connect", resource)
             when { context.client_ip.isInRange(ip("10.0.0.0/8")) || context.client_ip.isInRange(ip("2001:db8::/32")) };
           @id("guest-wifi") forbid(principal, action, resource)
             when { context.client_ip.isInRange(ip("10.66.0.0/16")) };"#,
        "ip.cedar",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let who = identity("ann", &[]);
    let from = |addr: &str| {
        engine.authorize(&AccessRequest {
            identity: &who,
            target: "orders",
            role: "reader",
            action: Action::Connect,
            context: RequestContext {
                client_address: addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}")),
                ..business_hours()
            },
        })
    };
    assert!(from("10.1.2.3").allowed);
    assert!(from("::ffff:10.1.2.3").allowed);
    assert!(from("2001:db8::7").allowed);
    assert!(!from("192.0.2.1").allowed);
    let guest = from("10.66.0.9");
    assert!(!guest.allowed);
    assert_eq!(guest.policy_ids, ["guest-wifi"]);
}
