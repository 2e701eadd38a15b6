//! Resolves contract declarations into checked object types.

use crate::ast::{ConstraintsAst, ExtraFields, FieldAst, FieldsAst, Literal, Spanned, TypeAst};
use crate::diagnostics::Diagnostic;
use crate::ir::Lazy;
use crate::source::{SourceFile, Span};
use crate::types::{Constraints, FieldDef, ObjectType, Type};
use crate::value::Value;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Longest regex source accepted, and the compiled-size cap, so a policy
/// cannot make the loader or a request check slow.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a regex written in a policy, with a size cap.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => {
                let last = s.lines().last().unwrap_or("invalid syntax").trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            }
            regex::Error::CompiledTooBig(_) => "the pattern is too large".to_string(),
            other => other.to_string(),
        })
}

/// Compiles the pattern of a `glob` call: `*` and `?` stop at `/`, `**`
/// crosses directories.
pub(crate) fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    glob_builder(pattern)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// The options of every policy glob (`glob`, `mayMatch`): `*` and `?`
/// stop at `/`.
pub(crate) fn glob_builder(pattern: &str) -> globset::GlobBuilder<'_> {
    let mut builder = globset::GlobBuilder::new(pattern);
    builder.literal_separator(true);
    builder
}

pub(crate) struct ContractResolver<'d> {
    pub file: SourceFile,
    pub diags: &'d mut Vec<Diagnostic>,
}

