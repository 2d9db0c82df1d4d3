//! A throwaway PostgreSQL for `idgate dev` when none answers: the machine's
//! own server binaries, `initdb` into a fresh temporary directory, a free
//! loopback port with the socket in that directory. Dropping it stops the
//! server and removes the directory.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use tokio::sync::oneshot;

use crate::secret::Secret;

/// The server's own line once it accepts connections (with `lc_messages=C`).
const READY: &str = "database system is ready to accept connections";
/// How long initdb plus start may take on a slow, shared machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A fast shutdown takes well under this; past it the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts that lose their port to another process before binding it.
const PORT_ATTEMPTS: usize = 3;
/// Log lines kept to explain a failed start.
const LOG_TAIL: usize = 15;

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
        let user = unprivileged_user()?;
        let dir = tempfile::Builder::new()
            .prefix("idgate-dev-pg-")
            .tempdir()?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(dir.path(), Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
        }
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let password = initdb(&bin, dir.path(), user.as_ref()).await?;
        let mut attempts = 1;
        loop {
            let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            match run_server(&bin, dir.path(), port, user.as_ref(), deadline).await {
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
                    if attempts < PORT_ATTEMPTS && log.contains("could not bind") =>
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
        stop(&mut self.server);
    }
}

/// The directory holding `initdb` and `postgres`: the first on PATH that
/// has both, else the newest `/usr/lib/postgresql/VERSION/bin` (Debian
/// keeps the server binaries there, off PATH).
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
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
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// PostgreSQL refuses to run as root: then the server runs as `postgres`
/// (Debian's package makes it), or else `nobody`.
fn unprivileged_user() -> Result<Option<User>, ThrowawayError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = User::from_name(name)?.filter(|u| !u.uid.is_root()) {
            return Ok(Some(user));
        }
    }
    Err(ThrowawayError::NoUnprivilegedUser)
}

/// A command for one of the server binaries, run as `user` when set, from
/// `dir` (the caller's working directory may be closed to that user).
fn server_command(bin: &Path, program: &str, dir: &Path, user: Option<&User>) -> Command {
    let mut cmd = Command::new(bin.join(program));
    cmd.current_dir(dir).stdin(Stdio::null());
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    cmd
}

/// A cluster in `DIR/data` whose superuser is `postgres`, with a fresh
/// random password over TCP: any local user can reach a loopback port, and
/// a superuser runs programs as the server's OS user (when idgate runs as
/// root, the `postgres` that owns the machine's own clusters). Its socket,
/// in a directory only that user can enter, trusts.
async fn initdb(bin: &Path, dir: &Path, user: Option<&User>) -> Result<Secret, ThrowawayError> {
    let mut raw = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
    let password = Secret::new(hex::encode(raw));
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, password.expose())?;
    if let Some(u) = user {
        std::os::unix::fs::chown(&pwfile, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
    }
    let mut cmd = server_command(bin, "initdb", dir, user);
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
        output: tail(text.lines()),
    })
}

/// Start the server on `port` and wait for its own word that it accepts
/// connections. Its log goes on to `IDGATE_LOG=debug`.
async fn run_server(
    bin: &Path,
    dir: &Path,
    port: u16,
    user: Option<&User>,
    deadline: tokio::time::Instant,
) -> Result<Child, ThrowawayError> {
    let mut cmd = server_command(bin, "postgres", dir, user);
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "lc_messages=C"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal reaches idgate,
        // which stops the gateway first and then the server.
        .process_group(0);
    let mut server = cmd.spawn()?;
    let stderr = server.stderr.take().expect("stderr is piped");
    let (ready_tx, ready) = oneshot::channel();
    std::thread::spawn(move || watch_log(stderr, ready_tx));
    match tokio::time::timeout_at(deadline, ready).await {
        Ok(Ok(Ok(()))) => Ok(server),
        Ok(Ok(Err(log))) => {
            stop(&mut server);
            Err(ThrowawayError::Start { log })
        }
        Ok(Err(_)) => {
            stop(&mut server);
            Err(ThrowawayError::Start {
                log: "its log ended unread".into(),
            })
        }
        Err(_) => {
            stop(&mut server);
            Err(ThrowawayError::Timeout)
        }
    }
}

/// Reads the server's log: says when it is ready (or, if the log ends
/// first, its last lines), then keeps draining it so the server never
/// blocks on a full pipe.
fn watch_log(stderr: std::process::ChildStderr, ready: oneshot::Sender<Result<(), String>>) {
    let mut ready = Some(ready);
    let mut recent = std::collections::VecDeque::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        tracing::debug!(target: "idgate::dev::throwaway", "{line}");
        if ready.is_none() {
            continue;
        }
        if line.contains(READY) {
            if let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
            continue;
        }
        recent.push_back(line);
        if recent.len() > LOG_TAIL {
            recent.pop_front();
        }
    }
    if let Some(tx) = ready {
        let _ = tx.send(Err(tail(recent.iter().map(String::as_str))));
    }
}

/// A fast shutdown (SIGINT: clients are disconnected, nothing is waited
/// for), killed if it takes too long; waits until the server is gone.
fn stop(server: &mut Child) {
    if matches!(server.try_wait(), Ok(Some(_))) {
        return;
    }
    let Ok(raw) = i32::try_from(server.id()) else {
        return;
    };
    let _ = kill(Pid::from_raw(raw), Signal::SIGINT);
    let start = Instant::now();
    while start.elapsed() < STOP_TIMEOUT {
        if !matches!(server.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!("the throwaway PostgreSQL did not stop within {STOP_TIMEOUT:?}; killing it");
    let _ = server.kill();
    let _ = server.wait();
}

/// The last lines of a log, on one line.
fn tail<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> String {
    let mut last: Vec<&str> = lines
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(LOG_TAIL)
        .collect();
    last.reverse();
    last.join(" | ")
}
