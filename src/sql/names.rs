//! Schema-qualifying names for policies.
//!
//! An unqualified name may resolve to any schema of any search path that
//! may be in effect, so it stands for all of them: a policy sees every
//! table the name could be, and a `forbid` on one schema cannot be walked
//! around by putting that schema later in the path. The target's catalogue
//! narrows the candidates to the schemas where the relation exists; where
//! it exists in none of them (or the catalogue is unread), every candidate
//! stays. `pg_catalog` is searched implicitly, so it is a candidate for the
//! names it can hold (all of its relations are named `pg_…`); relations
//! created `TEMP` live in `pg_temp`. Names are parser output: unquoted
//! identifiers already lower-cased, quoted ones as written.
//!
//! When the session's search path is not known at all (too many
//! possibilities), an unqualified name resolves to nothing and the
//! statement is `unknown`: a limit ends in a refusal, never in a guess.

use std::cell::Cell;

use super::catalogue::Catalogue;
use super::walk::Relation;

/// PostgreSQL's NAMEDATALEN - 1: identifiers are cut to this many bytes.
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// Resolves names against every search path that may be in effect.
#[derive(Debug)]
pub(crate) struct Resolver<'a> {
    /// The schemas of every possible path (`$user` replaced), in first
    /// appearance order; `None`: the path is unknown.
    schemas: Option<Vec<String>>,
    /// Schemas written before `pg_catalog` in some possible path: there a
    /// user object wins over a built-in of the same signature.
    before_catalog: Vec<String>,
    catalogue: &'a Catalogue,
    /// Set when an unqualified name met an unknown path.
    unresolved: Cell<bool>,
}

impl<'a> Resolver<'a> {
    /// `search_paths` empty means unknown. `user` is the upstream login,
    /// which `$user` stands for (empty: none).
    pub(crate) fn new(
        search_paths: &[Vec<String>],
        user: &str,
        catalogue: &'a Catalogue,
    ) -> Resolver<'a> {
        let schemas = (!search_paths.is_empty()).then(|| {
            let mut schemas: Vec<String> = Vec::new();
            for schema in search_paths.iter().flatten() {
                let schema = if schema == "$user" {
                    if user.is_empty() {
                        continue;
                    }
                    user
                } else {
                    schema.as_str()
                };
                if !schemas.iter().any(|s| s == schema) {
                    schemas.push(schema.to_owned());
                }
            }
            schemas
        });
        let mut before_catalog = Vec::new();
        for path in search_paths {
            if let Some(at) = path.iter().position(|s| s == "pg_catalog") {
                for schema in &path[..at] {
                    let schema = if schema == "$user" {
                        user
                    } else {
                        schema.as_str()
                    };
                    if !before_catalog.iter().any(|s| s == schema) {
                        before_catalog.push(schema.to_owned());
                    }
                }
            }
        }
        Resolver {
            schemas,
            before_catalog,
            catalogue,
            unresolved: Cell::new(false),
        }
    }

    /// Whether schema `schema` comes before `pg_catalog` in some possible
    /// path (`pg_catalog` is searched first unless a path names it).
    pub(crate) fn before_catalog(&self, schema: &str) -> bool {
        self.schemas.is_none() || self.before_catalog.iter().any(|s| s == schema)
    }

    /// Whether an unqualified name met an unknown path since the last call.
    pub(crate) fn take_unresolved(&self) -> bool {
        self.unresolved.replace(false)
    }

    pub(crate) fn catalogue(&self) -> &Catalogue {
        self.catalogue
    }

    /// The schemas an unqualified function or operator may resolve to
    /// (besides `pg_catalog`, which is always searched); `None` when the
    /// path is unknown.
    pub(crate) fn path_schemas(&self) -> Option<&[String]> {
        let schemas = self.schemas.as_deref();
        if schemas.is_none() {
            self.unresolved.set(true);
        }
        schemas
    }

    /// Every qualified name `relation` may stand for.
    pub(crate) fn resolve(&self, relation: &Relation, into: &mut Vec<String>) {
        if let Some(schema) = &relation.schema {
            into.push(format!("{schema}.{}", relation.name));
            return;
        }
        if relation.temporary {
            into.push(format!("pg_temp.{}", relation.name));
            return;
        }
        let Some(schemas) = self.schemas.as_deref() else {
            self.unresolved.set(true);
            return;
        };
        let name = &relation.name;
        let catalog = name.starts_with("pg_")
            || self.catalogue.has_relation("pg_catalog", name) == Some(true);
        let candidates = catalog.then_some("pg_catalog").into_iter().chain(
            schemas
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "pg_catalog" || !catalog),
        );
        let start = into.len();
        let mut all = Vec::new();
        for schema in candidates {
            let qualified = format!("{schema}.{name}");
            if self.catalogue.has_relation(schema, name) != Some(false) {
                into.push(qualified.clone());
            }
            all.push(qualified);
        }
        if into.len() == start {
            // Exists nowhere we know of (or unread): it may be any of them.
            into.extend(all);
        }
    }

    pub(crate) fn resolve_all(&self, relations: &[Relation]) -> Vec<String> {
        let mut out = Vec::new();
        for r in relations {
            self.resolve(r, &mut out);
        }
        out
    }

    /// A name list as the parser gives it for `DROP TABLE a.b`:
    /// `["a", "b"]`, `["b"]`, or with a database in front.
    pub(crate) fn resolve_name_list(&self, parts: &[String], into: &mut Vec<String>) {
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
            [] => return,
        };
        self.resolve(&relation, into);
    }

    /// A relation named in text, as `nextval('app.seq')` takes it:
    /// identifier rules apply inside the string.
    pub(crate) fn resolve_text(&self, text: &str, into: &mut Vec<String>) {
        self.resolve_name_list(&split_identifiers(text, '.'), into);
    }
}

