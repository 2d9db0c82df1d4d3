//! Why a token was refused. Each variant renders as one user-facing line that
//! names the failed check (it reaches psql users and the audit log), and has a
//! short `kind` label for metrics. No variant ever carries the token itself;
//! values copied out of a token (alg, kid, iss, aud) pass through `shown` so an
//! attacker cannot inject newlines or megabytes into our logs.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("token too large: {len} bytes (limit {limit})")]
    TooLarge { len: usize, limit: usize },

    #[error("encrypted tokens (JWE) are not accepted; present a signed JWT")]
    Encrypted,

    #[error("malformed token: expected 3 dot-separated segments, found {0}")]
    Segments(usize),

    #[error("token header too large: {len} base64url characters (limit {limit})")]
    HeaderTooLarge { len: usize, limit: usize },

    #[error("malformed token: {part} is not canonical base64url")]
    Base64 { part: &'static str },

    #[error("malformed token: {part} is {reason}")]
    Json { part: &'static str, reason: String },

    #[error("malformed token: {part} has a duplicate member `{name}`")]
    DuplicateMember { part: &'static str, name: String },

    #[error("malformed token: {part} nests JSON deeper than {limit} levels")]
    JsonDepth { part: &'static str, limit: usize },

    #[error("malformed token: {0}")]
    Malformed(String),

    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),

    #[error("token header parameter `{0}` is not accepted")]
    ForbiddenHeader(&'static str),

    #[error("compressed tokens (header `zip`) are not accepted")]
    Compressed,

    #[error("token header marks extensions critical ({0}) that idgate does not understand")]
    CriticalHeader(String),

    #[error("token type `{0}` is not recognised (expected JWT or at+jwt)")]
    TokenType(String),

    #[error("{got} is not accepted from issuer {issuer} (it accepts {accepted})")]
    TokenTypeNotAccepted {
        got: &'static str,
        issuer: String,
        accepted: &'static str,
    },

    #[error("issuer `{0}` is not configured")]
    UnknownIssuer(String),

    #[error("unknown key id `{kid}` for issuer {issuer}")]
    UnknownKey { kid: String, issuer: String },

    #[error("token has no key id and issuer {issuer} has no key for {alg}")]
    NoKeyForAlgorithm { issuer: String, alg: &'static str },

    #[error("key `{kid}` of issuer {issuer} ({key}) cannot verify {alg} signatures")]
    KeyMismatch {
        kid: String,
        issuer: String,
        key: String,
        alg: &'static str,
    },

    #[error("keys for issuer {issuer} are unavailable: {reason}")]
    KeysUnavailable { issuer: String, reason: String },

    #[error("malformed {alg} signature: {reason}")]
    SignatureFormat {
        alg: &'static str,
        reason: &'static str,
    },

    #[error("signature does not verify")]
    Signature,

    #[error("audience mismatch: expected one of [{}], got [{}]", .expected.join(", "), .got.join(", "))]
    Audience {
        expected: Vec<String>,
        got: Vec<String>,
    },

    #[error("authorized party mismatch: expected azp one of [{}], got {}", .expected.join(", "), .got.as_deref().unwrap_or("none"))]
    AuthorizedParty {
        expected: Vec<String>,
        got: Option<String>,
    },

    #[error("token expired {0} s ago")]
    Expired(i64),

    #[error("token not valid yet: nbf is {0} s in the future")]
    NotYetValid(i64),

    #[error("token issued in the future: iat is {0} s ahead")]
    IssuedInFuture(i64),

    #[error("token lifetime {lifetime} s (exp - iat) exceeds max_lifetime {max} s")]
    Lifetime { lifetime: i64, max: u64 },

    #[error("required claim `{0}` is missing")]
    MissingClaim(String),

    #[error("claim `sub` must be a non-empty string")]
    EmptySubject,

    #[error("claim `{claim}` must be {expected}")]
    ClaimType {
        claim: String,
        expected: &'static str,
    },
}

impl TokenError {
    /// Short snake_case label for audit events and metrics; one per rule,
    /// so a dashboard can tell an attack (`header`, `key_mismatch`) from a
    /// misconfigured client (`audience`, `token_type`).
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "too_large",
            TokenError::Encrypted => "encrypted",
            TokenError::Segments(_) => "segments",
            TokenError::HeaderTooLarge { .. } => "header_too_large",
            TokenError::Base64 { .. } => "base64",
            TokenError::Json { .. } => "json",
            TokenError::DuplicateMember { .. } => "duplicate_member",
            TokenError::JsonDepth { .. } => "json_depth",
            TokenError::Malformed(_) => "malformed",
            TokenError::AlgorithmNotAllowed(_) => "algorithm",
            TokenError::ForbiddenHeader(_) => "header",
            TokenError::Compressed => "zip",
            TokenError::CriticalHeader(_) => "crit",
            TokenError::TokenType(_) => "typ",
            TokenError::TokenTypeNotAccepted { .. } => "token_type",
            TokenError::UnknownIssuer(_) => "issuer",
            TokenError::UnknownKey { .. } => "unknown_kid",
            TokenError::NoKeyForAlgorithm { .. } => "no_key_for_alg",
            TokenError::KeyMismatch { .. } => "key_mismatch",
            TokenError::KeysUnavailable { .. } => "keys_unavailable",
            TokenError::SignatureFormat { .. } => "signature_format",
            TokenError::Signature => "signature",
            TokenError::Audience { .. } => "audience",
            TokenError::AuthorizedParty { .. } => "azp",
            TokenError::Expired(_) => "expired",
            TokenError::NotYetValid(_) => "not_yet_valid",
            TokenError::IssuedInFuture(_) => "issued_in_future",
            TokenError::Lifetime { .. } => "lifetime",
            TokenError::MissingClaim(_) => "claim_missing",
            TokenError::EmptySubject => "sub_empty",
            TokenError::ClaimType { .. } => "claim_type",
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        TokenError::Malformed(reason.into())
    }

    pub(crate) fn claim_type(claim: &str, expected: &'static str) -> Self {
        TokenError::ClaimType {
            claim: shown(claim),
            expected,
        }
    }
}

/// Longest piece of token-supplied text we repeat in a message.
const SHOWN_MAX_CHARS: usize = 80;

/// Makes token-supplied text safe to put in a one-line message: control
/// characters become `?` and long values are cut with an ellipsis.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(SHOWN_MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > SHOWN_MAX_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_message_shows_expected_and_got() {
        let e = TokenError::Audience {
            expected: vec!["idgate".into()],
            got: vec!["other".into(), "x".into()],
        };
        assert_eq!(
            e.to_string(),
            "audience mismatch: expected one of [idgate], got [other, x]"
        );
        assert_eq!(e.kind(), "audience");
    }

    #[test]
    fn shown_strips_control_characters_and_caps_length() {
        assert_eq!(shown("a\nb"), "a?b");
        let long = "k".repeat(500);
        assert_eq!(shown(&long).chars().count(), SHOWN_MAX_CHARS + 1);
    }
}
