//! The admin API on `admin_listen` (SPEC §10): health, live sessions,
//! killing them, and revocations. Every `/api` call carries a bearer token
//! from a configured issuer, validated like a login token, and is allowed
//! only by a Cedar permit of the action `administer` on the gateway:
//! 401 without a valid token, 403 without the permit.

mod client;

pub use client::AdminClient;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, EventKind};
use crate::core::services::{AuthError, Services};
use crate::identity::{Identity, unix_now};
use crate::policy::{AccessRequest, Action, RequestContext};
use crate::sessions::{Revocation, RevocationMatch, SessionSnapshot};

pub fn router(gw: Arc<Services>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", delete(kill_session))
        .route("/api/revocations", post(revoke).get(list_revocations))
        .route("/backchannel-logout", post(backchannel_logout))
        .with_state(gw)
}

/// Serve the admin API on `listener` until `stop`.
pub async fn serve(
    gw: Arc<Services>,
    listener: tokio::net::TcpListener,
    stop: tokio_util::sync::CancellationToken,
) {
    let app = router(gw).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!("admin API stopped: {e}");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready unless sharing with other gateways is configured and down: such a
/// gateway still enforces what it knows, but may miss revocations made
/// elsewhere meanwhile.
async fn readyz(State(gw): State<Arc<Services>>) -> Response {
    match &gw.cluster {
        Some(c) if !c.is_connected() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: cluster Redis unreachable; enforcing local revocations only\n",
        )
            .into_response(),
        _ => "ready\n".into_response(),
    }
}

/// Prometheus scrapes without a token, like `/healthz`: the figures carry
/// no identities. Bind `admin_listen` where only the scraper can reach it.
async fn metrics(State(gw): State<Arc<Services>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&gw),
    )
        .into_response()
}

#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// The caller of an `/api` handler: its bearer token is valid and the
/// policy lets it administer. Rejected with the response to send otherwise.
struct Admin(Identity);

impl FromRequestParts<Arc<Services>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token from a configured issuer is required",
                )
            })?;
        // The same check as a database login: a revoked administrator is
        // refused here exactly as at the database.
        let identity = gw.authenticate(token).await.map_err(|e| {
            if let AuthError::Revoked { what, identity } = &e {
                tracing::warn!(
                    principal = %identity.principal_id(),
                    "admin API refused a revoked token ({what})"
                );
            }
            error(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(RequestContext::default().client_address, |c| c.0.ip());
        let decision = gw.policy.authorize(&AccessRequest {
            identity: &identity,
            target: "",
            role: "",
            action: Action::Administer,
            context: RequestContext {
                client_address: peer,
                now: gw.clock.now(),
                ..RequestContext::default()
            },
        });
        if !decision.allowed {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not administer this gateway: {}",
                    identity.identity, decision.reason
                ),
            ));
        }
        Ok(Admin(identity))
    }
}

async fn list_sessions(State(gw): State<Arc<Services>>, _: Admin) -> Response {
    let own = gw.cluster.as_ref().map(|c| c.gateway_id.as_str());
    let mut all: Vec<SessionSnapshot> =
        gw.sessions.list().iter().map(|s| s.snapshot(own)).collect();
    // Other gateways' sessions, as they last wrote them.
    if let Some(c) = &gw.cluster {
        match c.sessions().await {
            Ok(remote) => all.extend(remote.into_iter().filter(|s| s.gateway.as_deref() != own)),
            Err(e) => tracing::warn!("listing other gateways' sessions: {e}"),
        }
    }
    Json(all).into_response()
}

async fn kill_session(
    State(gw): State<Arc<Services>>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Response {
    let status = if gw.sessions.kill(&id) {
        StatusCode::NO_CONTENT
    } else {
        match &gw.cluster {
            // Another gateway holds it and ends it on the message.
            Some(c) => match c.kill(&id).await {
                Ok(true) => StatusCode::ACCEPTED,
                Ok(false) => return error(StatusCode::NOT_FOUND, format!("no live session {id}")),
                Err(e) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "session {id} is not on this gateway, and the cluster is unreachable: {e}"
                        ),
                    );
                }
            },
            None => return error(StatusCode::NOT_FOUND, format!("no live session {id}")),
        }
    };
    let what = RevocationMatch::Session(id);
    if let Err(r) = audit_revoked(&gw, Some(&admin), &what, 1).await {
        return r;
    }
    status.into_response()
}

/// `POST /api/revocations`: exactly one of `subject`, `sid`, `jti` (with
/// `issuer`, the configured issuer name, optional when there is only one),
/// or `session_id`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub revoked: String,
    /// Live sessions ended by it on this gateway (others end theirs).
    pub sessions: Vec<String>,
    /// Set when other gateways could not be told (Redis unreachable): they
    /// learn it when they reach Redis again only if it was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_shared: Option<String>,
}

