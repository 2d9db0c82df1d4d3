//! Client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) and the legacy md5
//! exchange, for logging in to the upstream with the role's password.
//! Channel binding is not offered (gs2 header `n,,`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

pub const MECHANISM: &str = "SCRAM-SHA-256";
const GS2_HEADER: &str = "n,,";
/// Iteration counts above this are refused: a hostile upstream could
/// otherwise pin a gateway core for minutes per login.
const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM server message")]
    Malformed,
    #[error("server nonce does not extend ours")]
    Nonce,
    #[error("SCRAM iteration count {0} is out of range")]
    Iterations(u32),
    #[error("server signature does not verify")]
    ServerSignature,
}

pub struct ScramClient {
    nonce: String,
    client_first_bare: String,
    password: Vec<u8>,
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    pub fn new(password: &str) -> Self {
        let raw: [u8; 18] = rand::random();
        Self::with_nonce(password, B64.encode(raw))
    }

    fn with_nonce(password: &str, nonce: String) -> Self {
        // PostgreSQL takes the user from the startup packet and ignores `n=`.
        let client_first_bare = format!("n=,r={nonce}");
        Self {
            nonce,
            client_first_bare,
            password: password.as_bytes().to_vec(),
            server_signature: None,
        }
    }

    pub fn client_first(&self) -> String {
        format!("{GS2_HEADER}{}", self.client_first_bare)
    }

    /// Answer `server-first-message` with `client-final-message`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(B64.decode(v).map_err(|_| ScramError::Malformed)?),
                Some(("i=", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|_| ScramError::Malformed)?)
                }
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::Malformed);
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let rounds = NonZeroU32::new(iterations)
            .filter(|n| n.get() <= MAX_ITERATIONS)
            .ok_or(ScramError::Iterations(iterations))?;

        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            &self.password,
            &mut salted,
        );
        let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());

        let without_proof = format!("c={},r={nonce}", B64.encode(GS2_HEADER));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();

        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        let mut sig = [0u8; 32];
        sig.copy_from_slice(server_signature.as_ref());
        self.server_signature = Some(sig);
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Check `server-final-message`: proves the upstream knew the password.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed)?;
        let sig = text
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or(ScramError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| ScramError::Malformed)?;
        // A plain comparison is fine: the signature is the server's proof to
        // us, and learning it byte by byte gives an attacker nothing.
        match &self.server_signature {
            Some(expected) if expected.as_slice() == sig.as_slice() => Ok(()),
            _ => Err(ScramError::ServerSignature),
        }
    }
}

/// The md5 PasswordMessage payload: `"md5" + md5(md5(password + user) + salt)`.
pub fn md5_password(user: &str, password: &str, salt: &[u8; 4]) -> String {
    let inner = hex::encode(
        Md5::new()
            .chain_update(password)
            .chain_update(user)
            .finalize(),
    );
    let outer = hex::encode(Md5::new().chain_update(inner).chain_update(salt).finalize());
    format!("md5{outer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 example, with PostgreSQL's empty `n=`: the proof differs
    /// from the RFC's because the username is part of the auth message, so
    /// the check here is a server computed independently of the client.
    #[test]
    fn client_proof_verifies_against_an_independent_server() {
        let mut client = ScramClient::with_nonce("pencil", "rOprNGfwEbeRWgbNEkqO".into());
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = client.client_final(server_first.as_bytes()).unwrap();

        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(4096).unwrap(),
            &salt,
            b"pencil",
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored = digest::digest(&digest::SHA256, client_key.as_ref());
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        let auth = format!("n=,r=rOprNGfwEbeRWgbNEkqO,{server_first},{without_proof}");
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()),
            auth.as_bytes(),
        );
        let recovered: Vec<u8> = B64
            .decode(proof)
            .unwrap()
            .iter()
            .zip(sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            digest::digest(&digest::SHA256, &recovered).as_ref(),
            stored.as_ref()
        );

        let server_key = hmac::sign(&key, b"Server Key");
        let server_sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth.as_bytes(),
        );
        let server_final = format!("v={}", B64.encode(server_sig));
        client.verify_server_final(server_final.as_bytes()).unwrap();
        assert_eq!(
            client.verify_server_final(b"v=AAAA"),
            Err(ScramError::ServerSignature)
        );
    }

    #[test]
    fn server_nonce_must_extend_ours() {
        let mut client = ScramClient::with_nonce("pw", "abc".into());
        assert_eq!(
            client.client_final(b"r=xyz123,s=AAAA,i=4096"),
            Err(ScramError::Nonce)
        );
    }

    #[test]
    fn absurd_iteration_counts_are_refused() {
        let mut client = ScramClient::with_nonce("pw", "abc".into());
        assert_eq!(
            client.client_final(b"r=abcdef,s=AAAA,i=0"),
            Err(ScramError::Iterations(0))
        );
    }

    #[test]
    fn md5_matches_postgres() {
        // SELECT 'md5' || md5(md5('secret' || 'alice') || 'salt')
        assert_eq!(
            md5_password("alice", "secret", b"salt"),
            "md5986e2194384c07f4fd1df4b1351b3e68"
        );
    }
}
