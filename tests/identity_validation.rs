//! Token validation against a real (embedded) issuer over HTTP: the happy
//! paths for ES256 and RS256, every attack the spec names, and the JWKS
//! cache's behaviour under unknown kids and issuer outages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idgate::config::{Algorithm, IssuerConfig};
use idgate::dev::DevIssuer;
use idgate::identity::{KeyRefreshPolicy, TokenError, TokenValidator, ValidatorOptions};
use serde_json::{Value, json};

const AUD: &str = "idgate";
const HOUR: Duration = Duration::from_secs(3600);

fn config(dev: &DevIssuer) -> IssuerConfig {
    IssuerConfig {
        identity_claim: "email".into(),
        ..IssuerConfig::new("dev", &dev.issuer_url(), &[AUD])
    }
}

async fn setup() -> (DevIssuer, TokenValidator) {
    let dev = DevIssuer::start().await.unwrap();
    let validator = TokenValidator::new(vec![config(&dev)]);
    validator.warm_up().await;
    (dev, validator)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn claims(dev: &DevIssuer) -> Value {
    dev.claims_for("alice@example.com", &["analysts"], AUD, HOUR)
}

async fn refused(v: &TokenValidator, token: &str) -> TokenError {
    let err = v.validate(token).await.expect_err("token must be refused");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(!msg.contains(token), "message must not echo the token");
    err
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

#[tokio::test]
async fn valid_es256_token_is_accepted_with_identity_and_groups() {
    let (dev, v) = setup().await;
    let token = dev.mint_for("alice", &["analysts", "ops"], AUD, HOUR);
    let id = v.validate(&token).await.unwrap();
    assert_eq!(id.issuer_name, "dev");
    assert_eq!(id.issuer, dev.issuer_url());
    assert_eq!(id.sub, "alice");
    assert_eq!(id.identity, "alice"); // email claim = sub in minted tokens
    assert_eq!(id.groups, vec!["analysts", "ops"]);
    assert!(id.jti.is_some());
    assert!(id.expires_at > now());
    assert_eq!(id.principal_id(), "dev/alice");
    // A second validation is served from the token cache and is identical.
    assert_eq!(v.validate(&token).await.unwrap(), id);
}

#[tokio::test]
async fn valid_rs256_token_is_accepted() {
    let dev = DevIssuer::start().await.unwrap();
    let kid = dev
        .add_rsa_key(include_bytes!("fixtures/rsa2048.pk8"))
        .unwrap();
    let v = TokenValidator::new(vec![config(&dev)]);
    v.warm_up().await;
    let token = dev.mint_rs256(&kid, &claims(&dev)).unwrap();
    let id = v.validate(&token).await.unwrap();
    assert_eq!(id.identity, "alice@example.com");
    assert_eq!(id.groups, vec!["analysts"]);
}

#[tokio::test]
async fn groups_are_read_through_a_json_pointer() {
    let dev = DevIssuer::start().await.unwrap();
    let mut cfg = config(&dev);
    cfg.groups_claim = "/realm_access/roles".into();
    let v = TokenValidator::new(vec![cfg]);
    let mut c = claims(&dev);
    c["realm_access"] = json!({"roles": ["dba", "reader"]});
    let id = v.validate(&dev.mint(c)).await.unwrap();
    assert_eq!(id.groups, vec!["dba", "reader"]);
}

#[tokio::test]
async fn expired_token_is_refused_with_age() {
    let (dev, v) = setup().await;
    let mut c = claims(&dev);
    let t = now();
    c["iat"] = json!(t - 600);
    c["nbf"] = json!(t - 600);
    c["exp"] = json!(t - 120); // beyond the 60 s skew
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "expired");
    let TokenError::Expired(age) = err else {
        panic!("{err}")
    };
    assert!((120..=122).contains(&age), "{age}");
    assert_eq!(err.to_string(), format!("token expired {age} s ago"));
}

#[tokio::test]
async fn token_expired_within_skew_is_accepted() {
    let (dev, v) = setup().await;
    let mut c = claims(&dev);
    c["exp"] = json!(now() - 10);
    v.validate(&dev.mint(c)).await.unwrap();
}

#[tokio::test]
async fn not_yet_valid_token_is_refused() {
    let (dev, v) = setup().await;
    let mut c = claims(&dev);
    c["nbf"] = json!(now() + 600);
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "not_yet_valid", "{err}");
}

