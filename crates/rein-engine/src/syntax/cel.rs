//! The condition language's reader: a hand-written lexer and
//! operator-precedence parser for CEL (Common Expression Language)
//! expressions, producing [`Expr`] trees.
//!
//! Grammar, lowest precedence first:
//!
//! ```text
//! expr     = or ["?" or ":" expr]
//! or       = and {"||" and}
//! and      = rel {"&&" rel}
//! rel      = add {("<" | "<=" | ">=" | ">" | "==" | "!=" | "in") add}
//! add      = mul {("+" | "-") mul}
//! mul      = unary {("*" | "/" | "%") unary}
//! unary    = {"!" | "-"} member
//! member   = primary {"." IDENT ["(" [args] ")"] | "[" expr "]"}
//! primary  = IDENT ["(" [args] ")"] | "(" expr ")"
//!          | "[" [expr {"," expr} [","]] "]"
//!          | "{" [expr ":" expr {"," expr ":" expr} [","]] "}"
//!          | literal
//! ```
//!
//! Macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`) are plain
//! calls here; the type checker gives them their meaning. Message
//! construction (`Foo{a: 1}`), leading-dot names (`.a.b`), unsigned integers
//! and bytes literals are rejected with a pointed error.
//!
//! The parser does not recurse: open parentheses, brackets, braces and
//! argument lists live on an explicit stack of frames, so its stack use is
//! the same for every input. Both that stack and the height of the trees it
//! builds are bounded by [`MAX_DEPTH`], so that later passes, which walk
//! trees recursively, cannot overflow the stack either. Time is linear in
//! the length of the text.

mod lexer;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

use std::fmt;

use crate::ast::expr::{BinaryOp, Expr, ExprKind, Name, UnaryOp};
use crate::source::Span;
use lexer::{Lexer, Tok, Token};

/// The longest expression text accepted, in bytes.
pub const MAX_LEN: usize = 100_000;

/// The deepest nesting accepted, measured two ways that must both stay
/// within it: open parentheses, brackets, braces and argument lists; and the
/// height of the tree, where every operator (`!!!a` is three levels,
/// `a + b + c` two), member access, call, list, map and conditional adds one.
pub const MAX_DEPTH: usize = 100;

/// Why an expression could not be parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    /// What is wrong, in lower case, without a final period.
    pub message: String,
    /// The offending text, relative to the expression text.
    pub span: Span,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

impl ParseError {
    fn new(message: impl Into<String>, start: usize, end: usize) -> ParseError {
        ParseError {
            message: message.into(),
            span: Span::new(start, end),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> ParseError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses one CEL expression; spans are byte offsets relative to `text`.
///
/// A parenthesised expression's span includes its parentheses, so that a
/// binary node's span (from its left operand's start to its right operand's
/// end) always covers whole text.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.len() > MAX_LEN {
        return Err(ParseError::new(
            format!("expression is too long ({} bytes; the limit is {MAX_LEN})", text.len()),
            MAX_LEN,
            text.len(),
        ));
    }
    let mut lexer = Lexer::new(text);
    let tok = lexer.next_token()?;
    if tok.kind == Tok::Eof {
        return Err(ParseError::new("empty expression", 0, text.len()));
    }
    let mut parser = Parser {
        text,
        lexer,
        tok,
        prev: None,
        frames: vec![Frame::new(Cont::Top)],
    };
    parser.run()
}

/// Reserved words that may not name a variable or a global function. They
/// may still follow a `.`, as field or method names, as in other CEL
/// implementations.
const RESERVED: [&str; 17] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A parsed subtree with its height (a leaf is 0), tracked so that the depth
/// limit can be enforced without walking the tree again.
struct Node {
    expr: Expr,
    height: usize,
}

impl Node {
    fn start(&self) -> usize {
        self.expr.span.start as usize
    }

