use super::*;

const MINIMAL: &str = r#"
[gateway]
postgres_listen = "127.0.0.1:6432"
allow_plaintext_loopback = true

[[issuers]]
name = "corp"
issuer = "https://login.example.com"
audiences = ["idgate"]

[[targets]]
name = "orders"
upstream = "127.0.0.1:5432"
database = "orders"

[[targets.roles]]
name = "reader"
user = "orders_ro"

[policy]
file = "policy.cedar"

[audit]
file = "audit.jsonl"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/idgate/idgate.toml"))
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_defaults_and_resolves_paths() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.issuers[0].identity_claim, "sub");
    assert_eq!(c.issuers[0].clock_skew, Duration::from_secs(60));
    assert_eq!(
        c.issuers[0].algorithms,
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert_eq!(c.targets[0].upstream_tls, UpstreamTls::Prefer);
    assert_eq!(c.policy.file, PathBuf::from("/etc/idgate/policy.cedar"));
    assert!(c.targets[0].roles[0].password.is_none());
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let text = MINIMAL.replace(
        "allow_plaintext_loopback = true",
        "allow_plaintext_loopback = true\nlisten_backlog = 5",
    );
    let e = error_of(&text);
    assert!(e.contains("idgate.toml:5:"), "{e}");
    assert!(e.contains("listen_backlog"), "{e}");
    assert!(e.contains("hint:"), "{e}");
}

/// The error of reading every secret of a config that loads.
fn secrets_error_of(text: &str) -> String {
    parse(text).unwrap().read_secrets().unwrap_err().to_string()
}

#[test]
fn missing_password_env_loads_and_is_named_with_its_line_when_read() {
    let text = MINIMAL.replace(
        "user = \"orders_ro\"",
        "user = \"orders_ro\"\npassword_env = \"IDGATE_TEST_SURELY_UNSET\"",
    );
    let e = secrets_error_of(&text);
    assert!(e.contains("IDGATE_TEST_SURELY_UNSET"), "{e}");
    assert!(e.contains("password of role `reader`"), "{e}");
    assert!(e.contains("idgate.toml:19:"), "{e}");
    assert!(
        e.contains("hint: export IDGATE_TEST_SURELY_UNSET=… before starting idgate"),
        "{e}"
    );
}

#[test]
fn password_file_is_read_when_asked_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace(
        "user = \"orders_ro\"",
        "user = \"orders_ro\"\npassword_file = \"ro.pass\"",
    );
    let path = dir.path().join("idgate.toml");
    let mut c = Config::parse(&text, &path).unwrap();
    let source = c.targets[0].roles[0].password.clone().expect("a source");
    let e = source.read().unwrap_err().to_string();
    assert!(e.contains("cannot read password file"), "{e}");
    assert!(e.contains("idgate.toml:19:"), "{e}");
    std::fs::write(dir.path().join("ro.pass"), "s3cret\n").unwrap();
    c.read_secrets().unwrap();
    std::fs::remove_file(dir.path().join("ro.pass")).unwrap();
    let password = c.targets[0].roles[0].password.as_ref().unwrap().read();
    assert_eq!(password.unwrap().expose(), "s3cret", "read once, kept");
}