#[tokio::test]
async fn wrong_audience_shows_expected_and_got() {
    let (dev, v) = setup().await;
    let token = dev.mint_for("alice", &[], "other", HOUR);
    let err = refused(&v, &token).await;
    assert_eq!(err.kind(), "audience");
    assert_eq!(
        err.to_string(),
        "audience mismatch: expected one of [idgate], got [other]"
    );
}

#[tokio::test]
async fn unconfigured_issuer_is_refused() {
    let (dev, v) = setup().await;
    let mut c = claims(&dev);
    c["iss"] = json!("https://evil.example");
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "issuer");
    assert_eq!(
        err.to_string(),
        "issuer `https://evil.example` is not configured"
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (dev, v) = setup().await;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let token = format!("{header}.{}.", b64(claims(&dev).to_string().as_bytes()));
    let err = refused(&v, &token).await;
    assert_eq!(err.kind(), "algorithm");
    assert_eq!(err.to_string(), "algorithm `none` is not allowed");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    // The classic confusion: a verifier that feeds the issuer's public key
    // to HMAC would accept this.
    let (dev, v) = setup().await;
    let input = format!(
        "{}.{}",
        b64(json!({"alg":"HS256","typ":"JWT","kid":dev.kid()})
            .to_string()
            .as_bytes()),
        b64(claims(&dev).to_string().as_bytes())
    );
    for secret in [dev.es256_public_key(), dev.jwks().to_string().into_bytes()] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", b64(tag.as_ref()));
        let err = refused(&v, &token).await;
        assert_eq!(err.kind(), "algorithm");
        assert_eq!(err.to_string(), "algorithm `HS256` is not allowed");
    }
}

#[tokio::test]
async fn algorithm_outside_the_issuer_allow_list_is_refused() {
    let dev = DevIssuer::start().await.unwrap();
    let mut cfg = config(&dev);
    cfg.algorithms = vec![Algorithm::RS256];
    let v = TokenValidator::new(vec![cfg]);
    let err = refused(&v, &dev.mint(claims(&dev))).await;
    assert_eq!(err.kind(), "algorithm");
}

#[tokio::test]
async fn header_jwk_and_jku_injection_is_refused() {
    let (dev, v) = setup().await;
    let attacker = DevIssuer::start().await.unwrap();
    let attacker_jwk = attacker.jwks()["keys"][0].clone();
    let c = claims(&dev);
    for (param, value) in [
        ("jwk", attacker_jwk),
        ("jku", json!(format!("{}/jwks", attacker.issuer_url()))),
        ("x5u", json!("https://evil.example/cert.pem")),
    ] {
        let mut header = json!({"alg":"ES256","typ":"JWT","kid":attacker.kid()});
        header[param] = value;
        let err = refused(&v, &attacker.sign_raw(&header, &c)).await;
        assert_eq!(err.kind(), "header", "{param}");
        assert!(err.to_string().contains(param));
    }
    // Without the header trick, the attacker's key simply is not trusted.
    let header = json!({"alg":"ES256","typ":"JWT","kid":dev.kid()});
    let err = refused(&v, &attacker.sign_raw(&header, &c)).await;
    assert_eq!(err.kind(), "signature");
}

