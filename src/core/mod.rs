//! The protocol-neutral core every front end plugs into: the shared
//! services (identity, policy, audit, sessions, metrics), admission of a
//! login, a session's scope, per-statement judgement and its audit, a
//! pool generic over a connector, and the accept loop. It imports no
//! front end.

pub mod admission;
pub mod judge;
pub mod listener;
pub mod pool;
pub mod refresh;
pub mod scope;
pub mod services;
pub mod statement;
