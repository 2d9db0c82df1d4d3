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

    #[error("malformed token: {0}")]
    Malformed(String),

    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),

    #[error("token header parameter `{0}` is not accepted")]
    ForbiddenHeader(&'static str),

    #[error("token header marks extensions critical ({0}) that idgate does not understand")]
    CriticalHeader(String),

    #[error("token type `{0}` is not accepted (expected JWT or at+jwt)")]
    TokenType(String),

    #[error("issuer `{0}` is not configured")]
    UnknownIssuer(String),

    #[error("unknown key id `{kid}` for issuer {issuer}")]
    UnknownKey { kid: String, issuer: String },

    #[error("token has no key id and issuer {issuer} has {count} keys for {alg}")]
    AmbiguousKey {
        issuer: String,
        alg: &'static str,
        count: usize,
    },

    #[error("key `{kid}` of issuer {issuer} cannot verify {alg} signatures")]
    KeyMismatch {
        kid: String,
        issuer: String,
        alg: &'static str,
    },

    #[error("keys for issuer {issuer} are unavailable: {reason}")]
    KeysUnavailable { issuer: String, reason: String },

    #[error("signature does not verify")]
    Signature,

    #[error("audience mismatch: expected one of [{}], got [{}]", .expected.join(", "), .got.join(", "))]
    Audience {
        expected: Vec<String>,
        got: Vec<String>,
    },

    #[error("token expired {0} s ago")]
    Expired(i64),

    #[error("token not valid yet: nbf is {0} s in the future")]
    NotYetValid(i64),

    #[error("token issued in the future: iat is {0} s ahead")]
    IssuedInFuture(i64),

    #[error("required claim `{0}` is missing")]
    MissingClaim(&'static str),

    #[error("claim `{claim}` must be {expected}")]
    ClaimType {
        claim: String,
        expected: &'static str,
    },
}

impl TokenError {
    /// Short snake_case label for audit events and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "too_large",
            TokenError::Malformed(_) => "malformed",
            TokenError::AlgorithmNotAllowed(_) => "algorithm",
            TokenError::ForbiddenHeader(_) => "header",
            TokenError::CriticalHeader(_) => "crit",
            TokenError::TokenType(_) => "typ",
            TokenError::UnknownIssuer(_) => "issuer",
            TokenError::UnknownKey { .. } => "unknown_kid",
            TokenError::AmbiguousKey { .. } => "ambiguous_key",
            TokenError::KeyMismatch { .. } => "key_mismatch",
            TokenError::KeysUnavailable { .. } => "keys_unavailable",
            TokenError::Signature => "signature",
            TokenError::Audience { .. } => "audience",
            TokenError::Expired(_) => "expired",
            TokenError::NotYetValid(_) => "not_yet_valid",
            TokenError::IssuedInFuture(_) => "issued_in_future",
            TokenError::MissingClaim(_) => "claim_missing",
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
