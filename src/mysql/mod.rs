//! The MySQL/MariaDB front end (SPEC §5), over the wire codec in
//! `wire::mysql`: so far the upstream auth plugins and login, a client's
//! login up to its token, and where replies end; sessions and the relay
//! follow on the shared core.

pub mod auth;
pub use crate::wire::mysql as codec;
pub mod handshake;
pub mod response;
pub mod upstream;
