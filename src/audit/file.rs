//! The audit file on disk: opening an existing trail and finding where its
//! chain stands (checking the seal, cutting a torn last line), creating a
//! new one with its header, and the durable append the writer thread uses.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::AuditError;
use super::chain::{Chain, FirstLine, GENESIS_HASH, start_body};
use super::seal::{Seal, SealFile, SealProblem};
use super::verify::header_check;
use super::writer::now_text;

/// Tail read size when looking for the last line of an existing file.
const TAIL_CHUNK: u64 = 64 * 1024;

/// Where the chain stands: what the next line links to and what the seal
/// will say.
pub(super) struct Tail {
    pub(super) chain: Chain,
    /// `hash` of the last line.
    pub(super) head: String,
    /// Lines in the file.
    pub(super) events: u64,
    /// File length (all of it committed).
    pub(super) bytes: u64,
}

impl Tail {
    pub(super) fn seal_record(&self) -> Vec<u8> {
        Seal {
            events: self.events,
            bytes: self.bytes,
            hash: self.head.clone(),
            time: now_text(),
        }
        .render(&self.chain)
    }
}

/// Where batches go. A trait so tests can inject failing disks.
pub(super) trait AppendTarget: Send + Sync + 'static {
    /// Optionally truncates to `truncate_to`, then appends `data` and makes
    /// it durable.
    fn append_synced(&self, data: &[u8], truncate_to: Option<u64>) -> io::Result<()>;
    /// Replaces the seal with `record`, durably.
    fn replace_seal(&self, record: &[u8]) -> io::Result<()>;
}

/// The audit file and its seal.
pub(super) struct AuditFile {
    file: File,
    seal: SealFile,
}

impl AppendTarget for AuditFile {
    fn append_synced(&self, data: &[u8], truncate_to: Option<u64>) -> io::Result<()> {
        if let Some(len) = truncate_to {
            self.file.set_len(len)?;
        }
        // One write call per batch (write_all loops only on short writes).
        (&self.file).write_all(data)?;
        self.file.sync_data()
    }

    fn replace_seal(&self, record: &[u8]) -> io::Result<()> {
        self.seal.replace(record)
    }
}

/// Opens or creates the file and finds where its chain stands (see
/// [`AuditLog::open`] for what an existing file must satisfy).
pub(super) fn open_blocking(path: &Path, chain: Chain) -> Result<(AuditFile, Tail), AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existed = path.exists();
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    warn_if_readable_by_others(path, &meta);
    if !existed {
        // A new file's directory entry must be durable too, or a crash could
        // lose the whole file along with its fsynced content.
        sync_parent_dir(path);
    }
    let len = meta.len();
    let seal = Seal::load(path, &chain).map_err(io_err)?;
    let target = AuditFile {
        file,
        seal: SealFile::beside(path),
    };
    if len == 0 {
        return match seal {
            // Emptied after it was sealed: starting afresh would hide that.
            Ok(s) => Err(AuditError::Truncated {
                path: path.to_path_buf(),
                lines: 0,
                sealed: s.events,
            }),
            Err(SealProblem::Missing) => start_file(target, chain).map_err(io_err),
            Err(problem) => Err(AuditError::Seal {
                path: path.to_path_buf(),
                problem,
            }),
        };
    }
    let mut file = &target.file;
    let first = read_first_line(&mut file).map_err(io_err)?;
    let first = header_check(path, &first, &chain)?;
    let Some(last) = read_last_line(&mut file, len).map_err(io_err)? else {
        return Err(AuditError::TornTail {
            path: path.to_path_buf(),
        });
    };
    let checked = chain
        .check_line(&last)
        .map_err(|problem| AuditError::BadTail {
            path: path.to_path_buf(),
            problem,
        })?;
    // Count the lines: those the seal names plus those after it (a batch
    // whose seal a crash prevented); a file from before seals, once, all.
    let (sealed_events, sealed_bytes) = match (seal, first) {
        (Ok(s), _) => {
            check_sealed_line(path, &mut file, len, &s, &chain)?;
            (s.events, s.bytes)
        }
        (Err(SealProblem::Missing), FirstLine::Legacy) => (0, 0),
        (Err(problem), _) => {
            return Err(AuditError::Seal {
                path: path.to_path_buf(),
                problem,
            });
        }
    };
    let after = count_lines(&mut file, sealed_bytes, len).map_err(io_err)?;
    let tail = Tail {
        chain,
        head: checked.hash,
        events: sealed_events + after,
        bytes: len,
    };
    // Seal what is there now, so a file continued from before seals (or
    // after a crash) is covered before the first batch.
    target.replace_seal(&tail.seal_record()).map_err(io_err)?;
    Ok((target, tail))
}

