//! Token validation with warm keys, against the bare signature check it is
//! built on (SPEC §11: within 1.2× of it; a cache hit costs a hash lookup).
//!
//! Run: `cargo bench --bench token_validation` (prints median µs and ratios).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idgate::config::IssuerConfig;
use idgate::dev::DevIssuer;
use idgate::identity::{TokenValidator, ValidatorOptions};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

// The same allocator as the `idgate` binary, so the figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ITERATIONS: usize = 3000;
const WARMUP: usize = 200;

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn time_sync(mut f: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        f();
    }
    let samples = (0..ITERATIONS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    median_us(samples)
}

async fn time_validate(v: &TokenValidator, token: &str) -> f64 {
    for _ in 0..WARMUP {
        v.validate(token).await.expect("valid token");
    }
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        let id = v.validate(token).await.expect("valid token");
        samples.push(t.elapsed());
        std::hint::black_box(id);
    }
    median_us(samples)
}

/// The signing input and signature of a compact JWS.
fn split(token: &str) -> (&[u8], Vec<u8>) {
    let dot = token.rfind('.').expect("three segments");
    let sig = URL_SAFE_NO_PAD
        .decode(&token[dot + 1..])
        .expect("base64url");
    (&token.as_bytes()[..dot], sig)
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(v.as_str().expect("string"))
        .expect("base64url")
}

fn issuer_config(url: String) -> IssuerConfig {
    IssuerConfig {
        identity_claim: "email".into(),
        ..IssuerConfig::new("bench", &url, &["idgate"])
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let issuer = DevIssuer::start().await?;
    let rsa_der = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rsa2048.pk8"
    ))?;
    let rsa_kid = issuer.add_rsa_key(&rsa_der)?;
    let claims = issuer.claims_for(
        "bench@example.com",
        &["analysts", "developers"],
        "idgate",
        Duration::from_secs(3600),
    );
    let es_token = issuer.mint(claims.clone());
    let rs_token = issuer.mint_rs256(&rsa_kid, &claims)?;

    let jwks = issuer.jwks();
    let rsa_jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == rsa_kid.as_str()))
        .expect("RSA key published");
    let rsa_public = RsaPublicKeyComponents {
        n: b64(&rsa_jwk["n"]),
        e: b64(&rsa_jwk["e"]),
    };
    let ec_public = UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        issuer.es256_public_key(),
    );

    let uncached = TokenValidator::with_options(
        vec![issuer_config(issuer.issuer_url())],
        ValidatorOptions {
            token_cache_capacity: 0,
            ..ValidatorOptions::default()
        },
    );
    let cached = TokenValidator::new(vec![issuer_config(issuer.issuer_url())]);
    uncached.warm_up().await;
    cached.warm_up().await;

    println!("token validation, warm keys, median of {ITERATIONS} (µs)");
    println!(
        "{:<6} {:>12} {:>12} {:>8} {:>12}",
        "alg", "bare verify", "validate", "ratio", "cache hit"
    );
    for (alg, token) in [("RS256", &rs_token), ("ES256", &es_token)] {
        let (input, sig) = split(token);
        let bare = if alg == "RS256" {
            time_sync(|| {
                rsa_public
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, &sig)
                    .expect("verifies");
            })
        } else {
            time_sync(|| ec_public.verify(input, &sig).expect("verifies"))
        };
        let full = time_validate(&uncached, token).await;
        let hit = time_validate(&cached, token).await;
        println!(
            "{alg:<6} {bare:>12.1} {full:>12.1} {:>7.2}x {hit:>12.2}",
            full / bare
        );
    }
    Ok(())
}