#[test]
fn inline_password_is_refused() {
    let text = MINIMAL.replace(
        "user = \"orders_ro\"",
        "user = \"orders_ro\"\npassword = \"hunter2\"",
    );
    let e = error_of(&text);
    assert!(e.contains("inline passwords"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn symmetric_or_none_algorithms_are_refused() {
    for alg in ["HS256", "none"] {
        let text = MINIMAL.replace(
            "audiences = [\"idgate\"]",
            &format!("audiences = [\"idgate\"]\nalgorithms = [\"{alg}\"]"),
        );
        assert!(error_of(&text).contains("not allowed"));
    }
}

#[test]
fn clock_skew_is_capped() {
    let text = MINIMAL.replace(
        "audiences = [\"idgate\"]",
        "audiences = [\"idgate\"]\nclock_skew = \"10m\"",
    );
    assert!(error_of(&text).contains("capped"));
}

#[test]
fn plain_http_issuer_only_on_loopback() {
    let remote = MINIMAL.replace("https://login.example.com", "http://login.example.com");
    assert!(error_of(&remote).contains("https"));
    let local = MINIMAL.replace("https://login.example.com", "http://127.0.0.1:9999");
    assert!(parse(&local).is_ok());
}

#[test]
fn no_tls_and_no_plaintext_is_refused() {
    let text = MINIMAL.replace("allow_plaintext_loopback = true", "");
    assert!(error_of(&text).contains("no TLS certificate"));
}

#[test]
fn mysql_listen_is_read() {
    let text = MINIMAL.replace(
        "allow_plaintext_loopback = true",
        "allow_plaintext_loopback = true\nmysql_listen = \"127.0.0.1:3307\"",
    );
    let c = parse(&text).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.gateway.mysql_listen,
        Some("127.0.0.1:3307".parse().unwrap())
    );
}

#[test]
fn cluster_and_session_keys_are_read() {
    let text = MINIMAL
        .replace(
            "allow_plaintext_loopback = true",
            "allow_plaintext_loopback = true\non_expiry = \"allow\"\nexpiry_grace = \"30s\"\nmax_session_age = \"8h\"",
        )
        .replace(
            "file = \"audit.jsonl\"",
            "file = \"audit.jsonl\"\n\n[cluster]\nredis = \"redis://127.0.0.1:6379\"",
        );
    let c = parse(&text).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.gateway.on_expiry, super::OnExpiry::Allow);
    assert_eq!(c.gateway.expiry_grace, Duration::from_secs(30));
    assert_eq!(
        c.gateway.max_session_age,
        Some(Duration::from_secs(8 * 3600))
    );
    let cluster = c.cluster.expect("cluster");
    assert_eq!(cluster.redis, "redis://127.0.0.1:6379");
    assert_eq!(cluster.namespace, "idgate");
    let bad = MINIMAL.replace(
        "allow_plaintext_loopback = true",
        "allow_plaintext_loopback = true\non_expiry = \"sometimes\"",
    );
    assert!(error_of(&bad).contains("on_expiry `sometimes`"));
}

fn with_issuer_keys(extra: &str) -> String {
    MINIMAL.replace(
        "audiences = [\"idgate\"]",
        &format!("audiences = [\"idgate\"]\n{extra}"),
    )
}

#[test]
fn issuer_token_rules_default_to_permissive_but_lifetimes_are_capped() {
    let c = parse(MINIMAL).unwrap();
    let i = &c.issuers[0];
    assert_eq!(i.token_types, TokenTypes::default());
    assert!(i.token_types.access && i.token_types.id);
    assert!(!i.groups_claim_string);
    assert_eq!(i.max_lifetime, crate::config::DEFAULT_MAX_LIFETIME);
    assert!(i.required_claims.is_empty());
    assert!(i.authorized_parties.is_none());
    assert!(i.group_mappings.is_empty());
}

#[test]
fn issuer_token_rules_are_read() {
    let text = with_issuer_keys(
        r#"token_types = ["access"]
max_lifetime = "1h"
required_claims = ["email"]
authorized_parties = ["client-a"]
groups_claim_string = true

[[issuers.group_mappings]]
claim = "repository"
value = "acme/app"
groups = ["deployers"]"#,
    );
    let c = parse(&text).unwrap();
    let i = &c.issuers[0];
    assert_eq!(
        i.token_types,
        TokenTypes {
            access: true,
            id: false
        }
    );
    assert_eq!(i.max_lifetime, Duration::from_secs(3600));
    assert_eq!(i.required_claims, vec!["email"]);
    assert_eq!(
        i.authorized_parties.as_deref(),
        Some(&["client-a".to_string()][..])
    );
    assert!(i.groups_claim_string);
    assert_eq!(
        i.group_mappings,
        vec![GroupMapping {
            claim: "repository".into(),
            value: "acme/app".into(),
            groups: vec!["deployers".into()],
        }]
    );
}

#[test]
fn bad_issuer_token_rules_name_their_line() {
    for (extra, needle) in [
        (
            r#"token_types = ["refresh"]"#,
            "token type `refresh` is unknown",
        ),
        ("token_types = []", "token_types is empty"),
        (r#"max_lifetime = "soon""#, "hint: durations"),
        (r#"max_lifetime = "0s""#, "max_lifetime of zero"),
        ("authorized_parties = []", "authorized_parties is empty"),
    ] {
        let e = error_of(&with_issuer_keys(extra));
        assert!(e.contains(needle), "{extra}: {e}");
        assert!(e.contains("idgate.toml:10:"), "{extra}: {e}");
    }
    let e = error_of(&with_issuer_keys(
        "[[issuers.group_mappings]]\nclaim = \"repository\"\nvalue = \"acme/app\"\ngroups = []",
    ));
    assert!(e.contains("adds no groups"), "{e}");
    assert!(e.contains("idgate.toml:13:"), "{e}");
}

#[test]
fn unknown_choices_are_named_with_the_ones_there_are() {
    let e = error_of(&MINIMAL.replace(
        "allow_plaintext_loopback = true",
        "allow_plaintext_loopback = true\non_expiry = \"warn\"",
    ));
    assert!(e.contains("on_expiry `warn` is unknown"), "{e}");
    assert!(e.contains("\"disconnect\""), "{e}");
    let e = error_of(&MINIMAL.replace(
        "database = \"orders\"",
        "database = \"orders\"\npool = { mode = \"statement\" }",
    ));
    assert!(e.contains("pool mode `statement` is unknown"), "{e}");
    assert!(e.contains("use \"session\" or \"transaction\""), "{e}");
    assert!(e.contains("idgate.toml:15:"), "{e}");
}

#[test]
fn audit_key_file_is_read_and_resolved_against_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("audit.key"),
        format!("{}\n", "k".repeat(40)),
    )
    .unwrap();
    let text = MINIMAL.replace(
        "file = \"audit.jsonl\"",
        "file = \"audit.jsonl\"\nkey_file = \"audit.key\"",
    );
    let c = Config::parse(&text, &dir.path().join("idgate.toml")).unwrap();
    let key = c.audit.key.expect("key").read().unwrap();
    assert_eq!(key.expose(), "k".repeat(40), "without the line break");
    assert!(!format!("{key:?}").contains("kkk"));
}

#[test]
fn a_short_audit_key_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit.key"), "short\n").unwrap();
    let text = MINIMAL.replace(
        "file = \"audit.jsonl\"",
        "file = \"audit.jsonl\"\nkey_file = \"audit.key\"",
    );
    let e = Config::parse(&text, &dir.path().join("idgate.toml"))
        .unwrap()
        .read_secrets()
        .unwrap_err()
        .to_string();
    assert!(e.contains("idgate.toml:25:"), "{e}");
    assert!(e.contains("at least 32"), "{e}");
    assert!(e.contains("openssl rand"), "{e}");
}

