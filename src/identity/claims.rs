//! The registered claims we rely on: their types (checked before any crypto),
//! the time and audience checks (after the signature), and how a verified
//! claim set becomes an `Identity`.

use serde_json::{Map, Value};

use super::Identity;
use super::error::{TokenError, shown};
use crate::config::IssuerConfig;

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
}

impl<'a> Claims<'a> {
    pub fn parse(map: &'a Map<String, Value>) -> Result<Self, TokenError> {
        let sub = required(map, "sub", string)?;
        let aud = match map.get("aud") {
            None => return Err(TokenError::MissingClaim("aud")),
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
        })
    }

    /// `exp`, `nbf` and `iat` against `now`, each with the issuer's skew.
    pub fn check_time(&self, skew: i64, now: i64) -> Result<(), TokenError> {
        check_expiry(self.exp, skew, now)?;
        // Let-chains would read better but need Rust 1.88; MSRV is 1.85.
        if let Some(nbf) = self.nbf.filter(|nbf| *nbf > now.saturating_add(skew)) {
            return Err(TokenError::NotYetValid(nbf - now));
        }
        if let Some(iat) = self.iat.filter(|iat| *iat > now.saturating_add(skew)) {
            return Err(TokenError::IssuedInFuture(iat - now));
        }
        Ok(())
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
        groups: groups(map, &config.groups_claim)?,
        expires_at: claims.exp,
        issued_at: claims.iat,
        jti: claims.jti.map(str::to_owned),
        claims: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

/// Groups from a plain claim name or a JSON pointer (`/realm_access/roles`).
/// A missing claim means no groups; a claim of the wrong shape is refused
/// rather than read as "no groups", so a typo in the issuer's mapper shows up.
fn groups(map: &Map<String, Value>, claim: &str) -> Result<Vec<String>, TokenError> {
    let value = match claim.strip_prefix('/') {
        Some(pointer) => {
            let (first, rest) = match pointer.find('/') {
                Some(i) => (&pointer[..i], &pointer[i..]),
                None => (pointer, ""),
            };
            let first = first.replace("~1", "/").replace("~0", "~");
            map.get(&first).and_then(|v| v.pointer(rest))
        }
        None => map.get(claim),
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TokenError::claim_type(claim, "a string or an array of strings")),
        Some(_) => Err(TokenError::claim_type(
            claim,
            "a string or an array of strings",
        )),
    }
}

type Extract<'a, T> = fn(&'a Value, &'static str) -> Result<T, TokenError>;

fn required<'a, T>(
    map: &'a Map<String, Value>,
    name: &'static str,
    extract: Extract<'a, T>,
) -> Result<T, TokenError> {
    map.get(name)
        .ok_or(TokenError::MissingClaim(name))
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
        assert_eq!(c.check_time(0, 150).unwrap_err(), TokenError::Expired(50));
        assert!(check_expiry(100, 60, 150).is_ok());
        let m = map(json!({"sub":"a","aud":"x","exp":1000,"nbf":200}));
        let c = Claims::parse(&m).unwrap();
        assert_eq!(
            c.check_time(0, 150).unwrap_err(),
            TokenError::NotYetValid(50)
        );
        assert!(c.check_time(60, 150).is_ok());
    }

    #[test]
    fn groups_from_claim_or_pointer() {
        let m = map(json!({"g":"one","realm_access":{"roles":["a","b"]},"a/b":{"c":["x"]}}));
        assert_eq!(groups(&m, "g").unwrap(), vec!["one"]);
        assert_eq!(groups(&m, "/realm_access/roles").unwrap(), vec!["a", "b"]);
        assert_eq!(groups(&m, "/a~1b/c").unwrap(), vec!["x"]);
        assert!(groups(&m, "missing").unwrap().is_empty());
        assert_eq!(groups(&m, "realm_access").unwrap_err().kind(), "claim_type");
    }
}
