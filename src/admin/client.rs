//! `idgate sessions` and `idgate revoke`: the admin API from the command
//! line. Errors are one line: the API's own message, or why it could not
//! be reached.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::RevokeRequest;

/// Where the admin API is and who asks.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, token: String) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned);
            anyhow::bail!("{} ({status})", message);
        }
        Ok((status, body))
    }

    /// The live sessions as a table, oldest first.
    pub async fn list(&self) -> anyhow::Result<String> {
        let (_, body) = self.call(Method::GET, "/api/sessions", None).await?;
        let rows = body.as_array().cloned().unwrap_or_default();
        let mut out = format!(
            "{:<24}  {:<28}  {:<12}  {:<12}  {:<21}  {:>10}  {}\n",
            "ID", "IDENTITY", "TARGET", "ROLE", "CLIENT", "STATEMENTS", "TOKEN EXPIRES"
        );
        for s in &rows {
            let text = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
            let expires = s["token_expires_at"]
                .as_i64()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .map_or_else(|| "-".into(), |t| t.to_string());
            out.push_str(&format!(
                "{:<24}  {:<28}  {:<12}  {:<12}  {:<21}  {:>10}  {expires}\n",
                text("id"),
                text("identity"),
                text("target"),
                text("role"),
                text("client_addr"),
                s["statements"].as_u64().unwrap_or(0),
            ));
        }
        out.push_str(&format!("{} session(s)\n", rows.len()));
        Ok(out)
    }

    pub async fn kill(&self, id: &str) -> anyhow::Result<String> {
        let (status, _) = self
            .call(Method::DELETE, &format!("/api/sessions/{id}"), None)
            .await?;
        Ok(if status == StatusCode::ACCEPTED {
            format!("session {id} is on another gateway; it was asked to end it\n")
        } else {
            format!("session {id} ended\n")
        })
    }

    pub async fn revoke(&self, request: &RevokeRequest) -> anyhow::Result<String> {
        let body = serde_json::to_value(request)?;
        let (_, answer) = self
            .call(Method::POST, "/api/revocations", Some(body))
            .await?;
        let ended = answer["sessions"].as_array().map_or(0, Vec::len);
        let mut out = format!(
            "revoked {}; {ended} live session(s) on this gateway ended\n",
            answer["revoked"].as_str().unwrap_or("?")
        );
        if let Some(why) = answer["not_shared"].as_str() {
            out.push_str(&format!(
                "warning: other gateways were not told ({why}); revoke again once the cluster is reachable\n"
            ));
        }
        Ok(out)
    }
}
