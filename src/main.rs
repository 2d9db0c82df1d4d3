//! Command line: one function per command. Errors leave as one line plus a
//! hint; exit code 2 for usage errors (clap), 1 for failures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand, ValueEnum};

use idgate::cli::{CliError, Overrides, Settings};
use idgate::config::{Config, PoolConfig, PoolMode};

// glibc malloc showed up as a tenth of token validation time; mimalloc
// makes the many small, short-lived allocations of a proxy cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "idgate",
    version,
    about = "Identity-aware gateway: reach PostgreSQL with an OpenID Connect token"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the config and policy; exit non-zero with file:line and a hint.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Zero-config trial: development issuer + gateway in front of a local
    /// PostgreSQL and MariaDB, or of throwaway ones it starts when none
    /// will do.
    Dev {
        /// The PostgreSQL server to put the gateway in front of
        /// [default: postgres://127.0.0.1:5432]; when nothing answers
        /// there, a throwaway server from the machine's PostgreSQL binaries
        /// stands in.
        #[arg(long)]
        upstream: Option<String>,
        /// Where the gateway listens for PostgreSQL clients.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: SocketAddr,
        /// An admin login of the MySQL/MariaDB server to put the gateway in
        /// front of, and the database to make for the trial
        /// [default: mysql://root@127.0.0.1:3306/idgate_dev]; when nothing
        /// answers there, a throwaway server from the machine's MariaDB
        /// binaries stands in.
        #[arg(long, value_name = "URL")]
        mysql_upstream: Option<String>,
        /// Where the gateway listens for MySQL clients.
        #[arg(long, value_name = "ADDR", default_value = idgate::dev::mariadb::DEFAULT_LISTEN)]
        mysql_listen: SocketAddr,
        /// Serve PostgreSQL only.
        #[arg(long, conflicts_with_all = ["mysql_upstream", "mysql_listen"])]
        no_mysql: bool,
        /// Most client connections at once; more get SQLSTATE 53300.
        #[arg(long, default_value_t = 1000)]
        max_connections: usize,
        /// How clients share upstream connections.
        #[arg(long, value_enum, default_value = "session")]
        pool_mode: PoolModeArg,
        /// Most upstream connections per role.
        #[arg(
            long,
            default_value_t = PoolConfig::default().max_size,
            value_parser = RangedU64ValueParser::<usize>::new().range(1..),
        )]
        pool_size: usize,
        /// Discard audit events instead of writing them: only for measuring
        /// what the audit trail costs.
        #[arg(long)]
        no_audit: bool,
        /// Runtime threads; 0 is one per CPU core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Live sessions, through a gateway's admin API.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a subject, a login session (sid) or a token (jti): live
    /// sessions end at once, older tokens are refused.
    Revoke {
        #[command(flatten)]
        what: RevokeWhat,
        /// The configured issuer name; needed when several are configured.
        #[arg(long)]
        issuer: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Sign in at your identity provider and cache the tokens: a browser
    /// (authorization code + PKCE on a loopback redirect), or a device code.
    Login {
        #[command(flatten)]
        who: ClientArgs,
        /// Sign in with a device code (on any device), not on this machine's browser.
        #[arg(long)]
        device: bool,
        /// Print the sign-in URL instead of opening a browser.
        #[arg(long, conflicts_with = "device")]
        no_browser: bool,
        /// A scope to ask for besides the configured ones (repeatable).
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
    },
    /// Print a currently valid token (refreshed first when it expires within
    /// 60 s); `idgate token inspect` decodes and judges one.
    #[command(args_conflicts_with_subcommands = true)]
    Token {
        #[command(subcommand)]
        command: Option<TokenCommand>,
        #[command(flatten)]
        who: ClientArgs,
    },
    /// Revoke the cached refresh token at the issuer and delete the cache entry.
    Logout {
        #[command(flatten)]
        who: ClientArgs,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run psql, or mariadb/mysql for a MySQL target, against the gateway
    /// with a fresh token.
    Connect(idgate::cli::connect::ConnectArgs),
    /// A local listener for clients that cannot hold a token: they connect
    /// without a password; the tunnel logs in to the gateway with a fresh
    /// token and keeps sessions alive past the token's expiry.
    Tunnel(idgate::cli::tunnel::TunnelArgs),
}

/// Which issuer and client: flags over `IDGATE_*` variables over
/// `~/.config/idgate/config.toml`.
#[derive(clap::Args)]
struct ClientArgs {
    /// The issuer's URL, or the name of a profile in config.toml.
    #[arg(long, value_name = "URL|NAME")]
    issuer: Option<String>,
    /// The OAuth client id registered at the issuer for idgate.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// A `[profiles.NAME]` section of config.toml (or IDGATE_PROFILE).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

impl ClientArgs {
    fn settings(self, extra_scopes: Vec<String>) -> Result<Settings, CliError> {
        Settings::load(Overrides {
            profile: self.profile,
            issuer: self.issuer,
            client_id: self.client_id,
            extra_scopes,
            ..Overrides::default()
        })
    }
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Every live session (of every gateway, when they share a cluster).
    List,
    /// End one session now; its client gets SQLSTATE 57P01.
    Kill { id: String },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The gateway's admin API (its `admin_listen`).
    #[arg(
        long,
        global = true,
        env = "IDGATE_ADMIN",
        default_value = "http://127.0.0.1:8081"
    )]
    admin: String,
    /// A bearer token allowed to administer; `-` reads it from stdin.
    #[arg(long, global = true, env = "IDGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RevokeWhat {
    /// Every token and session of this subject (`sub`).
    #[arg(long)]
    subject: Option<String>,
    /// One login session at the identity provider (`sid`).
    #[arg(long)]
    sid: Option<String>,
    /// One token (`jti`).
    #[arg(long)]
    jti: Option<String>,
    /// One gateway session, by the id `idgate sessions list` shows.
    #[arg(long)]
    session: Option<String>,
}

