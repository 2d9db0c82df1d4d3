//! A throwaway MariaDB: `mariadb-install-db` into a fresh temporary
//! directory, `mariadbd` on a free loopback port with its socket in that
//! directory, and an admin login over TCP with a fresh random password.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;

use nix::sys::signal::Signal;

use super::{START_TIMEOUT, ServerUser, StartFailure};
use crate::secret::Secret;

/// The server's own line once it accepts connections.
const READY: &str = "ready for connections";
/// A normal shutdown.
const STOP: Signal = Signal::SIGTERM;
/// The admin login the trial gets, over TCP from loopback only.
pub const ADMIN_USER: &str = "root";
/// Where Debian keeps `mariadbd`, off an ordinary user's PATH.
const SERVER_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];

#[derive(Debug, thiserror::Error)]
pub enum MariadbError {
    #[error(
        "no MariaDB server binaries (mariadb-install-db, mariadbd) on PATH or in /usr/sbin\n  \
         hint: install mariadb-server (Debian: apt-get install mariadb-server), or pass --mysql-upstream"
    )]
    NoServerBinaries,
    #[error(
        "MariaDB refuses to run as root, and there is no `mysql` or `nobody` user to run it as\n  \
         hint: create a `mysql` user (useradd --system mysql), or pass --mysql-upstream"
    )]
    NoUnprivilegedUser,
    #[error(
        "mariadb-install-db failed ({status}): {output}\n  hint: pass --mysql-upstream to use a running MariaDB"
    )]
    InstallDb {
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "the throwaway MariaDB stopped while starting: {log}\n  \
         hint: pass --mysql-upstream to use a running MariaDB"
    )]
    Start { log: String },
    #[error(
        "the throwaway MariaDB did not accept connections within {}s\n  \
         hint: pass --mysql-upstream to use a running MariaDB",
        START_TIMEOUT.as_secs()
    )]
    Timeout,
    #[error("throwaway MariaDB: {0}")]
    Io(#[from] std::io::Error),
    #[error("throwaway MariaDB: {0}")]
    Os(#[from] nix::Error),
}

impl From<StartFailure> for MariadbError {
    fn from(f: StartFailure) -> Self {
        match f {
            StartFailure::Stopped(log) => MariadbError::Start { log },
            StartFailure::Timeout => MariadbError::Timeout,
            StartFailure::Io(e) => MariadbError::Io(e),
        }
    }
}

/// A running throwaway server; dropping it stops the server and removes
/// its directory.
pub struct ThrowawayMariadb {
    server: Child,
    port: u16,
    /// Of its admin login `root`@`127.0.0.1`.
    password: Secret,
    /// Declared after `server`: removed only once the server is stopped.
    dir: tempfile::TempDir,
}

/// `mariadb-install-db` and `mariadbd`.
struct Binaries {
    install_db: PathBuf,
    server: PathBuf,
}

impl ThrowawayMariadb {
    pub async fn start() -> Result<Self, MariadbError> {
        let extra: Vec<PathBuf> = SERVER_DIRS.iter().map(PathBuf::from).collect();
        let bin = Binaries {
            install_db: super::find_program("mariadb-install-db", &extra)
                .ok_or(MariadbError::NoServerBinaries)?,
            server: super::find_program("mariadbd", &extra)
                .ok_or(MariadbError::NoServerBinaries)?,
        };
        // mariadbd refuses to run as root: then as `mysql` (Debian's
        // package makes it), or else `nobody`.
        let user = ServerUser::pick(&["mysql", "nobody"])?;
        if matches!(user, ServerUser::Missing) {
            return Err(MariadbError::NoUnprivilegedUser);
        }
        let dir = tempfile::Builder::new()
            .prefix("idgate-dev-mariadb-")
            .tempdir()?;
        user.give(dir.path())?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        install_db(&bin, dir.path(), &user).await?;
        let password = super::random_password();
        let init = dir.path().join("init.sql");
        std::fs::write(&init, init_sql(&password))?;
        user.give(&init)?;
        let mut attempts = 1;
        let started = loop {
            let port = super::free_port()?;
            match run_server(&bin, dir.path(), port, &user, deadline).await {
                Ok(server) => break Ok((server, port)),
                // Another process took the free port before the server
                // bound it: take another.
                Err(MariadbError::Start { log })
                    if attempts < super::PORT_ATTEMPTS && log.contains("Bind on TCP/IP port") =>
                {
                    tracing::debug!("throwaway MariaDB lost port {port}: {log}");
                    attempts += 1;
                }
                Err(e) => break Err(e),
            }
        };
        // Read at start only; it holds the password.
        std::fs::remove_file(&init)?;
        let (server, port) = started?;
        Ok(ThrowawayMariadb {
            server,
            port,
            password,
            dir,
        })
    }

    /// Where it listens (loopback).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The password of its admin login [`ADMIN_USER`] over TCP.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// Its data and socket directory, removed when it stops.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ThrowawayMariadb {
    fn drop(&mut self) {
        super::stop(&mut self.server, STOP);
    }
}

/// The admin login over TCP: `root` from 127.0.0.1 with a fresh random
/// password (any local user can reach a loopback port). The `root` that
/// `mariadb-install-db` makes logs in only over the socket, in a
/// directory only the server's user can enter.
fn init_sql(password: &Secret) -> String {
    format!(
        "CREATE OR REPLACE USER '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION;\n",
        password.expose()
    )
}

/// The system tables in `DIR/data`, read by a server with
/// `--skip-name-resolve` (host names in grants are IP addresses).
async fn install_db(bin: &Binaries, dir: &Path, user: &ServerUser) -> Result<(), MariadbError> {
    let mut cmd = super::server_command(&bin.install_db, dir, user);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .args(["--skip-test-db", "--skip-name-resolve"]);
    let out = tokio::process::Command::from(cmd).output().await?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Err(MariadbError::InstallDb {
        status: out.status,
        output: super::tail(text.lines()),
    })
}

/// Start the server on `port` and wait for its own word that it accepts
/// connections. No configuration file is read: the machine's own
/// server's settings (port, socket, data directory) are not the
/// throwaway's.
async fn run_server(
    bin: &Binaries,
    dir: &Path,
    port: u16,
    user: &ServerUser,
    deadline: tokio::time::Instant,
) -> Result<Child, MariadbError> {
    let mut cmd = super::server_command(&bin.server, dir, user);
    // --no-defaults must come first.
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg(format!("--init-file={}", dir.join("init.sql").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--lc-messages=en_US",
            // Throwaway data: fewer fsyncs.
            "--innodb-flush-log-at-trx-commit=0",
        ]);
    Ok(super::start_server(cmd, READY, STOP, deadline).await?)
}
