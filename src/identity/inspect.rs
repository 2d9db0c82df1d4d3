//! `idgate token inspect`: why would the gateway accept or refuse this
//! token? Runs the validator's own pipeline in collecting mode (see
//! `checks.rs`), so its verdict is by construction the one `validate` gives,
//! and renders every check with expected vs actual. Prints the decoded
//! header and claims, never the signature or the token itself.

use std::fmt::Write as _;
use std::io::Read as _;

use serde_json::{Map, Value};

use super::checks::{Check, Outcome, Recorder, Status, human_delta, utc};
use super::error::{TokenError, shown};
use super::validator::{TokenValidator, unix_now};
use super::{Identity, MAX_TOKEN_BYTES};
use crate::config::IssuerConfig;

/// The result of inspecting one token.
#[derive(Debug)]
pub struct Inspection {
    pub header: Option<Map<String, Value>>,
    pub claims: Option<Map<String, Value>>,
    /// Checks that ran, in pipeline order.
    pub outcomes: Vec<Outcome>,
    /// `None` when inspected without configuration: acceptance is unknown.
    pub verdict: Option<Result<Identity, TokenError>>,
    /// The clock the checks used.
    pub now: i64,
}

impl TokenValidator {
    /// Runs every check the gateway would, without stopping at the first
    /// failure, and without the validated-token cache.
    pub async fn inspect(&self, token: &str) -> Inspection {
        let now = unix_now();
        let mut rec = Recorder::collecting();
        let verdict = match self.run_checks(token, now, &mut rec).await {
            Ok(identity) => rec.verdict(identity),
            Err(e) => Err(e), // unreachable when collecting; kept honest
        };
        Inspection {
            header: rec.header,
            claims: rec.claims,
            outcomes: rec.outcomes,
            verdict: Some(verdict),
            now,
        }
    }
}

impl Inspection {
    /// Decodes and runs the checks that need no configuration (structure
    /// and header); says nothing about acceptance.
    pub async fn decode_only(token: &str) -> Inspection {
        let mut inspection = TokenValidator::new(Vec::new()).inspect(token).await;
        inspection.outcomes.retain(|o| !o.check.needs_config());
        inspection.verdict = None;
        inspection
    }

    /// True only when the gateway would accept the token.
    pub fn accepted(&self) -> bool {
        matches!(self.verdict, Some(Ok(_)))
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.header {
            Some(h) => {
                let _ = writeln!(out, "header\n  {}", Value::Object(h.clone()));
            }
            None => out.push_str("header\n  (could not be decoded)\n"),
        }
        match &self.claims {
            Some(c) => {
                out.push_str("claims\n");
                let pretty =
                    serde_json::to_string_pretty(&Value::Object(c.clone())).unwrap_or_default();
                for line in pretty.lines() {
                    let _ = writeln!(out, "  {line}");
                }
                for name in ["iat", "nbf", "exp"] {
                    if let Some(ts) = c.get(name).and_then(Value::as_i64) {
                        let _ = writeln!(
                            out,
                            "  {name} = {} ({})",
                            utc(ts),
                            human_delta(ts - self.now)
                        );
                    }
                }
            }
            None => out.push_str("claims\n  (could not be decoded)\n"),
        }
        out.push_str("checks\n");
        let judged = Check::ALL
            .iter()
            .filter(|c| self.verdict.is_some() || !c.needs_config());
        for check in judged {
            let rows: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.check == *check).collect();
            if rows.is_empty() {
                let _ = writeln!(
                    out,
                    "  {:<8} {:<16} not checked: an earlier check failed",
                    "skipped",
                    check.label()
                );
            }
            for o in rows {
                let status = match o.status {
                    Status::Pass => "pass",
                    Status::Fail => "FAIL",
                    Status::Skipped => "skipped",
                };
                let _ = writeln!(out, "  {status:<8} {:<16} {}", check.label(), o.detail);
            }
        }
        match &self.verdict {
            Some(Ok(id)) => {
                let _ = writeln!(
                    out,
                    "result: ACCEPTED as {} (identity `{}`, groups [{}])",
                    shown(&id.principal_id()),
                    shown(&id.identity),
                    id.groups.join(", ")
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "result: REFUSED ({}): {e}", e.kind());
            }
            None => out.push_str(
                "result: cannot judge acceptance without --config (only structure and header were checked)\n",
            ),
        }
        out
    }
}

/// For an unknown `iss`: the configured issuer it most resembles, by edit
/// distance, so a trailing slash or http/https mix-up is obvious.
pub(crate) fn closest_issuer<'a>(
    iss: &str,
    configured: impl Iterator<Item = &'a IssuerConfig>,
) -> Option<String> {
    // The token is capped at 16 KiB, but keep the quadratic work small.
    let iss: String = iss.chars().take(512).collect();
    let (distance, config) = configured
        .map(|c| (edit_distance(&iss, &c.issuer), c))
        .min_by_key(|(d, _)| *d)?;
    Some(format!(
        "closest configured issuer: {} (`{}`, edit distance {distance})",
        config.name, config.issuer
    ))
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Reads the token argument: `-` or nothing means stdin. Surrounding
/// whitespace (a trailing newline from `echo`) is trimmed.
pub fn read_token(arg: Option<&str>, stdin: impl std::io::Read) -> Result<String, String> {
    let raw = match arg {
        Some("-") | None => {
            let mut buf = String::new();
            stdin
                .take(u64::try_from(MAX_TOKEN_BYTES * 4).unwrap_or(u64::MAX))
                .read_to_string(&mut buf)
                .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
            buf
        }
        Some(t) => t.to_owned(),
    };
    let token = raw.trim();
    if token.is_empty() {
        return Err("no token given".into());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("https://x/", "https://x"), 1);
    }

    #[test]
    fn closest_issuer_is_named() {
        let a = IssuerConfig::new("corp", "https://login.example.com", &["idgate"]);
        let b = IssuerConfig::new("gh", "https://token.actions.githubusercontent.com", &["x"]);
        let note = closest_issuer("https://login.example.com/", [&a, &b].into_iter()).unwrap();
        assert!(note.contains("corp"), "{note}");
        assert!(note.contains("edit distance 1"), "{note}");
    }

    #[test]
    fn token_comes_from_the_argument_or_stdin() {
        assert_eq!(read_token(Some("abc"), &b""[..]).unwrap(), "abc");
        assert_eq!(read_token(Some("-"), &b"xyz\n"[..]).unwrap(), "xyz");
        assert_eq!(read_token(None, &b" t "[..]).unwrap(), "t");
        assert!(read_token(Some("-"), &b"\n"[..]).is_err());
    }
}
