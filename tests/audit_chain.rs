//! The audit file end to end: written by `AuditLog` (and by a running
//! gateway), checked by `verify`, tampered with the way an intruder would:
//! one who can write the file and its seal but does not hold the key.

mod support;

use std::path::{Path, PathBuf};

use idgate::audit::{
    AuditError, AuditEvent, AuditKey, AuditLog, ChainBreak, ChainKind, Decision, EventKind,
    GENESIS_HASH, SealProblem, seal_path, verify,
};
use idgate::secret::Secret;
use sha2::Digest;
use tempfile::TempDir;

const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";

fn key() -> AuditKey {
    AuditKey::new(&Secret::new(KEY)).expect("key")
}

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
    write_events_with(path, range, None).await;
}

async fn write_events_with(path: &Path, range: std::ops::Range<usize>, key: Option<&AuditKey>) {
    let (log, writer) = AuditLog::open(path, key).await.expect("open audit log");
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

/// A keyed chain: header, `n` statements (every third one denied), end.
async fn keyed_chain_of(n: usize) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::open(&path, Some(&key())).await.expect("open");
    for i in 0..n {
        let mut ev = statement(i);
        if i % 3 == 0 {
            ev.decision = Some(Decision::Deny);
            ev.event = EventKind::Denied;
        }
        log.record(ev).await.expect("record");
    }
    writer.shutdown().await;
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
    broken_with(path, None)
}

