//! Rendering a session's events without building an [`AuditEvent`] each
//! time: the fields that stay the same for a whole session (who, from
//! where, to what) are rendered to JSON once, and each event writes only
//! its own fields between them. The result is byte for byte what
//! [`event_body`] makes of the equivalent event; a test holds this.
//!
//! Why: statements are audited one by one, and cloning the session's eight
//! strings into an event and serializing them again for every statement was
//! most of the audit trail's cost on the relay's hot path.
//!
//! [`event_body`]: super::chain::event_body

use serde::Serialize;

use super::{AuditEvent, Decision, EventKind};

/// A session's constant fields, rendered once, each as `"key":value,`.
/// Between them go the per-event fields, in canonical (sorted) key order:
///
/// ```text
/// client_addr · decision duration_ms error event · groups identity issuer ·
/// policy_ids · protocol · reason · role · rows · session_id · statement statement_kind ·
/// subject · tables · target · time
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventTemplate {
    client_addr: Box<[u8]>,
    groups_identity_issuer: Box<[u8]>,
    protocol: Box<[u8]>,
    role: Box<[u8]>,
    session_id: Box<[u8]>,
    subject: Box<[u8]>,
    target: Box<[u8]>,
}

/// The fields of one event that are not the session's.
#[derive(Debug, Clone, Copy)]
pub struct EventDetails<'a> {
    pub event: EventKind,
    pub decision: Option<Decision>,
    pub duration_ms: Option<f64>,
    pub error: Option<&'a str>,
    pub policy_ids: &'a [String],
    pub reason: Option<&'a str>,
    pub rows: Option<u64>,
    pub statement: Option<&'a str>,
    pub statement_kind: Option<&'a str>,
    pub tables: &'a [String],
}

impl EventDetails<'_> {
    /// An event of `kind` with nothing else of its own.
    #[must_use]
    pub fn new(event: EventKind) -> Self {
        EventDetails {
            event,
            decision: None,
            duration_ms: None,
            error: None,
            policy_ids: &[],
            reason: None,
            rows: None,
            statement: None,
            statement_kind: None,
            tables: &[],
        }
    }
}

impl EventTemplate {
    /// Takes the session fields of `session` (client_addr, groups,
    /// identity, issuer, protocol, role, session_id, subject, target); the rest of it
    /// is ignored.
    #[must_use]
    pub fn new(session: &AuditEvent) -> Self {
        fn field<T: Serialize + ?Sized>(key: &str, value: Option<&T>) -> Box<[u8]> {
            let mut out = Vec::new();
            if let Some(v) = value {
                put(&mut out, key, v);
            }
            out.into_boxed_slice()
        }
        let mut middle = Vec::new();
        if !session.groups.is_empty() {
            put(&mut middle, "groups", &session.groups);
        }
        if let Some(v) = &session.identity {
            put(&mut middle, "identity", v);
        }
        if let Some(v) = &session.issuer {
            put(&mut middle, "issuer", v);
        }
        EventTemplate {
            client_addr: field("client_addr", session.client_addr.as_ref()),
            groups_identity_issuer: middle.into_boxed_slice(),
            protocol: field("protocol", session.protocol.as_ref()),
            role: field("role", session.role.as_ref()),
            session_id: field("session_id", session.session_id.as_ref()),
            subject: field("subject", session.subject.as_ref()),
            target: field("target", session.target.as_ref()),
        }
    }

    /// The canonical body of the event `details` at `time`.
    #[must_use]
    pub fn render(&self, details: &EventDetails<'_>, time: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(details, time, &mut out);
        out
    }

    /// Appends what [`render`](Self::render) returns to `out`.
    pub fn render_into(&self, details: &EventDetails<'_>, time: &str, out: &mut Vec<u8>) {
        let d = details;
        out.reserve(
            self.len() + d.statement.map_or(0, str::len) + d.error.map_or(0, str::len) + 192,
        );
        out.push(b'{');
        out.extend_from_slice(&self.client_addr);
        if let Some(v) = d.decision {
            put_name(out, "decision", v.as_str());
        }
        if let Some(v) = d.duration_ms {
            put(out, "duration_ms", &super::event::DurationMs(v));
        }
        if let Some(v) = d.error {
            put_str(out, "error", v);
        }
        put_name(out, "event", d.event.as_str());
        out.extend_from_slice(&self.groups_identity_issuer);
        if !d.policy_ids.is_empty() {
            put_strs(out, "policy_ids", d.policy_ids);
        }
        out.extend_from_slice(&self.protocol);
        if let Some(v) = d.reason {
            put_str(out, "reason", v);
        }
        out.extend_from_slice(&self.role);
        if let Some(v) = d.rows {
            put(out, "rows", &v);
        }
        out.extend_from_slice(&self.session_id);
        if let Some(v) = d.statement {
            put_str(out, "statement", v);
        }
        if let Some(v) = d.statement_kind {
            put_str(out, "statement_kind", v);
        }
        out.extend_from_slice(&self.subject);
        if !d.tables.is_empty() {
            put_strs(out, "tables", d.tables);
        }
        out.extend_from_slice(&self.target);
        if time.is_empty() {
            // As serde skips an empty time: drop the last comma.
            if out.last() == Some(&b',') {
                out.pop();
            }
        } else {
            put_str(out, "time", time);
            out.pop();
        }
        out.push(b'}');
    }

