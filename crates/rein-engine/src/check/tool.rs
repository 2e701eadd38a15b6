//! An action's `tool:` facts: constants typed from what they are, read by
//! rules through the root `tool`.

use crate::ast::{ConstAst, Spanned};
use crate::diagnostics::Diagnostic;
use crate::ir::ToolFacts;
use crate::source::SourceFile;
use crate::types::{Constraints, FieldDef, ObjectType, Type};
use crate::value::Value;
use rustc_hash::FxHashMap;
use std::sync::Arc;

type Fields = [(Spanned<String>, Spanned<ConstAst>)];

/// Types and lays out the facts of action `action`; every problem is a
/// diagnostic and gives `None`.
pub(crate) fn resolve(
    file: &SourceFile,
    action: &str,
    fields: &Fields,
    diags: &mut Vec<Diagnostic>,
) -> Option<ToolFacts> {
    let owner = format!("the `tool` facts of action `{action}`");
    let ty = object_type(file, &owner, "tool", fields, diags)?;
    let values = fields
        .iter()
        .zip(&ty.fields)
        .map(|((_, c), f)| value(&c.value, &f.ty))
        .collect();
    Some(ToolFacts { ty, values })
}

fn object_type(
    file: &SourceFile,
    owner: &str,
    path: &str,
    fields: &Fields,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<ObjectType>> {
    let mut defs = Vec::with_capacity(fields.len());
    let mut index = FxHashMap::default();
    let mut ok = true;
    for (name, c) in fields {
        match const_type(file, owner, &format!("{path}.{}", name.value), c, diags) {
            Some(ty) => {
                index.insert(name.value.clone(), defs.len());
                defs.push(FieldDef {
                    name: name.value.clone(),
                    ty,
                    optional: false,
                    sensitive: false,
                    per_call: false,
                    empty_when_absent: false,
                    constraints: Constraints::default(),
                });
            }
            None => ok = false,
        }
    }
    ok.then(|| {
        Arc::new(ObjectType {
            name: owner.to_string(),
            fields: defs,
            index,
            extra: crate::ast::ExtraFields::Reject,
        })
    })
}

/// The type of one constant: the elements of a list must share one (ints
/// and numbers make numbers; mappings with the same keys make one object
/// type).
fn const_type(
    file: &SourceFile,
    owner: &str,
    path: &str,
    c: &Spanned<ConstAst>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Type> {
    Some(match &c.value {
        ConstAst::String(_) => Type::String,
        ConstAst::Bool(_) => Type::Bool,
        ConstAst::Int(_) => Type::Int,
        ConstAst::Float(_) => Type::Number,
        ConstAst::Object(fields) => Type::Object(object_type(file, owner, path, fields, diags)?),
        ConstAst::List(items) => {
            let mut elem = Type::Dyn;
            let mut first: Option<Type> = None;
            for (i, item) in items.iter().enumerate() {
                let ty = const_type(file, owner, &format!("{path}[{i}]"), item, diags)?;
                match unify(&elem, &ty) {
                    Some(u) => elem = u,
                    None => {
                        diags.push(
                            Diagnostic::error(
                                file,
                                item.span,
                                format!(
                                    "the items of `{path}` must all have one type, but this one is {ty} and the first is {}",
                                    first.as_ref().unwrap_or(&elem)
                                ),
                            )
                            .with_help("rules read a list of one type; write the items as one kind of value"),
                        );
                        return None;
                    }
                }
                first.get_or_insert(ty);
            }
            Type::List(Box::new(elem))
        }
    })
}

/// The type that holds values of both `a` and `b`, if one does.
fn unify(a: &Type, b: &Type) -> Option<Type> {
    Some(match (a, b) {
        (Type::Dyn, t) | (t, Type::Dyn) => t.clone(),
        (Type::Int, Type::Int) => Type::Int,
        (Type::Int | Type::Number, Type::Int | Type::Number) => Type::Number,
        (Type::List(x), Type::List(y)) => Type::List(Box::new(unify(x, y)?)),
        (Type::Object(x), Type::Object(y)) => {
            if x.fields.len() != y.fields.len() {
                return None;
            }
            let mut fields = Vec::with_capacity(x.fields.len());
            for f in &x.fields {
                let (_, g) = y.field(&f.name)?;
                fields.push(FieldDef {
                    name: f.name.clone(),
                    ty: unify(&f.ty, &g.ty)?,
                    optional: false,
                    sensitive: false,
                    per_call: false,
                    empty_when_absent: false,
                    constraints: Constraints::default(),
                });
            }
            Type::Object(Arc::new(ObjectType {
                name: x.name.clone(),
                index: x.index.clone(),
                fields,
                extra: x.extra,
            }))
        }
        (Type::String, Type::String) | (Type::Bool, Type::Bool) => a.clone(),
        _ => return None,
    })
}

/// The value of a constant laid out by its (unified) type: object fields
/// by the type's positions, ints among numbers as numbers.
fn value(c: &ConstAst, ty: &Type) -> Value {
    match (c, ty) {
        (ConstAst::String(s), _) => Value::Str(s.into()),
        (ConstAst::Bool(b), _) => Value::Bool(*b),
        (ConstAst::Int(i), Type::Number) => Value::Float(*i as f64),
        (ConstAst::Int(i), _) => Value::Int(*i),
        (ConstAst::Float(f), _) => Value::Float(*f),
        (ConstAst::List(items), Type::List(elem)) => Value::List(items.iter().map(|i| value(&i.value, elem)).collect()),
        (ConstAst::List(items), _) => Value::List(items.iter().map(|i| value(&i.value, &Type::Dyn)).collect()),
        (ConstAst::Object(fields), Type::Object(o)) => Value::Object(
            o.fields
                .iter()
                .map(|f| {
                    fields
                        .iter()
                        .find(|(n, _)| n.value == f.name)
                        .map_or(Value::Absent, |(_, c)| value(&c.value, &f.ty))
                })
                .collect(),
        ),
        (ConstAst::Object(_), _) => Value::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Span;

    fn s<T>(v: T) -> Spanned<T> {
        Spanned::new(v, Span::default())
    }

    fn obj(fields: Vec<(&str, ConstAst)>) -> ConstAst {
        ConstAst::Object(fields.into_iter().map(|(n, c)| (s(n.to_string()), s(c))).collect())
    }

    #[test]
    fn lists_of_mappings_share_one_layout_whatever_the_key_order() {
        let file = SourceFile::new("t", "");
        let list = ConstAst::List(vec![
            s(obj(vec![("a", ConstAst::Int(1)), ("b", ConstAst::String("x".into()))])),
            s(obj(vec![
                ("b", ConstAst::String("y".into())),
                ("a", ConstAst::Float(2.5)),
            ])),
        ]);
        let mut diags = Vec::new();
        let facts = resolve(&file, "act", &[(s("l".to_string()), s(list))], &mut diags).unwrap();
        assert!(diags.is_empty());
        let Type::List(elem) = &facts.ty.fields[0].ty else {
            panic!()
        };
        let Type::Object(o) = &**elem else { panic!() };
        assert!(matches!(o.field("a").unwrap().1.ty, Type::Number));
        let Value::List(items) = &facts.values[0] else { panic!() };
        // Both items laid out as (a, b); the int became a number.
        let Value::Object(second) = &items[1] else { panic!() };
        assert!(matches!(second[0], Value::Float(f) if f == 2.5));
        assert!(matches!(&second[1], Value::Str(s) if s == "y"));
        let Value::Object(first) = &items[0] else { panic!() };
        assert!(matches!(first[0], Value::Float(f) if f == 1.0));
    }

    #[test]
    fn mixed_lists_and_mismatched_mappings_are_refused() {
        let file = SourceFile::new("t", "");
        for list in [
            ConstAst::List(vec![s(ConstAst::String("a".into())), s(ConstAst::Bool(true))]),
            ConstAst::List(vec![
                s(obj(vec![("a", ConstAst::Int(1))])),
                s(obj(vec![("b", ConstAst::Int(1))])),
            ]),
            ConstAst::List(vec![s(obj(vec![("a", ConstAst::Int(1))])), s(obj(vec![]))]),
        ] {
            let mut diags = Vec::new();
            assert!(resolve(&file, "act", &[(s("l".to_string()), s(list))], &mut diags).is_none());
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert!(
                diags[0].message.contains("must all have one type"),
                "{}",
                diags[0].message
            );
        }
    }

    #[test]
    fn an_empty_list_takes_any_type() {
        let file = SourceFile::new("t", "");
        let mut diags = Vec::new();
        let facts = resolve(
            &file,
            "act",
            &[(s("l".to_string()), s(ConstAst::List(vec![])))],
            &mut diags,
        )
        .unwrap();
        assert!(matches!(&facts.ty.fields[0].ty, Type::List(e) if matches!(**e, Type::Dyn)));
    }
}
