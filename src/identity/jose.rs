//! Strict JWS compact parsing: base64url, JSON and header rules, with no
//! crypto and no I/O. Everything here runs before a signature is checked, so
//! it must be cheap and must refuse anything ambiguous: two parsers that read
//! the same bytes differently (duplicate members, sloppy base64) are how
//! token-confusion attacks start.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{TokenError, shown};
use crate::config::Algorithm;

/// Tokens arrive as PostgreSQL passwords; the spec accepts up to 16 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A JWS whose structure and header passed every check; the signature has
/// not been verified yet.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a> {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Parses a compact JWS, rejecting oversize, malformed or dangerous tokens.
pub(crate) fn parse_compact(token: &str) -> Result<UnverifiedJws<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge {
            len: token.len(),
            limit: MAX_TOKEN_BYTES,
        });
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let n = token.split('.').count();
        return Err(TokenError::malformed(format!(
            "expected 3 dot-separated segments, found {n}"
        )));
    };
    let header = parse_header(&parse_object(&b64url_decode(h, "header")?, "header")?)?;
    let claims = parse_object(&b64url_decode(p, "payload")?, "payload")?;
    let signature = b64url_decode(s, "signature")?;
    if signature.is_empty() {
        return Err(TokenError::malformed("signature is empty"));
    }
    Ok(UnverifiedJws {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// Decodes unpadded base64url and refuses every non-canonical spelling:
/// padding, characters outside the URL-safe alphabet, and non-zero trailing
/// bits (which would let two different strings decode to the same bytes).
pub(crate) fn b64url_decode(segment: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    // The engine is configured with RequirePadding=None and
    // allow_trailing_bits=false, which covers all three cases.
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::malformed(format!("{what} is not canonical base64url")))?;
    // Belt and braces: canonical means the encoding round-trips exactly.
    if URL_SAFE_NO_PAD.encode(&bytes) != segment {
        return Err(TokenError::malformed(format!(
            "{what} is not canonical base64url"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, TokenError> {
    match parse_strict_json(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::malformed(format!(
            "{what} is not a JSON object"
        ))),
        Err(e) => Err(TokenError::malformed(format!("{what}: {e}"))),
    }
}

/// Parses JSON, failing on duplicate member names at any depth. serde_json
/// alone keeps the last duplicate, while other parsers keep the first; we
/// refuse rather than guess which one the issuer meant.
pub(crate) fn parse_strict_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<StrictValue>(bytes)
        .map(|v| v.0)
        .map_err(|e| {
            // serde_json errors carry line/column but never echo input.
            let msg = e.to_string();
            if msg.starts_with("duplicate member") {
                msg.split(" at line").next().unwrap_or(&msg).to_string()
            } else {
                "invalid JSON".to_string()
            }
        })
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate member `{}`",
                    shown(&key)
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Header parameters that point at keys chosen by the token's author. We only
/// ever use keys from the configured issuer's JWKS, so their presence means
/// either a confused client or an attack; refuse outright.
const FORBIDDEN_HEADER_PARAMS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

fn parse_header(h: &Map<String, Value>) -> Result<Header, TokenError> {
    let alg = match h.get("alg") {
        Some(Value::String(a)) => match a.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            // `none`, HS* (public key used as an HMAC secret) and anything we
            // have not reviewed.
            other => return Err(TokenError::AlgorithmNotAllowed(shown(other))),
        },
        Some(_) => return Err(TokenError::malformed("header `alg` is not a string")),
        None => return Err(TokenError::malformed("header has no `alg`")),
    };
    for param in FORBIDDEN_HEADER_PARAMS {
        if h.contains_key(param) {
            return Err(TokenError::ForbiddenHeader(param));
        }
    }
    if let Some(crit) = h.get("crit") {
        // We understand no JWS extensions, so any `crit` must be refused
        // (RFC 7515 §4.1.11).
        return Err(TokenError::CriticalHeader(shown(&crit.to_string())));
    }
    match h.get("typ") {
        None => {}
        Some(Value::String(t)) if is_accepted_typ(t) => {}
        Some(Value::String(t)) => return Err(TokenError::TokenType(shown(t))),
        Some(_) => return Err(TokenError::malformed("header `typ` is not a string")),
    }
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::malformed("header `kid` is not a string")),
    };
    Ok(Header { alg, kid })
}

/// `JWT` (ID tokens, most access tokens) or `at+jwt` (RFC 9068), compared
/// case-insensitively with an optional `application/` prefix (RFC 7515 §4.1.9).
fn is_accepted_typ(typ: &str) -> bool {
    let t = typ.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    t == "jwt" || t == "at+jwt"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(payload.as_bytes()),
            b64url_encode(b"sig")
        )
    }

    #[test]
    fn well_formed_token_parses() {
        let t = token(r#"{"alg":"ES256","kid":"k1","typ":"at+JWT"}"#, r#"{"a":1}"#);
        let jws = parse_compact(&t).unwrap();
        assert_eq!(jws.header.alg, Algorithm::ES256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert!(t.starts_with(jws.signing_input));
        assert_eq!(jws.signature, b"sig");
    }

    #[test]
    fn wrong_segment_count_is_malformed() {
        for t in ["a.b", "a.b.c.d", "", "abc"] {
            assert_eq!(parse_compact(t).unwrap_err().kind(), "malformed", "{t}");
        }
    }

    #[test]
    fn padding_non_alphabet_and_trailing_bits_are_refused() {
        assert!(b64url_decode("YQ", "x").is_ok());
        assert!(b64url_decode("YQ==", "x").is_err());
        assert!(b64url_decode("YR", "x").is_err(), "trailing bits set");
        assert!(b64url_decode("Y+", "x").is_err(), "standard alphabet");
        assert!(b64url_decode("Y Q", "x").is_err());
        assert!(b64url_decode("Y", "x").is_err(), "impossible length");
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        assert!(parse_strict_json(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_strict_json(br#"{"x":{"a":1,"a":2}}"#).is_err());
        assert!(parse_strict_json(br#"[{"a":1,"a":2}]"#).is_err());
        assert!(parse_strict_json(br#"{"a":1,"b":{"a":2}}"#).is_ok());
        let e = parse_strict_json(br#"{"sub":1,"sub":2}"#).unwrap_err();
        assert_eq!(e, "duplicate member `sub`");
    }

    #[test]
    fn header_rules() {
        let cases = [
            (r#"{"alg":"none"}"#, "algorithm"),
            (r#"{"alg":"HS256"}"#, "algorithm"),
            (r#"{"alg":"ES256","jku":"http://x"}"#, "header"),
            (r#"{"alg":"ES256","jwk":{}}"#, "header"),
            (r#"{"alg":"ES256","x5u":"http://x"}"#, "header"),
            (r#"{"alg":"ES256","crit":["exp"]}"#, "crit"),
            (r#"{"alg":"ES256","typ":"JOSE"}"#, "typ"),
            (r#"{"alg":"ES256","kid":7}"#, "malformed"),
            (r#"{"kid":"a"}"#, "malformed"),
            (r#"[1]"#, "malformed"),
        ];
        for (h, kind) in cases {
            assert_eq!(
                parse_compact(&token(h, "{}")).unwrap_err().kind(),
                kind,
                "{h}"
            );
        }
        assert!(parse_compact(&token(r#"{"alg":"RS256","typ":"application/jwt"}"#, "{}")).is_ok());
    }

    #[test]
    fn oversized_token_is_refused_before_parsing() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse_compact(&t).unwrap_err().kind(), "too_large");
    }
}
