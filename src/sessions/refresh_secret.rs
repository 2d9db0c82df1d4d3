//! The secret a session's own client holds to extend it with newer tokens.
//! Handed out once (in the login greeting), kept only in memory, compared
//! in constant time, never logged.

use subtle::ConstantTimeEq;

const LEN: usize = 32;

pub struct RefreshSecret([u8; LEN]);

impl RefreshSecret {
    /// 256 random bits: guessing one is out of reach, so refreshes need no
    /// rate limit of their own.
    #[must_use]
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The form handed to the client (64 hex digits).
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `presented` (hex) is this secret. Only the length, which is
    /// public, shortens the comparison.
    #[must_use]
    pub fn matches(&self, presented: &str) -> bool {
        let mut bytes = [0u8; LEN];
        hex::decode_to_slice(presented, &mut bytes).is_ok() && bool::from(bytes.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}
