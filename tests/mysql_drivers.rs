//! Real MySQL clients through the gateway, each logging in with a token:
//! the `mariadb` CLI, PyMySQL, mysql-connector-python, node `mysql2` and
//! MariaDB Connector/J run their check from `tests/drivers/` (a plain
//! statement, a prepared one and two transactions) as an analyst with a
//! read-only grant, over TLS verified against the gateway's certificate
//! and, where the driver allows it, over plain text on loopback; and each
//! refuses, before it sends the token, a certificate that is not the
//! gateway's. The three with server-side prepared statements prove them
//! with the server's own `Com_stmt_prepare`, and the audit trail shows
//! their executions judged and allowed, with nothing refused along the way.

mod support;

use std::path::{Path, PathBuf};

use support::{Harness, MYSQL_TARGET, Options, unique_name};

const POLICY: &str = r#"
@id("analysts-read-shop")
permit(principal in Group::"analysts", action in [Action::"connect", Action::"read", Action::"session", Action::"transaction"], resource == Role::"shop/reader");
"#;

const IDENTITY: &str = "ann@example.com";
/// Whose token a driver must not send to a server it cannot verify.
const IMPOSTOR_VICTIM: &str = "bea@example.com";

/// Debian's `libmariadb-java` (installed by `scripts/setup`).
const CONNECTOR_J: &str = "/usr/share/java/mariadb-java-client.jar";

/// How a check reaches the gateway.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// TLS, the certificate verified against the gateway's own (chain and
    /// name: it is for `localhost`).
    Tls,
    /// Plain text on loopback, which the test gateway allows.
    Loopback,
}

/// One client's check and what it can do.
struct Driver {
    /// What the check prints after `ok `.
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Extra settings for every run.
    env: Vec<(&'static str, &'static str)>,
    transports: &'static [Transport],
    /// Prepares on the server (COM_STMT_PREPARE / COM_STMT_EXECUTE).
    server_side_prepare: bool,
}

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

fn python() -> PathBuf {
    std::env::var_os("IDGATE_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from,
    )
}

fn python_check(name: &'static str) -> (PathBuf, Vec<String>) {
    let script = drivers_dir().join("mysql_check.py");
    (python(), vec![script.display().to_string(), name.into()])
}

/// A table of its own for one test, with three rows, readable by the
/// upstream user of the roles.
async fn table() -> String {
    let t = unique_name("drivers");
    support::mysql_root(&format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT); \
         INSERT INTO {t} VALUES (1, 'one'), (2, 'two é'), (3, 'three')"
    ))
    .await;
    t
}

