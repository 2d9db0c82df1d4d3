//! Load-time errors of the policy engine, each pointing at `file:line:col`
//! with a fix hint, in the same shape as configuration errors.
//!
//! Cedar reports positions as byte offsets (miette labels); we read them
//! through `cedar_policy::ffi::DetailedError`, which flattens any Cedar
//! diagnostic into message, help and byte ranges without us depending on
//! miette directly.

use std::fmt;

use cedar_policy::ffi::DetailedError;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{path}: cannot read policy file: {source}\n  hint: check `[policy] file` in the configuration"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The policy file does not parse or does not validate against the
    /// schema. Every problem found is listed, not just the first.
    #[error("{}", Problems(.0))]
    Invalid(Vec<PolicyProblem>),
    /// The schema shipped in the binary is broken: a build defect, never a
    /// user error, but reported rather than panicking.
    #[error("built-in Cedar schema is invalid: {0}")]
    Schema(String),
}

impl PolicyError {
    /// The individual problems, empty unless the file was rejected.
    pub fn problems(&self) -> &[PolicyProblem] {
        match self {
            PolicyError::Invalid(problems) => problems,
            PolicyError::Read { .. } | PolicyError::Schema(_) => &[],
        }
    }
}

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// `file:line:col` (1-based, column counted in characters), or `file`
    /// alone when Cedar gave no position.
    pub location: String,
    /// The policy the problem is in, when known (its `@id` or `policyN`).
    pub policy_id: Option<String>,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        // Cedar's validation messages already start "for policy `id`, ".
        // (No let-chains: the crate's MSRV is 1.85.)
        if let Some(id) = &self.policy_id {
            if !self.message.contains(&format!("policy `{id}`")) {
                write!(f, "policy `{id}`: ")?;
            }
        }
        write!(f, "{}\n  hint: {}", self.message, self.hint)
    }
}

struct Problems<'a>(&'a [PolicyProblem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// `origin:line:col` for a byte offset into `source`; offsets past the end
/// (Cedar points "unexpected end of input" there) land after the last char.
pub(crate) fn location(origin: &str, source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    // Cedar offsets are byte offsets on char boundaries; step back if not,
    // so a bad offset can never make slicing panic.
    let offset = (0..=offset)
        .rev()
        .find(|&o| source.is_char_boundary(o))
        .unwrap_or(0);
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    format!("{origin}:{line}:{col}")
}

/// Turn one Cedar diagnostic into a problem at its first labelled span.
pub(crate) fn problem_from_detailed(
    origin: &str,
    source: &str,
    policy_id: Option<String>,
    detail: &DetailedError,
    fallback_hint: &str,
) -> PolicyProblem {
    let location = detail
        .source_locations
        .iter()
        .map(|label| label.loc.start)
        .min()
        .map_or_else(
            || origin.to_string(),
            |start| location(origin, source, start),
        );
    let hint = detail
        .help
        .clone()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| fallback_hint.to_string());
    PolicyProblem {
        location,
        policy_id,
        message: detail.message.clone(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn location_counts_lines_and_columns_from_one() {
        let src = "ab\ncd\nef";
        assert_eq!(location("p.cedar", src, 0), "p.cedar:1:1");
        assert_eq!(location("p.cedar", src, 4), "p.cedar:2:2");
        assert_eq!(location("p.cedar", src, 6), "p.cedar:3:1");
    }

    #[test]
    fn location_counts_columns_in_characters_and_clamps_past_end() {
        let src = "é x";
        // 'x' is at byte 3 but character column 3.
        assert_eq!(location("f", src, 3), "f:1:3");
        assert_eq!(location("f", src, 1), "f:1:1");
        assert_eq!(location("f", src, 99), "f:1:4");
    }
}
