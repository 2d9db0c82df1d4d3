//! The accept loop every front end runs: one task per connection, each
//! holding a connection-limit permit (shared by every front end, so
//! `max_connections` caps the gateway, not each port) until it ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a front end does with an accepted socket.
pub trait Handler: Send + Sync + 'static {
    /// Serve one client to the end, or until `shutdown`.
    fn serve(
        self: &Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// Turn away a client over the connection limit, in the protocol's terms.
    fn refuse_busy(&self, tcp: TcpStream) -> impl Future<Output = ()> + Send + 'static;
}

/// Accept clients until `shutdown` fires, then wait for live sessions to
/// end (they see the same token, close, and audit their end).
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
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
            tasks.spawn(handler.refuse_busy(tcp));
            continue;
        };
        let session = handler.serve(tcp, peer, shutdown.clone());
        tasks.spawn(async move {
            session.await;
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
}
