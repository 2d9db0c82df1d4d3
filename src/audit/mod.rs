//! The append-only, hash-chained audit trail (SPEC §9).
//!
//! Owns the event type (`event.rs`), the chain format (`chain.rs`), the
//! seal that shows lines cut off the end (`seal.rs`), the file writer with
//! group commit (`writer.rs`), the offline verifier (`verify.rs`) and
//! password masking for statement text (`redact.rs`).
//!
//! # Life of an event
//!
//! [`AuditLog::record`] stamps the time and serializes the event to canonical
//! JSON on the caller's task, straight into a bounded pending buffer (waiting
//! for room rather than dropping). One writer thread takes everything
//! pending at most every 20 ms (at once for a durable event), chains it,
//! appends all lines with one `write` and `fdatasync`s (group commit), then
//! replaces the seal.
//! [`AuditLog::record_durable`] additionally waits until its batch is on
//! disk. A failed write is retried with backoff, never dropped.
//! [`AuditWriter::shutdown`] drains what is pending and syncs.
//!
//! # File format (for outside verifiers)
//!
//! The file is UTF-8, one entry per line, every line ending in `\n`
//! (a last line without `\n` is a write torn by a crash). Each line is a JSON
//! object whose last two members are `prev_hash` and `hash`, both 64
//! lowercase hex digits:
//!
//! ```text
//! {"event":"auth_ok","subject":"alice","time":"2025-01-02T03:04:05.678Z","prev_hash":"<P>","hash":"<H>"}
//! ```
//!
//! * `BODY` is the line's object **without** `prev_hash` and `hash`, in
//!   canonical JSON: no whitespace; object members sorted by key, comparing
//!   the keys' UTF-8 bytes, at every nesting level; strings escaped as
//!   serde_json does (`"` → `\"`, `\` → `\\`, U+0008/0C/0A/0D/09 → `\b \f \n
//!   \r \t`, other characters below U+0020 → `\u00xx` with lowercase hex,
//!   everything else — including `/` and non-ASCII — written as is);
//!   integers in plain decimal; `duration_ms` as the shortest decimal that
//!   round-trips, with at most three decimals (e.g. `12.5`, `3.0`).
//! * `H = lowercase_hex(HMAC-SHA256(KEY, P || "\n" || BODY))` in a keyed
//!   chain, `lowercase_hex(SHA-256(P || "\n" || BODY))` in an unkeyed one,
//!   where `P` is the line's `prev_hash` as 64 ASCII characters and `KEY`
//!   the bytes of the `[audit]` key.
//! * `P` of line 1 is 64 `0`s; `P` of every later line equals `H` of the
//!   line before it.
//! * Line 1 is the header `{"chain":"hmac-sha256"|"sha256","event":"audit_start","time":…}`,
//!   which says which `H` applies (a file without it is an unkeyed one
//!   from before headers). A verifier holding the key must refuse a file
//!   whose header is not `hmac-sha256`.
//! * A clean shutdown writes `{"event":"audit_end","time":…}` last.
//! * `FILE.seal` names the end of the chain; see `seal.rs` for its format.
//!
//! The writer emits each line in exactly that form — `BODY` with
//! `,"prev_hash":"<P>","hash":"<H>"` inserted before its closing `}` — so an
//! outside verifier may also take `BODY` textually: the line without its
//! last 154 bytes, plus `}`. [`verify`] additionally rejects a line whose
//! bytes differ from that form (whitespace, duplicate keys), because a
//! different JSON reader could interpret such a line differently.
//!
//! Members a verifier does not know are part of `BODY` like any other, so
//! adding event fields never changes the format.
//!
//! # What the chain cannot show
//!
//! Without the key, anything: whoever can write the file can rehash it.
//! With it, a rollback of the file and its seal together to an earlier
//! state, and the last batch before a crash (whose seal was never
//! written). Ship the seal off the box to close those.

mod chain;
mod event;
mod file;
mod redact;
mod render;
mod seal;
mod verify;
mod writer;

use std::path::PathBuf;

pub use chain::{AuditKey, ChainKind, GENESIS_HASH, KeyTooShort, MIN_KEY_LEN};
pub use event::{AuditEvent, Decision, EventKind};
pub use redact::redact_statement;
pub use render::{EventDetails, EventTemplate};
pub use seal::{SealProblem, seal_path};
pub use verify::{VerifyReport, verify};
pub use writer::{AuditLog, AuditWriter};

