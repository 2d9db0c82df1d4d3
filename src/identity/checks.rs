//! The named, ordered checks a token goes through, and the recorder that
//! runs them in one of two modes: `validate` stops at the first failure,
//! `token inspect` records every outcome and carries on where it can. Both
//! run the very same pipeline (`TokenValidator::run_checks`), so up to the
//! first failure they execute identical code and can never disagree.

use serde_json::{Map, Value};

use super::Identity;
use super::error::TokenError;

/// One row of the inspection report, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Size,
    Segments,
    HeaderEncoding,
    PayloadEncoding,
    Algorithm,
    HeaderParams,
    Typ,
    SignatureEncoding,
    Issuer,
    AllowedAlgorithm,
    TokenType,
    ClaimTypes,
    Subject,
    Key,
    Signature,
    Expiry,
    NotBefore,
    IssuedAt,
    Lifetime,
    Audience,
    AuthorizedParty,
    RequiredClaims,
    Groups,
}

impl Check {
    /// Every check, in the order the pipeline runs them.
    pub const ALL: [Check; 23] = [
        Check::Size,
        Check::Segments,
        Check::HeaderEncoding,
        Check::PayloadEncoding,
        Check::Algorithm,
        Check::HeaderParams,
        Check::Typ,
        Check::SignatureEncoding,
        Check::Issuer,
        Check::AllowedAlgorithm,
        Check::TokenType,
        Check::ClaimTypes,
        Check::Subject,
        Check::Key,
        Check::Signature,
        Check::Expiry,
        Check::NotBefore,
        Check::IssuedAt,
        Check::Lifetime,
        Check::Audience,
        Check::AuthorizedParty,
        Check::RequiredClaims,
        Check::Groups,
    ];

    /// Whether judging this check needs the issuer's configuration; the
    /// earlier ones (structure and header) do not.
    pub fn needs_config(self) -> bool {
        self as usize >= Check::Issuer as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Check::Size => "size",
            Check::Segments => "segments",
            Check::HeaderEncoding => "header",
            Check::PayloadEncoding => "payload",
            Check::SignatureEncoding => "signature bytes",
            Check::Algorithm => "alg",
            Check::HeaderParams => "header params",
            Check::Typ => "typ",
            Check::Issuer => "iss",
            Check::AllowedAlgorithm => "alg allowed",
            Check::TokenType => "token type",
            Check::ClaimTypes => "claim types",
            Check::Subject => "sub",
            Check::Key => "key",
            Check::Signature => "signature",
            Check::Expiry => "exp",
            Check::NotBefore => "nbf",
            Check::IssuedAt => "iat",
            Check::Lifetime => "max_lifetime",
            Check::Audience => "aud",
            Check::AuthorizedParty => "azp",
            Check::RequiredClaims => "required claims",
            Check::Groups => "groups",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skipped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub check: Check,
    pub status: Status,
    /// Expected vs actual, in words. Never the token or its signature.
    pub detail: String,
}

/// Runs checks in one of the two modes. In `first_failure` mode nothing is
/// allocated for passing checks: detail closures are never called.
#[derive(Debug)]
pub(crate) struct Recorder {
    collect: bool,
    pub outcomes: Vec<Outcome>,
    first_failure: Option<TokenError>,
    /// The decoded header and claims, kept only when collecting.
    pub header: Option<Map<String, Value>>,
    pub claims: Option<Map<String, Value>>,
}

impl Recorder {
    pub fn first_failure() -> Self {
        Self::new(false)
    }

    pub fn collecting() -> Self {
        Self::new(true)
    }

    fn new(collect: bool) -> Self {
        Recorder {
            collect,
            outcomes: Vec::new(),
            first_failure: None,
            header: None,
            claims: None,
        }
    }

    pub fn is_collecting(&self) -> bool {
        self.collect
    }

