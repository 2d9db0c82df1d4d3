//! Development aids behind `idgate dev`: the embedded issuer (also the test
//! issuer of our integration tests), the zero-config trial around it, and
//! the throwaway PostgreSQL the trial starts when none answers. Never for
//! production.

mod issuer;
pub mod throwaway;
pub mod trial;

pub use issuer::DevIssuer;