/// `"$user", Public, "My Schema"` → `["$user", "public", "My Schema"]`:
/// how PostgreSQL reads a search_path value.
pub fn parse_identifier_list(text: &str) -> Vec<String> {
    split_identifiers(text, ',')
}

/// Splits `text` at `separator` outside double quotes; unquoted parts are
/// lower-cased, quoted ones kept (with `""` as a quote), and every part cut
/// to PostgreSQL's identifier length, as the server does.
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
            // PostgreSQL lower-cases only ASCII letters in identifiers.
            c => current.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(current);
    parts.retain(|p| !p.is_empty());
    for part in &mut parts {
        truncate_identifier(part);
    }
    parts
}

/// Cuts `name` to 63 bytes at a character boundary, as PostgreSQL does.
pub(crate) fn truncate_identifier(name: &mut String) {
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<Vec<String>> {
        vec![p.iter().map(|s| s.to_string()).collect()]
    }

    fn resolve(paths: &[Vec<String>], catalogue: &Catalogue, name: &str) -> Vec<String> {
        let r = Resolver::new(paths, "app", catalogue);
        let mut out = Vec::new();
        r.resolve_text(name, &mut out);
        out
    }

    #[test]
    fn search_path_text_follows_identifier_rules() {
        assert_eq!(
            parse_identifier_list(r#""$user", Public, "My ""S""""#),
            vec!["$user", "public", r#"My "S""#]
        );
        let long = "s".repeat(70);
        assert_eq!(parse_identifier_list(&long), vec!["s".repeat(63)]);
    }

    #[test]
    fn unqualified_names_stand_for_every_schema_of_the_path() {
        let unread = Catalogue::unread();
        assert_eq!(
            resolve(&path(&["$user", "public", "secret"]), &unread, "Keys"),
            vec!["app.keys", "public.keys", "secret.keys"]
        );
        assert_eq!(
            resolve(&path(&["sales"]), &unread, "pg_authid"),
            vec!["pg_catalog.pg_authid", "sales.pg_authid"]
        );
        assert_eq!(resolve(&path(&["x"]), &unread, "a.\"B\""), vec!["a.B"]);
    }

    #[test]
    fn the_catalogue_narrows_candidates_to_where_the_relation_exists() {
        let mut c = Catalogue::default();
        c.add_relation("secret", "keys");
        c.add_relation("pg_catalog", "pg_class");
        c.finish();
        let p = path(&["$user", "public", "secret"]);
        assert_eq!(resolve(&p, &c, "keys"), vec!["secret.keys"]);
        assert_eq!(resolve(&p, &c, "pg_class"), vec!["pg_catalog.pg_class"]);
        // Nowhere: every candidate.
        assert_eq!(
            resolve(&p, &c, "nosuch"),
            vec!["app.nosuch", "public.nosuch", "secret.nosuch"]
        );
    }

    #[test]
    fn an_unknown_path_resolves_nothing_and_says_so() {
        let c = Catalogue::empty();
        let r = Resolver::new(&[], "app", &c);
        let mut out = Vec::new();
        r.resolve_text("keys", &mut out);
        assert!(out.is_empty());
        assert!(r.take_unresolved());
        r.resolve_text("s.keys", &mut out);
        assert_eq!(out, vec!["s.keys"]);
        assert!(!r.take_unresolved());
    }
}
