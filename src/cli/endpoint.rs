//! Where the gateway is and how to reach it, for `connect` and `tunnel`:
//! host, port and CA from the person's settings (flags, then `IDGATE_*`
//! variables, then the config file), and how its certificate is checked.
//! Tokens only ever travel to it over TLS.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{CliError, Overrides, Settings};
use crate::tls::{CertCheck, TlsError};
use crate::wire::postgres as codec;

/// A TLS connection to the gateway's PostgreSQL port.
pub type GatewayStream = tokio_rustls::client::TlsStream<TcpStream>;

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
    /// The gateway's PostgreSQL port (IDGATE_POSTGRES_PORT; default 6432).
    #[arg(long)]
    pub port: Option<u16>,
    /// CA certificates (PEM) that sign the gateway's certificate
    /// (IDGATE_CA_FILE); default: the system's trust store.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// `verify-full` checks the gateway's certificate and host name;
    /// `require` only encrypts (for `idgate dev`'s throwaway certificate).
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
            postgres_port: self.port,
            ca_file: self.ca_file.clone(),
            ..Overrides::default()
        })
    }
}

/// How the gateway's certificate is checked, named as libpq names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Require,
    VerifyFull,
}

impl SslMode {
    #[must_use]
    pub fn as_libpq(self) -> &'static str {
        match self {
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
                "pass --gateway HOST (or set IDGATE_GATEWAY, or `gateway` in ~/.config/idgate/config.toml), and --port if it is not 6432".into()
            }
            EndpointError::Tls(_) => {
                "--ca-file (IDGATE_CA_FILE) must name a PEM file of CA certificates".into()
            }
            EndpointError::Unreachable { .. } => {
                "check --gateway and --port (IDGATE_GATEWAY, IDGATE_POSTGRES_PORT) and that the gateway runs".into()
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
            EndpointError::NoGateway | EndpointError::BadHost(_) => 2,
            _ => 1,
        }
    }
}

/// The gateway's PostgreSQL port, with the TLS settings to reach it.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr())
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(settings: &Settings, sslmode: SslMode) -> Result<Self, EndpointError> {
        let host = settings
            .gateway
            .clone()
            .filter(|h| !h.is_empty())
            .ok_or(EndpointError::NoGateway)?;
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| EndpointError::BadHost(host.clone()))?;
        let check = match (sslmode, &settings.ca_file) {
            (SslMode::Require, _) => CertCheck::EncryptOnly,
            (SslMode::VerifyFull, Some(path)) => CertCheck::CaFile(path),
            (SslMode::VerifyFull, None) => CertCheck::SystemRoots,
        };
        Ok(Endpoint {
            host,
            port: settings.postgres_port,
            sslmode,
            ca_file: settings.ca_file.clone(),
            server_name,
            tls: TlsConnector::from(crate::tls::client_config(check)?),
        })
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A TLS connection to the gateway: SSLRequest, then the handshake.
    pub async fn connect(&self) -> Result<GatewayStream, EndpointError> {
        let addr = self.addr();
        let unreachable = |source| EndpointError::Unreachable {
            addr: addr.clone(),
            source,
        };
        let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
        let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| unreachable(timed_out()))?
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
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
        let handshake = |source| EndpointError::Handshake {
            addr: addr.clone(),
            source,
        };
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.tls.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| handshake(timed_out()))?
        .map_err(handshake)
    }
}
