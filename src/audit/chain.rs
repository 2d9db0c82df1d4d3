//! The hash chain: canonical JSON, the hash of one entry (plain SHA-256 or
//! HMAC-SHA256 under the audit key), the header and end records, sealing an
//! event into a line and checking one line. No I/O; the writer and the
//! verifier both build on these functions so there is one definition of the
//! format.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{AuditEvent, ChainBreak};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// `prev_hash` of the first line: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The shortest audit key accepted: the HMAC's own output size.
pub const MIN_KEY_LEN: usize = 32;

/// `event` of the first line of a file, which names the chain kind.
pub const START_EVENT: &str = "audit_start";
/// `event` of the last line written on a clean shutdown.
pub const END_EVENT: &str = "audit_end";

/// The secret that keys the chain: HMAC-SHA256 keyed once, cloned per
/// line (a clone is a copy of two hash states, no key schedule).
#[derive(Clone)]
pub struct AuditKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// An audit key shorter than [`MIN_KEY_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit key is {len} bytes; at least {MIN_KEY_LEN} are needed")]
pub struct KeyTooShort {
    pub len: usize,
}

impl AuditKey {
    /// The key is the secret's bytes as they are (UTF-8 text, e.g. from
    /// `openssl rand -base64 48`).
    pub fn new(secret: &Secret) -> Result<AuditKey, KeyTooShort> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyTooShort { len: bytes.len() });
        }
        let mac = HmacSha256::new_from_slice(bytes).expect("HMAC takes keys of any length");
        Ok(AuditKey { mac })
    }
}

/// Which hash links the lines of a file, as named on its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// SHA-256: shows accidental damage, not tampering (anyone can rehash).
    Sha256,
    /// HMAC-SHA256 under the audit key: only the key holder can rehash.
    HmacSha256,
}