/// What `check-config` and `serve` say when `[audit]` has no key.
pub const UNKEYED_WARNING: &str = "[audit] has no key_file or key_env: the audit trail is only tamper-evident against accidents \
     (anyone who can write the file can change an event and recompute every hash, or cut lines and the seal together)\n  \
     hint: set key_file = \"audit.key\" in [audit], with a key of at least 32 bytes \
     (`openssl rand -base64 48 > audit.key; chmod 600 audit.key`), and start a new audit file";

/// Errors of the audit module. [`AuditError::kind`] is a stable label for
/// metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit log {}: the last line is incomplete (no trailing newline), probably a write torn by a crash; \
         run `idgate audit verify {}`, then remove the partial last line before restarting",
        path.display(),
        path.display()
    )]
    TornTail { path: PathBuf },
    #[error(
        "audit log {}: the last line is not a valid chain entry ({problem}); \
         refusing to extend it; run `idgate audit verify {}`",
        path.display(),
        path.display()
    )]
    BadTail { path: PathBuf, problem: ChainBreak },
    #[error("audit log {}: line {line}: {problem}", path.display())]
    Broken {
        path: PathBuf,
        line: usize,
        problem: ChainBreak,
    },
    #[error("audit log {}: {}", path.display(), chain_kind_text(*found, *expected))]
    ChainKind {
        path: PathBuf,
        /// What the file's first line says (no header: sha256).
        found: ChainKind,
        /// What the key given (or its absence) calls for.
        expected: ChainKind,
    },
    #[error("audit log {}: seal {}: {problem}", path.display(), seal_path(path).display())]
    Seal { path: PathBuf, problem: SealProblem },
    #[error("audit log {}: truncated after line {lines}: the seal says {sealed} events", path.display())]
    Truncated {
        path: PathBuf,
        /// Complete lines in the file.
        lines: usize,
        /// Lines the seal names.
        sealed: u64,
    },
    #[error(
        "audit log {}: line {line}: not the line the seal names (its hash or where it ends differs; lines rewritten)",
        path.display()
    )]
    SealMismatch { path: PathBuf, line: usize },
    #[error("audit event could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("audit event time could not be formatted: {0}")]
    Clock(#[from] time::error::Format),
    #[error("the audit writer has stopped; the event was not recorded")]
    Closed,
}

impl AuditError {
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            AuditError::Io { .. } => "io",
            AuditError::TornTail { .. } => "torn_tail",
            AuditError::BadTail { .. } => "bad_tail",
            AuditError::Broken { .. } => "broken_chain",
            AuditError::ChainKind { .. } => "chain_kind",
            AuditError::Seal { .. } => "seal",
            AuditError::Truncated { .. } => "truncated",
            AuditError::SealMismatch { .. } => "seal_mismatch",
            AuditError::Serialize(_) => "serialize",
            AuditError::Clock(_) => "clock",
            AuditError::Closed => "closed",
        }
    }
}

/// Why one line of the chain does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("not JSON")]
    NotJson,
    #[error("missing or malformed prev_hash/hash")]
    MissingHash,
    #[error("hash mismatch (edited)")]
    HashMismatch,
    #[error("MAC mismatch (edited, or not this key)")]
    MacMismatch,
    #[error("the first line names a chain kind this version does not know")]
    UnknownChain,
    #[error("not in the exact form the writer produces (edited)")]
    NotCanonical,
    /// `previous` is the number of the line before, 0 for the first line.
    #[error("{}", prev_mismatch_text(*previous))]
    PrevMismatch { previous: usize },
    #[error("incomplete last line without newline (write torn by a crash?)")]
    Torn,
}

fn chain_kind_text(found: ChainKind, expected: ChainKind) -> String {
    match (found, expected) {
        (ChainKind::Sha256, ChainKind::HmacSha256) => "line 1: the chain is unkeyed (sha256), but a key was given: \
             a gateway with a key writes only hmac-sha256 chains, so this file was rewritten without the key \
             or comes from a gateway without one (to start a keyed trail, move the file aside; it still verifies without a key)"
            .to_owned(),
        (ChainKind::HmacSha256, ChainKind::Sha256) => "the chain is keyed (hmac-sha256): give its key \
             (idgate audit verify --key-file FILE or --key-env VAR; the gateway reads [audit] key_file or key_env)"
            .to_owned(),
        (found, _) => format!("unexpected chain kind {found}"),
    }
}

fn prev_mismatch_text(previous: usize) -> String {
    if previous == 0 {
        "prev_hash is not the genesis hash (lines deleted from the start?)".to_owned()
    } else {
        format!("prev_hash does not match line {previous} (line deleted or reordered)")
    }
}