impl ContractResolver<'_> {
    /// Resolves the top-level field set of an input, the actor or the
    /// snapshot, where fields may be `per_call`.
    pub fn request_object(&mut self, name: &str, fields: &FieldsAst) -> Arc<ObjectType> {
        self.object_with(name, fields, Place::RequestTop).0
    }

    /// Resolves a field set into an object type named `name`.
    pub fn object(&mut self, name: &str, fields: &FieldsAst) -> Arc<ObjectType> {
        self.object_with(name, fields, Place::Nested).0
    }

    /// Resolves the actor contract, with the names of the fields it marks
    /// `bound: true`, sorted. With `reserve_chain` (native policies), the
    /// reserved `chain` is part of it whether declared or not.
    pub fn actor_object(&mut self, fields: &FieldsAst, reserve_chain: bool) -> (Arc<ObjectType>, Vec<String>) {
        self.object_with("actor", fields, Place::Actor { reserve_chain })
    }

    fn object_with(&mut self, name: &str, fields: &FieldsAst, place: Place) -> (Arc<ObjectType>, Vec<String>) {
        let per_call_allowed = place != Place::Nested;
        let reserve_chain = place == Place::Actor { reserve_chain: true };
        let mut defs = Vec::with_capacity(fields.fields.len() + 1);
        let mut index = FxHashMap::default();
        let mut bound = Vec::new();
        for f in &fields.fields {
            if index.contains_key(&f.name.value) {
                self.diags.push(Diagnostic::error(
                    &self.file,
                    f.name.span,
                    format!("field `{}` is declared twice in {name}", f.name.value),
                ));
                continue;
            }
            if f.per_call && !per_call_allowed {
                self.diags.push(
                    Diagnostic::error(
                        &self.file,
                        f.name.span,
                        format!("`per_call` cannot be set on field `{}` of {name}", f.name.value),
                    )
                    .with_help(
                        "only top-level fields of an action's input, the actor and the snapshot name one attempt; \
                         an approval covers the rest of the request",
                    ),
                );
            }
            if let Some(span) = f.bound {
                if matches!(place, Place::Actor { .. }) {
                    bound.push(f.name.value.clone());
                } else {
                    self.diags.push(
                        Diagnostic::error(
                            &self.file,
                            span,
                            format!("`bound` cannot be set on field `{}` of {name}", f.name.value),
                        )
                        .with_help(
                            "`bound: true` applies to top-level fields of `contracts.actor`: \
                             the fields a request's credential sets",
                        ),
                    );
                }
            }
            if reserve_chain && f.name.value == CHAIN_FIELD {
                self.check_reserved_chain(f);
                index.insert(f.name.value.clone(), defs.len());
                defs.push(chain_field());
                continue;
            }
            if f.type_omitted {
                self.diags.push(Diagnostic::error(
                    &self.file,
                    f.ty.span,
                    format!("field `{}` has no `type`", f.name.value),
                ));
                continue;
            }
            let path = format!("{name}.{}", f.name.value);
            let ty = self.ty(&path, &f.ty);
            let constraints = self.constraints(&f.name.value, &ty, &f.ty, &f.constraints);
            index.insert(f.name.value.clone(), defs.len());
            defs.push(FieldDef {
                name: f.name.value.clone(),
                ty,
                optional: f.optional,
                sensitive: f.sensitive,
                per_call: f.per_call && per_call_allowed,
                empty_when_absent: false,
                constraints,
            });
        }
        if reserve_chain && !index.contains_key(CHAIN_FIELD) {
            index.insert(CHAIN_FIELD.to_string(), defs.len());
            defs.push(chain_field());
        }
        bound.sort_unstable();
        let object = Arc::new(ObjectType {
            name: name.to_string(),
            fields: defs,
            index,
            extra: fields.extra,
        });
        (object, bound)
    }

    /// Refuses a declaration of the reserved `actor.chain` that says more
    /// than `bound: true` (and a description): its type is the language's,
    /// so a rule reads it the same in every policy, and what fills it (the
    /// credential's chain) fits it.
    fn check_reserved_chain(&mut self, f: &FieldAst) {
        let problem = if !f.type_omitted && !Self::is_chain_type(&f.ty) {
            Some((f.ty.span, "its type is not `list` of `{kind: string, id: string}`"))
        } else if f.optional {
            Some((
                f.name.span,
                "it cannot be `optional` (absent or null, it is the empty list)",
            ))
        } else if f.sensitive {
            Some((f.name.span, "it cannot be `sensitive`"))
        } else if f.per_call {
            Some((f.name.span, "it cannot be `per_call`"))
        } else if !constraints_ast_empty(&f.constraints) {
            Some((f.name.span, "it takes no constraints"))
        } else {
            None
        };
        if let Some((span, why)) = problem {
            self.diags.push(
                Diagnostic::error(
                    &self.file,
                    span,
                    format!("`actor.chain` is reserved for the delegation chain: {why}"),
                )
                .with_help(
                    "rules read `actor.chain` (a list of `{kind: string, id: string}`, from the person down to \
                     the acting agent) whether or not the contract names it; the contract may only require it \
                     set by the credential: `chain: {bound: true}`",
                ),
            );
        }
    }

    /// Whether a written type is exactly the reserved chain's: a list of
    /// objects with the two required string fields `kind` and `id`, no
    /// constraints, undeclared fields refused.
    fn is_chain_type(ty: &Spanned<TypeAst>) -> bool {
        let TypeAst::List(item) = &ty.value else {
            return false;
        };
        let TypeAst::Object(link) = &item.ty.value else {
            return false;
        };
        if !constraints_ast_empty(&item.constraints) || link.extra != ExtraFields::Reject || link.fields.len() != 2 {
            return false;
        }
        let plain_string = |f: &FieldAst| {
            matches!(f.ty.value, TypeAst::String)
                && !f.type_omitted
                && !f.optional
                && !f.sensitive
                && !f.per_call
                && f.bound.is_none()
                && constraints_ast_empty(&f.constraints)
        };
        ["kind", "id"]
            .iter()
            .all(|n| link.fields.iter().any(|f| f.name.value == *n && plain_string(f)))
    }

    fn ty(&mut self, path: &str, ty: &Spanned<TypeAst>) -> Type {
        match &ty.value {
            TypeAst::String | TypeAst::Enum(_) => Type::String,
            TypeAst::Int => Type::Int,
            TypeAst::Number => Type::Number,
            TypeAst::Bool => Type::Bool,
            TypeAst::Timestamp => Type::Timestamp,
            TypeAst::Duration => Type::Duration,
            TypeAst::List(elem) => Type::List(Box::new(self.ty(&format!("{path}[]"), &elem.ty))),
            TypeAst::Map(elem) => Type::Map(Box::new(self.ty(&format!("{path}[]"), &elem.ty))),
            TypeAst::Object(fields) => Type::Object(self.object(path, fields)),
        }
    }

    fn constraints(
        &mut self,
        field: &str,
        ty: &Type,
        ast_ty: &Spanned<TypeAst>,
        c: &crate::ast::ConstraintsAst,
    ) -> Constraints {
        let mut out = Constraints::default();
        let numeric = matches!(ty, Type::Int | Type::Number);
        let has_len = matches!(ty, Type::String | Type::List(_) | Type::Map(_));
        for (bound, slot) in [(&c.min, &mut out.min), (&c.max, &mut out.max)] {
            if let Some(b) = bound {
                if numeric {
                    *slot = Some(b.value);
                } else {
                    self.mismatch(b.span, "`min`/`max`", field, ty, "int or number fields");
                }
            }
        }
        if let (Some(lo), Some(hi)) = (&c.min, &c.max) {
            if lo.value.cmp_exact(hi.value) == std::cmp::Ordering::Greater {
                self.diags.push(Diagnostic::error(
                    &self.file,
                    hi.span,
                    format!("`max` ({}) is below `min` ({}) for field `{field}`", hi.value, lo.value),
                ));
            }
        }
        for (bound, slot) in [(&c.min_len, &mut out.min_len), (&c.max_len, &mut out.max_len)] {
            if let Some(b) = bound {
                if has_len {
                    *slot = Some(b.value);
                } else {
                    self.mismatch(b.span, "`min_len`/`max_len`", field, ty, "string, list and map fields");
                }
            }
        }
        if let (Some(lo), Some(hi)) = (&c.min_len, &c.max_len) {
            if lo.value > hi.value {
                self.diags.push(Diagnostic::error(
                    &self.file,
                    hi.span,
                    format!(
                        "`max_len` ({}) is below `min_len` ({}) for field `{field}`",
                        hi.value, lo.value
                    ),
                ));
            }
        }
        if let Some(p) = &c.pattern {
            if !matches!(ty, Type::String) {
                self.mismatch(p.span, "`pattern`", field, ty, "string fields");
            } else {
                match compile_regex(&p.value) {
                    Ok(re) => out.pattern = Some(Lazy::compiled(p.value.clone(), re)),
                    Err(e) => self.diags.push(
                        Diagnostic::error(
                            &self.file,
                            p.span,
                            format!("invalid regular expression in `pattern` of field `{field}`: {e}"),
                        )
                        .with_help("patterns use Rust `regex` syntax (no look-around or back-references)"),
                    ),
                }
            }
        }
        if let TypeAst::Enum(values) = &ast_ty.value {
            out.is_enum = true;
            let mut seen = Vec::new();
            for v in values {
                if seen.contains(&v.value) {
                    self.diags.push(Diagnostic::error(
                        &self.file,
                        v.span,
                        format!("enum value `{}` is listed twice", v.value),
                    ));
                }
                seen.push(v.value.clone());
            }
            out.allowed = Some(seen.into_iter().map(|s| Value::Str(s.into())).collect());
        }
        if let Some(allowed) = &c.allowed {
            if out.is_enum {
                self.diags.push(Diagnostic::error(
                    &self.file,
                    allowed.span,
                    "an enum already lists its `values`; drop `allowed`",
                ));
            }
            let mut values = Vec::new();
            for lit in &allowed.value {
                let v = match (lit, ty) {
                    (Literal::String(s), Type::String) => Value::Str(s.into()),
                    (Literal::Int(i), Type::Int) => Value::Int(*i),
                    (Literal::Int(i), Type::Number) => Value::Float(*i as f64),
                    (Literal::Float(f), Type::Number) => Value::Float(*f),
                    (Literal::Bool(b), Type::Bool) => Value::Bool(*b),
                    _ => {
                        // As the policy would spell it: `"1"`, `1`, `true`.
                        let shown = match lit {
                            Literal::String(s) => format!("{s:?}"),
                            Literal::Int(i) => i.to_string(),
                            Literal::Float(f) => f.to_string(),
                            Literal::Bool(b) => b.to_string(),
                        };
                        self.diags.push(Diagnostic::error(
                            &self.file,
                            allowed.span,
                            format!("`allowed` holds {shown}, which is not a value of type {ty} (field `{field}`)"),
                        ));
                        continue;
                    }
                };
                values.push(v);
            }
            if !out.is_enum {
                out.allowed = Some(values);
            }
        }
        // The elements of a list or map, checked as fields are, at any depth.
        if let (TypeAst::List(item) | TypeAst::Map(item), Type::List(elem_ty) | Type::Map(elem_ty)) =
            (&ast_ty.value, ty)
        {
            let items = self.constraints(&format!("{field}[]"), elem_ty, &item.ty, &item.constraints);
            if !items.is_empty() {
                out.items = Some(Box::new(items));
            }
        }
        out
    }

    fn mismatch(&mut self, span: Span, what: &str, field: &str, ty: &Type, applies: &str) {
        self.diags.push(
            Diagnostic::error(
                &self.file,
                span,
                format!("{what} does not apply to field `{field}` of type {ty}"),
            )
            .with_help(format!("{what} applies to {applies}")),
        );
    }
}

