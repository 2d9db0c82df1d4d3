//! The PostgreSQL front end: codec, client sessions, upstream connections, cancels.
