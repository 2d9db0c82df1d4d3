//! The negative suite: one crafted token per rule of SPEC §6 / issue 3,
//! each refused with its own specific `TokenError::kind()`. Every token is
//! also run through `inspect`, which must refuse exactly when `validate`
//! does, for the same reason: the two share one pipeline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idgate::config::{Algorithm, GroupMapping, IssuerConfig, TokenTypes};
use idgate::dev::DevIssuer;
use idgate::identity::{Status, TokenValidator};
use serde_json::{Value, json};

const AUD: &str = "idgate";
const HOUR: Duration = Duration::from_secs(3600);
/// 3000-01-01T00:00:00Z.
const YEAR_3000: i64 = 32_503_680_000;

/// Three issuers: `dev` publishes an EC key and two RSA keys; `ec_only`
/// publishes just its EC key; `enc_rsa` publishes, beside its EC key, an
/// RSA key marked for encryption by `key_ops` alone (no `use`).
struct Fixture {
    dev: DevIssuer,
    rsa_a: String,
    rsa_b: String,
    ec_only: DevIssuer,
    enc_rsa: DevIssuer,
    enc_kid: String,
}

impl Fixture {
    async fn start() -> Fixture {
        let dev = DevIssuer::start().await.unwrap();
        let rsa_a = dev
            .add_rsa_key(include_bytes!("fixtures/rsa2048.pk8"))
            .unwrap();
        let rsa_b = dev
            .add_rsa_key(include_bytes!("fixtures/rsa2048-b.pk8"))
            .unwrap();
        let ec_only = DevIssuer::start().await.unwrap();
        let enc_rsa = DevIssuer::start().await.unwrap();
        let enc_kid = enc_rsa
            .add_rsa_key_published_as(
                include_bytes!("fixtures/rsa2048.pk8"),
                &json!({"use": null, "alg": null, "key_ops": ["encrypt"]}),
            )
            .unwrap();
        Fixture {
            dev,
            rsa_a,
            rsa_b,
            ec_only,
            enc_rsa,
            enc_kid,
        }
    }

    fn config(&self) -> IssuerConfig {
        IssuerConfig {
            identity_claim: "email".into(),
            ..IssuerConfig::new("dev", &self.dev.issuer_url(), &[AUD])
        }
    }

    fn claims(&self) -> Value {
        self.dev
            .claims_for("alice@example.com", &["analysts"], AUD, HOUR)
    }

    /// `claims()` as issued by `enc_rsa`.
    fn enc_claims(&self) -> Value {
        self.with("iss", json!(self.enc_rsa.issuer_url()))
    }

    fn with(&self, claim: &str, value: Value) -> Value {
        let mut c = self.claims();
        c[claim] = value;
        c
    }

    fn without(&self, claim: &str) -> Value {
        let mut c = self.claims();
        c.as_object_mut().unwrap().remove(claim);
        c
    }

    fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "JWT", "kid": self.dev.kid()})
    }

    fn header_with(&self, param: &str, value: Value) -> Value {
        let mut h = self.header();
        h[param] = value;
        h
    }

    fn es(&self, header: &Value, claims: &Value) -> String {
        self.dev.sign_raw(header, claims)
    }

    fn mint(&self, claims: &Value) -> String {
        self.dev.mint(claims.clone())
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// Replaces the signature segment of `token` with `f(signature bytes)`.
fn resign(token: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(&f(unb64(sig))))
}

/// A JSON value nested `depth` arrays deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

type Build = Box<dyn Fn(&Fixture) -> String>;
type Configure = Box<dyn Fn(&Fixture, &mut IssuerConfig)>;

struct Case {
    name: &'static str,
    kind: &'static str,
    token: Build,
    config: Option<Configure>,
}

fn case(
    name: &'static str,
    kind: &'static str,
    token: impl Fn(&Fixture) -> String + 'static,
) -> Case {
    Case {
        name,
        kind,
        token: Box::new(token),
        config: None,
    }
}

impl Case {
    fn config(mut self, f: impl Fn(&Fixture, &mut IssuerConfig) + 'static) -> Case {
        self.config = Some(Box::new(f));
        self
    }
}