#[test]
fn inline_audit_key_is_refused() {
    let text = MINIMAL.replace(
        "file = \"audit.jsonl\"",
        "file = \"audit.jsonl\"\nkey = \"0123456789abcdef0123456789abcdef\"",
    );
    let e = error_of(&text);
    assert!(e.contains("inline audit key"), "{e}");
    assert!(e.contains("key_file"), "{e}");
}

#[test]
fn missing_audit_key_env_names_the_variable_and_line() {
    let text = MINIMAL.replace(
        "file = \"audit.jsonl\"",
        "file = \"audit.jsonl\"\nkey_env = \"IDGATE_TEST_SURELY_UNSET_KEY\"",
    );
    let e = secrets_error_of(&text);
    assert!(e.contains("idgate.toml:25:"), "{e}");
    assert!(e.contains("IDGATE_TEST_SURELY_UNSET_KEY"), "{e}");
    assert!(e.contains("the audit key"), "{e}");
}

#[test]
fn audit_key_env_and_file_together_are_refused() {
    let text = MINIMAL.replace(
        "file = \"audit.jsonl\"",
        "file = \"audit.jsonl\"\nkey_env = \"A\"\nkey_file = \"b\"",
    );
    let e = error_of(&text);
    assert!(e.contains("key_env and key_file are both set"), "{e}");
}

#[test]
fn revocations_are_kept_for_the_longest_token_lifetime_plus_skew() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.revocation_horizon(),
        DEFAULT_MAX_LIFETIME + Duration::from_secs(60)
    );
    let mut c = parse(&with_issuer_keys(
        "max_lifetime = \"8h\"\nclock_skew = \"2m\"",
    ))
    .unwrap();
    assert_eq!(c.revocation_horizon(), Duration::from_secs(8 * 3600 + 120));
    let mut longer = c.issuers[0].clone();
    longer.name = "other".into();
    longer.max_lifetime = Duration::from_secs(30 * 3600);
    longer.clock_skew = Duration::ZERO;
    c.issuers.push(longer);
    assert_eq!(c.revocation_horizon(), Duration::from_secs(30 * 3600));
}
