//! Client settings: flags, then `IDGATE_*` variables, then
//! `$XDG_CONFIG_HOME/idgate/config.toml` (a `[profiles.NAME]` section over
//! the file's top-level keys). Unknown keys in the file are errors with
//! `file:line:col`, as in the gateway's own config. Which front end of
//! the gateway a target is behind (PostgreSQL or MySQL) is a setting too:
//! the client cannot ask the gateway without a token.

use crate::position::position;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use super::CliError;
use crate::secret::Secret;

/// Scopes asked for when none are configured: `offline_access` is how
/// most providers are asked for a refresh token.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "offline_access"];
pub const DEFAULT_POSTGRES_PORT: u16 = 6432;
pub const DEFAULT_MYSQL_PORT: u16 = 3307;

/// Which front end of the gateway a target is behind: what the gateway's
/// own `[[targets]] protocol` says of it.
#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Postgres,
    Mysql,
}

impl Protocol {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

/// What the command line gives; every field overrides the rest.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub profile: Option<String>,
    /// An issuer URL, or the name of a profile whose issuer (and client)
    /// to use.
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// Extra scopes on top of the configured (or default) ones.
    pub extra_scopes: Vec<String>,
    pub gateway: Option<String>,
    pub postgres_port: Option<u16>,
    pub mysql_port: Option<u16>,
    /// The gateway's port for whichever protocol a target speaks
    /// (`--port`): over `postgres_port` and `mysql_port` alike.
    pub port: Option<u16>,
    /// The protocol of every target (`--protocol`).
    pub protocol: Option<Protocol>,
    pub ca_file: Option<PathBuf>,
}

/// The person's settings, merged. Issuer and client are optional here:
/// only commands that talk to the issuer need them (`issuer()`,
/// `client_id()` say how to give them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    /// The gateway's host name or address.
    pub gateway: Option<String>,
    pub postgres_port: u16,
    pub mysql_port: u16,
    /// `--port`, over both ports.
    port: Option<u16>,
    /// `--protocol` or `IDGATE_PROTOCOL`: every target's protocol.
    protocol: Option<Protocol>,
    /// `[targets.NAME] protocol`, per target.
    target_protocols: BTreeMap<String, Protocol>,
    /// `protocol` in the file: for targets it does not name.
    default_protocol: Option<Protocol>,
    /// CA certificate(s) for the gateway's TLS; system roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Where tokens are cached (`$XDG_CACHE_HOME/idgate`).
    pub cache_dir: PathBuf,
}

