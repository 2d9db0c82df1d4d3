//! A real, external OIDC provider for integration tests.
//!
//! Starts `node server.js 0` from `tests/oidc-provider/` (node-oidc-provider,
//! a certified OIDC server; see that directory's `server.js`) on an
//! ephemeral loopback port and gets RS256 JWT access tokens from it with the
//! client-credentials grant, exactly as a workload would from its platform's
//! issuer. The tokens carry `aud: "idgate"`, `typ: at+jwt` in the header,
//! `sub`/`client_id: "idgate-test"`, `email: "analyst@example.com"` and
//! `groups: ["analysts"]`.
//!
//! It also has `idgate-cli` ([`NATIVE_CLIENT_ID`]), the public native
//! client `idgate login` uses (PKCE, loopback redirects, the device grant,
//! rotated refresh tokens), whose people sign in on the provider's own
//! pages: [`ExternalProvider::sign_in`] does that in a real headless
//! Chromium (`sign-in.js`, npm `playwright-core`, Debian `chromium`).
//!
//! The provider's directory is `$IDGATE_OIDC_PROVIDER_DIR`, by default
//! `<crate>/tests/oidc-provider`; `scripts/setup` installs its npm packages.
//! The child is killed when the [`ExternalProvider`] is dropped, and exits by
//! itself when its stdin closes, so a crashed test leaves nothing behind.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The provider's one confidential client.
pub const CLIENT_ID: &str = "idgate-test";
pub const CLIENT_SECRET: &str = "idgate-test-secret";
/// The public native client of `idgate login`.
pub const NATIVE_CLIENT_ID: &str = "idgate-cli";
/// The resource indicator (RFC 8707) the tokens are requested for.
pub const RESOURCE: &str = "urn:idgate";
/// The `aud` of every access token the provider issues.
pub const AUDIENCE: &str = "idgate";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ExternalProvider {
    child: Child,
    /// Kept so the child never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT`, as in the tokens' `iss`.
    pub issuer: String,
}

impl ExternalProvider {
    /// Starts the provider with its default settings (10-minute tokens).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts the provider with extra environment for `server.js`, e.g.
    /// `("OIDC_TOKEN_TTL", "2")` for short-lived tokens or
    /// `("OIDC_EXTRA_CLAIMS", r#"{"groups":["admins"]}"#)` to change claims.
    pub async fn start_with(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = provider_dir();
        if !dir.join("server.js").is_file() {
            bail!(
                "no server.js in {} (set IDGATE_OIDC_PROVIDER_DIR)",
                dir.display()
            );
        }
        if !dir.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "{}/node_modules is missing: run scripts/setup (it runs `npm ci` there)",
                dir.display()
            );
        }

        let mut command = Command::new("node");
        command
            .arg("server.js")
            .arg("0")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start `node server.js` in {} (is Node.js installed? run scripts/setup)",
                dir.display()
            )
        })?;

        let stdout = child.stdout.take().context("child stdout was not piped")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut line))
            .await
            .map_err(|_| {
                anyhow!("external OIDC provider printed no ready line within {READY_TIMEOUT:?}")
            })?
            .context("reading the external OIDC provider's stdout")?;
        if read == 0 {
            let status = child.wait().await.ok();
            bail!(
                "external OIDC provider exited before it was ready ({}); its stderr is above. \
                 If packages are missing, run scripts/setup",
                status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
            );
        }
        let ready: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("unexpected ready line from the OIDC provider: {line:?}"))?;
        let issuer = match (&ready["ready"], &ready["issuer"]) {
            (serde_json::Value::Bool(true), serde_json::Value::String(issuer)) => issuer.clone(),
            _ => bail!("unexpected ready line from the OIDC provider: {line:?}"),
        };

        Ok(Self {
            child,
            _stdout: stdout,
            issuer,
        })
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// A fresh access token (a signed RS256 JWT) from the client-credentials
    /// grant, for resource [`RESOURCE`], so with `aud` = [`AUDIENCE`].
    pub async fn client_credentials_token(&self) -> anyhow::Result<String> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;

        let discovery: serde_json::Value = http
            .get(self.discovery_url())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("fetching {}", self.discovery_url()))?
            .json()
            .await
            .context("decoding the discovery document")?;
        let token_endpoint = discovery["token_endpoint"]
            .as_str()
            .context("discovery document has no token_endpoint")?;

        // reqwest is built without its `form` feature: encode the body here.
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("resource", RESOURCE)
            .finish();
        let response = http
            .post(token_endpoint)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {token_endpoint}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer of POST {token_endpoint}"))?;
        if !status.is_success() {
            bail!("token endpoint answered {status}: {text}");
        }
        let answer: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("token endpoint answered non-JSON: {text}"))?;
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("token endpoint answer has no access_token: {text}"))
    }

    /// Token-endpoint requests so far with `grant_type=refresh_token`,
    /// answered or refused.
    pub async fn refresh_requests(&self) -> u64 {
        self.counters().await["grants"]["refresh_token"]
            .as_u64()
            .unwrap_or(0)
    }

    /// When each device-code poll reached the token endpoint (ms since
    /// the epoch, in order).
    pub async fn device_polls(&self) -> Vec<u64> {
        self.counters().await["device_polls"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default()
    }

    async fn counters(&self) -> serde_json::Value {
        reqwest::get(format!("{}/test/counters", self.issuer))
            .await
            .expect("counters answer")
            .json()
            .await
            .expect("counters are JSON")
    }

    /// Revokes `token` (a refresh token of the native client) at the
    /// provider's RFC 7009 endpoint, as an administrator or a logout would.
    pub async fn revoke_refresh_token(&self, token: &str) {
        let status = self
            .form_post(
                "/token/revocation",
                &[("token", token), ("token_type_hint", "refresh_token")],
            )
            .await
            .0;
        assert_eq!(status, 200, "revocation answered {status}");
    }

    /// What the token endpoint says to `refresh_token` from the native
    /// client: its status and JSON `error`, if any.
    pub async fn try_refresh(&self, refresh_token: &str) -> (u16, Option<String>) {
        let (status, body) = self
            .form_post(
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            )
            .await;
        (status, body["error"].as_str().map(str::to_owned))
    }

    async fn form_post(&self, path: &str, pairs: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", NATIVE_CLIENT_ID)
            .extend_pairs(pairs)
            .finish();
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.issuer))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .expect("the provider answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// A person in a real headless Chromium opens `url`, signs in as
    /// `login` on the provider's pages and consents (or, with `deny`,
    /// presses Cancel at consent). Returns the last page's text.
    pub async fn sign_in(&self, url: &str, login: &str, deny: bool) -> String {
        let mut command = Command::new("node");
        command
            .arg("sign-in.js")
            .arg(url)
            .arg(login)
            .current_dir(provider_dir())
            .kill_on_drop(true);
        if deny {
            command.arg("--deny");
        }
        let out = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .expect("the browser finished within 90 s")
            .expect("node runs sign-in.js");
        assert!(
            out.status.success(),
            "sign-in.js failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The child's process id, e.g. to check it is gone after a drop.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

fn provider_dir() -> PathBuf {
    std::env::var_os("IDGATE_OIDC_PROVIDER_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider"),
        PathBuf::from,
    )
}
