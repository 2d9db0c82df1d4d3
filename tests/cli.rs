//! The `idgate` binary as a user runs it: `dev` prints psql and mariadb
//! lines that connect (to throwaway servers when none answers),
//! `check-config` points at the broken line, `audit verify` catches an
//! edited trail, and only commands that log in upstream need its secrets.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

fn idgate() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_idgate"))
}

/// Runs a printed psql line with `sql` through bash, as a user pastes it.
async fn psql(line: &str, sql: &str) -> std::process::Output {
    run(tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{line} -X -A -t -c '{sql}'"))
        .stdin(Stdio::null()))
    .await
}

/// Runs a printed mariadb line with `sql` through bash, as a user pastes it.
async fn mariadb(line: &str, sql: &str) -> std::process::Output {
    run(tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{line} -N -B -e '{sql}'"))
        .stdin(Stdio::null()))
    .await
}

/// What `idgate dev` printed up to its client lines.
#[derive(Default)]
struct DevLines {
    /// The `dev` and `reader` psql lines.
    psql: Vec<String>,
    /// The `dev` and `reader` mariadb lines.
    mariadb: Vec<String>,
    /// Every other line.
    other: Vec<String>,
}

impl DevLines {
    /// Read until two psql and two mariadb lines were printed.
    async fn read(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        within: Duration,
    ) -> DevLines {
        let mut out = DevLines::default();
        tokio::time::timeout(within, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with("PGPASSWORD=") {
                    out.psql.push(line);
                } else if line.starts_with("MYSQL_PWD=") {
                    out.mariadb.push(line);
                } else {
                    out.other.push(line);
                }
                if out.psql.len() == 2 && out.mariadb.len() == 2 {
                    return;
                }
            }
            panic!(
                "idgate dev exited without printing two psql and two mariadb lines: {:?}",
                out.other
            );
        })
        .await
        .expect("idgate dev became ready");
        out
    }
}

