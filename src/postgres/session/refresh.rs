//! A refresh connection: instead of logging in, the client names a live
//! session with `idgate.refresh_session = SESSION_ID:SECRET` and gives a
//! newer token as the password, exactly as at login. The gateway judges it
//! (`Services::refresh_session`), audits a `session_refresh` event, and
//! answers AuthenticationOk + ReadyForQuery, after which the client only
//! terminates: a refresh connection never reaches an upstream.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Fatal as Refusal, Session, no_tls};
use crate::audit::{Decision, EventKind};
use crate::core::refresh::{RefreshError, RefreshOutcome, RefreshRequest};
use crate::postgres::codec::{self, sqlstate};
use crate::tls::Stream;

impl Session {
    pub(super) async fn refresh(
        &mut self,
        client: &mut Stream,
        ticket: &str,
        params: &[(String, String)],
    ) -> Result<(), Refusal> {
        let database = params
            .iter()
            .find(|(k, _)| k == "database")
            .map_or("", |(_, v)| v.as_str());
        self.scope.target = Some(database.to_owned());
        let services = Arc::clone(&self.scope.services);
        if !self.scope.may_send_token(client.is_tls()) {
            let mut e = self.scope.event(EventKind::SessionRefresh);
            e.decision = Some(Decision::Deny);
            e.error = Some("no_tls".into());
            self.audit_refresh(e, "no_tls").await?;
            return Err(no_tls());
        }
        let token = self.read_token(client).await?;
        let outcome = services
            .refresh_session(&RefreshRequest {
                ticket,
                token: token.expose(),
                target: database,
                client_ip: self.scope.peer.ip(),
            })
            .await;
        let RefreshOutcome {
            session,
            identity,
            result,
        } = outcome;
        // Audited under the session it names and the person the token names.
        if let Some(s) = &session {
            self.scope.id.clone_from(&s.info.id);
            self.scope.role = Some(s.info.role.clone());
        }
        self.scope.identity = identity.map(Arc::new);
        let mut e = self.scope.event(EventKind::SessionRefresh);
        if session.is_none() {
            e.session_id = None;
        }
        match result {
            Ok(policy_ids) => {
                e.decision = Some(Decision::Allow);
                e.policy_ids = policy_ids;
                self.audit_refresh(e, "allowed").await?;
                let mut ok = BytesMut::with_capacity(32);
                codec::authentication(&mut ok, codec::auth::OK);
                codec::ready_for_query(&mut ok, codec::status::IDLE);
                let lost = |_| Refusal::new(sqlstate::CONNECTION_FAILURE, "connection lost");
                client.write_all(&ok).await.map_err(lost)?;
                client.flush().await.map_err(lost)?;
                expect_terminate(client).await
            }
            Err(err) => {
                let kind = err.kind();
                let message = err.to_string();
                e.decision = Some(Decision::Deny);
                e.error = Some(kind.to_owned());
                e.reason = Some(message.clone());
                let refusal = match err {
                    RefreshError::Denied { policy_ids, .. } => {
                        e.policy_ids = policy_ids;
                        Refusal::new(sqlstate::INSUFFICIENT_PRIVILEGE, message)
                    }
                    RefreshError::Token(_) => Refusal::new(sqlstate::INVALID_PASSWORD, message)
                        .hint("get a fresh token from your identity provider"),
                    RefreshError::OtherPerson | RefreshError::OtherGroups => Refusal::new(
                        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                        message,
                    )
                    .hint("a session is extended only with tokens of the person who opened it, with the same groups; open a new session instead"),
                    RefreshError::Malformed
                    | RefreshError::NoSession
                    | RefreshError::WrongSecret
                    | RefreshError::OtherTarget => {
                        Refusal::new(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, message)
                    }
                };
                self.audit_refresh(e, kind).await?;
                Err(refusal)
            }
        }
    }

    /// Audits a refresh before the client hears the outcome, as logins are.
    async fn audit_refresh(
        &self,
        e: crate::audit::AuditEvent,
        reason: &'static str,
    ) -> Result<(), Refusal> {
        let outcome = if e.decision == Some(Decision::Allow) {
            "ok"
        } else {
            "refused"
        };
        self.scope.services.metrics.refresh(outcome, reason);
        self.scope.audit_durable(e).await.map_err(|err| {
            tracing::error!("audit trail unavailable: {err}");
            Refusal::new(
                sqlstate::CONNECTION_FAILURE,
                "audit trail unavailable; refreshes are suspended",
            )
        })
    }
}

/// After a refresh the client has nothing to say but Terminate (or to
/// close); anything else is refused, so no statement runs on a connection
/// that has no upstream.
async fn expect_terminate(client: &mut Stream) -> Result<(), Refusal> {
    let mut tag = [0u8; 1];
    match client.read(&mut tag).await {
        Ok(0) | Err(_) => Ok(()),
        Ok(_) if tag[0] == codec::frontend::TERMINATE => Ok(()),
        Ok(_) => Err(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "a refresh connection runs no statements",
        )
        .hint("open a new session to run statements")),
    }
}
