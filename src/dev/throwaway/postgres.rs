//! A throwaway PostgreSQL: `initdb` into a fresh temporary directory, a
//! free loopback port with the socket in that directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;

use nix::sys::signal::Signal;

use super::{START_TIMEOUT, ServerUser, StartFailure};
use crate::secret::Secret;

/// The server's own line once it accepts connections (with `lc_messages=C`).
const READY: &str = "database system is ready to accept connections";
/// A fast shutdown: clients are disconnected, nothing is waited for.
const STOP: Signal = Signal::SIGINT;

#[derive(Debug, thiserror::Error)]
pub enum ThrowawayError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin\n  \
         hint: install postgresql (Debian: apt-get install postgresql), or pass --upstream"
    )]
    NoServerBinaries,
    #[error(
        "PostgreSQL refuses to run as root, and there is no `postgres` or `nobody` user to run it as\n  \
         hint: create a `postgres` user (useradd --system postgres), or pass --upstream"
    )]
    NoUnprivilegedUser,
    #[error(
        "initdb failed ({status}): {output}\n  hint: pass --upstream to use a running PostgreSQL"
    )]
    Initdb {
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "the throwaway PostgreSQL stopped while starting: {log}\n  \
         hint: pass --upstream to use a running PostgreSQL"
    )]
    Start { log: String },
    #[error(
        "the throwaway PostgreSQL did not accept connections within {}s\n  \
         hint: pass --upstream to use a running PostgreSQL",
        START_TIMEOUT.as_secs()
    )]
    Timeout,
    #[error("throwaway PostgreSQL: {0}")]
    Io(#[from] std::io::Error),
    #[error("throwaway PostgreSQL: {0}")]
    Os(#[from] nix::Error),
}

impl From<StartFailure> for ThrowawayError {
    fn from(f: StartFailure) -> Self {
        match f {
            StartFailure::Stopped(log) => ThrowawayError::Start { log },
            StartFailure::Timeout => ThrowawayError::Timeout,
            StartFailure::Io(e) => ThrowawayError::Io(e),
        }
    }
}

/// A running throwaway server; dropping it stops the server and removes
/// its directory.
pub struct ThrowawayPostgres {
    server: Child,
    port: u16,
    /// Of its superuser `postgres` over TCP.
    password: Secret,
    /// Declared after `server`: removed only once the server is stopped.
    dir: tempfile::TempDir,
}

impl ThrowawayPostgres {
    pub async fn start() -> Result<Self, ThrowawayError> {
        let bin = server_binaries().ok_or(ThrowawayError::NoServerBinaries)?;
        // PostgreSQL refuses to run as root: then as `postgres` (Debian's
        // package makes it), or else `nobody`.
        let user = ServerUser::pick(&["postgres", "nobody"])?;
        if matches!(user, ServerUser::Missing) {
            return Err(ThrowawayError::NoUnprivilegedUser);
        }
        let dir = tempfile::Builder::new()
            .prefix("idgate-dev-pg-")
            .tempdir()?;
        user.give(dir.path())?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let password = initdb(&bin, dir.path(), &user).await?;
        let mut attempts = 1;
        loop {
            let port = super::free_port()?;
            match run_server(&bin, dir.path(), port, &user, deadline).await {
                Ok(server) => {
                    return Ok(ThrowawayPostgres {
                        server,
                        port,
                        password,
                        dir,
                    });
                }
                // Another process took the free port before the server
                // bound it: take another.
                Err(ThrowawayError::Start { log })
                    if attempts < super::PORT_ATTEMPTS && log.contains("could not bind") =>
                {
                    tracing::debug!("throwaway PostgreSQL lost port {port}: {log}");
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Where it listens (loopback).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The password of its superuser `postgres` over TCP.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// Its data and socket directory, removed when it stops.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        super::stop(&mut self.server, STOP);
    }
}

/// The directory holding `initdb` and `postgres`: the first on PATH that
/// has both, else the newest `/usr/lib/postgresql/VERSION/bin` (Debian
/// keeps the server binaries there, off PATH).
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    // Newest first.
    versions.sort_by(|a, b| b.cmp(a));
    let extra: Vec<PathBuf> = versions.into_iter().map(|(_, bin)| bin).collect();
    super::find_binaries(&["initdb", "postgres"], &extra)
}

/// A cluster in `DIR/data` whose superuser is `postgres`, with a fresh
/// random password over TCP: any local user can reach a loopback port, and
/// a superuser runs programs as the server's OS user (when idgate runs as
/// root, the `postgres` that owns the machine's own clusters). Its socket,
/// in a directory only that user can enter, trusts.
async fn initdb(bin: &Path, dir: &Path, user: &ServerUser) -> Result<Secret, ThrowawayError> {
    let password = super::random_password();
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, password.expose())?;
    user.give(&pwfile)?;
    let mut cmd = super::server_command(&bin.join("initdb"), dir, user);
    cmd.arg("--pgdata")
        .arg(dir.join("data"))
        .arg("--pwfile")
        .arg(&pwfile)
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-locale",
            // Throwaway data: skip the fsyncs.
            "--no-sync",
        ]);
    let out = tokio::process::Command::from(cmd).output().await;
    std::fs::remove_file(&pwfile)?;
    let out = out?;
    if out.status.success() {
        return Ok(password);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Err(ThrowawayError::Initdb {
        status: out.status,
        output: super::tail(text.lines()),
    })
}

/// Start the server on `port` and wait for its own word that it accepts
/// connections.
async fn run_server(
    bin: &Path,
    dir: &Path,
    port: u16,
    user: &ServerUser,
    deadline: tokio::time::Instant,
) -> Result<Child, ThrowawayError> {
    let mut cmd = super::server_command(&bin.join("postgres"), dir, user);
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "lc_messages=C"]);
    Ok(super::start_server(cmd, READY, STOP, deadline).await?)
}