/// The trial in front of the machine's PostgreSQL and MariaDB: each line
/// logs in, `dev` may write, `reader` is a SELECT-only user upstream
/// whom the policy lets only read.
#[tokio::test]
async fn dev_prints_psql_and_mariadb_lines_that_connect() {
    let mut child = idgate()
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--mysql-listen",
            "127.0.0.1:0",
        ])
        .arg("--upstream")
        .arg(format!("postgres://postgres@{}/postgres", pg_addr()))
        .arg("--mysql-upstream")
        .arg(format!("mysql://root@{}/idgate_dev", mysql_addr()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let DevLines {
        psql: psql_lines,
        mariadb: mariadb_lines,
        ..
    } = DevLines::read(&mut lines, Duration::from_secs(60)).await;
    let out = psql(&psql_lines[0], "select current_user").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "postgres");
    // The read-only line: a SELECT-only user upstream, and a policy that
    // grants reads only.
    let out = psql(
        &psql_lines[1],
        "select current_user, count(*) > 0 from pg_class",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_dev_reader|t");
    let out = psql(&psql_lines[1], "create table dev_reader_was_here (x int)").await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );

    assert!(
        mariadb_lines[0].contains(" --skip-ssl -h 127.0.0.1 ")
            && mariadb_lines[0].ends_with(" -u dev idgate_dev"),
        "{}",
        mariadb_lines[0]
    );
    let table = format!("dev_trial_{}", std::process::id());
    let out = mariadb(
        &mariadb_lines[0],
        &format!(
            "create table {table} (x int); insert into {table} values (1); select current_user(), database(), count(*) from {table}"
        ),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_dev_writer@%\tidgate_dev\t1");
    let out = mariadb(
        &mariadb_lines[1],
        &format!("select current_user(), count(*) from {table}"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_dev_reader@%\t1");
    let out = mariadb(
        &mariadb_lines[1],
        &format!("insert into {table} values (2)"),
    )
    .await;
    assert!(!out.status.success(), "the reader line may only read");
    assert!(stderr(&out).contains("ERROR 1142"), "{}", stderr(&out));
    let out = mariadb(&mariadb_lines[0], &format!("drop table {table}")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (host, port) = mysql_addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    let grants = run(tokio::process::Command::new("mariadb")
        .args([
            "--skip-ssl",
            "-h",
            &host,
            "-P",
            &port,
            "-u",
            "root",
            "-N",
            "-B",
        ])
        .args(["-e", "show grants for idgate_dev_reader"]))
    .await;
    assert!(grants.status.success(), "{}", stderr(&grants));
    let grants = stdout(&grants);
    assert!(
        grants.lines().all(|g| g.starts_with("GRANT USAGE ON *.*")
            || g.starts_with("GRANT SELECT ON `idgate_dev`.*")),
        "the reader's upstream user may only read: {grants}"
    );

    let mut err = String::new();
    child.kill().await.unwrap();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
        .await
        .unwrap();
    assert!(err.contains("TRIAL ONLY"), "{err}");
}

/// A free loopback port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the throwaway servers that a failing test would leave behind:
/// the test then kills idgate (`kill_on_drop`), which gives it no chance
/// to. Each is named by its pid file and the signal that stops it.
#[derive(Default)]
struct LeftBehind(Vec<(std::path::PathBuf, nix::sys::signal::Signal)>);

impl Drop for LeftBehind {
    fn drop(&mut self) {
        for (pid_file, signal) in &self.0 {
            let pid_file = std::fs::read_to_string(pid_file);
            if let Some(pid) = pid_file
                .ok()
                .and_then(|f| f.lines().next()?.trim().parse().ok())
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), *signal);
            }
        }
    }
}

/// The directory a "started a throwaway …" line names.
fn throwaway_dir(started: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(
        started
            .split_once("(in ")
            .and_then(|(_, rest)| rest.split_once(", removed on exit)"))
            .expect("the line names the directory")
            .0,
    )
}

/// The process a pid file names, under /proc.
fn process_of(pid_file: &std::path::Path) -> std::path::PathBuf {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    std::path::PathBuf::from(format!("/proc/{}", pid.lines().next().unwrap().trim()))
}

/// The fresh-machine trial (#14, #15): with nothing listening on either
/// upstream, `idgate dev` runs a throwaway PostgreSQL and a throwaway
/// MariaDB of its own, every printed line reaches them, and SIGTERM stops
/// both servers and removes their directories.
#[tokio::test]
async fn dev_starts_throwaway_servers_when_none_answers_and_removes_them_on_sigterm() {
    let mut child = idgate()
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--mysql-listen",
            "127.0.0.1:0",
        ])
        .arg("--upstream")
        .arg(format!("postgres://127.0.0.1:{}", closed_port()))
        .arg("--mysql-upstream")
        .arg(format!("mysql://127.0.0.1:{}", closed_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = DevLines::read(&mut lines, Duration::from_secs(180)).await;
    let started = |what: &str| {
        let line = printed
            .other
            .iter()
            .find(|l| l.contains(&format!("started a throwaway {what}")))
            .unwrap_or_else(|| {
                panic!(
                    "idgate dev said it started a throwaway {what}: {:?}",
                    printed.other
                )
            });
        assert!(line.starts_with("nothing answers on 127.0.0.1:"), "{line}");
        throwaway_dir(line)
    };
    let pg_dir = started("PostgreSQL");
    let mariadb_dir = started("MariaDB");
    let _left_behind = LeftBehind(vec![
        (
            pg_dir.join("data/postmaster.pid"),
            nix::sys::signal::Signal::SIGINT,
        ),
        (
            mariadb_dir.join("mariadbd.pid"),
            nix::sys::signal::Signal::SIGTERM,
        ),
    ]);
    let pg_server = process_of(&pg_dir.join("data/postmaster.pid"));
    let mariadb_server = process_of(&mariadb_dir.join("mariadbd.pid"));
    assert!(pg_server.exists(), "the throwaway PostgreSQL runs");
    assert!(mariadb_server.exists(), "the throwaway MariaDB runs");

    let out = psql(
        &printed.psql[0],
        "select current_user, current_setting($$data_directory$$)",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("postgres|{}", pg_dir.join("data").display()),
        "the dev line reaches the throwaway server"
    );
    let out = psql(&printed.psql[1], "select current_user").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_dev_reader");
    let out = psql(&printed.psql[1], "create table reader_was_here (x int)").await;
    assert!(!out.status.success(), "the reader line may only read");

    let out = mariadb(
        &printed.mariadb[0],
        "create table t (x int); insert into t values (1); select current_user(), @@datadir",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "idgate_dev_writer@%\t{}/",
            mariadb_dir.join("data").display()
        ),
        "the dev line reaches the throwaway server"
    );
    let out = mariadb(
        &printed.mariadb[1],
        "select current_user(), count(*) from t",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_dev_reader@%\t1");
    let out = mariadb(&printed.mariadb[1], "insert into t values (2)").await;
    assert!(!out.status.success(), "the reader line may only read");

    let pid = nix::unistd::Pid::from_raw(child.id().unwrap().try_into().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("idgate dev stopped on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    for (server, dir) in [(pg_server, pg_dir), (mariadb_server, mariadb_dir)] {
        assert!(!server.exists(), "{} is stopped", server.display());
        assert!(!dir.exists(), "{} is removed", dir.display());
    }
}

/// A throwaway server stands in where nothing answers; a server that wants
/// a password does only for the default upstream, which the person did not
/// choose; one that lets the trial in is used.
#[tokio::test]
async fn dev_takes_a_throwaway_postgres_only_where_the_upstream_cannot_serve() {
    use idgate::dev::trial::{parse_upstream, unusable};
    let refused = parse_upstream(&format!("postgres://127.0.0.1:{}", closed_port())).unwrap();
    for defaulted in [true, false] {
        let reason = unusable(&refused, defaulted).await.expect("a reason");
        assert!(reason.starts_with("nothing answers on"), "{reason}");
    }
    let wants_password = parse_upstream(&format!(
        "postgres://idgate_scram@{}/idgate_test",
        pg_addr()
    ))
    .unwrap();
    let reason = unusable(&wants_password, true).await.expect("a reason");
    assert!(reason.contains("wants a password"), "{reason}");
    assert!(
        reason.contains("pass --upstream postgres://USER:PASSWORD@"),
        "{reason}"
    );
    assert_eq!(unusable(&wants_password, false).await, None);
    let trusted = parse_upstream(&format!("postgres://postgres@{}/postgres", pg_addr())).unwrap();
    assert_eq!(unusable(&trusted, true).await, None);
}

/// Secrets only where they are needed (#14): someone debugging a token
/// needs no database password nor audit key; `serve` and `check-config`,
/// which log in upstream, still stop at start without them.
#[tokio::test]
async fn token_inspect_and_policy_explain_run_without_upstream_secrets_serve_does_not() {
    const PASSWORD_VAR: &str = "IDGATE_TEST_UNSET_READER_PASSWORD";
    const KEY_VAR: &str = "IDGATE_TEST_UNSET_AUDIT_KEY";
    let issuer = idgate::dev::DevIssuer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.cedar"),
        r#"permit(principal, action in [Action::"connect", Action::"read"], resource == Role::"orders/reader");"#,
    )
    .unwrap();
    let path = dir.path().join("idgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"[gateway]
postgres_listen = "127.0.0.1:0"
allow_plaintext_loopback = true

[[issuers]]
name = "dev"
issuer = "{}"
audiences = ["idgate"]

[[targets]]
name = "orders"
upstream = "{}"
database = "idgate_test"

[[targets.roles]]
name = "reader"
user = "idgate_ro"
password_env = "{PASSWORD_VAR}"

[policy]
file = "policy.cedar"

[audit]
file = "audit.jsonl"
key_env = "{KEY_VAR}"
"#,
            issuer.issuer_url(),
            pg_addr()
        ),
    )
    .unwrap();
    let token = issuer.mint_for("ann", &[], "idgate", Duration::from_secs(600));
    let without_secrets = |cmd: &mut tokio::process::Command| {
        cmd.env_remove(PASSWORD_VAR).env_remove(KEY_VAR);
    };

    let mut inspect = idgate();
    inspect
        .args(["token", "inspect", &token, "--config"])
        .arg(&path);
    without_secrets(&mut inspect);
    let out = run(&mut inspect).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let mut explain = idgate();
    explain
        .args(["policy", "explain", "--token", &token, "--target", "orders"])
        .args(["--sql", "select 1", "--config"])
        .arg(&path);
    without_secrets(&mut explain);
    let out = run(&mut explain).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("result: ALLOWED"), "{}", stdout(&out));

    for command in ["serve", "check-config"] {
        let mut cmd = idgate();
        cmd.args([command, "--config"]).arg(&path);
        without_secrets(&mut cmd);
        let out = run(&mut cmd).await;
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "idgate.toml:18:16: environment variable `{PASSWORD_VAR}` (password of role `reader`) is not set"
            )),
            "{command}: {err}"
        );
        assert!(
            err.contains(&format!(
                "hint: export {PASSWORD_VAR}=… before starting idgate"
            )),
            "{command}: {err}"
        );
    }
}

