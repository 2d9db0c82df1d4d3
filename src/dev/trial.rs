//! `idgate dev`: a throwaway issuer, config and policy around a local
//! PostgreSQL and, when there is one, a local MariaDB (`mariadb`), so
//! someone can try the gateway with one command. Everything it makes lives
//! in a fresh temporary directory. Where no server will do, it runs a
//! throwaway one of its own (`throwaway`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::DevIssuer;
use super::mariadb;
use super::throwaway::ThrowawayPostgres;
use crate::config::{
    Algorithm, AuditConfig, Config, GatewayConfig, IssuerConfig, OnExpiry, PolicyConfig,
    PoolConfig, Protocol, RoleConfig, TargetConfig, TlsFiles, UpstreamTls,
};
use crate::postgres::pool::Variant;
use crate::postgres::upstream::UpstreamError;
use crate::secret::Secret;

pub const DEV_AUDIENCE: &str = "idgate";
pub const DEV_USER: &str = "dev@example.com";
pub const DEV_GROUP: &str = "developers";
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Where `idgate dev` points without `--upstream`.
pub const DEFAULT_UPSTREAM: &str = "postgres://127.0.0.1:5432";

/// A server `idgate dev` points at: from a `postgres://user:pass@host:port/db`
/// URL with an optional libpq-style `?sslmode=` (default `prefer`), or a
/// `mysql://` one (`mariadb::parse_upstream`).
#[derive(Debug, PartialEq)]
pub struct Upstream {
    pub addr: String,
    pub user: String,
    pub password: Option<Secret>,
    pub database: String,
    pub tls: UpstreamTls,
}

impl Upstream {
    /// The throwaway server's superuser.
    fn throwaway(server: &ThrowawayPostgres) -> Self {
        Upstream {
            addr: server.addr().to_string(),
            user: "postgres".into(),
            password: Some(server.password().clone()),
            database: "postgres".into(),
            tls: UpstreamTls::Disable,
        }
    }
}

pub fn parse_upstream(url: &str) -> anyhow::Result<Upstream> {
    let u = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        bail!("`{url}` is not a postgres:// URL");
    }
    let host = u.host_str().unwrap_or("127.0.0.1");
    let port = u.port().unwrap_or(5432);
    let user = match u.username() {
        "" => "postgres".to_owned(),
        name => name.to_owned(),
    };
    let database = match u.path().trim_start_matches('/') {
        "" => "postgres".to_owned(),
        db => db.to_owned(),
    };
    Ok(Upstream {
        addr: format!("{host}:{port}"),
        user,
        password: u.password().map(Secret::new),
        database,
        tls: sslmode(url, &u)?,
    })
}

/// The upstream TLS of an upstream URL: libpq's `?sslmode=` (default
/// `prefer`), the only query parameter understood.
pub(super) fn sslmode(url: &str, u: &url::Url) -> anyhow::Result<UpstreamTls> {
    let mut tls = UpstreamTls::Prefer;
    for (key, value) in u.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("sslmode", "disable") => tls = UpstreamTls::Disable,
            ("sslmode", "prefer") => tls = UpstreamTls::Prefer,
            ("sslmode", "require") => tls = UpstreamTls::Require,
            ("sslmode", "verify-full") => tls = UpstreamTls::VerifyFull,
            ("sslmode", other) => {
                bail!("sslmode `{other}` is not one of disable, prefer, require, verify-full")
            }
            (other, _) => bail!("`{other}` in `{url}` is not understood; only sslmode is"),
        }
    }
    Ok(tls)
}

/// The upstream user of the trial's `reader` roles (PostgreSQL and
/// MySQL): it may only read, so the read-only grant holds at the server
/// as well as in the gateway.
pub const READER_USER: &str = "idgate_dev_reader";

/// Developers may do anything as `dev`; everyone may read as `reader`:
/// on every target of the trial, PostgreSQL and MySQL alike, whose roles
/// bear these two names.
pub fn policy_text() -> String {
    format!(
        "// idgate dev: members of {DEV_GROUP} may connect and do anything as `dev`,\n\
         // on every target of the trial (PostgreSQL and MySQL alike).\n\
         @id(\"dev-allow-all\")\n\
         permit(principal in Group::\"{DEV_GROUP}\", action, resource is Role)\n\
         when {{ resource.name == \"dev\" }};\n\n\
         // Everyone may read as `reader`, whose upstream user can only read.\n\
         @id(\"dev-read-only\")\n\
         permit(principal, action in [Action::\"connect\", Action::\"read\", Action::\"session\", Action::\"transaction\"], \
         resource is Role)\n\
         when {{ resource.name == \"reader\" }};\n"
    )
}

