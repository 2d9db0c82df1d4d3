//! Secrets the config names (`*_env`, `*_file`) are read where they are
//! needed, not when the file is loaded: `token inspect` and `policy
//! explain` never log in upstream, so they run without the upstream
//! passwords. `serve` (through `Gateway::start`) and `check-config` read
//! every secret first (`Config::read_secrets`), so a missing one still
//! stops them at start, naming its `file:line:col`.

use std::path::{Path, PathBuf};

use super::ConfigError;
use crate::secret::Secret;

/// Where a secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Given by code (`idgate dev`, tests), or already read.
    Value(Secret),
    /// Named by the config file, read by [`SecretSource::read`].
    Named(NamedSecret),
}

impl From<Secret> for SecretSource {
    fn from(secret: Secret) -> Self {
        SecretSource::Value(secret)
    }
}

/// A secret named by `PREFIX_env` or `PREFIX_file`, with what errors about
/// it need to say.
#[derive(Debug, Clone)]
pub struct NamedSecret {
    /// `file:line:col` of the key that names it.
    location: String,
    /// What the secret is, e.g. "password of role `reader`".
    what: String,
    place: Place,
}

#[derive(Debug, Clone)]
enum Place {
    Env(String),
    File {
        /// Resolved against the config file's directory.
        path: PathBuf,
        /// "password file".
        noun: &'static str,
        /// Hint for an empty file.
        fill: &'static str,
    },
}

impl NamedSecret {
    pub(super) fn env(location: String, what: String, var: String) -> Self {
        NamedSecret {
            location,
            what,
            place: Place::Env(var),
        }
    }

    pub(super) fn file(
        location: String,
        what: String,
        path: PathBuf,
        noun: &'static str,
        fill: &'static str,
    ) -> Self {
        NamedSecret {
            location,
            what,
            place: Place::File { path, noun, fill },
        }
    }

    fn invalid(&self, message: String, hint: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location.clone(),
            message,
            hint: hint.into(),
        }
    }
}

impl SecretSource {
    /// The secret's value; a variable that is unset or empty, or a file
    /// that is empty or unreadable, is an error at the key that names it.
    pub fn read(&self) -> Result<Secret, ConfigError> {
        let named = match self {
            SecretSource::Value(secret) => return Ok(secret.clone()),
            SecretSource::Named(named) => named,
        };
        match &named.place {
            Place::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(named.invalid(
                    format!("environment variable `{var}` ({}) is not set", named.what),
                    format!("export {var}=… before starting idgate"),
                )),
            },
            Place::File { path, noun, fill } => match read_secret_file(path) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => {
                    Err(named.invalid(format!("{noun} {} is empty", path.display()), *fill))
                }
                Err(e) => Err(named.invalid(
                    format!("cannot read {noun} {}: {e}", path.display()),
                    "check the path and its permissions",
                )),
            },
        }
    }

    /// An error about this secret's value, at the key that names it.
    pub(super) fn invalid(&self, message: String, hint: &str) -> ConfigError {
        match self {
            SecretSource::Named(named) => named.invalid(message, hint),
            SecretSource::Value(_) => ConfigError::Invalid {
                location: "(configuration given by idgate)".into(),
                message,
                hint: hint.into(),
            },
        }
    }
}

/// Reads a secret from a file: its text without trailing line breaks;
/// `None` if that is empty. Also used by `idgate audit verify --key-file`.
pub fn read_secret_file(path: &Path) -> std::io::Result<Option<Secret>> {
    let text = std::fs::read_to_string(path)?;
    let value = text.trim_end_matches(['\r', '\n']);
    Ok((!value.trim_end().is_empty()).then(|| Secret::new(value)))
}
