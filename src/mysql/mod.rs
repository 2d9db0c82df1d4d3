//! The MySQL/MariaDB front end: the client's login up to its token
//! (`handshake`), sessions (`session`), the command loop (`relay`),
//! upstream logins (`upstream`, `auth`) and pooled connections (`pool`),
//! over the wire codec in `wire::mysql`. It takes the core's services and
//! plugs into its listener, admission, judge and pool.

pub mod auth;
pub use crate::wire::mysql as codec;
pub mod handshake;
pub mod pool;
mod relay;
pub mod response;
mod session;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{Protocol, TargetConfig};
use crate::core::listener::Handler;
use crate::core::services::Services;
use crate::sessions::LiveSession;
use pool::{Pools, Variant};

/// What the MySQL front end shares between its sessions.
pub struct Frontend {
    pub services: Arc<Services>,
    /// Upstream connection pools, per (target, role).
    pub pools: Arc<Pools>,
    ids: session::ConnectionIds,
    /// Live clients by the connection id the gateway gave them, for KILL.
    conns: Mutex<HashMap<u32, LiveConn>>,
}

/// What `KILL` needs of a live client connection.
pub(crate) struct LiveConn {
    issuer: String,
    subject: String,
    target: String,
    role: String,
    variant: Arc<Variant>,
    /// The server's id of the connection serving it.
    upstream_id: u32,
    session: Arc<LiveSession>,
}

/// Removes a connection from `Frontend::conns` when its session ends.
pub(crate) struct Entered<'a> {
    fe: &'a Frontend,
    id: u32,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        crate::lock(&self.fe.conns).remove(&self.id);
    }
}

/// Stop what the server connection `upstream_id` runs, from a connection
/// of its own pool's login opened for this (a server lets a user kill its
/// own connections' statements), outside the pool so a full one cannot
/// hold it up.
async fn kill_query(pool: Arc<pool::Pool>, variant: Arc<Variant>, upstream_id: u32) {
    let killed = async {
        let mut conn = crate::core::pool::Connector::open(pool.connector(), &variant).await?;
        conn.run(&format!("KILL QUERY {upstream_id}")).await
    };
    if let Err(e) = killed.await {
        tracing::warn!("killing a statement upstream: {e}");
    }
}

/// The MySQL targets of `targets`.
pub fn targets(targets: &[TargetConfig]) -> Vec<TargetConfig> {
    targets
        .iter()
        .filter(|t| t.protocol == Protocol::Mysql)
        .cloned()
        .collect()
}

impl Frontend {
    pub fn new(services: Arc<Services>, pools: Arc<Pools>) -> Self {
        Frontend {
            services,
            pools,
            ids: session::ConnectionIds::default(),
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn next_connection_id(&self) -> u32 {
        self.ids.next()
    }

    fn enter(&self, id: u32, conn: LiveConn) -> Entered<'_> {
        crate::lock(&self.conns).insert(id, conn);
        Entered { fe: self, id }
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
