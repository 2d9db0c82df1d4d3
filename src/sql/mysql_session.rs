//! The MySQL statements the gateway answers itself instead of passing
//! them on: `KILL [QUERY] id` names a connection by the id the gateway
//! gave its client, not the server's; `USE db` names a target.

use sqlparser::ast::{KillType, Statement, Use};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::mysql_lex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercepted {
    /// `KILL QUERY id` (`query`) or `KILL [CONNECTION] id`.
    Kill { query: bool, id: u64 },
    /// `USE db`.
    Use(String),
}

/// `sql` when it is one `KILL` or `USE` statement the server would read
/// the same whichever way its executable comments go; `None` otherwise.
pub fn mysql_intercepted(sql: &str) -> Option<Intercepted> {
    let readings = mysql_lex::readings(sql).ok()?;
    let [text] = readings.as_slice() else {
        return None;
    };
    let parsed = Parser::parse_sql(&MySqlDialect {}, text).ok()?;
    let [statement] = parsed.as_slice() else {
        return None;
    };
    match statement {
        Statement::Kill { modifier, id } => match modifier {
            None | Some(KillType::Connection) => Some(Intercepted::Kill {
                query: false,
                id: *id,
            }),
            Some(KillType::Query) => Some(Intercepted::Kill {
                query: true,
                id: *id,
            }),
            Some(KillType::Mutation) => None,
        },
        Statement::Use(Use::Object(name) | Use::Database(name)) => match name.0.as_slice() {
            [part] => part.as_ident().map(|i| Intercepted::Use(i.value.clone())),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_and_use_are_recognised() {
        assert_eq!(
            mysql_intercepted("KILL QUERY 42"),
            Some(Intercepted::Kill {
                query: true,
                id: 42
            })
        );
        assert_eq!(
            mysql_intercepted("kill 7"),
            Some(Intercepted::Kill {
                query: false,
                id: 7
            })
        );
        assert_eq!(
            mysql_intercepted("USE `shop`"),
            Some(Intercepted::Use("shop".into()))
        );
        assert_eq!(mysql_intercepted("SELECT 1"), None);
        assert_eq!(mysql_intercepted("KILL 1; KILL 2"), None);
        // The server may or may not read the comment: not ours to guess.
        assert_eq!(mysql_intercepted("KILL /*!99999 QUERY */ 5"), None);
    }
}
