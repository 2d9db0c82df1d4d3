//! JSON Web Key Sets: turning an issuer's JWKS document into verification
//! keys, choosing the key for a token, and checking signatures with `ring`.
//! No I/O here; fetching and caching live in `key_cache.rs`.

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::{Map, Value};

use super::error::{TokenError, shown};
use super::jose::{b64url_decode, parse_strict_json};
use crate::config::Algorithm;

/// One usable signing key from a JWKS.
#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<String>,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone)]
pub(crate) enum KeyMaterial {
    /// Big-endian modulus and exponent, leading zeros stripped.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 || x || y` on P-256.
    EcP256 { point: Vec<u8> },
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`: the key type
    /// must fit, and a key that names its own `alg` must name this one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let kty_fits = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Algorithm::RS256)
                | (KeyMaterial::EcP256 { .. }, Algorithm::ES256)
        );
        kty_fits && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }

    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            (KeyMaterial::Rsa { n, e }, Algorithm::RS256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (KeyMaterial::EcP256 { point }, Algorithm::ES256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// The signing keys of one issuer.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWKS document. Keys we cannot use (encryption keys, other
    /// curves, broken encodings) are skipped with a log line rather than
    /// failing the whole set, so one odd key does not lock everyone out.
    pub fn parse(body: &[u8], issuer_name: &str) -> Result<KeySet, String> {
        let doc = parse_strict_json(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
        let Some(Value::Array(raw)) = doc.get("keys") else {
            return Err("JWKS has no `keys` array".into());
        };
        let mut keys = Vec::new();
        for (i, k) in raw.iter().enumerate() {
            let Value::Object(k) = k else {
                tracing::warn!(
                    issuer = issuer_name,
                    index = i,
                    "JWKS entry is not an object"
                );
                continue;
            };
            match parse_jwk(k) {
                Ok(Some(jwk)) => keys.push(jwk),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(issuer = issuer_name, index = i, %reason, "skipping JWKS key");
                }
            }
        }
        Ok(KeySet { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Picks the key for a token: by `kid` when the token names one, else the
    /// single key that fits the algorithm (several would be a guess).
    pub fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        issuer_name: &str,
    ) -> Result<&Jwk, TokenError> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(TokenError::UnknownKey {
                        kid: shown(kid),
                        issuer: issuer_name.to_string(),
                    });
                }
                named.find(|k| k.fits(alg)).ok_or(TokenError::KeyMismatch {
                    kid: shown(kid),
                    issuer: issuer_name.to_string(),
                    alg: alg.as_str(),
                })
            }
            None => {
                let fitting: Vec<&Jwk> = self.keys.iter().filter(|k| k.fits(alg)).collect();
                match fitting.as_slice() {
                    [only] => Ok(only),
                    [] => Err(TokenError::UnknownKey {
                        kid: "(none)".into(),
                        issuer: issuer_name.to_string(),
                    }),
                    many => Err(TokenError::AmbiguousKey {
                        issuer: issuer_name.to_string(),
                        alg: alg.as_str(),
                        count: many.len(),
                    }),
                }
            }
        }
    }
}

/// `Ok(None)` for keys that are valid but not for us (encryption keys,
/// unsupported key types).
fn parse_jwk(k: &Map<String, Value>) -> Result<Option<Jwk>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match k.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{name}` is not a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let v = text(name)?.ok_or_else(|| format!("missing `{name}`"))?;
        b64url_decode(v, name).map_err(|e| e.to_string())
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let kid = text("kid")?.map(str::to_owned);
    let alg = text("alg")?.map(str::to_owned);
    let material = match text("kty")? {
        Some("RSA") => {
            let n = strip_leading_zeros(bytes("n")?);
            let e = strip_leading_zeros(bytes("e")?);
            // ring refuses < 2048-bit moduli at verify time anyway; refusing
            // here gives a log line that names the key instead.
            if !(256..=1024).contains(&n.len()) {
                return Err(format!(
                    "RSA modulus of {} bits is not allowed",
                    n.len() * 8
                ));
            }
            KeyMaterial::Rsa { n, e }
        }
        Some("EC") => {
            if text("crv")? != Some("P-256") {
                return Ok(None);
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::EcP256 { point }
        }
        _ => return Ok(None),
    };
    Ok(Some(Jwk { kid, alg, material }))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::jose::b64url_encode;

    fn ec_key(kid: &str) -> Value {
        let c = b64url_encode(&[7u8; 32]);
        serde_json::json!({"kty":"EC","crv":"P-256","kid":kid,"x":c,"y":c,"use":"sig"})
    }

    fn set(keys: Vec<Value>) -> KeySet {
        let body = serde_json::json!({ "keys": keys }).to_string();
        KeySet::parse(body.as_bytes(), "corp").unwrap()
    }

    #[test]
    fn encryption_keys_and_other_curves_are_skipped() {
        let mut enc = ec_key("e");
        enc["use"] = "enc".into();
        let mut p384 = ec_key("p");
        p384["crv"] = "P-384".into();
        let s = set(vec![enc, p384, ec_key("ok")]);
        assert_eq!(s.keys.len(), 1);
        assert!(s.has_kid("ok"));
    }

    #[test]
    fn short_rsa_modulus_is_skipped() {
        let k = serde_json::json!({"kty":"RSA","n":b64url_encode(&[1u8; 128]),"e":"AQAB"});
        assert!(set(vec![k]).is_empty());
    }

    #[test]
    fn key_is_selected_by_kid_and_algorithm() {
        let s = set(vec![ec_key("a"), ec_key("b")]);
        assert!(s.select(Some("b"), Algorithm::ES256, "corp").is_ok());
        let e = s.select(Some("zz"), Algorithm::ES256, "corp").unwrap_err();
        assert_eq!(e.to_string(), "unknown key id `zz` for issuer corp");
        assert_eq!(
            s.select(Some("a"), Algorithm::RS256, "corp")
                .unwrap_err()
                .kind(),
            "key_mismatch"
        );
        assert_eq!(
            s.select(None, Algorithm::ES256, "corp").unwrap_err().kind(),
            "ambiguous_key"
        );
        let one = set(vec![ec_key("a")]);
        assert!(one.select(None, Algorithm::ES256, "corp").is_ok());
    }

    #[test]
    fn key_pinned_to_another_alg_does_not_fit() {
        let mut k = ec_key("a");
        k["alg"] = "ES384".into();
        let s = set(vec![k]);
        assert!(!s.keys[0].fits(Algorithm::ES256));
    }
}
