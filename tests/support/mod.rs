//! Harness for integration tests: a development issuer, a gateway started
//! in-process on an ephemeral port in front of the real PostgreSQL, and
//! helpers to drive real clients (psql, pgbench, tokio-postgres) through it.
//! Fixture roles and the `idgate_test` database come from `scripts/setup`.

#![allow(dead_code)]

pub mod mint;
pub mod mysql_wire;
pub mod oidc_provider;
pub mod tunnel;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use idgate::config::{
    Algorithm, AuditConfig, Config, GatewayConfig, IssuerConfig, OnExpiry, PolicyConfig,
    PoolConfig, Protocol, RoleConfig, TargetConfig, TlsFiles, UpstreamTls,
};
use idgate::dev::DevIssuer;
use idgate::gateway::Running;
use idgate::policy::Clock;
use idgate::secret::Secret;

pub const AUDIENCE: &str = "idgate";
pub const TARGET: &str = "app";
/// The MySQL target (`Options::mysql`): MariaDB's `idgate_test`, whose
/// roles all log in as `idgate_native`, a user that can write there.
pub const MYSQL_TARGET: &str = "shop";
pub const MYSQL_DATABASE: &str = "idgate_test";

/// `host:port` of the real MariaDB under test.
pub fn mysql_addr() -> String {
    std::env::var("IDGATE_TEST_MYSQL").unwrap_or_else(|_| "127.0.0.1:3306".into())
}

/// `host:port` of the real PostgreSQL under test.
pub fn pg_addr() -> String {
    std::env::var("IDGATE_TEST_PG").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

pub fn pg_host_port() -> (String, u16) {
    let addr = pg_addr();
    let (h, p) = addr.rsplit_once(':').expect("IDGATE_TEST_PG is host:port");
    (h.to_owned(), p.parse().expect("port"))
}

/// A role as the test config defines it: gateway role name → upstream login.
pub struct TestRole {
    pub name: &'static str,
    pub user: &'static str,
    pub password: Option<&'static str>,
}

pub const READER: TestRole = TestRole {
    name: "reader",
    user: "idgate_ro",
    password: None,
};
pub const WRITER: TestRole = TestRole {
    name: "writer",
    user: "idgate_scram",
    password: Some("scram-secret"),
};
pub const LEGACY: TestRole = TestRole {
    name: "legacy",
    user: "idgate_md5",
    password: Some("md5-secret"),
};

/// Analysts read; developers may also write and use the md5 role.
pub const DEFAULT_POLICY: &str = r#"
@id("analysts-read")
permit(principal in Group::"analysts", action, resource == Role::"app/reader");

@id("developers-write")
permit(principal in Group::"developers", action, resource in Target::"app");
"#;

pub struct Options {
    pub policy: String,
    pub database: String,
    pub roles: Vec<TestRole>,
    pub allow_plaintext_loopback: bool,
    /// Use this issuer URL instead of the harness's own DevIssuer.
    pub issuer_url: Option<String>,
    pub identity_claim: String,
    /// The time policies see; the real clock when `None`.
    pub now: Option<time::OffsetDateTime>,
    pub pool: PoolConfig,
    /// Serve the admin API on an ephemeral loopback port.
    pub admin: bool,
    pub on_expiry: OnExpiry,
    pub upstream_tls: UpstreamTls,
    /// `[audit]` key (at least 32 bytes): a keyed chain.
    pub audit_key: Option<String>,
    /// The issuer's `max_lifetime`; its default when `None`.
    pub max_lifetime: Option<Duration>,
    /// Also serve MySQL, with target [`MYSQL_TARGET`] in front of the
    /// machine's MariaDB.
    pub mysql: bool,
    /// The MySQL target's database (default [`MYSQL_DATABASE`]).
    pub mysql_database: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: DEFAULT_POLICY.into(),
            database: "idgate_test".into(),
            roles: vec![READER, WRITER, LEGACY],
            allow_plaintext_loopback: true,
            issuer_url: None,
            identity_claim: "email".into(),
            now: None,
            pool: PoolConfig::default(),
            admin: false,
            on_expiry: OnExpiry::Disconnect,
            upstream_tls: UpstreamTls::Prefer,
            audit_key: None,
            max_lifetime: None,
            mysql: false,
            mysql_database: None,
        }
    }
}