/// Why `upstream` cannot serve the trial, so that a throwaway server
/// stands in: nothing listens there, or, for the default upstream (which
/// the person did not choose), its server will not let `postgres` in
/// without a password, as a freshly installed Debian cluster does on TCP.
pub async fn unusable(upstream: &Upstream, defaulted: bool) -> Option<String> {
    let target = target_config(upstream, PoolConfig::default());
    let tls = crate::tls::upstream_config(target.upstream_tls, None).ok()?;
    let login = tokio::time::timeout(
        Duration::from_secs(10),
        crate::postgres::upstream::connect(&target, tls.as_ref(), &target.roles[0], &[]),
    )
    .await
    .ok()?;
    let addr = &upstream.addr;
    match login {
        Err(UpstreamError::Connect { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Some(format!("nothing answers on {addr}"))
        }
        Err(UpstreamError::NoPassword) if defaulted => Some(format!(
            "PostgreSQL on {addr} wants a password for `postgres` \
             (pass --upstream postgres://USER:PASSWORD@{addr} to use it)"
        )),
        Err(UpstreamError::Refused(notice)) if defaulted && notice.code.starts_with("28") => {
            Some(format!(
                "PostgreSQL on {addr} refuses `postgres` ({}; pass --upstream postgres://USER:PASSWORD@{addr} to use it)",
                notice.message
            ))
        }
        _ => None,
    }
}

/// Create (or refresh) the SELECT-only user of the `reader` role through
/// the trial's own upstream login. A fresh password each run: a second
/// trial against the same server takes the role over from the first.
async fn reader_role(target: &TargetConfig) -> anyhow::Result<RoleConfig> {
    let tls = crate::tls::upstream_config(target.upstream_tls, None)?;
    let pools = crate::postgres::pool::pools(
        std::slice::from_ref(target),
        &std::iter::once((target.name.clone(), tls)).collect(),
    );
    let pool = pools
        .get(&target.name, "dev")
        .context("the trial's dev role")?;
    let variant = pool.intern(Variant {
        read_only: false,
        params: Vec::new(),
    });
    let mut lease = pool.checkout(&variant).await?;
    let mut secret = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut secret);
    let password = hex::encode(secret);
    let sql = format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{READER_USER}') \
         THEN CREATE ROLE {READER_USER}; END IF; END $$; \
         ALTER ROLE {READER_USER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD '{password}'; \
         GRANT pg_read_all_data TO {READER_USER}"
    );
    crate::postgres::pool::query_rows(lease.conn(), &sql)
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    pool.checkin(lease);
    Ok(RoleConfig {
        name: "reader".into(),
        user: READER_USER.into(),
        password: Some(Secret::new(password).into()),
    })
}

/// What `idgate dev` was asked for on the command line.
#[derive(Debug)]
pub struct TrialOptions {
    /// A `postgres://` URL; `None` for [`DEFAULT_UPSTREAM`].
    pub upstream: Option<String>,
    pub listen: SocketAddr,
    /// The MySQL side; `None` serves PostgreSQL alone.
    pub mysql: Option<MysqlOptions>,
    /// Most client connections at once.
    pub max_connections: usize,
    /// The targets' upstream pools (MySQL's always by session).
    pub pool: PoolConfig,
    /// False discards audit events instead of writing them, to measure
    /// what the audit trail costs.
    pub audit: bool,
    /// The runtime's threads (0: one per core), as built by the caller.
    pub threads: usize,
}

/// The MySQL side of `idgate dev`.
#[derive(Debug)]
pub struct MysqlOptions {
    /// A `mysql://` URL of an admin login; `None` for
    /// [`mariadb::DEFAULT_UPSTREAM`].
    pub upstream: Option<String>,
    pub listen: SocketAddr,
}

