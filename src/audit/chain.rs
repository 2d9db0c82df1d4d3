//! The hash chain: canonical JSON, the hash of one entry, sealing an event
//! into a line and checking one line. No I/O; the writer and the verifier
//! both build on these functions so there is one definition of the format.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{AuditEvent, ChainBreak};

/// `prev_hash` of the first line: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical JSON: compact, object keys sorted by their UTF-8 bytes at every
/// level, strings and numbers exactly as serde_json writes them.
///
/// Why by hand: `serde_json/preserve_order` is switched on in our dependency
/// graph (cedar-policy pulls it in), so `serde_json::Value` keeps insertion
/// order and cannot be trusted to sort.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serializing a scalar Value into a Vec cannot fail: no I/O, no maps
    // with non-string keys. Falling back to `null` keeps this total anyway.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The canonical body of an event, i.e. what gets hashed. Direct: the
/// event's fields are declared in sorted order and hold only strings,
/// numbers and arrays of strings, so this is `canonical_json` of its value.
pub fn event_body(event: &AuditEvent) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, event)?;
    Ok(out)
}

/// `hex(SHA-256(prev_hash + "\n" + body))`, lowercase.
pub fn entry_hash(prev_hash: &str, body: &[u8]) -> String {
    let hex = hash_hex(prev_hash, body);
    std::str::from_utf8(&hex).expect("hex digits").to_owned()
}

fn hash_hex(prev_hash: &str, body: &[u8]) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body);
    let mut hex = [0; 64];
    hex::encode_to_slice(h.finalize(), &mut hex).expect("32 bytes fill 64 hex digits");
    hex
}

/// Appends the full line for `body` (canonical, non-empty object) chained
/// after `head`: the body with `,"prev_hash":"…","hash":"…"` spliced in
/// before its closing brace, plus a newline. `head` becomes the new hash.
pub fn seal_into(head: &mut String, body: &[u8], out: &mut Vec<u8>) {
    let hash = hash_hex(head, body);
    // `body` always ends in '}' (it is a serialized struct); the hash
    // members go last so an outside verifier can also strip them as a
    // fixed-length suffix.
    let open = body.strip_suffix(b"}").unwrap_or(body);
    out.extend_from_slice(open);
    out.extend_from_slice(b",\"prev_hash\":\"");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"\",\"hash\":\"");
    out.extend_from_slice(&hash);
    out.extend_from_slice(b"\"}\n");
    head.clear();
    head.push_str(std::str::from_utf8(&hash).expect("hex digits"));
}

/// One line that checked out on its own: its recorded links.
#[derive(Debug)]
pub struct CheckedLine {
    pub prev_hash: String,
    pub hash: String,
}

/// Checks one line (without its newline) in isolation: it is JSON, carries
/// well-formed `prev_hash`/`hash`, is byte for byte what the writer would
/// have produced, and its `hash` matches its content. Linking to the
/// previous line is the caller's job.
pub fn check_line(line: &[u8]) -> Result<CheckedLine, ChainBreak> {
    let value: Value = serde_json::from_slice(line).map_err(|_| ChainBreak::NotJson)?;
    let Value::Object(mut map) = value else {
        return Err(ChainBreak::NotJson);
    };
    let prev_hash = take_hash(&mut map, "prev_hash")?;
    let hash = take_hash(&mut map, "hash")?;
    if map.is_empty() {
        return Err(ChainBreak::NotCanonical);
    }
    let body = canonical_json(&Value::Object(map));
    if entry_hash(&prev_hash, &body) != hash {
        return Err(ChainBreak::HashMismatch);
    }
    // The hash matched the parsed content; also insist on the exact bytes,
    // so whitespace, duplicate keys or reordering that a different JSON
    // reader might interpret differently are caught as edits too.
    let mut expected = Vec::with_capacity(line.len() + 1);
    seal_into(&mut prev_hash.clone(), &body, &mut expected);
    if expected.strip_suffix(b"\n") != Some(line) {
        return Err(ChainBreak::NotCanonical);
    }
    Ok(CheckedLine { prev_hash, hash })
}