    fn end(&self) -> usize {
        self.expr.span.end as usize
    }
}

/// A byte range `(start, end)` in the text, where a depth error would point.
type At = (usize, usize);

/// What becomes of an expression once it is complete: the construct that
/// opened the frame it is read in.
enum Cont {
    /// The whole text.
    Top,
    /// `( … )`, the `(` starting at `open`.
    Paren { open: usize },
    /// An element of `[ … ]`.
    List {
        open: usize,
        items: Vec<Expr>,
        height: usize,
    },
    /// A key of `{ … }`.
    MapKey {
        open: usize,
        entries: Vec<(Expr, Expr)>,
        height: usize,
    },
    /// The value for `key` in `{ … }`.
    MapValue {
        open: usize,
        entries: Vec<(Expr, Expr)>,
        key: Expr,
        height: usize,
    },
    /// An argument of a call; `start` is where the call's span starts.
    Arg {
        start: usize,
        target: Option<Box<Expr>>,
        function: Name,
        args: Vec<Expr>,
        height: usize,
    },
    /// The index of `operand[ … ]`, the `[` starting at `open`.
    Index { operand: Node, open: usize },
}

/// One expression being read: its continuation and the operators read so
/// far that still wait for their right-hand side.
struct Frame {
    cont: Cont,
    /// Prefix operators of the operand being read, with their offsets.
    unary: Vec<(UnaryOp, usize)>,
    /// Left operands with their binary operator and its binding power,
    /// powers strictly increasing from bottom to top.
    pending: Vec<(Node, BinaryOp, u8, At)>,
    /// Complete `cond ? then :` arms of a conditional chain.
    arms: Vec<(Node, Node, At)>,
    /// A condition whose `?` branch is being read.
    question: Option<(Node, At)>,
}

impl Frame {
    fn new(cont: Cont) -> Frame {
        Frame {
            cont,
            unary: Vec::new(),
            pending: Vec::new(),
            arms: Vec::new(),
            question: None,
        }
    }
}

/// What the parser does next.
enum Flow {
    /// Read an operand in the top frame.
    Operand,
    /// Continue after this complete operand in the top frame.
    After(Node),
    /// The whole expression is read.
    Done(Expr),
}

struct Parser<'a> {
    text: &'a str,
    lexer: Lexer<'a>,
    /// The current, not yet consumed, token.
    tok: Token,
    /// The byte range of the last consumed token, for "after `+`" messages.
    prev: Option<At>,
    /// The expressions being read, innermost last; never empty while
    /// parsing, since the bottom frame is the whole text.
    frames: Vec<Frame>,
}

/// Binding power of each binary operator; higher binds tighter.
fn binary_op(kind: &Tok) -> Option<(BinaryOp, u8)> {
    Some(match kind {
        Tok::OrOr => (BinaryOp::Or, 1),
        Tok::AndAnd => (BinaryOp::And, 2),
        Tok::EqEq => (BinaryOp::Eq, 3),
        Tok::NotEq => (BinaryOp::Ne, 3),
        Tok::Lt => (BinaryOp::Lt, 3),
        Tok::Le => (BinaryOp::Le, 3),
        Tok::Gt => (BinaryOp::Gt, 3),
        Tok::Ge => (BinaryOp::Ge, 3),
        Tok::In => (BinaryOp::In, 3),
        Tok::Plus => (BinaryOp::Add, 4),
        Tok::Minus => (BinaryOp::Sub, 4),
        Tok::Star => (BinaryOp::Mul, 5),
        Tok::Slash => (BinaryOp::Div, 5),
        Tok::Percent => (BinaryOp::Rem, 5),
        _ => return None,
    })
}

/// True when a token can begin an expression, so that its appearance where
/// a separator was expected suggests a missing `,` or operator.
fn starts_expression(kind: &Tok) -> bool {
    matches!(
        kind,
        Tok::Ident
            | Tok::Int(_)
            | Tok::Float(_)
            | Tok::Str(_)
            | Tok::True
            | Tok::False
            | Tok::Null
            | Tok::LParen
            | Tok::LBracket
            | Tok::LBrace
            | Tok::Bang
            | Tok::Minus
    )
}

fn too_deep(at: At) -> ParseError {
    ParseError::new(
        format!("expression nests too deeply (more than {MAX_DEPTH} levels)"),
        at.0,
        at.1,
    )
    .with_help("split the condition into smaller parts")
}