impl Settings {
    /// Settings from `overrides`, the process environment and the config file.
    pub fn load(overrides: Overrides) -> Result<Settings, CliError> {
        Self::load_with(overrides, &|name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// As `load`, with `env` standing for the environment.
    pub fn load_with(
        overrides: Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, CliError> {
        let config_path = xdg_dir(env, "XDG_CONFIG_HOME", ".config")
            .map(|d| d.join("idgate").join("config.toml"));
        let file = match &config_path {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        let cache_dir = xdg_dir(env, "XDG_CACHE_HOME", ".cache")
            .map(|d| d.join("idgate"))
            .ok_or_else(|| CliError::MissingSetting {
                what: "cache directory",
                hint: "set HOME or XDG_CACHE_HOME".into(),
            })?;

        // `--issuer NAME` names a profile, `--issuer URL` is the issuer.
        let (issuer_flag, issuer_profile) = match overrides.issuer {
            Some(i) if !i.contains("://") => (None, Some(i)),
            other => (other, None),
        };
        let profile = issuer_profile
            .or(overrides.profile)
            .or_else(|| env("IDGATE_PROFILE"));
        let layer = file.layer(profile.as_deref(), config_path.as_deref())?;

        let issuer = match issuer_flag.or_else(|| env("IDGATE_ISSUER")) {
            Some(i) => Some(check_issuer(&i).map_err(|m| CliError::MissingSetting {
                what: "valid issuer URL",
                hint: format!("{i:?}: {m}"),
            })?),
            None => layer.issuer,
        };
        let scopes = match env("IDGATE_SCOPES") {
            Some(s) => s
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            None => layer
                .scopes
                .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()),
        };
        let mut scopes: Vec<String> = scopes;
        for s in overrides.extra_scopes {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let port = |flag: Option<u16>, var: &str, file: Option<u16>, default: u16| match flag {
            Some(p) => Ok(p),
            None => match env(var) {
                Some(v) => v.parse().map_err(|_| CliError::MissingSetting {
                    what: "valid port",
                    hint: format!("{var}={v:?} is not a port number (1-65535)"),
                }),
                None => Ok(file.unwrap_or(default)),
            },
        };
        let protocol = match overrides.protocol {
            Some(p) => Some(p),
            None => match env("IDGATE_PROTOCOL") {
                Some(v) => Some(<Protocol as clap::ValueEnum>::from_str(&v, true).map_err(
                    |_| CliError::MissingSetting {
                        what: "valid protocol",
                        hint: format!("IDGATE_PROTOCOL={v:?}: write postgres or mysql"),
                    },
                )?),
                None => None,
            },
        };
        Ok(Settings {
            profile,
            issuer,
            client_id: overrides
                .client_id
                .or_else(|| env("IDGATE_CLIENT_ID"))
                .or(layer.client_id),
            client_secret: env("IDGATE_CLIENT_SECRET")
                .or(layer.client_secret)
                .map(Secret::new),
            scopes,
            gateway: overrides
                .gateway
                .or_else(|| env("IDGATE_GATEWAY"))
                .or(layer.gateway),
            postgres_port: port(
                overrides.postgres_port,
                "IDGATE_POSTGRES_PORT",
                layer.postgres_port,
                DEFAULT_POSTGRES_PORT,
            )?,
            mysql_port: port(
                overrides.mysql_port,
                "IDGATE_MYSQL_PORT",
                layer.mysql_port,
                DEFAULT_MYSQL_PORT,
            )?,
            port: overrides.port,
            protocol,
            target_protocols: layer.targets,
            default_protocol: layer.protocol,
            ca_file: overrides
                .ca_file
                .or_else(|| env("IDGATE_CA_FILE").map(PathBuf::from))
                .or(layer.ca_file),
            cache_dir,
        })
    }

    /// The issuer URL, without a trailing `/` (one cache entry however it
    /// is written).
    pub fn issuer(&self) -> Result<&str, CliError> {
        self.issuer.as_deref().ok_or_else(|| CliError::MissingSetting {
            what: "issuer",
            hint: "pass --issuer URL, set IDGATE_ISSUER, or put issuer = \"https://…\" in ~/.config/idgate/config.toml".into(),
        })
    }

    pub fn client_id(&self) -> Result<&str, CliError> {
        self.client_id.as_deref().ok_or_else(|| CliError::MissingSetting {
            what: "client id",
            hint: "pass --client-id ID, set IDGATE_CLIENT_ID, or put client_id = \"…\" in ~/.config/idgate/config.toml".into(),
        })
    }

    /// The protocol `target` speaks: `--protocol`, `IDGATE_PROTOCOL`,
    /// `[targets.NAME] protocol`, the file's `protocol`, else PostgreSQL.
    #[must_use]
    pub fn protocol_of(&self, target: &str) -> Protocol {
        self.protocol
            .or_else(|| self.target_protocols.get(target).copied())
            .or(self.default_protocol)
            .unwrap_or_default()
    }

    /// The gateway's port for `protocol`.
    #[must_use]
    pub fn port(&self, protocol: Protocol) -> u16 {
        self.port.unwrap_or(match protocol {
            Protocol::Postgres => self.postgres_port,
            Protocol::Mysql => self.mysql_port,
        })
    }
}

/// `$VAR`, or `$HOME/fallback`; relative paths are ignored, as the XDG
/// base directory spec says.
fn xdg_dir(env: &dyn Fn(&str) -> Option<String>, var: &str, fallback: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(fallback)))
}

/// An issuer URL: https, or plain http on loopback only (development
/// issuers, tests); returned without a trailing `/`.
fn check_issuer(s: &str) -> Result<String, &'static str> {
    let url = url::Url::parse(s)
        .map_err(|_| "write a full URL, e.g. https://login.example.com/realms/corp")?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("issuers must use https (plain http only on loopback)"),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an issuer URL has no query or fragment");
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// One set of keys: the file's top level, or one profile (where
/// `profiles` must not appear: they do not nest).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    issuer: Option<Spanned<String>>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    gateway: Option<String>,
    postgres_port: Option<u16>,
    mysql_port: Option<u16>,
    protocol: Option<Protocol>,
    targets: Option<BTreeMap<String, RawTarget>>,
    ca_file: Option<String>,
    profiles: Option<BTreeMap<String, RawLayer>>,
}

/// `[targets.NAME]`: what the client needs to know of one target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    protocol: Option<Protocol>,
}

