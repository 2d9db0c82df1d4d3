//! MySQL's lexical rules where sqlparser's tokenizer would read a text
//! differently from the server: comments and executable comments.
//! `/*! … */` runs as SQL on every server, `/*M! … */` on MariaDB only, and
//! a version (`/*!50700 … */`, `/*M!100500 … */`) makes the content run
//! only on a server at least that new. The classifier must judge what the
//! server may run, so [`readings`] gives the text once with every
//! executable comment opened up, and, when some may also be skipped, once
//! more with those left out. Every plain comment is blanked in both: the
//! parser never decides what a comment is (sqlparser wants a space after
//! `--` where the server takes any whitespace or control character, and
//! would read a quote after `--<tab>` as opening a string the server never
//! sees). Anything it cannot read the way the server would is an error,
//! which the classifier turns into `unknown`: so is `@@` followed by a
//! quote, which sqlparser reads as part of a name, and a `b` followed by a
//! quote that is not a bit literal, which it reads without escapes.
//!
//! Assumes the session's lexical settings the gateway enforces: backslash
//! escapes on (no `NO_BACKSLASH_ESCAPES`), `"` quoting strings (no
//! `ANSI_QUOTES`), and a client character set in which no multi-byte
//! character contains a quote or backslash byte.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    #[error("a comment inside an executable comment")]
    NestedComment,
    #[error("an executable comment the server may end elsewhere")]
    Ambiguous,
    #[error("a quoted system variable name (@@`name`), which sqlparser reads differently")]
    QuotedSystemVariable,
    #[error(
        "b\"…\" or a b'…' that is not a bit literal, which sqlparser reads without backslash escapes"
    )]
    ByteString,
}

/// The texts the server may execute for `sql`, plain comments blanked: one,
/// or two when an executable comment may be skipped (the first with every
/// one opened).
pub fn readings(sql: &str) -> Result<Vec<String>, LexError> {
    let Lexed {
        executables,
        comments,
    } = lex(sql.as_bytes())?;
    let mut opened = sql.as_bytes().to_vec();
    for c in comments {
        blank(&mut opened[c]);
    }
    let mut skipped = opened.clone();
    let mut conditional = false;
    for c in &executables {
        for text in [&mut opened, &mut skipped] {
            blank(&mut text[c.start..c.body]);
            blank(&mut text[c.end - 2..c.end]);
        }
        if c.conditional {
            conditional = true;
            blank(&mut skipped[c.start..c.end]);
        }
    }
    // Only whole characters were blanked (every range starts and ends at
    // an ASCII byte), so both are still UTF-8.
    let text = |b: Vec<u8>| String::from_utf8(b).expect("whole characters replaced by spaces");
    let mut out = vec![text(opened)];
    if conditional {
        out.push(text(skipped));
    }
    Ok(out)
}

fn blank(bytes: &mut [u8]) {
    bytes.fill(b' ');
}

/// One executable comment: `start..body` is its opening marker (with the
/// version), `end - 2..end` its `*/`.
struct Executable {
    start: usize,
    body: usize,
    end: usize,
    /// It runs on some servers only (a version, or MariaDB's `M`).
    conditional: bool,
}

/// What the server skips or runs specially in a text.
struct Lexed {
    executables: Vec<Executable>,
    /// Plain comments, `#` and `-- ` to the end of the line, `/* … */`.
    comments: Vec<Range<usize>>,
}

