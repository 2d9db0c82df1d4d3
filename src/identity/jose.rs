//! Strict JWS compact parsing: base64url, JSON and header rules, with no
//! crypto and no I/O. Everything here runs before a signature is checked, so
//! it must be cheap and must refuse anything ambiguous: two parsers that read
//! the same bytes differently (duplicate members, sloppy base64) are how
//! token-confusion attacks start.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{TokenError, shown};
use crate::config::Algorithm;

/// Tokens arrive as PostgreSQL passwords; the spec accepts up to 16 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Decoded header size limit. Real headers are under 200 bytes; a big one
/// is someone smuggling an embedded key or certificate chain.
pub const MAX_HEADER_BYTES: usize = 2 * 1024;

/// Base64url characters that decode to at most `MAX_HEADER_BYTES`, so the
/// cap is enforced before anything is decoded.
const MAX_HEADER_CHARS: usize = MAX_HEADER_BYTES.div_ceil(3) * 4;

/// Nesting limit for header and payload JSON (and JWKS / discovery
/// documents). No legitimate claim set comes close; deep nesting only costs
/// stack and time.
pub const MAX_JSON_DEPTH: usize = 32;

/// The three segments of a compact JWS, not decoded yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'a str,
}

/// What the header's `typ` says the token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `typ` `at+jwt` (RFC 9068).
    Access,
    /// `typ` `JWT` or no `typ`: ID tokens and most older access tokens.
    Id,
}

impl TokenKind {
    pub fn describe(self) -> &'static str {
        match self {
            TokenKind::Access => "an access token (typ at+jwt)",
            TokenKind::Id => "an ID token (typ JWT or none)",
        }
    }
}

pub(crate) fn check_size(token: &str) -> Result<(), TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge {
            len: token.len(),
            limit: MAX_TOKEN_BYTES,
        });
    }
    Ok(())
}

/// Splits a compact JWS. Five segments is a JWE (RFC 7516), refused by name
/// so the user learns to ask the issuer for a signed token instead.
pub(crate) fn split(token: &str) -> Result<Segments<'_>, TokenError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok(Segments {
            header,
            payload,
            signature,
            signing_input: &token[..header.len() + 1 + payload.len()],
        }),
        _ => match token.split('.').count() {
            5 => Err(TokenError::Encrypted),
            n => Err(TokenError::Segments(n)),
        },
    }
}

/// The header as a JSON object, size-capped before decoding.
pub(crate) fn decode_header(segment: &str) -> Result<Map<String, Value>, TokenError> {
    if segment.len() > MAX_HEADER_CHARS {
        return Err(TokenError::HeaderTooLarge {
            len: segment.len(),
            limit: MAX_HEADER_CHARS,
        });
    }
    parse_object(&b64url_decode(segment, "header")?, "header")
}

/// The payload (claim set) as a JSON object; bounded by the token size cap.
pub(crate) fn decode_payload(segment: &str) -> Result<Map<String, Value>, TokenError> {
    parse_object(&b64url_decode(segment, "payload")?, "payload")
}

pub(crate) fn decode_signature(segment: &str) -> Result<Vec<u8>, TokenError> {
    let signature = b64url_decode(segment, "signature")?;
    if signature.is_empty() {
        return Err(TokenError::SignatureFormat {
            alg: "JWS",
            reason: "the signature is empty",
        });
    }
    Ok(signature)
}

/// Decodes unpadded base64url and refuses every non-canonical spelling:
/// padding, characters outside the URL-safe alphabet, and non-zero trailing
/// bits (which would let two different strings decode to the same bytes).
pub(crate) fn b64url_decode(segment: &str, part: &'static str) -> Result<Vec<u8>, TokenError> {
    // The engine is configured with RequirePadding=None and
    // allow_trailing_bits=false, which covers all three cases (the unit
    // tests pin each one), so no re-encoding round trip is needed.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Base64 { part })
}

#[cfg(test)]
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_object(bytes: &[u8], part: &'static str) -> Result<Map<String, Value>, TokenError> {
    match parse_strict_json(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Json {
            part,
            reason: "not a JSON object".into(),
        }),
        Err(JsonError::Duplicate(name)) => Err(TokenError::DuplicateMember { part, name }),
        Err(JsonError::TooDeep) => Err(TokenError::JsonDepth {
            part,
            limit: MAX_JSON_DEPTH,
        }),
        Err(JsonError::Invalid) => Err(TokenError::Json {
            part,
            reason: "not valid JSON".into(),
        }),
    }
}

