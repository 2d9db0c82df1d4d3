//! `idgate login`: authorization code with PKCE (S256) on a loopback
//! redirect (RFC 8252), or the device authorization grant (RFC 8628) with
//! `--device` or when no browser can be opened. The tokens go to the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use oauth2::basic::BasicErrorResponseType;
use oauth2::{
    AuthorizationCode, CsrfToken, DeviceCodeErrorResponseType, PkceCodeChallenge, RedirectUrl,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse,
};

use super::CliError;
use super::cache::Slot;
use super::error::{description, one_line};
use super::provider::{Provider, TokenSet, token_set, unreachable_at};
use super::settings::Settings;
use super::token::{jwt_claims, presentable};

/// How long the browser sign-in may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// A browser command still running after this has opened a window.
const BROWSER_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
pub struct LoginOptions {
    /// The device grant, even when a browser could be opened.
    pub device: bool,
    /// Print the sign-in URL instead of opening a browser.
    pub no_browser: bool,
}

pub async fn login(settings: &Settings, options: LoginOptions) -> Result<(), CliError> {
    let provider = Provider::discover(settings).await?;
    let tokens = if options.device {
        device_flow(&provider, settings).await?
    } else {
        browser_flow(&provider, settings, options.no_browser).await?
    };
    let slot = Slot::new(
        &settings.cache_dir,
        settings.issuer()?,
        settings.client_id()?,
    );
    {
        let _lock = slot.lock().await?;
        slot.write(&tokens)?;
    }
    let (token, _) = presentable(&tokens)?;
    let claims = jwt_claims(token.expose()).unwrap_or_default();
    let who = ["email", "preferred_username", "sub"]
        .iter()
        .find_map(|c| claims[c].as_str())
        .map_or_else(String::new, |w| format!(" as {}", one_line(w)));
    let refresh = if tokens.refresh_token.is_some() {
        "refreshed as needed"
    } else {
        "no refresh token: log in again when it expires"
    };
    println!(
        "Logged in to {}{who}; tokens cached in {} ({refresh}).",
        provider.issuer,
        slot.path().display()
    );
    Ok(())
}

/// What the loopback listener hands back: the code, or why there is none.
type Answer = Result<String, CliError>;

struct Callback {
    state: String,
    issuer: String,
    answer: Mutex<Option<tokio::sync::oneshot::Sender<Answer>>>,
}

async fn browser_flow(
    provider: &Provider,
    settings: &Settings,
    no_browser: bool,
) -> Result<TokenSet, CliError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(CliError::Loopback)?;
    let port = listener.local_addr().map_err(CliError::Loopback)?.port();
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/callback"))
        .expect("a loopback URL parses");
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = provider
        .client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(settings.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .set_redirect_uri(std::borrow::Cow::Borrowed(&redirect));
    // OIDC Core §11: `offline_access` (a refresh token) is granted only
    // with `prompt=consent`; providers may drop it otherwise.
    if settings.scopes.iter().any(|s| s == "offline_access") {
        request = request.add_extra_param("prompt", "consent");
    }
    let (url, state) = request.url();

    if no_browser {
        eprintln!("Open this URL in a browser to sign in:\n\n    {url}\n");
    } else {
        match open_browser(url.as_str()).await {
            Ok(()) => eprintln!(
                "Opened a browser to sign in. If none appeared, open this URL:\n\n    {url}\n"
            ),
            Err(why) if provider.has_device_flow => {
                eprintln!("Cannot open a browser ({why}); signing in with a device code instead.");
                return device_flow(provider, settings).await;
            }
            Err(why) => eprintln!(
                "Cannot open a browser ({why}). Open this URL in a browser to sign in:\n\n    {url}\n"
            ),
        }
    }

    let (tx, rx) = tokio::sync::oneshot::channel();
    let callback = Arc::new(Callback {
        state: state.secret().clone(),
        issuer: provider.issuer.clone(),
        answer: Mutex::new(Some(tx)),
    });
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(on_callback))
        .with_state(callback);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let answer = tokio::time::timeout(LOGIN_TIMEOUT, rx).await;
    // Let the page that answered reach the browser, then stop listening.
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let code = match answer {
        Ok(Ok(answer)) => answer?,
        Ok(Err(_)) => {
            return Err(CliError::Loopback(std::io::Error::other(
                "the listener stopped before any answer",
            )));
        }
        Err(_) => return Err(CliError::LoginTimeout(LOGIN_TIMEOUT.as_secs())),
    };

    let answer = provider
        .client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .set_redirect_uri(std::borrow::Cow::Borrowed(&redirect))
        .request_async(&provider.http)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r)
                if *r.error() == BasicErrorResponseType::InvalidGrant =>
            {
                CliError::Expired(format!(
                    "the issuer refused the authorization code: invalid_grant{}",
                    description(r.error_description().map(String::as_str))
                ))
            }
            other => provider.request_failed(other),
        })?;
    Ok(token_set(&answer))
}

/// The redirect: the first answer decides; later ones (a reload, a
/// second tab) only get a page.
async fn on_callback(
    State(callback): State<Arc<Callback>>,
    Query(params): Query<HashMap<String, String>>,
) -> Html<String> {
    let answer = judge(&callback, &params);
    let page = match &answer {
        Ok(_) => page(
            "Signed in",
            "You can close this tab and return to the terminal.",
        ),
        Err(e) => page("Sign-in failed", &format!("{e}. {}.", e.hint())),
    };
    if let Some(tx) = crate::lock(&callback.answer).take() {
        let _ = tx.send(answer);
    }
    Html(page)
}

