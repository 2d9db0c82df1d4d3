use std::collections::BTreeMap;

use std::net::IpAddr;

use super::*;

fn identity(sub: &str, groups: &[&str]) -> Identity {
    Identity {
        issuer_name: "corp".into(),
        issuer: "https://login.example.com/realms/corp".into(),
        sub: sub.into(),
        identity: format!("{sub}@example.com"),
        groups: groups.iter().map(|g| (*g).to_string()).collect(),
        expires_at: 2_000_000_000,
        issued_at: None,
        jti: None,
        claims: BTreeMap::new(),
    }
}

/// 2025-01-06 was a Monday.
fn monday_at(hour: u8) -> OffsetDateTime {
    time::macros::datetime!(2025-01-06 00:00 UTC) + time::Duration::hours(i64::from(hour))
}

fn ctx() -> RequestContext {
    RequestContext {
        client_address: IpAddr::from([10, 0, 0, 7]),
        environment: vec!["prod".into()],
        now: Some(monday_at(10)),
        ..RequestContext::default()
    }
}

fn engine(text: &str) -> PolicyEngine {
    match PolicyEngine::from_source(text, "test.cedar") {
        Ok(engine) => engine,
        Err(e) => panic!("policy should load:\n{e}"),
    }
}

fn decide(engine: &PolicyEngine, who: &Identity, role: &str, action: Action) -> Decision {
    let mut context = ctx();
    if action != Action::Connect {
        context.statement_kind = Some("select".into());
        context.tables = vec!["orders".into()];
    }
    engine.authorize(&AccessRequest {
        identity: who,
        target: "orders",
        role,
        action,
        context,
    })
}

#[test]
fn shipped_schema_parses() {
    assert!(builtin_schema().is_ok());
}

#[test]
fn engine_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicyEngine>();
}

#[test]
fn empty_policy_file_loads_and_denies_everything() {
    let e = engine("");
    let d = decide(&e, &identity("alice", &[]), "reader", Action::Connect);
    assert!(!d.allowed);
    assert!(d.reason.starts_with("no policy permits"), "{}", d.reason);
}

#[test]
fn unannotated_policies_keep_cedar_default_ids() {
    let e = engine(
        r#"permit(principal, action == Action::"connect", resource);
           @id("named") permit(principal, action == Action::"read", resource);
           permit(principal, action == Action::"write", resource);"#,
    );
    assert_eq!(e.policy_ids(), ["named", "policy0", "policy2"]);
}

#[test]
fn duplicate_annotation_ids_fail_load_at_the_second_one() {
    let text = "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);";
    let err = PolicyEngine::from_source(text, "dup.cedar").err();
    let problems = err.as_ref().map(PolicyError::problems).unwrap_or_default();
    assert_eq!(problems.len(), 1, "{err:?}");
    assert_eq!(problems[0].location, "dup.cedar:2:5");
}

#[test]
fn templates_are_rejected() {
    let err = PolicyEngine::from_source(
        r#"permit(principal == ?principal, action, resource);"#,
        "t.cedar",
    )
    .err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("t.cedar:1:21"), "{text}");
    assert!(text.contains("templates"), "{text}");
}

#[test]
fn string_claims_are_tags_on_the_user() {
    let e = engine(
        r#"permit(principal, action == Action::"connect", resource)
           when { principal.hasTag("department") && principal.getTag("department") == "sales" };"#,
    );
    let mut who = identity("alice", &[]);
    assert!(!decide(&e, &who, "reader", Action::Connect).allowed);
    who.claims
        .insert("department".into(), serde_json::json!("sales"));
    who.claims.insert("level".into(), serde_json::json!(3));
    assert!(decide(&e, &who, "reader", Action::Connect).allowed);
}

