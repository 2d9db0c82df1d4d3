//! A complete walk of a pg_query parse tree that collects what matters for
//! classification: relations, function calls (with their string-literal
//! arguments), data-modifying statements below the root, row locks, and
//! `SELECT … INTO`.
//!
//! Why serde: pg_query's protobuf types all derive `Serialize`, so driving
//! that derive with a serializer that records instead of writing visits
//! every field of every node — including node types a hand-written walker
//! would forget (a function call in a `RETURNING`, a `LIMIT`, a JSON table
//! column default…). Completeness is the point: a call we never see is a
//! write we never catch. The walk allocates only for what it records.

use std::fmt;

use serde::Serialize;
use serde::ser;

/// A relation as written: parser output, so unquoted names are already
/// lower-cased and quoted ones kept as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub schema: Option<String>,
    pub name: String,
    /// `CREATE TEMP TABLE …`: lives in `pg_temp`.
    pub temporary: bool,
}

/// A function call as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Call {
    /// The name parts: `["nextval"]`, `["pg_catalog", "nextval"]`.
    pub name: Vec<String>,
    /// Written in attribute notation (`(42).f`, `t.f`): a column unless a
    /// function of that name exists.
    pub attribute: bool,
    /// Per argument position: the string literal passed there, if it is one
    /// (possibly behind a cast, `'s'::regclass`).
    pub literal_args: Vec<Option<String>>,
    /// Named arguments (`f(a => 1)`) make positions meaningless.
    pub named_args: bool,
}

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// The type name of the root node, e.g. `SelectStmt`.
    pub root: &'static str,
    pub relations: Vec<Relation>,
    pub calls: Vec<Call>,
    /// Operators used, as name parts (`["="]`, `["s", "###"]`), including
    /// the ones a construct uses without naming them (`IN`, `CASE x`,
    /// `BETWEEN`, `JOIN … USING`).
    pub operators: Vec<Vec<String>>,
    /// Type names cast to (`x::t`, `CAST(x AS s.t)`).
    pub casts: Vec<Vec<String>>,
    /// `insert`/`update`/`delete`/`merge` found below the root node, e.g. a
    /// writable CTE or `COPY (DELETE … RETURNING …) TO STDOUT`.
    pub nested_writes: Vec<&'static str>,
    /// `FOR UPDATE`/`FOR SHARE`/… anywhere.
    pub row_locks: bool,
    /// `SELECT … INTO table` anywhere.
    pub select_into: bool,
}

fn names(field: &'static str) -> FrameData {
    FrameData::Names {
        field,
        parts: Vec::new(),
    }
}

/// Walks `node` and everything below it.
pub(crate) fn walk<T: Serialize + ?Sized>(node: &T) -> Findings {
    let mut walker = Walker::default();
    // The walker's serializer never fails; an error here would be a bug in
    // serde's derive, and the findings so far are still usable.
    let _ = node.serialize(&mut walker);
    walker.finish()
}

/// Node types that may carry a `WITH` clause, so CTE names are scoped to them.
const SCOPES: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
];

/// Data-modifying statements, as the struct names pg_query gives them.
const WRITES: &[(&str, &str)] = &[
    ("InsertStmt", "insert"),
    ("UpdateStmt", "update"),
    ("DeleteStmt", "delete"),
    ("MergeStmt", "merge"),
];

#[derive(Debug, Default)]
enum FrameData {
    #[default]
    Plain,
    Scope {
        id: u32,
    },
    With {
        scope: u32,
        ctes: u32,
    },
    Cte {
        scope: u32,
        index: u32,
    },
    RangeVar {
        schema: String,
        name: String,
        persistence: String,
    },
    Call {
        call: Call,
        args_seen: usize,
    },
    /// A node whose `field` is a list of name parts (String nodes).
    Names {
        field: &'static str,
        parts: Vec<String>,
    },
}

#[derive(Debug)]
struct Frame {
    name: &'static str,
    field: &'static str,
    data: FrameData,
}

/// A CTE definition: name `name` is the `index`th CTE of scope `scope`.
#[derive(Debug)]
struct CteDef {
    scope: u32,
    index: u32,
    name: String,
}

