//! The person's side of idgate: commands that run where the person works,
//! not on the gateway. Imports no server module (`postgres` sessions,
//! `gateway`, `sessions`, the admin server); only the pure PostgreSQL
//! codec, TLS client configs and `Secret`.

pub mod connect;
pub mod endpoint;
pub mod token_source;
pub mod tunnel;