impl ChainKind {
    /// The name written in the header line and the seal.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ChainKind::Sha256 => "sha256",
            ChainKind::HmacSha256 => "hmac-sha256",
        }
    }

    fn from_name(name: &str) -> Option<ChainKind> {
        [ChainKind::Sha256, ChainKind::HmacSha256]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ChainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the lines of one file are hashed: with or without the key.
#[derive(Debug, Clone)]
pub enum Chain {
    Unkeyed,
    Keyed(AuditKey),
}

impl Chain {
    #[must_use]
    pub fn new(key: Option<&AuditKey>) -> Chain {
        key.map_or(Chain::Unkeyed, |k| Chain::Keyed(k.clone()))
    }

    #[must_use]
    pub fn kind(&self) -> ChainKind {
        match self {
            Chain::Unkeyed => ChainKind::Sha256,
            Chain::Keyed(_) => ChainKind::HmacSha256,
        }
    }

    /// SHA-256 or HMAC-SHA256 of `parts` concatenated, lowercase hex.
    pub(super) fn digest_hex(&self, parts: &[&[u8]]) -> [u8; 64] {
        let digest: [u8; 32] = match self {
            Chain::Unkeyed => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
            Chain::Keyed(key) => {
                let mut m = key.mac.clone();
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().into()
            }
        };
        let mut hex = [0; 64];
        hex::encode_to_slice(digest, &mut hex).expect("32 bytes fill 64 hex digits");
        hex
    }

    /// `hex(H(prev_hash + "\n" + body))`, lowercase, H per [`Chain::kind`].
    #[must_use]
    pub fn entry_hash(&self, prev_hash: &str, body: &[u8]) -> String {
        let hex = self.digest_hex(&[prev_hash.as_bytes(), b"\n", body]);
        std::str::from_utf8(&hex).expect("hex digits").to_owned()
    }

    /// Appends the full line for `body` (canonical, non-empty object)
    /// chained after `head`: the body with `,"prev_hash":"…","hash":"…"`
    /// spliced in before its closing brace, plus a newline. `head` becomes
    /// the new hash.
    pub fn append_line(&self, head: &mut String, body: &[u8], out: &mut Vec<u8>) {
        let hash = self.digest_hex(&[head.as_bytes(), b"\n", body]);
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

    /// Checks one line (without its newline) in isolation: it is JSON,
    /// carries well-formed `prev_hash`/`hash`, is byte for byte what the
    /// writer would have produced, and its `hash` matches its content under
    /// this chain's hash. Linking to the previous line is the caller's job.
    pub fn check_line(&self, line: &[u8]) -> Result<CheckedLine, ChainBreak> {
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
        if self.entry_hash(&prev_hash, &body) != hash {
            return Err(match self {
                Chain::Unkeyed => ChainBreak::HashMismatch,
                Chain::Keyed(_) => ChainBreak::MacMismatch,
            });
        }
        // The hash matched the parsed content; also insist on the exact
        // bytes, so whitespace, duplicate keys or reordering that a
        // different JSON reader might interpret differently are caught as
        // edits too.
        let mut expected = Vec::with_capacity(line.len() + 1);
        self.append_line(&mut prev_hash.clone(), &body, &mut expected);
        if expected.strip_suffix(b"\n") != Some(line) {
            return Err(ChainBreak::NotCanonical);
        }
        Ok(CheckedLine { prev_hash, hash })
    }
}

/// The body of a file's first line, which names the chain kind:
/// `{"chain":"hmac-sha256","event":"audit_start","time":"…"}`.
#[must_use]
pub fn start_body(kind: ChainKind, time: &str) -> Vec<u8> {
    format!("{{\"chain\":\"{kind}\",\"event\":\"{START_EVENT}\",\"time\":\"{time}\"}}").into_bytes()
}

/// The body of the line a clean shutdown ends with.
#[must_use]
pub fn end_body(time: &str) -> Vec<u8> {
    format!("{{\"event\":\"{END_EVENT}\",\"time\":\"{time}\"}}").into_bytes()
}

/// What a file's first line says about its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLine {
    /// An `audit_start` header naming the kind.
    Header(ChainKind),
    /// No header: a file from before headers existed, unkeyed SHA-256 and
    /// without a seal.
    Legacy,
}

/// Reads the chain kind off a file's first line (without its newline).
/// Only the header's claim: the caller still checks the line's hash.
pub fn first_line(line: &[u8]) -> Result<FirstLine, ChainBreak> {
    let value: Value = serde_json::from_slice(line).map_err(|_| ChainBreak::NotJson)?;
    if value.get("event").and_then(Value::as_str) != Some(START_EVENT) {
        return Ok(FirstLine::Legacy);
    }
    value
        .get("chain")
        .and_then(Value::as_str)
        .and_then(ChainKind::from_name)
        .map(FirstLine::Header)
        .ok_or(ChainBreak::UnknownChain)
}

/// True for a line whose event is `audit_end` (cheap: the writer renders
/// it, so the members are where `end_body` puts them).
#[must_use]
pub fn is_end_line(line: &[u8]) -> bool {
    line.starts_with(format!("{{\"event\":\"{END_EVENT}\",").as_bytes())
}

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

/// One line that checked out on its own: its recorded links.
#[derive(Debug)]
pub struct CheckedLine {
    pub prev_hash: String,
    pub hash: String,
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
        Chain::Unkeyed.append_line(&mut head, &body, &mut line);
        let checked = Chain::Unkeyed
            .check_line(line.strip_suffix(b"\n").expect("newline"))
            .expect("valid");
        assert_eq!(checked.prev_hash, GENESIS_HASH);
        assert_eq!(checked.hash, head);
    }

    #[test]
    fn hash_is_sha256_of_prev_newline_body() {
        // Pins the format for outside verifiers: sha256("0…0\n{}").
        let mut h = Sha256::new();
        h.update(format!("{GENESIS_HASH}\n{{}}"));
        assert_eq!(
            Chain::Unkeyed.entry_hash(GENESIS_HASH, b"{}"),
            hex::encode(h.finalize())
        );
    }

    #[test]
    fn whitespace_inserted_into_a_line_is_reported_as_not_canonical() {
        let body = event_body(&AuditEvent::new(EventKind::AuthOk)).expect("serialize");
        let mut line = Vec::new();
        Chain::Unkeyed.append_line(&mut GENESIS_HASH.to_owned(), &body, &mut line);
        let text = String::from_utf8(line)
            .expect("utf8")
            .replacen(':', ": ", 1);
        assert_eq!(
            Chain::Unkeyed.check_line(text.trim_end().as_bytes()).err(),
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
            Chain::Unkeyed.append_line(&mut GENESIS_HASH.to_owned(), &body, &mut line);
            assert!(
                Chain::Unkeyed
                    .check_line(line.strip_suffix(b"\n").expect("newline"))
                    .is_ok(),
                "duration {ms} did not round-trip"
            );
        }
    }

    fn keyed(secret: &str) -> Chain {
        Chain::Keyed(AuditKey::new(&Secret::new(secret)).expect("key"))
    }

    fn line_of(chain: &Chain, body: &[u8]) -> Vec<u8> {
        let mut line = Vec::new();
        chain.append_line(&mut GENESIS_HASH.to_owned(), body, &mut line);
        line.pop();
        line
    }

    #[test]
    fn keyed_hash_is_hmac_sha256_of_prev_newline_body() {
        let key = "k".repeat(32);
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("key");
        mac.update(format!("{GENESIS_HASH}\n{{}}").as_bytes());
        assert_eq!(
            keyed(&key).entry_hash(GENESIS_HASH, b"{}"),
            hex::encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn a_keyed_line_fails_under_another_key_and_unkeyed() {
        let body = event_body(&AuditEvent::new(EventKind::AuthOk)).expect("serialize");
        let line = line_of(&keyed(&"k".repeat(32)), &body);
        assert!(keyed(&"k".repeat(32)).check_line(&line).is_ok());
        assert_eq!(
            keyed(&"m".repeat(32)).check_line(&line).err(),
            Some(ChainBreak::MacMismatch)
        );
        assert_eq!(
            Chain::Unkeyed.check_line(&line).err(),
            Some(ChainBreak::HashMismatch)
        );
    }

    #[test]
    fn an_unkeyed_line_fails_under_a_key() {
        let body = event_body(&AuditEvent::new(EventKind::AuthOk)).expect("serialize");
        let line = line_of(&Chain::Unkeyed, &body);
        assert_eq!(
            keyed(&"k".repeat(32)).check_line(&line).err(),
            Some(ChainBreak::MacMismatch)
        );
    }

    #[test]
    fn keys_shorter_than_32_bytes_are_refused() {
        assert_eq!(
            AuditKey::new(&Secret::new("k".repeat(31))).err(),
            Some(KeyTooShort { len: 31 })
        );
        assert!(AuditKey::new(&Secret::new("k".repeat(32))).is_ok());
        let debug = format!("{:?}", AuditKey::new(&Secret::new("s".repeat(40))));
        assert!(!debug.contains("ssss"), "{debug}");
    }

    #[test]
    fn the_header_names_the_chain_kind_and_is_canonical() {
        for kind in [ChainKind::Sha256, ChainKind::HmacSha256] {
            let body = start_body(kind, "2026-01-02T03:04:05.678Z");
            let value: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(canonical_json(&value), body);
            let line = line_of(&Chain::Unkeyed, &body);
            assert_eq!(first_line(&line), Ok(FirstLine::Header(kind)));
        }
        let statement = event_body(&AuditEvent::new(EventKind::Statement)).expect("serialize");
        assert_eq!(
            first_line(&line_of(&Chain::Unkeyed, &statement)),
            Ok(FirstLine::Legacy)
        );
        let unknown = br#"{"chain":"md5","event":"audit_start"}"#;
        assert_eq!(first_line(unknown), Err(ChainBreak::UnknownChain));
    }

    #[test]
    fn the_end_line_is_canonical_and_recognised() {
        let body = end_body("2026-01-02T03:04:05.678Z");
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(canonical_json(&value), body);
        assert!(is_end_line(&line_of(&Chain::Unkeyed, &body)));
        let statement = event_body(&AuditEvent::new(EventKind::Statement)).expect("serialize");
        assert!(!is_end_line(&line_of(&Chain::Unkeyed, &statement)));
    }
}