/// Where a relation reference sits: each enclosing scope, and if the
/// reference is inside that scope's CTE number `i`, `Some(i)`.
type ScopeChain = Vec<(u32, Option<u32>)>;

#[derive(Debug, Default)]
struct Walker {
    frames: Vec<Frame>,
    next_scope: u32,
    ctes: Vec<CteDef>,
    recursive_scopes: Vec<u32>,
    /// Relations with their scope chain (`None`: never a CTE reference, e.g.
    /// the target of an INSERT, which PostgreSQL never resolves to a CTE).
    pending: Vec<(Relation, Option<ScopeChain>)>,
    findings: Findings,
}

impl Walker {
    fn push(&mut self, name: &'static str) {
        let data = if SCOPES.contains(&name) {
            self.next_scope += 1;
            FrameData::Scope {
                id: self.next_scope,
            }
        } else {
            match name {
                "WithClause" => match self.frames.last() {
                    Some(Frame {
                        data: FrameData::Scope { id },
                        field: "with_clause",
                        ..
                    }) => FrameData::With {
                        scope: *id,
                        ctes: 0,
                    },
                    _ => FrameData::Plain,
                },
                "CommonTableExpr" => self.cte_frame(),
                "RangeVar" => FrameData::RangeVar {
                    schema: String::new(),
                    name: String::new(),
                    persistence: String::new(),
                },
                "FuncCall" => FrameData::Call {
                    call: Call::default(),
                    args_seen: 0,
                },
                "ColumnRef" => names("fields"),
                "AExpr" => names("name"),
                "SubLink" => names("oper_name"),
                "SortBy" => names("use_op"),
                "TypeName" if self.parent_is("TypeCast") => names("names"),
                "AIndirection" => names("indirection"),
                _ => FrameData::Plain,
            }
        };
        if self.frames.is_empty() && self.findings.root.is_empty() {
            self.findings.root = name;
        }
        if !self.frames.is_empty() {
            if let Some((_, kind)) = WRITES.iter().find(|(n, _)| *n == name) {
                self.findings.nested_writes.push(*kind);
            }
        }
        match name {
            "LockingClause" => self.findings.row_locks = true,
            "IntoClause" if self.parent_is("SelectStmt") => self.findings.select_into = true,
            "Node" => {
                self.count_argument();
                // A construct comparing with `=` without naming it.
                if matches!(
                    self.frames.last(),
                    Some(Frame {
                        name: "CaseExpr",
                        field: "arg",
                        ..
                    }) | Some(Frame {
                        name: "JoinExpr",
                        field: "using_clause",
                        ..
                    })
                ) {
                    self.findings.operators.push(vec!["=".into()]);
                }
            }
            "NamedArgExpr" => {
                if let Some(call) = self.enclosing_call_argument() {
                    call.named_args = true;
                }
            }
            _ => {}
        }
        self.frames.push(Frame {
            name,
            field: "",
            data,
        });
    }

    fn parent_is(&self, name: &str) -> bool {
        self.frames.last().is_some_and(|f| f.name == name)
    }

    /// A CommonTableExpr directly inside a scope's WITH clause gets the next
    /// index of that clause.
    fn cte_frame(&mut self) -> FrameData {
        let parent = self.frames.iter_mut().rev().find(|f| f.name != "Node");
        if let Some(Frame {
            data: FrameData::With { scope, ctes },
            ..
        }) = parent
        {
            let index = *ctes;
            *ctes += 1;
            FrameData::Cte {
                scope: *scope,
                index,
            }
        } else {
            FrameData::Plain
        }
    }

    /// A `Node` pushed directly into a FuncCall's `args` is the next argument.
    fn count_argument(&mut self) {
        if let Some(Frame {
            field: "args",
            data: FrameData::Call { call, args_seen },
            ..
        }) = self.frames.last_mut()
        {
            *args_seen += 1;
            call.literal_args.push(None);
        }
    }

