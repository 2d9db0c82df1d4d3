//! Masks passwords in SQL text before it reaches the audit trail.
//!
//! This is a lexical safety net, not a parser: it looks for the keyword
//! `PASSWORD` (and MySQL's `IDENTIFIED [WITH plugin] BY|AS`) anywhere in the
//! text, ignoring quoting context, and masks the string literal that follows.
//! Ignoring context is deliberate: tracking quotes needs the dialect's
//! escaping rules (PostgreSQL `'C:\'` vs MySQL `'O\'Brien'`), and getting
//! them wrong would skip a real password. The price is that a literal that
//! follows the word "password" inside another string may be masked too.

use std::borrow::Cow;

/// Replaces the string literal after `PASSWORD` (case-insensitive, as a
/// whole word, optionally followed by `=` or `(`) with `'***'`, e.g.
/// `ALTER ROLE bob PASSWORD 'hunter2'` → `ALTER ROLE bob PASSWORD '***'`.
/// Also covers `E'…'`/`N'…'`/`_charset'…'` prefixes, `"…"`, `$tag$…$tag$`,
/// comments between keyword and literal, and MySQL
/// `IDENTIFIED [WITH plugin] BY|AS '…'`. An unterminated literal is masked
/// to the end of the text. Returns the input unchanged (borrowed) when
/// there is nothing to mask.
#[must_use]
pub fn redact_statement(sql: &str) -> Cow<'_, str> {
    let b = sql.as_bytes();
    // Nearly every statement names neither keyword: find that out with two
    // vectorised byte searches instead of walking every word.
    if !mentions(b, b'w', b"password", 4) && !mentions(b, b'f', b"identified", 6) {
        return Cow::Borrowed(sql);
    }
    // (start, end) byte ranges of literals to mask, in ascending order.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some((start, end)) = next_word(b, i) {
        i = end;
        let word = &b[start..end];
        // `'password'` or `"password"` is a value or a quoted column name,
        // not the keyword; its closing quote must not open a "literal".
        let quoted = start > 0 && matches!(b[start - 1], b'\'' | b'"' | b'`');
        let literal_at = if quoted {
            None
        } else if word.eq_ignore_ascii_case(b"password") {
            let mut j = skip_trivia(b, end);
            if matches!(b.get(j), Some(b'=' | b'(')) {
                j = skip_trivia(b, j + 1);
            }
            Some(j)
        } else if word.eq_ignore_ascii_case(b"identified") {
            after_identified(b, end)
        } else {
            None
        };
        if let Some(j) = literal_at {
            if let Some(lit_end) = literal_end(b, j) {
                if spans.last().is_none_or(|&(_, e)| e <= j) {
                    spans.push((j, lit_end));
                }
                i = lit_end;
            }
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (start, end) in spans {
        // Every boundary is an ASCII byte or the end of the text, so these
        // are char boundaries.
        out.push_str(&sql[copied..start]);
        out.push_str("'***'");
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// Whether `keyword` occurs in `b`, in any case, looking only where its
/// `at`-th byte, the lowercase letter `letter`, occurs.
fn mentions(b: &[u8], letter: u8, keyword: &[u8], at: usize) -> bool {
    memchr::memchr2_iter(letter, letter.to_ascii_uppercase(), b).any(|i| {
        i.checked_sub(at)
            .and_then(|start| b.get(start..start + keyword.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
    })
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The next whole word at or after `from`: (start, end).
fn next_word(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < b.len() {
        if is_word_byte(b[i]) && (i == 0 || !is_word_byte(b[i - 1])) {
            let mut end = i;
            while end < b.len() && is_word_byte(b[end]) {
                end += 1;
            }
            return Some((i, end));
        }
        i += 1;
    }
    None
}

/// Skips whitespace and SQL comments.
fn skip_trivia(b: &[u8], mut i: usize) -> usize {
    loop {
        match (b.get(i), b.get(i + 1)) {
            (Some(c), _) if c.is_ascii_whitespace() => i += 1,
            (Some(b'-'), Some(b'-')) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            (Some(b'/'), Some(b'*')) => {
                // PostgreSQL block comments nest.
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            _ => return i,
        }
    }
}

/// After MySQL `IDENTIFIED`: optional `WITH plugin`, then `BY` or `AS`;
/// returns where the literal should start.
fn after_identified(b: &[u8], from: usize) -> Option<usize> {
    let mut i = skip_trivia(b, from);
    let (s, e) = next_word(b, i).filter(|&(s, _)| s == i)?;
    let mut word = &b[s..e];
    if word.eq_ignore_ascii_case(b"with") {
        // The plugin name may be bare or quoted.
        i = skip_trivia(b, e);
        i = literal_end(b, i).or_else(|| next_word(b, i).map(|(_, e)| e))?;
        i = skip_trivia(b, i);
        let (s, e) = next_word(b, i).filter(|&(s, _)| s == i)?;
        word = &b[s..e];
        i = e;
    } else {
        i = e;
    }
    (word.eq_ignore_ascii_case(b"by") || word.eq_ignore_ascii_case(b"as"))
        .then(|| skip_trivia(b, i))
}

/// If a string literal starts at `i`, where it ends (exclusive).
fn literal_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    // A word glued to a quote is a literal prefix: E'', N'', X'', U&'',
    // _utf8mb4''.
    while j < b.len() && is_word_byte(b[j]) {
        j += 1;
    }
    if j > i && b.get(j) == Some(&b'&') {
        j += 1;
    }
    match b.get(j) {
        Some(&q @ (b'\'' | b'"')) => Some(quoted_end(b, j, q)),
        Some(b'$') if j == i => dollar_end(b, j),
        _ => None,
    }
}

/// End of a quoted literal opened at `open`. Honours both `''` and
/// backslash escapes so that it never stops early under either dialect;
/// stopping late only masks more.
fn quoted_end(b: &[u8], open: usize, q: u8) -> usize {
    let mut k = open + 1;
    while k < b.len() {
        if b[k] == b'\\' {
            k += 2;
        } else if b[k] == q {
            if b.get(k + 1) == Some(&q) {
                k += 2;
            } else {
                return k + 1;
            }
        } else {
            k += 1;
        }
    }
    b.len()
}

/// End of a `$tag$…$tag$` literal opened at `open`.
fn dollar_end(b: &[u8], open: usize) -> Option<usize> {
    let mut k = open + 1;
    while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_') {
        k += 1;
    }
    if b.get(k) != Some(&b'$') {
        return None;
    }
    let tag = &b[open..=k];
    let body = k + 1;
    Some(
        b[body..]
            .windows(tag.len())
            .position(|w| w == tag)
            .map_or(b.len(), |p| body + p + tag.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::redact_statement;

    fn r(sql: &str) -> String {
        redact_statement(sql).into_owned()
    }

    #[test]
    fn masks_password_literal_in_alter_and_create_role() {
        assert_eq!(
            r("ALTER ROLE bob PASSWORD 'hunter2'"),
            "ALTER ROLE bob PASSWORD '***'"
        );
        assert_eq!(
            r("create role x login encrypted password 'it''s secret' valid until 'infinity'"),
            "create role x login encrypted password '***' valid until 'infinity'"
        );
    }

    #[test]
    fn leaves_statements_without_password_borrowed_and_unchanged() {
        let sql = "SELECT password_hash, 'password' FROM users WHERE id = 1";
        assert!(matches!(
            redact_statement(sql),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            r("ALTER ROLE bob PASSWORD NULL"),
            "ALTER ROLE bob PASSWORD NULL"
        );
    }

    #[test]
    fn masks_prefixed_dollar_quoted_and_commented_literals() {
        assert_eq!(
            r("ALTER ROLE a PASSWORD E'x\\'y'"),
            "ALTER ROLE a PASSWORD '***'"
        );
        assert_eq!(
            r("ALTER ROLE a PASSWORD $p$se'cret$p$;"),
            "ALTER ROLE a PASSWORD '***';"
        );
        assert_eq!(
            r("ALTER ROLE a PASSWORD /* c */ -- d\n 'pw'"),
            "ALTER ROLE a PASSWORD /* c */ -- d\n '***'"
        );
    }

    #[test]
    fn masks_mysql_forms() {
        assert_eq!(
            r("CREATE USER 'o\\'brien'@'%' IDENTIFIED BY 'pw'"),
            "CREATE USER 'o\\'brien'@'%' IDENTIFIED BY '***'"
        );
        assert_eq!(
            r("ALTER USER u IDENTIFIED WITH caching_sha2_password BY \"pw\""),
            "ALTER USER u IDENTIFIED WITH caching_sha2_password BY '***'"
        );
        assert_eq!(r("SET PASSWORD = 'pw'"), "SET PASSWORD = '***'");
        assert_eq!(
            r("SET PASSWORD FOR u = PASSWORD('pw')"),
            "SET PASSWORD FOR u = PASSWORD('***')"
        );
    }

    #[test]
    fn unterminated_literal_is_masked_to_the_end() {
        assert_eq!(
            r("ALTER ROLE a PASSWORD 'abc"),
            "ALTER ROLE a PASSWORD '***'"
        );
    }

    #[test]
    fn masks_every_password_in_a_multi_statement_string() {
        assert_eq!(
            r("ALTER ROLE a PASSWORD 'one'; ALTER ROLE b PASSWORD 'two'"),
            "ALTER ROLE a PASSWORD '***'; ALTER ROLE b PASSWORD '***'"
        );
    }
}