async fn revoke(
    State(gw): State<Arc<Services>>,
    Admin(admin): Admin,
    body: Result<Json<RevokeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let what = match revocation_match(&gw, request) {
        Ok(w) => w,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (ended, unshared) = revoke_at(&gw, what.clone(), unix_now()).await;
    if let Err(r) = audit_revoked(&gw, Some(&admin), &what, ended.len()).await {
        return r;
    }
    (
        StatusCode::CREATED,
        Json(RevokeResponse {
            revoked: what.to_string(),
            sessions: ended,
            not_shared: unshared,
        }),
    )
        .into_response()
}

async fn list_revocations(State(gw): State<Arc<Services>>, _: Admin) -> Response {
    Json(gw.revocations.list(unix_now())).into_response()
}

fn revocation_match(gw: &Services, r: RevokeRequest) -> Result<RevocationMatch, String> {
    let given = [&r.subject, &r.sid, &r.jti, &r.session_id]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err("give exactly one of subject, sid, jti, session_id".into());
    }
    if let Some(id) = r.session_id {
        return Ok(RevocationMatch::Session(id));
    }
    let issuer = match r.issuer {
        Some(name) if gw.config.issuers.iter().any(|i| i.name == name) => name,
        Some(name) => return Err(format!("issuer `{name}` is not configured")),
        None => match gw.config.issuers.as_slice() {
            [only] => only.name.clone(),
            _ => return Err("several issuers are configured: name one with `issuer`".into()),
        },
    };
    Ok(match (r.subject, r.sid, r.jti) {
        (Some(subject), _, _) => RevocationMatch::Subject { issuer, subject },
        (_, Some(sid), _) => RevocationMatch::Sid { issuer, sid },
        (_, _, Some(jti)) => RevocationMatch::Jti { issuer, jti },
        _ => unreachable!("exactly one was given"),
    })
}

/// Record `what` as made at `at`, end the live sessions it covers here,
/// and share it with the other gateways. The ended sessions' ids, and why
/// the revocation could not be shared, if it could not.
pub async fn revoke_at(
    gw: &Services,
    what: RevocationMatch,
    at: i64,
) -> (Vec<String>, Option<String>) {
    let revocation = Revocation {
        until: gw.revocation_until(&what, at),
        what,
        at,
    };
    gw.metrics.revocation();
    let ended = gw.apply_revocation(revocation.clone());
    let unshared = match &gw.cluster {
        Some(c) => c.share_revocation(&revocation).await.err().map(|e| {
            tracing::error!(
                "revocation of {} not shared with other gateways: {e}",
                revocation.what
            );
            e.to_string()
        }),
        None => None,
    };
    (ended, unshared)
}

/// A `revoked` event naming who revoked (an administrator, or the issuer
/// by back-channel logout when `admin` is `None`).
async fn audit_revoked(
    gw: &Services,
    admin: Option<&Identity>,
    what: &RevocationMatch,
    sessions: usize,
) -> Result<(), Response> {
    let by = if admin.is_some() {
        ""
    } else {
        "back-channel logout: "
    };
    let e = AuditEvent {
        issuer: admin.map(|a| a.issuer.clone()),
        subject: admin.map(|a| a.sub.clone()),
        identity: admin.map(|a| a.identity.clone()),
        reason: Some(format!("{by}{what}; {sessions} live session(s) ended")),
        ..AuditEvent::new(EventKind::Revoked)
    };
    gw.audit.record_durable(e).await.map_err(|e| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("audit trail unavailable: {e}"),
        )
    })
}

/// `POST /backchannel-logout` (OIDC Back-Channel Logout 1.0 §2.5): a
/// form with `logout_token`. The token authenticates the call; what it
/// names is revoked as of its `iat`, so a replay changes nothing.
async fn backchannel_logout(State(gw): State<Arc<Services>>, body: axum::body::Bytes) -> Response {
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return logout_error("the form has no logout_token");
    };
    let logout = match gw.validate_logout(&token).await {
        Ok(l) => l,
        Err(e) => {
            tracing::info!("back-channel logout refused: {e}");
            return logout_error(&e.to_string());
        }
    };
    let issuer = logout.issuer_name;
    let what = match (logout.sid, logout.sub) {
        (Some(sid), _) => RevocationMatch::Sid { issuer, sid },
        (None, Some(subject)) => RevocationMatch::Subject { issuer, subject },
        (None, None) => return logout_error("neither sub nor sid"),
    };
    let (ended, _) = revoke_at(&gw, what.clone(), logout.iat).await;
    if let Err(r) = audit_revoked(&gw, None, &what, ended.len()).await {
        return r;
    }
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// §2.8: 400 with an OAuth-style error body.
fn logout_error(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "error": "invalid_request",
            "error_description": description,
        })),
    )
        .into_response()
}
