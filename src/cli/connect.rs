//! `idgate connect TARGET`: the target's own client against the gateway
//! with a fresh token: psql for a PostgreSQL target, `mariadb` (or
//! `mysql`) for a MySQL one. The token travels in the client's password
//! variable (`PGPASSWORD`, `MYSQL_PWD`), never on a command line another
//! user could read; the client replaces this process, so its exit code,
//! signals and terminal are the person's as if they had started it
//! themselves.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use super::endpoint::{Endpoint, EndpointArgs, EndpointError, SslMode};
use super::settings::Protocol;
use super::token_source::{self, TokenArgs, TokenSourceError};
use crate::secret::Secret;

/// A statement started now should not lose its token halfway through login.
const MIN_VALID: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The target, as the gateway names it.
    pub target: String,
    /// The role to use; default: the one role the policy permits you.
    #[arg(long)]
    pub role: Option<String>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Arguments for the client (psql, mariadb), after `--` (e.g.
    /// `-- -c 'select 1'`, `-- -e 'select 1'`).
    #[arg(last = true, value_name = "CLIENT ARGS")]
    pub client_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot get a token: {0}")]
    Token(#[from] TokenSourceError),
    #[error("cannot run {client}: {source}")]
    Client {
        client: String,
        source: std::io::Error,
    },
    #[error("no MySQL client found (neither mariadb nor mysql is on PATH)")]
    NoMysqlClient,
}

impl ConnectError {
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            ConnectError::Endpoint(e) => e.hint(),
            ConnectError::Token(e) => e.hint(),
            ConnectError::Client { client, .. } if client == "psql" => {
                "install the PostgreSQL client (Debian: apt-get install postgresql-client)".into()
            }
            ConnectError::Client { .. } | ConnectError::NoMysqlClient => {
                "install the MariaDB client (Debian: apt-get install mariadb-client) or MySQL's"
                    .into()
            }
        }
    }

    /// 2 for usage errors, 1 for failures.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            ConnectError::Endpoint(e) => e.exit_code(),
            ConnectError::Token(e) => e.exit_code(),
            ConnectError::Client { .. } | ConnectError::NoMysqlClient => 1,
        }
    }
}

/// The client command for `args`, with a token from its token source.
async fn client(args: &ConnectArgs) -> Result<Command, ConnectError> {
    let settings = args.endpoint.settings().map_err(EndpointError::from)?;
    let endpoint = Endpoint::new(&settings, &args.target, args.endpoint.sslmode)?;
    // Find the client before fetching a token that would go unused.
    let mysql = match endpoint.protocol {
        Protocol::Postgres => None,
        Protocol::Mysql => Some(MysqlClient::find().await?),
    };
    let token = token_source::from_args(&args.tokens, &settings)
        .token(MIN_VALID)
        .await?;
    Ok(match mysql {
        None => psql(args, &endpoint, &token),
        Some(client) => client.command(args, &endpoint, &token),
    })
}

fn psql(args: &ConnectArgs, endpoint: &Endpoint, token: &Secret) -> Command {
    let mut psql = Command::new("psql");
    psql.args(&args.client_args)
        .env("PGHOST", &endpoint.host)
        .env("PGPORT", endpoint.port.to_string())
        .env("PGDATABASE", &args.target)
        .env("PGSSLMODE", endpoint.sslmode.as_libpq())
        .env("PGPASSWORD", token.expose());
    if let Some(role) = &args.role {
        psql.env("PGUSER", role);
    }
    if let Some(ca) = &endpoint.ca_file {
        psql.env("PGSSLROOTCERT", ca);
    }
    psql
}

/// Whose MySQL command-line client: their TLS options differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// `mariadb`, or a `mysql` that is MariaDB's: `--ssl`,
    /// `--ssl-verify-server-cert`, `--skip-ssl`.
    Mariadb,
    /// Oracle's `mysql` (8.0 and later): `--ssl-mode`.
    Mysql,
}

/// The MySQL client found on `PATH`.
#[derive(Debug)]
struct MysqlClient {
    path: PathBuf,
    flavour: Flavour,
}

