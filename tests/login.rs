//! The person's side as a person runs it: `idgate login` against a real
//! external provider (node-oidc-provider), signed in on the provider's own
//! pages in a real headless Chromium; `idgate token` refreshing through the
//! token cache; `idgate logout`; and every bad answer ending in one line
//! with a hint, with nothing lost from the cache.
//!
//! Each test has its own provider, and its own `HOME`, `XDG_CACHE_HOME`
//! and `XDG_CONFIG_HOME` for the `idgate` it runs.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use support::oidc_provider::{ExternalProvider, NATIVE_CLIENT_ID};
use support::*;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// A person's machine: their home, cache and config directories.
struct Person {
    home: tempfile::TempDir,
    issuer: String,
}

impl Person {
    fn new(provider: &ExternalProvider) -> Person {
        Person {
            home: tempfile::tempdir().expect("tempdir"),
            issuer: provider.issuer.clone(),
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.home.path().join("cache/idgate")
    }

    /// `idgate ARGS` as this person runs it, for this issuer and client.
    fn idgate(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_idgate"));
        command
            .args(args)
            .args(["--issuer", &self.issuer, "--client-id", NATIVE_CLIENT_ID])
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env_remove("BROWSER")
            .env_remove("IDGATE_PROFILE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        run(&mut self.idgate(args)).await
    }

    /// The one cache entry's path (there is one issuer and client here).
    fn entry(&self) -> PathBuf {
        let entries: Vec<PathBuf> = std::fs::read_dir(self.cache_dir())
            .expect("cache directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.into_iter().next().expect("one entry")
    }

    fn cached(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.entry()).expect("read entry")).expect("JSON")
    }
}

/// A running `idgate login` and the lines it printed on stderr so far.
struct LoginRun {
    child: tokio::process::Child,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: Vec<String>,
}

impl LoginRun {
    fn start(person: &Person, args: &[&str]) -> LoginRun {
        let mut child = person
            .idgate(&[&["login"], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("idgate login starts");
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        LoginRun {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The first URL printed on a line of its own that contains `part`.
    async fn url_containing(&mut self, part: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = self.stderr.next_line().await.expect("stderr") {
                self.seen.push(line.clone());
                let line = line.trim();
                if line.starts_with("http") && line.contains(part) {
                    return line.to_owned();
                }
            }
            panic!("idgate login ended without a URL: {:?}", self.seen);
        })
        .await;
        found.unwrap_or_else(|_| panic!("no URL within 30 s: {:?}", self.seen))
    }

    /// Waits for the end: exit status, stdout, and all of stderr.
    async fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut stdout = String::new();
        let mut out = self.child.stdout.take().expect("stdout");
        let (status, rest) = tokio::time::timeout(Duration::from_secs(60), async {
            let mut rest = Vec::new();
            while let Some(line) = self.stderr.next_line().await.expect("stderr") {
                rest.push(line);
            }
            tokio::io::AsyncReadExt::read_to_string(&mut out, &mut stdout)
                .await
                .expect("stdout");
            (self.child.wait().await.expect("exit status"), rest)
        })
        .await
        .expect("idgate login ended within 60 s");
        self.seen.extend(rest);
        (status, stdout, self.seen.join("\n"))
    }
}

/// A full browser login as `login`; returns what login printed.
async fn browser_login(provider: &ExternalProvider, person: &Person, login: &str) -> String {
    let mut run = LoginRun::start(person, &["--no-browser"]);
    let url = run.url_containing("/auth?").await;
    let page = provider.sign_in(&url, login, false).await;
    assert!(page.contains("Signed in"), "{page}");
    let (status, stdout, stderr) = run.finish().await;
    assert!(status.success(), "{stdout}\n{stderr}");
    stdout
}

/// Ends in `error: …` then `  hint: …`: one error line, one hint.
fn assert_one_line_error(out: &Output, message: &str, hint: &str) {
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 2, "one line and a hint: {err}");
    assert!(lines[0].contains(message), "{err}");
    assert!(
        lines[1].starts_with("  hint: ") && lines[1].contains(hint),
        "{err}"
    );
}

fn gateway_options(provider: &ExternalProvider) -> Options {
    Options {
        issuer_url: Some(provider.issuer.clone()),
        ..Options::default()
    }
}

/// `PGPASSWORD=$(idgate token …) psql …`, exactly as the README says.
async fn psql_with_idgate_token(person: &Person, harness: &Harness, sql: &str) -> Output {
    let idgate = env!("CARGO_BIN_EXE_idgate");
    let line = format!(
        "PGPASSWORD=$({idgate} token --issuer {} --client-id {NATIVE_CLIENT_ID}) psql '{}' -X -A -t -c '{sql}'",
        person.issuer,
        harness.conninfo("reader", "require"),
    );
    run(tokio::process::Command::new("bash")
        .arg("-c")
        .arg(line)
        .env("HOME", person.home.path())
        .env("XDG_CACHE_HOME", person.home.path().join("cache"))
        .env("XDG_CONFIG_HOME", person.home.path().join("config"))
        .stdin(Stdio::null()))
    .await
}

#[tokio::test]
async fn browser_login_in_chromium_gives_a_token_the_gateway_accepts_until_logout() {
    let provider = ExternalProvider::start().await.expect("provider");
    let harness = Harness::with(gateway_options(&provider)).await;
    let person = Person::new(&provider);

    let said = browser_login(&provider, &person, "ann@example.com").await;
    assert!(
        said.contains("Logged in to") && said.contains("as ann@example.com"),
        "{said}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").mode() & 0o777;
    assert_eq!(mode(&person.cache_dir()), 0o700);
    assert_eq!(mode(&person.entry()), 0o600);

    let out = psql_with_idgate_token(&person, &harness, "select current_user").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro");
    // A fresh 10-minute token is printed as cached, with no refresh.
    assert_eq!(provider.refresh_requests().await, 0);

    // `idgate connect` takes its token from the same cache by default.
    let port = harness.addr.port().to_string();
    let out = run(tokio::process::Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args([
            "connect",
            TARGET,
            "--role",
            "reader",
            "--gateway",
            "127.0.0.1",
        ])
        .args(["--port", &port, "--sslmode", "require"])
        .args(["--", "-X", "-A", "-t", "-c", "select current_user"])
        .env("HOME", person.home.path())
        .env("XDG_CACHE_HOME", person.home.path().join("cache"))
        .env("XDG_CONFIG_HOME", person.home.path().join("config"))
        .env("IDGATE_ISSUER", &person.issuer)
        .env("IDGATE_CLIENT_ID", NATIVE_CLIENT_ID)
        .env_remove("IDGATE_TOKEN")
        .env_remove("IDGATE_TOKEN_COMMAND")
        .stdin(Stdio::null()))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro");

    let refresh_token = person.cached()["refresh_token"]
        .as_str()
        .expect("a refresh token was issued")
        .to_owned();
    let out = person.run(&["logout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Revoked the refresh token"),
        "{}",
        stdout(&out)
    );
    assert!(!person.entry_exists());
    assert_eq!(
        provider.try_refresh(&refresh_token).await,
        (400, Some("invalid_grant".into()))
    );

    let out = person.run(&["token"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(&out, "not logged in", "run idgate login");
}

impl Person {
    fn entry_exists(&self) -> bool {
        std::fs::read_dir(self.cache_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .unwrap_or(false)
    }
}

#[tokio::test]
async fn device_login_is_approved_on_the_providers_pages() {
    let provider = ExternalProvider::start().await.expect("provider");
    let harness = Harness::with(gateway_options(&provider)).await;
    let person = Person::new(&provider);

    let mut run = LoginRun::start(&person, &["--device"]);
    let url = run.url_containing("user_code=").await;
    let page = provider.sign_in(&url, "dev@example.com", false).await;
    assert!(page.contains("Sign-in Success"), "{page}");
    let (status, said, err) = run.finish().await;
    assert!(status.success(), "{said}\n{err}");
    assert!(err.contains("enter the code"), "{err}");
    assert!(said.contains("as dev@example.com"), "{said}");

    let out = psql_with_idgate_token(&person, &harness, "select current_user").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro");
}

#[tokio::test]
async fn device_polling_slows_down_when_the_provider_says_slow_down() {
    let provider = ExternalProvider::start_with(&[("OIDC_DEVICE_SLOW_DOWN", "1")])
        .await
        .expect("provider");
    let person = Person::new(&provider);
    let mut run = LoginRun::start(&person, &["--device"]);
    let url = run.url_containing("user_code=").await;
    // The first poll (at once) is answered `slow_down`; approve meanwhile.
    eventually("the first poll", || async {
        !provider.device_polls().await.is_empty()
    })
    .await;
    provider.sign_in(&url, "ann@example.com", false).await;
    let (status, said, err) = run.finish().await;
    assert!(status.success(), "{said}\n{err}");
    let polls = provider.device_polls().await;
    assert_eq!(polls.len(), 2, "{polls:?}");
    // The default 5 s interval plus 5 s for the slow_down (RFC 8628 §3.5).
    assert!(polls[1] - polls[0] >= 9_500, "{polls:?}");
}

#[tokio::test]
async fn an_unapproved_device_code_expires_with_a_hint() {
    let provider = ExternalProvider::start_with(&[("OIDC_DEVICE_CODE_TTL", "2")])
        .await
        .expect("provider");
    let person = Person::new(&provider);
    let out = person.run(&["login", "--device"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(
        &out,
        "the sign-in expired before it was completed",
        "run idgate login again",
    );
    assert!(!person.entry_exists());
}

#[tokio::test]
async fn login_falls_back_to_a_device_code_when_no_browser_opens() {
    let provider = ExternalProvider::start().await.expect("provider");
    let person = Person::new(&provider);
    let mut command = person.idgate(&["login"]);
    command.env("BROWSER", "false");
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("idgate login starts");
    let mut run = LoginRun {
        stderr: BufReader::new(child.stderr.take().expect("stderr")).lines(),
        child,
        seen: Vec::new(),
    };
    let url = run.url_containing("user_code=").await;
    assert!(
        url.starts_with(&format!("{}/device", provider.issuer)),
        "{url}"
    );
    assert!(
        run.seen.iter().any(|l| l.contains("Cannot open a browser")),
        "{:?}",
        run.seen
    );
    run.child.kill().await.expect("kill");
}

#[tokio::test]
async fn parallel_token_calls_on_an_expiring_token_refresh_once() {
    // 70 s tokens: `idgate token` refreshes one that expires within 60 s,
    // so the first 10 s after a login or refresh the token is fresh.
    let provider = ExternalProvider::start_with(&[("OIDC_TOKEN_TTL", "70")])
        .await
        .expect("provider");
    let harness = Harness::with(gateway_options(&provider)).await;
    let person = Person::new(&provider);
    browser_login(&provider, &person, "ann@example.com").await;
    let old = person.cached();
    let expires_at = old["expires_at"].as_u64().expect("expires_at");
    let until_stale = (expires_at - 60).saturating_sub(now()) + 1;
    tokio::time::sleep(Duration::from_secs(until_stale)).await;
    assert_eq!(provider.refresh_requests().await, 0);

    let calls: Vec<_> = (0..8)
        .map(|_| {
            person
                .idgate(&["token"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("idgate token starts")
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        let out = ends_within(call, Duration::from_secs(60)).await;
        assert!(out.status.success(), "{}", stderr(&out));
        tokens.push(stdout(&out).trim().to_owned());
    }
    assert_eq!(provider.refresh_requests().await, 1, "exactly one refresh");
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "all print the same token"
    );
    assert_ne!(tokens[0], old["access_token"].as_str().expect("old token"));
    assert_ne!(
        person.cached()["refresh_token"],
        old["refresh_token"],
        "rotated"
    );

    let out = harness
        .psql(&tokens[0], "reader", "select current_user")
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "idgate_ro");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test]
async fn login_with_the_issuer_down_names_its_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let home = tempfile::tempdir().expect("tempdir");
    let person = Person {
        home,
        issuer: format!("http://127.0.0.1:{port}"),
    };
    let out = person.run(&["login", "--no-browser"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(
        &out,
        &format!(
            "cannot reach the issuer at http://127.0.0.1:{port}/.well-known/openid-configuration"
        ),
        "check the issuer URL",
    );
}

#[tokio::test]
async fn with_the_provider_down_a_refresh_fails_and_keeps_the_cache() {
    // 30 s tokens always expire within 60 s: every `idgate token` refreshes.
    let provider = ExternalProvider::start_with(&[("OIDC_TOKEN_TTL", "30")])
        .await
        .expect("provider");
    let person = Person::new(&provider);
    browser_login(&provider, &person, "ann@example.com").await;
    let before = std::fs::read(person.entry()).expect("entry");
    let addr = person.issuer.trim_start_matches("http://").to_owned();
    drop(provider);
    eventually("the provider is down", || async {
        tokio::net::TcpStream::connect(&addr).await.is_err()
    })
    .await;

    let out = person.run(&["token"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(
        &out,
        &format!("cannot reach the issuer at {}", person.issuer),
        "check the issuer URL",
    );
    assert_eq!(std::fs::read(person.entry()).expect("entry"), before);
}

#[tokio::test]
async fn a_refresh_token_revoked_at_the_provider_asks_for_a_new_login() {
    let provider = ExternalProvider::start_with(&[("OIDC_TOKEN_TTL", "30")])
        .await
        .expect("provider");
    let person = Person::new(&provider);
    browser_login(&provider, &person, "ann@example.com").await;
    let before = std::fs::read(person.entry()).expect("entry");
    let refresh_token = person.cached()["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    provider.revoke_refresh_token(&refresh_token).await;

    let out = person.run(&["token"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(
        &out,
        "the issuer refused the refresh token (invalid_grant",
        "run idgate login",
    );
    assert!(!stderr(&out).contains(&refresh_token));
    assert_eq!(std::fs::read(person.entry()).expect("entry"), before);
}

#[tokio::test]
async fn a_wrong_state_and_denied_consent_fail_the_login_and_keep_the_cache() {
    let provider = ExternalProvider::start().await.expect("provider");
    let person = Person::new(&provider);
    browser_login(&provider, &person, "ann@example.com").await;
    let before = std::fs::read(person.entry()).expect("entry");

    // An answer on the loopback redirect that this login did not ask for.
    let mut run = LoginRun::start(&person, &["--no-browser"]);
    let url = run.url_containing("/auth?").await;
    let redirect = url::Url::parse(&url)
        .expect("URL")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("redirect_uri");
    let page = reqwest::get(format!("{redirect}?code=forged&state=not-the-state"))
        .await
        .expect("the loopback listener answers")
        .text()
        .await
        .expect("page");
    assert!(page.contains("Sign-in failed"), "{page}");
    let (status, _, err) = run.finish().await;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: the answer on the login redirect carried the wrong state"),
        "{err}"
    );
    assert!(err.contains("  hint: run idgate login again"), "{err}");
    assert_eq!(std::fs::read(person.entry()).expect("entry"), before);

    // The person presses Cancel on the provider's consent page.
    let mut run = LoginRun::start(&person, &["--no-browser"]);
    let url = run.url_containing("/auth?").await;
    let page = provider.sign_in(&url, "ann@example.com", true).await;
    assert!(page.contains("Sign-in failed"), "{page}");
    let (status, _, err) = run.finish().await;
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: the sign-in was denied at the issuer (access_denied"),
        "{err}"
    );
    assert!(
        err.contains("  hint: run idgate login again and allow access"),
        "{err}"
    );
    assert_eq!(std::fs::read(person.entry()).expect("entry"), before);
}

#[tokio::test]
async fn damaged_cache_files_are_refused_or_ignored_and_never_lost() {
    let provider = ExternalProvider::start().await.expect("provider");
    let person = Person::new(&provider);
    browser_login(&provider, &person, "ann@example.com").await;
    let entry = person.entry();
    let before = std::fs::read(&entry).expect("entry");

    // Readable by others, like a .pgpass: refused.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = person.run(&["token"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(&out, "is readable by others (mode 0644)", "chmod 600");
    assert_eq!(std::fs::read(&entry).expect("entry"), before);
    assert_eq!(
        std::fs::metadata(&entry).expect("metadata").mode() & 0o777,
        0o644
    );

    // Cut short: ignored with a warning, kept for the person to see.
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let truncated = &before[..before.len() / 2];
    std::fs::write(&entry, truncated).expect("truncate");
    let out = person.run(&["token"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("warning: ignoring the unreadable token cache"),
        "{}",
        stderr(&out)
    );
    assert_one_line_error(&out, "not logged in", "run idgate login");
    assert_eq!(std::fs::read(&entry).expect("entry"), truncated);
}