    /// Records one check. Stopping: a failure comes back as `Err`, for the
    /// pipeline to return with `?`. Collecting: a failure is recorded and
    /// comes back as `Ok(None)`, so checks that need its value are skipped.
    pub fn check<T>(
        &mut self,
        check: Check,
        result: Result<T, TokenError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<Option<T>, TokenError> {
        match result {
            Ok(value) => {
                if self.collect {
                    self.outcomes.push(Outcome {
                        check,
                        status: Status::Pass,
                        detail: detail(&value),
                    });
                }
                Ok(Some(value))
            }
            Err(error) if !self.collect => Err(error),
            Err(error) => {
                self.outcomes.push(Outcome {
                    check,
                    status: Status::Fail,
                    detail: error.to_string(),
                });
                self.first_failure.get_or_insert(error);
                Ok(None)
            }
        }
    }

    /// A check that does not apply (e.g. not configured for this issuer).
    pub fn skip(&mut self, check: Check, why: &str) {
        if self.collect {
            self.outcomes.push(Outcome {
                check,
                status: Status::Skipped,
                detail: why.to_owned(),
            });
        }
    }

    /// Adds context to the last recorded outcome (collecting only).
    pub fn annotate(&mut self, note: impl FnOnce() -> Option<String>) {
        if !self.collect {
            return;
        }
        if let (Some(last), Some(note)) = (self.outcomes.last_mut(), note()) {
            last.detail.push_str("; ");
            last.detail.push_str(&note);
        }
    }

    /// The decision: the first failure, or the identity when every check
    /// passed.
    pub fn verdict(&mut self, identity: Option<Identity>) -> Result<Identity, TokenError> {
        match (self.first_failure.clone(), identity) {
            (Some(error), _) => Err(error),
            (None, Some(identity)) => Ok(identity),
            // Only reachable if a check yielded no value without failing,
            // which the pipeline never does; refuse rather than accept.
            (None, None) => Err(TokenError::malformed("validation did not complete")),
        }
    }
}

/// `2024-05-01 12:00:00 UTC` for a NumericDate (the raw number when out of
/// range).
pub(crate) fn utc(ts: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// `delta` = timestamp - now: "in 10 min", "312 s ago", "now".
pub(crate) fn human_delta(delta: i64) -> String {
    let magnitude = delta.unsigned_abs();
    let amount = if magnitude < 600 {
        format!("{magnitude} s")
    } else if magnitude < 2 * 3600 {
        format!("{} min", magnitude / 60)
    } else if magnitude < 2 * 86_400 {
        format!("{} h {} min", magnitude / 3600, magnitude % 3600 / 60)
    } else {
        format!("{} days", magnitude / 86_400)
    };
    match delta {
        0 => "now".into(),
        d if d > 0 => format!("in {amount}"),
        _ => format!("{amount} ago"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_times() {
        assert_eq!(human_delta(-312), "312 s ago");
        assert_eq!(human_delta(600), "in 10 min");
        assert_eq!(human_delta(3 * 3600 + 60), "in 3 h 1 min");
        assert_eq!(human_delta(0), "now");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn stopping_recorder_returns_the_first_failure() {
        let mut r = Recorder::first_failure();
        assert_eq!(
            r.check(Check::Size, Ok(1), |_| unreachable!()).unwrap(),
            Some(1)
        );
        let e = r
            .check::<()>(Check::Segments, Err(TokenError::Encrypted), |()| {
                String::new()
            })
            .unwrap_err();
        assert_eq!(e.kind(), "encrypted");
        assert!(r.outcomes.is_empty());
    }

    #[test]
    fn collecting_recorder_keeps_going_and_reports_the_first_failure() {
        let mut r = Recorder::collecting();
        assert_eq!(
            r.check::<()>(Check::Size, Err(TokenError::Encrypted), |()| String::new())
                .unwrap(),
            None
        );
        r.check::<()>(Check::Signature, Err(TokenError::Signature), |()| {
            String::new()
        })
        .unwrap();
        r.skip(Check::Lifetime, "not configured");
        assert_eq!(r.outcomes.len(), 3);
        assert_eq!(r.verdict(None).unwrap_err().kind(), "encrypted");
    }
}