impl MysqlClient {
    /// `mariadb`, else `mysql` (asked whether it is MariaDB's).
    async fn find() -> Result<MysqlClient, ConnectError> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        if let Some(path) = on_path(&path_var, "mariadb") {
            return Ok(MysqlClient {
                path,
                flavour: Flavour::Mariadb,
            });
        }
        let path = on_path(&path_var, "mysql").ok_or(ConnectError::NoMysqlClient)?;
        let version = tokio::process::Command::new(&path)
            .arg("--version")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| ConnectError::Client {
                client: path.display().to_string(),
                source,
            })?;
        let flavour = if String::from_utf8_lossy(&version.stdout).contains("MariaDB") {
            Flavour::Mariadb
        } else {
            Flavour::Mysql
        };
        Ok(MysqlClient { path, flavour })
    }

    /// The client against `endpoint`, in `args.target` as `args.role`,
    /// the token given as a clear-text password over TLS (as the gateway
    /// asks), the person's own arguments last so that they may add to or
    /// override these; except the option-file options, which the client
    /// takes only first.
    fn command(&self, args: &ConnectArgs, endpoint: &Endpoint, token: &Secret) -> Command {
        let first = args
            .client_args
            .iter()
            .take_while(|a| is_option_file_arg(a))
            .count();
        let (first, rest) = args.client_args.split_at(first);
        let mut cmd = Command::new(&self.path);
        cmd.args(first)
            .args(mysql_args(self.flavour, args, endpoint))
            .args(rest)
            .env("MYSQL_PWD", token.expose());
        cmd
    }
}

/// `--no-defaults`, `--defaults-file=…` and the like: MySQL's and
/// MariaDB's clients read them only as their first arguments.
fn is_option_file_arg(arg: &str) -> bool {
    arg == "--no-defaults" || arg == "--print-defaults" || arg.starts_with("--defaults-")
}

/// Everything but the person's own arguments: never the token.
fn mysql_args(flavour: Flavour, args: &ConnectArgs, endpoint: &Endpoint) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::with_capacity(10);
    // Oracle's client sends a clear-text password only when told to;
    // MariaDB's always may, and warns (on standard output) that the
    // option is obsolete.
    if flavour == Flavour::Mysql {
        out.push("--enable-cleartext-plugin".into());
    }
    out.extend([
        // TCP even for `localhost`, which would otherwise be a socket.
        "--protocol=TCP".into(),
        format!("--host={}", endpoint.host).into(),
        format!("--port={}", endpoint.port).into(),
        format!("--database={}", args.target).into(),
    ]);
    if let Some(role) = &args.role {
        out.push(format!("--user={role}").into());
    }
    let ca = endpoint.ca_file.as_deref().map(|ca| {
        let mut arg = OsString::from("--ssl-ca=");
        arg.push(ca);
        arg
    });
    match (flavour, endpoint.sslmode) {
        (Flavour::Mariadb, SslMode::Disable) => out.push("--skip-ssl".into()),
        (Flavour::Mariadb, SslMode::Require) => {
            out.extend(["--ssl".into(), "--skip-ssl-verify-server-cert".into()]);
        }
        (Flavour::Mariadb, SslMode::VerifyFull) => {
            out.extend(["--ssl".into(), "--ssl-verify-server-cert".into()]);
            out.extend(ca);
        }
        (Flavour::Mysql, SslMode::Disable) => out.push("--ssl-mode=DISABLED".into()),
        (Flavour::Mysql, SslMode::Require) => out.push("--ssl-mode=REQUIRED".into()),
        (Flavour::Mysql, SslMode::VerifyFull) => {
            out.push("--ssl-mode=VERIFY_IDENTITY".into());
            out.extend(ca);
        }
    }
    out
}

/// `name` in one of the directories of `path_var`, if it is an executable
/// file there.
fn on_path(path_var: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file() || p.with_extension("exe").is_file()
}

fn program(cmd: &Command) -> String {
    Path::new(cmd.get_program())
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Replaces this process with the client; returns only if it cannot start.
#[cfg(unix)]
pub async fn run(args: ConnectArgs) -> Result<ExitCode, ConnectError> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = client(&args).await?;
    let source = cmd.exec();
    Err(ConnectError::Client {
        client: program(&cmd),
        source,
    })
}

