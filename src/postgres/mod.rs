//! The PostgreSQL front end: client sessions, upstream logins, the relay
//! and cancel-key mapping, over the wire codec in `wire::postgres`.

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

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::Gateway;

/// Accept clients until `shutdown` fires, then wait for live sessions to end
/// (they see the same token, close, and audit their end).
/// A semaphore caps concurrent connections; each permit is held by its
/// session task, so the count can never drift.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(gw.config.gateway.max_connections));
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tasks.spawn(session::refuse_busy(tcp));
            continue;
        };
        let gw = Arc::clone(&gw);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            session::run(gw, tcp, peer, shutdown).await;
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
}
