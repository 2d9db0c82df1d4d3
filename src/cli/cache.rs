//! The token cache: one JSON file per (issuer, client) under
//! `$XDG_CACHE_HOME/idgate/`, mode 0600 in a 0700 directory, replaced
//! atomically (temp file, fsync, rename, fsync of the directory), and a
//! lock file beside it taken with `flock` around every read-refresh-write,
//! so parallel processes refresh once and never reuse a rotated refresh
//! token. The lock file is never removed: removing it would let two
//! processes lock two different files.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::CliError;
use super::provider::TokenSet;
use crate::secret::Secret;

/// How long to wait for another process's refresh before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(60);
const FORMAT_VERSION: u32 = 1;

/// The cache entry of one issuer and client.
pub struct Slot {
    dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    issuer: String,
    client_id: String,
}

/// Held while a process reads, refreshes and writes an entry.
pub struct Lock {
    _file: File,
}

/// The file's JSON. Tokens are plain strings only here, in memory while
/// reading or writing the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u32,
    issuer: String,
    client_id: String,
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

impl Slot {
    /// The entry for `issuer` and `client_id` in `dir`; nothing is touched yet.
    pub fn new(dir: &Path, issuer: &str, client_id: &str) -> Slot {
        let mut h = Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0]);
        h.update(client_id.as_bytes());
        let name = hex::encode(&h.finalize()[..16]);
        Slot {
            dir: dir.to_owned(),
            path: dir.join(format!("tokens-{name}.json")),
            lock_path: dir.join(format!("tokens-{name}.lock")),
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> CliError {
        let path = path.to_owned();
        move |source| CliError::CacheIo {
            path: path.clone(),
            source,
        }
    }

    /// Creates the directory (0700) if needed; refuses one others may write.
    fn ensure_dir(&self) -> Result<(), CliError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(self.io(&self.dir))?;
        let mode = std::fs::metadata(&self.dir)
            .map_err(self.io(&self.dir))?
            .mode()
            & 0o7777;
        if mode & 0o022 != 0 {
            return Err(CliError::CacheDirInsecure {
                path: self.dir.clone(),
                mode,
            });
        }
        Ok(())
    }

    /// Waits for the entry's lock (in a blocking thread: `flock` blocks).
    pub async fn lock(&self) -> Result<Lock, CliError> {
        self.ensure_dir()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock_path)
            .map_err(self.io(&self.lock_path))?;
        let locking = tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
        });
        match tokio::time::timeout(LOCK_WAIT, locking).await {
            Ok(Ok(Ok(file))) => Ok(Lock { _file: file }),
            Ok(Ok(Err(errno))) => Err(self.io(&self.lock_path)(errno.into())),
            Ok(Err(join)) => Err(self.io(&self.lock_path)(std::io::Error::other(join))),
            Err(_) => Err(CliError::CacheLocked {
                path: self.lock_path.clone(),
                secs: LOCK_WAIT.as_secs(),
            }),
        }
    }

    /// The cached tokens, or `None` when there are none. A file others can
    /// read is refused; one that cannot be parsed (truncated, edited, from
    /// another version) is ignored with a warning and left in place.
    pub fn read(&self) -> Result<Option<TokenSet>, CliError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&self.path)(e)),
        };
        let mode = file.metadata().map_err(self.io(&self.path))?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CliError::CacheInsecure {
                path: self.path.clone(),
                mode,
            });
        }
        let stored: Stored = match serde_json::from_reader(std::io::BufReader::new(file)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "warning: ignoring the unreadable token cache {} ({})",
                    self.path.display(),
                    if e.is_eof() {
                        "truncated".to_owned()
                    } else {
                        format!("not a cache entry: line {} column {}", e.line(), e.column())
                    }
                );
                return Ok(None);
            }
        };
        if stored.version != FORMAT_VERSION
            || stored.issuer != self.issuer
            || stored.client_id != self.client_id
        {
            eprintln!(
                "warning: ignoring the token cache {}: it is not an entry of this version for {} and client {}",
                self.path.display(),
                self.issuer,
                self.client_id
            );
            return Ok(None);
        }
        Ok(Some(TokenSet {
            access_token: Secret::new(stored.access_token),
            expires_at: stored.expires_at,
            id_token: stored.id_token.map(Secret::new),
            refresh_token: stored.refresh_token.map(Secret::new),
        }))
    }

    /// Replaces the entry atomically: a crash leaves the old file or the
    /// new one, never a mix.
    pub fn write(&self, tokens: &TokenSet) -> Result<(), CliError> {
        self.ensure_dir()?;
        let stored = Stored {
            version: FORMAT_VERSION,
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            access_token: tokens.access_token.expose().to_owned(),
            expires_at: tokens.expires_at,
            id_token: tokens.id_token.as_ref().map(|t| t.expose().to_owned()),
            refresh_token: tokens.refresh_token.as_ref().map(|t| t.expose().to_owned()),
        };
        let body = serde_json::to_vec_pretty(&stored).expect("plain strings and numbers");
        // tempfile creates the file 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tokens-")
            .tempfile_in(&self.dir)
            .map_err(self.io(&self.dir))?;
        tmp.write_all(&body).map_err(self.io(tmp.path()))?;
        tmp.as_file().sync_all().map_err(self.io(tmp.path()))?;
        tmp.persist(&self.path)
            .map_err(|e| self.io(&self.path)(e.error))?;
        sync_dir(&self.dir).map_err(self.io(&self.dir))
    }

    /// Deletes the entry; `false` when there was none.
    pub fn remove(&self) -> Result<bool, CliError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                sync_dir(&self.dir).map_err(self.io(&self.dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(&self.path)(e)),
        }
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn tokens(access: &str) -> TokenSet {
        TokenSet {
            access_token: Secret::new(access),
            expires_at: Some(1_900_000_000),
            id_token: None,
            refresh_token: Some(Secret::new("refresh")),
        }
    }

    #[test]
    fn an_entry_is_written_0600_in_a_0700_directory_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("idgate");
        let slot = Slot::new(&dir, "https://issuer", "client");
        assert!(slot.read().unwrap().is_none());
        slot.write(&tokens("a1")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(slot.path()), 0o600);
        let back = slot.read().unwrap().unwrap();
        assert_eq!(back.access_token.expose(), "a1");
        assert_eq!(back.refresh_token.unwrap().expose(), "refresh");
        // Only the entry is left: no temp files.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(slot.remove().unwrap());
        assert!(!slot.remove().unwrap());
    }

    #[test]
    fn issuers_and_clients_have_entries_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let a = Slot::new(dir.path(), "https://issuer", "client");
        let b = Slot::new(dir.path(), "https://issuer", "other");
        let c = Slot::new(dir.path(), "https://other", "client");
        assert_ne!(a.path(), b.path());
        assert_ne!(a.path(), c.path());
    }

    #[test]
    fn a_file_others_can_read_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::new(dir.path(), "https://issuer", "client");
        slot.write(&tokens("a1")).unwrap();
        std::fs::set_permissions(slot.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = slot.read().expect_err("refused");
        assert_eq!(e.kind(), "cache_insecure");
        assert!(e.to_string().contains("mode 0644"), "{e}");
        assert!(e.hint().contains("chmod 600"), "{}", e.hint());
    }

    #[test]
    fn a_truncated_or_foreign_file_reads_as_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::new(dir.path(), "https://issuer", "client");
        slot.write(&tokens("a1")).unwrap();
        let text = std::fs::read(slot.path()).unwrap();
        std::fs::write(slot.path(), &text[..text.len() / 2]).unwrap();
        assert!(slot.read().unwrap().is_none());
        // Kept as it was: a login replaces it.
        assert_eq!(std::fs::read(slot.path()).unwrap(), &text[..text.len() / 2]);

        let other = Slot::new(dir.path(), "https://issuer", "other");
        std::fs::write(other.path(), &text).unwrap();
        std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(other.read().unwrap().is_none(), "another client's entry");
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_between_holders() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot::new(dir.path(), "https://issuer", "client");
        let held = slot.lock().await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(200), slot.lock()).await;
        assert!(
            second.is_err(),
            "a second lock waits while the first is held"
        );
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), slot.lock()).await;
        assert!(matches!(again, Ok(Ok(_))));
    }
}
