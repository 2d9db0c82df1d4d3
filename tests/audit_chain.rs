//! The audit file end to end: written by `AuditLog`, checked by `verify`,
//! tampered with the way an intruder would.

use std::path::{Path, PathBuf};

use idgate::audit::{
    AuditError, AuditEvent, AuditLog, ChainBreak, Decision, EventKind, GENESIS_HASH, verify,
};
use sha2::Digest;
use tempfile::TempDir;

fn statement(i: usize) -> AuditEvent {
    AuditEvent {
        session_id: Some(format!("s-{}", i % 7)),
        issuer: Some("https://login.example.com/realms/corp".into()),
        subject: Some("alice".into()),
        identity: Some("alice@example.com".into()),
        groups: vec!["analysts".into()],
        client_addr: Some("10.0.0.5:51234".into()),
        target: Some("orders".into()),
        role: Some("reader".into()),
        statement: Some(format!(
            "SELECT * FROM orders WHERE id = {i} -- \"quoted\" é\n"
        )),
        statement_kind: Some("read".into()),
        tables: vec!["public.orders".into()],
        decision: Some(Decision::Allow),
        policy_ids: vec!["policy0".into()],
        duration_ms: Some(i as f64 * 0.137),
        rows: Some(i as u64),
        ..AuditEvent::new(EventKind::Statement)
    }
}

async fn write_events(path: &Path, range: std::ops::Range<usize>) {
    let (log, writer) = AuditLog::open(path).await.expect("open audit log");
    for i in range {
        log.record(statement(i)).await.expect("record");
    }
    writer.shutdown().await;
}

async fn chain_of(n: usize) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_events(&path, 0..n).await;
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read audit log")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("rewrite audit log");
}

fn broken_at(path: &Path) -> (usize, ChainBreak, String) {
    match verify(path) {
        Err(e @ AuditError::Broken { line, problem, .. }) => (line, problem, e.to_string()),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test]
async fn chain_of_100_events_verifies() {
    let (_dir, path) = chain_of(100).await;
    let report = verify(&path).expect("verifies");
    assert_eq!(report.lines, 100);
    let last = lines(&path).pop().expect("has lines");
    assert!(last.ends_with(&format!("\"hash\":\"{}\"}}", report.head)));
}

#[tokio::test]
async fn first_line_links_to_genesis_and_each_line_to_the_one_before() {
    let (_dir, path) = chain_of(3).await;
    let parsed: Vec<serde_json::Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(parsed[0]["prev_hash"], GENESIS_HASH);
    assert_eq!(parsed[1]["prev_hash"], parsed[0]["hash"]);
    assert_eq!(parsed[2]["prev_hash"], parsed[1]["hash"]);
    assert_eq!(parsed[0]["event"], "statement");
    assert_eq!(parsed[0]["decision"], "allow");
    assert!(parsed[0].get("error").is_none(), "empty fields are omitted");
}

#[tokio::test]
async fn editing_one_field_of_one_line_fails_naming_that_line() {
    let (_dir, path) = chain_of(10).await;
    let mut l = lines(&path);
    l[6] = l[6].replace("\"subject\":\"alice\"", "\"subject\":\"mallory\"");
    write_lines(&path, &l);
    let (line, problem, message) = broken_at(&path);
    assert_eq!((line, problem), (7, ChainBreak::HashMismatch));
    assert!(
        message.contains("line 7: hash mismatch (edited)"),
        "{message}"
    );
}

#[tokio::test]
async fn editing_a_line_and_rehashing_it_is_caught_at_the_next_line() {
    let (_dir, path) = chain_of(10).await;
    let mut l = lines(&path);
    let mut v: serde_json::Value = serde_json::from_str(&l[3]).expect("json");
    v["subject"] = "mallory".into();
    let prev = v["prev_hash"].as_str().expect("prev").to_owned();
    let obj = v.as_object_mut().expect("object");
    obj.remove("prev_hash");
    obj.remove("hash");
    // Re-seal the edited line the way an intruder who read the docs would.
    let mut keys: Vec<_> = obj.keys().cloned().collect();
    keys.sort();
    let body = format!(
        "{{{}}}",
        keys.iter()
            .map(|k| format!("{}:{}", serde_json::to_string(k).expect("key"), obj[k]))
            .collect::<Vec<_>>()
            .join(",")
    );
    let hash = hex::encode(sha2::Sha256::digest(format!("{prev}\n{body}")));
    l[3] = format!(
        "{},\"prev_hash\":\"{prev}\",\"hash\":\"{hash}\"}}",
        &body[..body.len() - 1]
    );
    write_lines(&path, &l);
    let (line, problem, _) = broken_at(&path);
    assert_eq!(
        (line, problem),
        (5, ChainBreak::PrevMismatch { previous: 4 })
    );
}

#[tokio::test]
async fn deleting_a_middle_line_fails() {
    let (_dir, path) = chain_of(10).await;
    let mut l = lines(&path);
    l.remove(4);
    write_lines(&path, &l);
    let (line, problem, message) = broken_at(&path);
    assert_eq!(
        (line, problem),
        (5, ChainBreak::PrevMismatch { previous: 4 })
    );
    assert!(
        message.contains("line 5: prev_hash does not match line 4 (line deleted or reordered)"),
        "{message}"
    );
}

#[tokio::test]
async fn deleting_the_first_line_fails() {
    let (_dir, path) = chain_of(5).await;
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    let (line, problem, _) = broken_at(&path);
    assert_eq!(
        (line, problem),
        (1, ChainBreak::PrevMismatch { previous: 0 })
    );
}

#[tokio::test]
async fn reordering_two_lines_fails() {
    let (_dir, path) = chain_of(10).await;
    let mut l = lines(&path);
    l.swap(5, 6);
    write_lines(&path, &l);
    let (line, problem, _) = broken_at(&path);
    assert_eq!(
        (line, problem),
        (6, ChainBreak::PrevMismatch { previous: 5 })
    );
}

#[tokio::test]
async fn garbage_line_is_reported_as_not_json() {
    let (_dir, path) = chain_of(5).await;
    let mut l = lines(&path);
    l.insert(2, "this is not json".into());
    write_lines(&path, &l);
    let (_, _, message) = broken_at(&path);
    assert!(message.contains("line 3: not JSON"), "{message}");
}

#[tokio::test]
async fn deleting_the_last_lines_still_verifies_but_changes_the_head() {
    // Documented limitation: truncation is only visible against an anchor.
    let (_dir, path) = chain_of(10).await;
    let full = verify(&path).expect("verifies");
    let mut l = lines(&path);
    l.truncate(8);
    write_lines(&path, &l);
    let cut = verify(&path).expect("a shorter chain is still a chain");
    assert_eq!(cut.lines, 8);
    assert_ne!(cut.head, full.head);
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_events(&path, 0..40).await;
    write_events(&path, 40..75).await;
    write_events(&path, 75..76).await;
    let report = verify(&path).expect("one chain across three opens");
    assert_eq!(report.lines, 76);
}

#[tokio::test]
async fn reopening_a_file_with_a_torn_last_line_is_refused_with_a_hint() {
    let (_dir, path) = chain_of(3).await;
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"event\":\"statem");
    std::fs::write(&path, text).expect("write");
    let err = AuditLog::open(&path).await.expect_err("torn tail refused");
    assert!(matches!(err, AuditError::TornTail { .. }), "{err:?}");
    assert!(err.to_string().contains("idgate audit verify"), "{err}");
    let (line, problem, _) = broken_at(&path);
    assert_eq!((line, problem), (4, ChainBreak::Torn));
}

