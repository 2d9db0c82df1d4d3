//! What the classifier knows of one target's catalogue: which relations
//! exist where, and every object through which user-defined code can run
//! (functions, operators, types whose input or casts run code, views and
//! row-level policies that call such code). Read from the server by the
//! front end; the classifier only looks things up.
//!
//! Deny by default: a catalogue that was never read answers "maybe" to
//! every question about user code, so every call counts as user code.

use std::collections::{HashMap, HashSet};

/// One target's catalogue, as of one reading.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// False for a catalogue that could not be read: nothing is known.
    read: bool,
    /// Relation name → the schemas holding a relation of that name.
    relations: HashMap<String, Vec<String>>,
    /// Function (and aggregate, procedure) name → the user-defined ones.
    functions: HashMap<String, Vec<UserObject>>,
    /// Operator symbol → the user-defined ones.
    operators: HashMap<String, Vec<UserObject>>,
    /// Type name → schemas, for types whose input or casts run user code
    /// (constrained domains and what is built on them, types with
    /// user-defined casts).
    coded_types: HashMap<String, Vec<UserObject>>,
    /// The same types by OID, for protocol parameter types.
    coded_type_oids: HashSet<u32>,
    /// `schema.name` of relations whose reading runs code the gateway
    /// cannot see (views calling it, row-level policies calling it).
    coded_relations: HashSet<String>,
}

/// A user-defined function or operator of some name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserObject {
    pub schema: String,
    /// It takes exactly the argument types of a built-in of the same name:
    /// a call that fits it fits the built-in too, and the built-in wins
    /// unless this one's schema comes before `pg_catalog` in the path.
    pub same_as_builtin: bool,
}

/// Whether an object of some name can run user code, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCode {
    /// Nothing user-defined of that name.
    None,
    /// User-defined objects of that name.
    In(Vec<UserObject>),
    /// The catalogue was never read: it may be anything.
    Unknown,
}

impl Catalogue {
    /// A catalogue that was never read: every lookup answers `Unknown`.
    pub fn unread() -> Catalogue {
        Catalogue::default()
    }

    /// A read catalogue with nothing user-defined in it: what offline tools
    /// (`policy explain`) assume.
    pub fn empty() -> Catalogue {
        Catalogue {
            read: true,
            ..Catalogue::default()
        }
    }

    pub fn is_read(&self) -> bool {
        self.read
    }

    pub fn add_relation(&mut self, schema: &str, name: &str) {
        push(&mut self.relations, name, schema);
    }

    pub fn add_function(&mut self, schema: &str, name: &str, same_as_builtin: bool) {
        push_object(&mut self.functions, name, schema, same_as_builtin);
    }

    pub fn add_operator(&mut self, schema: &str, symbol: &str, same_as_builtin: bool) {
        push_object(&mut self.operators, symbol, schema, same_as_builtin);
    }

    pub fn add_coded_type(&mut self, schema: &str, name: &str, oid: u32) {
        push_object(&mut self.coded_types, name, schema, false);
        self.coded_type_oids.insert(oid);
    }

    pub fn add_coded_relation(&mut self, schema: &str, name: &str) {
        self.coded_relations.insert(format!("{schema}.{name}"));
    }

    /// Whether relation `name` exists in `schema`; `None` when unread.
    pub fn has_relation(&self, schema: &str, name: &str) -> Option<bool> {
        self.read.then(|| {
            self.relations
                .get(name)
                .is_some_and(|s| s.iter().any(|s| s == schema))
        })
    }

    /// Whether reading `schema.name` runs code the gateway cannot see.
    pub fn relation_runs_code(&self, qualified: &str) -> bool {
        !self.read || self.coded_relations.contains(qualified)
    }

    pub fn function(&self, name: &str) -> UserCode {
        self.lookup(&self.functions, name)
    }

    pub fn operator(&self, symbol: &str) -> UserCode {
        self.lookup(&self.operators, symbol)
    }

    pub fn coded_type(&self, name: &str) -> UserCode {
        self.lookup(&self.coded_types, name)
    }

    /// Whether a value of type `oid` runs user code on its way in (a
    /// protocol parameter declared of that type). Unread: only built-in
    /// types are known not to.
    pub fn type_oid_runs_code(&self, oid: u32) -> bool {
        /// PostgreSQL's FirstNormalObjectId: below it, built-ins only.
        const FIRST_NORMAL_OID: u32 = 16384;
        if self.read {
            self.coded_type_oids.contains(&oid)
        } else {
            oid >= FIRST_NORMAL_OID
        }
    }

    fn lookup(&self, map: &HashMap<String, Vec<UserObject>>, name: &str) -> UserCode {
        if !self.read {
            return UserCode::Unknown;
        }
        match map.get(name) {
            Some(objects) => UserCode::In(objects.clone()),
            None => UserCode::None,
        }
    }

    /// Marks the catalogue as completely read.
    pub fn finish(&mut self) {
        self.read = true;
        for schemas in self.relations.values_mut() {
            schemas.sort();
            schemas.dedup();
        }
    }
}

fn push_object(
    map: &mut HashMap<String, Vec<UserObject>>,
    name: &str,
    schema: &str,
    same_as_builtin: bool,
) {
    let objects = map.entry(name.to_owned()).or_default();
    match objects.iter_mut().find(|o| o.schema == schema) {
        // One overload that differs from the built-ins is enough.
        Some(o) => o.same_as_builtin &= same_as_builtin,
        None => objects.push(UserObject {
            schema: schema.to_owned(),
            same_as_builtin,
        }),
    }
}

fn push(map: &mut HashMap<String, Vec<String>>, name: &str, schema: &str) {
    map.entry(name.to_owned())
        .or_default()
        .push(schema.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unread_catalogue_knows_nothing_and_says_so() {
        let c = Catalogue::unread();
        assert_eq!(c.function("lower"), UserCode::Unknown);
        assert_eq!(c.has_relation("public", "t"), None);
        assert!(c.relation_runs_code("public.v"));
        assert!(c.type_oid_runs_code(16390));
        assert!(!c.type_oid_runs_code(23));
    }

    #[test]
    fn a_read_catalogue_answers_from_what_it_holds() {
        let mut c = Catalogue::default();
        c.add_function("public", "lower", true);
        c.add_function("public", "lower", false);
        c.add_relation("s", "t");
        c.add_coded_type("s", "d", 16400);
        c.finish();
        assert_eq!(
            c.function("lower"),
            UserCode::In(vec![UserObject {
                schema: "public".into(),
                same_as_builtin: false
            }])
        );
        assert_eq!(c.function("upper"), UserCode::None);
        assert_eq!(c.has_relation("s", "t"), Some(true));
        assert_eq!(c.has_relation("public", "t"), Some(false));
        assert!(c.type_oid_runs_code(16400));
        assert!(!c.type_oid_runs_code(16401));
    }
}