    /// The call whose argument list the top of the stack is in, looking
    /// through the wrappers an argument may have: `Node`, a cast, a named
    /// argument.
    fn enclosing_call_argument(&mut self) -> Option<&mut Call> {
        let frame = self.frames.iter_mut().rev().find(|f| {
            !matches!(
                f.name,
                "Node" | "TypeCast" | "NamedArgExpr" | "AConst" | "String" | "Boolean"
            )
        })?;
        match frame {
            Frame {
                field: "args",
                data: FrameData::Call { call, .. },
                ..
            } => Some(call),
            _ => None,
        }
    }

    fn pop(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        match frame.data {
            FrameData::RangeVar {
                schema,
                name,
                persistence,
            } => {
                let relation = Relation {
                    schema: (!schema.is_empty()).then_some(schema),
                    name,
                    temporary: persistence == "t",
                };
                let chain = if self.is_write_target() {
                    None
                } else {
                    Some(self.scope_chain())
                };
                self.pending.push((relation, chain));
            }
            FrameData::Call { call, .. } => self.findings.calls.push(call),
            FrameData::Names { parts, .. } => self.on_names(frame.name, parts),
            _ => {}
        }
    }

    /// A list of name parts is complete.
    fn on_names(&mut self, node: &'static str, mut parts: Vec<String>) {
        match node {
            // `t.f` may be `f(t)`; a lone name is a column.
            "ColumnRef" if parts.len() >= 2 => {
                let name = parts.pop().expect("two parts");
                self.findings.calls.push(Call {
                    name: vec![name],
                    attribute: true,
                    ..Call::default()
                });
            }
            // `(x).f` may be `f(x)`.
            "AIndirection" => {
                for name in parts {
                    self.findings.calls.push(Call {
                        name: vec![name],
                        attribute: true,
                        ..Call::default()
                    });
                }
            }
            "AExpr" | "SubLink" | "SortBy" if !parts.is_empty() => {
                let range = parts.len() == 1 && parts[0].to_ascii_uppercase().contains("BETWEEN");
                if range {
                    for op in [">=", "<=", "<", ">"] {
                        self.findings.operators.push(vec![op.into()]);
                    }
                } else {
                    self.findings.operators.push(parts);
                }
            }
            "TypeName" if !parts.is_empty() => self.findings.casts.push(parts),
            _ => {}
        }
    }

    /// The relation just popped is the target of a statement (INSERT INTO,
    /// UPDATE, DELETE FROM, MERGE INTO, SELECT INTO): PostgreSQL resolves it
    /// against the catalog only, never against CTE names.
    fn is_write_target(&self) -> bool {
        match self.frames.last() {
            Some(f) if f.name == "IntoClause" => true,
            Some(f) => f.field == "relation" && WRITES.iter().any(|(name, _)| *name == f.name),
            None => false,
        }
    }

    fn scope_chain(&self) -> ScopeChain {
        let mut chain = ScopeChain::new();
        for frame in &self.frames {
            match frame.data {
                FrameData::Scope { id } => chain.push((id, None)),
                FrameData::Cte { scope, index } => {
                    if let Some(entry) = chain.iter_mut().rev().find(|(id, _)| *id == scope) {
                        entry.1 = Some(index);
                    }
                }
                _ => {}
            }
        }
        chain
    }

    fn on_str(&mut self, value: &str) {
        let Some(top) = self.frames.last_mut() else {
            return;
        };
        if top.name == "String" && top.field == "sval" {
            self.on_string_node(value);
            return;
        }
        // The catalog (database) name of a RangeVar is ignored: PostgreSQL
        // accepts only the current database there.
        match (&mut top.data, top.field) {
            (FrameData::RangeVar { schema, .. }, "schemaname") => *schema = value.to_owned(),
            (FrameData::RangeVar { name, .. }, "relname") => *name = value.to_owned(),
            (FrameData::RangeVar { persistence, .. }, "relpersistence") => {
                *persistence = value.to_owned();
            }
            (FrameData::Cte { scope, index }, "ctename") => {
                let def = CteDef {
                    scope: *scope,
                    index: *index,
                    name: value.to_owned(),
                };
                self.ctes.push(def);
            }
            _ => {}
        }
    }

