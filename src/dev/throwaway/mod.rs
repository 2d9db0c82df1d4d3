//! Throwaway database servers for `idgate dev` when none answers: the
//! machine's own server binaries on a fresh temporary directory and a free
//! loopback port (`postgres`, `mariadb`). Dropping one stops the server and
//! removes the directory. What both need of a server process lives here:
//! who it runs as, starting it and waiting for its own word that it is
//! ready, and stopping it.

mod mariadb;
mod postgres;

pub use mariadb::{ADMIN_USER as MARIADB_ADMIN_USER, MariadbError, ThrowawayMariadb};
pub use postgres::{ThrowawayError, ThrowawayPostgres};

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use tokio::sync::oneshot;

/// How long setting up plus start may take on a slow, shared machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// A clean shutdown takes well under this; past it the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts that lose their port to another process before binding it.
const PORT_ATTEMPTS: usize = 3;
/// Log lines kept to explain a failed start.
const LOG_TAIL: usize = 15;

/// Who a server runs as.
enum ServerUser {
    /// This process's own user (it is not root).
    Me,
    /// Root runs it as this unprivileged user.
    Other(User),
    /// Root, and none of the users asked for exists.
    Missing,
}

impl ServerUser {
    /// Database servers refuse to run as root: then the first of `names`
    /// that exists and is not root.
    fn pick(names: &[&str]) -> nix::Result<ServerUser> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(ServerUser::Me);
        }
        for name in names {
            if let Some(user) = User::from_name(name)?.filter(|u| !u.uid.is_root()) {
                return Ok(ServerUser::Other(user));
            }
        }
        Ok(ServerUser::Missing)
    }

    fn user(&self) -> Option<&User> {
        match self {
            ServerUser::Other(u) => Some(u),
            ServerUser::Me | ServerUser::Missing => None,
        }
    }

    /// Hand `path` (made by this process) to the server's user.
    fn give(&self, path: &Path) -> std::io::Result<()> {
        match self.user() {
            Some(u) => std::os::unix::fs::chown(path, Some(u.uid.as_raw()), Some(u.gid.as_raw())),
            None => Ok(()),
        }
    }
}

/// The directory holding every one of `programs`: the first on PATH that
/// has them all, else the first of `extra` (directories off PATH where
/// distributions keep server binaries) that does.
fn find_binaries(programs: &[&str], extra: &[PathBuf]) -> Option<PathBuf> {
    let has_all = |dir: &Path| programs.iter().all(|p| dir.join(p).is_file());
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .find(|d| has_all(d))
}

/// The first `program` on PATH or in `extra`.
fn find_program(program: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A command for one of a server's programs, run as `user` when set, from
/// `dir` (the caller's working directory may be closed to that user).
fn server_command(program: &Path, dir: &Path, user: &ServerUser) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).stdin(Stdio::null());
    if let Some(u) = user.user() {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    cmd
}

/// A free loopback port (bound, then let go: the server may lose it to
/// another process, hence `PORT_ATTEMPTS`).
fn free_port() -> std::io::Result<u16> {
    Ok(
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}

/// Why a server did not start.
enum StartFailure {
    /// It stopped, or its log ended: its last log lines.
    Stopped(String),
    Timeout,
    Io(std::io::Error),
}

/// Spawn `cmd` (its stderr is the server's log) in a process group of its
/// own, so that a Ctrl-C at the terminal reaches idgate, which stops the
/// gateway first and then the server; wait for the log line containing
/// `ready`. The log goes on to `IDGATE_LOG=debug`.
async fn start_server(
    mut cmd: Command,
    ready: &'static str,
    stop_signal: Signal,
    deadline: tokio::time::Instant,
) -> Result<Child, StartFailure> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut server = cmd.spawn().map_err(StartFailure::Io)?;
    let stderr = server.stderr.take().expect("stderr is piped");
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::spawn(move || watch_log(stderr, ready, ready_tx));
    let failure = match tokio::time::timeout_at(deadline, ready_rx).await {
        Ok(Ok(Ok(()))) => return Ok(server),
        Ok(Ok(Err(log))) => StartFailure::Stopped(log),
        Ok(Err(_)) => StartFailure::Stopped("its log ended unread".into()),
        Err(_) => StartFailure::Timeout,
    };
    stop(&mut server, stop_signal);
    Err(failure)
}

/// Reads the server's log: says when it is ready (or, if the log ends
/// first, its last lines), then keeps draining it so the server never
/// blocks on a full pipe.
fn watch_log(
    stderr: std::process::ChildStderr,
    marker: &str,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut recent = std::collections::VecDeque::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        tracing::debug!(target: "idgate::dev::throwaway", "{line}");
        if ready.is_none() {
            continue;
        }
        if line.contains(marker) {
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

/// Ask the server to shut down with `signal`, kill it if that takes too
/// long; waits until the server is gone.
fn stop(server: &mut Child, signal: Signal) {
    if matches!(server.try_wait(), Ok(Some(_))) {
        return;
    }
    let Ok(raw) = i32::try_from(server.id()) else {
        return;
    };
    let _ = kill(Pid::from_raw(raw), signal);
    let start = Instant::now();
    while start.elapsed() < STOP_TIMEOUT {
        if !matches!(server.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!("a throwaway server did not stop within {STOP_TIMEOUT:?}; killing it");
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

/// A fresh random password, hex.
pub(in crate::dev) fn random_password() -> crate::secret::Secret {
    let mut raw = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
    crate::secret::Secret::new(hex::encode(raw))
}
