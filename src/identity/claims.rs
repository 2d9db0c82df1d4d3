//! The registered claims we rely on: their types (checked before any crypto),
//! the time and audience checks (after the signature), and how a verified
//! claim set becomes an `Identity`.

use serde_json::{Map, Value};

use super::Identity;
use super::error::{TokenError, shown};
use crate::config::{GroupMapping, IssuerConfig};

/// Registered claims, typed. Built from the unverified payload so that a
/// token with `exp: "tomorrow"` is refused without spending a signature check.
#[derive(Debug)]
pub(crate) struct Claims<'a> {
    pub sub: &'a str,
    pub aud: Vec<&'a str>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<&'a str>,
    pub azp: Option<&'a str>,
}

impl<'a> Claims<'a> {
    pub fn parse(map: &'a Map<String, Value>) -> Result<Self, TokenError> {
        let sub = required(map, "sub", string)?;
        let aud = match map.get("aud") {
            None => return Err(TokenError::MissingClaim("aud".into())),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::claim_type("aud", "a string or an array of strings"))?,
            Some(_) => {
                return Err(TokenError::claim_type(
                    "aud",
                    "a string or an array of strings",
                ));
            }
        };
        Ok(Claims {
            sub,
            aud,
            exp: required(map, "exp", numeric_date)?,
            nbf: optional(map, "nbf", numeric_date)?,
            iat: optional(map, "iat", numeric_date)?,
            jti: optional(map, "jti", string)?,
            azp: optional(map, "azp", string)?,
        })
    }

    /// `sub` is who the token is about; an empty one would make every such
    /// token the same principal.
    pub fn check_subject(&self) -> Result<(), TokenError> {
        if self.sub.is_empty() {
            return Err(TokenError::EmptySubject);
        }
        Ok(())
    }

    /// `nbf` with the issuer's skew (absent: nothing to check).
    pub fn check_not_before(&self, skew: i64, now: i64) -> Result<(), TokenError> {
        match self.nbf.filter(|nbf| *nbf > now.saturating_add(skew)) {
            Some(nbf) => Err(TokenError::NotYetValid(nbf - now)),
            None => Ok(()),
        }
    }

    /// `iat` may not lie in the future beyond the skew.
    pub fn check_issued_at(&self, skew: i64, now: i64) -> Result<(), TokenError> {
        match self.iat.filter(|iat| *iat > now.saturating_add(skew)) {
            Some(iat) => Err(TokenError::IssuedInFuture(iat - now)),
            None => Ok(()),
        }
    }

    /// The token's lifetime, `exp - iat`, within `max` seconds. `iat` is
    /// required: without it a token issued before a revocation could not be
    /// told from one issued after, and a long-lived one would outlast the
    /// revocation (which is kept only `max_lifetime` plus skew).
    pub fn check_lifetime(&self, max: u64) -> Result<i64, TokenError> {
        let iat = self
            .iat
            .ok_or_else(|| TokenError::MissingClaim("iat".into()))?;
        let lifetime = self.exp.saturating_sub(iat);
        if u64::try_from(lifetime).is_ok_and(|l| l > max) {
            return Err(TokenError::Lifetime { lifetime, max });
        }
        Ok(lifetime)
    }

    /// `azp` (the client the token was issued to) must be one of `expected`.
    pub fn check_authorized_party(&self, expected: &[String]) -> Result<(), TokenError> {
        match self.azp {
            Some(azp) if expected.iter().any(|e| e == azp) => Ok(()),
            got => Err(TokenError::AuthorizedParty {
                expected: expected.to_vec(),
                got: got.map(shown),
            }),
        }
    }

    pub fn check_audience(&self, expected: &[String]) -> Result<(), TokenError> {
        if self.aud.iter().any(|a| expected.iter().any(|e| e == a)) {
            return Ok(());
        }
        Err(TokenError::Audience {
            expected: expected.to_vec(),
            got: self.aud.iter().take(8).map(|a| shown(a)).collect(),
        })
    }
}

/// A token is valid while `now < exp + skew` (RFC 7519 §4.1.4). Shared with
/// the validated-token cache, so a cache hit expires exactly like a fresh
/// validation would.
pub(crate) fn check_expiry(exp: i64, skew: i64, now: i64) -> Result<(), TokenError> {
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired(now.saturating_sub(exp)));
    }
    Ok(())
}

/// Every configured claim must be present and not null.
pub(crate) fn check_required(
    map: &Map<String, Value>,
    required: &[String],
) -> Result<(), TokenError> {
    match required
        .iter()
        .find(|name| lookup(map, name).is_none_or(Value::is_null))
    {
        Some(name) => Err(TokenError::MissingClaim(shown(name))),
        None => Ok(()),
    }
}

