//! The trial's MySQL side: where `idgate dev` finds a MariaDB (or starts
//! a throwaway one), the dev database and the two logins it makes there
//! through the server's admin login, and the MySQL target in front of
//! them. Without a MariaDB the trial serves PostgreSQL alone and says so.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::throwaway::ThrowawayMariadb;
use super::trial::{READER_USER, Upstream, sslmode};
use crate::config::{PoolConfig, PoolMode, Protocol, RoleConfig, TargetConfig, UpstreamTls};
use crate::mysql::pool::{ServerConn, Variant};
use crate::mysql::upstream::UpstreamError;
use crate::secret::Secret;

/// Where `idgate dev` points without `--mysql-upstream`: the local
/// server's `root`, with an empty password, as a test machine has it.
pub const DEFAULT_UPSTREAM: &str = "mysql://root@127.0.0.1:3306/idgate_dev";
/// Where the MySQL front end listens without `--mysql-listen`: next to
/// MariaDB's own 3306.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3307";
/// The upstream user of the `dev` role: everything on the dev database.
pub const WRITER_USER: &str = "idgate_dev_writer";
/// How long the admin login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The throwaway server's admin login.
fn throwaway_upstream(server: &ThrowawayMariadb, database: &str) -> Upstream {
    Upstream {
        addr: server.addr().to_string(),
        user: super::throwaway::MARIADB_ADMIN_USER.into(),
        password: Some(server.password().clone()),
        database: database.to_owned(),
        tls: UpstreamTls::Disable,
    }
}

/// The admin login `idgate dev` uses on a MySQL server and the dev
/// database (created when missing), from a `mysql://user:pass@host:port/db`
/// URL (`mariadb://` too) with an optional `?sslmode=` (default `prefer`).
pub fn parse_upstream(url: &str) -> anyhow::Result<Upstream> {
    let u = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    if !matches!(u.scheme(), "mysql" | "mariadb") {
        bail!("`{url}` is not a mysql:// URL");
    }
    let database = match u.path().trim_start_matches('/') {
        "" => "idgate_dev".to_owned(),
        db => db.to_owned(),
    };
    Ok(Upstream {
        addr: format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(3306)
        ),
        user: match u.username() {
            "" => "root".to_owned(),
            name => name.to_owned(),
        },
        password: u.password().map(Secret::new),
        database,
        tls: sslmode(url, &u)?,
    })
}

/// What the trial serves over MySQL.
pub struct Trial {
    /// The target named after the dev database, roles `dev` and `reader`.
    pub target: TargetConfig,
    /// Stopped and removed when dropped: keep it until the gateway stops.
    pub throwaway: Option<ThrowawayMariadb>,
}

/// Find the trial's MariaDB (the one at `requested`, else a throwaway),
/// make the dev database and logins, and describe the target; `None`,
/// with one line saying why, when there is no MariaDB to serve.
/// `defaulted`: the person did not choose `requested`.
pub async fn prepare(requested: Upstream, defaulted: bool, pool: &PoolConfig) -> Option<Trial> {
    let (upstream, conn, throwaway) = match admin_login(&requested).await {
        Ok(conn) => (requested, conn, None),
        Err(e) => {
            let Some(reason) = unusable(&requested, defaulted, &e) else {
                println!(
                    "MySQL skipped: cannot log in to {} as `{}`: {e}",
                    requested.addr, requested.user
                );
                return None;
            };
            let server = match ThrowawayMariadb::start().await {
                Ok(server) => server,
                Err(e) => {
                    println!(
                        "MySQL skipped: {reason}, and no throwaway MariaDB could be started: {e}"
                    );
                    return None;
                }
            };
            println!(
                "{reason}: started a throwaway MariaDB on {} (in {}, removed on exit)",
                server.addr(),
                server.dir().display()
            );
            let upstream = throwaway_upstream(&server, &requested.database);
            match admin_login(&upstream).await {
                Ok(conn) => (upstream, conn, Some(server)),
                Err(e) => {
                    println!("MySQL skipped: the throwaway MariaDB refused its admin login: {e}");
                    return None;
                }
            }
        }
    };
    match provision(conn, &upstream.database).await {
        Ok((writer, reader)) => Some(Trial {
            target: target_config(&upstream, vec![writer, reader], pool),
            throwaway,
        }),
        Err(e) => {
            println!(
                "MySQL skipped: cannot make the dev database and logins on {} as `{}`: {e:#}",
                upstream.addr, upstream.user
            );
            None
        }
    }
}

/// Why the server at `upstream` cannot serve the trial, so that a
/// throwaway server stands in: nothing listens there, or, for the default
/// upstream (which the person did not choose), it will not let `root` in
/// without a password, as a freshly installed Debian MariaDB does on TCP.
pub fn unusable(upstream: &Upstream, defaulted: bool, login: &UpstreamError) -> Option<String> {
    let addr = &upstream.addr;
    let hint = format!(
        "pass --mysql-upstream mysql://USER:PASSWORD@{addr}/{} to use it",
        upstream.database
    );
    match login {
        UpstreamError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Some(format!("nothing answers on {addr}"))
        }
        UpstreamError::Refused(e) if defaulted => Some(format!(
            "MariaDB on {addr} refuses `{}` ({}; {hint})",
            upstream.user, e.message
        )),
        UpstreamError::Plugin(_) | UpstreamError::FullAuthNeedsTls if defaulted => Some(format!(
            "MariaDB on {addr} will not let `{}` in with a password ({login}; {hint})",
            upstream.user
        )),
        _ => None,
    }
}