/// The settings every check in `tests/drivers/` reads, for `driver` as
/// `identity` (an analyst) on `port` over `transport`.
fn check_command(
    h: &Harness,
    driver: &Driver,
    identity: &str,
    table: &str,
    transport: Transport,
    ca_file: &Path,
) -> tokio::process::Command {
    let port = h.mysql_addr.expect("MySQL front end").port().to_string();
    let (host, ca_file) = match transport {
        Transport::Tls => ("localhost", ca_file.display().to_string()),
        Transport::Loopback => ("127.0.0.1", String::new()),
    };
    let mut cmd = tokio::process::Command::new(&driver.program);
    cmd.args(&driver.args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOST", host)
        .env("PORT", port)
        .env("USER", "reader")
        .env("PASSWORD", h.token(identity, &["analysts"]))
        .env("DATABASE", MYSQL_TARGET)
        .env("TABLE", table)
        .env("AUTH", "cleartext")
        .env("CA_FILE", ca_file)
        .env(
            "VERIFY_PREPARE",
            if driver.server_side_prepare { "1" } else { "0" },
        )
        .envs(driver.env.iter().copied());
    cmd
}

/// Run `driver`'s check through a gateway of its own over each of its
/// transports, and once over TLS trusting another certificate than the
/// gateway's, which the driver must refuse before it sends the token.
/// Then the audit trail: nothing was refused and no statement failed,
/// every statement on the table was the analyst's, and a server-side
/// prepared statement was executed as what it was judged.
async fn passes_through_the_gateway(driver: Driver) {
    let mut h = Harness::with(Options {
        policy: POLICY.into(),
        mysql: true,
        ..Options::default()
    })
    .await;
    let t = table().await;
    let gateway_cert = h.dir.path().join("gateway.crt");
    for &transport in driver.transports {
        let out = support::run(&mut check_command(
            &h,
            &driver,
            IDENTITY,
            &t,
            transport,
            &gateway_cert,
        ))
        .await;
        assert!(
            out.status.success() && support::stdout(&out).contains(&format!("ok {}", driver.name)),
            "{} over {transport:?}: exit {:?}\n{}{}",
            driver.name,
            out.status.code(),
            support::stdout(&out),
            support::stderr(&out)
        );
    }

    // The same names, another key: not the gateway's certificate.
    let (other, _) = idgate::tls::self_signed(&["localhost", "127.0.0.1"]).expect("cert");
    let other_cert = h.dir.path().join("other.crt");
    std::fs::write(&other_cert, other).expect("write cert");
    let out = support::run(&mut check_command(
        &h,
        &driver,
        IMPOSTOR_VICTIM,
        &t,
        Transport::Tls,
        &other_cert,
    ))
    .await;
    let err = support::stderr(&out).to_lowercase();
    assert!(
        !out.status.success()
            && ["certificat", "verif", "pkix"]
                .iter()
                .any(|w| err.contains(w)),
        "{} trusted a certificate it was not given: exit {:?}\n{err}",
        driver.name,
        out.status.code()
    );

    let events = h.stop_and_read_audit().await;
    assert!(
        !events.iter().any(|e| e["identity"] == IMPOSTOR_VICTIM),
        "{}: a token reached the gateway over TLS the driver should have refused",
        driver.name
    );
    let refused: Vec<_> = events
        .iter()
        .filter(|e| {
            e["decision"] == "deny"
                || e["event"] == "denied"
                || e["event"] == "auth_failed"
                || (e["event"] == "statement" && !e["error"].is_null())
        })
        .collect();
    assert!(
        refused.is_empty(),
        "{}: refused or failed {refused:#?}",
        driver.name
    );
    let on_table: Vec<_> = events
        .iter()
        .filter(|e| {
            e["event"] == "statement" && e["statement"].as_str().is_some_and(|s| s.contains(&t))
        })
        .collect();
    assert!(
        !on_table.is_empty(),
        "{}: no statement audited",
        driver.name
    );
    for e in &on_table {
        assert_eq!(e["identity"], IDENTITY, "{e}");
        assert_eq!(e["role"], "reader", "{e}");
        assert_eq!(e["decision"], "allow", "{e}");
    }
    if driver.server_side_prepare {
        let executed = format!("FROM {t} WHERE id = ?");
        assert!(
            on_table.iter().any(|e| e["statement"]
                .as_str()
                .is_some_and(|s| s.contains(&executed))),
            "{}: no execution of a prepared statement audited",
            driver.name
        );
    }
    support::mysql_root(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn mariadb_cli_reads_prepares_and_transacts_with_a_token() {
    passes_through_the_gateway(Driver {
        name: "mariadb-cli",
        program: drivers_dir().join("mariadb_cli_check.sh"),
        args: Vec::new(),
        env: Vec::new(),
        transports: &[Transport::Tls, Transport::Loopback],
        // PREPARE … FROM '…' in SQL: the client has no binary protocol.
        server_side_prepare: false,
    })
    .await;
}

#[tokio::test]
async fn pymysql_reads_prepares_and_transacts_with_a_token() {
    let (program, args) = python_check("pymysql");
    passes_through_the_gateway(Driver {
        name: "pymysql",
        program,
        args,
        env: Vec::new(),
        transports: &[Transport::Tls, Transport::Loopback],
        // PyMySQL interpolates parameters on the client.
        server_side_prepare: false,
    })
    .await;
}

#[tokio::test]
async fn mysql_connector_python_prepares_on_the_server_with_a_token() {
    let (program, args) = python_check("mysql-connector");
    passes_through_the_gateway(Driver {
        name: "mysql-connector",
        program,
        args,
        // Told it talks to MySQL 8.0, the driver sets utf8mb4_0900_ai_ci,
        // which MariaDB before 11.4 does not have.
        env: vec![("COLLATION", "utf8mb4_general_ci")],
        // It sends a clear-text password only over TLS.
        transports: &[Transport::Tls],
        server_side_prepare: true,
    })
    .await;
}

#[tokio::test]
async fn node_mysql2_prepares_on_the_server_with_a_token() {
    passes_through_the_gateway(Driver {
        name: "mysql2",
        program: "node".into(),
        args: vec![
            drivers_dir()
                .join("node/mysql2_check.js")
                .display()
                .to_string(),
        ],
        env: Vec::new(),
        transports: &[Transport::Tls, Transport::Loopback],
        server_side_prepare: true,
    })
    .await;
}

/// MariaDB Connector/J with server-side prepared statements; `properties`
/// are more connection properties (`JDBC_PROPERTIES`).
fn connector_j(properties: &'static str) -> Driver {
    Driver {
        name: "mariadb-java-client",
        program: "java".into(),
        args: vec![
            "-cp".into(),
            CONNECTOR_J.into(),
            drivers_dir()
                .join("MariadbCheck.java")
                .display()
                .to_string(),
        ],
        env: vec![("JDBC_PROPERTIES", properties)],
        transports: &[Transport::Tls, Transport::Loopback],
        server_side_prepare: true,
    }
}

#[tokio::test]
async fn mariadb_connector_j_prepares_on_the_server_with_a_token() {
    // With its default session settings: its first statement appends
    // STRICT_TRANS_TABLES to sql_mode, which does not change how SQL reads.
    passes_through_the_gateway(connector_j("")).await;
}