#[tokio::test]
async fn critical_header_extension_is_refused() {
    let (dev, v) = setup().await;
    let header = json!({"alg":"ES256","kid":dev.kid(),"crit":["exp"],"exp":1});
    let err = refused(&v, &dev.sign_raw(&header, &claims(&dev))).await;
    assert_eq!(err.kind(), "crit");
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let (dev, v) = setup().await;
    let header = json!({"alg":"ES256","typ":"JWT","kid":"nope"});
    let err = refused(&v, &dev.sign_raw(&header, &claims(&dev))).await;
    assert_eq!(err.kind(), "unknown_kid");
    assert_eq!(err.to_string(), "unknown key id `nope` for issuer dev");
}

#[tokio::test]
async fn tampered_payload_fails_the_signature() {
    let (dev, v) = setup().await;
    let token = dev.mint(claims(&dev));
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims(&dev);
    c["groups"] = json!(["admins"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    let err = refused(&v, &forged).await;
    assert_eq!(err.kind(), "signature");
    assert_eq!(err.to_string(), "signature does not verify");
}

#[tokio::test]
async fn duplicate_claim_names_are_refused() {
    let (dev, v) = setup().await;
    let header = json!({"alg":"ES256","typ":"JWT","kid":dev.kid()}).to_string();
    let c = claims(&dev).to_string();
    // Same document with a second `sub`: some parsers keep the first, some
    // the last, so the token means different things to different readers.
    let dup = format!(r#"{},"sub":"root"}}"#, c.trim_end_matches('}'));
    let err = refused(&v, &dev.sign_raw_json(&header, &dup)).await;
    assert_eq!(err.kind(), "duplicate_member");
    assert_eq!(
        err.to_string(),
        "malformed token: payload has a duplicate member `sub`"
    );
}

#[tokio::test]
async fn non_canonical_base64url_is_refused() {
    let (dev, v) = setup().await;
    let token = dev.mint(claims(&dev));
    let (rest, sig) = token.rsplit_once('.').unwrap();
    // A 64-byte signature leaves 4 unused bits in its last character; set
    // one of them. Lenient decoders yield the same bytes, we must not.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = sig.as_bytes()[sig.len() - 1];
    let pos = ALPHABET.iter().position(|c| *c == last).unwrap();
    let tweaked = ALPHABET[pos | 1] as char;
    assert_ne!(tweaked as u8, last, "ES256 signatures end in zero bits");
    let trailing = format!("{rest}.{}{tweaked}", &sig[..sig.len() - 1]);
    let padded = format!("{rest}.{sig}==");
    let std_alphabet = token.replacen(['-', '_'], "+", 1);
    for bad in [trailing, padded, std_alphabet] {
        if bad == token {
            continue; // token happened to contain neither - nor _
        }
        let err = refused(&v, &bad).await;
        assert_eq!(err.kind(), "base64", "{err}");
    }
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let (dev, v) = setup().await;
    let mut c = claims(&dev);
    c["padding"] = json!("x".repeat(17 * 1024));
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "too_large");
}

#[tokio::test]
async fn missing_or_wrongly_typed_exp_is_refused() {
    let (dev, v) = setup().await;
    let mut c = claims(&dev);
    c.as_object_mut().unwrap().remove("exp");
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "claim_missing");
    assert_eq!(err.to_string(), "required claim `exp` is missing");

    let mut c = claims(&dev);
    c["exp"] = json!((now() + 3600).to_string());
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "claim_type");
    assert!(err.to_string().starts_with("claim `exp` must be"), "{err}");
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let (dev, v) = setup().await;
    assert_eq!(dev.jwks_fetches(), 1, "warm-up fetch");
    for i in 0..20 {
        let header = json!({"alg":"ES256","kid":format!("bogus-{i}")});
        refused(&v, &dev.sign_raw(&header, &claims(&dev))).await;
    }
    // The keys were fetched moments ago; a flood of bogus kids must not
    // send a single extra request within the 30 s window.
    assert_eq!(dev.jwks_fetches(), 1);
}