/// Why strict JSON parsing failed. Never carries input beyond a shown
/// member name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonError {
    Invalid,
    Duplicate(String),
    TooDeep,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Invalid => f.write_str("invalid JSON"),
            JsonError::Duplicate(name) => write!(f, "duplicate member `{name}`"),
            JsonError::TooDeep => write!(f, "JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        }
    }
}

const DUPLICATE_PREFIX: &str = "duplicate member `";
const TOO_DEEP: &str = "nesting too deep";

/// Parses JSON, failing on duplicate member names at any depth and on
/// nesting beyond `MAX_JSON_DEPTH`. serde_json alone keeps the last
/// duplicate, while other parsers keep the first; we refuse rather than
/// guess which one the issuer meant.
pub(crate) fn parse_strict_json(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed { depth: 0 }
        .deserialize(&mut d)
        .and_then(|v| d.end().map(|()| v));
    parsed.map_err(|e| {
        // Our custom messages come back with " at line L column C" appended;
        // serde_json errors never echo input.
        let msg = e.to_string();
        if let Some(rest) = msg.strip_prefix(DUPLICATE_PREFIX) {
            JsonError::Duplicate(rest.split('`').next().unwrap_or_default().to_string())
        } else if msg.starts_with(TOO_DEEP) {
            JsonError::TooDeep
        } else {
            JsonError::Invalid
        }
    })
}

/// `depth` counts the containers around the value being read.
struct StrictSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

struct StrictVisitor {
    depth: usize,
}

impl StrictVisitor {
    fn inner<E: de::Error>(&self) -> Result<StrictSeed, E> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(StrictSeed {
            depth: self.depth + 1,
        })
    }
}

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
        while let Some(v) = seq.next_element_seed(self.inner()?)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.inner()?)?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "{DUPLICATE_PREFIX}{}`",
                    shown(&key).replace('`', "'")
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

/// The signing algorithm the header claims. Only what idgate implements is
/// recognised; `none`, HS* (public key used as an HMAC secret) and anything
/// not reviewed are refused here, before the issuer's allow-list is consulted.
pub(crate) fn header_alg(h: &Map<String, Value>) -> Result<Algorithm, TokenError> {
    match h.get("alg") {
        Some(Value::String(a)) => match a.as_str() {
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(TokenError::AlgorithmNotAllowed(shown(other))),
        },
        Some(_) => Err(TokenError::malformed("header `alg` is not a string")),
        None => Err(TokenError::malformed("header has no `alg`")),
    }
}

/// Parameters other than `alg` and `typ`: key-pointing parameters, `zip`
/// and `crit` are refused; returns `kid`, which is only ever a lookup key.
pub(crate) fn header_params(h: &Map<String, Value>) -> Result<Option<String>, TokenError> {
    for param in FORBIDDEN_HEADER_PARAMS {
        if h.contains_key(param) {
            return Err(TokenError::ForbiddenHeader(param));
        }
    }
    if h.contains_key("zip") {
        // Compression is a JWE feature (RFC 7516 §4.1.3); in a JWS it only
        // ever appears in decompression-bomb attempts.
        return Err(TokenError::Compressed);
    }
    if let Some(crit) = h.get("crit") {
        // We understand no JWS extensions, so any `crit` must be refused
        // (RFC 7515 §4.1.11).
        return Err(TokenError::CriticalHeader(shown(&crit.to_string())));
    }
    match h.get("kid") {
        None => Ok(None),
        Some(Value::String(k)) => Ok(Some(k.clone())),
        Some(_) => Err(TokenError::malformed("header `kid` is not a string")),
    }
}

