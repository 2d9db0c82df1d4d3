//! Extending a live session with a newer token of the same person: the
//! gateway's half of `idgate tunnel`'s refresh. Front-end neutral: a front
//! end reads the request off its wire, asks here, and renders and audits
//! the outcome.
//!
//! The invariant: a refresh only ever moves the expiry of a session whose
//! client holds its secret, with a token that passes every login check,
//! of the same issuer, subject and groups, still permitted to `connect` as
//! the session's role. It never changes who the session is or what it may
//! do.

use std::net::IpAddr;
use std::sync::Arc;

use super::services::{AuthError, Services};
use crate::config::OnExpiry;
use crate::identity::Identity;
use crate::policy::{AccessRequest, Action, RequestContext};
use crate::sessions::LiveSession;

/// What a client offers to extend a session.
pub struct RefreshRequest<'a> {
    /// `SESSION_ID:SECRET`, as the gateway handed it to the session's client.
    pub ticket: &'a str,
    pub token: &'a str,
    /// The target the refreshing connection names.
    pub target: &'a str,
    pub client_ip: IpAddr,
}

/// One refresh, whatever its fate: what the audit trail needs.
pub struct RefreshOutcome {
    /// The live session the ticket names, even when its secret is wrong.
    pub session: Option<Arc<LiveSession>>,
    /// The person the token names, once it is known to be genuine.
    pub identity: Option<Identity>,
    /// On success, the policies that permitted `connect`.
    pub result: Result<Vec<String>, RefreshError>,
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh refused: the session ticket is malformed (expected SESSION_ID:SECRET)")]
    Malformed,
    #[error(transparent)]
    Token(#[from] AuthError),
    /// Worded as `WrongSecret` is: the client learns nothing about which
    /// sessions exist.
    #[error("refresh refused: no live session matches the ticket")]
    NoSession,
    #[error("refresh refused: no live session matches the ticket")]
    WrongSecret,
    #[error("refresh refused: the token names another person than the session")]
    OtherPerson,
    #[error("refresh refused: the session belongs to another target")]
    OtherTarget,
    #[error("refresh refused: the token's groups differ from the session's; reconnect to use them")]
    OtherGroups,
    #[error("refresh refused: permission denied to connect as role \"{role}\": {reason}")]
    Denied {
        role: String,
        reason: String,
        policy_ids: Vec<String>,
    },
}

impl RefreshError {
    /// The label for audit `error` and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            RefreshError::Malformed => "malformed",
            RefreshError::Token(e) => e.kind(),
            RefreshError::NoSession => "no_session",
            RefreshError::WrongSecret => "wrong_secret",
            RefreshError::OtherPerson => "other_subject",
            RefreshError::OtherTarget => "other_target",
            RefreshError::OtherGroups => "other_groups",
            RefreshError::Denied { .. } => "policy",
        }
    }
}

impl Services {
    /// Judges a refresh and, when every check passes, moves the session's
    /// token expiry to the new token's (and its expiry deadline with it).
    pub async fn refresh_session(&self, request: &RefreshRequest<'_>) -> RefreshOutcome {
        let mut outcome = RefreshOutcome {
            session: None,
            identity: None,
            result: Ok(Vec::new()),
        };
        outcome.result = self.judge_refresh(request, &mut outcome).await;
        if let (Ok(_), Some(session), Some(identity)) =
            (&outcome.result, &outcome.session, &outcome.identity)
        {
            session.extend(identity);
            let g = &self.config.gateway;
            if g.on_expiry == OnExpiry::Disconnect {
                self.expiry.watch_token(session, g.expiry_grace);
            }
        }
        outcome
    }

    async fn judge_refresh(
        &self,
        request: &RefreshRequest<'_>,
        outcome: &mut RefreshOutcome,
    ) -> Result<Vec<String>, RefreshError> {
        let (id, secret) = request
            .ticket
            .split_once(':')
            .ok_or(RefreshError::Malformed)?;
        outcome.session = self.sessions.get(id).filter(|s| !s.ended().is_cancelled());
        let identity = match self.authenticate(request.token).await {
            Ok(identity) => outcome.identity.insert(identity),
            Err(e) => {
                if let AuthError::Revoked { identity, .. } = &e {
                    outcome.identity = Some((**identity).clone());
                }
                return Err(e.into());
            }
        };
        let session = outcome.session.as_ref().ok_or(RefreshError::NoSession)?;
        if !session.refresh_secret_matches(secret) {
            return Err(RefreshError::WrongSecret);
        }
        let info = &session.info;
        if identity.issuer_name != info.issuer || identity.sub != info.subject {
            return Err(RefreshError::OtherPerson);
        }
        let Some(target) = self
            .config
            .target(request.target)
            .filter(|t| t.name == info.target)
        else {
            return Err(RefreshError::OtherTarget);
        };
        if !session.same_groups(identity) {
            return Err(RefreshError::OtherGroups);
        }
        let decision = self.policy.authorize(&AccessRequest {
            identity,
            target: &target.name,
            role: &info.role,
            action: Action::Connect,
            context: RequestContext {
                client_address: request.client_ip,
                environment: target.environment.clone(),
                now: self.clock.now(),
                ..RequestContext::default()
            },
        });
        if decision.allowed {
            Ok(decision.policy_ids)
        } else {
            Err(RefreshError::Denied {
                role: info.role.clone(),
                reason: decision.reason,
                policy_ids: decision.policy_ids,
            })
        }
    }
}
