//! Counters for `GET /metrics`, rendered in the Prometheus text format.
//! Counting is a relaxed atomic add; labels come from small fixed sets
//! (error kinds, decisions, end reasons), never from client input.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::services::Services;

#[derive(Debug, Default)]
pub struct Metrics {
    statements_allowed: AtomicU64,
    statements_denied: AtomicU64,
    revocations: AtomicU64,
    /// (outcome, reason) → count. Reasons are the token error kinds and a
    /// few fixed words, never client input.
    logins: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// End reason → sessions ended from outside.
    ended: Mutex<BTreeMap<&'static str, u64>>,
    /// (outcome, reason kind) → session refreshes.
    refreshes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub fn statement(&self, allowed: bool) {
        let c = if allowed {
            &self.statements_allowed
        } else {
            &self.statements_denied
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn login(&self, outcome: &'static str, reason: &str) {
        let mut logins = crate::lock(&self.logins);
        match logins.get_mut(&(outcome, reason.to_owned())) {
            Some(n) => *n += 1,
            None => {
                logins.insert((outcome, reason.to_owned()), 1);
            }
        }
    }

    pub fn session_ended(&self, reason: &'static str) {
        *crate::lock(&self.ended).entry(reason).or_default() += 1;
    }

    pub fn refresh(&self, outcome: &'static str, reason: &'static str) {
        *crate::lock(&self.refreshes)
            .entry((outcome, reason))
            .or_default() += 1;
    }

    pub fn revocation(&self) {
        self.revocations.fetch_add(1, Ordering::Relaxed);
    }
}

/// Prometheus label values escape `\`, `"` and newlines.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole exposition.
pub fn render(gw: &Services) -> String {
    let m = &gw.metrics;
    let mut out = String::with_capacity(2048);
    let o = &mut out;
    family(
        o,
        "idgate_sessions",
        "gauge",
        "Live client sessions on this gateway.",
    );
    let _ = writeln!(o, "idgate_sessions {}", gw.sessions.len());

    family(
        o,
        "idgate_logins_total",
        "counter",
        "Login attempts by outcome and reason.",
    );
    for ((outcome, reason), n) in crate::lock(&m.logins).iter() {
        let _ = writeln!(
            o,
            "idgate_logins_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} {n}"
        );
    }

    family(
        o,
        "idgate_statements_total",
        "counter",
        "Statements by policy decision.",
    );
    for (decision, n) in [
        ("allow", &m.statements_allowed),
        ("deny", &m.statements_denied),
    ] {
        let _ = writeln!(
            o,
            "idgate_statements_total{{decision=\"{decision}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }

    family(
        o,
        "idgate_sessions_ended_total",
        "counter",
        "Sessions ended from outside (revoked, killed, expired, shutdown), by reason.",
    );
    for (reason, n) in crate::lock(&m.ended).iter() {
        let _ = writeln!(o, "idgate_sessions_ended_total{{reason=\"{reason}\"}} {n}");
    }

    family(
        o,
        "idgate_session_refreshes_total",
        "counter",
        "Offers of a newer token to extend a live session, by outcome and reason.",
    );
    for ((outcome, reason), n) in crate::lock(&m.refreshes).iter() {
        let _ = writeln!(
            o,
            "idgate_session_refreshes_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} {n}"
        );
    }

    family(
        o,
        "idgate_revocations_total",
        "counter",
        "Revocations received by this gateway's admin API and back-channel logout.",
    );
    let _ = writeln!(
        o,
        "idgate_revocations_total {}",
        m.revocations.load(Ordering::Relaxed)
    );

    family(
        o,
        "idgate_pool_connections",
        "gauge",
        "Upstream connections by pool and state.",
    );
    let mut pools: Vec<_> = gw.pools.iter().flat_map(|p| p.stats()).collect();
    pools.sort_by(|(t1, r1, _), (t2, r2, _)| (t1, r1).cmp(&(t2, r2)));
    for (target, role, s) in &pools {
        let (t, r) = (label(target), label(role));
        for (state, n) in [("open", s.open), ("idle", s.idle)] {
            let _ = writeln!(
                o,
                "idgate_pool_connections{{target=\"{t}\",role=\"{r}\",state=\"{state}\"}} {n}"
            );
        }
    }
    family(
        o,
        "idgate_pool_waiting",
        "gauge",
        "Clients waiting for an upstream connection.",
    );
    for (target, role, s) in &pools {
        let _ = writeln!(
            o,
            "idgate_pool_waiting{{target=\"{}\",role=\"{}\"}} {}",
            label(target),
            label(role),
            s.waiting
        );
    }

    family(
        o,
        "idgate_jwks_fetches_total",
        "counter",
        "JWKS downloads by issuer and result.",
    );
    for (issuer, ok, failed) in gw.jwks_fetches() {
        let i = label(issuer);
        for (result, n) in [("ok", ok), ("error", failed)] {
            let _ = writeln!(
                o,
                "idgate_jwks_fetches_total{{issuer=\"{i}\",result=\"{result}\"}} {n}"
            );
        }
    }

    if let Some(c) = &gw.cluster {
        family(
            o,
            "idgate_cluster_connected",
            "gauge",
            "1 while following the cluster's Redis, 0 while enforcing local revocations only.",
        );
        let _ = writeln!(o, "idgate_cluster_connected {}", u8::from(c.is_connected()));
    }
    out
}