/// Writes the header line of a new file and its first seal.
fn start_file(target: AuditFile, chain: Chain) -> io::Result<(AuditFile, Tail)> {
    let mut head = GENESIS_HASH.to_owned();
    let mut line = Vec::new();
    chain.append_line(&mut head, &start_body(chain.kind(), &now_text()), &mut line);
    target.append_synced(&line, None)?;
    let tail = Tail {
        chain,
        head,
        events: 1,
        bytes: line.len() as u64,
    };
    target.replace_seal(&tail.seal_record())?;
    Ok((target, tail))
}

/// The line the seal names must still end where it says, with its hash:
/// otherwise lines were cut (or rewritten) while the gateway was down, and
/// continuing would seal over it.
fn check_sealed_line(
    path: &Path,
    file: &mut &File,
    len: u64,
    seal: &Seal,
    chain: &Chain,
) -> Result<(), AuditError> {
    let line = usize::try_from(seal.events).unwrap_or(usize::MAX);
    if len < seal.bytes {
        // Only on this error path is the whole file read, to say where.
        let lines = count_lines(file, 0, len).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        return Err(AuditError::Truncated {
            path: path.to_path_buf(),
            lines: usize::try_from(lines).unwrap_or(usize::MAX),
            sealed: seal.events,
        });
    }
    let sealed_line = if seal.bytes == 0 {
        None
    } else {
        read_last_line(file, seal.bytes).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?
    };
    let matches = sealed_line
        .and_then(|l| chain.check_line(&l).ok())
        .is_some_and(|c| c.hash == seal.hash);
    if matches {
        Ok(())
    } else {
        Err(AuditError::SealMismatch {
            path: path.to_path_buf(),
            line,
        })
    }
}

/// Complete lines (newlines) in `[from, to)` of the file.
fn count_lines(file: &mut &File, from: u64, to: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(from))?;
    let mut left = to.saturating_sub(from);
    let mut buf = vec![0u8; usize::try_from(TAIL_CHUNK.min(left)).map_err(io::Error::other)?];
    let mut lines = 0u64;
    while left > 0 {
        let n = usize::try_from(TAIL_CHUNK.min(left)).map_err(io::Error::other)?;
        file.read_exact(&mut buf[..n])?;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        left -= n as u64;
    }
    Ok(lines)
}

/// The file's first line without its newline (up to the end if none).
fn read_first_line(file: &mut &File) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut line = Vec::new();
    io::BufRead::read_until(&mut io::BufReader::new(&mut *file), b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// The last line without its newline, or None if the file does not end in
/// a newline (torn write). `len` must be > 0.
fn read_last_line(file: &mut &File, len: u64) -> io::Result<Option<Vec<u8>>> {
    let mut last_byte = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last_byte)?;
    if last_byte[0] != b'\n' {
        return Ok(None);
    }
    // Read backwards in chunks until a newline before the final one shows up.
    let end = len - 1;
    let mut start = end;
    let mut tail: Vec<u8> = Vec::new();
    while start > 0 {
        let chunk = TAIL_CHUNK.min(start);
        start -= chunk;
        let mut buf = vec![0u8; usize::try_from(chunk).map_err(io::Error::other)?];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        let found = buf.iter().rposition(|&b| b == b'\n');
        buf.extend_from_slice(&tail);
        tail = buf;
        if let Some(pos) = found {
            tail.drain(..=pos);
            break;
        }
    }
    Ok(Some(tail))
}

fn warn_if_readable_by_others(path: &Path, meta: &std::fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "audit log is accessible to group/others; statements may be sensitive, consider chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
}

fn sync_parent_dir(path: &Path) {
    let parent: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Err(e) = File::open(&parent).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %parent.display(), error = %e, "could not fsync the audit log's directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_is_found_across_chunk_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let long = "x".repeat(usize::try_from(TAIL_CHUNK).expect("fits") * 2 + 7);
        std::fs::write(&path, format!("first\n{long}\n")).expect("write");
        let f = File::open(&path).expect("open");
        let len = f.metadata().expect("meta").len();
        let last = read_last_line(&mut &f, len)
            .expect("read")
            .expect("complete");
        assert_eq!(last, long.as_bytes());
    }
}