/// The PostgreSQL the trial serves: `requested`, or a throwaway server
/// (returned too, to be kept until the gateway stops) when that cannot.
async fn postgres_upstream(
    requested: Upstream,
    defaulted: bool,
) -> anyhow::Result<(Upstream, Option<ThrowawayPostgres>)> {
    let Some(reason) = unusable(&requested, defaulted).await else {
        return Ok((requested, None));
    };
    let server = ThrowawayPostgres::start().await.map_err(|e| {
        anyhow::anyhow!("{reason}, and no throwaway PostgreSQL could be started: {e}")
    })?;
    println!(
        "{reason}: started a throwaway PostgreSQL on {} (in {}, removed on exit)",
        server.addr(),
        server.dir().display()
    );
    Ok((Upstream::throwaway(&server), Some(server)))
}

/// Build the trial config in `dir`, start issuer and gateway, print how to
/// connect, and run until `shutdown` completes (Ctrl-C, SIGTERM).
pub async fn run(
    options: TrialOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    eprintln!(
        "\n  *** idgate dev is for TRIAL ONLY: throwaway keys, a token anyone here can read,\n  \
         *** a policy that allows everything. Never use it in production. ***\n"
    );
    if !options.audit {
        eprintln!(
            "  *** --no-audit: audit events are discarded, not written; for measuring the\n  \
             *** cost of the audit trail only. ***\n"
        );
    }
    let requested = parse_upstream(options.upstream.as_deref().unwrap_or(DEFAULT_UPSTREAM))?;
    let mysql_requested = match &options.mysql {
        Some(m) => Some((
            mariadb::parse_upstream(m.upstream.as_deref().unwrap_or(mariadb::DEFAULT_UPSTREAM))?,
            m.upstream.is_none(),
            m.listen,
        )),
        None => None,
    };
    // Both sides at once: a throwaway server takes seconds to start.
    // Declared before the gateway, so the servers are dropped after it: on
    // every way out, errors included, each stops only once nothing relays
    // to it.
    let (postgres, mysql) = tokio::join!(
        postgres_upstream(requested, options.upstream.is_none()),
        async {
            let (upstream, defaulted, listen) = mysql_requested?;
            let trial = mariadb::prepare(upstream, defaulted, &options.pool).await?;
            Some((trial, listen))
        }
    );
    let (upstream, _throwaway) = postgres?;
    // Kept after exit so the audit trail of the trial can be read.
    let dir = tempfile::Builder::new()
        .prefix("idgate-dev-")
        .tempdir()?
        .keep();
    let issuer = DevIssuer::start().await?;
    let mut config = write_config(
        dir.as_path(),
        &issuer.issuer_url(),
        &upstream,
        options.listen,
        options.max_connections,
        options.pool,
    )?;
    config.gateway.threads = options.threads;
    let target = &mut config.targets[0];
    let reader = match reader_role(target).await {
        Ok(role) => {
            target.roles.push(role);
            true
        }
        Err(e) => {
            eprintln!("  note: no read-only `reader` role ({e:#}); only `dev` is offered\n");
            false
        }
    };
    let (mysql_target, _mysql_throwaway) = match mysql {
        Some((mut trial, listen)) => {
            // Target names are what clients send as the database, one
            // namespace for both protocols.
            if trial.target.name == config.targets[0].name {
                trial.target.name.push_str("_mysql");
            }
            config.gateway.mysql_listen = Some(listen);
            let name = trial.target.name.clone();
            config.targets.push(trial.target);
            (Some(name), trial.throwaway)
        }
        None => (None, None),
    };
    let running = if options.audit {
        crate::gateway::start(config).await?
    } else {
        crate::gateway::start_unaudited(config).await?
    };
    let token = issuer.mint_for(DEV_USER, &[DEV_GROUP], DEV_AUDIENCE, TOKEN_TTL);
    let addr = running.postgres_addr;
    match running.mysql_addr {
        Some(mysql_addr) => println!(
            "idgate dev is ready: issuer {}, gateway {addr} (PostgreSQL) and {mysql_addr} (MySQL)",
            issuer.issuer_url()
        ),
        None => println!(
            "idgate dev is ready: issuer {}, gateway {addr}",
            issuer.issuer_url()
        ),
    }
    let files = if options.audit {
        "policy, TLS, audit trail"
    } else {
        "policy, TLS"
    };
    println!("files ({files}; kept after exit): {}", dir.display());
    println!("token for {DEV_USER} (valid 1h) is the password; connect with:\n");
    let psql = |role: &str| {
        format!(
            "PGPASSWORD='{token}' psql \"host={} port={} dbname={} user={role} sslmode=require\"",
            addr.ip(),
            addr.port(),
            upstream.database
        )
    };
    println!("{}\n", psql("dev"));
    if reader {
        println!("read-only (policy and a SELECT-only upstream user):\n");
        println!("{}\n", psql("reader"));
    }
    if let (Some(target), Some(mysql_addr)) = (&mysql_target, running.mysql_addr) {
        let mariadb = |role: &str| {
            mariadb::client_line(mysql_addr, role, target, &token, &dir.join("gateway.crt"))
        };
        println!("MySQL, the same token as the password (in plain text on loopback only):\n");
        println!("{}\n", mariadb("dev"));
        println!("read-only (policy and a SELECT-only upstream user):\n");
        println!("{}\n", mariadb("reader"));
    }
    let stop = running.shutdown_token();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    running.wait().await;
    drop(issuer);
    Ok(())
}

