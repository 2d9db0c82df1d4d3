//! `idgate connect TARGET`: psql against the gateway with a fresh token.
//! The token travels in `PGPASSWORD`, never on a command line another user
//! could read; psql replaces this process, so its exit code, signals and
//! terminal are the person's as if they had started it themselves.

use std::process::ExitCode;
use std::time::Duration;

use super::endpoint::{Endpoint, EndpointArgs, EndpointError};
use super::token_source::{self, TokenArgs, TokenSourceError};

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
    /// Arguments for psql, after `--` (e.g. `-- -c 'select 1'`).
    #[arg(last = true, value_name = "PSQL ARGS")]
    pub psql_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot get a token: {0}")]
    Token(#[from] TokenSourceError),
    #[error("cannot run psql: {0}")]
    Psql(std::io::Error),
}

impl ConnectError {
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            ConnectError::Endpoint(e) => e.hint(),
            ConnectError::Token(e) => e.hint(),
            ConnectError::Psql(_) => {
                "install the PostgreSQL client (Debian: apt-get install postgresql-client)".into()
            }
        }
    }

    /// 2 for usage errors, 1 for failures.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            ConnectError::Endpoint(e) => e.exit_code(),
            ConnectError::Token(e) => e.exit_code(),
            ConnectError::Psql(_) => 1,
        }
    }
}

/// The psql command for `args`, with a token from its token source.
async fn psql(args: &ConnectArgs) -> Result<std::process::Command, ConnectError> {
    let settings = args.endpoint.settings().map_err(EndpointError::from)?;
    let endpoint = Endpoint::new(&settings, args.endpoint.sslmode)?;
    let token = token_source::from_args(&args.tokens, &settings)
        .token(MIN_VALID)
        .await?;
    let mut psql = std::process::Command::new("psql");
    psql.args(&args.psql_args)
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
    Ok(psql)
}

/// Replaces this process with psql; returns only if it cannot start.
#[cfg(unix)]
pub async fn run(args: ConnectArgs) -> Result<ExitCode, ConnectError> {
    use std::os::unix::process::CommandExt as _;
    let mut psql = psql(&args).await?;
    Err(ConnectError::Psql(psql.exec()))
}

/// Runs psql and exits with its exit code.
#[cfg(not(unix))]
pub async fn run(args: ConnectArgs) -> Result<ExitCode, ConnectError> {
    let status = psql(&args).await?.status().map_err(ConnectError::Psql)?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}