fn lex(s: &[u8]) -> Result<Lexed, LexError> {
    let mut found = Vec::new();
    let mut comments = Vec::new();
    let mut i = 0;
    let mut open: Option<(usize, usize, bool)> = None;
    while i < s.len() {
        match s[i] {
            q @ (b'\'' | b'"' | b'`') => i = end_of_quoted(s, i, q)?,
            // sqlparser takes the quote after `@@` into a name where the
            // server opens a quoted name: from there on the two would
            // disagree on what is quoted.
            b'@' if s.get(i + 1) == Some(&b'@')
                && matches!(s.get(i + 2), Some(b'\'' | b'"' | b'`')) =>
            {
                return Err(LexError::QuotedSystemVariable);
            }
            // sqlparser reads b'…' and b"…" as byte strings without
            // backslash escapes. To the server b'…' is a bit literal, and
            // anything but binary digits in it is an error; b"…" is a name
            // and a string, with escapes.
            b'b' | b'B' if matches!(s.get(i + 1), Some(b'\'' | b'"')) && !bit_literal(s, i + 1) => {
                return Err(LexError::ByteString);
            }
            b'#' => {
                let end = end_of_line(s, i);
                comments.push(i..end);
                i = end;
            }
            // The server's rule: `--` and whitespace or a control character
            // (sqlparser's: `--` and a space).
            b'-' if s.get(i + 1) == Some(&b'-')
                && s.get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                let end = end_of_line(s, i);
                comments.push(i..end);
                i = end;
            }
            b'*' if open.is_some() && s.get(i + 1) == Some(&b'/') => {
                let (start, body, conditional) = open.take().expect("checked");
                // Skipped, the server reads up to the first `*/` byte for
                // byte; opened, up to the first outside a token. They must
                // agree.
                let raw_end = find(s, body, b"*/").ok_or(LexError::Unterminated("comment"))?;
                if raw_end != i {
                    return Err(LexError::Ambiguous);
                }
                found.push(Executable {
                    start,
                    body,
                    end: i + 2,
                    conditional,
                });
                i += 2;
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                if open.is_some() {
                    return Err(LexError::NestedComment);
                }
                match executable_marker(s, i) {
                    Some((body, conditional)) => {
                        open = Some((i, body, conditional));
                        i = body;
                    }
                    None => {
                        let end =
                            find(s, i + 2, b"*/").ok_or(LexError::Unterminated("comment"))? + 2;
                        comments.push(i..end);
                        i = end;
                    }
                }
            }
            _ => i += 1,
        }
    }
    if open.is_some() {
        return Err(LexError::Unterminated("executable comment"));
    }
    Ok(Lexed {
        executables: found,
        comments,
    })
}

/// `/*!`, `/*M!` (either case) with an optional version of five or six
/// digits: where the content starts, and whether it is conditional.
fn executable_marker(s: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 2;
    let mariadb = matches!(s.get(i), Some(b'M' | b'm')) && s.get(i + 1) == Some(&b'!');
    if mariadb {
        i += 1;
    }
    if s.get(i) != Some(&b'!') {
        return None;
    }
    i += 1;
    let digits = s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let versioned = matches!(digits, 5 | 6);
    if versioned {
        i += digits;
    }
    Some((i, mariadb || versioned))
}

