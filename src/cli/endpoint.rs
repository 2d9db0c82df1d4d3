//! Where the gateway is and how to reach it, for `connect` and `tunnel`:
//! host, the port of the target's protocol and CA from the person's
//! settings (flags, then `IDGATE_*` variables, then the config file), and
//! how its certificate is checked. Tokens only ever travel to it over TLS,
//! unless the person asks for plain text to a gateway on loopback
//! (`--sslmode disable`, for one that allows plaintext loopback).

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::settings::Protocol;
use super::{CliError, Overrides, Settings};
use crate::tls::{CertCheck, Stream, TlsError};
use crate::wire::postgres as codec;

/// A connection to the gateway: TLS, or plain on loopback when asked.
pub type GatewayStream = Stream;

/// How long reaching the gateway (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct EndpointArgs {
    /// The profile of the client config file to use (IDGATE_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
    /// The gateway's host name, as its certificate names it
    /// (IDGATE_GATEWAY, or `gateway` in the config file).
    #[arg(long)]
    pub gateway: Option<String>,
    /// The gateway's port for the target's protocol (default: 6432 for
    /// PostgreSQL, IDGATE_POSTGRES_PORT; 3307 for MySQL, IDGATE_MYSQL_PORT).
    #[arg(long)]
    pub port: Option<u16>,
    /// The target's protocol (IDGATE_PROTOCOL, or `[targets.NAME]
    /// protocol` in the config file); default postgres.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// CA certificates (PEM) that sign the gateway's certificate
    /// (IDGATE_CA_FILE); default: the system's trust store.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// `verify-full` checks the gateway's certificate and host name;
    /// `require` only encrypts (for `idgate dev`'s throwaway certificate);
    /// `disable` sends the token in plain text, only to a gateway on
    /// loopback that allows it.
    #[arg(
        long,
        env = "IDGATE_SSLMODE",
        value_enum,
        default_value = "verify-full"
    )]
    pub sslmode: SslMode,
}

impl EndpointArgs {
    /// The person's settings with these flags on top.
    pub fn settings(&self) -> Result<Settings, CliError> {
        Settings::load(Overrides {
            profile: self.profile.clone(),
            gateway: self.gateway.clone(),
            port: self.port,
            protocol: self.protocol,
            ca_file: self.ca_file.clone(),
            ..Overrides::default()
        })
    }
}

/// How the gateway's certificate is checked, named as libpq names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyFull,
}

impl SslMode {
    #[must_use]
    pub fn as_libpq(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Settings(#[from] CliError),
    #[error("no gateway given")]
    NoGateway,
    #[error("gateway host {0:?} is not a valid host name")]
    BadHost(String),
    #[error("--sslmode disable with the gateway at {0}, which is not on loopback")]
    PlaintextOffLoopback(String),
    #[error("gateway CA file {0}")]
    Tls(#[from] TlsError),
    #[error("cannot reach the gateway at {addr}: {source}")]
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    #[error("the gateway at {0} does not offer TLS")]
    NoTls(String),
    #[error("TLS with the gateway at {addr} failed: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
}

impl EndpointError {
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            EndpointError::Settings(e) => e.hint(),
            EndpointError::NoGateway | EndpointError::BadHost(_) => {
                "pass --gateway HOST (or set IDGATE_GATEWAY, or `gateway` in ~/.config/idgate/config.toml), and --port if it is not the default (6432 for PostgreSQL, 3307 for MySQL)".into()
            }
            EndpointError::PlaintextOffLoopback(_) => {
                "tokens travel in plain text only on loopback: use --sslmode require or verify-full".into()
            }
            EndpointError::Tls(_) => {
                "--ca-file (IDGATE_CA_FILE) must name a PEM file of CA certificates".into()
            }
            EndpointError::Unreachable { .. } => {
                "check --gateway, --port and --protocol (IDGATE_GATEWAY, IDGATE_POSTGRES_PORT or IDGATE_MYSQL_PORT, IDGATE_PROTOCOL) and that the gateway runs".into()
            }
            EndpointError::NoTls(_) => "the gateway must have tls_cert_file and tls_key_file set".into(),
            EndpointError::Handshake { .. } => {
                "give the CA that signed the gateway's certificate with --ca-file, or --sslmode require for a trial gateway".into()
            }
        }
    }

    /// 2 when the command line lacks something, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            EndpointError::Settings(e) => e.exit_code(),
            EndpointError::NoGateway
            | EndpointError::BadHost(_)
            | EndpointError::PlaintextOffLoopback(_) => 2,
            _ => 1,
        }
    }
}

