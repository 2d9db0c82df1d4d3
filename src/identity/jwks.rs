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
    /// A signing key we cannot use (another curve, OKP, ...). Kept so that a
    /// token naming its `kid` is told "wrong key type" rather than "unknown
    /// kid", and does not trigger a refetch.
    Unsupported { description: String },
}

/// Order of the P-256 group: ECDSA's r and s must lie in [1, n-1].
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

impl Jwk {
    /// Whether this key may verify a token signed with `alg`: the key type
    /// (and curve) must fit, and a key that names its own `alg` must name
    /// this one. The token's `alg` alone never chooses how a key is used.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let kty_fits = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Algorithm::RS256)
                | (KeyMaterial::EcP256 { .. }, Algorithm::ES256)
        );
        kty_fits && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }

    /// `RSA`, `EC P-256 (alg ES384)`, ...: what the key is, for messages.
    pub fn describe(&self) -> String {
        let kind = match &self.material {
            KeyMaterial::Rsa { n, .. } => format!("RSA {} bits", n.len() * 8),
            KeyMaterial::EcP256 { .. } => "EC P-256".to_string(),
            KeyMaterial::Unsupported { description } => description.clone(),
        };
        match &self.alg {
            Some(alg) => format!("{kind}, alg {}", shown(alg)),
            None => kind,
        }
    }

    /// `kid` for messages.
    pub fn label(&self) -> String {
        self.kid.as_deref().map_or_else(|| "(no kid)".into(), shown)
    }

    pub fn is_usable(&self) -> bool {
        !matches!(self.material, KeyMaterial::Unsupported { .. })
    }

    /// Whether `signature` has the exact shape `alg` prescribes for this
    /// key. Checked before ring so a malformed signature gets its own
    /// refusal reason instead of a generic "does not verify".
    pub fn signature_shape(&self, alg: Algorithm, signature: &[u8]) -> Result<(), TokenError> {
        match (&self.material, alg) {
            (KeyMaterial::Rsa { n, .. }, Algorithm::RS256) if signature.len() != n.len() => {
                Err(TokenError::SignatureFormat {
                    alg: alg.as_str(),
                    reason: "its length differs from the key's modulus length",
                })
            }
            (KeyMaterial::EcP256 { .. }, Algorithm::ES256) => ecdsa_p256_shape(signature),
            _ => Ok(()),
        }
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

/// JWS ES256 signatures are raw `r || s`, 32 bytes each (RFC 7518 §3.4),
/// never DER, and each half is in [1, n-1].
pub(crate) fn ecdsa_p256_shape(signature: &[u8]) -> Result<(), TokenError> {
    let wrong = |reason| TokenError::SignatureFormat {
        alg: "ES256",
        reason,
    };
    if signature.len() != 64 {
        return Err(wrong("expected 64 bytes (raw r || s)"));
    }
    for half in signature.chunks_exact(32) {
        if half.iter().all(|b| *b == 0) || half >= &P256_ORDER[..] {
            return Err(wrong("r or s is out of range"));
        }
    }
    Ok(())
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

    /// True when no key can verify anything (unsupported keys do not count).
    pub fn is_empty(&self) -> bool {
        !self.keys.iter().any(Jwk::is_usable)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that may have signed a token: by `kid` when the token names
    /// one (and those must fit `alg`), else every key that fits `alg`. The
    /// caller tries each; with no `kid` that is the only honest choice when
    /// an issuer publishes several keys for one algorithm.
    pub fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        issuer_name: &str,
    ) -> Result<Vec<&Jwk>, TokenError> {
        match kid {
            Some(kid) => {
                let named: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                let Some(first) = named.first() else {
                    return Err(TokenError::UnknownKey {
                        kid: shown(kid),
                        issuer: issuer_name.to_string(),
                    });
                };
                let fitting: Vec<&Jwk> = named.iter().copied().filter(|k| k.fits(alg)).collect();
                if fitting.is_empty() {
                    return Err(TokenError::KeyMismatch {
                        kid: shown(kid),
                        issuer: issuer_name.to_string(),
                        key: first.describe(),
                        alg: alg.as_str(),
                    });
                }
                Ok(fitting)
            }
            None => {
                let fitting: Vec<&Jwk> = self.keys.iter().filter(|k| k.fits(alg)).collect();
                if fitting.is_empty() {
                    return Err(TokenError::NoKeyForAlgorithm {
                        issuer: issuer_name.to_string(),
                        alg: alg.as_str(),
                    });
                }
                Ok(fitting)
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
        b64url_decode(v, "key member").map_err(|_| format!("`{name}` is not canonical base64url"))
    };
    if !for_signatures(text("use")?, k.get("key_ops"))? {
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
            let crv = text("crv")?.unwrap_or("(no crv)");
            if crv != "P-256" {
                return Ok(Some(Jwk {
                    kid,
                    alg,
                    material: KeyMaterial::Unsupported {
                        description: format!("EC {}", shown(crv)),
                    },
                }));
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
        Some(kty) => KeyMaterial::Unsupported {
            description: shown(kty),
        },
        None => return Err("missing `kty`".into()),
    };
    Ok(Some(Jwk { kid, alg, material }))
}

/// Whether a key may verify signatures (RFC 7517 §4.2, §4.3): `use`
/// absent or `sig`, and `key_ops` absent or listing `verify`. A key that
/// declares neither is taken as a signing key (issuers commonly omit both);
/// a key that declares anything else, in either member, is not one: an
/// encryption key (`key_ops: ["encrypt"]`, no `use`) must never verify a
/// token. `key_ops` that is not an array of distinct strings is an error.
fn for_signatures(use_: Option<&str>, key_ops: Option<&Value>) -> Result<bool, String> {
    let ops = match key_ops {
        None => None,
        Some(Value::Array(ops)) => {
            let mut names = Vec::with_capacity(ops.len());
            for op in ops {
                let Value::String(op) = op else {
                    return Err("`key_ops` is not an array of strings".into());
                };
                if names.contains(&op.as_str()) {
                    return Err(format!("`key_ops` lists `{}` twice", shown(op)));
                }
                names.push(op.as_str());
            }
            Some(names)
        }
        Some(_) => return Err("`key_ops` is not an array".into()),
    };
    let use_ok = use_.is_none_or(|u| u == "sig");
    let ops_ok = ops.is_none_or(|ops| ops.contains(&"verify"));
    Ok(use_ok && ops_ok)
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
    use serde_json::json;

    fn ec_key(kid: &str) -> Value {
        let c = b64url_encode(&[7u8; 32]);
        serde_json::json!({"kty":"EC","crv":"P-256","kid":kid,"x":c,"y":c,"use":"sig"})
    }

    fn set(keys: Vec<Value>) -> KeySet {
        let body = serde_json::json!({ "keys": keys }).to_string();
        KeySet::parse(body.as_bytes(), "corp").unwrap()
    }

    #[test]
    fn encryption_keys_are_skipped_and_other_curves_kept_as_unusable() {
        let mut enc = ec_key("e");
        enc["use"] = "enc".into();
        let mut p384 = ec_key("p");
        p384["crv"] = "P-384".into();
        let s = set(vec![enc, p384.clone(), ec_key("ok")]);
        assert_eq!(s.keys.len(), 2);
        assert!(s.has_kid("ok") && s.has_kid("p") && !s.has_kid("e"));
        assert!(set(vec![p384.clone()]).is_empty(), "no usable key");
        let e = set(vec![p384])
            .candidates(Some("p"), Algorithm::ES256, "corp")
            .unwrap_err();
        assert_eq!(e.kind(), "key_mismatch");
        assert!(e.to_string().contains("EC P-384"), "{e}");
    }

    #[test]
    fn only_keys_declared_for_verification_are_kept() {
        let with = |members: Value| {
            let mut k = ec_key("k");
            k.as_object_mut().unwrap().remove("use");
            for (name, value) in members.as_object().unwrap() {
                k[name] = value.clone();
            }
            set(vec![k]).has_kid("k")
        };
        // Neither member: a signing key, as most issuers publish them.
        assert!(with(json!({})));
        assert!(with(json!({"use": "sig"})));
        assert!(with(json!({"key_ops": ["verify"]})));
        assert!(with(json!({"use": "sig", "key_ops": ["verify", "sign"]})));
        // The issue #13 key: meant for encryption, says so only in key_ops.
        assert!(!with(json!({"key_ops": ["encrypt"]})));
        assert!(!with(json!({"key_ops": []})));
        assert!(!with(json!({"key_ops": ["sign"]})), "private-key op only");
        assert!(!with(json!({"use": "enc"})));
        assert!(
            !with(json!({"use": "enc", "key_ops": ["verify"]})),
            "inconsistent"
        );
        assert!(
            !with(json!({"use": "sig", "key_ops": ["encrypt"]})),
            "inconsistent"
        );
        // Malformed key_ops: the key is skipped, never trusted.
        assert!(!with(json!({"key_ops": "verify"})));
        assert!(!with(json!({"key_ops": ["verify", 1]})));
        assert!(!with(json!({"key_ops": ["verify", "verify"]})));
    }

    #[test]
    fn ecdsa_signature_shape_is_checked() {
        let mut ok = [1u8; 64];
        assert!(ecdsa_p256_shape(&ok).is_ok());
        assert!(ecdsa_p256_shape(&ok[..63]).is_err());
        assert!(ecdsa_p256_shape(&[1u8; 72]).is_err(), "DER-sized");
        ok[..32].copy_from_slice(&P256_ORDER);
        assert!(ecdsa_p256_shape(&ok).is_err(), "r = n");
        assert!(ecdsa_p256_shape(&[0u8; 64]).is_err(), "r = s = 0");
    }

    #[test]
    fn short_rsa_modulus_is_skipped() {
        let k = serde_json::json!({"kty":"RSA","n":b64url_encode(&[1u8; 128]),"e":"AQAB"});
        assert!(set(vec![k]).is_empty());
    }

    #[test]
    fn key_is_selected_by_kid_and_algorithm() {
        let s = set(vec![ec_key("a"), ec_key("b")]);
        let c = s.candidates(Some("b"), Algorithm::ES256, "corp").unwrap();
        assert_eq!(c.len(), 1);
        let e = s
            .candidates(Some("zz"), Algorithm::ES256, "corp")
            .unwrap_err();
        assert_eq!(e.to_string(), "unknown key id `zz` for issuer corp");
        assert_eq!(
            s.candidates(Some("a"), Algorithm::RS256, "corp")
                .unwrap_err()
                .kind(),
            "key_mismatch"
        );
        // No kid: every key that fits the algorithm is a candidate.
        assert_eq!(
            s.candidates(None, Algorithm::ES256, "corp").unwrap().len(),
            2
        );
        assert_eq!(
            s.candidates(None, Algorithm::RS256, "corp")
                .unwrap_err()
                .kind(),
            "no_key_for_alg"
        );
    }

    #[test]
    fn key_pinned_to_another_alg_does_not_fit() {
        let mut k = ec_key("a");
        k["alg"] = "ES384".into();
        let s = set(vec![k]);
        assert!(!s.keys[0].fits(Algorithm::ES256));
    }
}
