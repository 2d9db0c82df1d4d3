//! The TOML configuration (SPEC §3): schema, defaults, validation with file
//! positions and hints, and secret resolution from `*_env` / `*_file`.
//!
//! Parsing happens in two steps: serde reads the raw file (unknown keys are
//! errors), then `validate` turns it into the checked `Config` the rest of
//! the gateway uses. Every error carries `file:line:col` and a fix hint.
//! Secrets are named, not read, at load (`secrets`).

mod duration;
mod secrets;

use crate::position::position;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

pub use duration::parse_duration;
use secrets::NamedSecret;
pub use secrets::{SecretSource, read_secret_file};

/// Clock skew beyond this is refused: a wider window makes stolen expired
/// tokens useful again.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The longest token lifetime accepted when an issuer sets no
/// `max_lifetime`. Every issuer has a cap: revocations are kept only as
/// long as a token they cover can live, so an uncapped token would outlive
/// its revocation and work again.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{location}: {message}\n  hint: {hint}")]
    Invalid {
        location: String,
        message: String,
        hint: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub issuers: Vec<IssuerConfig>,
    pub targets: Vec<TargetConfig>,
    pub policy: PolicyConfig,
    pub audit: AuditConfig,
    /// Shared state with other gateways, when `[cluster]` is set.
    pub cluster: Option<ClusterConfig>,
    /// Keys from SPEC §3 that this version accepts but does not act on yet,
    /// each with its position; `serve` logs them and `check-config` prints them.
    pub warnings: Vec<String>,
}

/// `[cluster]`: gateways sharing revocations and sessions through Redis.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]`.
    pub redis: String,
    /// Prefix of every key and channel, so that several idgate deployments
    /// (or test runs) can share one Redis. Default `idgate`.
    pub namespace: String,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub postgres_listen: SocketAddr,
    /// Where the MySQL front end listens; none without `mysql_listen`.
    pub mysql_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub allow_plaintext_loopback: bool,
    /// How long a client has to finish startup and authentication.
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// Runtime threads; 0 is one per CPU core. One thread runs a
    /// single-threaded scheduler, like pgbouncer's event loop.
    pub threads: usize,
    /// What happens to a session when its token expires.
    pub on_expiry: OnExpiry,
    /// How long after the token's `exp` a session may run on.
    pub expiry_grace: Duration,
    /// Sessions end this long after login whatever the token says.
    pub max_session_age: Option<Duration>,
}

/// `[gateway] on_expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExpiry {
    /// End the session (57P01) when the token expires, plus grace.
    Disconnect,
    /// Keep it: the token is checked at login only, as RDS IAM and Entra
    /// authentication do.
    Allow,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    ES256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: String,
    /// Exact `iss` value; discovery lives under it.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew: Duration,
    pub identity_claim: String,
    /// A claim name, or a JSON pointer such as `/realm_access/roles`.
    pub groups_claim: String,
    /// Accept a bare string in the groups claim as one group. Off by
    /// default: a string where an array was expected usually means the
    /// issuer's mapper is misconfigured, and reading it as one group hides that.
    pub groups_claim_string: bool,
    /// Which kinds of token (`typ`) this issuer may present.
    pub token_types: TokenTypes,
    /// Longest accepted `exp - iat` (`exp - now` for a token without
    /// `iat`); `DEFAULT_MAX_LIFETIME` unless configured. Also bounds how
    /// long revocations are kept (`Config::revocation_horizon`).
    pub max_lifetime: Duration,
    /// Claims that must be present and non-null.
    pub required_claims: Vec<String>,
    /// When set, `azp` must be present and one of these.
    pub authorized_parties: Option<Vec<String>>,
    /// Static extra groups for tokens whose claims match.
    pub group_mappings: Vec<GroupMapping>,
}