#[tokio::test]
async fn concurrent_first_use_fetches_keys_once() {
    let dev = DevIssuer::start().await.unwrap();
    let v = std::sync::Arc::new(TokenValidator::new(vec![config(&dev)]));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let v = v.clone();
        let header = json!({"alg":"ES256","kid":format!("bogus-{i}")});
        let token = dev.sign_raw(&header, &claims(&dev));
        tasks.spawn(async move { v.validate(&token).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap_err().kind(), "unknown_kid");
    }
    assert_eq!(dev.jwks_fetches(), 1);
}

#[tokio::test]
async fn rotated_key_is_picked_up_once_the_refetch_interval_passed() {
    let dev = DevIssuer::start().await.unwrap();
    let options = ValidatorOptions {
        key_refresh: KeyRefreshPolicy {
            unknown_kid_refetch: Duration::from_millis(300),
            ..KeyRefreshPolicy::default()
        },
        ..ValidatorOptions::default()
    };
    let v = TokenValidator::with_options(vec![config(&dev)], options);
    v.warm_up().await;
    let kid = dev
        .add_rsa_key(include_bytes!("fixtures/rsa2048.pk8"))
        .unwrap();
    let token = dev.mint_rs256(&kid, &claims(&dev)).unwrap();
    assert_eq!(refused(&v, &token).await.kind(), "unknown_kid");
    assert_eq!(dev.jwks_fetches(), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    v.validate(&token).await.unwrap();
    assert_eq!(dev.jwks_fetches(), 2);
    let header = json!({"alg":"ES256","kid":"bogus"});
    refused(&v, &dev.sign_raw(&header, &claims(&dev))).await;
    assert_eq!(dev.jwks_fetches(), 2);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let dev = DevIssuer::start().await.unwrap();
    let options = ValidatorOptions {
        key_refresh: KeyRefreshPolicy {
            unknown_kid_refetch: Duration::ZERO,
            ..KeyRefreshPolicy::default()
        },
        ..ValidatorOptions::default()
    };
    let v = TokenValidator::with_options(vec![config(&dev)], options);
    v.warm_up().await;
    let mut dev = dev;
    dev.stop().await;
    // An unknown kid makes the validator try the (dead) issuer...
    let header = json!({"alg":"ES256","kid":"bogus"});
    let err = refused(&v, &dev.sign_raw(&header, &claims(&dev))).await;
    assert_eq!(err.kind(), "unknown_kid");
    // ...and fresh tokens still validate with the keys it already had.
    let id = v.validate(&dev.mint(claims(&dev))).await.unwrap();
    assert_eq!(id.sub, "alice@example.com");
}

#[tokio::test]
async fn without_any_keys_validation_fails_closed() {
    let mut dev = DevIssuer::start().await.unwrap();
    dev.stop().await;
    let v = TokenValidator::new(vec![config(&dev)]);
    v.warm_up().await; // logs, does not fail
    let err = refused(&v, &dev.mint(claims(&dev))).await;
    assert_eq!(err.kind(), "keys_unavailable");
    assert!(
        err.to_string()
            .starts_with("keys for issuer dev are unavailable"),
        "{err}"
    );
}

#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background() {
    let dev = DevIssuer::start().await.unwrap();
    let options = ValidatorOptions {
        key_refresh: KeyRefreshPolicy {
            unknown_kid_refetch: Duration::ZERO,
            max_age: Duration::ZERO,
            ..KeyRefreshPolicy::default()
        },
        ..ValidatorOptions::default()
    };
    let v = TokenValidator::with_options(vec![config(&dev)], options);
    v.warm_up().await;
    assert_eq!(dev.jwks_fetches(), 1);
    // Answered from the (stale) cache at once; the refresh happens behind.
    v.validate(&dev.mint(claims(&dev))).await.unwrap();
    for _ in 0..50 {
        if dev.jwks_fetches() >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no background refresh: {} fetches", dev.jwks_fetches());
}

#[tokio::test]
async fn discovery_document_for_another_issuer_is_not_trusted() {
    let dev = DevIssuer::start().await.unwrap();
    // Configured with a trailing slash: the document's `issuer` must match
    // the configured value exactly, and here it does not.
    let mut cfg = config(&dev);
    cfg.issuer = format!("{}/", dev.issuer_url());
    let v = TokenValidator::new(vec![cfg.clone()]);
    v.warm_up().await;
    let mut c = claims(&dev);
    c["iss"] = json!(cfg.issuer);
    let err = refused(&v, &dev.mint(c)).await;
    assert_eq!(err.kind(), "keys_unavailable");
    assert!(
        err.to_string().contains("discovery document names issuer"),
        "{err}"
    );
    assert_eq!(dev.jwks_fetches(), 0);
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_working_after_the_next_refresh() {
    let dev = DevIssuer::start().await.unwrap();
    let options = ValidatorOptions {
        key_refresh: KeyRefreshPolicy {
            unknown_kid_refetch: Duration::ZERO,
            ..KeyRefreshPolicy::default()
        },
        // Every validation runs the pipeline, not the validated-token cache.
        token_cache_capacity: 0,
    };
    let v = TokenValidator::with_options(vec![config(&dev)], options);
    v.warm_up().await;
    let kid = dev
        .add_rsa_key(include_bytes!("fixtures/rsa2048.pk8"))
        .unwrap();
    let token = dev.mint_rs256(&kid, &claims(&dev)).unwrap();
    v.validate(&token).await.unwrap(); // unknown kid -> refetch -> found
    assert_eq!(dev.jwks_fetches(), 2);

    assert!(dev.withdraw_rsa_key(&kid));
    // Until the validator refreshes, its cached copy of the key still works.
    v.validate(&token).await.unwrap();
    assert_eq!(dev.jwks_fetches(), 2);
    // Any refresh (here one triggered by another unknown kid) drops it.
    let header = json!({"alg":"ES256","kid":"bogus"});
    refused(&v, &dev.sign_raw(&header, &claims(&dev))).await;
    assert_eq!(dev.jwks_fetches(), 3);
    let err = refused(&v, &token).await;
    assert_eq!(err.kind(), "unknown_kid", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_unknown_kids_costs_the_issuer_a_handful_of_fetches() {
    // Cold start with the production refresh policy: the first tokens find
    // no keys at all and fetch them; every later unknown kid falls inside
    // the 30 s unknown-kid window.
    let dev = std::sync::Arc::new(DevIssuer::start().await.unwrap());
    let v = std::sync::Arc::new(TokenValidator::new(vec![config(&dev)]));
    const TOKENS: usize = 1000;
    const TASKS: usize = 50;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (v, dev) = (v.clone(), dev.clone());
        tasks.spawn(async move {
            let mut kinds = Vec::new();
            for i in 0..TOKENS / TASKS {
                let mut kid = [0u8; 12];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut kid);
                let header =
                    json!({"alg":"ES256","kid":format!("{task}-{i}-{}", hex::encode(kid))});
                let token = dev.sign_raw(&header, &claims(&dev));
                kinds.push(v.validate(&token).await.unwrap_err().kind());
            }
            kinds
        });
    }
    let mut refused = 0;
    while let Some(kinds) = tasks.join_next().await {
        for kind in kinds.unwrap() {
            assert_eq!(kind, "unknown_kid");
            refused += 1;
        }
    }
    assert_eq!(refused, TOKENS);
    let fetches = dev.jwks_fetches();
    eprintln!("unknown-kid burst: {TOKENS} tokens -> {fetches} JWKS fetches");
    assert!(fetches <= 3, "{fetches} JWKS fetches");
    // The real key still works, without another fetch.
    v.validate(&dev.mint(claims(&dev))).await.unwrap();
    assert_eq!(dev.jwks_fetches(), fetches);
}