/// The admin login, on no database (the dev one may not exist yet).
async fn admin_login(upstream: &Upstream) -> Result<ServerConn, UpstreamError> {
    let admin = RoleConfig {
        name: "admin".into(),
        user: upstream.user.clone(),
        password: upstream.password.clone().map(Into::into),
    };
    let target = TargetConfig {
        database: String::new(),
        ..target_config(upstream, vec![admin], &PoolConfig::default())
    };
    let pools = crate::mysql::pool::pools(std::slice::from_ref(&target))
        .map_err(|e| UpstreamError::Protocol(format!("{e:#}")))?;
    let pool = pools
        .get(&target.name, "admin")
        .expect("the admin role's pool");
    let variant = Variant {
        read_only: false,
        capabilities: 0,
        charset: crate::mysql::codec::UTF8MB4,
    };
    let login = crate::core::pool::Connector::open(pool.connector(), &variant);
    match tokio::time::timeout(LOGIN_TIMEOUT, login).await {
        Ok(conn) => conn,
        Err(_) => Err(UpstreamError::Protocol(format!(
            "no answer within {}s",
            LOGIN_TIMEOUT.as_secs()
        ))),
    }
}

/// Create the dev database when missing, and the writer and the
/// SELECT-only reader logins on it, each with a fresh password: a second
/// trial against the same server takes the logins over from the first.
async fn provision(
    mut conn: ServerConn,
    database: &str,
) -> anyhow::Result<(RoleConfig, RoleConfig)> {
    let db = quote_identifier(database);
    conn.run(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .await
        .context("CREATE DATABASE")?;
    let writer = login(&mut conn, &db, "dev", WRITER_USER, "ALL PRIVILEGES").await?;
    let reader = login(&mut conn, &db, "reader", READER_USER, "SELECT").await?;
    Ok((writer, reader))
}

/// The login `user`@`%` of `role` with a fresh password and `grant` on
/// the database `db` (quoted), and nothing else whatever it had before.
async fn login(
    conn: &mut ServerConn,
    db: &str,
    role: &str,
    user: &str,
    grant: &str,
) -> anyhow::Result<RoleConfig> {
    let password = super::throwaway::random_password();
    let account = format!("'{user}'@'%'");
    for sql in [
        format!("CREATE USER IF NOT EXISTS {account}"),
        format!("ALTER USER {account} IDENTIFIED BY '{}'", password.expose()),
        format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"),
        format!("GRANT {grant} ON {db}.* TO {account}"),
    ] {
        let shown = sql.replace(password.expose(), "…");
        conn.run(&sql).await.with_context(|| shown)?;
    }
    Ok(RoleConfig {
        name: role.into(),
        user: user.into(),
        password: Some(password.into()),
    })
}

/// A MySQL identifier in backquotes.
fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The trial's MySQL target with `roles`, named after the dev database
/// like the PostgreSQL one. MySQL targets pool by session.
fn target_config(upstream: &Upstream, roles: Vec<RoleConfig>, pool: &PoolConfig) -> TargetConfig {
    TargetConfig {
        name: upstream.database.clone(),
        protocol: Protocol::Mysql,
        upstream: upstream.addr.clone(),
        database: upstream.database.clone(),
        upstream_tls: upstream.tls,
        upstream_ca_file: None,
        pool: PoolConfig {
            mode: PoolMode::Session,
            ..pool.clone()
        },
        roles,
        environment: vec!["dev".into()],
    }
}

/// A `mariadb` command line that logs in to the gateway at `addr` as
/// `role` with `token`: plain text on loopback (the trial allows it), else
/// TLS checked against the trial's certificate `ca_file`.
pub fn client_line(
    addr: SocketAddr,
    role: &str,
    database: &str,
    token: &str,
    ca_file: &Path,
) -> String {
    let tls = if addr.ip().is_loopback() {
        "--skip-ssl".to_owned()
    } else {
        format!("--ssl --ssl-ca='{}'", ca_file.display())
    };
    format!(
        "MYSQL_PWD='{token}' mariadb {tls} -h {} -P {} -u {role} {database}",
        addr.ip(),
        addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_url_defaults() {
        let u = parse_upstream(DEFAULT_UPSTREAM).unwrap();
        assert_eq!(u.addr, "127.0.0.1:3306");
        assert_eq!(u.user, "root");
        assert!(u.password.is_none());
        assert_eq!(u.database, "idgate_dev");
        assert_eq!(u.tls, UpstreamTls::Prefer);
        let u = parse_upstream("mariadb://app:pw@db.local:3310?sslmode=disable").unwrap();
        assert_eq!(u.addr, "db.local:3310");
        assert_eq!(u.user, "app");
        assert_eq!(u.password.unwrap().expose(), "pw");
        assert_eq!(u.database, "idgate_dev");
        assert_eq!(u.tls, UpstreamTls::Disable);
        assert!(parse_upstream("postgres://x").is_err());
        assert!(parse_upstream("mysql://h/db?ssl-mode=REQUIRED").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("idgate_dev"), "`idgate_dev`");
        assert_eq!(quote_identifier("a`b"), "`a``b`");
    }

    #[test]
    fn client_line_is_plain_on_loopback_only() {
        let ca = Path::new("/tmp/x/gateway.crt");
        let line = client_line(
            "127.0.0.1:3307".parse().unwrap(),
            "dev",
            "idgate_dev",
            "T",
            ca,
        );
        assert_eq!(
            line,
            "MYSQL_PWD='T' mariadb --skip-ssl -h 127.0.0.1 -P 3307 -u dev idgate_dev"
        );
        let line = client_line("10.1.2.3:3307".parse().unwrap(), "reader", "d", "T", ca);
        assert!(
            line.contains("--ssl --ssl-ca='/tmp/x/gateway.crt' -h 10.1.2.3"),
            "{line}"
        );
    }
}