fn broken_with(path: &Path, key: Option<&AuditKey>) -> (usize, ChainBreak, String) {
    match verify(path, key) {
        Err(e @ AuditError::Broken { line, problem, .. }) => (line, problem, e.to_string()),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test]
async fn chain_of_100_events_verifies() {
    let (_dir, path) = chain_of(100).await;
    let report = verify(&path, None).expect("verifies");
    assert_eq!(report.lines, 102, "header, 100 events, audit_end");
    assert_eq!(report.sealed, Some(102));
    assert!(report.closed);
    assert_eq!(report.kind, ChainKind::Sha256);
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
    assert_eq!(parsed[0]["event"], "audit_start");
    assert_eq!(parsed[0]["chain"], "sha256");
    assert_eq!(parsed[1]["event"], "statement");
    assert_eq!(parsed[1]["decision"], "allow");
    assert!(parsed[1].get("error").is_none(), "empty fields are omitted");
    assert_eq!(parsed[4]["event"], "audit_end");
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
async fn deleting_the_last_lines_fails_against_the_seal() {
    let (_dir, path) = chain_of(10).await;
    let mut l = lines(&path);
    l.truncate(8);
    write_lines(&path, &l);
    let err = verify(&path, None).expect_err("the seal says 12");
    assert!(
        matches!(
            err,
            AuditError::Truncated {
                lines: 8,
                sealed: 12,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("truncated after line 8: the seal says 12 events"),
        "{err}"
    );
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_events(&path, 0..40).await;
    write_events(&path, 40..75).await;
    write_events(&path, 75..76).await;
    let report = verify(&path, None).expect("one chain across three opens");
    assert_eq!(report.lines, 80, "header, 76 events, three audit_ends");
    assert_eq!(report.sealed, Some(80));
}

#[tokio::test]
async fn reopening_a_file_with_a_torn_last_line_is_refused_with_a_hint() {
    let (_dir, path) = chain_of(3).await;
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"event\":\"statem");
    std::fs::write(&path, text).expect("write");
    let err = AuditLog::open(&path, None)
        .await
        .expect_err("torn tail refused");
    assert!(matches!(err, AuditError::TornTail { .. }), "{err:?}");
    assert!(err.to_string().contains("idgate audit verify"), "{err}");
    // Past the seal a partial line may be a write in flight: reported.
    let report = verify(&path, None).expect("the sealed lines verify");
    assert_eq!((report.lines, report.unfinished_tail), (5, true));
}

#[tokio::test]
async fn a_line_cut_in_half_inside_the_sealed_part_is_truncation() {
    let (_dir, path) = chain_of(3).await;
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, &text[..text.len() - 20]).expect("cut");
    let err = verify(&path, None).expect_err("cut");
    assert!(
        err.to_string()
            .contains("truncated after line 4: the seal says 5 events"),
        "{err}"
    );
}

#[tokio::test]
async fn reopening_a_file_whose_last_line_was_edited_is_refused() {
    let (_dir, path) = chain_of(3).await;
    let mut l = lines(&path);
    let last = l.len() - 1;
    l[last] = l[last].replacen("\"time\":\"2", "\"time\":\"1", 1);
    write_lines(&path, &l);
    let err = AuditLog::open(&path, None)
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
    assert_eq!(lines(&path).len(), 10_002);
    assert_eq!(verify(&path, None).expect("verifies").lines, 10_002);
}

#[tokio::test]
async fn recording_after_shutdown_fails_instead_of_silently_dropping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, writer) = AuditLog::open(&path, None).await.expect("open");
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
    let (log, writer) = AuditLog::open(&path, None).await.expect("open");
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
    assert_eq!(verify(&path, None).expect("verifies").lines, 64 * 200 + 2);
    let mut rows: Vec<u64> = lines(&path)
        .iter()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["rows"].as_u64()
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
    let (log, writer) = AuditLog::open(&path, None).await.expect("open");
    let ev = AuditEvent {
        subject: Some("bob".into()),
        ..AuditEvent::new(EventKind::AuthOk)
    };
    log.record_durable(ev).await.expect("durable");
    // Read while the writer is still running.
    let report = verify(&path, None).expect("verifies");
    assert_eq!((report.lines, report.closed), (2, false));
    assert!(lines(&path)[1].contains("\"event\":\"auth_ok\""));
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

// ---- Keyed chains and the seal: an intruder without the key. ----

/// Rewrites `lines` as an unkeyed chain the way an intruder who read the
/// format would: every hash recomputed with plain SHA-256 and a matching
/// unkeyed seal.
fn rehash_unkeyed(path: &Path, lines: &[String], header_chain: &str) {
    let mut prev = GENESIS_HASH.to_owned();
    let mut out = Vec::new();
    for line in lines {
        let mut body = format!("{}}}", &line[..line.len() - 154]);
        if body.starts_with("{\"chain\":") {
            body = body.replacen("hmac-sha256", header_chain, 1);
        }
        let hash = hex::encode(sha2::Sha256::digest(format!("{prev}\n{body}")));
        out.push(format!(
            "{},\"prev_hash\":\"{prev}\",\"hash\":\"{hash}\"}}",
            &body[..body.len() - 1]
        ));
        prev = hash;
    }
    write_lines(path, &out);
    let bytes = std::fs::metadata(path).expect("meta").len();
    let seal_body = format!(
        "{{\"bytes\":{bytes},\"chain\":\"sha256\",\"events\":{},\"hash\":\"{prev}\",\"time\":\"2026-01-01T00:00:00.000Z\"}}",
        out.len()
    );
    let mac = hex::encode(sha2::Sha256::digest(format!(
        "idgate-audit-seal\n{seal_body}"
    )));
    std::fs::write(
        seal_path(path),
        format!(
            "{},\"mac\":\"{mac}\"}}\n",
            &seal_body[..seal_body.len() - 1]
        ),
    )
    .expect("forge seal");
}

fn flip_first_deny(lines: &mut [String]) -> usize {
    let i = lines
        .iter()
        .position(|l| l.contains("\"decision\":\"deny\""))
        .expect("a denial");
    lines[i] = lines[i]
        .replace("\"decision\":\"deny\"", "\"decision\":\"allow\"")
        .replace("\"event\":\"denied\"", "\"event\":\"statement\"");
    i
}

#[tokio::test]
async fn intact_keyed_chain_verifies_with_its_key() {
    let (_dir, path) = keyed_chain_of(20).await;
    let report = verify(&path, Some(&key())).expect("verifies");
    assert_eq!(report.kind, ChainKind::HmacSha256);
    assert_eq!((report.lines, report.sealed), (22, Some(22)));
    assert!(report.closed && !report.unfinished_tail);
    assert!(lines(&path)[0].contains("\"chain\":\"hmac-sha256\""));
}

#[tokio::test]
async fn deny_flipped_to_allow_and_rehashed_unkeyed_fails_with_the_key() {
    let (_dir, path) = keyed_chain_of(20).await;
    let mut l = lines(&path);
    flip_first_deny(&mut l);
    // Downgrade: header says sha256, every hash and the seal recomputed.
    rehash_unkeyed(&path, &l, "sha256");
    let err = verify(&path, Some(&key())).expect_err("downgrade refused");
    assert!(
        matches!(
            err,
            AuditError::ChainKind {
                found: ChainKind::Sha256,
                expected: ChainKind::HmacSha256,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("line 1: the chain is unkeyed (sha256), but a key was given"),
        "{err}"
    );
    // Without the header at all: still unkeyed, still refused.
    let mut l = lines(&path);
    l.remove(0);
    rehash_unkeyed(&path, &l, "sha256");
    assert!(matches!(
        verify(&path, Some(&key())),
        Err(AuditError::ChainKind { .. })
    ));
}

#[tokio::test]
async fn deny_flipped_to_allow_with_the_header_kept_fails_at_that_line() {
    let (_dir, path) = keyed_chain_of(20).await;
    let mut l = lines(&path);
    let flipped = flip_first_deny(&mut l);
    // Keep the lines before it as written; from it on, rehash with what an
    // intruder without the key has: SHA-256.
    let mut prev =
        serde_json::from_str::<serde_json::Value>(&l[flipped - 1]).expect("json")["hash"]
            .as_str()
            .expect("hash")
            .to_owned();
    for line in &mut l[flipped..] {
        let body = format!("{}}}", &line[..line.len() - 154]);
        let hash = hex::encode(sha2::Sha256::digest(format!("{prev}\n{body}")));
        *line = format!(
            "{},\"prev_hash\":\"{prev}\",\"hash\":\"{hash}\"}}",
            &body[..body.len() - 1]
        );
        prev = hash;
    }
    write_lines(&path, &l);
    let (line, problem, message) = broken_with(&path, Some(&key()));
    assert_eq!((line, problem), (flipped + 1, ChainBreak::MacMismatch));
    assert!(message.contains("MAC mismatch"), "{message}");
}

#[tokio::test]
async fn cutting_the_last_lines_of_a_keyed_chain_fails() {
    let (_dir, path) = keyed_chain_of(10).await;
    let mut l = lines(&path);
    l.truncate(9);
    write_lines(&path, &l);
    let err = verify(&path, Some(&key())).expect_err("truncated");
    assert!(
        err.to_string()
            .contains("truncated after line 9: the seal says 12 events"),
        "{err}"
    );
}

#[tokio::test]
async fn cutting_lines_and_rewriting_the_seal_without_the_key_fails() {
    let (_dir, path) = keyed_chain_of(10).await;
    let mut l = lines(&path);
    l.truncate(9);
    write_lines(&path, &l);
    // The seal edited to the new end: count, length and last hash.
    let last: serde_json::Value = serde_json::from_str(&l[8]).expect("json");
    let seal = std::fs::read_to_string(seal_path(&path)).expect("seal");
    let mut v: serde_json::Value = serde_json::from_str(&seal).expect("seal json");
    v["events"] = 9.into();
    v["bytes"] = std::fs::metadata(&path).expect("meta").len().into();
    v["hash"] = last["hash"].clone();
    std::fs::write(seal_path(&path), format!("{v}\n")).expect("edit seal");
    let err = verify(&path, Some(&key())).expect_err("forged seal");
    assert!(
        matches!(
            err,
            AuditError::Seal {
                problem: SealProblem::BadMac | SealProblem::Malformed,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(".seal"), "{err}");
    // Nor does deleting the seal help.
    std::fs::remove_file(seal_path(&path)).expect("rm seal");
    assert!(matches!(
        verify(&path, Some(&key())),
        Err(AuditError::Seal {
            problem: SealProblem::Missing,
            ..
        })
    ));
}

#[tokio::test]
async fn deleting_a_middle_line_of_a_keyed_chain_fails() {
    let (_dir, path) = keyed_chain_of(10).await;
    let mut l = lines(&path);
    l.remove(5);
    write_lines(&path, &l);
    let (line, problem, _) = broken_with(&path, Some(&key()));
    assert_eq!(
        (line, problem),
        (6, ChainBreak::PrevMismatch { previous: 5 })
    );
}

#[tokio::test]
async fn a_wrong_key_fails_at_line_1() {
    let (_dir, path) = keyed_chain_of(3).await;
    let other =
        AuditKey::new(&Secret::new("another key of at least thirty-two bytes")).expect("key");
    let (line, problem, message) = broken_with(&path, Some(&other));
    assert_eq!((line, problem), (1, ChainBreak::MacMismatch));
    assert!(message.contains("not this key"), "{message}");
}

#[tokio::test]
async fn a_keyed_chain_without_its_key_is_not_passed() {
    let (_dir, path) = keyed_chain_of(3).await;
    let err = verify(&path, None).expect_err("needs the key");
    assert!(err.to_string().contains("--key-file"), "{err}");
}

#[tokio::test]
async fn the_writer_refuses_to_continue_a_file_cut_while_it_was_down() {
    let (_dir, path) = keyed_chain_of(10).await;
    let mut l = lines(&path);
    l.truncate(9);
    write_lines(&path, &l);
    let err = AuditLog::open(&path, Some(&key()))
        .await
        .expect_err("would seal over the cut");
    assert!(
        err.to_string()
            .contains("truncated after line 9: the seal says 12 events"),
        "{err}"
    );
}

#[tokio::test]
async fn the_writer_refuses_a_mismatched_key_or_chain_kind() {
    let (_dir, path) = keyed_chain_of(3).await;
    let err = AuditLog::open(&path, None).await.expect_err("keyed file");
    assert!(matches!(err, AuditError::ChainKind { .. }), "{err:?}");
    let other =
        AuditKey::new(&Secret::new("another key of at least thirty-two bytes")).expect("key");
    let err = AuditLog::open(&path, Some(&other))
        .await
        .expect_err("other key");
    assert!(
        matches!(
            err,
            AuditError::BadTail {
                problem: ChainBreak::MacMismatch,
                ..
            }
        ),
        "{err:?}"
    );
    let (_dir, unkeyed) = chain_of(3).await;
    let err = AuditLog::open(&unkeyed, Some(&key()))
        .await
        .expect_err("unkeyed file");
    assert!(matches!(err, AuditError::ChainKind { .. }), "{err:?}");
}

#[tokio::test]
async fn a_keyed_chain_continues_across_opens_and_stays_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    write_events_with(&path, 0..5, Some(&key())).await;
    write_events_with(&path, 5..9, Some(&key())).await;
    let report = verify(&path, Some(&key())).expect("verifies");
    assert_eq!((report.lines, report.sealed), (12, Some(12)));
}

#[tokio::test]
async fn a_file_from_before_headers_and_seals_is_continued_and_then_sealed() {
    let (_dir, path) = chain_of(4).await;
    // What an older version wrote: no header, no end, no seal.
    let mut l = lines(&path);
    l.pop();
    l.remove(0);
    rehash_unkeyed(&path, &l, "sha256");
    std::fs::remove_file(seal_path(&path)).expect("rm seal");
    let report = verify(&path, None).expect("legacy verifies");
    assert_eq!((report.lines, report.sealed), (4, None));
    write_events(&path, 4..6).await;
    let report = verify(&path, None).expect("continued");
    assert_eq!((report.lines, report.sealed), (7, Some(7)));
}

#[tokio::test]
async fn a_running_keyed_gateway_s_trail_verifies_and_is_closed_on_stop() {
    let mut h = support::Harness::with(support::Options {
        audit_key: Some(KEY.into()),
        ..support::Options::default()
    })
    .await;
    for sql in ["select 1", "select 2"] {
        let out = h.psql(&h.analyst(), "reader", sql).await;
        assert!(out.status.success(), "{}", support::stderr(&out));
    }
    // The session's last events may still be in the commit delay; the
    // seal lags the file at most, so verify passes either way.
    let running = verify(&h.audit_file(), Some(&key())).expect("verifies while running");
    assert!(!running.closed);
    assert_eq!(running.kind, ChainKind::HmacSha256);
    let events = h.stop_and_read_audit().await;
    assert!(events.iter().any(|e| e["statement"] == "select 2"));
    let stopped = verify(&h.audit_file(), Some(&key())).expect("verifies stopped");
    assert!(stopped.closed);
    assert_eq!(stopped.sealed, Some(stopped.lines as u64));
    assert!(stopped.lines > running.lines);
}
