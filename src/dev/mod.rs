//! The embedded development issuer behind `idgate dev`.