fn negative_cases() -> Vec<Case> {
    vec![
        // Size and structure, before any decoding or crypto.
        case("token over 16 KiB", "too_large", |f| {
            f.mint(&f.with("padding", json!("x".repeat(17 * 1024))))
        }),
        case("two segments", "segments", |f| {
            let t = f.mint(&f.claims());
            t.rsplit_once('.').unwrap().0.to_string()
        }),
        case("four segments", "segments", |f| {
            format!("{}.e30", f.mint(&f.claims()))
        }),
        case("five segments: a JWE", "encrypted", |_| {
            format!("{}.a.b.c.d", b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#))
        }),
        case("header over 2 KiB", "header_too_large", |f| {
            f.es(&f.header_with("pad", json!("x".repeat(2100))), &f.claims())
        }),
        case("padded signature", "base64", |f| {
            format!("{}==", f.mint(&f.claims()))
        }),
        case("non-alphabet character in payload", "base64", |f| {
            let t = f.mint(&f.claims());
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[1].insert(4, '*');
            parts.join(".")
        }),
        case("header is not JSON", "json", |f| {
            let t = f.mint(&f.claims());
            let (_, rest) = t.split_once('.').unwrap();
            format!("{}.{rest}", b64(b"alg=ES256"))
        }),
        case("payload is a JSON array", "json", |f| {
            f.es(&f.header(), &json!([1, 2]))
        }),
        case("duplicate claim `sub`", "duplicate_member", |f| {
            let c = f.claims().to_string();
            let dup = format!(r#"{},"sub":"root"}}"#, c.trim_end_matches('}'));
            f.dev.sign_raw_json(&f.header().to_string(), &dup)
        }),
        case("duplicate header `alg`", "duplicate_member", |f| {
            let h = format!(r#"{{"alg":"ES256","kid":"{}","alg":"none"}}"#, f.dev.kid());
            f.dev.sign_raw_json(&h, &f.claims().to_string())
        }),
        case("payload nested 40 deep", "json_depth", |f| {
            f.mint(&f.with("deep", nested(40)))
        }),
        case("header nested 40 deep", "json_depth", |f| {
            f.es(&f.header_with("deep", nested(40)), &f.claims())
        }),
        // Header rules.
        case("alg none", "algorithm", |f| {
            let t = f.es(&f.header_with("alg", json!("none")), &f.claims());
            format!("{}.", t.rsplit_once('.').unwrap().0)
        }),
        case("HS256 with the public key as secret", "algorithm", |f| {
            let t = f.es(&f.header_with("alg", json!("HS256")), &f.claims());
            let (input, _) = t.rsplit_once('.').unwrap();
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &f.dev.es256_public_key());
            format!(
                "{input}.{}",
                b64(ring::hmac::sign(&key, input.as_bytes()).as_ref())
            )
        }),
        case("ES256 not on the issuer's allow-list", "algorithm", |f| {
            f.mint(&f.claims())
        })
        .config(|_, c| c.algorithms = vec![Algorithm::RS256]),
        case("header alg not a string", "malformed", |f| {
            f.es(&f.header_with("alg", json!(["ES256"])), &f.claims())
        }),
        case("header kid not a string", "malformed", |f| {
            f.es(&f.header_with("kid", json!(7)), &f.claims())
        }),
        // Keys the issuer did not publish for verifying signatures.
        case(
            "kid of a key_ops [encrypt] key without `use`",
            "unknown_kid",
            |f| {
                let c = f.enc_claims();
                f.enc_rsa.mint_rs256(&f.enc_kid, &c).unwrap()
            },
        )
        .config(|f, c| c.issuer = f.enc_rsa.issuer_url()),
        case(
            "no kid, only a key_ops [encrypt] RSA key",
            "no_key_for_alg",
            |f| {
                let h = json!({"alg":"RS256","typ":"JWT"});
                let c = f.enc_claims();
                f.enc_rsa.sign_raw_rs256(&f.enc_kid, &h, &c).unwrap()
            },
        )
        .config(|f, c| c.issuer = f.enc_rsa.issuer_url()),
        case("embedded jwk", "header", |f| {
            let jwk = f.ec_only.jwks()["keys"][0].clone();
            f.ec_only.sign_raw(&f.header_with("jwk", jwk), &f.claims())
        }),
        case("jku pointing elsewhere", "header", |f| {
            f.es(
                &f.header_with("jku", json!("https://evil.example/jwks")),
                &f.claims(),
            )
        }),
        case("x5u pointing elsewhere", "header", |f| {
            f.es(
                &f.header_with("x5u", json!("https://evil.example/c.pem")),
                &f.claims(),
            )
        }),
        case("embedded x5c chain", "header", |f| {
            f.es(
                &f.header_with("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
                &f.claims(),
            )
        }),
        case("zip header", "zip", |f| {
            f.es(&f.header_with("zip", json!("DEF")), &f.claims())
        }),
        case("unknown crit", "crit", |f| {
            let mut h = f.header_with("crit", json!(["exp"]));
            h["exp"] = json!(1);
            f.es(&h, &f.claims())
        }),
        case("typ JOSE+JSON", "typ", |f| {
            f.es(&f.header_with("typ", json!("JOSE+JSON")), &f.claims())
        }),
        case(
            "ID token where only access tokens are accepted",
            "token_type",
            |f| f.mint(&f.claims()),
        )
        .config(|_, c| {
            c.token_types = TokenTypes {
                access: true,
                id: false,
            }
        }),
        case(
            "access token where only ID tokens are accepted",
            "token_type",
            |f| f.es(&f.header_with("typ", json!("at+jwt")), &f.claims()),
        )
        .config(|_, c| {
            c.token_types = TokenTypes {
                access: false,
                id: true,
            }
        }),
        // Issuer.
        case("unconfigured issuer", "issuer", |f| {
            f.mint(&f.with("iss", json!("https://evil.example")))
        }),
        case("issuer with a trailing slash", "issuer", |f| {
            f.mint(&f.with("iss", json!(format!("{}/", f.dev.issuer_url()))))
        }),
        case("no iss", "claim_missing", |f| f.mint(&f.without("iss"))),
        case("iss not a string", "claim_type", |f| {
            f.mint(&f.with("iss", json!(1)))
        }),
        // Keys: kid is only a lookup key, algorithm bound to the key type.
        case("unknown kid", "unknown_kid", |f| {
            f.es(&f.header_with("kid", json!("nope")), &f.claims())
        }),
        case("RS256 header naming the EC key", "key_mismatch", |f| {
            let h = json!({"alg":"RS256","typ":"JWT","kid":f.dev.kid()});
            f.dev.sign_raw_rs256(&f.rsa_a, &h, &f.claims()).unwrap()
        }),
        case("ES256 header naming an RSA key", "key_mismatch", |f| {
            f.es(&f.header_with("kid", json!(f.rsa_a)), &f.claims())
        }),
        case(
            "no kid, RS256, issuer without RSA keys",
            "no_key_for_alg",
            |f| {
                let mut c = f.claims();
                c["iss"] = json!(f.ec_only.issuer_url());
                // Any RSA signature: there is no key to try it with.
                f.dev
                    .sign_raw_rs256(&f.rsa_a, &json!({"alg":"RS256","typ":"JWT"}), &c)
                    .unwrap()
            },
        )
        .config(|f, c| c.issuer = f.ec_only.issuer_url()),
        // Signatures.
        case("ES256 signature of 63 bytes", "signature_format", |f| {
            resign(&f.mint(&f.claims()), |mut s| {
                s.pop();
                s
            })
        }),
        case(
            "ES256 signature in DER-like 72 bytes",
            "signature_format",
            |f| {
                resign(&f.mint(&f.claims()), |mut s| {
                    s.extend_from_slice(&[0; 8]);
                    s
                })
            },
        ),
        case("ES256 signature with r = 0", "signature_format", |f| {
            resign(&f.mint(&f.claims()), |mut s| {
                s[..32].fill(0);
                s
            })
        }),
        case("RS256 signature one byte short", "signature_format", |f| {
            let t = f.dev.mint_rs256(&f.rsa_a, &f.claims()).unwrap();
            resign(&t, |mut s| {
                s.pop();
                s
            })
        }),
        case("empty signature", "signature_format", |f| {
            format!("{}.", f.mint(&f.claims()).rsplit_once('.').unwrap().0)
        }),
        case("payload changed after signing", "signature", |f| {
            let t = f.mint(&f.claims());
            let parts: Vec<&str> = t.split('.').collect();
            let forged = f.with("groups", json!(["admins"]));
            format!(
                "{}.{}.{}",
                parts[0],
                b64(forged.to_string().as_bytes()),
                parts[2]
            )
        }),
        case(
            "signed by another issuer's key under our kid",
            "signature",
            |f| f.ec_only.sign_raw(&f.header(), &f.claims()),
        ),
        case("RS256 signed by key b, kid of key a", "signature", |f| {
            let h = json!({"alg":"RS256","typ":"JWT","kid":f.rsa_a});
            f.dev.sign_raw_rs256(&f.rsa_b, &h, &f.claims()).unwrap()
        }),
        // Claim types.
        case("no sub", "claim_missing", |f| f.mint(&f.without("sub"))),
        case("sub a number", "claim_type", |f| {
            f.mint(&f.with("sub", json!(42)))
        }),
        case("sub empty", "sub_empty", |f| {
            f.mint(&f.with("sub", json!("")))
        }),
        case("no aud", "claim_missing", |f| f.mint(&f.without("aud"))),
        case("aud holds a number", "claim_type", |f| {
            f.mint(&f.with("aud", json!([AUD, 7])))
        }),
        case("no exp", "claim_missing", |f| f.mint(&f.without("exp"))),
        case("exp a string", "claim_type", |f| {
            f.mint(&f.with("exp", json!((now() + 3600).to_string())))
        }),
        case("nbf a boolean", "claim_type", |f| {
            f.mint(&f.with("nbf", json!(true)))
        }),
        case("azp a number", "claim_type", |f| {
            f.mint(&f.with("azp", json!(1)))
        }),
        // Time.
        case("expired beyond the skew", "expired", |f| {
            let mut c = f.with("exp", json!(now() - 120));
            c["iat"] = json!(now() - 600);
            c["nbf"] = json!(now() - 600);
            f.mint(&c)
        }),
        case("nbf beyond the skew", "not_yet_valid", |f| {
            f.mint(&f.with("nbf", json!(now() + 600)))
        }),
        case("iat in the future", "issued_in_future", |f| {
            let mut c = f.with("iat", json!(now() + 600));
            c["nbf"] = json!(now());
            f.mint(&c)
        }),
        case("lifetime over max_lifetime", "lifetime", |f| {
            f.mint(&f.with("exp", json!(now() + 7200)))
        })
        .config(|_, c| c.max_lifetime = HOUR),
        // Without iat a token issued before a revocation cannot be told
        // from a later one, so it is refused however short it is.
        case("no iat", "claim_missing", |f| f.mint(&f.without("iat"))),
        // No max_lifetime configured: the default cap (24 h) applies.
        case("exp in the year 3000, default cap", "lifetime", |f| {
            f.mint(&f.with("exp", json!(YEAR_3000)))
        }),
        case(
            "exp in the year 3000 without iat, default cap",
            "claim_missing",
            |f| {
                let mut c = f.without("iat");
                c["exp"] = json!(YEAR_3000);
                f.mint(&c)
            },
        ),
        // Audience and authorized party.
        case("wrong audience", "audience", |f| {
            f.mint(&f.with("aud", json!("api://x")))
        }),
        case("no azp where required", "azp", |f| f.mint(&f.claims()))
            .config(|_, c| c.authorized_parties = Some(vec!["client-a".into()])),
        case("azp of another client", "azp", |f| {
            f.mint(&f.with("azp", json!("client-b")))
        })
        .config(|_, c| c.authorized_parties = Some(vec!["client-a".into()])),
        // Required claims and groups.
        case("required claim missing", "claim_missing", |f| {
            f.mint(&f.without("email"))
        })
        .config(|_, c| c.required_claims = vec!["email".into()]),
        case("required claim null", "claim_missing", |f| {
            f.mint(&f.with("tenant", Value::Null))
        })
        .config(|_, c| c.required_claims = vec!["tenant".into()]),
        case("groups a bare string", "claim_type", |f| {
            f.mint(&f.with("groups", json!("admins")))
        }),
        case("groups holding a number", "claim_type", |f| {
            f.mint(&f.with("groups", json!(["ok", 1])))
        }),
        case("groups pointer to an object", "claim_type", |f| {
            f.mint(&f.with("realm_access", json!({"roles": {"a": 1}})))
        })
        .config(|_, c| c.groups_claim = "/realm_access/roles".into()),
    ]
}

/// Tokens the gateway must accept under the given configuration; they pin
/// down that each rule refuses only what it should.
fn positive_cases() -> Vec<Case> {
    vec![
        case("plain ES256 ID token", "", |f| f.mint(&f.claims())),
        case(
            "ES256 from an issuer that also publishes an encryption key",
            "",
            |f| f.enc_rsa.mint(f.enc_claims()),
        )
        .config(|f, c| c.issuer = f.enc_rsa.issuer_url()),
        case("RS256 with kid", "", |f| {
            f.dev.mint_rs256(&f.rsa_b, &f.claims()).unwrap()
        }),
        case("no kid, two RSA keys: the second verifies", "", |f| {
            let h = json!({"alg":"RS256","typ":"JWT"});
            f.dev.sign_raw_rs256(&f.rsa_b, &h, &f.claims()).unwrap()
        }),
        case(
            "access token where only access tokens are accepted",
            "",
            |f| {
                f.es(
                    &f.header_with("typ", json!("application/at+jwt")),
                    &f.claims(),
                )
            },
        )
        .config(|_, c| {
            c.token_types = TokenTypes {
                access: true,
                id: false,
            }
        }),
        case("every optional rule configured and met", "", |f| {
            let mut c = f.with("azp", json!("client-a"));
            c["repository"] = json!("acme/app");
            f.mint(&c)
        })
        .config(|_, c| {
            c.max_lifetime = HOUR;
            c.required_claims = vec!["email".into()];
            c.authorized_parties = Some(vec!["client-a".into()]);
            c.group_mappings = vec![GroupMapping {
                claim: "repository".into(),
                value: "acme/app".into(),
                groups: vec!["deployers".into()],
            }];
        }),
        case("a lifetime of 23 h under the default cap", "", |f| {
            f.mint(&f.with("exp", json!(now() + 23 * 3600)))
        }),
        case("groups as a string when allowed", "", |f| {
            f.mint(&f.with("groups", json!("admins")))
        })
        .config(|_, c| c.groups_claim_string = true),
    ]
}

async fn validator_for(f: &Fixture, c: &Case) -> TokenValidator {
    let mut config = f.config();
    if let Some(configure) = &c.config {
        configure(f, &mut config);
    }
    TokenValidator::new(vec![config])
}

#[tokio::test]
async fn every_crafted_token_is_refused_for_its_specific_reason() {
    let f = Fixture::start().await;
    let cases = negative_cases();
    assert!(cases.len() >= 30, "the suite has {} cases", cases.len());
    let mut wrong = Vec::new();
    for c in &cases {
        let v = validator_for(&f, c).await;
        let token = (c.token)(&f);
        match v.validate(&token).await {
            Ok(_) => wrong.push(format!("{}: accepted", c.name)),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{}: one line: {msg}", c.name);
                assert!(
                    token.len() < 40 || !msg.contains(&token),
                    "{}: message echoes the token",
                    c.name
                );
                if e.kind() != c.kind {
                    wrong.push(format!(
                        "{}: expected {}, got {} ({e})",
                        c.name,
                        c.kind,
                        e.kind()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!(
        "negative suite: {} crafted tokens refused with their specific kind",
        cases.len()
    );
}

#[tokio::test]
async fn the_positive_controls_are_accepted() {
    let f = Fixture::start().await;
    for c in positive_cases() {
        let v = validator_for(&f, &c).await;
        let id = v
            .validate(&(c.token)(&f))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(id.identity, "alice@example.com", "{}", c.name);
    }
}

#[tokio::test]
async fn inspect_fails_exactly_when_validate_fails() {
    let f = Fixture::start().await;
    for c in negative_cases().iter().chain(positive_cases().iter()) {
        let token = (c.token)(&f);
        // Separate validators: `validate` would otherwise answer a repeat
        // from its token cache, and we want both to run the pipeline.
        let validated = validator_for(&f, c).await.validate(&token).await;
        let inspection = validator_for(&f, c).await.inspect(&token).await;
        assert_eq!(
            inspection.accepted(),
            validated.is_ok(),
            "{}: inspect and validate disagree",
            c.name
        );
        match (&validated, &inspection.verdict) {
            (Err(v), Some(Err(i))) => assert_eq!(v.kind(), i.kind(), "{}", c.name),
            (Ok(v), Some(Ok(i))) => assert_eq!(v, i, "{}", c.name),
            _ => panic!("{}: verdicts differ", c.name),
        }
        // The failure inspect reports first is the one validate returned.
        if let Err(e) = &validated {
            let first = inspection
                .outcomes
                .iter()
                .find(|o| o.status == Status::Fail)
                .unwrap_or_else(|| panic!("{}: no failed check", c.name));
            assert!(
                first.detail.starts_with(&e.to_string()),
                "{}: first failure {:?} vs {e}",
                c.name,
                first.detail
            );
        }
        let report = inspection.render();
        let signature = token.rsplit_once('.').map_or("", |(_, s)| s);
        assert!(
            signature.len() < 16 || !report.contains(signature),
            "{}: report shows the signature",
            c.name
        );
        assert!(
            !report.contains(&token),
            "{}: report shows the token",
            c.name
        );
    }
}
