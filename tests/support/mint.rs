//! A token command for the person's CLI under test: `curl` fetching a
//! freshly minted token per call from a tiny HTTP mint, which signs with
//! a development issuer the gateway trusts. Tests switch whom it mints for
//! and count how many tokens it gave.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use idgate::dev::DevIssuer;

/// Who the mint issues tokens for, and for how long.
pub struct Minting {
    pub subject: String,
    pub groups: Vec<String>,
    pub ttl: Duration,
}

/// Hands out a freshly minted token per request, as a person's token
/// command would print one.
pub struct Mint {
    pub issuer: Arc<DevIssuer>,
    pub minting: Mutex<Minting>,
    pub issued: AtomicUsize,
}

impl Mint {
    /// A mint for `subject` in `groups`, tokens valid for `ttl`, served on
    /// loopback; with the shell command that fetches one.
    pub async fn serve(
        issuer: Arc<DevIssuer>,
        subject: &str,
        groups: &[&str],
        ttl: Duration,
    ) -> (Arc<Mint>, String) {
        let mint = Arc::new(Mint {
            issuer,
            minting: Mutex::new(Minting {
                subject: subject.into(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                ttl,
            }),
            issued: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route(
                "/token",
                get(|State(mint): State<Arc<Mint>>| async move {
                    mint.issued.fetch_add(1, Ordering::SeqCst);
                    mint.token()
                }),
            )
            .with_state(Arc::clone(&mint));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mint");
        let command = format!(
            "curl -sf http://{}/token",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (mint, command)
    }

    pub fn token(&self) -> String {
        let m = self.minting.lock().expect("mint lock");
        let groups: Vec<&str> = m.groups.iter().map(String::as_str).collect();
        self.issuer
            .mint_for(&m.subject, &groups, super::AUDIENCE, m.ttl)
    }

    /// From now on, tokens of `subject` in `groups`.
    pub fn mint_for(&self, subject: &str, groups: &[&str]) {
        let mut m = self.minting.lock().expect("mint lock");
        m.subject = subject.into();
        m.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    }

    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}