#[tokio::test]
async fn check_config_accepts_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for f in ["idgate.toml", "policy.cedar"] {
        std::fs::copy(format!("{examples}/{f}"), dir.path().join(f)).unwrap();
    }
    let (cert, key) = idgate::tls::self_signed(&["localhost"]).unwrap();
    std::fs::write(dir.path().join("gateway.crt"), cert).unwrap();
    std::fs::write(dir.path().join("gateway.key"), key).unwrap();
    let out = run(idgate()
        .args(["check-config", "--config"])
        .arg(dir.path().join("idgate.toml"))
        .env("ORDERS_RO_PASSWORD", "x")
        .env("ORDERS_ADMIN_PASSWORD", "x")
        .env("SHOP_RO_PASSWORD", "x"))
    .await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// Defence in depth (#21): a role no policy lets write, whose upstream user
/// can write, is pointed out; a SELECT-only user and a writer role are not.
#[tokio::test]
async fn check_config_points_out_read_only_roles_whose_upstream_user_can_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.cedar"),
        r#"permit(principal, action in [Action::"connect", Action::"read"], resource in Target::"t");
           permit(principal, action, resource == Role::"t/writer");"#,
    )
    .unwrap();
    let path = dir.path().join("idgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"[gateway]
postgres_listen = "127.0.0.1:0"
allow_plaintext_loopback = true

[[issuers]]
name = "dev"
issuer = "https://login.example.com"
audiences = ["idgate"]

[[targets]]
name = "t"
upstream = "{}"
database = "idgate_test"
upstream_tls = "disable"

[[targets.roles]]
name = "select_only"
user = "idgate_ro"

[[targets.roles]]
name = "superuser"
user = "postgres"

[[targets.roles]]
name = "writer"
user = "postgres"

[policy]
file = "policy.cedar"

[audit]
file = "audit.jsonl"
"#,
            pg_addr()
        ),
    )
    .unwrap();
    let out = run(idgate().args(["check-config", "--config"]).arg(&path)).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let about = |role: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("role `{role}`")))
            .collect::<Vec<_>>()
    };
    let superuser = about("superuser");
    assert_eq!(superuser.len(), 1, "{text}");
    assert!(superuser[0].contains("`postgres` is a superuser"), "{text}");
    assert!(
        text.contains("hint: give the role an upstream user that can only read"),
        "{text}"
    );
    assert!(about("select_only").is_empty(), "{text}");
    assert!(about("writer").is_empty(), "{text}");
}

