//! `idgate logout`: revoke the refresh token at the issuer (RFC 7009)
//! where it offers revocation, then delete the cache entry. If revoking
//! fails the entry stays, so the person can retry.

use super::CliError;
use super::cache::Slot;
use super::error::description;
use super::provider::{Provider, error_chain};
use super::settings::Settings;

pub async fn logout(settings: &Settings) -> Result<(), CliError> {
    let issuer = settings.issuer()?;
    let slot = Slot::new(&settings.cache_dir, issuer, settings.client_id()?);
    let _lock = slot.lock().await?;
    let Some(tokens) = slot.read()? else {
        // An unreadable entry was warned about; still remove it.
        if slot.remove()? {
            println!("Deleted {}.", slot.path().display());
        } else {
            println!("Not logged in to {issuer}: nothing to do.");
        }
        return Ok(());
    };
    let revoked = match &tokens.refresh_token {
        Some(refresh) => {
            let provider = Provider::discover(settings).await?;
            if provider.has_revocation {
                revoke(&provider, settings, refresh.expose()).await?;
                true
            } else {
                false
            }
        }
        None => false,
    };
    slot.remove()?;
    if revoked {
        println!(
            "Revoked the refresh token at {issuer} and deleted {}.",
            slot.path().display()
        );
    } else {
        println!(
            "Deleted {}; {issuer} offers no token revocation, so its refresh token (if any) stays valid there until it expires.",
            slot.path().display()
        );
    }
    Ok(())
}

/// RFC 7009 by hand: the `oauth2` crate refuses revocation endpoints that
/// are not https, and loopback development issuers serve plain http.
async fn revoke(provider: &Provider, settings: &Settings, refresh: &str) -> Result<(), CliError> {
    let url = provider
        .client
        .revocation_url()
        .map_or_else(String::new, |u| u.to_string());
    let failed = |reason: String| CliError::Revocation {
        url: url.clone(),
        reason,
    };
    let client_id = settings.client_id()?;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", refresh)
        .append_pair("token_type_hint", "refresh_token");
    let mut request = provider.http.post(&url);
    match &settings.client_secret {
        Some(secret) => request = request.basic_auth(client_id, Some(secret.expose())),
        None => {
            form.append_pair("client_id", client_id);
        }
    }
    let response = request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form.finish())
        .send()
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The error's code and description only: the body is the issuer's.
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let error = body["error"].as_str().unwrap_or_default();
    Err(failed(format!(
        "HTTP {status} {error}{}",
        description(body["error_description"].as_str())
    )))
}
