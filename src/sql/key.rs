//! Cache keys for classification results. Applications repeat the same
//! statements with different numbers (`... WHERE id = 41231`), so numeric
//! literals are blanked out of the key. This is only safe where nothing in
//! the text can hide a number that matters to classification, so the rule
//! is deliberately blunt: any quote, dollar sign, backslash or comment
//! marker and the text is its own key.

/// A key under which `sql`'s classification may be cached: two texts with
/// the same key classify identically. A key that differs from `sql` is
/// built in `scratch`, which the caller keeps so that repeated lookups do
/// not allocate.
pub fn classification_key<'a>(sql: &'a str, scratch: &'a mut String) -> &'a str {
    let bytes = sql.as_bytes();
    // Anything that may hide text makes the text its own key. Every
    // statement passes here, so the look is one table lookup per byte
    // without a branch; only a text with `-` or `*` gets the exact look for
    // `--` and `/*`.
    let seen = bytes
        .iter()
        .fold(0, |seen, &b| seen | BYTE_CLASS[usize::from(b)]);
    if seen & HIDES != 0
        || seen & DIGIT == 0
        || (seen & MARK != 0 && bytes.windows(2).any(|w| w == b"--" || w == b"/*"))
    {
        return sql;
    }
    let out = scratch;
    out.clear();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let starts_number = b.is_ascii_digit() && (i == 0 || separates(bytes[i - 1]));
        if !starts_number {
            // Copy the whole run up to the next byte that could start a
            // number, keeping multi-byte characters intact.
            let next = bytes[i + 1..]
                .iter()
                .position(|c| c.is_ascii_digit())
                .map_or(bytes.len(), |p| i + 1 + p);
            out.push_str(&sql[i..next]);
            i = next;
            continue;
        }
        let end = bytes[i..]
            .iter()
            .position(|c| !c.is_ascii_digit())
            .map_or(bytes.len(), |p| i + p);
        if end == bytes.len() || separates(bytes[end]) {
            out.push('0');
        } else {
            // `1e5`, `12abc`: not a plain integer, keep it as written.
            out.push_str(&sql[i..end]);
        }
        i = end;
    }
    out
}

const HIDES: u8 = 1;
const DIGIT: u8 = 2;
const MARK: u8 = 4;

/// What each byte may be to [`classification_key`]: a quote, dollar sign,
/// backslash or backtick (`HIDES`), a digit, or half of a comment marker.
const BYTE_CLASS: [u8; 256] = {
    let mut class = [0; 256];
    let mut b = 0;
    while b < 256 {
        class[b] = match b as u8 {
            b'\'' | b'"' | b'$' | b'\\' | b'`' => HIDES,
            b'0'..=b'9' => DIGIT,
            b'-' | b'*' => MARK,
            _ => 0,
        };
        b += 1;
    }
    class
};

/// Bytes around a plain integer literal; letters, digits, `_` and `.` are
/// not (they make it part of an identifier or another kind of number).
fn separates(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | b'('
            | b')'
            | b','
            | b'='
            | b'<'
            | b'>'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b';'
            | b'%'
    )
}

#[cfg(test)]
mod tests {
    fn classification_key(sql: &str) -> String {
        super::classification_key(sql, &mut String::new()).to_owned()
    }

    #[test]
    fn integers_are_blanked() {
        assert_eq!(
            classification_key("SELECT abalance FROM pgbench_accounts WHERE aid = 41231;"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = 0;"
        );
        assert_eq!(
            classification_key("select * from t limit 10 offset 20"),
            "select * from t limit 0 offset 0"
        );
    }

    #[test]
    fn digits_in_names_and_other_numbers_are_kept() {
        assert_eq!(
            classification_key("select * from t1 where x = 1.5"),
            "select * from t1 where x = 1.5"
        );
        assert_eq!(classification_key("select 1e5, a_2"), "select 1e5, a_2");
    }

    #[test]
    fn anything_that_could_hide_text_keeps_the_whole_text() {
        for sql in [
            "select set_config('role', 'r1', false)",
            "select \"t1\" from t where id = 1",
            "select $$1$$",
            "select 1 -- 2",
            "select 1 /* 2 */",
            "select E'\\x31'",
            // Past the first 32 bytes, and a marker across their boundary.
            "select a, b, c, d, e, f from t1 where x = 'a1'",
            "select aaaaaaaaaaaaaaaaaaaaa 1 -- 2",
        ] {
            assert_eq!(classification_key(sql), sql);
        }
        assert_eq!(
            classification_key("select a - 1, b * 2 from t"),
            "select a - 0, b * 0 from t"
        );
    }

    /// The MySQL front end keys its verdicts the same way: its quoted
    /// names, hex literals and executable comments keep the whole text.
    #[test]
    fn mysql_texts() {
        assert_eq!(
            classification_key("SELECT c FROM sbtest1 WHERE id BETWEEN 4987 AND 5086"),
            "SELECT c FROM sbtest1 WHERE id BETWEEN 0 AND 0"
        );
        for sql in [
            "select * from `t 1` where id = 1",
            "select /*!50000 1 */",
            "select x'31', 1",
        ] {
            assert_eq!(classification_key(sql), sql);
        }
        assert_eq!(classification_key("select 0x1f, 1"), "select 0x1f, 0");
    }
}
