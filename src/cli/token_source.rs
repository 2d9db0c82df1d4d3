//! Where `connect` and `tunnel` get the person's tokens: the token cache of
//! `idgate login` (refreshed as needed), unless a command that prints a
//! token (`--token-command`, e.g. another tool's `… token`) or
//! `IDGATE_TOKEN` is given; `from_args` is the one place that picks.

use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::AsyncReadExt;

use super::{CliError, Settings};
use crate::secret::Secret;

/// How long a token command may take (it may refresh at the provider).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Larger output is not a token (the gateway takes at most 16 KiB).
const MAX_TOKEN: usize = 16 * 1024;

/// Gives the person's tokens.
pub trait TokenSource: Send + Sync {
    /// A token valid for at least `min_valid`, as far as the source can
    /// tell; a source that refreshes must refresh a token that expires
    /// sooner.
    fn token(&self, min_valid: Duration) -> BoxFuture<'_, Result<Secret, TokenSourceError>>;
}

#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// A command (run with `sh -c`) whose standard output is a valid access
    /// token; run each time a token is needed, with IDGATE_MIN_VALID set
    /// to the seconds it must still be valid. Without it, IDGATE_TOKEN is
    /// used as is, and without that the token cache of `idgate login`.
    #[arg(long, env = "IDGATE_TOKEN_COMMAND", value_name = "CMD")]
    pub token_command: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenSourceError {
    #[error(transparent)]
    Cache(#[from] CliError),
    #[error("token command could not run: {0}")]
    Spawn(std::io::Error),
    #[error("token command took longer than {}s", COMMAND_TIMEOUT.as_secs())]
    Timeout,
    #[error("token command failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("token command printed no token")]
    Empty,
    #[error("token command printed more than a token")]
    NotAToken,
}

impl TokenSourceError {
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            TokenSourceError::Cache(e) => e.hint(),
            TokenSourceError::Spawn(_) | TokenSourceError::Timeout => {
                "check the command given with --token-command (IDGATE_TOKEN_COMMAND)".into()
            }
            TokenSourceError::Failed { .. } => {
                "run the token command yourself to see why; you may need to log in again".into()
            }
            TokenSourceError::Empty | TokenSourceError::NotAToken => {
                "the token command must print one token and nothing else on standard output".into()
            }
        }
    }

    /// 2 when the command line lacks something, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            TokenSourceError::Cache(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// The token source the command line asks for.
pub fn from_args(args: &TokenArgs, settings: &Settings) -> Box<dyn TokenSource> {
    if let Some(command) = &args.token_command {
        return Box::new(TokenCommand(command.clone()));
    }
    match std::env::var("IDGATE_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Box::new(Fixed(Secret::new(token.trim()))),
        _ => Box::new(Cached(settings.clone())),
    }
}

/// The token cache of `idgate login`, refreshed under its lock.
struct Cached(Settings);

impl TokenSource for Cached {
    fn token(&self, min_valid: Duration) -> BoxFuture<'_, Result<Secret, TokenSourceError>> {
        Box::pin(async move { Ok(super::token::fresh_token(&self.0, min_valid).await?) })
    }
}

/// A token given once (`IDGATE_TOKEN`): it never gets newer, so sessions
/// end when it expires.
struct Fixed(Secret);

impl TokenSource for Fixed {
    fn token(&self, _: Duration) -> BoxFuture<'_, Result<Secret, TokenSourceError>> {
        Box::pin(async { Ok(self.0.clone()) })
    }
}

/// Runs a command for each token.
struct TokenCommand(String);

impl TokenSource for TokenCommand {
    fn token(&self, min_valid: Duration) -> BoxFuture<'_, Result<Secret, TokenSourceError>> {
        Box::pin(async move {
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&self.0)
                .env("IDGATE_MIN_VALID", min_valid.as_secs().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(TokenSourceError::Spawn)?;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            // Bounded reads: a runaway command cannot fill memory.
            let mut stdout = child
                .stdout
                .take()
                .expect("piped")
                .take(MAX_TOKEN as u64 + 1);
            let mut stderr = child.stderr.take().expect("piped").take(4096);
            let run = async {
                let (o, e) =
                    tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err),);
                o.and(e).map_err(TokenSourceError::Spawn)?;
                // Past the limits, a command still writing gets a broken
                // pipe instead of blocking forever.
                drop((stdout, stderr));
                child.wait().await.map_err(TokenSourceError::Spawn)
            };
            let status = tokio::time::timeout(COMMAND_TIMEOUT, run)
                .await
                .map_err(|_| TokenSourceError::Timeout)??;
            if !status.success() {
                // Its first line of complaint, never its output: that
                // might hold a token.
                let stderr = String::from_utf8_lossy(&err);
                return Err(TokenSourceError::Failed {
                    status: status.to_string(),
                    stderr: stderr.lines().next().unwrap_or("").trim().to_owned(),
                });
            }
            let token = std::str::from_utf8(&out)
                .map_err(|_| TokenSourceError::NotAToken)?
                .trim();
            if token.is_empty() {
                return Err(TokenSourceError::Empty);
            }
            if out.len() > MAX_TOKEN || token.contains(char::is_whitespace) {
                return Err(TokenSourceError::NotAToken);
            }
            Ok(Secret::new(token))
        })
    }
}

/// The `exp` claim of a JWT, read without checking anything: the client
/// only uses it to know when to fetch the next token; the gateway judges.
#[must_use]
pub fn expires_at(token: &Secret) -> Option<i64> {
    super::token::jwt_claims(token.expose())?
        .get("exp")?
        .as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn source(command: &str) -> TokenCommand {
        TokenCommand(command.into())
    }

    #[tokio::test]
    async fn a_token_command_prints_the_token_and_sees_how_long_it_must_last() {
        let t = source("echo \"tok-$IDGATE_MIN_VALID\"")
            .token(Duration::from_secs(42))
            .await
            .expect("token");
        assert_eq!(t.expose(), "tok-42");
    }

    #[tokio::test]
    async fn a_failing_token_command_reports_its_first_stderr_line_never_its_output() {
        let e = source("echo secret-token; echo 'not logged in' >&2; echo more >&2; exit 3")
            .token(Duration::ZERO)
            .await
            .expect_err("fails");
        let text = e.to_string();
        assert!(text.contains("not logged in"), "{text}");
        assert!(
            !text.contains("secret-token") && !text.contains("more"),
            "{text}"
        );
        assert!(matches!(
            source("true").token(Duration::ZERO).await,
            Err(TokenSourceError::Empty)
        ));
        assert!(matches!(
            source("echo two words").token(Duration::ZERO).await,
            Err(TokenSourceError::NotAToken)
        ));
    }

    #[test]
    fn expiry_is_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":1700000000}"#);
        let token = Secret::new(format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"));
        assert_eq!(expires_at(&token), Some(1_700_000_000));
        assert_eq!(expires_at(&Secret::new("opaque")), None);
    }
}
