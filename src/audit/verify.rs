//! Offline verification of a whole audit file (`idgate audit verify`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chain::{GENESIS_HASH, check_line};
use super::{AuditError, ChainBreak};

/// The outcome of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries in the file.
    pub lines: usize,
    /// `hash` of the last line ([`GENESIS_HASH`] for an empty file). Store it
    /// somewhere the gateway host cannot rewrite: that is the only way to
    /// notice later that lines were cut off the end.
    pub head: String,
}

/// Recomputes every hash and link in `path` and stops at the first break,
/// naming the line (1-based) and why, e.g. `line 7: hash mismatch (edited)`.
///
/// Detects edited, inserted, deleted and reordered lines anywhere except at
/// the end: deleting the last lines leaves a valid shorter chain, which the
/// file alone cannot reveal; compare [`VerifyReport::head`] with an anchor
/// kept elsewhere. Blocking file I/O: call it from `spawn_blocking` inside
/// an async runtime.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let broken = |line, problem| AuditError::Broken {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut line = Vec::with_capacity(1024);
    let mut lines = 0usize;
    let mut head = GENESIS_HASH.to_owned();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
            break;
        }
        lines += 1;
        if line.pop() != Some(b'\n') {
            return Err(broken(lines, ChainBreak::Torn));
        }
        let checked = check_line(&line).map_err(|p| broken(lines, p))?;
        if checked.prev_hash != head {
            return Err(broken(
                lines,
                ChainBreak::PrevMismatch {
                    previous: lines - 1,
                },
            ));
        }
        head = checked.hash;
    }
    Ok(VerifyReport { lines, head })
}
