//! One reading of a MySQL/MariaDB text (`mysql_lex::readings`) into its
//! statements, as the server splits them. sqlparser's MySQL dialect parses
//! each statement; this module owns the loop between them and the few
//! statements the dialect lacks. sqlparser's own loop (`Parser::parse_sql`)
//! stops at an `END` after a statement, the end of a block in other
//! dialects; MariaDB reads `SELECT 1 END; DELETE FROM t` as a column alias
//! and a DELETE. Here only `;` or the end of the text may follow a
//! statement, and anything else is an error (so `unknown`).

use sqlparser::ast::{self, Expr};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// One statement of a reading.
#[derive(Debug)]
pub enum Parsed {
    /// What sqlparser reads.
    Sql(Box<ast::Statement>),
    /// `SET GLOBAL TRANSACTION …`: sqlparser reads it and drops the
    /// GLOBAL, leaving the session's harmless `SET TRANSACTION`.
    SetGlobalTransaction,
    /// `START TRANSACTION` with MySQL's characteristics: sqlparser lacks
    /// `WITH CONSISTENT SNAPSHOT`, which mysqldump sends.
    StartTransaction { read_write: bool },
    /// `DO expr, …`: evaluates the expressions like a SELECT and sends no
    /// rows (sqlparser lacks it).
    Do(Vec<Expr>),
    /// A SHOW that only lists and that sqlparser cannot read:
    /// `SHOW [FULL] PROCESSLIST`, `SHOW CREATE {DATABASE | SCHEMA}`,
    /// `SHOW {TABLE | FUNCTION | PROCEDURE} STATUS … [LIKE … | WHERE …]`.
    /// The WHERE filter is an expression like any other: it may call
    /// functions or read tables.
    Show { filter: Option<Box<Expr>> },
    /// `PREPARE name FROM 'text'`: a text known now (`FROM @var` is not,
    /// and is an error here, so `unknown`).
    Prepare { name: String, text: String },
    /// `EXECUTE name [USING expr, …]` (not MariaDB's `EXECUTE IMMEDIATE`):
    /// what `name` was prepared as, with the arguments evaluated first.
    Execute { name: String, using: Vec<Expr> },
}

/// The statements of `text`, or the first error.
pub fn parse(text: &str) -> Result<Vec<Parsed>, ParserError> {
    let dialect = MySqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text)?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            return Ok(out);
        }
        let global_transaction = starts_with(&parser, &["SET", "GLOBAL", "TRANSACTION"]);
        out.push(match mysql_only(&mut parser)? {
            Some(parsed) => parsed,
            None => {
                let statement = parser.parse_statement()?;
                if global_transaction {
                    Parsed::SetGlobalTransaction
                } else {
                    Parsed::Sql(Box::new(statement))
                }
            }
        });
        let next = parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return parser.expected("the end of the statement", next);
        }
    }
}

/// A statement this module reads itself, or `None` (nothing consumed) for
/// sqlparser to read.
fn mysql_only(p: &mut Parser) -> Result<Option<Parsed>, ParserError> {
    if take(p, &["PREPARE"]) {
        let name = p.parse_identifier()?.value;
        if !take(p, &["FROM"]) {
            return p.expected("FROM", p.peek_token());
        }
        // A quoted literal only: a bare word or @var is read here too.
        let next = p.peek_token();
        if !matches!(
            next.token,
            Token::SingleQuotedString(_) | Token::DoubleQuotedString(_)
        ) {
            return p.expected("the statement text as a string literal", next);
        }
        let text = p.parse_literal_string()?;
        return Ok(Some(Parsed::Prepare { name, text }));
    }
    if starts_with(p, &["EXECUTE"]) && !starts_with(p, &["EXECUTE", "IMMEDIATE"]) {
        p.next_token();
        let name = p.parse_identifier()?.value;
        let using = if take(p, &["USING"]) {
            p.parse_comma_separated(Parser::parse_expr)?
        } else {
            Vec::new()
        };
        return Ok(Some(Parsed::Execute { name, using }));
    }
    if take(p, &["START", "TRANSACTION"]) {
        return start_transaction(p).map(Some);
    }
    if take(p, &["DO"]) {
        return Ok(Some(Parsed::Do(
            p.parse_comma_separated(Parser::parse_expr)?,
        )));
    }
    let show = |filter| Ok(Some(Parsed::Show { filter }));
    if take(p, &["SHOW", "PROCESSLIST"]) || take(p, &["SHOW", "FULL", "PROCESSLIST"]) {
        return show(None);
    }
    if take(p, &["SHOW", "CREATE", "DATABASE"]) || take(p, &["SHOW", "CREATE", "SCHEMA"]) {
        take(p, &["IF", "NOT", "EXISTS"]);
        p.parse_identifier()?;
        return show(None);
    }
    for what in ["TABLE", "FUNCTION", "PROCEDURE"] {
        if take(p, &["SHOW", what, "STATUS"]) {
            if what == "TABLE" && (take(p, &["FROM"]) || take(p, &["IN"])) {
                p.parse_identifier()?;
            }
            if take(p, &["LIKE"]) {
                p.parse_literal_string()?;
            } else if take(p, &["WHERE"]) {
                return show(Some(Box::new(p.parse_expr()?)));
            }
            return show(None);
        }
    }
    Ok(None)
}

