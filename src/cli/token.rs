//! `idgate token`, and `fresh_token` for every command that needs a valid
//! token (connect, tunnel): the cached token when it lasts long enough,
//! else one refresh under the entry's lock.

use std::time::Duration;

use base64::Engine as _;

use super::CliError;
use super::cache::Slot;
use super::provider::{Provider, TokenSet, now};
use super::settings::Settings;
use crate::secret::Secret;

/// `idgate token` refreshes a token that expires within this.
pub const MIN_VALID: Duration = Duration::from_secs(60);

/// A token valid for at least `min_valid` (as far as its expiry is known),
/// refreshing it first if needed. When even a fresh token lives shorter
/// than `min_valid`, the fresh one is returned: it is the best there is.
pub async fn fresh_token(settings: &Settings, min_valid: Duration) -> Result<Secret, CliError> {
    let issuer = settings.issuer()?;
    let client_id = settings.client_id()?;
    let slot = Slot::new(&settings.cache_dir, issuer, client_id);
    // Files are replaced atomically, so an unlocked read is whole: most
    // calls end here without waiting for anyone.
    if let Some(tokens) = slot.read()? {
        if let Some(token) = lasting(&tokens, min_valid)? {
            return Ok(token);
        }
    }
    let _lock = slot.lock().await?;
    // Another process may have refreshed (and rotated the refresh token)
    // while this one waited: only what the file says now counts.
    let not_logged_in = || CliError::NotLoggedIn {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
    };
    let tokens = slot.read()?.ok_or_else(not_logged_in)?;
    if let Some(token) = lasting(&tokens, min_valid)? {
        return Ok(token);
    }
    if tokens.refresh_token.is_none() {
        return Err(not_logged_in());
    }
    let provider = Provider::discover(settings).await?;
    let fresh = provider.refresh(&tokens).await?;
    // Written before use: the old refresh token may be spent already.
    slot.write(&fresh)?;
    let (token, _) = presentable(&fresh)?;
    Ok(token.clone())
}

/// `idgate token`: prints a token valid for at least `MIN_VALID`.
pub async fn print_token(settings: &Settings) -> Result<(), CliError> {
    let token = fresh_token(settings, MIN_VALID).await?;
    println!("{}", token.expose());
    Ok(())
}

/// The token to present if it is valid for `min_valid` more.
fn lasting(tokens: &TokenSet, min_valid: Duration) -> Result<Option<Secret>, CliError> {
    let (token, expires_at) = presentable(tokens)?;
    Ok(match expires_at {
        Some(exp) if exp >= now() + min_valid.as_secs() => Some(token.clone()),
        // A token that does not say when it expires is taken as valid
        // until the gateway says otherwise.
        None => Some(token.clone()),
        Some(_) => None,
    })
}

/// The token to present to the gateway and when it expires: the access
/// token when it is a JWT, else the ID token (some issuers give opaque
/// access tokens, which only they can read).
pub fn presentable(tokens: &TokenSet) -> Result<(&Secret, Option<u64>), CliError> {
    if let Some(claims) = jwt_claims(tokens.access_token.expose()) {
        let exp = tokens.expires_at.or_else(|| claims["exp"].as_u64());
        return Ok((&tokens.access_token, exp));
    }
    match &tokens.id_token {
        Some(id) => Ok((id, jwt_claims(id.expose()).and_then(|c| c["exp"].as_u64()))),
        None => Err(CliError::Provider {
            endpoint: "the token endpoint".into(),
            error: "neither a JWT access token nor an ID token".into(),
            description: String::new(),
        }),
    }
}

/// The claims of a JWT, read without checking anything: only to know
/// which token to present, when it expires, and whom it names. The
/// gateway is what validates it.
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .filter(serde_json::Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    fn set(access: String, expires_at: Option<u64>, id: Option<String>) -> TokenSet {
        TokenSet {
            access_token: Secret::new(access),
            expires_at,
            id_token: id.map(Secret::new),
            refresh_token: None,
        }
    }

    #[test]
    fn a_jwt_access_token_is_presented_and_an_opaque_one_gives_way_to_the_id_token() {
        let at = jwt(r#"{"exp":2000000000}"#);
        let tokens = set(at.clone(), None, Some(jwt(r#"{"exp":1}"#)));
        let (token, exp) = presentable(&tokens).unwrap();
        assert_eq!(token.expose(), at);
        assert_eq!(exp, Some(2_000_000_000));

        let id = jwt(r#"{"exp":1900000000}"#);
        let tokens = set("opaque-token".into(), Some(5), Some(id.clone()));
        let (token, exp) = presentable(&tokens).unwrap();
        assert_eq!(token.expose(), id);
        assert_eq!(exp, Some(1_900_000_000));

        let tokens = set("opaque-token".into(), None, None);
        assert!(presentable(&tokens).is_err());
    }

    #[test]
    fn a_token_within_the_margin_needs_a_refresh() {
        let soon = now() + 30;
        let tokens = set(jwt("{}"), Some(soon), None);
        assert!(lasting(&tokens, MIN_VALID).unwrap().is_none());
        assert!(lasting(&tokens, Duration::from_secs(10)).unwrap().is_some());
    }
}