#[tokio::test]
async fn check_config_names_file_line_and_hint_for_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idgate.toml");
    std::fs::write(
        &path,
        "[gateway]\npostgres_listen = \"127.0.0.1:6432\"\nallow_plaintext_loopback = true\nlisten_backlog = 5\n",
    )
    .unwrap();
    let out = run(idgate().args(["check-config", "--config"]).arg(&path)).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("idgate.toml:4:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let out = run(idgate().arg("serve")).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn audit_verify_detects_an_edited_line() {
    let mut h = Harness::start().await;
    for sql in ["select 1", "select 2", "select 3"] {
        let out = h.psql(&h.analyst(), "reader", sql).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    h.stop_and_read_audit().await;
    let file = h.audit_file();
    let ok = run(idgate().args(["audit", "verify"]).arg(&file)).await;
    assert!(ok.status.success(), "{}", stderr(&ok));

    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("select 2", "select 9", 1);
    assert_ne!(text, edited);
    std::fs::write(&file, edited).unwrap();
    let bad = run(idgate().args(["audit", "verify"]).arg(&file)).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("line"), "{}", stderr(&bad));

    let lines: Vec<&str> = text.lines().collect();
    let deleted: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&file, deleted).unwrap();
    let bad = run(idgate().args(["audit", "verify"]).arg(&file)).await;
    assert_eq!(bad.status.code(), Some(1), "a deleted line went unnoticed");
}