    fn len(&self) -> usize {
        self.client_addr.len()
            + self.groups_identity_issuer.len()
            + self.protocol.len()
            + self.role.len()
            + self.session_id.len()
            + self.subject.len()
            + self.target.len()
    }
}

/// Appends `"key":value,`. Values are strings, numbers, string lists and
/// unit enums, which serialize into memory without error.
fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T) {
    put_key(out, key);
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
    out.push(b',');
}

/// Appends `"key":"value",`.
fn put_str(out: &mut Vec<u8>, key: &str, value: &str) {
    put_key(out, key);
    string(out, value);
    out.push(b',');
}

/// Appends `"key":["value",…],`.
fn put_strs(out: &mut Vec<u8>, key: &str, values: &[String]) {
    put_key(out, key);
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, v);
    }
    out.extend_from_slice(b"],");
}

/// Appends `"key":"name",` for a name that needs no escaping.
fn put_name(out: &mut Vec<u8>, key: &str, name: &str) {
    put_key(out, key);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",");
}

fn put_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A JSON string as serde_json writes it. Most need no escaping, which one
/// vectorisable scan finds out; serde_json escapes the rest.
fn string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Whether JSON needs any of `bytes` escaped. Without a branch per byte,
/// so that it runs a vector of bytes at a time: every field of every
/// statement event passes through here.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.chunks(32).any(|chunk| {
        chunk.iter().fold(false, |hit, &b| {
            hit | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::event_body;

    fn session(full: bool) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Statement);
        if full {
            e.client_addr = Some("127.0.0.1:5123".into());
            e.groups = vec!["dba".into(), "quote\"d".into()];
            e.identity = Some("alice@example.com".into());
            e.issuer = Some("https://issuer.example".into());
            e.protocol = Some("mysql".into());
            e.role = Some("readonly".into());
            e.session_id = Some("s-1".into());
            e.subject = Some("sub\u{1}ject".into());
            e.target = Some("main".into());
        }
        e
    }

    #[test]
    fn escape_check_finds_every_byte_json_escapes_at_any_position() {
        for b in 0..=255u8 {
            let expected = b < 0x20 || b == b'"' || b == b'\\';
            for at in [0, 31, 32, 70] {
                let mut text = vec![b'a'; 71];
                text[at] = b;
                assert_eq!(needs_escape(&text), expected, "byte {b} at {at}");
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn names_are_what_serde_writes() {
        use EventKind::*;
        for kind in [
            AuthOk,
            AuthFailed,
            SessionStart,
            Statement,
            Denied,
            SessionEnd,
            Revoked,
        ] {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        for decision in [Decision::Allow, Decision::Deny] {
            assert_eq!(
                serde_json::to_string(&decision).unwrap(),
                format!("\"{}\"", decision.as_str())
            );
        }
    }

    /// Every combination of present and absent per-event fields renders as
    /// the equivalent event serializes.
    #[test]
    fn renders_exactly_the_canonical_body() {
        let tables = vec!["public.t".to_owned(), "s.\"u\"".to_owned()];
        let ids = vec!["policy0".to_owned()];
        for full in [false, true] {
            let base = session(full);
            let template = EventTemplate::new(&base);
            for mask in 0u32..(1 << 10) {
                let on = |bit: u32| mask & (1 << bit) != 0;
                let details = EventDetails {
                    event: if on(0) {
                        EventKind::Denied
                    } else {
                        EventKind::Statement
                    },
                    decision: on(1).then_some(Decision::Allow),
                    duration_ms: on(2).then_some(1.234_567),
                    error: on(3).then_some("ERROR 42P01 \"x\"\n"),
                    policy_ids: if on(4) { &ids } else { &[] },
                    reason: on(5).then_some("no permit"),
                    rows: on(6).then_some(7),
                    statement: on(7).then_some("select 'é' \\ \t"),
                    statement_kind: on(8).then_some("select"),
                    tables: if on(9) { &tables } else { &[] },
                };
                for time in ["", "2026-01-02T03:04:05.678Z"] {
                    let mut e = base.clone();
                    e.event = details.event;
                    e.decision = details.decision;
                    e.duration_ms = details.duration_ms;
                    e.error = details.error.map(Into::into);
                    e.policy_ids = details.policy_ids.to_vec();
                    e.reason = details.reason.map(Into::into);
                    e.rows = details.rows;
                    e.statement = details.statement.map(Into::into);
                    e.statement_kind = details.statement_kind.map(Into::into);
                    e.tables = details.tables.to_vec();
                    e.time = time.into();
                    assert_eq!(
                        String::from_utf8(template.render(&details, time)).unwrap(),
                        String::from_utf8(event_body(&e).unwrap()).unwrap(),
                        "mask {mask:#b}, full {full}, time {time:?}"
                    );
                }
            }
        }
    }
}
