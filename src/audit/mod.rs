//! The append-only, hash-chained audit trail (SPEC §9).
//!
//! Owns the event type (`event.rs`), the chain format (`chain.rs`), the file
//! writer with group commit (`writer.rs`), the offline verifier
//! (`verify.rs`) and password masking for statement text (`redact.rs`).
//!
//! # Life of an event
//!
//! [`AuditLog::record`] stamps the time and serializes the event to canonical
//! JSON on the caller's task, straight into a bounded pending buffer (waiting
//! for room rather than dropping). One writer thread takes everything
//! pending at most every 20 ms (at once for a durable event), chains it,
//! appends all lines with one `write` and `fdatasync`s (group commit).
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
//! * `H = lowercase_hex(SHA-256(P || "\n" || BODY))`, where `P` is the
//!   line's `prev_hash` as 64 ASCII characters.
//! * `P` of line 1 is 64 `0`s; `P` of every later line equals `H` of the
//!   line before it.
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
//! Removing the *last* lines leaves a valid, shorter chain. Anchor the head
//! hash that [`verify`] reports (or a later one) somewhere the gateway host
//! cannot rewrite, and compare.

mod chain;
mod event;
mod redact;
mod render;
mod verify;
mod writer;

use std::path::PathBuf;

pub use chain::GENESIS_HASH;
pub use event::{AuditEvent, Decision, EventKind};
pub use redact::redact_statement;
pub use render::{EventDetails, EventTemplate};
pub use verify::{VerifyReport, verify};
pub use writer::{AuditLog, AuditWriter};

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
    #[error("not in the exact form the writer produces (edited)")]
    NotCanonical,
    /// `previous` is the number of the line before, 0 for the first line.
    #[error("{}", prev_mismatch_text(*previous))]
    PrevMismatch { previous: usize },
    #[error("incomplete last line without newline (write torn by a crash?)")]
    Torn,
}

fn prev_mismatch_text(previous: usize) -> String {
    if previous == 0 {
        "prev_hash is not the genesis hash (lines deleted from the start?)".to_owned()
    } else {
        format!("prev_hash does not match line {previous} (line deleted or reordered)")
    }
}
