//! The person's side (SPEC §13): client settings, `idgate login`, the token
//! cache, `idgate token` and `idgate logout`, `idgate connect` and
//! `idgate tunnel`.
//!
//! Invariant: nothing here imports a server module (`postgres`, `mysql`,
//! `gateway`, `core`, `sessions`, `admin`'s server, `config`, `identity`):
//! this is the client a person runs on a laptop. It uses only the pure
//! PostgreSQL and MySQL codecs (bytes ⇄ messages), TLS client configs and
//! streams, and `Secret`.

mod cache;
pub mod connect;
pub mod endpoint;
mod error;
pub mod login;
pub mod logout;
mod provider;
pub mod settings;
pub mod token;
pub mod token_source;
pub mod tunnel;

pub use error::CliError;
pub use settings::{Overrides, Settings};
