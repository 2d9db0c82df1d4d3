//! What the keyed chain and the seal cost the audit writer: CPU per event
//! with and without the key (the writer's whole work: chaining, the
//! write, the fsyncs, the seal), and one seal replacement (temporary file,
//! fsync, rename) on its own. `cargo bench --bench audit_writer`; figures
//! are printed, never asserted.

use std::time::Instant;

use idgate::audit::{AuditEvent, AuditKey, AuditLog, Decision, EventKind};
use idgate::secret::Secret;

const EVENTS: usize = 200_000;
const SEALS: usize = 300;

/// User + system CPU of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit(") ").next().expect("stat").split(' ').collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn statement(i: usize) -> AuditEvent {
    AuditEvent {
        session_id: Some("s-1".into()),
        issuer: Some("https://login.example.com/realms/corp".into()),
        subject: Some("alice".into()),
        identity: Some("alice@example.com".into()),
        groups: vec!["analysts".into()],
        client_addr: Some("10.0.0.5:51234".into()),
        target: Some("orders".into()),
        role: Some("reader".into()),
        statement: Some("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;".into()),
        statement_kind: Some("read".into()),
        tables: vec!["public.pgbench_accounts".into()],
        decision: Some(Decision::Allow),
        policy_ids: vec!["analysts-read".into()],
        duration_ms: Some(0.125),
        rows: Some(i as u64),
        ..AuditEvent::new(EventKind::Statement)
    }
}

async fn run(key: Option<&AuditKey>) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::open(&path, key).await.expect("open");
    let events: Vec<AuditEvent> = (0..EVENTS).map(statement).collect();
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for ev in events {
        log.record(ev).await.expect("record");
    }
    writer.shutdown().await;
    (cpu_seconds() - cpu, wall.elapsed().as_secs_f64())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = AuditKey::new(&Secret::new("k".repeat(48))).expect("key");
    for round in 0..3 {
        let (u_cpu, u_wall) = rt.block_on(run(None));
        let (k_cpu, k_wall) = rt.block_on(run(Some(&key)));
        println!(
            "round {round}: {EVENTS} events, process CPU per event: unkeyed {:.2} µs, keyed {:.2} µs ({:+.2} µs); wall {:.2} s / {:.2} s",
            u_cpu / EVENTS as f64 * 1e6,
            k_cpu / EVENTS as f64 * 1e6,
            (k_cpu - u_cpu) / EVENTS as f64 * 1e6,
            u_wall,
            k_wall
        );
    }
    // One seal replacement as the writer does it, per group commit.
    let dir = tempfile::tempdir().expect("tempdir");
    let seal = dir.path().join("audit.jsonl.seal");
    let temp = dir.path().join("audit.jsonl.seal.tmp");
    let record = [b'x'; 200];
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for _ in 0..SEALS {
        let mut f = std::fs::File::create(&temp).expect("create");
        std::io::Write::write_all(&mut f, &record).expect("write");
        f.sync_data().expect("sync");
        drop(f);
        std::fs::rename(&temp, &seal).expect("rename");
    }
    println!(
        "seal replacement: {:.0} µs CPU, {:.0} µs wall each; at one per 20 ms group commit: {:.2}% of one core",
        (cpu_seconds() - cpu) / SEALS as f64 * 1e6,
        wall.elapsed().as_secs_f64() / SEALS as f64 * 1e6,
        (cpu_seconds() - cpu) / SEALS as f64 * 50.0 * 100.0
    );
}