/// A layer after validation: the issuer checked, paths resolved.
#[derive(Debug, Default)]
struct Layer {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    gateway: Option<String>,
    postgres_port: Option<u16>,
    mysql_port: Option<u16>,
    protocol: Option<Protocol>,
    /// Each named target's protocol.
    targets: BTreeMap<String, Protocol>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct ConfigFile {
    text: String,
    raw: RawLayer,
}

impl ConfigFile {
    /// The file at `path`; an absent file is an empty one.
    fn load(path: &Path) -> Result<ConfigFile, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(CliError::SettingsFile {
                    location: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                });
            }
        };
        let raw = toml::from_str(&text).map_err(|e: toml::de::Error| CliError::SettingsFile {
            location: match e.span() {
                Some(span) => position(path, &text, span.start),
                None => path.display().to_string(),
            },
            message: e.message().trim().to_owned(),
        })?;
        Ok(ConfigFile { text, raw })
    }

    /// The top-level keys with `profile`'s over them.
    fn layer(self, profile: Option<&str>, path: Option<&Path>) -> Result<Layer, CliError> {
        let path = path.unwrap_or(Path::new("config.toml"));
        let base = path.parent().unwrap_or(Path::new("."));
        let ConfigFile {
            text,
            raw: mut layer,
        } = self;
        let mut profiles = layer.profiles.take().unwrap_or_default();
        if let Some(name) = profile {
            let Some(p) = profiles.remove(name) else {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                return Err(CliError::MissingSetting {
                    what: "such profile",
                    hint: if known.is_empty() {
                        format!(
                            "profile {name:?}: {} has no [profiles.NAME] sections",
                            path.display()
                        )
                    } else {
                        format!(
                            "profile {name:?}: {} has [profiles.{}]",
                            path.display(),
                            known.join("], [profiles.")
                        )
                    },
                });
            };
            if p.profiles.is_some() {
                return Err(CliError::SettingsFile {
                    location: path.display().to_string(),
                    message: format!("profile {name:?} has profiles of its own; they do not nest"),
                });
            }
            layer = RawLayer {
                issuer: p.issuer.or(layer.issuer),
                client_id: p.client_id.or(layer.client_id),
                client_secret: p.client_secret.or(layer.client_secret),
                scopes: p.scopes.or(layer.scopes),
                gateway: p.gateway.or(layer.gateway),
                postgres_port: p.postgres_port.or(layer.postgres_port),
                mysql_port: p.mysql_port.or(layer.mysql_port),
                protocol: p.protocol.or(layer.protocol),
                // A profile's targets over the top-level ones, by name.
                targets: match (layer.targets, p.targets) {
                    (Some(mut base), Some(over)) => {
                        base.extend(over);
                        Some(base)
                    }
                    (base, over) => over.or(base),
                },
                ca_file: p.ca_file.or(layer.ca_file),
                profiles: None,
            };
        }
        let issuer = match layer.issuer {
            Some(i) => Some(
                check_issuer(i.get_ref()).map_err(|m| CliError::SettingsFile {
                    location: position(path, &text, i.span().start),
                    message: format!("issuer {:?}: {m}", i.get_ref()),
                })?,
            ),
            None => None,
        };
        Ok(Layer {
            issuer,
            client_id: layer.client_id,
            client_secret: layer.client_secret,
            scopes: layer.scopes,
            gateway: layer.gateway,
            postgres_port: layer.postgres_port,
            mysql_port: layer.mysql_port,
            protocol: layer.protocol,
            targets: layer
                .targets
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, t)| Some((name, t.protocol?)))
                .collect(),
            ca_file: layer.ca_file.map(|f| base.join(f)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(
        file: Option<&str>,
        vars: &[(&str, &str)],
        overrides: Overrides,
    ) -> (Result<Settings, CliError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::create_dir_all(dir.path().join("idgate")).unwrap();
            std::fs::write(dir.path().join("idgate/config.toml"), text).unwrap();
        }
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.insert("XDG_CONFIG_HOME".into(), dir.path().display().to_string());
        env.insert("HOME".into(), "/home/ann".into());
        let settings = Settings::load_with(overrides, &|k| env.get(k).cloned());
        (settings, dir)
    }

    const FILE: &str = r#"
issuer = "https://login.example.com/realms/corp/"
client_id = "idgate"
gateway = "idgate.example.com"

[profiles.staging]
issuer = "https://staging.example.com"
postgres_port = 7432
"#;

    #[test]
    fn flags_win_over_variables_which_win_over_the_file() {
        let (s, _d) = load(Some(FILE), &[], Overrides::default());
        let s = s.unwrap();
        assert_eq!(s.issuer().unwrap(), "https://login.example.com/realms/corp");
        assert_eq!(s.client_id().unwrap(), "idgate");
        assert_eq!(s.postgres_port, DEFAULT_POSTGRES_PORT);
        assert_eq!(s.scopes, ["openid", "offline_access"]);
        assert_eq!(s.cache_dir, Path::new("/home/ann/.cache/idgate"));

        let vars = [
            ("IDGATE_CLIENT_ID", "from-env"),
            ("IDGATE_POSTGRES_PORT", "5555"),
        ];
        let (s, _d) = load(Some(FILE), &vars, Overrides::default());
        let s = s.unwrap();
        assert_eq!(s.client_id().unwrap(), "from-env");
        assert_eq!(s.postgres_port, 5555);

        let flags = Overrides {
            client_id: Some("from-flag".into()),
            postgres_port: Some(6543),
            extra_scopes: vec!["groups".into()],
            ..Overrides::default()
        };
        let (s, _d) = load(Some(FILE), &vars, flags);
        let s = s.unwrap();
        assert_eq!(s.client_id().unwrap(), "from-flag");
        assert_eq!(s.postgres_port, 6543);
        assert_eq!(s.scopes, ["openid", "offline_access", "groups"]);
    }

    #[test]
    fn a_profile_overrides_the_top_level_keys() {
        let (s, _d) = load(
            Some(FILE),
            &[("IDGATE_PROFILE", "staging")],
            Overrides::default(),
        );
        let s = s.unwrap();
        assert_eq!(s.issuer().unwrap(), "https://staging.example.com");
        assert_eq!(s.client_id().unwrap(), "idgate");
        assert_eq!(s.postgres_port, 7432);
        assert_eq!(s.gateway.as_deref(), Some("idgate.example.com"));

        // --issuer NAME picks the profile too.
        let by_name = Overrides {
            issuer: Some("staging".into()),
            ..Overrides::default()
        };
        let (s, _d) = load(Some(FILE), &[], by_name);
        assert_eq!(s.unwrap().issuer().unwrap(), "https://staging.example.com");

        let unknown = Overrides {
            profile: Some("prod".into()),
            ..Overrides::default()
        };
        let (e, _d) = load(Some(FILE), &[], unknown);
        let e = e.unwrap_err();
        assert!(e.hint().contains("[profiles.staging]"), "{}", e.hint());
    }

    #[test]
    fn a_targets_protocol_comes_from_flag_variable_target_entry_or_file_default() {
        let text = r#"
gateway = "idgate.example.com"
mysql_port = 3310

[targets.shop]
protocol = "mysql"

[profiles.mysql-only]
protocol = "mysql"

[profiles.mysql-only.targets.orders]
protocol = "postgres"
"#;
        let (s, _d) = load(Some(text), &[], Overrides::default());
        let s = s.unwrap();
        assert_eq!(s.protocol_of("shop"), Protocol::Mysql);
        assert_eq!(s.protocol_of("orders"), Protocol::Postgres);
        assert_eq!(s.port(Protocol::Mysql), 3310);
        assert_eq!(s.port(Protocol::Postgres), DEFAULT_POSTGRES_PORT);

        // A profile's default, and its own entry over it.
        let profile = Overrides {
            profile: Some("mysql-only".into()),
            ..Overrides::default()
        };
        let (s, _d) = load(Some(text), &[], profile);
        let s = s.unwrap();
        assert_eq!(s.protocol_of("anything"), Protocol::Mysql);
        assert_eq!(s.protocol_of("shop"), Protocol::Mysql);
        assert_eq!(s.protocol_of("orders"), Protocol::Postgres);

        // The variable names every target's protocol; the flag wins.
        let vars = [("IDGATE_PROTOCOL", "MySQL")];
        let (s, _d) = load(Some(text), &vars, Overrides::default());
        assert_eq!(s.unwrap().protocol_of("orders"), Protocol::Mysql);
        let flags = Overrides {
            protocol: Some(Protocol::Postgres),
            port: Some(4000),
            ..Overrides::default()
        };
        let (s, _d) = load(Some(text), &vars, flags);
        let s = s.unwrap();
        assert_eq!(s.protocol_of("shop"), Protocol::Postgres);
        assert_eq!(s.port(Protocol::Mysql), 4000, "--port is the port in use");

        let (e, _d) = load(None, &[("IDGATE_PROTOCOL", "oracle")], Overrides::default());
        assert!(e.unwrap_err().hint().contains("postgres or mysql"));
        let (e, _d) = load(
            Some("[targets.shop]\nprotocol = \"mssql\"\n"),
            &[],
            Overrides::default(),
        );
        let shown = e.unwrap_err().to_string();
        assert!(shown.contains("config.toml:2:"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_errors_with_file_line_and_column() {
        let text = "issuer = \"https://login.example.com\"\n\n[profiles.x]\nclient = \"typo\"\n";
        let (e, _d) = load(Some(text), &[], Overrides::default());
        let e = e.unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("config.toml:4:1"), "{shown}");
        assert!(shown.contains("unknown field `client`"), "{shown}");
        assert_eq!(e.kind(), "settings_file");
    }

    #[test]
    fn profiles_do_not_nest() {
        let text = "[profiles.x]\nclient_id = \"a\"\n[profiles.x.profiles.y]\nclient_id = \"b\"\n";
        let x = Overrides {
            profile: Some("x".into()),
            ..Overrides::default()
        };
        let (e, _d) = load(Some(text), &[], x);
        let shown = e.unwrap_err().to_string();
        assert!(shown.contains("do not nest"), "{shown}");
    }

    #[test]
    fn a_plain_http_issuer_off_loopback_is_refused_at_its_line() {
        let text = "client_id = \"x\"\nissuer = \"http://login.example.com\"\n";
        let (e, _d) = load(Some(text), &[], Overrides::default());
        let shown = e.unwrap_err().to_string();
        assert!(shown.contains("config.toml:2:10"), "{shown}");
        assert!(shown.contains("https"), "{shown}");
    }

    #[test]
    fn missing_issuer_and_client_say_where_to_give_them() {
        let (s, _d) = load(None, &[], Overrides::default());
        let s = s.unwrap();
        let e = s.issuer().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.hint().contains("IDGATE_ISSUER"), "{}", e.hint());
        assert!(s.client_id().unwrap_err().hint().contains("--client-id"));
    }
}