/// The config `idgate dev` runs with; its policy file is written to `dir`.
pub fn write_config(
    dir: &Path,
    issuer_url: &str,
    upstream: &Upstream,
    listen: SocketAddr,
    max_connections: usize,
    pool: PoolConfig,
) -> anyhow::Result<Config> {
    let (cert, key) = crate::tls::self_signed(&["localhost", "127.0.0.1"])?;
    let cert_file = dir.join("gateway.crt");
    let key_file = dir.join("gateway.key");
    std::fs::write(&cert_file, cert)?;
    std::fs::write(&key_file, key)?;
    let policy_file = dir.join("policy.cedar");
    std::fs::write(&policy_file, policy_text())?;
    Ok(Config {
        gateway: GatewayConfig {
            postgres_listen: listen,
            mysql_listen: None,
            admin_listen: None,
            tls: Some(TlsFiles {
                cert_file,
                key_file,
            }),
            allow_plaintext_loopback: true,
            handshake_timeout: Duration::from_secs(15),
            max_connections,
            threads: 0,
            on_expiry: OnExpiry::Disconnect,
            expiry_grace: Duration::ZERO,
            max_session_age: None,
        },
        issuers: vec![IssuerConfig {
            algorithms: vec![Algorithm::ES256, Algorithm::RS256],
            identity_claim: "email".into(),
            ..IssuerConfig::new("dev", issuer_url, &[DEV_AUDIENCE])
        }],
        targets: vec![target_config(upstream, pool)],
        policy: PolicyConfig { file: policy_file },
        audit: AuditConfig {
            file: dir.join("audit.jsonl"),
            // A trial's trail shows accidents only; `serve` warns about
            // that, the trial says it is not for production at all.
            key: None,
        },
        cluster: None,
        warnings: Vec::new(),
    })
}

/// The trial's one target, named after the database, with its `dev` role.
fn target_config(upstream: &Upstream, pool: PoolConfig) -> TargetConfig {
    TargetConfig {
        name: upstream.database.clone(),
        protocol: Protocol::Postgres,
        upstream: upstream.addr.clone(),
        database: upstream.database.clone(),
        upstream_tls: upstream.tls,
        upstream_ca_file: None,
        pool,
        roles: vec![RoleConfig {
            name: "dev".into(),
            user: upstream.user.clone(),
            password: upstream.password.clone().map(Into::into),
        }],
        environment: vec!["dev".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_url_defaults() {
        let u = parse_upstream("postgres://127.0.0.1:5432").unwrap();
        assert_eq!(u.addr, "127.0.0.1:5432");
        assert_eq!(u.user, "postgres");
        assert_eq!(u.database, "postgres");
        assert!(u.password.is_none());
        let u = parse_upstream("postgresql://app:pw@db.local:6000/orders").unwrap();
        assert_eq!(u.addr, "db.local:6000");
        assert_eq!(u.password.unwrap().expose(), "pw");
        assert_eq!(u.database, "orders");
        assert!(parse_upstream("mysql://x").is_err());
    }

    #[test]
    fn upstream_url_sslmode() {
        assert_eq!(
            parse_upstream("postgres://h/db").unwrap().tls,
            UpstreamTls::Prefer
        );
        assert_eq!(
            parse_upstream("postgres://h/db?sslmode=disable")
                .unwrap()
                .tls,
            UpstreamTls::Disable
        );
        assert!(parse_upstream("postgres://h/db?sslmode=allow").is_err());
        assert!(parse_upstream("postgres://h/db?connect_timeout=3").is_err());
    }
}
