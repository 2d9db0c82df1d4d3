//! The audit event: what happened, to whom, and what the gateway decided.
//! Plain data; sealing into the hash chain happens in `chain.rs`.

use serde::{Deserialize, Serialize, Serializer};

/// What kind of thing an [`AuditEvent`] records (SPEC §9).
///
/// Deliberately has no `Default`: an event whose kind nobody chose is a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AuthOk,
    AuthFailed,
    SessionStart,
    Statement,
    Denied,
    SessionEnd,
    Revoked,
    /// A client offered a newer token to extend its live session.
    SessionRefresh,
}

impl EventKind {
    /// The name serde writes for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AuthOk => "auth_ok",
            EventKind::AuthFailed => "auth_failed",
            EventKind::SessionStart => "session_start",
            EventKind::Statement => "statement",
            EventKind::Denied => "denied",
            EventKind::SessionEnd => "session_end",
            EventKind::Revoked => "revoked",
            EventKind::SessionRefresh => "session_refresh",
        }
    }
}

/// The outcome of a policy decision as written to the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    /// The name serde writes for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One line of the audit trail, before it is sealed into the hash chain.
///
/// There is no field for tokens or passwords, and there must never be one.
/// `statement` carries the client's SQL as sent: callers must not put
/// secrets there and should pass it through [`redact_statement`] first so
/// that `CREATE/ALTER ROLE … PASSWORD '…'` literals are masked.
///
/// Empty optional fields are left out of the JSON line entirely.
///
/// Fields are declared in byte order of their names, so serializing the
/// struct directly gives the canonical JSON the chain hashes (sorted keys)
/// without building a `Value` first; `chain` tests hold this.
///
/// [`redact_statement`]: super::redact_statement
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Written with at most three decimals (microsecond resolution); see
    /// [`serialize_duration_ms`] for why.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_duration_ms"
    )]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub event: EventKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The human-facing identity (`identity_claim`, e.g. an email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    /// The front end's wire protocol (`postgres`, `mysql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Client SQL text. Never put secrets here; see the type-level docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// RFC 3339 UTC with milliseconds; filled in by [`AuditLog::record`]
    /// when empty.
    ///
    /// [`AuditLog::record`]: super::AuditLog::record
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
}

impl AuditEvent {
    /// An event of `kind` with every other field empty. Fill the rest with
    /// struct update syntax: `AuditEvent { subject: …, ..AuditEvent::new(kind) }`.
    #[must_use]
    pub fn new(event: EventKind) -> Self {
        AuditEvent {
            time: String::new(),
            event,
            session_id: None,
            issuer: None,
            subject: None,
            identity: None,
            groups: Vec::new(),
            client_addr: None,
            target: None,
            role: None,
            statement: None,
            statement_kind: None,
            tables: Vec::new(),
            decision: None,
            policy_ids: Vec::new(),
            protocol: None,
            duration_ms: None,
            rows: None,
            error: None,
            reason: None,
        }
    }
}

/// Rounds to three decimals before writing.
///
/// Why: the verifier re-parses each line and re-serializes it to recompute
/// the hash. serde_json's default float parser (no `float_roundtrip`
/// feature) is only exact on its fast path (at most 2^53 significand, power
/// of ten up to 22), so an arbitrary f64 such as `0.1 + 0.2` could come back
/// one ulp off and fail verification. A value with at most three decimals
/// below ~9e12 ms always takes that exact path.
fn serialize_duration_ms<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(ms) => DurationMs(*ms).serialize(s),
        None => s.serialize_none(),
    }
}

/// A `duration_ms` value as written to the trail.
pub(super) struct DurationMs(pub f64);

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64((self.0 * 1000.0).round() / 1000.0)
        } else {
            // NaN/inf are not JSON; serde_json would write null anyway.
            s.serialize_none()
        }
    }
}
