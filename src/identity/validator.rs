//! `TokenValidator`: the one place that decides whether a token is valid.
//! The order of checks is the point: cheap structural checks and claim
//! types first, then the key and the signature, then time, audience and the
//! per-issuer rules, so garbage never costs a signature check or a request
//! to the issuer. `run_checks` is the single pipeline; `validate` runs it
//! stopping at the first failure, `token inspect` runs it collecting.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Identity;
use super::checks::{Check, Recorder, human_delta, utc};
use super::claims::{self, Claims};
use super::discovery::IssuerHttp;
use super::error::{TokenError, shown};
use super::jose::{self, MAX_TOKEN_BYTES, TokenKind};
use super::jwks::Jwk;
use super::key_cache::{IssuerKeys, KeyRefreshPolicy};
use super::token_cache::{TokenCache, token_hash};
use crate::config::{Algorithm, IssuerConfig, TokenTypes};

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
    pub(super) issuers: Vec<Arc<IssuerKeys>>,
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

    /// JWKS downloads per issuer name: (succeeded, failed).
    pub fn jwks_fetches(&self) -> Vec<(&str, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.issuers
            .iter()
            .map(|i| {
                (
                    i.config.name.as_str(),
                    i.fetched.load(Relaxed),
                    i.fetch_failures.load(Relaxed),
                )
            })
            .collect()
    }

    /// Validates `token` and returns who it identifies.
    pub async fn validate(&self, token: &str) -> Result<Identity, TokenError> {
        // Before hashing: a megabyte of garbage must not cost a SHA-256.
        jose::check_size(token)?;
        let hash = token_hash(token);
        let now = unix_now();
        if let Some(hit) = self.cache.get(&hash, now) {
            return hit;
        }
        let mut recorder = Recorder::first_failure();
        let identity = self.run_checks(token, now, &mut recorder).await?;
        let identity = recorder.verdict(identity)?;
        let skew = identity_skew(&self.issuers, &identity);
        self.cache.insert(hash, identity.clone(), skew, now);
        Ok(identity)
    }

    /// The pipeline. Every check goes through `rec`; see `checks.rs` for the
    /// two modes. Returns the identity when the checks that build it ran.
    pub(super) async fn run_checks(
        &self,
        token: &str,
        now: i64,
        rec: &mut Recorder,
    ) -> Result<Option<Identity>, TokenError> {
        // Structure. Nothing else can be judged without the segments.
        let size = rec.check(Check::Size, jose::check_size(token), |()| {
            format!("{} bytes (limit {MAX_TOKEN_BYTES})", token.len())
        })?;
        if size.is_none() {
            return Ok(None);
        }
        let Some(segments) = rec.check(Check::Segments, jose::split(token), |_| {
            "3 (a signed JWT)".into()
        })?
        else {
            return Ok(None);
        };
        const CANONICAL: &str = "canonical base64url, a JSON object, no duplicate members";
        let header = rec.check(
            Check::HeaderEncoding,
            jose::decode_header(segments.header),
            |_| CANONICAL.into(),
        )?;
        let payload = rec.check(
            Check::PayloadEncoding,
            jose::decode_payload(segments.payload),
            |_| CANONICAL.into(),
        )?;
        if rec.is_collecting() {
            rec.header.clone_from(&header);
            rec.claims.clone_from(&payload);
        }

        // Header.
        let (mut alg, mut kid, mut kind) = (None, None, None);
        if let Some(h) = &header {
            alg = rec.check(Check::Algorithm, jose::header_alg(h), |a| {
                format!("{} (idgate implements RS256, ES256)", a.as_str())
            })?;
            kid = rec.check(Check::HeaderParams, jose::header_params(h), |kid| {
                let kid = kid
                    .as_deref()
                    .map_or_else(|| "no kid".into(), |k| format!("kid `{}`", shown(k)));
                format!("{kid}; no jku/x5u/jwk/x5c, zip or crit")
            })?;
            kind = rec.check(Check::Typ, jose::header_typ(h), |k| k.describe().into())?;
        }
        let signature = rec.check(
            Check::SignatureEncoding,
            jose::decode_signature(segments.signature),
            |s| format!("{} bytes (not shown)", s.len()),
        )?;

        // Issuer: `iss` is read unverified only to choose whose keys to
        // check the signature with; the choice is confirmed by that signature.
        let Some(claims_map) = payload else {
            return Ok(None);
        };
        let found = rec.check(Check::Issuer, self.issuer_of(&claims_map), |i| {
            format!("`{}` is issuer {}", i.config.issuer, i.config.name)
        })?;
        let Some(issuer) = found else {
            rec.annotate(|| {
                let iss = claims_map.get("iss").and_then(Value::as_str)?;
                super::inspect::closest_issuer(iss, self.issuers.iter().map(|i| &i.config))
            });
            return Ok(None);
        };
        let config = &issuer.config;
        if let Some(a) = alg {
            alg = rec.check(Check::AllowedAlgorithm, allowed(config, a), |a| {
                format!("{} is in {}", a.as_str(), algorithms(config))
            })?;
        }
        if let Some(k) = kind {
            rec.check(Check::TokenType, accepted_type(config, k), |_| {
                format!(
                    "issuer {} accepts {}",
                    config.name,
                    types(config.token_types)
                )
            })?;
        }
        let claims = rec.check(Check::ClaimTypes, Claims::parse(&claims_map), |_| {
            "iss, sub, aud, exp (and nbf, iat, jti, azp if present) are well typed".into()
        })?;
        if let Some(c) = &claims {
            rec.check(Check::Subject, c.check_subject(), |()| {
                format!("`{}`", shown(c.sub))
            })?;
        }

        // Key and signature.
        let (Some(alg), Some(kid), Some(signature)) = (alg, kid, signature) else {
            return self.after_signature(config, claims.as_ref(), &claims_map, now, rec);
        };
        let keys = match issuer.keys_for(kid.as_deref()).await {
            Ok(keys) => keys,
            Err(e) => {
                rec.check::<()>(Check::Key, Err(e), |()| String::new())?;
                return self.after_signature(config, claims.as_ref(), &claims_map, now, rec);
            }
        };
        let candidates = rec.check(
            Check::Key,
            keys.candidates(kid.as_deref(), alg, &config.name),
            |c| describe_candidates(kid.as_deref(), alg, &config.name, c),
        )?;
        if let Some(candidates) = candidates {
            let input = segments.signing_input.as_bytes();
            rec.check(
                Check::Signature,
                verify_any(&candidates, alg, input, &signature),
                |k| format!("verified with key `{}` ({})", k.label(), k.describe()),
            )?;
        }
        self.after_signature(config, claims.as_ref(), &claims_map, now, rec)
    }

    /// Time, audience and the per-issuer claim rules; then the identity.
    fn after_signature(
        &self,
        config: &IssuerConfig,
        claims: Option<&Claims<'_>>,
        map: &Map<String, Value>,
        now: i64,
        rec: &mut Recorder,
    ) -> Result<Option<Identity>, TokenError> {
        let Some(c) = claims else {
            return Ok(None);
        };
        let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let fresh = rec.check(
            Check::Expiry,
            claims::check_expiry(c.exp, skew, now),
            |()| {
                format!(
                    "{}: {} (skew {skew} s)",
                    utc(c.exp),
                    human_delta(c.exp - now)
                )
            },
        )?;
        if fresh.is_none() {
            rec.annotate(|| Some(format!("exp {} (skew {skew} s)", utc(c.exp))));
        }
        rec.check(Check::NotBefore, c.check_not_before(skew, now), |()| {
            c.nbf.map_or_else(
                || "absent".into(),
                |t| format!("{}: {} (skew {skew} s)", utc(t), human_delta(t - now)),
            )
        })?;
        rec.check(Check::IssuedAt, c.check_issued_at(skew, now), |()| {
            c.iat.map_or_else(
                || "absent".into(),
                |t| format!("{}: {} (skew {skew} s)", utc(t), human_delta(t - now)),
            )
        })?;
        // Always checked: revocations are kept only as long as a token
        // within this cap can live (`Config::revocation_horizon`).
        let max = config.max_lifetime.as_secs();
        rec.check(Check::Lifetime, c.check_lifetime(max), |l| {
            format!("exp - iat = {l} s, at most {max} s")
        })?;
        rec.check(Check::Audience, c.check_audience(&config.audiences), |()| {
            format!(
                "expected one of [{}], got [{}]",
                config.audiences.join(", "),
                c.aud
                    .iter()
                    .map(|a| shown(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        match &config.authorized_parties {
            Some(parties) => {
                rec.check(
                    Check::AuthorizedParty,
                    c.check_authorized_party(parties),
                    |()| {
                        format!(
                            "`{}` is in [{}]",
                            c.azp.unwrap_or_default(),
                            parties.join(", ")
                        )
                    },
                )?;
            }
            None => rec.skip(Check::AuthorizedParty, "not configured"),
        }
        if config.required_claims.is_empty() {
            rec.skip(Check::RequiredClaims, "none configured");
        } else {
            rec.check(
                Check::RequiredClaims,
                claims::check_required(map, &config.required_claims),
                |()| format!("[{}] present", config.required_claims.join(", ")),
            )?;
        }
        rec.check(Check::Groups, claims::identity(config, c, map), |id| {
            format!(
                "groups [{}]; identity `{}`; principal {}",
                id.groups.join(", "),
                shown(&id.identity),
                shown(&id.principal_id())
            )
        })
    }

    pub(super) fn issuer_of(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<&Arc<IssuerKeys>, TokenError> {
        let iss = match claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(TokenError::claim_type("iss", "a string")),
            None => return Err(TokenError::MissingClaim("iss".into())),
        };
        self.issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(shown(iss)))
    }
}

/// The skew the cache re-checks expiry with: the issuer's own.
fn identity_skew(issuers: &[Arc<IssuerKeys>], identity: &Identity) -> i64 {
    issuers
        .iter()
        .find(|i| i.config.name == identity.issuer_name)
        .map_or(0, |i| {
            i64::try_from(i.config.clock_skew.as_secs()).unwrap_or(i64::MAX)
        })
}

pub(super) fn allowed(config: &IssuerConfig, alg: Algorithm) -> Result<Algorithm, TokenError> {
    if config.algorithms.contains(&alg) {
        Ok(alg)
    } else {
        Err(TokenError::AlgorithmNotAllowed(alg.as_str().to_string()))
    }
}

fn algorithms(config: &IssuerConfig) -> String {
    let names: Vec<&str> = config.algorithms.iter().map(|a| a.as_str()).collect();
    format!("[{}]", names.join(", "))
}

fn accepted_type(config: &IssuerConfig, kind: TokenKind) -> Result<(), TokenError> {
    let ok = match kind {
        TokenKind::Access => config.token_types.access,
        TokenKind::Id => config.token_types.id,
    };
    if ok {
        return Ok(());
    }
    Err(TokenError::TokenTypeNotAccepted {
        got: kind.describe(),
        issuer: config.name.clone(),
        accepted: types(config.token_types),
    })
}

fn types(t: TokenTypes) -> &'static str {
    match (t.access, t.id) {
        (true, true) => "access tokens (typ at+jwt) and ID tokens (typ JWT)",
        (true, false) => "access tokens (typ at+jwt) only",
        (false, _) => "ID tokens (typ JWT or none) only",
    }
}

fn describe_candidates(kid: Option<&str>, alg: Algorithm, issuer: &str, keys: &[&Jwk]) -> String {
    match (kid, keys) {
        (Some(kid), [key, ..]) => format!(
            "kid `{}` found in issuer {issuer}'s JWKS: {}",
            shown(kid),
            key.describe()
        ),
        _ => format!(
            "no kid: trying the {} key(s) of issuer {issuer} that fit {}",
            keys.len(),
            alg.as_str()
        ),
    }
}

/// Tries each candidate key whose shape fits the signature. The signature
/// shape is checked before ring so a malformed one gets its own reason.
pub(super) fn verify_any<'k>(
    candidates: &[&'k Jwk],
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<&'k Jwk, TokenError> {
    let mut shape_error = None;
    for key in candidates {
        match key.signature_shape(alg, signature) {
            Ok(()) if key.verify(alg, message, signature) => return Ok(key),
            Ok(()) => shape_error = Some(TokenError::Signature),
            Err(e) => {
                shape_error.get_or_insert(e);
            }
        }
    }
    // A key of the right shape that did not verify outranks a shape error.
    Err(shape_error.unwrap_or(TokenError::Signature))
}

/// Seconds since the epoch, as JWT NumericDates count them.
pub(crate) fn unix_now() -> i64 {
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