/// Builds the caller's identity from a verified claim set.
pub(crate) fn identity(
    config: &IssuerConfig,
    claims: &Claims<'_>,
    map: &Map<String, Value>,
) -> Result<Identity, TokenError> {
    let identity = match map.get(&config.identity_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => claims.sub.to_string(),
    };
    Ok(Identity {
        issuer_name: config.name.clone(),
        issuer: config.issuer.clone(),
        sub: claims.sub.to_string(),
        identity,
        groups: groups(map, config)?,
        expires_at: claims.exp,
        issued_at: claims.iat,
        jti: claims.jti.map(str::to_owned),
        claims: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

/// A claim by name, or by JSON pointer (`/realm_access/roles`) when it
/// starts with `/`. The pointer's first step is a top-level claim name, so
/// `/a~1b/c` reads member `c` of claim `a/b` (RFC 6901 escaping).
pub(crate) fn lookup<'a>(map: &'a Map<String, Value>, claim: &str) -> Option<&'a Value> {
    match claim.strip_prefix('/') {
        Some(pointer) => {
            let (first, rest) = match pointer.find('/') {
                Some(i) => (&pointer[..i], &pointer[i..]),
                None => (pointer, ""),
            };
            let first = first.replace("~1", "/").replace("~0", "~");
            map.get(&first).and_then(|v| v.pointer(rest))
        }
        None => map.get(claim),
    }
}

/// Groups from `groups_claim`, then the static mappings. A missing claim
/// means no groups; a claim of the wrong shape is refused rather than read
/// as "no groups", so a typo in the issuer's mapper shows up.
pub(crate) fn groups(
    map: &Map<String, Value>,
    config: &IssuerConfig,
) -> Result<Vec<String>, TokenError> {
    let claim = &config.groups_claim;
    let expected = if config.groups_claim_string {
        "an array of strings or a string"
    } else {
        "an array of strings (set groups_claim_string = true to accept a single string)"
    };
    let mut out = match lookup(map, claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if config.groups_claim_string => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TokenError::claim_type(claim, expected))?,
        Some(_) => return Err(TokenError::claim_type(claim, expected)),
    };
    for mapping in &config.group_mappings {
        if mapping_matches(map, mapping) {
            for g in &mapping.groups {
                if !out.contains(g) {
                    out.push(g.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The claim equals the mapping's value, or is an array containing it.
fn mapping_matches(map: &Map<String, Value>, mapping: &GroupMapping) -> bool {
    match lookup(map, &mapping.claim) {
        Some(Value::String(s)) => *s == mapping.value,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(&mapping.value)),
        _ => false,
    }
}

type Extract<'a, T> = fn(&'a Value, &'static str) -> Result<T, TokenError>;

fn required<'a, T>(
    map: &'a Map<String, Value>,
    name: &'static str,
    extract: Extract<'a, T>,
) -> Result<T, TokenError> {
    map.get(name)
        .ok_or_else(|| TokenError::MissingClaim(name.into()))
        .and_then(|v| extract(v, name))
}

fn optional<'a, T>(
    map: &'a Map<String, Value>,
    name: &'static str,
    extract: Extract<'a, T>,
) -> Result<Option<T>, TokenError> {
    map.get(name).map(|v| extract(v, name)).transpose()
}

fn string<'a>(v: &'a Value, name: &'static str) -> Result<&'a str, TokenError> {
    v.as_str()
        .ok_or_else(|| TokenError::claim_type(name, "a string"))
}

/// RFC 7519 NumericDate: seconds since the epoch, fractions allowed (and
/// truncated toward the past).
fn numeric_date(v: &Value, name: &'static str) -> Result<i64, TokenError> {
    let wrong = || TokenError::claim_type(name, "a number of seconds since the epoch");
    let Value::Number(n) = v else {
        return Err(wrong());
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation)] // range checked just before
        Some(f) if n.is_f64() && f.is_finite() && f.abs() < 1e15 => Ok(f.floor() as i64),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn wrong_types_are_refused() {
        let base = json!({"sub":"a","aud":"x","exp":10});
        for (claim, bad) in [
            ("exp", json!("10")),
            ("exp", json!(true)),
            ("exp", json!(u64::MAX)),
            ("nbf", json!([1])),
            ("sub", json!(5)),
            ("aud", json!([1])),
            ("jti", json!({})),
        ] {
            let mut m = map(base.clone());
            m.insert(claim.into(), bad);
            assert_eq!(
                Claims::parse(&m).unwrap_err().kind(),
                "claim_type",
                "{claim}"
            );
        }
    }

    #[test]
    fn fractional_dates_are_accepted() {
        let m = map(json!({"sub":"a","aud":["x"],"exp":10.9,"iat":1.5}));
        let c = Claims::parse(&m).unwrap();
        assert_eq!((c.exp, c.iat), (10, Some(1)));
    }

    #[test]
    fn time_checks_honour_skew() {
        let m = map(json!({"sub":"a","aud":"x","exp":100,"nbf":200,"iat":50}));
        let c = Claims::parse(&m).unwrap();
        assert_eq!(
            check_expiry(c.exp, 0, 150).unwrap_err(),
            TokenError::Expired(50)
        );
        assert!(check_expiry(100, 60, 150).is_ok());
        let m = map(json!({"sub":"a","aud":"x","exp":1000,"nbf":200}));
        let c = Claims::parse(&m).unwrap();
        assert_eq!(
            c.check_not_before(0, 150).unwrap_err(),
            TokenError::NotYetValid(50)
        );
        assert!(c.check_not_before(60, 150).is_ok());
    }

    #[test]
    fn lifetime_is_exp_minus_iat_and_iat_is_required() {
        let m = map(json!({"sub":"a","aud":"x","exp":1000,"iat":100}));
        let c = Claims::parse(&m).unwrap();
        assert_eq!(c.check_lifetime(900).unwrap(), 900);
        assert_eq!(c.check_lifetime(899).unwrap_err().kind(), "lifetime");
        let m = map(json!({"sub":"a","aud":"x","exp":1000}));
        let c = Claims::parse(&m).unwrap();
        let e = c.check_lifetime(900).unwrap_err();
        assert_eq!(e, TokenError::MissingClaim("iat".into()));
        assert_eq!(e.kind(), "claim_missing");
    }

    #[test]
    fn a_token_valid_until_the_year_3000_exceeds_any_sane_cap() {
        let exp = 32_503_680_000_i64;
        let m = map(json!({"sub":"a","aud":"x","exp":exp,"iat":1_700_000_000}));
        let c = Claims::parse(&m).unwrap();
        let e = c.check_lifetime(86_400).unwrap_err();
        assert_eq!(e.kind(), "lifetime", "{e}");
        assert!(e.to_string().contains("max_lifetime 86400 s"), "{e}");
    }

    fn config(groups_claim: &str) -> IssuerConfig {
        IssuerConfig {
            groups_claim: groups_claim.into(),
            ..IssuerConfig::new("corp", "https://x", &["idgate"])
        }
    }

    #[test]
    fn groups_from_claim_or_pointer() {
        let m = map(json!({"g":["one"],"realm_access":{"roles":["a","b"]},"a/b":{"c":["x"]}}));
        assert_eq!(groups(&m, &config("g")).unwrap(), vec!["one"]);
        assert_eq!(
            groups(&m, &config("/realm_access/roles")).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(groups(&m, &config("/a~1b/c")).unwrap(), vec!["x"]);
        assert!(groups(&m, &config("missing")).unwrap().is_empty());
        assert_eq!(
            groups(&m, &config("realm_access")).unwrap_err().kind(),
            "claim_type"
        );
    }

    #[test]
    fn a_bare_string_is_a_group_only_when_configured() {
        let m = map(json!({"g":"one"}));
        assert_eq!(groups(&m, &config("g")).unwrap_err().kind(), "claim_type");
        let mut c = config("g");
        c.groups_claim_string = true;
        assert_eq!(groups(&m, &c).unwrap(), vec!["one"]);
    }

    #[test]
    fn group_mappings_add_groups_for_matching_claims() {
        let mut c = config("groups");
        c.group_mappings = vec![
            GroupMapping {
                claim: "repository".into(),
                value: "acme/app".into(),
                groups: vec!["deployers".into()],
            },
            GroupMapping {
                claim: "/ext/teams".into(),
                value: "dba".into(),
                groups: vec!["dba".into(), "deployers".into()],
            },
        ];
        let m = map(json!({"repository":"acme/app","ext":{"teams":["x","dba"]}}));
        assert_eq!(groups(&m, &c).unwrap(), vec!["deployers", "dba"]);
        let m = map(json!({"repository":"acme/other","groups":["a"]}));
        assert_eq!(groups(&m, &c).unwrap(), vec!["a"]);
    }

    #[test]
    fn required_claims_must_be_present_and_not_null() {
        let m = map(json!({"email":"a@x","tenant":null}));
        assert!(check_required(&m, &["email".into()]).is_ok());
        assert_eq!(
            check_required(&m, &["email".into(), "tenant".into()]).unwrap_err(),
            TokenError::MissingClaim("tenant".into())
        );
    }
}
