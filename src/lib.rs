//! idgate: an identity-aware gateway for databases. See ARCHITECTURE.md for
//! the map of modules and how one connection flows through them.

pub mod admin;
pub mod audit;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod postgres;
pub mod secret;
pub mod sessions;
pub mod sql;
pub mod tls;
