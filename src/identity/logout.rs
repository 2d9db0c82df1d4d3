//! OIDC Back-Channel Logout 1.0 logout tokens (§2.4, §2.6): signed by a
//! configured issuer with an allowed algorithm, for one of its audiences,
//! carrying the back-channel-logout event, a `jti`, an `iat`, a `sub` or
//! `sid` (or both), and never a `nonce`, so that no other JWT of the same
//! issuer (an ID or access token) can pass for one.

use serde_json::{Map, Value};

use super::error::shown;
use super::validator::{allowed, unix_now, verify_any};
use super::{TokenError, TokenValidator, jose};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token without `exp` is accepted this long after its `iat`.
const MAX_AGE_WITHOUT_EXP: i64 = 300;

/// A validated logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The configured issuer's name.
    pub issuer_name: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    pub iat: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("not a logout token: {0}")]
    Claims(String),
}

impl TokenValidator {
    /// Validates a logout token as §2.6 asks.
    pub async fn validate_logout(&self, token: &str) -> Result<LogoutToken, LogoutError> {
        jose::check_size(token)?;
        let segments = jose::split(token)?;
        let header = jose::decode_header(segments.header)?;
        let claims = jose::decode_payload(segments.payload)?;
        let alg = jose::header_alg(&header)?;
        let kid = jose::header_params(&header)?;
        check_typ(&header)?;
        let signature = jose::decode_signature(segments.signature)?;
        let issuer = self.issuer_of(&claims)?;
        let config = &issuer.config;
        allowed(config, alg)?;
        let keys = issuer.keys_for(kid.as_deref()).await?;
        let candidates = keys.candidates(kid.as_deref(), alg, &config.name)?;
        verify_any(
            &candidates,
            alg,
            segments.signing_input.as_bytes(),
            &signature,
        )?;

        let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let now = unix_now();
        let bad = |m: String| Err(LogoutError::Claims(m));
        let audiences = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => return bad("`aud` is missing".into()),
        };
        if !audiences
            .iter()
            .any(|a| config.audiences.iter().any(|c| c == a))
        {
            return bad(format!(
                "`aud` is not one of [{}]",
                config.audiences.join(", ")
            ));
        }
        let Some(iat) = claims.get("iat").and_then(Value::as_i64) else {
            return bad("`iat` is missing or not an integer".into());
        };
        if iat > now.saturating_add(skew) {
            return bad("`iat` is in the future".into());
        }
        match claims.get("exp") {
            Some(v) => match v.as_i64() {
                Some(exp) if exp.saturating_add(skew) >= now => {}
                Some(_) => return bad("it has expired".into()),
                None => return bad("`exp` is not an integer".into()),
            },
            None if iat.saturating_add(MAX_AGE_WITHOUT_EXP + skew) < now => {
                return bad(format!(
                    "no `exp` and issued over {MAX_AGE_WITHOUT_EXP} s ago"
                ));
            }
            None => {}
        }
        let Some(jti) = string(&claims, "jti")? else {
            return bad("`jti` is missing".into());
        };
        match claims.get("events") {
            Some(Value::Object(events)) if events.get(EVENT).is_some_and(Value::is_object) => {}
            _ => {
                return bad(format!(
                    "`events` lacks the member {EVENT} with an object value"
                ));
            }
        }
        if claims.contains_key("nonce") {
            return bad("it carries a `nonce`, which logout tokens must not".into());
        }
        let sub = string(&claims, "sub")?;
        let sid = string(&claims, "sid")?;
        if sub.is_none() && sid.is_none() {
            return bad("it names neither `sub` nor `sid`".into());
        }
        Ok(LogoutToken {
            issuer_name: config.name.clone(),
            sub,
            sid,
            jti,
            iat,
        })
    }
}

/// `typ`, when present, must say logout token (or plain JWT, which older
/// issuers send): never `at+jwt`, which would be an access token.
fn check_typ(header: &Map<String, Value>) -> Result<(), LogoutError> {
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(t))
            if ["jwt", "logout+jwt", "application/logout+jwt"]
                .contains(&t.to_ascii_lowercase().as_str()) =>
        {
            Ok(())
        }
        Some(other) => Err(LogoutError::Claims(format!(
            "header `typ` is {}",
            shown(&other.to_string())
        ))),
    }
}

/// A non-empty string claim, if present.
fn string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, LogoutError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(LogoutError::Claims(format!(
            "`{name}` is not a non-empty string"
        ))),
    }
}
