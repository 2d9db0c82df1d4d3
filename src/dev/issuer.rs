//! The embedded development issuer behind `idgate dev`, also the test issuer
//! of our integration tests. It serves OpenID discovery and a JWKS on
//! 127.0.0.1 and mints tokens with a key generated at start. Never for
//! production: anyone who can reach the process can mint tokens.
//!
//! For attack tests it can sign arbitrary headers (`sign_raw`) and publish
//! extra RSA keys (`add_rsa_key`), and it counts JWKS downloads so tests can
//! prove the validator's refetch rate limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct RsaKey {
    kid: String,
    pair: RsaKeyPair,
    /// Listed in the JWKS; a withdrawn key can still sign (for tests).
    published: AtomicBool,
    /// JWK members that replace the defaults (`use`, `alg`, ...) in the
    /// JWKS; a null removes one. Empty for ordinary keys.
    members: serde_json::Map<String, Value>,
}

struct DevState {
    issuer: String,
    rng: SystemRandom,
    es_kid: String,
    es_key: EcdsaKeyPair,
    rsa_keys: RwLock<Vec<Arc<RsaKey>>>,
    jwks_fetches: AtomicUsize,
}

/// A running development issuer. The HTTP server stops when this is dropped.
pub struct DevIssuer {
    state: Arc<DevState>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.state.issuer)
            .field("kid", &self.state.es_kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Generates a fresh ES256 key and serves discovery and JWKS on an
    /// ephemeral loopback port.
    pub async fn start() -> anyhow::Result<DevIssuer> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("cannot generate an ES256 key"))?;
        let es_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(|e| anyhow!("cannot load the generated ES256 key: {e}"))?;

        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the development issuer")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(DevState {
            issuer: format!("http://127.0.0.1:{port}"),
            rng,
            es_kid: random_id(8),
            es_key,
            rsa_keys: RwLock::new(Vec::new()),
            jwks_fetches: AtomicUsize::new(0),
        });

        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&state));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "development issuer stopped with an error");
            }
        });
        Ok(DevIssuer {
            state,
            shutdown,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, the exact `iss` of minted tokens.
    pub fn issuer_url(&self) -> String {
        self.state.issuer.clone()
    }

    /// Key id of the ES256 key.
    pub fn kid(&self) -> &str {
        &self.state.es_kid
    }

    /// How many times `/jwks` has been served.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The JWKS document currently served.
    pub fn jwks(&self) -> Value {
        self.state.jwks()
    }

    /// The ES256 public key as an uncompressed SEC1 point.
    pub fn es256_public_key(&self) -> Vec<u8> {
        self.state.es_key.public_key().as_ref().to_vec()
    }

    /// Signs `claims` with ES256 under header `{alg, typ: "JWT", kid}`.
    pub fn mint(&self, claims: Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.state.es_kid});
        self.sign_raw(&header, &claims)
    }

    /// A typical access token: `iat`, `nbf`, `exp`, `iss`, `aud`, `sub`,
    /// `email` (= sub), `groups` and a random `jti`.
    pub fn mint_for(&self, sub: &str, groups: &[&str], audience: &str, ttl: Duration) -> String {
        self.mint(self.claims_for(sub, groups, audience, ttl))
    }

    /// The claims `mint_for` would sign, for tests that tweak one of them.
    pub fn claims_for(&self, sub: &str, groups: &[&str], audience: &str, ttl: Duration) -> Value {
        let now = crate::identity::unix_now();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        json!({
            "iss": self.state.issuer,
            "aud": audience,
            "sub": sub,
            "email": sub,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(ttl),
            "jti": random_id(16),
        })
    }

    /// Signs whatever header and claims it is given with the ES256 key, for
    /// tests that forge headers (`alg`, `jwk`, `kid`, ...).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw_json(&header.to_string(), &claims.to_string())
    }

    /// Like `sign_raw`, but signs the JSON text exactly as given, so tests
    /// can produce documents a `Value` cannot hold (duplicate members).
    pub fn sign_raw_json(&self, header: &str, claims: &str) -> String {
        let input = signing_input(header, claims);
        // Signing only fails if the system RNG does, which we cannot recover
        // from in a development tool.
        let sig = self
            .state
            .es_key
            .sign(&self.state.rng, input.as_bytes())
            .expect("system RNG failed while signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Publishes an RSA key (PKCS#8 DER) in the JWKS; returns its kid.
    pub fn add_rsa_key(&self, pkcs8_der: &[u8]) -> anyhow::Result<String> {
        self.add_rsa_key_published_as(pkcs8_der, &json!({}))
    }

    /// As `add_rsa_key`, with the JWK's members overridden by `members`
    /// (an object; a null value drops that member), so tests can publish
    /// a key the way a careless issuer would, e.g. an encryption key
    /// described only by `key_ops`.
    pub fn add_rsa_key_published_as(
        &self,
        pkcs8_der: &[u8],
        members: &Value,
    ) -> anyhow::Result<String> {
        let members = members
            .as_object()
            .cloned()
            .ok_or_else(|| anyhow!("JWK members must be a JSON object"))?;
        let pair =
            RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|e| anyhow!("not an RSA PKCS#8 key: {e}"))?;
        let kid = random_id(8);
        self.state
            .rsa_keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(RsaKey {
                kid: kid.clone(),
                pair,
                published: AtomicBool::new(true),
                members,
            }));
        Ok(kid)
    }

    /// Stops publishing the RSA key `kid` in the JWKS; it can still sign,
    /// so tests can prove a withdrawn key stops working. Returns whether
    /// the key exists.
    pub fn withdraw_rsa_key(&self, kid: &str) -> bool {
        let keys = self
            .state
            .rsa_keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let key = keys.iter().find(|k| k.kid == kid);
        if let Some(k) = key {
            k.published.store(false, Ordering::SeqCst);
        }
        key.is_some()
    }

    /// Signs with RS256 under header `{alg, typ: "JWT", kid}`.
    pub fn mint_rs256(&self, kid: &str, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        self.sign_raw_rs256(kid, &header, claims)
    }

    /// Signs whatever header and claims with the RSA key `kid`.
    pub fn sign_raw_rs256(
        &self,
        kid: &str,
        header: &Value,
        claims: &Value,
    ) -> anyhow::Result<String> {
        let key = self
            .state
            .rsa_keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
            .ok_or_else(|| anyhow!("no RSA key with kid {kid}"))?;
        let input = signing_input(&header.to_string(), &claims.to_string());
        let mut sig = vec![0; key.pair.public().modulus_len()];
        key.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.state.rng,
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| anyhow!("RSA signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig)))
    }

    /// Stops the HTTP server and waits until it has closed its listener.
    /// Minting keeps working, so tests can play "issuer outage".
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl DevState {
    fn jwks(&self) -> Value {
        let point = self.es_key.public_key().as_ref();
        // ring always hands out the 65-byte uncompressed SEC1 point:
        // 0x04 || x (32 bytes) || y (32 bytes).
        let (x, y) = point[1..].split_at(32);
        let mut keys = vec![json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.es_kid,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })];
        for key in self
            .rsa_keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|k| k.published.load(Ordering::SeqCst))
        {
            let public = PublicKeyComponents::<Vec<u8>>::from(key.pair.public());
            let mut jwk = json!({
                "kty": "RSA", "use": "sig", "alg": "RS256",
                "kid": key.kid,
                "n": URL_SAFE_NO_PAD.encode(&public.n),
                "e": URL_SAFE_NO_PAD.encode(&public.e),
            });
            if let Value::Object(members) = &mut jwk {
                for (name, value) in &key.members {
                    if value.is_null() {
                        members.remove(name);
                    } else {
                        members.insert(name.clone(), value.clone());
                    }
                }
            }
            keys.push(jwk);
        }
        json!({ "keys": keys })
    }
}

async fn discovery(State(state): State<Arc<DevState>>) -> Json<Value> {
    Json(json!({
        "issuer": state.issuer,
        "jwks_uri": format!("{}/jwks", state.issuer),
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["code"],
    }))
}

async fn jwks(State(state): State<Arc<DevState>>) -> Json<Value> {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(state.jwks())
}

fn signing_input(header: &str, claims: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_discovery_and_counts_jwks_fetches() {
        let dev = DevIssuer::start().await.unwrap();
        let client = reqwest::Client::new();
        let disc: Value = client
            .get(format!(
                "{}/.well-known/openid-configuration",
                dev.issuer_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(disc["issuer"], dev.issuer_url());
        let jwks: Value = client
            .get(disc["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks["keys"][0]["kid"], dev.kid());
        assert_eq!(dev.jwks_fetches(), 1);
    }

    #[tokio::test]
    async fn server_stops_when_asked() {
        let mut dev = DevIssuer::start().await.unwrap();
        let url = format!("{}/jwks", dev.issuer_url());
        dev.stop().await;
        assert!(reqwest::get(url).await.is_err());
    }
}
