//! The person's side (SPEC §13): client settings, `idgate login`, the token
//! cache, `idgate token` and `idgate logout`.
//!
//! Invariant: nothing here imports a server module (`postgres`, `gateway`,
//! `sessions`, `admin`'s server, `config`, `identity`): this is the client a
//! person runs on a laptop, and it must build on what it alone needs.

mod cache;
mod error;
pub mod login;
pub mod logout;
mod provider;
pub mod settings;
pub mod token;

pub use error::CliError;
pub use settings::{Overrides, Settings};