#[tokio::test]
async fn reopening_a_file_whose_last_line_was_edited_is_refused() {
    let (_dir, path) = chain_of(3).await;
    let mut l = lines(&path);
    l[2] = l[2].replace("alice", "mallory");
    write_lines(&path, &l);
    let err = AuditLog::open(&path)
        .await
        .expect_err("edited tail refused");
    assert!(
        matches!(
            err,
            AuditError::BadTail {
                problem: ChainBreak::HashMismatch,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn shutdown_drains_every_queued_event() {
    let (_dir, path) = chain_of(10_000).await;
    assert_eq!(lines(&path).len(), 10_000);
    assert_eq!(verify(&path).expect("verifies").lines, 10_000);
}

#[tokio::test]
async fn recording_after_shutdown_fails_instead_of_silently_dropping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::open(&path).await.expect("open");
    writer.shutdown().await;
    let err = log
        .record(AuditEvent::new(EventKind::SessionEnd))
        .await
        .expect_err("closed");
    assert!(matches!(err, AuditError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recorders_from_many_tasks_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::open(&path).await.expect("open");
    let mut tasks = Vec::new();
    for t in 0..64usize {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200usize {
                let ev = statement(t * 1000 + i);
                if i % 50 == 0 {
                    log.record_durable(ev).await.expect("durable");
                } else {
                    log.record(ev).await.expect("record");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("recorder task");
    }
    writer.shutdown().await;
    assert_eq!(verify(&path).expect("verifies").lines, 64 * 200);
    let mut rows: Vec<u64> = lines(&path)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["rows"]
                .as_u64()
                .expect("rows")
        })
        .collect();
    rows.sort_unstable();
    let mut expected: Vec<u64> = (0..64u64)
        .flat_map(|t| (0..200u64).map(move |i| t * 1000 + i))
        .collect();
    expected.sort_unstable();
    assert_eq!(rows, expected, "every event exactly once");
}

#[tokio::test]
async fn record_durable_returns_after_the_line_is_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::open(&path).await.expect("open");
    let ev = AuditEvent {
        subject: Some("bob".into()),
        ..AuditEvent::new(EventKind::AuthOk)
    };
    log.record_durable(ev).await.expect("durable");
    // Read while the writer is still running.
    assert_eq!(verify(&path).expect("verifies").lines, 1);
    assert!(lines(&path)[0].contains("\"event\":\"auth_ok\""));
    writer.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn new_audit_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = chain_of(1).await;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn outside_verifier_can_strip_the_fixed_length_hash_suffix() {
    let (_dir, path) = chain_of(2).await;
    let mut prev = GENESIS_HASH.to_owned();
    for line in lines(&path) {
        let body = format!("{}}}", &line[..line.len() - 154]);
        let hash = &line[line.len() - 66..line.len() - 2];
        let expected = hex::encode(sha2::Sha256::digest(format!("{prev}\n{body}")));
        assert_eq!(hash, expected);
        prev = expected;
    }
}
