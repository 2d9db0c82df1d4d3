use std::collections::BTreeMap;

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

fn ctx() -> RequestContext {
    RequestContext {
        client_address: "10.0.0.7".into(),
        environment: vec!["prod".into()],
        hour_utc: Some(10),
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
                hour_utc: Some(hour),
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