/// `PoolMode` as a command-line value; the config type stays free of clap.
#[derive(Clone, Copy, ValueEnum)]
enum PoolModeArg {
    Session,
    Transaction,
}

impl From<PoolModeArg> for PoolMode {
    fn from(mode: PoolModeArg) -> Self {
        match mode {
            PoolModeArg::Session => PoolMode::Session,
            PoolModeArg::Transaction => PoolMode::Transaction,
        }
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The decisions the gateway would make for a token on a target, with
    /// the policy ids behind them. Exit 0 when everything asked is
    /// allowed, 1 when anything is denied or the token is refused.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        /// The token, validated as the gateway would; `-` reads it from
        /// stdin, which keeps it out of the process list.
        #[arg(long)]
        token: String,
        /// The target, as a client sends it in `dbname`.
        #[arg(long)]
        target: String,
        /// The role, as a client sends it in `user`; without it, the only
        /// role the policy permits, as the gateway picks it.
        #[arg(long)]
        role: Option<String>,
        /// SQL to classify and decide statement by statement.
        #[arg(long)]
        sql: Option<String>,
        /// Decide as at this time (RFC 3339, e.g. 2025-01-06T10:00:00Z)
        /// for time-of-day policies; the token is still checked now.
        #[arg(long, value_parser = idgate::policy::explain::parse_rfc3339)]
        at: Option<time::OffsetDateTime>,
        /// The client address policies see (`context.client_ip`).
        #[arg(long)]
        client_ip: Option<std::net::IpAddr>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Decode a token and say, check by check, whether the gateway would
    /// accept it. Exit 0 only when it would.
    Inspect {
        /// The token, or `-` (the default) to read it from stdin, which
        /// keeps it out of the process list and shell history.
        token: Option<String>,
        /// The gateway config whose issuers judge the token; without it
        /// the token is only decoded.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit file and its seal; fails on any
    /// edited, deleted, reordered or cut-off line, a forged seal, or the
    /// wrong key.
    Verify {
        file: PathBuf,
        /// File holding the audit key ([audit] key_file); required for a
        /// keyed chain.
        #[arg(long, value_name = "FILE", conflicts_with = "key_env")]
        key_file: Option<PathBuf>,
        /// Environment variable holding the audit key ([audit] key_env).
        #[arg(long, value_name = "VAR")]
        key_env: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IDGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // `serve` reads its config before the runtime exists: the config says
    // how many threads the runtime gets.
    let (threads, config) = match &cli.command {
        Command::Serve { config } => match Config::load(config) {
            Ok(c) => (c.gateway.threads, Some(c)),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        Command::Dev { threads, .. } => (*threads, None),
        _ => (0, None),
    };
    let runtime = match build_runtime(threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One thread gets the single-threaded scheduler: no work stealing and no
/// cross-thread wakeups, which on a small machine shared with the database
/// costs less CPU per statement than two threads do.
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        0 => tokio::runtime::Runtime::new(),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

async fn run(command: Command, loaded: Option<Config>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = match loaded {
                Some(c) => c,
                None => Config::load(&config)?,
            };
            serve(config).await.map(|()| ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => check_config(config).await.map(|()| ExitCode::SUCCESS),
        Command::Dev {
            upstream,
            listen,
            mysql_upstream,
            mysql_listen,
            no_mysql,
            max_connections,
            pool_mode,
            pool_size,
            no_audit,
            threads,
        } => idgate::dev::trial::run(
            idgate::dev::trial::TrialOptions {
                upstream,
                listen,
                mysql: (!no_mysql).then_some(idgate::dev::trial::MysqlOptions {
                    upstream: mysql_upstream,
                    listen: mysql_listen,
                }),
                max_connections,
                pool: PoolConfig {
                    mode: pool_mode.into(),
                    max_size: pool_size,
                    ..PoolConfig::default()
                },
                audit: !no_audit,
                threads,
            },
            shutdown_signal(),
        )
        .await
        .map(|()| ExitCode::SUCCESS),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    key_file,
                    key_env,
                },
        } => {
            audit_verify(&file, key_file.as_deref(), key_env.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Sessions { command, admin } => {
            let client = admin_client(&admin)?;
            let out = match command {
                SessionsCommand::List => client.list().await?,
                SessionsCommand::Kill { id } => client.kill(&id).await?,
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke {
            what,
            issuer,
            admin,
        } => {
            let request = idgate::admin::RevokeRequest {
                issuer,
                subject: what.subject,
                sid: what.sid,
                jti: what.jti,
                session_id: what.session,
            };
            print!("{}", admin_client(&admin)?.revoke(&request).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: Some(TokenCommand::Inspect { token, config }),
            ..
        } => token_inspect(token.as_deref(), config).await,
        Command::Token { command: None, who } => {
            Ok(person(
                async move { idgate::cli::token::print_token(&who.settings(Vec::new())?).await },
            )
            .await)
        }
        Command::Login {
            who,
            device,
            no_browser,
            scopes,
        } => Ok(person(async move {
            let options = idgate::cli::login::LoginOptions { device, no_browser };
            idgate::cli::login::login(&who.settings(scopes)?, options).await
        })
        .await),
        Command::Logout { who } => {
            Ok(
                person(
                    async move { idgate::cli::logout::logout(&who.settings(Vec::new())?).await },
                )
                .await,
            )
        }
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    config,
                    token,
                    target,
                    role,
                    sql,
                    at,
                    client_ip,
                },
        } => {
            let request = idgate::policy::explain::ExplainRequest {
                target,
                role,
                sql,
                at,
                client_ip,
            };
            policy_explain(config, &token, request).await
        }
        Command::Connect(args) => Ok(idgate::cli::connect::run(args)
            .await
            .unwrap_or_else(|e| person_error(&e, &e.hint(), e.exit_code()))),
        Command::Tunnel(args) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let stopping = stop.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stopping.cancel();
            });
            Ok(match idgate::cli::tunnel::run(args, stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => person_error(&e, &e.hint(), e.exit_code()),
            })
        }
    }
}

/// Runs one of the person's commands: its error is one line plus a hint,
/// with its own exit code.
async fn person(command: impl Future<Output = Result<(), CliError>>) -> ExitCode {
    match command.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}\n  hint: {}", e.hint());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints a person's command's error as one line plus a hint.
fn person_error(e: &dyn std::fmt::Display, hint: &str, code: u8) -> ExitCode {
    eprintln!("error: {e}\n  hint: {hint}");
    ExitCode::from(code)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.audit.key.is_none() {
        tracing::warn!("{}", idgate::audit::UNKEYED_WARNING);
    }
    let running = idgate::gateway::start(config).await?;
    let stop = running.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    running.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn admin_client(args: &AdminArgs) -> anyhow::Result<idgate::admin::AdminClient> {
    let Some(token) = &args.token else {
        anyhow::bail!(
            "no token\n  hint: --token TOKEN (or IDGATE_TOKEN) with a token allowed to administer"
        );
    };
    let token =
        idgate::identity::read_token(Some(token), std::io::stdin().lock()).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n  hint: --token TOKEN (or IDGATE_TOKEN), or --token - to read it from stdin"
            )
        })?;
    Ok(idgate::admin::AdminClient::new(&args.admin, token))
}

/// Also asks each read-only role's upstream user whether it can write
/// (a warning, never a failure: the database may be out of reach here).
async fn check_config(path: PathBuf) -> anyhow::Result<()> {
    let mut config = Config::load(&path)?;
    // It validates the deployment: the secrets must be there too.
    config.read_secrets()?;
    let policy = idgate::policy::PolicyEngine::load(&config.policy.file)?;
    for w in config.warnings.iter().chain(policy.warnings()) {
        println!("warning: {w}");
    }
    if config.audit.key.is_none() {
        println!("warning: {}", idgate::audit::UNKEYED_WARNING);
    }
    if let Some(tls) = &config.gateway.tls {
        idgate::tls::server_config(&tls.cert_file, &tls.key_file)?;
    }
    idgate::mysql::pool::pools(&idgate::mysql::targets(&config.targets))?;
    let pools = idgate::postgres::pools_for(&idgate::postgres::targets(&config.targets))?;
    for w in idgate::postgres::grants::read_only_roles_that_can_write(&pools, &policy).await {
        println!("warning: {w}");
    }
    println!(
        "{}: ok ({} issuer(s), {} target(s))",
        path.display(),
        config.issuers.len(),
        config.targets.len()
    );
    Ok(())
}

/// Exit 0 when the gateway would accept the token, 1 when it would not (or
/// without a config, when that cannot be judged), 2 when no token was given.
async fn token_inspect(token: Option<&str>, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let token = match idgate::identity::read_token(token, std::io::stdin().lock()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: {e}\n  hint: idgate token inspect TOKEN, or pipe it in: idgate token inspect - < token.jwt"
            );
            return Ok(ExitCode::from(2));
        }
    };
    let inspection = match config {
        Some(path) => {
            let config = Config::load(&path)?;
            let validator = idgate::identity::TokenValidator::new(config.issuers);
            validator.inspect(&token).await
        }
        None => idgate::identity::Inspection::decode_only(&token).await,
    };
    print!("{}", inspection.render());
    Ok(if inspection.accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Exit 0 when the connect and every statement are allowed, 1 when
/// anything is denied or the token is refused, 2 for a wrong argument.
async fn policy_explain(
    path: PathBuf,
    token: &str,
    request: idgate::policy::explain::ExplainRequest,
) -> anyhow::Result<ExitCode> {
    let token = match idgate::identity::read_token(Some(token), std::io::stdin().lock()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}\n  hint: --token TOKEN, or --token - to read it from stdin");
            return Ok(ExitCode::from(2));
        }
    };
    let config = Config::load(&path)?;
    let engine = idgate::policy::PolicyEngine::load(&config.policy.file)?;
    match idgate::policy::explain::explain(&config, &engine, &token, &request).await {
        Ok(explanation) => {
            print!("{}", explanation.render());
            Ok(if explanation.allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!(
                "error: {e}\n  hint: {}",
                e.hint(&path.display().to_string())
            );
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

fn audit_verify(
    file: &std::path::Path,
    key_file: Option<&std::path::Path>,
    key_env: Option<&str>,
) -> anyhow::Result<()> {
    let secret = match (key_file, key_env) {
        (Some(path), _) => Some(
            idgate::config::read_secret_file(path)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read audit key file {}: {e}\n  hint: check the path and its permissions",
                        path.display()
                    )
                })?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "audit key file {} is empty\n  hint: give the file named by [audit] key_file",
                        path.display()
                    )
                })?,
        ),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(idgate::secret::Secret::new(v)),
            _ => anyhow::bail!(
                "environment variable `{var}` (the audit key) is not set\n  hint: export {var}=… first"
            ),
        },
        (None, None) => None,
    };
    let key = secret
        .as_ref()
        .map(idgate::audit::AuditKey::new)
        .transpose()?;
    let report = idgate::audit::verify(file, key.as_ref())?;
    let sealed = match report.sealed {
        Some(n) => format!("sealed at {n}"),
        None => "no seal (a file from before seals: lines cut off the end cannot be seen)".into(),
    };
    let state = if report.closed {
        "closed cleanly"
    } else {
        "open (gateway running, or stopped without closing)"
    };
    println!(
        "{}: ok, {} events, {} chain, {sealed}, {state}, chain head {}",
        file.display(),
        report.lines,
        report.kind,
        report.head
    );
    if report.unfinished_tail {
        eprintln!(
            "warning: after the sealed lines the file ends in an incomplete line (a write in progress, or torn by a crash)"
        );
    }
    if key.is_none() {
        eprintln!(
            "warning: an unkeyed chain shows accidental damage only: whoever can write the file can rehash it"
        );
    }
    Ok(())
}
