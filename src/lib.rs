//! idgate: an identity-aware gateway for databases. See ARCHITECTURE.md for
//! the map of modules and how one connection flows through them.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub mod dev;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod mysql;
pub mod policy;
pub mod position;
pub mod postgres;
pub mod secret;
pub mod sessions;
pub mod sql;
pub mod tls;
pub mod wire;

/// Locks `m`, taking the data even if another thread panicked while
/// holding it: every lock here guards state that stays consistent between
/// statements, and one panicked session must not disable the rest.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
