//! Resolves contract declarations into checked object types.

use crate::ast::{ExtraFields, FieldsAst, Literal, Spanned, TypeAst};
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
        self.object_with(name, fields, true)
    }

    /// Resolves a field set into an object type named `name`.
    pub fn object(&mut self, name: &str, fields: &FieldsAst) -> Arc<ObjectType> {
        self.object_with(name, fields, false)
    }

    fn object_with(&mut self, name: &str, fields: &FieldsAst, per_call_allowed: bool) -> Arc<ObjectType> {
        let mut defs = Vec::with_capacity(fields.fields.len());
        let mut index = FxHashMap::default();
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
                constraints,
            });
        }
        Arc::new(ObjectType {
            name: name.to_string(),
            fields: defs,
            index,
            extra: fields.extra,
        })
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
            out.allowed = Some(seen.into_iter().map(Value::Str).collect());
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
                    (Literal::String(s), Type::String) => Value::Str(s.clone()),
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
