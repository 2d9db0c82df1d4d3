//! `idgate tunnel` (the real binary) started for a test, and the local
//! port it says it serves.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `idgate tunnel`.
pub struct TunnelProcess {
    /// Dropping it stops the tunnel.
    _child: Child,
    pub port: u16,
    /// The line it printed.
    pub greeting: String,
}

/// `idgate tunnel ARGS`, logging at `IDGATE_LOG=log`, once it says where
/// it listens.
pub async fn start(args: &[String], log: &str) -> TunnelProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idgate"))
        .arg("tunnel")
        .args(args)
        .env("IDGATE_LOG", log)
        .env_remove("IDGATE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("idgate tunnel runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let greeting = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the tunnel says where it listens")
        .expect("read")
        .expect("a line");
    let port = greeting
        .split("ready on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {greeting:?}"));
    TunnelProcess {
        _child: child,
        port,
        greeting,
    }
}
