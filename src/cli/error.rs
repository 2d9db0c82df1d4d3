//! What can go wrong on the person's side, each with the one line a person
//! sees, a hint, and an exit code. No variant ever holds a token.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no {what} configured")]
    MissingSetting {
        what: &'static str,
        /// Where it can be given: flag, variable, config key.
        hint: String,
    },
    #[error("{location}: {message}")]
    SettingsFile { location: String, message: String },
    #[error("cannot reach the issuer at {url}: {reason}")]
    IssuerUnreachable { url: String, reason: String },
    #[error("{url} is not a usable OpenID Connect discovery document: {reason}")]
    Discovery { url: String, reason: String },
    #[error("the sign-in was denied at the issuer ({error}{description})")]
    Denied { error: String, description: String },
    #[error("the sign-in expired before it was completed ({0})")]
    Expired(String),
    #[error("no sign-in completed within {0} s")]
    LoginTimeout(u64),
    #[error(
        "the answer on the login redirect carried the wrong state (a stale page, or not the sign-in this login started)"
    )]
    StateMismatch,
    #[error("the issuer answered {endpoint} with an error ({error}{description})")]
    Provider {
        endpoint: String,
        error: String,
        description: String,
    },
    #[error("not logged in to {issuer} as client {client_id}")]
    NotLoggedIn { issuer: String, client_id: String },
    #[error("the issuer refused the refresh token ({error}{description})")]
    RefreshRefused { error: String, description: String },
    #[error("the token cache {} is readable by others (mode {mode:04o})", path.display())]
    CacheInsecure { path: PathBuf, mode: u32 },
    #[error("the token cache directory {} is writable by others (mode {mode:04o})", path.display())]
    CacheDirInsecure { path: PathBuf, mode: u32 },
    #[error("token cache {}: {source}", path.display())]
    CacheIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another idgate has held the lock on {} for {secs} s", path.display())]
    CacheLocked { path: PathBuf, secs: u64 },
    #[error("cannot listen for the login redirect on 127.0.0.1: {0}")]
    Loopback(std::io::Error),
    #[error("could not revoke the refresh token at {url}: {reason}")]
    Revocation { url: String, reason: String },
}

impl CliError {
    /// A short name per kind, stable for scripts and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::MissingSetting { .. } => "missing_setting",
            CliError::SettingsFile { .. } => "settings_file",
            CliError::IssuerUnreachable { .. } => "issuer_unreachable",
            CliError::Discovery { .. } => "discovery",
            CliError::Denied { .. } => "denied",
            CliError::Expired(_) => "expired",
            CliError::LoginTimeout(_) => "login_timeout",
            CliError::StateMismatch => "state_mismatch",
            CliError::Provider { .. } => "provider",
            CliError::NotLoggedIn { .. } => "not_logged_in",
            CliError::RefreshRefused { .. } => "refresh_refused",
            CliError::CacheInsecure { .. } => "cache_insecure",
            CliError::CacheDirInsecure { .. } => "cache_dir_insecure",
            CliError::CacheIo { .. } => "cache_io",
            CliError::CacheLocked { .. } => "cache_locked",
            CliError::Loopback(_) => "loopback",
            CliError::Revocation { .. } => "revocation",
        }
    }

    pub fn hint(&self) -> String {
        match self {
            CliError::MissingSetting { hint, .. } => hint.clone(),
            CliError::SettingsFile { .. } => {
                "see \"Client settings\" in README.md for the keys of config.toml".into()
            }
            CliError::IssuerUnreachable { .. } => {
                "check the issuer URL (--issuer, IDGATE_ISSUER or `issuer` in config.toml) and your network".into()
            }
            CliError::Discovery { .. } => {
                "is the issuer URL exactly the provider's issuer (what its tokens carry in `iss`)?"
                    .into()
            }
            CliError::Denied { .. } => {
                "run idgate login again and allow access; ask your administrator if you may not"
                    .into()
            }
            CliError::Expired(_) | CliError::LoginTimeout(_) => {
                "run idgate login again and finish signing in sooner".into()
            }
            CliError::StateMismatch => {
                "run idgate login again and use only the page it opens (or prints)".into()
            }
            CliError::Provider { .. } => {
                "check client_id (and client_secret) against the client registered at the issuer"
                    .into()
            }
            CliError::NotLoggedIn { .. } | CliError::RefreshRefused { .. } => {
                "run idgate login".into()
            }
            CliError::CacheInsecure { path, .. } => format!(
                "it holds your tokens: chmod 600 {}, or run idgate login to write a new one",
                path.display()
            ),
            CliError::CacheDirInsecure { path, .. } => format!("chmod 700 {}", path.display()),
            CliError::CacheIo { .. } => {
                "check that the cache directory ($XDG_CACHE_HOME/idgate, or ~/.cache/idgate) is yours and writable".into()
            }
            CliError::CacheLocked { path, .. } => format!(
                "is an idgate process stuck? once none runs, remove {}",
                path.display()
            ),
            CliError::Loopback(_) => {
                "use idgate login --device, which needs no local listener".into()
            }
            CliError::Revocation { .. } => {
                "retry idgate logout when the issuer is reachable; the tokens stay cached until then"
                    .into()
            }
        }
    }

    /// 2 for a usage error (something the command line must supply), 1 for
    /// every failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::MissingSetting { .. } => 2,
            _ => 1,
        }
    }
}

/// `": description"` when the provider gave one, cut to one short line:
/// the text comes from the network and ends up in a terminal.
pub(crate) fn description(text: Option<&str>) -> String {
    match text.map(one_line) {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

/// `text` as one line of printable characters, at most 200 of them.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}