/// `at+jwt` (RFC 9068) or `JWT` / absent, compared case-insensitively with
/// an optional `application/` prefix (RFC 7515 §4.1.9).
pub(crate) fn header_typ(h: &Map<String, Value>) -> Result<TokenKind, TokenError> {
    let typ = match h.get("typ") {
        None => return Ok(TokenKind::Id),
        Some(Value::String(t)) => t,
        Some(_) => return Err(TokenError::malformed("header `typ` is not a string")),
    };
    let t = typ.to_ascii_lowercase();
    match t.strip_prefix("application/").unwrap_or(&t) {
        "jwt" => Ok(TokenKind::Id),
        "at+jwt" => Ok(TokenKind::Access),
        _ => Err(TokenError::TokenType(shown(typ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        b64url_encode(s.as_bytes())
    }

    /// Runs the structural and header checks in validator order.
    fn parse(token: &str) -> Result<(Algorithm, Option<String>, TokenKind), TokenError> {
        check_size(token)?;
        let s = split(token)?;
        let h = decode_header(s.header)?;
        decode_payload(s.payload)?;
        decode_signature(s.signature)?;
        Ok((header_alg(&h)?, header_params(&h)?, header_typ(&h)?))
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[test]
    fn well_formed_token_parses() {
        let t = token(r#"{"alg":"ES256","kid":"k1","typ":"at+JWT"}"#, r#"{"a":1}"#);
        let (alg, kid, kind) = parse(&t).unwrap();
        assert_eq!(alg, Algorithm::ES256);
        assert_eq!(kid.as_deref(), Some("k1"));
        assert_eq!(kind, TokenKind::Access);
        let s = split(&t).unwrap();
        assert!(t.starts_with(s.signing_input));
        assert_eq!(decode_signature(s.signature).unwrap(), b"sig");
    }

    #[test]
    fn wrong_segment_count_and_jwe_are_refused() {
        for t in ["a.b", "a.b.c.d", "", "abc"] {
            assert_eq!(parse(t).unwrap_err().kind(), "segments", "{t}");
        }
        assert_eq!(parse("a.b.c.d.e").unwrap_err().kind(), "encrypted");
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
        assert_eq!(e, JsonError::Duplicate("sub".into()));
        assert_eq!(e.to_string(), "duplicate member `sub`");
    }

    #[test]
    fn nesting_is_capped_at_the_limit() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_strict_json(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_strict_json(nested(MAX_JSON_DEPTH + 1).as_bytes()).unwrap_err(),
            JsonError::TooDeep
        );
        // Deeper than serde_json's own limit still reports depth, not "invalid".
        assert_eq!(
            parse_strict_json(nested(500).as_bytes()).unwrap_err(),
            JsonError::TooDeep
        );
        assert_eq!(
            parse_strict_json(b"{} x").unwrap_err(),
            JsonError::Invalid,
            "trailing characters"
        );
    }

    #[test]
    fn header_rules() {
        let cases = [
            (r#"{"alg":"none"}"#, "algorithm"),
            (r#"{"alg":"HS256"}"#, "algorithm"),
            (r#"{"alg":"ES256","jku":"http://x"}"#, "header"),
            (r#"{"alg":"ES256","jwk":{}}"#, "header"),
            (r#"{"alg":"ES256","x5u":"http://x"}"#, "header"),
            (r#"{"alg":"ES256","x5c":["MII"]}"#, "header"),
            (r#"{"alg":"ES256","zip":"DEF"}"#, "zip"),
            (r#"{"alg":"ES256","crit":["exp"]}"#, "crit"),
            (r#"{"alg":"ES256","typ":"JOSE"}"#, "typ"),
            (r#"{"alg":"ES256","kid":7}"#, "malformed"),
            (r#"{"kid":"a"}"#, "malformed"),
            (r#"[1]"#, "json"),
        ];
        for (h, kind) in cases {
            assert_eq!(parse(&token(h, "{}")).unwrap_err().kind(), kind, "{h}");
        }
        let (_, _, kind) =
            parse(&token(r#"{"alg":"RS256","typ":"application/jwt"}"#, "{}")).unwrap();
        assert_eq!(kind, TokenKind::Id);
    }

    #[test]
    fn oversized_token_and_header_are_refused_before_decoding() {
        let t = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&t).unwrap_err().kind(), "too_large");
        // Not even valid base64url: the cap fires before decoding.
        let t = format!("{}.e30.c2ln", "*".repeat(MAX_HEADER_CHARS + 1));
        assert_eq!(parse(&t).unwrap_err().kind(), "header_too_large");
        let fits = format!(
            r#"{{"alg":"ES256","p":"{}"}}"#,
            "x".repeat(MAX_HEADER_BYTES - 30)
        );
        assert!(parse(&token(&fits, "{}")).is_ok());
    }
}
