//! `TokenValidator`: the one place that decides whether a token is valid.
//! The order of checks is the point: cheap structural checks and claim
//! types first, then the key and the signature, then time and audience, so
//! garbage never costs a signature check or a request to the issuer.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Identity;
use super::claims::{self, Claims};
use super::discovery::IssuerHttp;
use super::error::{TokenError, shown};
use super::jose::{MAX_TOKEN_BYTES, parse_compact};
use super::key_cache::{IssuerKeys, KeyRefreshPolicy};
use super::token_cache::{TokenCache, token_hash};
use crate::config::IssuerConfig;

/// Tuning knobs; `Default` is what the gateway runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorOptions {
    pub key_refresh: KeyRefreshPolicy,
    /// Validated tokens remembered; 0 disables the cache.
    pub token_cache_capacity: usize,
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        ValidatorOptions {
            key_refresh: KeyRefreshPolicy::default(),
            token_cache_capacity: 10_000,
        }
    }
}

/// Validates OIDC tokens against the configured issuers. `Send + Sync`;
/// share it behind an `Arc`.
#[derive(Debug)]
pub struct TokenValidator {
    issuers: Vec<Arc<IssuerKeys>>,
    cache: TokenCache,
}

impl TokenValidator {
    pub fn new(issuers: Vec<IssuerConfig>) -> Self {
        Self::with_options(issuers, ValidatorOptions::default())
    }

    pub fn with_options(issuers: Vec<IssuerConfig>, options: ValidatorOptions) -> Self {
        let http = IssuerHttp::new();
        TokenValidator {
            issuers: issuers
                .into_iter()
                .map(|c| Arc::new(IssuerKeys::new(c, http.clone(), options.key_refresh)))
                .collect(),
            cache: TokenCache::new(options.token_cache_capacity),
        }
    }

    /// Fetches discovery (unless `jwks_uri` is configured) and keys for every
    /// issuer, concurrently. Failures are logged, not returned: the gateway
    /// should start even while an issuer is down, and will retry on use.
    pub async fn warm_up(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for issuer in &self.issuers {
            let issuer = Arc::clone(issuer);
            tasks.spawn(async move {
                if let Err(error) = issuer.refresh_now().await {
                    tracing::warn!(issuer = %issuer.config.name, %error, "issuer keys not loaded at start-up");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Validates `token` and returns who it identifies.
    pub async fn validate(&self, token: &str) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge {
                len: token.len(),
                limit: MAX_TOKEN_BYTES,
            });
        }
        let hash = token_hash(token);
        let now = unix_now();
        if let Some(hit) = self.cache.get(&hash, now) {
            return hit;
        }

        let jws = parse_compact(token)?;
        // `iss` is read unverified only to choose whose keys to check the
        // signature with; the choice is confirmed by that signature.
        let iss = match jws.claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(TokenError::claim_type("iss", "a string")),
            None => return Err(TokenError::MissingClaim("iss")),
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(shown(iss)))?;
        let config = &issuer.config;
        let alg = jws.header.alg;
        if !config.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed(alg.as_str().to_string()));
        }
        let claims = Claims::parse(&jws.claims)?;

        let kid = jws.header.kid.as_deref();
        let keys = issuer.keys_for(kid).await?;
        let key = keys.select(kid, alg, &config.name)?;
        if !key.verify(alg, jws.signing_input.as_bytes(), &jws.signature) {
            return Err(TokenError::Signature);
        }

        let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
        claims.check_time(skew, now)?;
        claims.check_audience(&config.audiences)?;
        let identity = claims::identity(config, &claims, &jws.claims)?;
        self.cache.insert(hash, identity.clone(), skew, now);
        Ok(identity)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn validator_is_send_and_sync() {
        assert_send_sync::<TokenValidator>();
    }
}