/// Past the closing quote of the literal or identifier opened at `at`:
/// a doubled quote stays inside, and in strings a backslash escapes the
/// next byte.
fn end_of_quoted(s: &[u8], at: usize, quote: u8) -> Result<usize, LexError> {
    let mut i = at + 1;
    while i < s.len() {
        match s[i] {
            b'\\' if quote != b'`' => i += 2,
            c if c == quote => {
                if s.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    Err(LexError::Unterminated(match quote {
        b'`' => "quoted identifier",
        _ => "string",
    }))
}

/// `'` at `at` opens binary digits and a closing `'`.
fn bit_literal(s: &[u8], at: usize) -> bool {
    s[at] == b'\''
        && s[at + 1..]
            .iter()
            .position(|&c| c == b'\'')
            .is_some_and(|end| {
                s[at + 1..at + 1 + end]
                    .iter()
                    .all(|c| matches!(c, b'0' | b'1'))
            })
}

fn end_of_line(s: &[u8], at: usize) -> usize {
    s[at..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(s.len(), |p| at + p + 1)
}

fn find(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` with each of `comments` replaced by as many spaces.
    fn blanked(text: &str, comments: &[&str]) -> String {
        comments.iter().fold(text.to_owned(), |t, c| {
            t.replacen(c, &" ".repeat(c.len()), 1)
        })
    }

    #[test]
    fn plain_text_is_one_reading_with_its_comments_blanked() {
        let sql = "SELECT '/*!', \"*/\", `/*!x` -- /*! DELETE */\n# /*!\nFROM t /* c */";
        assert_eq!(
            readings(sql).unwrap(),
            vec![blanked(sql, &["-- /*! DELETE */\n", "# /*!\n", "/* c */"])]
        );
        assert_eq!(readings("SELECT 1").unwrap(), vec!["SELECT 1".to_owned()]);
    }

    #[test]
    fn a_dash_comment_ends_by_the_servers_rule_not_the_parsers() {
        // The server reads `--` and a tab or a control character as a
        // comment: the quote after it opens no string, the DELETE runs.
        for sql in [
            "SELECT 1 --\t'\n; DELETE FROM t; -- '",
            "SELECT 1 --\u{1}'\n; DELETE FROM t; -- '",
        ] {
            let r = readings(sql).unwrap();
            assert_eq!(r.len(), 1);
            assert!(!r[0].contains('\''), "{:?}", r[0]);
            assert!(r[0].contains("; DELETE FROM t;"), "{:?}", r[0]);
        }
        // A line comment inside an executable comment hides a `*/`.
        let r = readings("SELECT 1 /*! , 2 -- */\n , 3 */");
        assert_eq!(r, Err(LexError::Ambiguous));
    }

    #[test]
    fn an_unversioned_executable_comment_always_runs() {
        let r = readings("SELECT 1 /*! , 2 */").unwrap();
        assert_eq!(r, vec!["SELECT 1     , 2   ".to_owned()]);
    }

    #[test]
    fn versioned_and_mariadb_comments_give_two_readings() {
        let r = readings("SELECT 1 /*!50700 ; DELETE FROM t */").unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].contains("; DELETE FROM t"));
        assert!(!r[1].contains("DELETE"));
        let r = readings("SELECT 1 /*M! ; DELETE FROM t */ /*m!100500 , 3 */").unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].contains("DELETE") && r[0].contains(", 3"));
        assert!(!r[1].contains("DELETE"));
    }

    #[test]
    fn a_comment_ending_inside_a_string_is_refused() {
        // Opened, the `*/` is inside the string and the comment goes on;
        // skipped, the server ends it there.
        assert_eq!(
            readings("SELECT 1 /*!50000 '*/ ; DELETE FROM t; -- ' */"),
            Err(LexError::Ambiguous)
        );
        assert_eq!(
            readings("SELECT /*! /* x */ 1 */"),
            Err(LexError::NestedComment)
        );
        assert!(readings("SELECT /*! 1").is_err());
        assert!(readings("SELECT 'open").is_err());
        assert!(readings("SELECT 1 /* open").is_err());
    }

    #[test]
    fn a_quoted_system_variable_name_is_refused() {
        // sqlparser reads "@@`version" as one name and quotes from the
        // second backtick on: to it this is one SELECT.
        let sql = "SELECT @@`version`; DELETE FROM t; SELECT 1 AS ` FROM t WHERE 1 = @@`";
        assert_eq!(readings(sql), Err(LexError::QuotedSystemVariable));
        assert!(readings("SELECT '@@`', @@session.`version`, @`x`").is_ok());
    }

    #[test]
    fn byte_strings_other_than_bit_literals_are_refused() {
        for sql in [
            r#"SELECT b"\"; DELETE FROM t; -- ""#,
            r"SELECT B'\'; DELETE FROM t; -- '",
            "SELECT b'012'",
            "SELECT b'01",
        ] {
            assert_eq!(readings(sql), Err(LexError::ByteString), "{sql}");
        }
        assert!(readings("SELECT b'0101', B'', 'b''c', `b`, b.x FROM t AS b").is_ok());
    }

    #[test]
    fn dashes_without_a_space_are_no_comment() {
        // `1--1` is one minus minus one: what follows is SQL.
        let r = readings("SELECT 1--1 /*! ; DELETE FROM t */").unwrap();
        assert!(r[0].contains("DELETE"));
        let r = readings("SELECT 1 -- /*! ; DELETE FROM t */\n").unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn backslashes_escape_in_strings_only() {
        // The quote after the backslash does not end the string.
        let r = readings(r"SELECT 'a\' /*! DELETE */ ' /*! , 1 */").unwrap();
        assert_eq!(
            r,
            vec![r"SELECT 'a\' /*! DELETE */ '     , 1   ".to_owned()]
        );
        // In a backtick identifier a backslash is a plain character.
        let r = readings(r"SELECT `a\` /*! , 1 */").unwrap();
        assert!(r[0].ends_with(", 1   "));
    }
}
