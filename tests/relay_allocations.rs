//! The relay's steady state allocates nothing per statement: simple
//! queries, named prepared statements and unnamed extended-protocol
//! statements, under transaction pooling (a server connection checked out
//! and back per statement), with the policy check and the audit trail on.
//!
//! The gateway runs on a thread of its own whose allocations are counted;
//! the client runs on the test's thread, uncounted. The upstream is
//! plaintext, as in the benchmark: rustls allocates a buffer per TLS
//! record it encrypts, which is not the relay's to avoid.
//!
//! What is counted is what could recur per statement: every new block
//! (`alloc`, `alloc_zeroed`) and every realloc that does not at least
//! double a block. A realloc that doubles it or more is a buffer growing
//! its capacity (`Vec`, `BytesMut`): it happens a logarithmic number of
//! times, whenever a buffer meets a bigger peak than before, and never per
//! statement. How big those peaks get depends on timing, not on the relay:
//! the recorders render audit events into the pending buffers the writer
//! thread swaps out once per batch, so when the machine is busy and fsync
//! slow, a batch holds more events than during the warm-up and its
//! buffers grow again (a fresh clone on a busy machine saw 17 such
//! growths in one round). Those are counted apart and only reported.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use idgate::config::{PoolConfig, PoolMode, UpstreamTls};
use support::*;

struct Counting;

/// New blocks and reallocs short of doubling, on the gateway thread.
static GATEWAY_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Reallocs that at least double a block: capacity growth.
static GATEWAY_GROWTHS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count(counter: &AtomicU64) {
    if COUNTED.get() {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call goes straight to the system allocator; counting
// touches only an atomic and a const-initialised thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&GATEWAY_ALLOCATIONS);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&GATEWAY_ALLOCATIONS);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size().saturating_mul(2) && layout.size() > 0 {
            count(&GATEWAY_GROWTHS);
        } else {
            count(&GATEWAY_ALLOCATIONS);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Statements per measured round, after as many to warm up.
const ROUND: u64 = 400;

#[test]
fn steady_statements_allocate_nothing_in_the_gateway() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut h = Harness::with(Options {
                pool: PoolConfig {
                    mode: PoolMode::Transaction,
                    max_size: 2,
                    ..PoolConfig::default()
                },
                upstream_tls: UpstreamTls::Disable,
                ..Options::default()
            })
            .await;
            ready_tx.send((h.addr, h.developer())).expect("test waits");
            COUNTED.set(true);
            let _ = stop_rx.await;
            COUNTED.set(false);
            h.stop_and_read_audit().await
        })
    });
    let (addr, token) = ready_rx.recv().expect("gateway starts");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let per_kind = rt.block_on(async {
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .dbname(TARGET)
            .user("writer")
            .password(&token);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.expect("login");
        tokio::spawn(connection);
        let named = client.prepare("select $1::int + 1").await.expect("prepare");

        // Each kind: one round to warm up (caches, pools, buffers), one
        // counted.
        let mut per_kind = Vec::new();
        for kind in ["simple", "named", "unnamed"] {
            let mut counted = (0, 0);
            for round in 0..2 {
                let before = (
                    GATEWAY_ALLOCATIONS.load(Ordering::Relaxed),
                    GATEWAY_GROWTHS.load(Ordering::Relaxed),
                );
                for i in 0..ROUND as i32 {
                    match kind {
                        "simple" => {
                            client
                                .simple_query(&format!("select {i} + 1"))
                                .await
                                .expect("simple query");
                        }
                        "named" => {
                            client.query_one(&named, &[&i]).await.expect("named");
                        }
                        _ => {
                            client
                                .query_typed(
                                    "select $1::int + 2",
                                    &[(&i, tokio_postgres::types::Type::INT4)],
                                )
                                .await
                                .expect("unnamed");
                        }
                    }
                }
                if round == 1 {
                    counted = (
                        GATEWAY_ALLOCATIONS.load(Ordering::Relaxed) - before.0,
                        GATEWAY_GROWTHS.load(Ordering::Relaxed) - before.1,
                    );
                }
            }
            per_kind.push((kind, counted));
        }
        per_kind
    });
    let _ = stop_tx.send(());
    let events = gateway.join().expect("gateway thread");

    // (kind, (allocations, capacity growths)) per round of ROUND statements.
    eprintln!("gateway thread, {ROUND} statements per kind: {per_kind:?}");
    for (kind, (allocations, _)) in &per_kind {
        assert_eq!(
            *allocations, 0,
            "{kind}: {allocations} allocations in the gateway for {ROUND} statements \
             (all kinds, with capacity growths: {per_kind:?})"
        );
    }
    // The statements were audited all the same.
    let audited = events.iter().filter(|e| e["event"] == "statement").count() as u64;
    assert!(audited >= 6 * ROUND, "{audited} statement events");
}
