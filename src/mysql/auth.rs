//! The client side of the upstream auth plugins: what the gateway answers
//! a MySQL/MariaDB server's nonce with, given the role's password. Pure
//! functions; the login exchange around them is the upstream module's.

use ed25519_dalek::VerifyingKey;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

pub use crate::wire::mysql::plugin::{
    CACHING_SHA2_PASSWORD, CLEAR_PASSWORD, ED25519, FAST_AUTH_OK, FULL_AUTH, NATIVE_PASSWORD,
    REQUEST_PUBLIC_KEY,
};

/// `SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))`; empty for an
/// empty password, as the server expects.
pub fn native_password(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// `SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce)`, the
/// fast-auth answer; empty for an empty password.
pub fn caching_sha2_password(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(nonce);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// The password itself, NUL-terminated: full auth over TLS, and
/// `mysql_clear_password`.
pub fn clear_password(password: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(password.len() + 1);
    out.extend_from_slice(password);
    out.push(0);
    out
}

/// MariaDB `ed25519`: an Ed25519 signature of the nonce whose secret
/// expansion is `SHA512(password)` (the password stands where RFC 8032 has
/// the 32-byte seed; the server stores the public key).
pub fn ed25519(password: &[u8], nonce: &[u8]) -> [u8; 64] {
    let az: [u8; 64] = Sha512::digest(password).into();
    let secret = ExpandedSecretKey::from_bytes(&az);
    let public = VerifyingKey::from(&secret);
    raw_sign::<Sha512>(&secret, nonce, &public).to_bytes()
}

/// The public key MariaDB stores for `password` (`ed25519_password()`
/// returns it in unpadded base64).
pub fn ed25519_public_key(password: &[u8]) -> [u8; 32] {
    let az: [u8; 64] = Sha512::digest(password).into();
    VerifyingKey::from(&ExpandedSecretKey::from_bytes(&az)).to_bytes()
}

/// The first answer for `plugin`, or `None` for a plugin the gateway
/// cannot speak.
pub fn respond(plugin: &[u8], password: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
    match plugin {
        NATIVE_PASSWORD => Some(native_password(password, nonce)),
        CACHING_SHA2_PASSWORD => Some(caching_sha2_password(password, nonce)),
        ED25519 => Some(ed25519(password, nonce).to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey, Verifier};

    #[test]
    fn native_password_matches_the_servers_check() {
        // The server keeps SHA1(SHA1(pw)) and checks
        // SHA1(reply XOR SHA1(nonce + stored)) == stored.
        let nonce: Vec<u8> = (0..20).collect();
        let reply = native_password(b"secret", &nonce);
        let stored = Sha1::digest(Sha1::digest(b"secret"));
        let mut h = Sha1::new();
        h.update(&nonce);
        h.update(stored);
        let stage1: Vec<u8> = reply.iter().zip(h.finalize()).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha1::digest(&stage1), stored);
        assert!(native_password(b"", &nonce).is_empty());
    }

    #[test]
    fn caching_sha2_matches_the_servers_check() {
        let nonce: Vec<u8> = (100..120).collect();
        let reply = caching_sha2_password(b"secret", &nonce);
        let stored = Sha256::digest(Sha256::digest(b"secret"));
        let mut h = Sha256::new();
        h.update(stored);
        h.update(&nonce);
        let stage1: Vec<u8> = reply.iter().zip(h.finalize()).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha256::digest(&stage1), stored);
    }

    #[test]
    fn ed25519_is_rfc8032_with_the_password_as_seed() {
        // A 32-byte password is exactly an RFC 8032 seed.
        let seed = [7u8; 32];
        let nonce = b"0123456789abcdefghij0123456789ab";
        let standard = SigningKey::from_bytes(&seed);
        assert_eq!(ed25519(&seed, nonce), standard.sign(nonce).to_bytes());
        assert_eq!(
            ed25519_public_key(&seed),
            standard.verifying_key().to_bytes()
        );
        // Any other length verifies under the stored public key.
        let public = VerifyingKey::from_bytes(&ed25519_public_key(b"secret")).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&ed25519(b"secret", nonce));
        assert!(public.verify(nonce, &sig).is_ok());
    }

    #[test]
    fn unknown_plugins_get_no_answer() {
        assert!(respond(b"auth_gssapi_client", b"x", b"n").is_none());
        assert!(respond(CLEAR_PASSWORD, b"x", b"n").is_none());
        assert_eq!(respond(NATIVE_PASSWORD, b"x", &[0; 20]).unwrap().len(), 20);
    }
}
