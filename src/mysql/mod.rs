//! The MySQL/MariaDB front end (SPEC §5): the wire codec and the upstream
//! auth plugins so far; sessions, the relay and upstream logins follow on
//! the shared core.

pub mod auth;
pub mod codec;