#[tokio::test]
async fn audit_verify_with_the_key_passes_then_names_the_truncation() {
    let key = "a-test-audit-key-of-at-least-32-bytes";
    let mut h = Harness::with(Options {
        audit_key: Some(key.into()),
        ..Options::default()
    })
    .await;
    let out = h.psql(&h.analyst(), "reader", "select 1").await;
    assert!(out.status.success(), "{}", stderr(&out));
    h.stop_and_read_audit().await;
    let file = h.audit_file();
    let key_file = h.dir.path().join("audit.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let verify = || {
        let mut cmd = idgate();
        cmd.args(["audit", "verify"])
            .arg(&file)
            .arg("--key-file")
            .arg(&key_file);
        cmd
    };
    let ok = run(&mut verify()).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("hmac-sha256"), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("closed cleanly"), "{}", stdout(&ok));

    let no_key = run(idgate().args(["audit", "verify"]).arg(&file)).await;
    assert_eq!(no_key.status.code(), Some(1));
    assert!(
        stderr(&no_key).contains("--key-file"),
        "{}",
        stderr(&no_key)
    );

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept: String = lines[..lines.len() - 2]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, kept).unwrap();
    let bad = run(&mut verify()).await;
    assert_eq!(bad.status.code(), Some(1));
    let expected = format!(
        "truncated after line {}: the seal says {} events",
        lines.len() - 2,
        lines.len()
    );
    assert!(stderr(&bad).contains(&expected), "{}", stderr(&bad));
    assert_eq!(stderr(&bad).trim().lines().count(), 1, "{}", stderr(&bad));
}

#[tokio::test]
async fn check_config_warns_about_an_unkeyed_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idgate.toml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.cedar"),
        dir.path().join("policy.cedar"),
    )
    .unwrap();
    std::fs::write(
        &path,
        "[gateway]\npostgres_listen = \"127.0.0.1:6432\"\nallow_plaintext_loopback = true\n\n[policy]\nfile = \"policy.cedar\"\n\n[audit]\nfile = \"audit.jsonl\"\n",
    )
    .unwrap();
    let out = run(idgate().args(["check-config", "--config"]).arg(&path)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("warning: [audit] has no key_file or key_env"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("hint: set key_file"),
        "{}",
        stdout(&out)
    );

    std::fs::write(dir.path().join("audit.key"), "k".repeat(48)).unwrap();
    let keyed = std::fs::read_to_string(&path).unwrap() + "key_file = \"audit.key\"\n";
    std::fs::write(&path, keyed).unwrap();
    let out = run(idgate().args(["check-config", "--config"]).arg(&path)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("key_file"), "{}", stdout(&out));
}