/// The gateway's front end for one target's protocol, with the TLS
/// settings to reach it.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr())
            .field("protocol", &self.protocol)
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The gateway's front end for `target` (its protocol from the
    /// settings).
    pub fn new(settings: &Settings, target: &str, sslmode: SslMode) -> Result<Self, EndpointError> {
        let host = settings
            .gateway
            .clone()
            .filter(|h| !h.is_empty())
            .ok_or(EndpointError::NoGateway)?;
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| EndpointError::BadHost(host.clone()))?;
        if sslmode == SslMode::Disable && !is_loopback(&host) {
            return Err(EndpointError::PlaintextOffLoopback(host));
        }
        let check = match (sslmode, &settings.ca_file) {
            (SslMode::Disable | SslMode::Require, _) => CertCheck::EncryptOnly,
            (SslMode::VerifyFull, Some(path)) => CertCheck::CaFile(path),
            (SslMode::VerifyFull, None) => CertCheck::SystemRoots,
        };
        let protocol = settings.protocol_of(target);
        Ok(Endpoint {
            host,
            port: settings.port(protocol),
            protocol,
            sslmode,
            ca_file: settings.ca_file.clone(),
            server_name,
            tls: TlsConnector::from(crate::tls::client_config(check)?),
        })
    }

    /// Whether the token goes to the gateway over TLS.
    #[must_use]
    pub fn uses_tls(&self) -> bool {
        self.sslmode != SslMode::Disable
    }

    /// A TCP connection to the gateway.
    pub async fn tcp(&self) -> Result<TcpStream, EndpointError> {
        let addr = self.addr();
        let unreachable = |source| EndpointError::Unreachable {
            addr: addr.clone(),
            source,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| unreachable(timed_out()))?
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// The TLS handshake on `tcp`, once the protocol has asked for it.
    pub async fn start_tls(&self, tcp: TcpStream) -> Result<GatewayStream, EndpointError> {
        let handshake = |source| EndpointError::Handshake {
            addr: self.addr(),
            source,
        };
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.tls.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| handshake(timed_out()))?
        .map_err(handshake)?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }

    /// A connection to the gateway's PostgreSQL port: SSLRequest, then the
    /// TLS handshake (plain with `--sslmode disable`).
    pub async fn connect(&self) -> Result<GatewayStream, EndpointError> {
        let mut tcp = self.tcp().await?;
        if !self.uses_tls() {
            return Ok(Stream::Plain(tcp));
        }
        let addr = self.addr();
        let unreachable = |source| EndpointError::Unreachable {
            addr: addr.clone(),
            source,
        };
        let mut request = BytesMut::with_capacity(8);
        codec::ssl_request(&mut request);
        tcp.write_all(&request).await.map_err(unreachable)?;
        let mut answer = [0u8; 1];
        tokio::time::timeout(CONNECT_TIMEOUT, tcp.read_exact(&mut answer))
            .await
            .map_err(|_| unreachable(timed_out()))?
            .map_err(unreachable)?;
        if answer[0] != b'S' {
            return Err(EndpointError::NoTls(addr));
        }
        self.start_tls(tcp).await
    }

    /// `host:port`, for messages.
    #[must_use]
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::TimedOut)
}

/// A loopback address, or `localhost`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