/// The reserved actor field: the delegation chain.
pub(crate) const CHAIN_FIELD: &str = "chain";

/// Where a field set sits, for what its fields may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The top level of an input or the snapshot (`per_call` allowed).
    RequestTop,
    /// The top level of the actor (`per_call`, `bound`; the reserved
    /// `chain` when `reserve_chain`).
    Actor { reserve_chain: bool },
    /// Inside a field.
    Nested,
}

/// True when no constraint is written.
fn constraints_ast_empty(c: &ConstraintsAst) -> bool {
    c.min.is_none()
        && c.max.is_none()
        && c.min_len.is_none()
        && c.max_len.is_none()
        && c.pattern.is_none()
        && c.allowed.is_none()
}

/// The reserved `actor.chain`: a list of links `{kind: string, id:
/// string}` (undeclared fields refused), the empty list when absent or
/// null.
pub(crate) fn chain_field() -> FieldDef {
    let link_field = |name: &str| FieldDef {
        name: name.to_string(),
        ty: Type::String,
        optional: false,
        sensitive: false,
        per_call: false,
        empty_when_absent: false,
        constraints: Constraints::default(),
    };
    let fields = vec![link_field("kind"), link_field("id")];
    let index = fields.iter().enumerate().map(|(i, f)| (f.name.clone(), i)).collect();
    let link = ObjectType {
        name: "actor.chain[]".to_string(),
        fields,
        index,
        extra: ExtraFields::Reject,
    };
    FieldDef {
        name: CHAIN_FIELD.to_string(),
        ty: Type::List(Box::new(Type::Object(Arc::new(link)))),
        optional: false,
        sensitive: false,
        per_call: false,
        empty_when_absent: true,
        constraints: Constraints::default(),
    }
}

/// The actor of a native policy that declares no actor contract: the
/// reserved `chain`, every other field dropped (rules cannot read what no
/// contract declares).
pub(crate) fn open_actor() -> Arc<ObjectType> {
    let mut index = FxHashMap::default();
    index.insert(CHAIN_FIELD.to_string(), 0);
    Arc::new(ObjectType {
        name: "actor".to_string(),
        fields: vec![chain_field()],
        index,
        extra: ExtraFields::Ignore,
    })
}

/// An object type with no fields that drops whatever it is given: the actor
/// or snapshot of a policy that declares none.
pub(crate) fn open_empty(name: &str) -> Arc<ObjectType> {
    Arc::new(ObjectType {
        name: name.to_string(),
        fields: Vec::new(),
        index: FxHashMap::default(),
        extra: ExtraFields::Ignore,
    })
}