    /// A `String` node: part of a function name, or a literal argument.
    fn on_string_node(&mut self, value: &str) {
        let len = self.frames.len();
        // String < Node < (ColumnRef, AExpr, …)(its name list): a name part.
        if len >= 3 && self.frames[len - 2].name == "Node" {
            let frame = &mut self.frames[len - 3];
            if let FrameData::Names { field, parts } = &mut frame.data
                && frame.field == *field
            {
                parts.push(value.to_owned());
                return;
            }
        }
        // String < Node < FuncCall(funcname): a name part.
        if len >= 3 && self.frames[len - 2].name == "Node" {
            if let Frame {
                field: "funcname",
                data: FrameData::Call { call, .. },
                ..
            } = &mut self.frames[len - 3]
            {
                call.name.push(value.to_owned());
                return;
            }
        }
        // String < AConst(val) < … < FuncCall(args): a literal argument.
        if len >= 2 && self.frames[len - 2].name == "AConst" {
            if let Some(call) = self.enclosing_call_argument() {
                if let Some(slot) = call.literal_args.last_mut() {
                    *slot = Some(value.to_owned());
                }
            }
        }
    }

    fn on_bool(&mut self, value: bool) {
        // Boolean < AConst(val) < … < FuncCall(args): a literal argument,
        // e.g. set_config's is_local.
        let len = self.frames.len();
        if len >= 2
            && self.frames[len - 1].name == "Boolean"
            && self.frames[len - 1].field == "boolval"
            && self.frames[len - 2].name == "AConst"
        {
            if let Some(slot) = self
                .enclosing_call_argument()
                .and_then(|call| call.literal_args.last_mut())
            {
                *slot = Some(value.to_string());
            }
            return;
        }
        if let Some(Frame {
            field: "recursive",
            data: FrameData::With { scope, .. },
            ..
        }) = self.frames.last()
        {
            if value {
                self.recursive_scopes.push(*scope);
            }
        }
    }

    /// Drops references that name a CTE in scope, keeping everything else.
    fn finish(mut self) -> Findings {
        for (relation, chain) in std::mem::take(&mut self.pending) {
            let is_cte = match (&relation.schema, chain) {
                (None, Some(chain)) => chain.iter().any(|(scope, inside)| {
                    let recursive = self.recursive_scopes.contains(scope);
                    self.ctes.iter().any(|def| {
                        def.scope == *scope
                            && def.name == relation.name
                            // A non-recursive CTE sees only the ones before it.
                            && (recursive || inside.is_none_or(|i| def.index < i))
                    })
                }),
                _ => false,
            };
            if !is_cte {
                self.findings.relations.push(relation);
            }
        }
        self.findings
    }
}

/// The walker's serializer never fails; serde still wants an error type.
#[derive(Debug)]
pub(crate) struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

type Done = Result<(), WalkError>;

impl ser::Serializer for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Done {
        self.on_bool(v);
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Done {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Done {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Done {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Done {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Done {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Done {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Done {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Done {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Done {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Done {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Done {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Done {
        self.on_str(v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Done {
        Ok(())
    }
    fn serialize_none(self) -> Done {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Done {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Done {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, WalkError> {
        self.push(name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        // Not produced by pg_query's types; fields still get walked.
        self.push("");
        Ok(self)
    }
}

/// Sequences and tuples: walk every element.
macro_rules! walk_elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Walker {
            type Ok = ();
            type Error = WalkError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
                value.serialize(&mut **self)
            }
            fn end(self) -> Done {
                Ok(())
            }
        }
    )*};
}

walk_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Structs: note which field is being walked, pop the frame at the end.
macro_rules! walk_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Walker {
            type Ok = ();
            type Error = WalkError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Done {
                if let Some(top) = self.frames.last_mut() {
                    top.field = key;
                }
                value.serialize(&mut **self)
            }
            fn end(self) -> Done {
                self.pop();
                Ok(())
            }
        }
    )*};
}

walk_fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Done {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(&mut **self)
    }
    fn end(self) -> Done {
        Ok(())
    }
}
