//! The PostgreSQL front end: client sessions, upstream logins, the relay
//! and cancel-key mapping, over the wire codec in `wire::postgres`. It
//! takes the core's services and plugs into its listener, admission,
//! judge and pool.

pub mod cancel;
pub use crate::wire::postgres as codec;
pub mod catalogue;
mod enforce;
pub mod grants;
pub mod pool;
mod relay;
pub mod scram;
mod session;
pub mod statements;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{Protocol, TargetConfig};
use crate::core::listener::Handler;
use crate::core::services::Services;
use cancel::CancelMap;
use catalogue::TargetCatalogue;
use pool::Pools;

/// What the PostgreSQL front end shares between its sessions.
pub struct Frontend {
    pub services: Arc<Services>,
    /// Upstream connection pools, per (target, role).
    pub pools: Arc<Pools>,
    /// What each target's catalogue holds, kept current (by target name).
    pub catalogues: HashMap<String, Arc<TargetCatalogue>>,
    pub cancels: Arc<CancelMap>,
}

/// The PostgreSQL targets of `targets`.
pub fn targets(targets: &[TargetConfig]) -> Vec<TargetConfig> {
    targets
        .iter()
        .filter(|t| t.protocol == Protocol::Postgres)
        .cloned()
        .collect()
}

/// The pools of every PostgreSQL target, with upstream TLS per target.
pub fn pools_for(targets: &[TargetConfig]) -> anyhow::Result<Pools> {
    let mut tls: HashMap<String, Option<Arc<ClientConfig>>> = HashMap::new();
    for t in targets {
        let c = crate::tls::upstream_config(t.upstream_tls, t.upstream_ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("target {}: {e}", t.name))?;
        tls.insert(t.name.clone(), c);
    }
    Ok(pool::pools(targets, &tls))
}

impl Frontend {
    pub fn new(services: Arc<Services>, pools: Arc<Pools>) -> Self {
        let catalogues = pools
            .named()
            .map(|(t, _, _)| (t.to_owned(), Arc::default()))
            .collect();
        Frontend {
            services,
            pools,
            catalogues,
            cancels: Arc::new(CancelMap::default()),
        }
    }

    /// Keep each target's catalogue current and warn about read-only
    /// roles whose upstream user could write, until `shutdown`.
    pub fn watch(self: &Arc<Self>, shutdown: &CancellationToken) {
        for (target, catalogue) in &self.catalogues {
            let pool = self
                .services
                .config
                .target(target)
                .and_then(|t| t.roles.first())
                .and_then(|r| self.pools.get(target, &r.name));
            if let Some(pool) = pool {
                Arc::clone(catalogue).watch(Arc::clone(pool), shutdown.clone());
            }
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(fe) = weak.upgrade() else { return };
            for w in grants::read_only_roles_that_can_write(&fe.pools, &fe.services.policy).await {
                tracing::warn!("{w}");
            }
        });
    }
}

impl Handler for Frontend {
    fn serve(
        self: &Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        session::run(Arc::clone(self), tcp, peer, shutdown)
    }

    fn refuse_busy(&self, tcp: TcpStream) -> impl Future<Output = ()> + Send + 'static {
        session::refuse_busy(tcp)
    }
}
