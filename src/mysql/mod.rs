//! The MySQL/MariaDB front end (SPEC §5): so far the wire codec, the
//! upstream auth plugins and the upstream login; sessions and the relay
//! follow on the shared core.

pub mod auth;
pub mod codec;
pub mod handshake;
pub mod response;
pub mod upstream;