pub struct Harness {
    pub issuer: DevIssuer,
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub addr: SocketAddr,
    /// The MySQL front end (`Options::mysql`).
    pub mysql_addr: Option<SocketAddr>,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Harness {
        let issuer = DevIssuer::start().await.expect("dev issuer");
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer_url = options
            .issuer_url
            .clone()
            .unwrap_or_else(|| issuer.issuer_url());
        let config = config(dir.path(), &issuer_url, &options);
        let clock = options.now.map_or(Clock::System, Clock::Fixed);
        let running = idgate::gateway::start_with_clock(config, clock)
            .await
            .expect("gateway starts");
        let addr = running.postgres_addr;
        let mysql_addr = running.mysql_addr;
        Harness {
            issuer,
            dir,
            running: Some(running),
            addr,
            mysql_addr,
        }
    }

    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.issuer
            .mint_for(sub, groups, AUDIENCE, Duration::from_secs(300))
    }

    pub fn analyst(&self) -> String {
        self.token("ann@example.com", &["analysts"])
    }

    pub fn developer(&self) -> String {
        self.token("dev@example.com", &["developers"])
    }

    /// `http://ADDR` of the admin API (`Options::admin`).
    pub fn admin_url(&self) -> String {
        let addr = self
            .running
            .as_ref()
            .and_then(|r| r.admin_addr)
            .expect("started with Options::admin");
        format!("http://{addr}")
    }

    pub fn audit_file(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Stop the gateway so every audit event is on disk, then read them.
    pub async fn stop_and_read_audit(&mut self) -> Vec<serde_json::Value> {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        read_audit(&self.audit_file())
    }

    /// libpq connection string for `role` through the gateway.
    pub fn conninfo(&self, role: &str, sslmode: &str) -> String {
        format!(
            "host={} port={} dbname={TARGET} user={role} sslmode={sslmode} connect_timeout=10",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Run psql through the gateway with `token` as the password.
    pub async fn psql(&self, token: &str, role: &str, sql: &str) -> Output {
        run(tokio::process::Command::new("psql")
            .arg(self.conninfo(role, "require"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", token))
        .await
    }

    /// pgbench through the gateway as the role named `owner` (tests that
    /// run it give the fixture database's owner that name).
    pub async fn pgbench(&self, token: &str, sslmode: &str, args: &[&str]) -> Output {
        run(tokio::process::Command::new("pgbench")
            .args(["-h", &self.addr.ip().to_string()])
            .args(["-p", &self.addr.port().to_string(), "-U", "owner"])
            .args(args)
            .arg(TARGET)
            .env("PGPASSWORD", token)
            .env("PGSSLMODE", sslmode))
        .await
    }

    /// A tokio-postgres client over plaintext loopback (allowed in tests).
    pub async fn driver(
        &self,
        token: &str,
        role: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.addr.ip().to_string())
            .port(self.addr.port())
            .dbname(TARGET)
            .user(role)
            .password(token)
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

pub fn config(dir: &Path, issuer_url: &str, options: &Options) -> Config {
    let (cert, key) = idgate::tls::self_signed(&["localhost", "127.0.0.1"]).expect("cert");
    std::fs::write(dir.join("gateway.crt"), cert).expect("write cert");
    std::fs::write(dir.join("gateway.key"), key).expect("write key");
    std::fs::write(dir.join("policy.cedar"), &options.policy).expect("write policy");
    Config {
        gateway: GatewayConfig {
            postgres_listen: "127.0.0.1:0".parse().expect("addr"),
            mysql_listen: options.mysql.then(|| "127.0.0.1:0".parse().expect("addr")),
            admin_listen: options.admin.then(|| "127.0.0.1:0".parse().expect("addr")),
            tls: Some(TlsFiles {
                cert_file: dir.join("gateway.crt"),
                key_file: dir.join("gateway.key"),
            }),
            allow_plaintext_loopback: options.allow_plaintext_loopback,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1000,
            threads: 0,
            on_expiry: options.on_expiry,
            expiry_grace: Duration::ZERO,
            max_session_age: None,
        },
        issuers: vec![{
            let mut issuer = IssuerConfig {
                algorithms: vec![Algorithm::ES256, Algorithm::RS256],
                clock_skew: Duration::from_secs(30),
                identity_claim: options.identity_claim.clone(),
                ..IssuerConfig::new("test", issuer_url, &[AUDIENCE])
            };
            if let Some(max) = options.max_lifetime {
                issuer.max_lifetime = max;
            }
            issuer
        }],
        targets: [TargetConfig {
            name: TARGET.into(),
            protocol: Protocol::Postgres,
            upstream: pg_addr(),
            database: options.database.clone(),
            upstream_tls: options.upstream_tls,
            upstream_ca_file: None,
            pool: options.pool.clone(),
            roles: options
                .roles
                .iter()
                .map(|r| RoleConfig {
                    name: r.name.into(),
                    user: r.user.into(),
                    password: r.password.map(|p| Secret::new(p).into()),
                })
                .collect(),
            environment: vec!["test".into()],
        }]
        .into_iter()
        .chain(options.mysql.then(|| mysql_target(options)))
        .collect(),
        policy: PolicyConfig {
            file: dir.join("policy.cedar"),
        },
        audit: AuditConfig {
            file: dir.join("audit.jsonl"),
            key: options.audit_key.clone().map(|k| Secret::new(k).into()),
        },
        cluster: None,
        warnings: Vec::new(),
    }
}

/// The MySQL target: roles `reader` and `writer`, both the MariaDB user
/// `idgate_native`, which can write: what a reader may do is the gateway's
/// to hold.
fn mysql_target(options: &Options) -> TargetConfig {
    TargetConfig {
        name: MYSQL_TARGET.into(),
        protocol: Protocol::Mysql,
        upstream: mysql_addr(),
        database: options
            .mysql_database
            .clone()
            .unwrap_or_else(|| MYSQL_DATABASE.into()),
        upstream_tls: UpstreamTls::Disable,
        upstream_ca_file: None,
        pool: PoolConfig {
            mode: idgate::config::PoolMode::Session,
            ..options.pool.clone()
        },
        roles: ["reader", "writer"]
            .into_iter()
            .map(|name| RoleConfig {
                name: name.into(),
                user: "idgate_native".into(),
                password: Some(Secret::new("native-secret").into()),
            })
            .collect(),
        environment: vec!["test".into()],
    }
}

/// The events of the audit file, without the chain's own records (the
/// `audit_start` header and the `audit_end` of a clean shutdown).
pub fn read_audit(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit line is JSON"))
        .filter(|e| e["event"] != "audit_start" && e["event"] != "audit_end")
        .collect()
}

pub async fn run(cmd: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(120), cmd.kill_on_drop(true).output())
        .await
        .expect("command finished in time")
        .expect("command runs")
}

/// A call to the admin API at `base`: the status, and the JSON body (or
/// its text when it is not JSON).
pub async fn admin_api(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// psql on `conninfo` with `token` running `sql`, left running; its
/// output is collected by `wait_with_output`.
pub fn psql_running(conninfo: &str, token: &str, sql: &str) -> tokio::process::Child {
    tokio::process::Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("psql runs")
}

/// The output of `child`, which must end within `limit`.
pub async fn ends_within(child: tokio::process::Child, limit: Duration) -> Output {
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the process did not end within {limit:?}"))
        .expect("process output")
}

/// Polls `check` every 20 ms until it holds; fails the test after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A client straight to PostgreSQL as the superuser, in the fixture
/// database: to watch what the gateway does upstream.
pub async fn direct() -> tokio_postgres::Client {
    let (host, port) = pg_host_port();
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port)
        .user("postgres")
        .dbname("idgate_test")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("direct connection");
    tokio::spawn(connection);
    client
}

/// Run SQL directly against PostgreSQL as the superuser (fixtures only).
pub async fn admin_sql(sql: &str) {
    admin_sql_in("postgres", sql).await;
}

/// As `admin_sql`, in database `db`.
pub async fn admin_sql_in(db: &str, sql: &str) {
    let (host, port) = pg_host_port();
    let out = run(tokio::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("host={host} port={port} dbname={db} user=postgres"))
        .args(["-c", sql]))
    .await;
    assert!(
        out.status.success(),
        "fixture SQL failed: {sql}: {}",
        stderr(&out)
    );
}

/// Run `sql` on the real MariaDB as root in [`MYSQL_DATABASE`] (fixtures,
/// and watching what the gateway does upstream); its tab-separated rows.
pub async fn mysql_root(sql: &str) -> String {
    mysql_root_in(MYSQL_DATABASE, sql, ";").await
}

/// As `mysql_root`, in `database`, with statements ending at `delimiter`
/// (a routine's body has `;` of its own).
pub async fn mysql_root_in(database: &str, sql: &str, delimiter: &str) -> String {
    let addr = mysql_addr();
    let (host, port) = addr
        .rsplit_once(':')
        .expect("IDGATE_TEST_MYSQL is host:port");
    let out = run(tokio::process::Command::new("mariadb")
        .args(["--no-defaults", "--skip-ssl", "-h", host, "-P", port])
        .arg(format!("--delimiter={delimiter}"))
        .args(["-u", "root", "-N", "-B", database, "-e", sql]))
    .await;
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    stdout(&out)
}

/// A database name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}_{n:016x}")
}
