//! The running gateway: the core's services built from one `Config`, the
//! front ends given them, and the tasks that serve them. `idgate serve`,
//! `idgate dev` and the integration tests all start the gateway here;
//! nothing else imports this module.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, AuditWriter};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::core::pool::PoolSet;
use crate::core::services::{Parts, Services};
use crate::identity::TokenValidator;
use crate::policy::{Clock, PolicyEngine};

/// A started gateway: where it listens and how to stop it.
pub struct Running {
    pub postgres_addr: SocketAddr,
    /// Where the MySQL front end listens, when `mysql_listen` is set.
    pub mysql_addr: Option<SocketAddr>,
    /// Where the admin API listens, when `admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    pub services: Arc<Services>,
    pub postgres: Arc<crate::postgres::Frontend>,
    pub mysql: Arc<crate::mysql::Frontend>,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    audit_writer: AuditWriter,
}

/// Load policy, TLS and audit, fetch issuer keys, bind the listeners.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with_clock(config, Clock::System).await
}

/// As `start`, with the time policies see fixed (tests).
pub async fn start_with_clock(config: Config, clock: Clock) -> anyhow::Result<Running> {
    start_inner(config, clock, true).await
}

/// As `start`, but audit events are discarded, not written: only for
/// measuring what the audit trail costs (`idgate dev --no-audit`).
pub async fn start_unaudited(config: Config) -> anyhow::Result<Running> {
    start_inner(config, Clock::System, false).await
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))
}

async fn start_inner(mut config: Config, clock: Clock, audited: bool) -> anyhow::Result<Running> {
    // Every secret up front: a missing one stops the gateway here, not
    // at a client's first login.
    config.read_secrets()?;
    let policy = PolicyEngine::load(&config.policy.file)?;
    let tls = match &config.gateway.tls {
        Some(files) => Some(crate::tls::server_config(
            &files.cert_file,
            &files.key_file,
        )?),
        None => None,
    };
    let pg_pools = Arc::new(crate::postgres::pools_for(&crate::postgres::targets(
        &config.targets,
    ))?);
    let mysql_pools = Arc::new(crate::mysql::pool::pools(&crate::mysql::targets(
        &config.targets,
    ))?);
    let (audit, audit_writer) = if audited {
        let key = config.audit.read_key()?;
        AuditLog::open(&config.audit.file, key.as_ref())
            .await
            .with_context(|| format!("audit file {}", config.audit.file.display()))?
    } else {
        AuditLog::discarding()
    };
    let validator = TokenValidator::new(config.issuers.clone());
    validator.warm_up().await;
    let pg_listener = bind(config.gateway.postgres_listen, "postgres_listen").await?;
    let postgres_addr = pg_listener.local_addr()?;
    let mysql_listener = match config.gateway.mysql_listen {
        Some(addr) => Some(bind(addr, "mysql_listen").await?),
        None => None,
    };
    let mysql_addr = mysql_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let admin_listener = match config.gateway.admin_listen {
        Some(addr) => Some(bind(addr, "admin_listen").await?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let cluster = match &config.cluster {
        Some(c) => Some(Arc::new(
            Cluster::new(c).with_context(|| format!("[cluster] redis {}", c.redis))?,
        )),
        None => None,
    };
    let max_connections = config.gateway.max_connections;
    let services = Arc::new(Services::new(Parts {
        config,
        validator,
        policy,
        audit,
        tls,
        clock,
        cluster,
        pools: vec![
            Arc::clone(&pg_pools) as Arc<dyn PoolSet>,
            Arc::clone(&mysql_pools) as Arc<dyn PoolSet>,
        ],
    }));
    let shutdown = CancellationToken::new();
    let limit = Arc::new(Semaphore::new(max_connections));
    let postgres = Arc::new(crate::postgres::Frontend::new(
        Arc::clone(&services),
        pg_pools,
    ));
    postgres.watch(&shutdown);
    let mut servers = vec![tokio::spawn(crate::core::listener::serve(
        Arc::clone(&postgres),
        pg_listener,
        Arc::clone(&limit),
        shutdown.clone(),
    ))];
    tracing::info!("PostgreSQL front end listening on {postgres_addr}");
    let mysql = Arc::new(crate::mysql::Frontend::new(
        Arc::clone(&services),
        mysql_pools,
    ));
    if let (Some(listener), Some(addr)) = (mysql_listener, mysql_addr) {
        servers.push(tokio::spawn(crate::core::listener::serve(
            Arc::clone(&mysql),
            listener,
            Arc::clone(&limit),
            shutdown.clone(),
        )));
        tracing::info!("MySQL front end listening on {addr}");
    }
    let pool_sets = services.pools.iter().map(Arc::downgrade).collect();
    tokio::spawn(crate::core::pool::reap_idle(pool_sets, shutdown.clone()));
    tokio::spawn(Arc::clone(&services.expiry).run(shutdown.clone()));
    if let Some(cluster) = &services.cluster {
        let weak = Arc::downgrade(&services);
        tokio::spawn(Arc::clone(cluster).run(weak.clone(), shutdown.clone()));
        tokio::spawn(Arc::clone(cluster).sync_sessions(weak, shutdown.clone()));
    }
    if let (Some(listener), Some(addr)) = (admin_listener, admin_addr) {
        tokio::spawn(crate::admin::serve(
            Arc::clone(&services),
            listener,
            shutdown.clone(),
        ));
        tracing::info!("admin API listening on {addr}");
    }
    Ok(Running {
        postgres_addr,
        mysql_addr,
        admin_addr,
        services,
        postgres,
        mysql,
        shutdown,
        servers,
        audit_writer,
    })
}

impl Running {
    /// A token that, when cancelled, stops the gateway.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop accepting, end sessions, and flush the audit trail.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for server in self.servers {
            let _ = server.await;
        }
        drop(self.postgres);
        drop(self.mysql);
        drop(self.services);
        self.audit_writer.shutdown().await;
    }

    /// Run until `shutdown_token` is cancelled, then stop.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }
}