impl IssuerConfig {
    /// An issuer with every optional key at its default, for code and tests
    /// that build configuration without a file.
    pub fn new(name: &str, issuer: &str, audiences: &[&str]) -> Self {
        IssuerConfig {
            name: name.into(),
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            jwks_uri: None,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            clock_skew: Duration::from_secs(60),
            identity_claim: "sub".into(),
            groups_claim: "groups".into(),
            groups_claim_string: false,
            token_types: TokenTypes::default(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            required_claims: Vec::new(),
            authorized_parties: None,
            group_mappings: Vec::new(),
        }
    }
}

/// Accepted token types, told apart by the JOSE header `typ`: access tokens
/// say `at+jwt` (RFC 9068); ID tokens say `JWT` or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTypes {
    pub access: bool,
    pub id: bool,
}

impl Default for TokenTypes {
    fn default() -> Self {
        TokenTypes {
            access: true,
            id: true,
        }
    }
}

/// `claim` equal to `value` (or an array containing it) adds `groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMapping {
    /// A claim name or a JSON pointer, like `groups_claim`.
    pub claim: String,
    pub value: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Mysql,
}

impl Protocol {
    /// As in the config and the audit trail.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub mode: PoolMode,
    /// Most upstream connections per (target, role).
    pub max_size: usize,
    /// An idle upstream connection older than this is closed.
    pub idle_timeout: Duration,
    /// How long a client waits for a connection when all are busy.
    pub wait_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            mode: PoolMode::Session,
            max_size: 20,
            idle_timeout: Duration::from_secs(300),
            wait_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub name: String,
    pub protocol: Protocol,
    /// `host:port` of the upstream server.
    pub upstream: String,
    pub database: String,
    pub upstream_tls: UpstreamTls,
    /// CA bundle for `verify-full`; the system roots when absent.
    pub upstream_ca_file: Option<PathBuf>,
    pub pool: PoolConfig,
    pub roles: Vec<RoleConfig>,
    /// Free-form tags (e.g. "prod") that policies can see in the context.
    pub environment: Vec<String>,
}

