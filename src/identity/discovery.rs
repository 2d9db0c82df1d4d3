//! Talking to issuers over HTTP: OpenID discovery and raw JWKS download.
//! The client is deliberately hostile-network proof: no redirects (a
//! redirect could point key fetches anywhere), short timeouts, and a body cap
//! so a misbehaving issuer cannot stall or bloat the gateway.

use std::time::Duration;

use reqwest::{Client, redirect};
use serde_json::Value;
use url::Url;

use super::jose::parse_strict_json;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(crate) const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Real JWKS and discovery documents are a few KiB.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// HTTP access to issuers. Building the client can fail (for example when
/// the TLS backend finds no root certificates); that is kept as an error and
/// reported on each fetch, so the gateway starts and fails closed instead of
/// panicking.
#[derive(Debug, Clone)]
pub(crate) struct IssuerHttp {
    client: Result<Client, String>,
}

impl IssuerHttp {
    pub fn new() -> Self {
        let client = Client::builder()
            .redirect(redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"));
        IssuerHttp { client }
    }

    /// GETs `url` and returns at most `MAX_BODY_BYTES` of body, reading in
    /// chunks so an endless body is cut off rather than buffered.
    pub async fn get_limited(&self, url: &str) -> Result<Vec<u8>, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let mut resp = client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", describe(e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(format!(
                "GET {url}: body larger than {MAX_BODY_BYTES} bytes"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", describe(e)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!(
                    "GET {url}: body larger than {MAX_BODY_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Fetches `{issuer}/.well-known/openid-configuration`, checks that it
    /// speaks for exactly this issuer (OpenID Discovery §4.3, which stops one
    /// tenant's document from vouching for another), and returns `jwks_uri`.
    pub async fn discover_jwks_uri(&self, issuer: &str) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get_limited(&url).await?;
        let doc = parse_strict_json(&body).map_err(|e| format!("discovery document: {e}"))?;
        match doc.get("issuer") {
            Some(Value::String(s)) if s == issuer => {}
            Some(Value::String(s)) => {
                return Err(format!(
                    "discovery document names issuer `{s}`, expected `{issuer}`"
                ));
            }
            _ => return Err("discovery document has no `issuer`".into()),
        }
        let Some(Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err("discovery document has no `jwks_uri`".into());
        };
        check_key_url(jwks_uri, issuer)?;
        Ok(jwks_uri.clone())
    }
}

/// A `jwks_uri` learnt from the network must be https, or plain http only
/// when the issuer itself is plain http (which config limits to loopback).
pub(crate) fn check_key_url(url: &str, issuer: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("jwks_uri `{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if issuer.starts_with("http://") => Ok(()),
        other => Err(format!(
            "jwks_uri `{url}` uses `{other}`; only https is allowed"
        )),
    }
}

/// reqwest errors repeat the URL, which we already print once; the source
/// chain carries the useful part ("connection refused", "timed out").
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
