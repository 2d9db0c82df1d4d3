//! Schema-qualifying relation names for policies.
//!
//! The gateway does not know the catalog, so an unqualified name resolves
//! to the first search-path entry that is not `$user` — where PostgreSQL
//! would look first for an existing table, give or take a table of that
//! name in the user's own schema or in `pg_temp`. Two refinements close the
//! obvious holes: names starting with `pg_` resolve to `pg_catalog` (which
//! PostgreSQL searches first, implicitly, so `SELECT * FROM pg_authid` is
//! the catalog's), and relations created `TEMP` live in `pg_temp`. Names
//! are parser output: unquoted identifiers already lower-cased, quoted ones
//! as written.

use super::walk::Relation;

/// Resolves names against one search path.
#[derive(Debug)]
pub(crate) struct Resolver {
    default_schema: String,
}

impl Resolver {
    pub(crate) fn new(search_path: &[String]) -> Resolver {
        let default_schema = search_path
            .iter()
            .find(|s| s.as_str() != "$user")
            .or_else(|| search_path.first())
            .cloned()
            .unwrap_or_else(|| "public".into());
        Resolver { default_schema }
    }

    pub(crate) fn resolve(&self, relation: &Relation) -> String {
        let schema = match &relation.schema {
            Some(schema) => schema.as_str(),
            None if relation.temporary => "pg_temp",
            None if relation.name.starts_with("pg_") => "pg_catalog",
            None => self.default_schema.as_str(),
        };
        format!("{schema}.{}", relation.name)
    }

    pub(crate) fn resolve_all(&self, relations: &[Relation]) -> Vec<String> {
        relations.iter().map(|r| self.resolve(r)).collect()
    }

    /// A name list as the parser gives it for `DROP TABLE a.b`:
    /// `["a", "b"]`, `["b"]`, or with a database in front.
    pub(crate) fn resolve_name_list(&self, parts: &[String]) -> Option<String> {
        let relation = match parts {
            [name] => Relation {
                schema: None,
                name: name.clone(),
                temporary: false,
            },
            [.., schema, name] => Relation {
                schema: Some(schema.clone()),
                name: name.clone(),
                temporary: false,
            },
            [] => return None,
        };
        Some(self.resolve(&relation))
    }

    /// A relation named in text, as `nextval('app.seq')` takes it:
    /// identifier rules apply inside the string.
    pub(crate) fn resolve_text(&self, text: &str) -> Option<String> {
        self.resolve_name_list(&split_identifiers(text, '.'))
    }
}

/// `"$user", Public, "My Schema"` → `["$user", "public", "My Schema"]`:
/// how PostgreSQL reads a search_path value.
pub(crate) fn parse_identifier_list(text: &str) -> Vec<String> {
    split_identifiers(text, ',')
}

/// Splits `text` at `separator` outside double quotes; unquoted parts are
/// lower-cased, quoted ones kept (with `""` as a quote).
fn split_identifiers(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            c if c == separator && !quoted => parts.push(std::mem::take(&mut current)),
            c if quoted => current.push(c),
            // Unquoted identifiers hold no whitespace: it only separates.
            c if c.is_whitespace() => {}
            c => current.extend(c.to_lowercase()),
        }
    }
    parts.push(current);
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_text_follows_identifier_rules() {
        assert_eq!(
            parse_identifier_list(r#""$user", Public, "My ""S""""#),
            vec!["$user", "public", r#"My "S""#]
        );
    }

    #[test]
    fn unqualified_names_resolve_to_the_first_schema_that_is_not_user() {
        let r = Resolver::new(&["$user".into(), "sales".into(), "public".into()]);
        assert_eq!(r.resolve_text("Orders").as_deref(), Some("sales.orders"));
        assert_eq!(
            r.resolve_text("pg_authid").as_deref(),
            Some("pg_catalog.pg_authid")
        );
        assert_eq!(r.resolve_text("a.\"B\"").as_deref(), Some("a.B"));
    }
}
