//! Who the caller is: issuer discovery, the JWKS cache and token validation.
//! Only this module decides whether a token is valid; everyone else asks
//! `TokenValidator::validate` and gets an `Identity` or a `TokenError`.
//!
//! Code map: `jose` parses compact JWS strictly (no crypto, no I/O), `claims`
//! types and checks registered claims, `jwks` turns a JWKS into `ring` keys,
//! `discovery` is the locked-down HTTP client, `key_cache` decides when keys
//! are refetched, `token_cache` remembers validated tokens, `validator`
//! runs the checks in order, `checks` names them and records their outcomes,
//! and `inspect` renders that record for `idgate token inspect`.

use std::collections::BTreeMap;

mod checks;
mod claims;
mod discovery;
mod error;
mod inspect;
mod jose;
mod jwks;
mod key_cache;
mod logout;
mod token_cache;
mod validator;

pub use checks::{Check, Outcome, Status};
pub use error::TokenError;
pub use inspect::{Inspection, read_token};
pub use jose::MAX_TOKEN_BYTES;
pub use key_cache::KeyRefreshPolicy;
pub use logout::{LogoutError, LogoutToken};
pub(crate) use validator::unix_now;
pub use validator::{TokenValidator, ValidatorOptions};

/// A validated caller. Built only by the validator.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The configured issuer's `name`.
    pub issuer_name: String,
    /// The exact `iss` claim.
    pub issuer: String,
    pub sub: String,
    /// The value of the issuer's `identity_claim` (falls back to `sub`).
    pub identity: String,
    pub groups: Vec<String>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub issued_at: Option<i64>,
    pub jti: Option<String>,
    /// All claims, for policy context.
    pub claims: BTreeMap<String, serde_json::Value>,
}

impl Identity {
    /// The Cedar entity id and audit key: `ISSUER_NAME/SUB`.
    pub fn principal_id(&self) -> String {
        format!("{}/{}", self.issuer_name, self.sub)
    }

    /// The `sid` claim: the issuer's login session, when it names one.
    pub fn sid(&self) -> Option<&str> {
        self.claims.get("sid").and_then(serde_json::Value::as_str)
    }
}
