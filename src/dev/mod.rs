//! Development aids behind `idgate dev`: the embedded issuer (also the test
//! issuer of our integration tests) and the zero-config trial around it.
//! Never for production.

mod issuer;
pub mod trial;

pub use issuer::DevIssuer;
