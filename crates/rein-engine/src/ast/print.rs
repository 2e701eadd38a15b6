//! Prints expressions back as CEL text.
//!
//! The output re-parses to the same tree (spans aside): operands are
//! parenthesised whenever precedence, associativity or literal folding
//! could otherwise change the shape, and a little beyond that for
//! readability (`&&` inside `||`).

use std::fmt::{self, Write};

use crate::ast::expr::{BinaryOp, Expr, ExprKind};

/// Precedence classes, higher binds tighter.
const CONDITIONAL: u8 = 0;
const UNARY: u8 = 6;
const MEMBER: u8 = 7;

fn binary_level(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Or => 1,
        BinaryOp::And => 2,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::In => 3,
        BinaryOp::Add | BinaryOp::Sub => 4,
        BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 5,
    }
}

/// True for a number printed with a leading `-`, which the parser reads
/// as a literal of unary rank.
fn is_negative_number(e: &Expr) -> bool {
    match e.kind {
        ExprKind::Int(v) => v < 0,
        ExprKind::Float(v) => v.is_sign_negative(),
        _ => false,
    }
}

fn level(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Conditional { .. } => CONDITIONAL,
        ExprKind::Binary { op, .. } => binary_level(*op),
        ExprKind::Unary { .. } => UNARY,
        _ if is_negative_number(e) => UNARY,
        _ => MEMBER,
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Null => f.write_str("null"),
            ExprKind::Bool(b) => write!(f, "{b}"),
            ExprKind::Int(v) => write!(f, "{v}"),
            ExprKind::Float(v) => write_float(f, *v),
            ExprKind::String(s) => write_string(f, s),
            ExprKind::Ident(name) => f.write_str(name),
            ExprKind::Select { operand, field } => {
                write_target(f, operand)?;
                write!(f, ".{}", field.text)
            }
            ExprKind::Index { operand, index } => {
                write_target(f, operand)?;
                write!(f, "[{index}]")
            }
            ExprKind::Call { target, function, args } => {
                if let Some(target) = target {
                    write_target(f, target)?;
                    f.write_char('.')?;
                }
                write!(f, "{}(", function.text)?;
                write_list(f, args)?;
                f.write_char(')')
            }
            ExprKind::List(items) => {
                f.write_char('[')?;
                write_list(f, items)?;
                f.write_char(']')
            }
            ExprKind::Map(entries) => {
                f.write_char('{')?;
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    // A conditional key parses, but reads badly before `:`.
                    write_operand(f, key, level(key) == CONDITIONAL)?;
                    write!(f, ": {value}")?;
                }
                f.write_char('}')
            }
            ExprKind::Unary { op, operand } => {
                f.write_str(op.symbol())?;
                // A bare number after `-` would fold into a negative
                // literal, so every number gets parentheses here.
                let is_number = matches!(operand.kind, ExprKind::Int(_) | ExprKind::Float(_));
                write_operand(f, operand, level(operand) < UNARY || is_number)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let mine = binary_level(*op);
                let mixed =
                    |e: &Expr| *op == BinaryOp::Or && matches!(e.kind, ExprKind::Binary { op: BinaryOp::And, .. });
                // Left-associative: an equal-level operand needs parentheses
                // on the right only.
                write_operand(f, lhs, level(lhs) < mine || mixed(lhs))?;
                write!(f, " {} ", op.symbol())?;
                write_operand(f, rhs, level(rhs) <= mine || mixed(rhs))
            }
            ExprKind::Conditional { cond, then, otherwise } => {
                // The `?` branch is a `ConditionalOr` in the grammar; the
                // `:` branch may be a bare conditional (right-associative).
                write_operand(f, cond, level(cond) == CONDITIONAL)?;
                f.write_str(" ? ")?;
                write_operand(f, then, level(then) == CONDITIONAL)?;
                write!(f, " : {otherwise}")
            }
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

/// The receiver of `.field`, `[index]` or `.method()`: numbers get
/// parentheses too, since `1.5` and `-1` would not read as receivers.
fn write_target(f: &mut fmt::Formatter<'_>, e: &Expr) -> fmt::Result {
    let is_number = matches!(e.kind, ExprKind::Int(_) | ExprKind::Float(_));
    write_operand(f, e, level(e) < MEMBER || is_number)
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// Floats print in Rust's shortest round-trip form, which always has a `.`
/// or an exponent (`1.0`, `1e300`, `1e-7`) and so reads back as a float.
/// Non-finite values have no literal form.
fn write_float(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    if v.is_nan() {
        f.write_str("double(\"NaN\")")
    } else if v.is_infinite() {
        let sign = if v < 0.0 { "-" } else { "" };
        write!(f, "double(\"{sign}Infinity\")")
    } else {
        write!(f, "{v:?}")
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ast::expr::{Name, UnaryOp};
    use crate::source::Span;

    fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }

    fn b(kind: ExprKind) -> Box<Expr> {
        Box::new(e(kind))
    }

    fn ident(name: &str) -> Box<Expr> {
        b(ExprKind::Ident(name.to_owned()))
    }

    #[test]
    fn literals() {
        let cases: Vec<(ExprKind, &str)> = vec![
            (ExprKind::Null, "null"),
            (ExprKind::Bool(true), "true"),
            (ExprKind::Int(-9_223_372_036_854_775_808), "-9223372036854775808"),
            (ExprKind::Float(1.0), "1.0"),
            (ExprKind::Float(1e300), "1e300"),
            (ExprKind::Float(1.5e-7), "1.5e-7"),
            (ExprKind::Float(-0.0), "-0.0"),
            (ExprKind::Float(f64::NAN), "double(\"NaN\")"),
            (ExprKind::Float(f64::INFINITY), "double(\"Infinity\")"),
            (ExprKind::Float(f64::NEG_INFINITY), "double(\"-Infinity\")"),
            (
                ExprKind::String("a\"b\\c\n\u{1}é".to_owned()),
                "\"a\\\"b\\\\c\\n\\u0001é\"",
            ),
        ];
        for (kind, text) in cases {
            assert_eq!(e(kind).to_string(), text);
        }
    }

    #[test]
    fn parenthesises_where_shape_needs_it() {
        let neg_five = e(ExprKind::Unary {
            op: UnaryOp::Neg,
            operand: b(ExprKind::Int(5)),
        });
        assert_eq!(neg_five.to_string(), "-(5)");
        let sub = e(ExprKind::Binary {
            op: BinaryOp::Sub,
            lhs: ident("a"),
            rhs: b(ExprKind::Binary {
                op: BinaryOp::Sub,
                lhs: ident("b"),
                rhs: ident("c"),
            }),
        });
        assert_eq!(sub.to_string(), "a - (b - c)");
        let method = e(ExprKind::Call {
            target: Some(b(ExprKind::Int(-1))),
            function: Name {
                text: "f".to_owned(),
                span: Span::default(),
            },
            args: vec![],
        });
        assert_eq!(method.to_string(), "(-1).f()");
        let cond = e(ExprKind::Conditional {
            cond: ident("a"),
            then: b(ExprKind::Conditional {
                cond: ident("b"),
                then: ident("c"),
                otherwise: ident("d"),
            }),
            otherwise: b(ExprKind::Conditional {
                cond: ident("e"),
                then: ident("f"),
                otherwise: ident("g"),
            }),
        });
        assert_eq!(cond.to_string(), "a ? (b ? c : d) : e ? f : g");
    }
}