fn take_hash(map: &mut serde_json::Map<String, Value>, key: &str) -> Result<String, ChainBreak> {
    match map.remove(key) {
        Some(Value::String(s)) if is_hash(&s) => Ok(s),
        _ => Err(ChainBreak::MissingHash),
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_regardless_of_insertion_order() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"z":[1,{"y":2,"x":3}],"c":"é\n"}}"#)
            .expect("test json");
        assert_eq!(
            String::from_utf8(canonical_json(&v)).expect("utf8"),
            r#"{"a":{"c":"é\n","z":[1,{"x":3,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn an_event_serialized_directly_is_already_canonical() {
        let ev = AuditEvent {
            time: "2026-11-25T04:00:00.000Z".into(),
            session_id: Some("s".into()),
            issuer: Some("https://issuer.example".into()),
            subject: Some("alice".into()),
            identity: Some("alice@example.com".into()),
            groups: vec!["b".into(), "a\"q".into()],
            client_addr: Some("127.0.0.1:5".into()),
            target: Some("app".into()),
            role: Some("reader".into()),
            statement: Some("select 'é'\n".into()),
            statement_kind: Some("select".into()),
            tables: vec!["public.t".into()],
            decision: Some(crate::audit::Decision::Allow),
            policy_ids: vec!["p1".into()],
            duration_ms: Some(0.1 + 0.2),
            rows: Some(3),
            error: Some("e".into()),
            reason: Some("r".into()),
            ..AuditEvent::new(EventKind::Statement)
        };
        let direct = event_body(&ev).expect("serialize");
        let via_value = canonical_json(&serde_json::to_value(&ev).expect("value"));
        assert_eq!(String::from_utf8(direct), String::from_utf8(via_value));
    }

    #[test]
    fn sealed_line_checks_and_links_to_its_prev_hash() {
        let ev = AuditEvent {
            subject: Some("alice".into()),
            duration_ms: Some(0.1 + 0.2),
            ..AuditEvent::new(EventKind::Statement)
        };
        let body = event_body(&ev).expect("serialize");
        let mut line = Vec::new();
        let mut head = GENESIS_HASH.to_owned();
        seal_into(&mut head, &body, &mut line);
        let checked = check_line(line.strip_suffix(b"\n").expect("newline")).expect("valid");
        assert_eq!(checked.prev_hash, GENESIS_HASH);
        assert_eq!(checked.hash, head);
    }

    #[test]
    fn hash_is_sha256_of_prev_newline_body() {
        // Pins the format for outside verifiers: sha256("0…0\n{}").
        let mut h = Sha256::new();
        h.update(format!("{GENESIS_HASH}\n{{}}"));
        assert_eq!(entry_hash(GENESIS_HASH, b"{}"), hex::encode(h.finalize()));
    }

    #[test]
    fn whitespace_inserted_into_a_line_is_reported_as_not_canonical() {
        let body = event_body(&AuditEvent::new(EventKind::AuthOk)).expect("serialize");
        let mut line = Vec::new();
        seal_into(&mut GENESIS_HASH.to_owned(), &body, &mut line);
        let text = String::from_utf8(line)
            .expect("utf8")
            .replacen(':', ": ", 1);
        assert_eq!(
            check_line(text.trim_end().as_bytes()).err(),
            Some(ChainBreak::NotCanonical)
        );
    }

    #[test]
    fn durations_round_trip_through_the_verifier_parser() {
        for i in 0..20_000u32 {
            let ms = f64::from(i) * 0.731_f64 + f64::from(i).sqrt();
            let ev = AuditEvent {
                duration_ms: Some(ms),
                ..AuditEvent::new(EventKind::Statement)
            };
            let body = event_body(&ev).expect("serialize");
            let mut line = Vec::new();
            seal_into(&mut GENESIS_HASH.to_owned(), &body, &mut line);
            assert!(
                check_line(line.strip_suffix(b"\n").expect("newline")).is_ok(),
                "duration {ms} did not round-trip"
            );
        }
    }
}
