//! Validated tokens, keyed by the SHA-256 of the token, so a reconnect storm
//! costs a hash and a lookup instead of a signature check each. Entries live
//! until the token's `exp`; every hit re-checks expiry against the clock.
//! The map is bounded: when full, expired entries go first, then the oldest.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use ring::digest::{SHA256, digest};

use super::Identity;
use super::claims::check_expiry;
use super::error::TokenError;

pub(crate) type TokenHash = [u8; 32];

pub(crate) fn token_hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

#[derive(Debug)]
struct Entry {
    identity: Identity,
    skew: i64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<TokenHash, Entry>,
    /// Insertion order, for oldest-first eviction. May hold hashes already
    /// removed from `map`; those are skipped when popped.
    order: VecDeque<TokenHash>,
}

#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// `None` on a miss; on a hit the cached identity, or `Expired` once the
    /// token has run out (the entry is dropped then).
    pub fn get(&self, hash: &TokenHash, now: i64) -> Option<Result<Identity, TokenError>> {
        let mut inner = crate::lock(&self.inner);
        let entry = inner.map.get(hash)?;
        match check_expiry(entry.identity.expires_at, entry.skew, now) {
            Ok(()) => Some(Ok(entry.identity.clone())),
            Err(e) => {
                inner.map.remove(hash);
                Some(Err(e))
            }
        }
    }

    pub fn insert(&self, hash: TokenHash, identity: Identity, skew: i64, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = crate::lock(&self.inner);
        if inner.map.len() >= self.capacity {
            // O(n), but only when full, and it usually frees many slots.
            inner
                .map
                .retain(|_, e| check_expiry(e.identity.expires_at, e.skew, now).is_ok());
            let Inner { map, order } = &mut *inner;
            order.retain(|h| map.contains_key(h));
        }
        while inner.map.len() >= self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&oldest);
        }
        if inner.map.insert(hash, Entry { identity, skew }).is_none() {
            inner.order.push_back(hash);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        crate::lock(&self.inner).map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn identity(exp: i64) -> Identity {
        Identity {
            issuer_name: "corp".into(),
            issuer: "https://x".into(),
            sub: "s".into(),
            identity: "s".into(),
            groups: vec![],
            expires_at: exp,
            issued_at: None,
            jti: None,
            claims: BTreeMap::new(),
        }
    }

    #[test]
    fn hit_after_expiry_is_refused_and_dropped() {
        let c = TokenCache::new(10);
        let h = token_hash("t");
        c.insert(h, identity(100), 0, 50);
        assert!(c.get(&h, 99).unwrap().is_ok());
        assert_eq!(c.get(&h, 105).unwrap().unwrap_err().kind(), "expired");
        assert!(c.get(&h, 50).is_none());
    }

    #[test]
    fn full_cache_evicts_expired_then_oldest() {
        let c = TokenCache::new(3);
        c.insert(token_hash("a"), identity(100), 0, 0);
        c.insert(token_hash("b"), identity(10), 0, 0);
        c.insert(token_hash("c"), identity(100), 0, 0);
        c.insert(token_hash("d"), identity(100), 0, 50); // evicts expired b
        assert!(c.get(&token_hash("a"), 50).is_some());
        assert!(c.get(&token_hash("b"), 50).is_none());
        c.insert(token_hash("e"), identity(100), 0, 50); // evicts oldest a
        assert!(c.get(&token_hash("a"), 50).is_none());
        assert_eq!(c.len(), 3);
    }
}
