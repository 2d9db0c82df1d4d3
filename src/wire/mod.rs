//! The wire codecs: bytes ⇄ messages, no I/O, each owning its protocol's
//! tags and layouts. Shared by the gateway's front ends (`postgres/`,
//! `mysql/`) and the person's side (`cli/`: the tunnel), which must not
//! import a server module.

pub mod mysql;
pub mod postgres;