/// After `START TRANSACTION`: `[characteristic [, characteristic] …]`,
/// each `WITH CONSISTENT SNAPSHOT`, `READ ONLY` or `READ WRITE`.
fn start_transaction(p: &mut Parser) -> Result<Parsed, ParserError> {
    let mut read_write = false;
    if matches!(p.peek_token().token, Token::SemiColon | Token::EOF) {
        return Ok(Parsed::StartTransaction { read_write });
    }
    loop {
        if take(p, &["READ", "WRITE"]) {
            read_write = true;
        } else if !take(p, &["WITH", "CONSISTENT", "SNAPSHOT"]) && !take(p, &["READ", "ONLY"]) {
            return p.expected(
                "WITH CONSISTENT SNAPSHOT, READ ONLY or READ WRITE",
                p.peek_token(),
            );
        }
        if !p.consume_token(&Token::Comma) {
            return Ok(Parsed::StartTransaction { read_write });
        }
    }
}

/// Whether `words` (unquoted, any case) come next.
fn starts_with(p: &Parser, words: &[&str]) -> bool {
    words.iter().enumerate().all(|(i, want)| {
        matches!(&p.peek_nth_token(i).token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(want))
    })
}

/// Consumes `words` if they come next; else nothing.
fn take(p: &mut Parser, words: &[&str]) -> bool {
    let all = starts_with(p, words);
    if all {
        for _ in words {
            p.next_token();
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .iter()
            .map(|p| match p {
                Parsed::Sql(_) => "sql",
                Parsed::SetGlobalTransaction => "set_global_transaction",
                Parsed::Do(_) => "do",
                Parsed::StartTransaction { read_write: false } => "begin",
                Parsed::StartTransaction { read_write: true } => "begin_read_write",
                Parsed::Show { filter: None } => "show",
                Parsed::Show { filter: Some(_) } => "show_where",
                Parsed::Prepare { .. } => "prepare",
                Parsed::Execute { .. } => "execute",
            })
            .collect()
    }

    #[test]
    fn prepare_from_a_literal_and_execute_by_name() {
        assert_eq!(
            kinds("PREPARE s FROM 'SELECT ?'; EXECUTE s USING 1; EXECUTE IMMEDIATE 'SELECT 1'"),
            ["prepare", "execute", "sql"]
        );
        // The text behind a variable is not known when PREPARE is judged.
        assert!(parse("PREPARE s FROM @q").is_err());
    }

    #[test]
    fn only_a_semicolon_or_the_end_may_follow_a_statement() {
        assert_eq!(kinds("SELECT 1; ; SELECT 2;"), ["sql", "sql"]);
        assert_eq!(kinds(""), Vec::<&str>::new());
        // sqlparser's parse_sql would stop at END and never see the DELETE.
        for text in [
            "SELECT 1 END; DELETE FROM t",
            "SELECT * FROM t END; DELETE FROM t",
            "COMMIT END; DELETE FROM t",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn set_global_transaction_keeps_its_global() {
        assert_eq!(
            kinds(
                "SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED; SET TRANSACTION READ ONLY"
            ),
            ["set_global_transaction", "sql"]
        );
    }

    #[test]
    fn start_transaction_takes_mysqls_characteristics() {
        assert_eq!(kinds("START TRANSACTION"), ["begin"]);
        assert_eq!(
            kinds("start transaction with consistent snapshot, read only"),
            ["begin"]
        );
        assert_eq!(
            kinds("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE"),
            ["begin_read_write"]
        );
        assert_eq!(
            kinds("START TRANSACTION READ ONLY, READ WRITE"),
            ["begin_read_write"]
        );
        for text in [
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT DELETE FROM t",
            "START TRANSACTION READ ONLY,",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn do_takes_a_list_of_expressions() {
        assert_eq!(kinds("DO 1; DO SLEEP(1), 2"), ["do", "do"]);
        assert!(parse("DO").is_err());
        assert!(parse("DO 1 DELETE FROM t").is_err());
    }

    #[test]
    fn listing_shows_sqlparser_lacks() {
        assert_eq!(
            kinds(
                "SHOW FULL PROCESSLIST; SHOW CREATE DATABASE `d`; SHOW TABLE STATUS FROM d LIKE 't'"
            ),
            ["show", "show", "show"]
        );
        assert_eq!(
            kinds("SHOW PROCEDURE STATUS WHERE Db = 'd'"),
            ["show_where"]
        );
        assert!(parse("SHOW FUNCTION STATUS FROM d").is_err());
        assert!(parse("SHOW PROCESSLIST x").is_err());
    }
}
