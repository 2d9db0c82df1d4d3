//! Development aids behind `idgate dev`: the embedded issuer (also the test
//! issuer of our integration tests), the zero-config trial around it, its
//! MySQL side (`mariadb`), and the throwaway PostgreSQL and MariaDB the
//! trial starts when none answers. Never for production.

mod issuer;
pub mod mariadb;
pub mod throwaway;
pub mod trial;

pub use issuer::DevIssuer;