#[test]
fn statement_action_without_kind_is_denied_with_the_cause() {
    let e = engine(r#"permit(principal, action, resource == Role::"orders/reader");"#);
    let who = identity("alice", &[]);
    let d = e.authorize(&AccessRequest {
        identity: &who,
        target: "orders",
        role: "reader",
        action: Action::Read,
        context: ctx(),
    });
    assert!(!d.allowed);
    assert!(d.reason.contains("needs a statement kind"), "{}", d.reason);
}

#[test]
fn target_with_slash_is_denied_because_role_ids_would_be_ambiguous() {
    let e = engine(r#"permit(principal, action, resource);"#);
    let who = identity("alice", &[]);
    let d = e.authorize(&AccessRequest {
        identity: &who,
        target: "or/ders",
        role: "reader",
        action: Action::Connect,
        context: ctx(),
    });
    assert!(!d.allowed);
    assert!(d.reason.contains("ambiguous"), "{}", d.reason);
}

#[test]
fn evaluation_error_in_a_forbid_denies_instead_of_being_skipped() {
    // Long overflow is an evaluation error that strict validation allows.
    let e = engine(
        r#"@id("allow") permit(principal, action == Action::"connect", resource);
           @id("broken") forbid(principal, action == Action::"connect", resource)
             when { context.hour_utc * 9223372036854775807 > 0 };"#,
    );
    let d = decide(&e, &identity("alice", &[]), "reader", Action::Connect);
    assert!(!d.allowed);
    assert_eq!(d.policy_ids, ["broken"]);
    assert!(d.reason.contains("evaluation failed"), "{}", d.reason);
}

#[test]
fn time_of_day_comes_from_the_context() {
    let e = engine(
        r#"permit(principal, action == Action::"connect", resource)
           when { context.hour_utc >= 8 && context.hour_utc < 18 };"#,
    );
    let who = identity("alice", &[]);
    let at = |hour| {
        e.authorize(&AccessRequest {
            identity: &who,
            target: "orders",
            role: "reader",
            action: Action::Connect,
            context: RequestContext {
                now: Some(monday_at(hour)),
                ..ctx()
            },
        })
        .allowed
    };
    assert!(at(9));
    assert!(!at(20));
}

#[test]
fn administer_targets_the_gateway_entity() {
    let e = engine(
        r#"permit(principal in Group::"security", action == Action::"administer", resource == Gateway::"idgate");"#,
    );
    let who = identity("sam", &["security"]);
    let d = e.authorize(&AccessRequest {
        identity: &who,
        target: "",
        role: "",
        action: Action::Administer,
        context: ctx(),
    });
    assert!(d.allowed, "{}", d.reason);
}

fn connect_with(e: &PolicyEngine, context: RequestContext) -> bool {
    e.authorize(&AccessRequest {
        identity: &identity("alice", &[]),
        target: "orders",
        role: "reader",
        action: Action::Connect,
        context,
    })
    .allowed
}

#[test]
fn weekday_counts_from_monday_zero_in_utc() {
    let e = engine(
        r#"permit(principal, action == Action::"connect", resource)
           when { context.weekday_utc == 6 && context.hour_utc == 23 };"#,
    );
    // Sunday 23:30 UTC, written as Monday 01:30 at UTC+2.
    let sunday_late = time::macros::datetime!(2025-01-13 01:30 +02:00);
    assert!(connect_with(
        &e,
        RequestContext {
            now: Some(sunday_late),
            ..ctx()
        }
    ));
    assert!(!connect_with(&e, ctx()));
}

#[test]
fn ipv4_mapped_client_address_is_matched_as_ipv4() {
    let e = engine(
        r#"permit(principal, action == Action::"connect", resource)
           when { context.client_ip.isInRange(ip("10.0.0.0/8")) };"#,
    );
    let at = |addr: &str| {
        connect_with(
            &e,
            RequestContext {
                client_address: addr.parse().unwrap_or_else(|err| panic!("{addr}: {err}")),
                ..ctx()
            },
        )
    };
    assert!(at("10.9.8.7"));
    assert!(at("::ffff:10.9.8.7"));
    assert!(!at("192.168.1.1"));
    assert!(!at("fd00::1"));
}

#[test]
fn default_context_address_is_in_no_private_range() {
    let e = engine(
        r#"permit(principal, action == Action::"connect", resource)
           when { context.client_ip.isInRange(ip("10.0.0.0/8")) || context.client_ip.isLoopback() };"#,
    );
    assert!(!connect_with(&e, RequestContext::default()));
}

#[test]
fn may_write_is_the_write_decision_for_a_statement_naming_nothing() {
    let e = engine(
        r#"@id("readers") permit(principal, action in [Action::"connect", Action::"read"], resource == Role::"orders/reader");
           @id("writers") permit(principal in Group::"dev", action, resource == Role::"orders/rw");
           @id("no-payroll") forbid(principal, action == Action::"write", resource)
             when { context.tables.contains("public.payroll") };
           @id("nights") forbid(principal, action == Action::"write", resource)
             when { context.hour_utc >= 22 };"#,
    );
    let dev = identity("dee", &["dev"]);
    assert!(!e.may_write(&dev, "orders", "reader", &ctx()));
    // A forbid on particular tables leaves the session writable: the
    // statement checks enforce it.
    assert!(e.may_write(&dev, "orders", "rw", &ctx()));
    let night = RequestContext {
        now: Some(monday_at(23)),
        ..ctx()
    };
    assert!(!e.may_write(&dev, "orders", "rw", &night));
    assert!(!e.may_write(&identity("ann", &[]), "orders", "rw", &ctx()));
}

#[test]
fn may_write_is_false_when_the_write_decision_errors() {
    let e = engine(
        r#"permit(principal, action, resource);
           forbid(principal, action == Action::"write", resource)
             when { context.hour_utc * 9223372036854775807 > 0 };"#,
    );
    assert!(!e.may_write(&identity("dee", &[]), "orders", "rw", &ctx()));
}

#[test]
fn role_choice_follows_the_gateway_rules() {
    let e = engine(
        r#"permit(principal in Group::"analysts", action == Action::"connect", resource == Role::"orders/reader");
           permit(principal in Group::"dbas", action == Action::"connect", resource in Target::"orders");"#,
    );
    let roles = ["reader", "admin"];
    let analyst = identity("ann", &["analysts"]);
    let dba = identity("dee", &["dbas"]);
    let choose =
        |who: &Identity, requested: &str| e.choose_role(who, "orders", &roles, requested, &ctx());

    // A defined role is taken as asked; connect decides afterwards.
    assert_eq!(
        choose(&analyst, "admin"),
        RoleChoice::Requested("admin".into())
    );
    assert_eq!(
        choose(&analyst, "ann"),
        RoleChoice::OnlyPermitted("reader".into())
    );
    assert_eq!(
        choose(&dba, ""),
        RoleChoice::Ambiguous(vec!["reader".into(), "admin".into()])
    );
    assert_eq!(choose(&identity("eve", &[]), ""), RoleChoice::NonePermitted);
    assert_eq!(choose(&analyst, "ann").role(), Some("reader"));
}

#[test]
fn never_permits_write_reads_the_scopes_of_permits_only() {
    let e = engine(
        r#"@id("readers") permit(principal, action in [Action::"connect", Action::"read"], resource == Role::"orders/reader");
           @id("writers") permit(principal in Group::"dev", action, resource == Role::"orders/rw") when { context.hour_utc < 18 };
           @id("billing") permit(principal, action == Action::"write", resource in Target::"billing");
           @id("no-write") forbid(principal, action == Action::"write", resource == Role::"orders/reader");"#,
    );
    assert!(e.never_permits_write("orders", "reader"));
    // A condition may be false for some callers, but not for all.
    assert!(!e.never_permits_write("orders", "rw"));
    assert!(!e.never_permits_write("billing", "any"));
    let open = engine(r#"permit(principal, action, resource);"#);
    assert!(!open.never_permits_write("orders", "reader"));
}