impl TargetConfig {
    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Host part of `upstream`, for TLS server-name checks.
    pub fn upstream_host(&self) -> &str {
        match self.upstream.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => &self.upstream,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub name: String,
    pub user: String,
    /// `None` for upstream trust authentication.
    pub password: Option<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub file: PathBuf,
    /// The key of the chain's HMAC and the seal's MAC (`key_file` /
    /// `key_env`), at least [`crate::audit::MIN_KEY_LEN`] bytes. Without
    /// one the chain is plain SHA-256, which shows accidents, not tampering.
    pub key: Option<SecretSource>,
}

impl AuditConfig {
    /// The audit key, read and checked; `None` when none is configured.
    pub fn read_key(&self) -> Result<Option<crate::audit::AuditKey>, ConfigError> {
        let Some(source) = &self.key else {
            return Ok(None);
        };
        crate::audit::AuditKey::new(&source.read()?)
            .map(Some)
            .map_err(|e| {
                source.invalid(
                    e.to_string(),
                    "generate a longer one, e.g. `openssl rand -base64 48 > audit.key` (64 characters)",
                )
            })
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse `text` as if read from `path` (relative file names resolve
    /// against the directory of `path`).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => position(path, text, span.start),
                None => path.display().to_string(),
            };
            ConfigError::Invalid {
                location,
                message: e.message().to_string(),
                hint: "see the configuration reference in README.md (SPEC §3)".into(),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Validator { path, text, base }.validate(raw)
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Read every secret the config names (upstream passwords, the audit
    /// key) and keep the values: what `serve` and `check-config` do first,
    /// so a missing secret stops them before anything starts.
    pub fn read_secrets(&mut self) -> Result<(), ConfigError> {
        for role in self.targets.iter_mut().flat_map(|t| &mut t.roles) {
            if let Some(password) = &mut role.password {
                *password = SecretSource::Value(password.read()?);
            }
        }
        self.audit.read_key()?;
        if let Some(key) = &mut self.audit.key {
            *key = SecretSource::Value(key.read()?);
        }
        Ok(())
    }

    /// How long a revocation is kept: until no token it covers can still
    /// be accepted. A covered token was issued at or before the revocation
    /// and lives at most `max_lifetime`, accepted up to `clock_skew` past
    /// its `exp`; the longest of every issuer's, so one figure serves
    /// every revocation, here and in the cluster's Redis TTLs.
    #[must_use]
    pub fn revocation_horizon(&self) -> Duration {
        self.issuers
            .iter()
            .map(|i| i.max_lifetime.saturating_add(i.clock_skew))
            .max()
            .unwrap_or(DEFAULT_MAX_LIFETIME + MAX_CLOCK_SKEW)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    policy: RawPolicy,
    audit: RawAudit,
    cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    redis: Spanned<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    postgres_listen: Spanned<String>,
    admin_listen: Option<Spanned<String>>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    #[serde(default)]
    allow_plaintext_loopback: bool,
    handshake_timeout: Option<Spanned<String>>,
    max_connections: Option<usize>,
    threads: Option<usize>,
    on_expiry: Option<Spanned<String>>,
    expiry_grace: Option<Spanned<String>>,
    max_session_age: Option<Spanned<String>>,
    mysql_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: Spanned<String>,
    issuer: Spanned<String>,
    audiences: Spanned<Vec<String>>,
    jwks_uri: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<String>>>,
    clock_skew: Option<Spanned<String>>,
    identity_claim: Option<String>,
    groups_claim: Option<String>,
    #[serde(default)]
    groups_claim_string: bool,
    token_types: Option<Spanned<Vec<String>>>,
    max_lifetime: Option<Spanned<String>>,
    #[serde(default)]
    required_claims: Vec<String>,
    authorized_parties: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    group_mappings: Vec<RawGroupMapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupMapping {
    claim: Spanned<String>,
    value: String,
    groups: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    #[serde(default = "default_protocol")]
    protocol: Spanned<String>,
    upstream: Spanned<String>,
    database: String,
    #[serde(default = "default_upstream_tls")]
    upstream_tls: Spanned<String>,
    upstream_ca_file: Option<String>,
    pool: Option<RawPool>,
    #[serde(default)]
    environment: Vec<String>,
    #[serde(default)]
    roles: Vec<RawRole>,
}

fn default_protocol() -> Spanned<String> {
    Spanned::new(0..0, "postgres".into())
}

fn default_upstream_tls() -> Spanned<String> {
    Spanned::new(0..0, "prefer".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    mode: Option<Spanned<String>>,
    max_size: Option<Spanned<usize>>,
    idle_timeout: Option<Spanned<String>>,
    wait_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    name: Spanned<String>,
    user: String,
    password: Option<Spanned<toml::Value>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: String,
    key: Option<Spanned<toml::Value>>,
    key_env: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            location: position(self.path, self.text, span.start),
            message: message.into(),
            hint: hint.into(),
        })
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let mut not_yet = |span: std::ops::Range<usize>, what: &str| {
            warnings.push(format!(
                "{}: {what} is not built yet in this version; the key is ignored",
                position(self.path, self.text, span.start)
            ));
        };
        if let Some(p) = &raw.audit.postgres {
            not_yet(p.span(), "the PostgreSQL audit sink ([audit] postgres)");
        }
        let gateway = self.gateway(raw.gateway)?;
        let mut names = HashSet::new();
        let mut issuers = Vec::new();
        for i in raw.issuers {
            if !names.insert(i.name.get_ref().clone()) {
                return self.err(
                    i.name.span(),
                    format!("duplicate issuer name `{}`", i.name.get_ref()),
                    "give every [[issuers]] entry its own name",
                );
            }
            issuers.push(self.issuer(i)?);
        }
        let mut names = HashSet::new();
        let mut targets = Vec::new();
        for t in raw.targets {
            if !names.insert(t.name.get_ref().clone()) {
                return self.err(
                    t.name.span(),
                    format!("duplicate target name `{}`", t.name.get_ref()),
                    "give every [[targets]] entry its own name",
                );
            }
            targets.push(self.target(t)?);
        }
        Ok(Config {
            gateway,
            issuers,
            targets,
            policy: PolicyConfig {
                file: self.resolve(&raw.policy.file),
            },
            audit: self.audit(raw.audit)?,
            cluster: match raw.cluster {
                None => None,
                Some(c) => {
                    let url = c.redis.get_ref();
                    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                        return self.err(
                            c.redis.span(),
                            format!("cluster redis `{url}` is not a Redis URL"),
                            "write it as redis://HOST:PORT (or rediss:// for TLS)",
                        );
                    }
                    Some(ClusterConfig {
                        redis: url.clone(),
                        namespace: c.namespace.unwrap_or_else(|| "idgate".into()),
                    })
                }
            },
            warnings,
        })
    }

    fn socket_addr(&self, s: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        s.get_ref().parse().or_else(|_| {
            self.err(
                s.span(),
                format!("`{}` is not an address", s.get_ref()),
                "write IP:PORT, e.g. \"127.0.0.1:6432\"",
            )
        })
    }

    /// One of a key's named `options`, or an error at the value naming
    /// `what` and how to fix it.
    fn choice<T: Copy>(
        &self,
        value: &Spanned<String>,
        what: &str,
        options: &[(&str, T)],
        hint: &str,
    ) -> Result<T, ConfigError> {
        let name = value.get_ref().as_str();
        match options.iter().find(|(n, _)| *n == name) {
            Some(&(_, v)) => Ok(v),
            None => self.err(value.span(), format!("{what} `{name}` is unknown"), hint),
        }
    }

    fn duration(&self, s: &Spanned<String>) -> Result<Duration, ConfigError> {
        parse_duration(s.get_ref()).or_else(|e| {
            self.err(
                s.span(),
                e,
                "durations are strings like \"500ms\", \"60s\", \"15m\", \"1h\"",
            )
        })
    }

    fn gateway(&self, g: RawGateway) -> Result<GatewayConfig, ConfigError> {
        let tls = match (g.tls_cert_file, g.tls_key_file) {
            (Some(c), Some(k)) => Some(TlsFiles {
                cert_file: self.resolve(&c),
                key_file: self.resolve(&k),
            }),
            (None, None) => None,
            _ => {
                return self.err(
                    g.postgres_listen.span(),
                    "tls_cert_file and tls_key_file must be set together",
                    "set both in [gateway], or neither",
                );
            }
        };
        if tls.is_none() && !g.allow_plaintext_loopback {
            return self.err(
                g.postgres_listen.span(),
                "no TLS certificate and plaintext not allowed: no client could ever log in",
                "set tls_cert_file/tls_key_file, or allow_plaintext_loopback = true for local use",
            );
        }
        Ok(GatewayConfig {
            postgres_listen: self.socket_addr(&g.postgres_listen)?,
            mysql_listen: g
                .mysql_listen
                .as_ref()
                .map(|a| self.socket_addr(a))
                .transpose()?,
            admin_listen: g
                .admin_listen
                .as_ref()
                .map(|a| self.socket_addr(a))
                .transpose()?,
            tls,
            allow_plaintext_loopback: g.allow_plaintext_loopback,
            handshake_timeout: match &g.handshake_timeout {
                Some(d) => self.duration(d)?,
                None => Duration::from_secs(15),
            },
            max_connections: g.max_connections.unwrap_or(10_000),
            threads: g.threads.unwrap_or(0),
            on_expiry: match &g.on_expiry {
                None => OnExpiry::Disconnect,
                Some(v) => self.choice(
                    v,
                    "on_expiry",
                    &[
                        ("disconnect", OnExpiry::Disconnect),
                        ("allow", OnExpiry::Allow),
                    ],
                    "use \"disconnect\" (end sessions when their token expires) or \"allow\"",
                )?,
            },
            expiry_grace: match &g.expiry_grace {
                Some(d) => self.duration(d)?,
                None => Duration::ZERO,
            },
            max_session_age: g
                .max_session_age
                .as_ref()
                .map(|d| self.duration(d))
                .transpose()?,
        })
    }

    fn issuer(&self, i: RawIssuer) -> Result<IssuerConfig, ConfigError> {
        let url = i.issuer.get_ref();
        if let Err(hint) = check_issuer_url(url) {
            return self.err(
                i.issuer.span(),
                format!("issuer `{url}` is not usable"),
                hint,
            );
        }
        if let Some(j) = &i.jwks_uri
            && let Err(hint) = check_issuer_url(j.get_ref())
        {
            return self.err(
                j.span(),
                format!("jwks_uri `{}` is not usable", j.get_ref()),
                hint,
            );
        }
        if i.audiences.get_ref().is_empty() {
            return self.err(
                i.audiences.span(),
                "audiences is empty: every token would be refused",
                "list the audience(s) your issuer puts in `aud`, e.g. [\"idgate\"]",
            );
        }
        let algorithms = match &i.algorithms {
            None => vec![Algorithm::RS256, Algorithm::ES256],
            Some(list) => {
                let mut out = Vec::new();
                for a in list.get_ref() {
                    out.push(match a.as_str() {
                        "RS256" => Algorithm::RS256,
                        "ES256" => Algorithm::ES256,
                        other => {
                            return self.err(
                                list.span(),
                                format!("algorithm `{other}` is not allowed"),
                                "only asymmetric algorithms are accepted: \"RS256\", \"ES256\"",
                            );
                        }
                    });
                }
                if out.is_empty() {
                    return self.err(
                        list.span(),
                        "algorithms is empty",
                        "allow at least one of \"RS256\", \"ES256\"",
                    );
                }
                out
            }
        };
        let clock_skew = match &i.clock_skew {
            Some(s) => {
                let d = self.duration(s)?;
                if d > MAX_CLOCK_SKEW {
                    return self.err(
                        s.span(),
                        format!("clock_skew {} is too large", s.get_ref()),
                        "clock_skew is capped at \"5m\"",
                    );
                }
                d
            }
            None => Duration::from_secs(60),
        };
        let token_types = match &i.token_types {
            None => TokenTypes::default(),
            Some(list) => {
                let mut types = TokenTypes {
                    access: false,
                    id: false,
                };
                for t in list.get_ref() {
                    match t.as_str() {
                        "access" => types.access = true,
                        "id" => types.id = true,
                        other => {
                            return self.err(
                                list.span(),
                                format!("token type `{other}` is unknown"),
                                "use \"access\" (typ at+jwt) and/or \"id\" (typ JWT or none)",
                            );
                        }
                    }
                }
                if !types.access && !types.id {
                    return self.err(
                        list.span(),
                        "token_types is empty: every token would be refused",
                        "use [\"access\"], [\"id\"] or both",
                    );
                }
                types
            }
        };
        let max_lifetime = match &i.max_lifetime {
            None => DEFAULT_MAX_LIFETIME,
            Some(raw) => match self.duration(raw)? {
                Duration::ZERO => {
                    return self.err(
                        raw.span(),
                        "max_lifetime of zero refuses every token",
                        "use the longest token lifetime you accept, e.g. \"1h\"",
                    );
                }
                d => d,
            },
        };
        if let Some(list) = i
            .authorized_parties
            .as_ref()
            .filter(|l| l.get_ref().is_empty())
        {
            return self.err(
                list.span(),
                "authorized_parties is empty: every token would be refused",
                "list the client ids allowed in `azp`, or remove the key to skip the check",
            );
        }
        let mut group_mappings = Vec::new();
        for m in i.group_mappings {
            if m.claim.get_ref().is_empty() {
                return self.err(
                    m.claim.span(),
                    "group mapping has an empty claim",
                    "name a claim (\"repository\") or a JSON pointer (\"/ext/team\")",
                );
            }
            if m.groups.get_ref().is_empty() {
                return self.err(
                    m.groups.span(),
                    "group mapping adds no groups",
                    "list the groups a matching token gets, e.g. groups = [\"deployers\"]",
                );
            }
            group_mappings.push(GroupMapping {
                claim: m.claim.into_inner(),
                value: m.value,
                groups: m.groups.into_inner(),
            });
        }
        Ok(IssuerConfig {
            name: i.name.into_inner(),
            issuer: i.issuer.into_inner(),
            audiences: i.audiences.into_inner(),
            jwks_uri: i.jwks_uri.map(Spanned::into_inner),
            algorithms,
            clock_skew,
            identity_claim: i.identity_claim.unwrap_or_else(|| "sub".into()),
            groups_claim: i.groups_claim.unwrap_or_else(|| "groups".into()),
            groups_claim_string: i.groups_claim_string,
            token_types,
            max_lifetime,
            required_claims: i.required_claims,
            authorized_parties: i.authorized_parties.map(Spanned::into_inner),
            group_mappings,
        })
    }

    fn target(&self, t: RawTarget) -> Result<TargetConfig, ConfigError> {
        let protocol = match t.protocol.get_ref().as_str() {
            "postgres" => Protocol::Postgres,
            "mysql" => Protocol::Mysql,
            other => {
                return self.err(
                    t.protocol.span(),
                    format!("protocol `{other}` is not supported"),
                    "use protocol = \"postgres\" or \"mysql\"",
                );
            }
        };
        if !t.upstream.get_ref().contains(':') {
            return self.err(
                t.upstream.span(),
                format!("upstream `{}` has no port", t.upstream.get_ref()),
                "write HOST:PORT, e.g. \"127.0.0.1:5432\"",
            );
        }
        let upstream_tls = match t.upstream_tls.get_ref().as_str() {
            "disable" => UpstreamTls::Disable,
            "prefer" => UpstreamTls::Prefer,
            "require" => UpstreamTls::Require,
            "verify-full" => UpstreamTls::VerifyFull,
            other => {
                return self.err(
                    t.upstream_tls.span(),
                    format!("upstream_tls `{other}` is unknown"),
                    "use one of \"disable\", \"prefer\", \"require\", \"verify-full\"",
                );
            }
        };
        let mode_span = t
            .pool
            .as_ref()
            .and_then(|p| p.mode.as_ref())
            .map(Spanned::span);
        let pool = match t.pool {
            None => PoolConfig::default(),
            Some(p) => {
                let d = PoolConfig::default();
                PoolConfig {
                    mode: match &p.mode {
                        None => d.mode,
                        Some(m) => self.choice(
                            m,
                            "pool mode",
                            &[
                                ("session", PoolMode::Session),
                                ("transaction", PoolMode::Transaction),
                            ],
                            "use \"session\" or \"transaction\"",
                        )?,
                    },
                    max_size: match &p.max_size {
                        None => d.max_size,
                        Some(n) if *n.get_ref() == 0 => {
                            return self.err(
                                n.span(),
                                "pool max_size must be at least 1",
                                "each client needs an upstream connection while it runs a statement",
                            );
                        }
                        Some(n) => *n.get_ref(),
                    },
                    idle_timeout: match &p.idle_timeout {
                        None => d.idle_timeout,
                        Some(t) => self.duration(t)?,
                    },
                    wait_timeout: match &p.wait_timeout {
                        None => d.wait_timeout,
                        Some(t) => self.duration(t)?,
                    },
                }
            }
        };
        if protocol == Protocol::Mysql
            && pool.mode == PoolMode::Transaction
            && let Some(span) = mode_span
        {
            return self.err(
                span,
                "MySQL targets pool by session",
                "use mode = \"session\" (connections are reset with COM_RESET_CONNECTION between people)",
            );
        }
        let mut names = HashSet::new();
        let mut roles = Vec::new();
        for r in t.roles {
            if !names.insert(r.name.get_ref().clone()) {
                return self.err(
                    r.name.span(),
                    format!(
                        "duplicate role `{}` in target `{}`",
                        r.name.get_ref(),
                        t.name.get_ref()
                    ),
                    "give every [[targets.roles]] entry of a target its own name",
                );
            }
            roles.push(self.role(r)?);
        }
        if roles.is_empty() {
            return self.err(
                t.name.span(),
                format!("target `{}` has no roles", t.name.get_ref()),
                "add a [[targets.roles]] entry with name, user and password_env",
            );
        }
        Ok(TargetConfig {
            name: t.name.into_inner(),
            protocol,
            upstream: t.upstream.into_inner(),
            database: t.database,
            upstream_tls,
            upstream_ca_file: t.upstream_ca_file.map(|f| self.resolve(&f)),
            pool,
            roles,
            environment: t.environment,
        })
    }

    fn role(&self, r: RawRole) -> Result<RoleConfig, ConfigError> {
        if let Some(p) = &r.password {
            return self.err(
                p.span(),
                "inline passwords are not accepted",
                "put the password in an environment variable and write password_env = \"NAME\", or in a file and write password_file = \"PATH\"",
            );
        }
        let password = self.secret(
            r.password_env.as_ref(),
            r.password_file.as_ref(),
            SecretKeys {
                prefix: "password",
                what: format!("password of role `{}`", r.name.get_ref()),
                file_noun: "password file",
                fill: "write the upstream password into it",
            },
        )?;
        Ok(RoleConfig {
            name: r.name.into_inner(),
            user: r.user,
            password,
        })
    }

    fn audit(&self, a: RawAudit) -> Result<AuditConfig, ConfigError> {
        if let Some(k) = &a.key {
            return self.err(
                k.span(),
                "an inline audit key is not accepted",
                "put the key in a file and write key_file = \"PATH\" (e.g. `openssl rand -base64 48 > audit.key; chmod 600 audit.key`), or in an environment variable and write key_env = \"NAME\"",
            );
        }
        let key = self.secret(
            a.key_env.as_ref(),
            a.key_file.as_ref(),
            SecretKeys {
                prefix: "key",
                what: "the audit key".into(),
                file_noun: "audit key file",
                fill: "write a key of at least 32 bytes into it, e.g. `openssl rand -base64 48 > audit.key`",
            },
        )?;
        Ok(AuditConfig {
            file: self.resolve(&a.file),
            key,
        })
    }

    /// Where the secret named by `PREFIX_env` or `PREFIX_file` (at most
    /// one) is; `None` if neither is set. Nothing is read here.
    fn secret(
        &self,
        env: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
        keys: SecretKeys<'_>,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let prefix = keys.prefix;
        let at = |s: &Spanned<String>| position(self.path, self.text, s.span().start);
        let named = match (env, file) {
            (Some(_), Some(f)) => {
                return self.err(
                    f.span(),
                    format!("{prefix}_env and {prefix}_file are both set"),
                    "keep one of them",
                );
            }
            (Some(var), None) => NamedSecret::env(at(var), keys.what, var.get_ref().clone()),
            (None, Some(file)) => NamedSecret::file(
                at(file),
                keys.what,
                self.resolve(file.get_ref()),
                keys.file_noun,
                keys.fill,
            ),
            (None, None) => return Ok(None),
        };
        Ok(Some(SecretSource::Named(named)))
    }
}

/// How a secret's keys are named in errors.
struct SecretKeys<'a> {
    /// `password` for `password_env` / `password_file`.
    prefix: &'a str,
    /// What the secret is, e.g. "password of role `reader`".
    what: String,
    /// "password file".
    file_noun: &'static str,
    /// Hint for an empty file.
    fill: &'static str,
}

/// Issuers must be https; plain http is tolerated only on loopback, for
/// development issuers and tests.
fn check_issuer_url(s: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(s)
        .map_err(|_| "write a full URL, e.g. \"https://login.example.com/realms/corp\"")?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url.host()) => Ok(()),
        _ => Err("issuers must use https (plain http only on loopback)"),
    }
}

fn is_loopback_host(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests;