fn judge(callback: &Callback, params: &HashMap<String, String>) -> Answer {
    if params.get("state") != Some(&callback.state) {
        return Err(CliError::StateMismatch);
    }
    // RFC 9207: an answer naming another issuer is a mix-up attack.
    if let Some(iss) = params.get("iss") {
        if iss.trim_end_matches('/') != callback.issuer {
            return Err(CliError::Provider {
                endpoint: "the login redirect".into(),
                error: format!("an answer from another issuer ({})", one_line(iss)),
                description: String::new(),
            });
        }
    }
    if let Some(error) = params.get("error") {
        let description = description(params.get("error_description").map(String::as_str));
        return Err(match error.as_str() {
            "access_denied" => CliError::Denied {
                error: "access_denied".into(),
                description,
            },
            other => CliError::Provider {
                endpoint: "the authorization endpoint".into(),
                error: one_line(other),
                description,
            },
        });
    }
    params.get("code").cloned().ok_or(CliError::Provider {
        endpoint: "the login redirect".into(),
        error: "an answer with neither a code nor an error".into(),
        description: String::new(),
    })
}

fn page(title: &str, text: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>idgate: {t}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape(title),
        x = escape(text)
    )
}

/// `$BROWSER` when set (as Python's webbrowser and git read it: a command,
/// `%s` standing for the URL), else the desktop's opener.
async fn open_browser(url: &str) -> Result<(), String> {
    let command = match std::env::var("BROWSER") {
        Ok(b) if !b.trim().is_empty() => b.split(':').next().unwrap_or_default().to_owned(),
        _ if cfg!(target_os = "macos") => "open".into(),
        _ => "xdg-open".into(),
    };
    let mut words = command.split_whitespace();
    let program = words.next().ok_or("empty $BROWSER")?;
    let mut args: Vec<String> = words.map(|w| w.replace("%s", url)).collect();
    if !command.contains("%s") {
        args.push(url.to_owned());
    }
    let mut child = tokio::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    match tokio::time::timeout(BROWSER_GRACE, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}")),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        // Still running: a browser in the foreground, which is open.
        Err(_) => Ok(()),
    }
}

async fn device_flow(provider: &Provider, settings: &Settings) -> Result<TokenSet, CliError> {
    let request = provider
        .client
        .exchange_device_code()
        .map_err(|_| CliError::Discovery {
            url: format!("{}/.well-known/openid-configuration", provider.issuer),
            reason: "the issuer offers no device authorization endpoint".into(),
        })?;
    let details: StandardDeviceAuthorizationResponse = request
        .add_scopes(settings.scopes.iter().cloned().map(Scope::new))
        .request_async(&provider.http)
        .await
        .map_err(|e| match e {
            RequestTokenError::Request(e) => unreachable_at(
                provider
                    .client
                    .device_authorization_url()
                    .map_or("", |u| u.as_str()),
                &e,
            ),
            other => provider.request_failed(other),
        })?;
    let uri = details.verification_uri().as_str();
    let code = details.user_code().secret();
    match details.verification_uri_complete() {
        Some(complete) => eprintln!(
            "To sign in, open this URL in a browser on any device:\n\n    {}\n\nor open {uri} and enter the code {code}",
            complete.secret()
        ),
        None => eprintln!("To sign in, open {uri} in a browser and enter the code {code}"),
    }
    eprintln!(
        "Waiting for you to sign in (the code expires in {} s)…",
        details.expires_in().as_secs()
    );
    // The crate polls at the given interval, adds 5 s on `slow_down` and
    // stops at `expires_in`.
    let answer = provider
        .client
        .exchange_device_access_token(&details)
        .request_async(&provider.http, tokio::time::sleep, None)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                let text = description(r.error_description().map(String::as_str));
                match r.error() {
                    DeviceCodeErrorResponseType::AccessDenied => CliError::Denied {
                        error: "access_denied".into(),
                        description: text,
                    },
                    DeviceCodeErrorResponseType::ExpiredToken => {
                        CliError::Expired(format!("the device code expired{text}"))
                    }
                    other => CliError::Provider {
                        endpoint: "the token endpoint".into(),
                        error: other.to_string(),
                        description: text,
                    },
                }
            }
            other => provider.request_failed(other),
        })?;
    Ok(token_set(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback() -> Callback {
        Callback {
            state: "s1".into(),
            issuer: "https://issuer".into(),
            answer: Mutex::new(None),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_redirect_is_judged_by_state_issuer_and_error() {
        let c = callback();
        assert_eq!(
            judge(&c, &params(&[("state", "s1"), ("code", "c1")])).unwrap(),
            "c1"
        );
        let e = judge(&c, &params(&[("state", "s2"), ("code", "c1")])).unwrap_err();
        assert_eq!(e.kind(), "state_mismatch");
        let e = judge(&c, &params(&[("code", "c1")])).unwrap_err();
        assert_eq!(e.kind(), "state_mismatch");
        let e = judge(
            &c,
            &params(&[("state", "s1"), ("code", "c1"), ("iss", "https://evil")]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "provider");
        let e = judge(
            &c,
            &params(&[
                ("state", "s1"),
                ("error", "access_denied"),
                ("error_description", "no\nway"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "denied");
        assert_eq!(
            e.to_string(),
            "the sign-in was denied at the issuer (access_denied: no way)"
        );
    }

    #[test]
    fn pages_escape_what_they_show() {
        assert!(page("x", "<script>").contains("&lt;script&gt;"));
    }
}
