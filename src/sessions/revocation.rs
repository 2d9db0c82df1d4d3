//! The revocation list: what was revoked, when, and until when it matters.
//! A subject or `sid` revocation refuses every token of it issued at or
//! before the revocation (a token without `iat` counts as old); a `jti`
//! revocation refuses that token outright. An entry is dropped once no
//! token it covers can still be valid.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::identity::Identity;

/// What a revocation covers. Issuers are the configured issuer names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationMatch {
    Subject {
        issuer: String,
        subject: String,
    },
    Sid {
        issuer: String,
        sid: String,
    },
    Jti {
        issuer: String,
        jti: String,
    },
    /// One gateway session; nothing to refuse at login.
    Session(String),
}

impl fmt::Display for RevocationMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationMatch::Subject { issuer, subject } => write!(f, "subject {issuer}/{subject}"),
            RevocationMatch::Sid { issuer, sid } => write!(f, "{issuer} login session (sid) {sid}"),
            RevocationMatch::Jti { issuer, jti } => write!(f, "{issuer} token (jti) {jti}"),
            RevocationMatch::Session(id) => write!(f, "session {id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub what: RevocationMatch,
    /// Unix seconds when it was made.
    pub at: i64,
    /// Unix seconds after which no token it covers can be valid.
    pub until: i64,
}

/// The claims of a token that revocations look at.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub sid: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub issued_at: Option<i64>,
}

impl<'a> TokenFacts<'a> {
    /// What revocations look at in a validated token.
    #[must_use]
    pub fn of(identity: &'a Identity) -> Self {
        TokenFacts {
            issuer: &identity.issuer_name,
            subject: &identity.sub,
            sid: identity.sid(),
            jti: identity.jti.as_deref(),
            issued_at: identity.issued_at,
        }
    }
}

#[derive(Debug, Default)]
pub struct Revocations {
    list: Mutex<Vec<Revocation>>,
}

impl Revocations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Revocation>> {
        crate::lock(&self.list)
    }

    /// Adds `r` (a repeat of one already listed keeps the later time).
    pub fn add(&self, r: Revocation) {
        let mut list = self.lock();
        list.retain(|old| old.what != r.what || old.at > r.at);
        if !list.iter().any(|old| old.what == r.what) {
            list.push(r);
        }
    }

    /// What refuses a token with these facts at `now`, if anything.
    pub fn refusing(&self, token: &TokenFacts<'_>, now: i64) -> Option<RevocationMatch> {
        let mut list = self.lock();
        list.retain(|r| r.until >= now);
        let old = |at: i64| token.issued_at.is_none_or(|iat| iat <= at);
        list.iter()
            .find(|r| match &r.what {
                RevocationMatch::Subject { issuer, subject } => {
                    issuer == token.issuer && subject == token.subject && old(r.at)
                }
                RevocationMatch::Sid { issuer, sid } => {
                    issuer == token.issuer && token.sid == Some(sid.as_str()) && old(r.at)
                }
                RevocationMatch::Jti { issuer, jti } => {
                    issuer == token.issuer && token.jti == Some(jti.as_str())
                }
                RevocationMatch::Session(_) => false,
            })
            .map(|r| r.what.clone())
    }

    /// Every entry still in force at `now`.
    #[must_use]
    pub fn list(&self, now: i64) -> Vec<Revocation> {
        let mut list = self.lock();
        list.retain(|r| r.until >= now);
        list.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(iat: Option<i64>) -> TokenFacts<'static> {
        TokenFacts {
            issuer: "corp",
            subject: "alice",
            sid: Some("s1"),
            jti: Some("j1"),
            issued_at: iat,
        }
    }

    fn subject() -> RevocationMatch {
        RevocationMatch::Subject {
            issuer: "corp".into(),
            subject: "alice".into(),
        }
    }

    #[test]
    fn tokens_issued_before_a_subject_revocation_are_refused_newer_ones_not() {
        let r = Revocations::default();
        r.add(Revocation {
            what: subject(),
            at: 100,
            until: 1000,
        });
        assert_eq!(r.refusing(&facts(Some(99)), 150), Some(subject()));
        assert_eq!(r.refusing(&facts(Some(100)), 150), Some(subject()));
        assert_eq!(r.refusing(&facts(None), 150), Some(subject()));
        assert_eq!(r.refusing(&facts(Some(101)), 150), None);
        let other_issuer = TokenFacts {
            issuer: "other",
            ..facts(Some(99))
        };
        assert_eq!(r.refusing(&other_issuer, 150), None);
    }

    #[test]
    fn a_jti_revocation_refuses_that_token_whenever_it_was_issued() {
        let r = Revocations::default();
        let jti = RevocationMatch::Jti {
            issuer: "corp".into(),
            jti: "j1".into(),
        };
        r.add(Revocation {
            what: jti.clone(),
            at: 100,
            until: 1000,
        });
        assert_eq!(r.refusing(&facts(Some(500)), 150), Some(jti));
    }

    #[test]
    fn revocations_expire_when_nothing_they_cover_can_be_valid() {
        let r = Revocations::default();
        r.add(Revocation {
            what: subject(),
            at: 100,
            until: 200,
        });
        assert!(r.refusing(&facts(Some(50)), 200).is_some());
        assert!(r.refusing(&facts(Some(50)), 201).is_none());
        assert!(r.list(201).is_empty());
    }

    #[test]
    fn repeating_a_revocation_keeps_the_later_one() {
        let r = Revocations::default();
        for at in [100, 300, 200] {
            r.add(Revocation {
                what: subject(),
                at,
                until: at + 1000,
            });
        }
        let list = r.list(0);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].at, 300);
    }
}
