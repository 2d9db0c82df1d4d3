//! The seal: a small sidecar file (`FILE.seal`) naming how far the chain
//! went — the number of lines, the file length after them and the last
//! hash — with a MAC under the audit key. It is what makes cutting lines
//! off the end visible: a chain alone stays valid when shortened.
//!
//! One line of canonical JSON, `mac` last:
//!
//! ```text
//! {"bytes":B,"chain":"hmac-sha256","events":N,"hash":"<H>","time":"…","mac":"<M>"}
//! ```
//!
//! `M = hex(HMAC-SHA256(key, "idgate-audit-seal\n" || BODY))`, where `BODY`
//! is the line without `,"mac":"<M>"` (SHA-256 instead of HMAC for an
//! unkeyed chain, which makes the seal a checksum, not a proof). The prefix
//! keeps a seal's MAC from ever equalling a line's, whose input starts with
//! 64 hex digits.
//!
//! The writer replaces the seal after each group commit, once the lines it
//! names are fsynced: write a temporary file, fsync it, rename it over the
//! seal. A crash can therefore leave the seal behind the file (lines past
//! it, which must still chain) but never ahead of it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::{Chain, ChainKind};

/// Domain separation of the seal's MAC from the lines' hashes.
const SEAL_CONTEXT: &[u8] = b"idgate-audit-seal\n";

/// How far the chain went when the seal was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// Number of lines sealed.
    pub events: u64,
    /// File length after those lines.
    pub bytes: u64,
    /// `hash` of line `events`.
    pub hash: String,
    /// When the seal was written (RFC 3339 UTC).
    pub time: String,
}

/// Why a seal file does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealProblem {
    #[error("missing: cannot tell whether lines were cut off the end")]
    Missing,
    #[error("unreadable (not a seal record)")]
    Malformed,
    #[error("it seals a {found} chain, but the file's first line says {expected}")]
    WrongKind {
        found: ChainKind,
        expected: ChainKind,
    },
    #[error("forged or damaged: its MAC does not match (or not this key)")]
    BadMac,
}

impl Seal {
    /// The seal record for `chain`, newline included.
    #[must_use]
    pub fn render(&self, chain: &Chain) -> Vec<u8> {
        let body = format!(
            "{{\"bytes\":{},\"chain\":\"{}\",\"events\":{},\"hash\":\"{}\",\"time\":\"{}\"}}",
            self.bytes,
            chain.kind(),
            self.events,
            self.hash,
            self.time
        );
        let mac = chain.digest_hex(&[SEAL_CONTEXT, body.as_bytes()]);
        let mut out = Vec::with_capacity(body.len() + 80);
        out.extend_from_slice(&body.as_bytes()[..body.len() - 1]);
        out.extend_from_slice(b",\"mac\":\"");
        out.extend_from_slice(&mac);
        out.extend_from_slice(b"\"}\n");
        out
    }

    /// Reads a seal record and checks it under `chain`: it must be exactly
    /// what [`Seal::render`] makes of its fields.
    pub fn check(record: &[u8], chain: &Chain) -> Result<Seal, SealProblem> {
        let value: Value = serde_json::from_slice(record).map_err(|_| SealProblem::Malformed)?;
        let text = |key| value.get(key).and_then(Value::as_str);
        let number = |key| value.get(key).and_then(Value::as_u64);
        let (Some(events), Some(bytes), Some(hash), Some(time), Some(kind)) = (
            number("events"),
            number("bytes"),
            text("hash"),
            text("time"),
            text("chain"),
        ) else {
            return Err(SealProblem::Malformed);
        };
        if kind != chain.kind().as_str() {
            return Err(
                match [ChainKind::Sha256, ChainKind::HmacSha256]
                    .into_iter()
                    .find(|k| k.as_str() == kind)
                {
                    Some(found) => SealProblem::WrongKind {
                        found,
                        expected: chain.kind(),
                    },
                    None => SealProblem::Malformed,
                },
            );
        }
        let seal = Seal {
            events,
            bytes,
            hash: hash.to_owned(),
            time: time.to_owned(),
        };
        if seal.render(chain) != record {
            return Err(SealProblem::BadMac);
        }
        Ok(seal)
    }

    /// Reads and checks the seal of the audit file at `audit`; `Missing` if
    /// there is none.
    pub fn load(audit: &Path, chain: &Chain) -> Result<Result<Seal, SealProblem>, io::Error> {
        match std::fs::read(seal_path(audit)) {
            Ok(record) => Ok(Seal::check(&record, chain)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Err(SealProblem::Missing)),
            Err(e) => Err(e),
        }
    }
}

/// `FILE.seal` beside the audit file `FILE`.
#[must_use]
pub fn seal_path(audit: &Path) -> PathBuf {
    let mut name = audit.as_os_str().to_owned();
    name.push(".seal");
    PathBuf::from(name)
}

/// Where the seal is replaced from: the seal itself and its temporary file.
#[derive(Debug)]
pub struct SealFile {
    path: PathBuf,
    temp: PathBuf,
}

impl SealFile {
    #[must_use]
    pub fn beside(audit: &Path) -> SealFile {
        let path = seal_path(audit);
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        SealFile {
            path,
            temp: PathBuf::from(temp),
        }
    }

    /// Replaces the seal atomically: a reader sees the old record or the
    /// new one, never a mix. The directory is not fsynced: a rename lost to
    /// a crash leaves the previous seal, which is behind the file, never
    /// ahead of it.
    pub fn replace(&self, record: &[u8]) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file: File = options.open(&self.temp)?;
        file.write_all(record)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&self.temp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKey;
    use crate::secret::Secret;

    fn keyed(secret: &str) -> Chain {
        Chain::Keyed(AuditKey::new(&Secret::new(secret)).expect("key"))
    }

    fn seal() -> Seal {
        Seal {
            events: 12,
            bytes: 3456,
            hash: "ab".repeat(32),
            time: "2026-01-02T03:04:05.678Z".into(),
        }
    }

    #[test]
    fn a_rendered_seal_checks_under_its_key() {
        let chain = keyed(&"k".repeat(32));
        let record = seal().render(&chain);
        assert!(record.ends_with(b"\"}\n"));
        assert_eq!(Seal::check(&record, &chain), Ok(seal()));
    }

    #[test]
    fn a_seal_with_an_edited_count_is_forged() {
        let chain = keyed(&"k".repeat(32));
        let record = String::from_utf8(seal().render(&chain)).expect("utf8");
        let edited = record.replace("\"events\":12", "\"events\":11");
        assert_eq!(
            Seal::check(edited.as_bytes(), &chain),
            Err(SealProblem::BadMac)
        );
    }

    #[test]
    fn a_seal_made_with_another_key_is_forged() {
        let record = seal().render(&keyed(&"m".repeat(32)));
        assert_eq!(
            Seal::check(&record, &keyed(&"k".repeat(32))),
            Err(SealProblem::BadMac)
        );
    }

    #[test]
    fn an_unkeyed_seal_is_refused_for_a_keyed_chain() {
        let record = seal().render(&Chain::Unkeyed);
        assert_eq!(
            Seal::check(&record, &keyed(&"k".repeat(32))),
            Err(SealProblem::WrongKind {
                found: ChainKind::Sha256,
                expected: ChainKind::HmacSha256
            })
        );
    }

    #[test]
    fn replacing_leaves_only_the_new_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit.jsonl");
        let file = SealFile::beside(&audit);
        file.replace(b"one\n").expect("replace");
        file.replace(b"two\n").expect("replace");
        assert_eq!(std::fs::read(seal_path(&audit)).expect("read"), b"two\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