/// Builds a node, failing at `at` when it is taller than allowed.
fn node(kind: ExprKind, start: usize, end: usize, height: usize, at: At) -> Result<Node, ParseError> {
    if height > MAX_DEPTH {
        return Err(too_deep(at));
    }
    Ok(Node {
        expr: Expr {
            kind,
            span: Span::new(start, end),
        },
        height,
    })
}

fn binary(lhs: Node, op: BinaryOp, rhs: Node, at: At) -> Result<Node, ParseError> {
    let height = 1 + lhs.height.max(rhs.height);
    let (start, end) = (lhs.start(), rhs.end());
    node(
        ExprKind::Binary {
            op,
            lhs: Box::new(lhs.expr),
            rhs: Box::new(rhs.expr),
        },
        start,
        end,
        height,
        at,
    )
}

impl Parser<'_> {
    fn slice(&self, start: usize, end: usize) -> &str {
        self.text.get(start..end).unwrap_or("")
    }

    /// Consumes the current token and returns it.
    fn bump(&mut self) -> Result<Token, ParseError> {
        let next = self.lexer.next_token()?;
        let old = std::mem::replace(&mut self.tok, next);
        self.prev = Some((old.start, old.end));
        Ok(old)
    }

    fn top(&mut self) -> Result<&mut Frame, ParseError> {
        // The bottom frame is only popped when the parse ends, so this
        // cannot fail; an error is still better than a panic.
        let (start, end) = (self.tok.start, self.tok.end);
        self.frames
            .last_mut()
            .ok_or_else(|| ParseError::new("internal error: no open expression", start, end))
    }

    /// Opens a frame for a nested expression, failing at `at` when too many
    /// are open.
    fn push(&mut self, cont: Cont, at: At) -> Result<Flow, ParseError> {
        // The bottom frame is the whole text, not a nesting level.
        if self.frames.len() > MAX_DEPTH {
            return Err(too_deep(at));
        }
        self.frames.push(Frame::new(cont));
        Ok(Flow::Operand)
    }

    /// Reads the whole text.
    fn run(&mut self) -> Result<Expr, ParseError> {
        let mut flow = Flow::Operand;
        loop {
            flow = match flow {
                Flow::Operand => self.operand()?,
                Flow::After(node) => self.after(node)?,
                Flow::Done(expr) => return Ok(expr),
            };
        }
    }

    /// `{"!" | "-"} primary`: reads prefix operators into the top frame,
    /// then a primary expression, or opens a frame for a bracketed one. A
    /// `-` written directly before a number folds into the literal so that
    /// `-9223372036854775808` fits.
    fn operand(&mut self) -> Result<Flow, ParseError> {
        let mut ops = Vec::new();
        loop {
            let op = match self.tok.kind {
                Tok::Bang => UnaryOp::Not,
                Tok::Minus => UnaryOp::Neg,
                _ => break,
            };
            // One more than the limit may still fold into a literal; the
            // height check catches the rest.
            if ops.len() > MAX_DEPTH {
                return Err(too_deep((self.tok.start, self.tok.end)));
            }
            ops.push((op, self.tok.start));
            self.bump()?;
        }
        let negated = match ops.last() {
            Some(&(UnaryOp::Neg, start)) if matches!(self.tok.kind, Tok::Int(_) | Tok::Float(_)) => {
                ops.pop();
                Some(start)
            }
            _ => None,
        };
        self.top()?.unary = ops;
        self.primary(negated)
    }

    /// A primary expression; `negated` is the start of a `-` to fold into
    /// the number that is the current token.
    fn primary(&mut self, negated: Option<usize>) -> Result<Flow, ParseError> {
        let start = negated.unwrap_or(self.tok.start);
        let end = self.tok.end;
        let kind = match &self.tok.kind {
            Tok::Int(magnitude) => {
                let value = if negated.is_some() {
                    0i64.checked_sub_unsigned(*magnitude)
                } else {
                    i64::try_from(*magnitude).ok()
                };
                let Some(value) = value else {
                    return Err(lexer::too_large(self.slice(self.tok.start, end), self.tok.start, end));
                };
                ExprKind::Int(value)
            }
            Tok::Float(value) => ExprKind::Float(if negated.is_some() { -value } else { *value }),
            Tok::Str(value) => ExprKind::String(value.clone()),
            Tok::True => ExprKind::Bool(true),
            Tok::False => ExprKind::Bool(false),
            Tok::Null => ExprKind::Null,
            Tok::Ident => return self.ident(),
            Tok::LParen => {
                let open = self.bump()?;
                return self.push(Cont::Paren { open: open.start }, (open.start, open.end));
            }
            Tok::LBracket => {
                let open = self.bump()?;
                let at = (open.start, open.end);
                if self.tok.kind == Tok::RBracket {
                    let close = self.bump()?;
                    return Ok(Flow::After(node(
                        ExprKind::List(Vec::new()),
                        open.start,
                        close.end,
                        1,
                        at,
                    )?));
                }
                let cont = Cont::List {
                    open: open.start,
                    items: Vec::new(),
                    height: 0,
                };
                return self.push(cont, at);
            }
            Tok::LBrace => {
                let open = self.bump()?;
                let at = (open.start, open.end);
                if self.tok.kind == Tok::RBrace {
                    let close = self.bump()?;
                    return Ok(Flow::After(node(
                        ExprKind::Map(Vec::new()),
                        open.start,
                        close.end,
                        1,
                        at,
                    )?));
                }
                let cont = Cont::MapKey {
                    open: open.start,
                    entries: Vec::new(),
                    height: 0,
                };
                return self.push(cont, at);
            }
            Tok::Dot => return Err(self.leading_dot()?),
            _ => return Err(self.missing_operand()),
        };
        self.bump()?;
        Ok(Flow::After(node(kind, start, end, 0, (start, end))?))
    }

    /// A variable, or the start of a global call, the current token being
    /// its name.
    fn ident(&mut self) -> Result<Flow, ParseError> {
        let text = self.slice(self.tok.start, self.tok.end).to_owned();
        if RESERVED.contains(&text.as_str()) {
            return Err(self.error_here(format!(
                "`{text}` is a reserved word and cannot be used as an identifier"
            )));
        }
        let tok = self.bump()?;
        let at = (tok.start, tok.end);
        if self.tok.kind != Tok::LParen {
            return Ok(Flow::After(node(ExprKind::Ident(text), tok.start, tok.end, 0, at)?));
        }
        let function = Name {
            text,
            span: Span::new(tok.start, tok.end),
        };
        self.call(tok.start, None, function)
    }

    /// Starts reading the arguments of a call, the current token being its
    /// `(`; `start` is where the call's span starts.
    fn call(&mut self, start: usize, target: Option<Node>, function: Name) -> Result<Flow, ParseError> {
        let open = self.bump()?;
        let at = (function.span.start as usize, function.span.end as usize);
        let height = target.as_ref().map_or(0, |t| t.height);
        let target = target.map(|t| Box::new(t.expr));
        if self.tok.kind == Tok::RParen {
            let close = self.bump()?;
            let kind = ExprKind::Call {
                target,
                function,
                args: Vec::new(),
            };
            return Ok(Flow::After(node(kind, start, close.end, height + 1, at)?));
        }
        let cont = Cont::Arg {
            start,
            target,
            function,
            args: Vec::new(),
            height,
        };
        self.push(cont, (open.start, open.end))
    }

    /// After a complete operand: member accesses, then the prefix operators
    /// read before it, then a binary operator, a `?` or `:`, or the end of
    /// the frame's expression.
    fn after(&mut self, mut operand: Node) -> Result<Flow, ParseError> {
        loop {
            match self.tok.kind {
                Tok::Dot => {
                    self.bump()?;
                    let name = self.member_name()?;
                    let at = (name.start, name.end);
                    let field = Name {
                        text: self.slice(name.start, name.end).to_owned(),
                        span: Span::new(name.start, name.end),
                    };
                    let start = operand.start();
                    if self.tok.kind == Tok::LParen {
                        return self.call(start, Some(operand), field);
                    }
                    let height = operand.height + 1;
                    let kind = ExprKind::Select {
                        operand: Box::new(operand.expr),
                        field,
                    };
                    operand = node(kind, start, name.end, height, at)?;
                }
                Tok::LBracket => {
                    let open = self.bump()?;
                    let cont = Cont::Index {
                        operand,
                        open: open.start,
                    };
                    return self.push(cont, (open.start, open.end));
                }
                Tok::LBrace if matches!(operand.expr.kind, ExprKind::Ident(_) | ExprKind::Select { .. }) => {
                    return Err(self.message_construction(&operand));
                }
                _ => break,
            }
        }
        let ops = std::mem::take(&mut self.top()?.unary);
        for (op, start) in ops.into_iter().rev() {
            let end = operand.end();
            let height = operand.height + 1;
            let kind = ExprKind::Unary {
                op,
                operand: Box::new(operand.expr),
            };
            operand = node(kind, start, end, height, (start, start + 1))?;
        }
        if let Some((op, power)) = binary_op(&self.tok.kind) {
            let rhs = self.reduce(operand, power)?;
            let op_tok = self.bump()?;
            self.top()?.pending.push((rhs, op, power, (op_tok.start, op_tok.end)));
            return Ok(Flow::Operand);
        }
        let value = self.reduce(operand, 0)?;
        self.conditional(value)
    }

    /// Applies the pending binary operators of the top frame that bind at
    /// least as tightly as `power` to their left operands and `rhs`.
    fn reduce(&mut self, mut rhs: Node, power: u8) -> Result<Node, ParseError> {
        let frame = self.top()?;
        while frame.pending.last().is_some_and(|p| p.2 >= power) {
            let Some((lhs, op, _, at)) = frame.pending.pop() else {
                break;
            };
            rhs = binary(lhs, op, rhs, at)?;
        }
        Ok(rhs)
    }

    /// After a complete `or` expression: a `?` or `:` of a conditional, or
    /// the end of the frame's expression.
    fn conditional(&mut self, value: Node) -> Result<Flow, ParseError> {
        if let Some((cond, at)) = self.top()?.question.take() {
            if self.tok.kind != Tok::Colon {
                let err = self.expected("`:` after the `?` branch of the conditional", None);
                return Err(if self.tok.kind == Tok::Question {
                    err.with_help("put parentheses around a conditional inside the `?` branch")
                } else {
                    err
                });
            }
            self.bump()?;
            self.top()?.arms.push((cond, value, at));
            return Ok(Flow::Operand);
        }
        if self.tok.kind == Tok::Question {
            let question = self.bump()?;
            self.top()?.question = Some((value, (question.start, question.end)));
            return Ok(Flow::Operand);
        }
        // The chain is right-associative: fold it from the end.
        let arms = std::mem::take(&mut self.top()?.arms);
        let value = arms.into_iter().rev().try_fold(value, |otherwise, (cond, then, at)| {
            let height = 1 + cond.height.max(then.height).max(otherwise.height);
            let (start, end) = (cond.start(), otherwise.end());
            let kind = ExprKind::Conditional {
                cond: Box::new(cond.expr),
                then: Box::new(then.expr),
                otherwise: Box::new(otherwise.expr),
            };
            node(kind, start, end, height, at)
        })?;
        self.finish(value)
    }

    /// Hands the complete expression of the top frame to the construct that
    /// opened it.
    fn finish(&mut self, value: Node) -> Result<Flow, ParseError> {
        let Some(frame) = self.frames.pop() else {
            return Err(self.error_here("internal error: no open expression".to_owned()));
        };
        match frame.cont {
            Cont::Top => {
                if self.tok.kind != Tok::Eof {
                    return Err(self.trailing_error());
                }
                Ok(Flow::Done(value.expr))
            }
            Cont::Paren { open } => {
                if self.tok.kind != Tok::RParen {
                    return Err(self.expected("`)` to close the parenthesised expression", None));
                }
                let close = self.bump()?;
                // The parentheses belong to the node so that enclosing spans
                // cover balanced text.
                let mut value = value;
                value.expr.span = Span::new(open, close.end);
                Ok(Flow::After(value))
            }
            Cont::List {
                open,
                mut items,
                height,
            } => {
                let height = height.max(value.height);
                items.push(value.expr);
                let at = (open, open + 1);
                if self.separator(Tok::RBracket, "`]` to close the list", "list elements")? {
                    return self.push(Cont::List { open, items, height }, at);
                }
                let close = self.bump()?;
                Ok(Flow::After(node(
                    ExprKind::List(items),
                    open,
                    close.end,
                    height + 1,
                    at,
                )?))
            }
            Cont::MapKey { open, entries, height } => {
                if self.tok.kind != Tok::Colon {
                    return Err(self.expected("`:` after the map key", None));
                }
                self.bump()?;
                let cont = Cont::MapValue {
                    open,
                    entries,
                    height: height.max(value.height),
                    key: value.expr,
                };
                self.push(cont, (open, open + 1))
            }
            Cont::MapValue {
                open,
                mut entries,
                key,
                height,
            } => {
                let height = height.max(value.height);
                entries.push((key, value.expr));
                let at = (open, open + 1);
                if self.separator(Tok::RBrace, "`}` to close the map", "map entries")? {
                    return self.push(Cont::MapKey { open, entries, height }, at);
                }
                let close = self.bump()?;
                Ok(Flow::After(node(
                    ExprKind::Map(entries),
                    open,
                    close.end,
                    height + 1,
                    at,
                )?))
            }
            Cont::Arg {
                start,
                target,
                function,
                mut args,
                height,
            } => {
                let height = height.max(value.height);
                args.push(value.expr);
                match self.tok.kind {
                    Tok::Comma => {
                        self.bump()?;
                        if self.tok.kind == Tok::RParen {
                            return Err(self
                                .error_here(format!(
                                    "expected an argument after `,` in the call to `{}`, found `)`",
                                    function.text
                                ))
                                .with_help("remove the trailing `,`: calls do not allow one"));
                        }
                        let at = (function.span.start as usize, function.span.end as usize);
                        let cont = Cont::Arg {
                            start,
                            target,
                            function,
                            args,
                            height,
                        };
                        self.push(cont, at)
                    }
                    Tok::RParen => {
                        let close = self.bump()?;
                        let at = (function.span.start as usize, function.span.end as usize);
                        let kind = ExprKind::Call { target, function, args };
                        Ok(Flow::After(node(kind, start, close.end, height + 1, at)?))
                    }
                    _ => Err(self.expected(
                        &format!("`)` to close the call to `{}`", function.text),
                        Some("arguments"),
                    )),
                }
            }
            Cont::Index { operand, open } => {
                if self.tok.kind != Tok::RBracket {
                    return Err(self.expected("`]` to close the index", None));
                }
                let close = self.bump()?;
                let height = 1 + operand.height.max(value.height);
                let start = operand.start();
                let at = (open, open + 1);
                let kind = ExprKind::Index {
                    operand: Box::new(operand.expr),
                    index: Box::new(value.expr),
                };
                Ok(Flow::After(node(kind, start, close.end, height, at)?))
            }
        }
    }

    /// After an element of a list or map: consumes a `,` and says whether
    /// another element follows, or leaves the `closer` for the caller.
    fn separator(&mut self, closer: Tok, expected: &str, elements: &str) -> Result<bool, ParseError> {
        if self.tok.kind == Tok::Comma {
            self.bump()?;
            // A trailing comma is allowed before the closer.
            return Ok(self.tok.kind != closer);
        }
        if self.tok.kind == closer {
            return Ok(false);
        }
        Err(self.expected(expected, Some(elements)))
    }

    /// The identifier after a `.`; reserved words are allowed there, the
    /// keywords `true`, `false`, `null` and `in` are not.
    fn member_name(&mut self) -> Result<Token, ParseError> {
        if self.tok.kind == Tok::Ident {
            return self.bump();
        }
        let err = self.expected("a field or method name after `.`", None);
        Err(
            if matches!(self.tok.kind, Tok::True | Tok::False | Tok::Null | Tok::In) {
                let word = self.slice(self.tok.start, self.tok.end);
                err.with_help(format!(
                    "`{word}` is a keyword; read such a field with an index: `[\"{word}\"]`"
                ))
            } else {
                err
            },
        )
    }

    // ---- errors ----

    /// How a token is named in messages.
    fn describe(&self, tok: &Token) -> String {
        match tok.kind {
            Tok::Eof => "end of expression".to_owned(),
            Tok::Str(_) => "a string".to_owned(),
            _ => format!("`{}`", lexer::shorten(self.slice(tok.start, tok.end))),
        }
    }

    fn found(&self) -> String {
        self.describe(&self.tok)
    }

    /// An error at the current token.
    fn error_here(&self, message: String) -> ParseError {
        ParseError::new(message, self.tok.start, self.tok.end)
    }

    /// A help for a word written where an operator belongs, like `and`, or
    /// for a number written as a field, like `a.0`.
    fn operator_help(&self) -> Option<String> {
        let text = self.slice(self.tok.start, self.tok.end);
        if let (Tok::Float(_), Some(digits)) = (&self.tok.kind, text.strip_prefix('.')) {
            return Some(format!("to index a list, write `[{digits}]`"));
        }
        if self.tok.kind != Tok::Ident {
            return None;
        }
        match text {
            "and" | "AND" => Some("did you mean `&&`?".to_owned()),
            "or" | "OR" => Some("did you mean `||`?".to_owned()),
            "not" | "NOT" => Some("negate with `!`, as in `!(a in b)`".to_owned()),
            _ => None,
        }
    }

    /// An error for a missing closing or separating token: `expected` says
    /// what should have come; `separator` names what a missing `,` would
    /// have separated.
    fn expected(&self, expected: &str, separator: Option<&str>) -> ParseError {
        let err = self.error_here(format!("expected {expected}, found {}", self.found()));
        if let Some(help) = self.operator_help() {
            err.with_help(help)
        } else if let (Some(sep), true) = (separator, starts_expression(&self.tok.kind)) {
            err.with_help(format!("separate {sep} with `,`"))
        } else {
            err
        }
    }

    /// The error for a token that cannot start an operand.
    fn missing_operand(&self) -> ParseError {
        let after = match self.prev {
            Some((s, e)) => format!(" after `{}`", lexer::shorten(self.slice(s, e))),
            None => String::new(),
        };
        self.error_here(format!("expected an expression{after}, found {}", self.found()))
    }

    /// The error for a `.` where an operand should start.
    fn leading_dot(&mut self) -> Result<ParseError, ParseError> {
        let dot = self.bump()?;
        if self.tok.kind == Tok::Ident {
            return Ok(ParseError::new(
                "leading-dot names such as `.name` are not supported",
                dot.start,
                self.tok.end,
            )
            .with_help("remove the leading `.`"));
        }
        Ok(ParseError::new("expected an expression, found `.`", dot.start, dot.end))
    }

    /// The error for `Name{`, the current token being the `{`.
    fn message_construction(&self, name: &Node) -> ParseError {
        ParseError::new(
            format!(
                "message construction `{}{{…}}` is not supported",
                lexer::shorten(self.slice(name.start(), name.end()))
            ),
            name.start(),
            self.tok.end,
        )
        .with_help("use a map literal such as `{\"field\": value}`")
    }

    /// The error for a token left over after a complete expression.
    fn trailing_error(&self) -> ParseError {
        let opener = match self.tok.kind {
            Tok::RParen => Some("("),
            Tok::RBracket => Some("["),
            Tok::RBrace => Some("{"),
            _ => None,
        };
        if let Some(opener) = opener {
            return self.error_here(format!("unexpected {} without a matching `{opener}`", self.found()));
        }
        let err = self.error_here(format!(
            "expected an operator or the end of the expression, found {}",
            self.found()
        ));
        match self.operator_help() {
            Some(help) => err.with_help(help),
            None => err,
        }
    }
}
