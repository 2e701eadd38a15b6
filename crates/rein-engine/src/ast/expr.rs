//! Untyped condition expressions, as parsed from CEL text.
//!
//! Spans are byte offsets relative to the start of the expression text; the
//! policy loader shifts them into file coordinates with [`Expr::shift`].

use crate::source::Span;

/// One expression node with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// A name with the span it was written at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// The identifier text.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

/// The expression forms of the condition language (a subset of CEL).
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer literal (`42`, `0x2a`, `-7` is a negation of `7`).
    Int(i64),
    /// A floating-point literal (`1.5`, `1e3`).
    Float(f64),
    /// A string literal, escapes resolved.
    String(String),
    /// A bare identifier: `input`, `actor`, a macro variable.
    Ident(String),
    /// `operand.field`
    Select {
        /// The value whose field is read.
        operand: Box<Expr>,
        /// The field name.
        field: Name,
    },
    /// `operand[index]`
    Index {
        /// The list or map.
        operand: Box<Expr>,
        /// The position or key.
        index: Box<Expr>,
    },
    /// A function call `f(args)` or a method call `target.f(args)`. Macros
    /// (`has`, `exists`, `all`, `exists_one`, `filter`, `map`) are calls too;
    /// the type checker gives them their meaning.
    Call {
        /// The receiver of a method call; `None` for a global call.
        target: Option<Box<Expr>>,
        /// The function name.
        function: Name,
        /// The arguments in order.
        args: Vec<Expr>,
    },
    /// `[a, b, c]`
    List(Vec<Expr>),
    /// `{k: v, ...}`
    Map(Vec<(Expr, Expr)>),
    /// `!x`, `-x`
    Unary {
        /// Which operator.
        op: UnaryOp,
        /// Its operand.
        operand: Box<Expr>,
    },
    /// `a op b`, including `&&`, `||` and `in`.
    Binary {
        /// Which operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `cond ? then : otherwise`
    Conditional {
        /// The condition.
        cond: Box<Expr>,
        /// Value when the condition holds.
        then: Box<Expr>,
        /// Value otherwise.
        otherwise: Box<Expr>,
    },
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `!`
    Not,
    /// `-`
    Neg,
}

/// Infix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }
}

impl UnaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Not => "!",
            UnaryOp::Neg => "-",
        }
    }
}

impl Expr {
    /// Moves every span of the tree through `map`, which turns an offset
    /// relative to the expression text into an offset in the file.
    pub fn shift(&mut self, map: &dyn Fn(u32) -> u32) {
        self.span = Span {
            start: map(self.span.start),
            end: map(self.span.end),
        };
        match &mut self.kind {
            ExprKind::Null
            | ExprKind::Bool(_)
            | ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::String(_)
            | ExprKind::Ident(_) => {}
            ExprKind::Select { operand, field } => {
                operand.shift(map);
                shift_name(field, map);
            }
            ExprKind::Index { operand, index } => {
                operand.shift(map);
                index.shift(map);
            }
            ExprKind::Call { target, function, args } => {
                if let Some(t) = target {
                    t.shift(map);
                }
                shift_name(function, map);
                args.iter_mut().for_each(|a| a.shift(map));
            }
            ExprKind::List(items) => items.iter_mut().for_each(|a| a.shift(map)),
            ExprKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.shift(map);
                v.shift(map);
            }),
            ExprKind::Unary { operand, .. } => operand.shift(map),
            ExprKind::Binary { lhs, rhs, .. } => {
                lhs.shift(map);
                rhs.shift(map);
            }
            ExprKind::Conditional { cond, then, otherwise } => {
                cond.shift(map);
                then.shift(map);
                otherwise.shift(map);
            }
        }
    }
}

fn shift_name(name: &mut Name, map: &dyn Fn(u32) -> u32) {
    name.span = Span {
        start: map(name.span.start),
        end: map(name.span.end),
    };
}