/// Runs the client and exits with its exit code.
#[cfg(not(unix))]
pub async fn run(args: ConnectArgs) -> Result<ExitCode, ConnectError> {
    let mut cmd = client(&args).await?;
    let status = cmd.status().map_err(|source| ConnectError::Client {
        client: program(&cmd),
        source,
    })?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Overrides, Settings};

    /// The gateway on loopback, its MySQL port; with a CA file when
    /// `with_ca` (it must exist for a verifying endpoint to be built).
    fn endpoint(sslmode: SslMode, with_ca: bool) -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        if with_ca {
            let (cert, _) = crate::tls::self_signed(&["localhost"]).unwrap();
            std::fs::write(&ca, cert).unwrap();
        }
        let settings = Settings::load_with(
            Overrides {
                gateway: Some("127.0.0.1".into()),
                protocol: Some(Protocol::Mysql),
                ca_file: with_ca.then_some(ca),
                ..Overrides::default()
            },
            &|k| (k == "HOME").then(|| dir.path().display().to_string()),
        )
        .unwrap();
        Endpoint::new(&settings, "shop", sslmode).unwrap()
    }

    fn args(role: Option<&str>) -> ConnectArgs {
        ConnectArgs {
            target: "shop".into(),
            role: role.map(Into::into),
            endpoint: EndpointArgs {
                profile: None,
                gateway: None,
                port: None,
                protocol: None,
                ca_file: None,
                sslmode: SslMode::VerifyFull,
            },
            tokens: TokenArgs {
                token_command: None,
            },
            client_args: vec!["--no-defaults".into(), "-e".into(), "select 1".into()],
        }
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn mariadb_gets_cleartext_tls_and_the_target_but_never_the_token() {
        let e = endpoint(SslMode::VerifyFull, true);
        let got = strings(mysql_args(Flavour::Mariadb, &args(Some("reader")), &e));
        let ca = format!("--ssl-ca={}", e.ca_file.as_ref().unwrap().display());
        assert_eq!(
            got,
            [
                "--protocol=TCP",
                "--host=127.0.0.1",
                "--port=3307",
                "--database=shop",
                "--user=reader",
                "--ssl",
                "--ssl-verify-server-cert",
                ca.as_str(),
            ]
        );
        let cmd = MysqlClient {
            path: "/usr/bin/mariadb".into(),
            flavour: Flavour::Mariadb,
        }
        .command(&args(None), &e, &Secret::new("eyJtoken"));
        assert!(
            cmd.get_args().all(|a| !a.to_string_lossy().contains("eyJ")),
            "{cmd:?}"
        );
        assert!(
            cmd.get_envs()
                .any(|(k, v)| k == "MYSQL_PWD" && v == Some("eyJtoken".as_ref()))
        );
        assert_eq!(cmd.get_args().last().unwrap(), "select 1");
        assert_eq!(cmd.get_args().next().unwrap(), "--no-defaults");

        let plain = strings(mysql_args(
            Flavour::Mariadb,
            &args(None),
            &endpoint(SslMode::Disable, false),
        ));
        assert!(plain.contains(&"--skip-ssl".to_owned()), "{plain:?}");
        assert!(!plain.iter().any(|a| a.starts_with("--user")), "{plain:?}");
    }

    #[test]
    fn oracle_mysql_gets_ssl_mode() {
        for (mode, want) in [
            (SslMode::Disable, "--ssl-mode=DISABLED"),
            (SslMode::Require, "--ssl-mode=REQUIRED"),
            (SslMode::VerifyFull, "--ssl-mode=VERIFY_IDENTITY"),
        ] {
            let got = strings(mysql_args(
                Flavour::Mysql,
                &args(None),
                &endpoint(mode, false),
            ));
            assert!(got.contains(&want.to_owned()), "{got:?}");
            assert_eq!(got[0], "--enable-cleartext-plugin");
            assert!(
                !got.iter().any(|a| a.starts_with("--ssl-verify")),
                "{got:?}"
            );
        }
    }

    #[test]
    fn plain_text_is_refused_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load_with(
            Overrides {
                gateway: Some("gw.example.com".into()),
                ..Overrides::default()
            },
            &|k| (k == "HOME").then(|| dir.path().display().to_string()),
        )
        .unwrap();
        let e = Endpoint::new(&settings, "shop", SslMode::Disable).unwrap_err();
        assert!(matches!(e, EndpointError::PlaintextOffLoopback(_)), "{e}");
        assert_eq!(e.exit_code(), 2);
        for host in ["localhost", "127.0.0.1", "::1"] {
            let mut settings = settings.clone();
            settings.gateway = Some(host.into());
            assert!(Endpoint::new(&settings, "shop", SslMode::Disable).is_ok());
        }
    }
}
