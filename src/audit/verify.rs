//! Offline verification of a whole audit file (`idgate audit verify`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chain::{Chain, ChainKind, FirstLine, GENESIS_HASH, first_line, is_end_line};
use super::seal::{Seal, SealProblem};
use super::{AuditError, AuditKey, ChainBreak};

/// The outcome of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries in the file.
    pub lines: usize,
    /// `hash` of the last line ([`GENESIS_HASH`] for an empty file).
    pub head: String,
    /// How the lines are hashed.
    pub kind: ChainKind,
    /// Lines named by the seal; `None` for a file from before seals
    /// (no header line), which cannot show lines cut off its end.
    pub sealed: Option<u64>,
    /// The last line is `audit_end`: the gateway closed the file cleanly.
    /// Otherwise it is still running (or stopped without closing).
    pub closed: bool,
    /// After the sealed lines the file ends in an incomplete line: a write
    /// in progress, or one torn by a crash (the gateway then refuses to
    /// continue the file until it is removed).
    pub unfinished_tail: bool,
}

/// Recomputes every hash and link in `path` and checks the file against
/// its seal, stopping at the first problem, naming the line (1-based) and
/// why, e.g. `line 7: MAC mismatch (edited, or not this key)` or
/// `truncated after line 8: the seal says 10 events`.
///
/// `key` must be given exactly when the file's first line says it is
/// keyed: a keyed file without its key cannot be checked, and an unkeyed
/// file offered with a key is refused, because the key holder's gateway
/// never writes one (otherwise stripping the key would be a downgrade).
///
/// A file still being written verifies: the seal is read first and only
/// ever lags the file, so lines past it are checked as they are (they must
/// chain), and an incomplete last line past it is reported, not failed.
/// Blocking file I/O: call it from `spawn_blocking` inside an async
/// runtime.
pub fn verify(path: &Path, key: Option<&AuditKey>) -> Result<VerifyReport, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let broken = |line, problem| AuditError::Broken {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let chain = Chain::new(key);
    // The seal before the file: the writer replaces it only after the
    // lines it names are written, so this order never sees it ahead.
    let seal = Seal::load(path, &chain).map_err(io_err)?;
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut line = Vec::with_capacity(1024);
    let mut lines = 0usize;
    let mut offset = 0u64;
    let mut head = GENESIS_HASH.to_owned();
    let mut sealed: Option<Seal> = None;
    let mut closed = false;
    let mut first = FirstLine::Legacy;
    let mut unfinished_tail = false;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if read == 0 {
            break;
        }
        offset += read as u64;
        lines += 1;
        if line.pop() != Some(b'\n') {
            match &sealed {
                Some(s) if lines as u64 > s.events => unfinished_tail = true,
                // Cut inside the sealed part: the seal's count says more.
                Some(s) => return Err(truncated(path, lines - 1, s)),
                None => return Err(broken(lines, ChainBreak::Torn)),
            }
            lines -= 1;
            break;
        }
        if lines == 1 {
            first = header_check(path, &line, &chain)?;
        }
        let checked = chain.check_line(&line).map_err(|p| broken(lines, p))?;
        if lines == 1 {
            // After line 1 checked out under the key, so that a wrong key
            // is reported there rather than as a forged seal.
            sealed = seal_check(path, first, seal.clone())?;
        }
        if checked.prev_hash != head {
            return Err(broken(
                lines,
                ChainBreak::PrevMismatch {
                    previous: lines - 1,
                },
            ));
        }
        head = checked.hash;
        closed = is_end_line(&line);
        if let Some(s) = &sealed
            && lines as u64 == s.events
            && (head != s.hash || offset != s.bytes)
        {
            return Err(AuditError::SealMismatch {
                path: path.to_path_buf(),
                line: lines,
            });
        }
    }
    if lines == 0 {
        // An empty file: only a seal for nothing fits it.
        sealed = match seal {
            Ok(s) if s.events > 0 => return Err(truncated(path, 0, &s)),
            Ok(s) => Some(s),
            Err(_) => None,
        };
    }
    if let Some(s) = &sealed
        && (lines as u64) < s.events
    {
        return Err(truncated(path, lines, s));
    }
    Ok(VerifyReport {
        lines,
        head,
        kind: chain.kind(),
        sealed: sealed.map(|s| s.events),
        closed,
        unfinished_tail,
    })
}

/// The chain kind line 1 claims must be the one the key calls for (no
/// header: the unkeyed format from before seals).
pub(super) fn header_check(
    path: &Path,
    line: &[u8],
    chain: &Chain,
) -> Result<FirstLine, AuditError> {
    let first = first_line(line).map_err(|problem| AuditError::Broken {
        path: path.to_path_buf(),
        line: 1,
        problem,
    })?;
    let found = match first {
        FirstLine::Header(kind) => kind,
        FirstLine::Legacy => ChainKind::Sha256,
    };
    if found != chain.kind() {
        return Err(AuditError::ChainKind {
            path: path.to_path_buf(),
            found,
            expected: chain.kind(),
        });
    }
    Ok(first)
}

/// A file with a header must have a good seal (which is returned); one
/// from before seals may have none.
fn seal_check(
    path: &Path,
    first: FirstLine,
    seal: Result<Seal, SealProblem>,
) -> Result<Option<Seal>, AuditError> {
    match (first, seal) {
        (_, Ok(seal)) => Ok(Some(seal)),
        (FirstLine::Legacy, Err(SealProblem::Missing)) => Ok(None),
        (_, Err(problem)) => Err(AuditError::Seal {
            path: path.to_path_buf(),
            problem,
        }),
    }
}

fn truncated(path: &Path, lines: usize, seal: &Seal) -> AuditError {
    AuditError::Truncated {
        path: path.to_path_buf(),
        lines,
        sealed: seal.events,
    }
}
