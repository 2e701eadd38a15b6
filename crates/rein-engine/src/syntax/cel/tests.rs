use super::*;
use proptest::prelude::*;

/// The tree with every span zeroed, for comparisons that ignore position.
fn strip(mut e: Expr) -> Expr {
    e.shift(&|_| 0);
    e
}

fn parsed(text: &str) -> Expr {
    match parse(text) {
        Ok(e) => e,
        Err(err) => panic!("`{text}` failed to parse: {err:?}"),
    }
}

fn failed(text: &str) -> ParseError {
    match parse(text) {
        Ok(e) => panic!("`{text}` parsed unexpectedly: {e:?}"),
        Err(err) => err,
    }
}

/// A compact prefix rendering that shows the tree's shape exactly.
fn sexpr(e: &Expr) -> String {
    let list = |items: &[Expr]| items.iter().map(sexpr).collect::<Vec<_>>().join(" ");
    match &e.kind {
        ExprKind::Null => "null".to_owned(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Int(v) => format!("{v}"),
        ExprKind::Float(v) => format!("{v:?}f"),
        ExprKind::String(s) => format!("{s:?}"),
        ExprKind::Ident(name) => name.clone(),
        ExprKind::Select { operand, field } => format!("(. {} {})", sexpr(operand), field.text),
        ExprKind::Index { operand, index } => format!("([] {} {})", sexpr(operand), sexpr(index)),
        ExprKind::Call { target, function, args } => match target {
            Some(t) => format!("(.{} {} [{}])", function.text, sexpr(t), list(args)),
            None => format!("({} [{}])", function.text, list(args)),
        },
        ExprKind::List(items) => format!("[{}]", list(items)),
        ExprKind::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", sexpr(k), sexpr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExprKind::Unary { op, operand } => format!("({} {})", op.symbol(), sexpr(operand)),
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", op.symbol(), sexpr(lhs), sexpr(rhs))
        }
        ExprKind::Conditional { cond, then, otherwise } => {
            format!("(? {} {} {})", sexpr(cond), sexpr(then), sexpr(otherwise))
        }
    }
}

fn shape(text: &str) -> String {
    sexpr(&parsed(text))
}

#[test]
fn precedence_and_associativity() {
    let cases = [
        ("a || b && c", "(|| a (&& b c))"),
        ("a && b || c", "(|| (&& a b) c)"),
        ("a || b || c", "(|| (|| a b) c)"),
        ("a && b && c", "(&& (&& a b) c)"),
        ("a == b && c != d", "(&& (== a b) (!= c d))"),
        ("a < b == c", "(== (< a b) c)"),
        ("a <= b >= c > d", "(> (>= (<= a b) c) d)"),
        ("a in b == c", "(== (in a b) c)"),
        ("a + b in c", "(in (+ a b) c)"),
        ("a + b * c", "(+ a (* b c))"),
        ("a * b + c", "(+ (* a b) c)"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b % c * d", "(* (% (/ a b) c) d)"),
        ("a - b + c", "(+ (- a b) c)"),
        ("(a + b) * c", "(* (+ a b) c)"),
        ("!a && b", "(&& (! a) b)"),
        ("-a * b", "(* (- a) b)"),
        ("!!a", "(! (! a))"),
        ("--a", "(- (- a))"),
        ("!-a", "(! (- a))"),
        ("-a.b", "(- (. a b))"),
        ("!a[0]", "(! ([] a 0))"),
        ("a.b.c", "(. (. a b) c)"),
        ("a.b(c)[d].e", "(. ([] (.b a [c]) d) e)"),
        ("f(a, b + c)", "(f [a (+ b c)])"),
        ("a ? b : c", "(? a b c)"),
        ("a ? b : c ? d : e", "(? a b (? c d e))"),
        ("a || b ? c && d : e", "(? (|| a b) (&& c d) e)"),
        ("a ? (b ? c : d) : e", "(? a (? b c d) e)"),
        ("a-1", "(- a 1)"),
        ("1 - -1", "(- 1 -1)"),
        ("a in [1, 2] && b in {'k': 1}", "(&& (in a [1 2]) (in b {\"k\": 1}))"),
        ("has(a.b)", "(has [(. a b)])"),
        ("l.exists(x, x > 0)", "(.exists l [x (> x 0)])"),
        ("[1, 2,]", "[1 2]"),
        ("{1: 2, 3: 4,}", "{1: 2, 3: 4}"),
        ("[]", "[]"),
        ("{}", "{}"),
        ("f()", "(f [])"),
        ("a.f()", "(.f a [])"),
        // Reserved words may name fields and methods, as in other CEL
        // implementations.
        ("a.package.if()", "(.if (. a package) [])"),
    ];
    for (text, expected) in cases {
        assert_eq!(shape(text), expected, "for `{text}`");
    }
}

#[test]
fn minus_folds_into_number_literals() {
    let cases = [
        ("-1", "-1"),
        ("- 1", "-1"),
        ("-(1)", "(- 1)"),
        ("--1", "(- -1)"),
        ("!-1", "(! -1)"),
        ("-1.5", "-1.5f"),
        ("-0.0", "-0.0f"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("-0x8000000000000000", "-9223372036854775808"),
        ("9223372036854775807", "9223372036854775807"),
        ("0x7fffffffffffffff", "9223372036854775807"),
        // The literal, sign included, is the receiver, as in CEL's grammar.
        ("-1.f()", "(.f -1 [])"),
    ];
    for (text, expected) in cases {
        assert_eq!(shape(text), expected, "for `{text}`");
    }
}

#[test]
fn literal_forms() {
    let cases: Vec<(&str, ExprKind)> = vec![
        ("0", ExprKind::Int(0)),
        ("42", ExprKind::Int(42)),
        ("007", ExprKind::Int(7)),
        ("0x2A", ExprKind::Int(42)),
        ("0xff", ExprKind::Int(255)),
        ("1.5", ExprKind::Float(1.5)),
        (".5", ExprKind::Float(0.5)),
        ("1e3", ExprKind::Float(1000.0)),
        ("1E+3", ExprKind::Float(1000.0)),
        ("1.5e-3", ExprKind::Float(0.0015)),
        ("0.0", ExprKind::Float(0.0)),
        ("1e-400", ExprKind::Float(0.0)),
        ("true", ExprKind::Bool(true)),
        ("false", ExprKind::Bool(false)),
        ("null", ExprKind::Null),
        ("_x1", ExprKind::Ident("_x1".to_owned())),
        ("\"a b\"", ExprKind::String("a b".to_owned())),
        ("'a\"b'", ExprKind::String("a\"b".to_owned())),
        ("\"\"", ExprKind::String(String::new())),
        ("''", ExprKind::String(String::new())),
        ("\"é😀\"", ExprKind::String("é😀".to_owned())),
        ("\"\"\"a\n\"b\" ''c\"\"\"", ExprKind::String("a\n\"b\" ''c".to_owned())),
        ("'''x\n'y'\\n'''", ExprKind::String("x\n'y'\n".to_owned())),
        ("r\"\\n\\d\"", ExprKind::String("\\n\\d".to_owned())),
        ("R'\\'", ExprKind::String("\\".to_owned())),
        ("r\"\"\"a\\\"\"\"", ExprKind::String("a\\".to_owned())),
        ("R'''\\x'''", ExprKind::String("\\x".to_owned())),
    ];
    for (text, expected) in cases {
        assert_eq!(parsed(text).kind, expected, "for `{text}`");
    }
}

#[test]
fn every_escape() {
    let cases = [
        ("\\\\", "\\"),
        ("\\\"", "\""),
        ("\\'", "'"),
        ("\\`", "`"),
        ("\\?", "?"),
        ("\\a", "\u{07}"),
        ("\\b", "\u{08}"),
        ("\\f", "\u{0c}"),
        ("\\n", "\n"),
        ("\\r", "\r"),
        ("\\t", "\t"),
        ("\\v", "\u{0b}"),
        ("\\x41", "A"),
        ("\\X4a", "J"),
        ("\\xff", "\u{ff}"),
        ("\\u00e9", "é"),
        ("\\uFFFF", "\u{ffff}"),
        ("\\U0001F600", "😀"),
        ("\\U0010ffff", "\u{10ffff}"),
        ("\\101", "A"),
        ("\\000", "\0"),
        ("\\377", "\u{ff}"),
        ("a\\tb\\nc", "a\tb\nc"),
    ];
    for (body, expected) in cases {
        for quote in ["\"", "'", "\"\"\"", "'''"] {
            let text = format!("{quote}{body}{quote}");
            assert_eq!(parsed(&text).kind, ExprKind::String(expected.to_owned()), "for {text}");
        }
    }
}

#[test]
fn comments_and_whitespace() {
    assert_eq!(shape("// lead\n a // why\n\t+\r\n b // end"), "(+ a b)");
    assert_eq!(shape("a\u{0c}+b"), "(+ a b)");
    assert_eq!(shape("a / b"), "(/ a b)");
    assert_eq!(shape("\"// not a comment\""), "\"// not a comment\"");
}

/// The text a node's span covers.
fn slice(text: &str, span: Span) -> &str {
    &text[span.start as usize..span.end as usize]
}

#[test]
fn spans_cover_whole_nodes() {
    let text = "(a + b) * c.d(1, \"x\")";
    let e = parsed(text);
    assert_eq!(slice(text, e.span), text);
    let ExprKind::Binary { lhs, rhs, .. } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(slice(text, lhs.span), "(a + b)");
    assert_eq!(slice(text, rhs.span), "c.d(1, \"x\")");
    let ExprKind::Call {
        target: Some(target),
        function,
        args,
    } = &rhs.kind
    else {
        panic!("{rhs:?}")
    };
    assert_eq!(slice(text, target.span), "c");
    assert_eq!(slice(text, function.span), "d");
    assert_eq!(slice(text, args[1].span), "\"x\"");

    let text = "size(x.field) > 0 ? -5 : !y[0]";
    let e = parsed(text);
    assert_eq!(slice(text, e.span), text);
    let ExprKind::Conditional { cond, then, otherwise } = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(slice(text, cond.span), "size(x.field) > 0");
    assert_eq!(slice(text, then.span), "-5");
    assert_eq!(slice(text, otherwise.span), "!y[0]");
    let ExprKind::Binary { lhs: call, .. } = &cond.kind else {
        panic!("{cond:?}")
    };
    let ExprKind::Call { function, args, .. } = &call.kind else {
        panic!("{call:?}")
    };
    assert_eq!(slice(text, call.span), "size(x.field)");
    assert_eq!(slice(text, function.span), "size");
    let ExprKind::Select { field, .. } = &args[0].kind else {
        panic!("{:?}", args[0])
    };
    assert_eq!(slice(text, args[0].span), "x.field");
    assert_eq!(slice(text, field.span), "field");
    let ExprKind::Unary { operand, .. } = &otherwise.kind else {
        panic!("{otherwise:?}")
    };
    assert_eq!(slice(text, operand.span), "y[0]");

    let text = "[1, {'k': v},]";
    let e = parsed(text);
    assert_eq!(slice(text, e.span), text);
    let ExprKind::List(items) = &e.kind else {
        panic!("{e:?}")
    };
    assert_eq!(slice(text, items[1].span), "{'k': v}");

    let text = "  r'raw' + '''t\nq''' ";
    let e = parsed(text);
    assert_eq!(slice(text, e.span), "r'raw' + '''t\nq'''");
}

/// Asserts the error's message, the text its span covers, and its help.
fn assert_error(text: &str, message: &str, at: &str, help: Option<&str>) {
    let err = failed(text);
    assert_eq!(err.message, message, "message for `{text}`");
    assert_eq!(slice(text, err.span), at, "span for `{text}`");
    if let Some(help) = help {
        assert_eq!(err.help.as_deref(), Some(help), "help for `{text}`");
    }
    assert!(
        !err.message.ends_with('.') && err.message.chars().next().is_some_and(|c| !c.is_uppercase()),
        "style of `{}`",
        err.message
    );
}

#[test]
fn error_messages() {
    let deep = format!("expression nests too deeply (more than {MAX_DEPTH} levels)");
    let parens = "(".repeat(MAX_DEPTH + 1);
    let cases: Vec<(&str, &str, &str, Option<&str>)> = vec![
        ("", "empty expression", "", None),
        (
            "  // only a comment\n",
            "empty expression",
            "  // only a comment\n",
            None,
        ),
        (
            "size(x",
            "expected `)` to close the call to `size`, found end of expression",
            "",
            None,
        ),
        (
            "size(x y)",
            "expected `)` to close the call to `size`, found `y`",
            "y",
            Some("separate arguments with `,`"),
        ),
        (
            "a.f(1,)",
            "expected an argument after `,` in the call to `f`, found `)`",
            ")",
            None,
        ),
        ("a = b", "unexpected `=`", "=", Some("did you mean `==`?")),
        ("a & b", "unexpected `&`", "&", Some("use `&&`")),
        ("a | b", "unexpected `|`", "|", Some("use `||`")),
        ("a # b", "unexpected character `#`", "#", None),
        ("a é", "unexpected character `é`", "é", None),
        ("\"abc", "unterminated string", "\"abc", Some("add the closing `\"`")),
        ("'''abc''", "unterminated string", "'''abc''", None),
        ("\"ab\ncd\"", "unterminated string", "\"ab", None),
        ("r'ab", "unterminated string", "r'ab", None),
        ("\"a\\", "unterminated string", "\"a\\", None),
        ("\"a\\qb\"", "invalid escape sequence `\\q`", "\\q", None),
        (
            "\"\\x4g\"",
            "invalid escape sequence `\\x4`: expected 2 hexadecimal digits",
            "\\x4",
            None,
        ),
        (
            "\"\\u12\"",
            "invalid escape sequence `\\u12`: expected 4 hexadecimal digits",
            "\\u12",
            None,
        ),
        (
            "\"\\08\"",
            "invalid escape sequence `\\0`: expected 3 octal digits",
            "\\0",
            None,
        ),
        ("\"\\4\"", "invalid escape sequence `\\4`", "\\4", None),
        (
            "'\\uD800'",
            "invalid unicode escape `\\uD800`: surrogate code points are not allowed",
            "\\uD800",
            None,
        ),
        (
            "'\\U00110000'",
            "invalid unicode escape `\\U00110000`: it is beyond the largest code point U+10FFFF",
            "\\U00110000",
            None,
        ),
        ("b\"abc\"", "bytes literals are not supported", "b\"abc\"", None),
        ("x + BR'a'", "bytes literals are not supported", "BR'a'", None),
        (
            "1u",
            "unsupported unsigned integer literal `1u`",
            "1u",
            Some("unsigned integers are not supported; write `1`"),
        ),
        (
            "0x1U",
            "unsupported unsigned integer literal `0x1U`",
            "0x1U",
            Some("unsigned integers are not supported; write `0x1`"),
        ),
        (
            "9223372036854775808",
            "integer literal `9223372036854775808` is too large for 64 bits",
            "9223372036854775808",
            None,
        ),
        (
            "-9223372036854775809",
            "integer literal `9223372036854775809` is too large for 64 bits",
            "9223372036854775809",
            None,
        ),
        (
            "-(9223372036854775808)",
            "integer literal `9223372036854775808` is too large for 64 bits",
            "9223372036854775808",
            None,
        ),
        (
            "0x10000000000000000",
            "integer literal `0x10000000000000000` is too large for 64 bits",
            "0x10000000000000000",
            None,
        ),
        ("0x", "expected hexadecimal digits after `0x`", "0x", None),
        ("1e+", "expected digits in the exponent of `1e+`", "1e+", None),
        ("1e400", "floating-point literal `1e400` is out of range", "1e400", None),
        (
            "a +",
            "expected an expression after `+`, found end of expression",
            "",
            None,
        ),
        ("a + )", "expected an expression after `+`, found `)`", ")", None),
        (")", "expected an expression, found `)`", ")", None),
        (
            "(a",
            "expected `)` to close the parenthesised expression, found end of expression",
            "",
            None,
        ),
        (
            "(a b)",
            "expected `)` to close the parenthesised expression, found `b`",
            "b",
            None,
        ),
        (
            "[1 2]",
            "expected `]` to close the list, found `2`",
            "2",
            Some("separate list elements with `,`"),
        ),
        (
            "[1, 2",
            "expected `]` to close the list, found end of expression",
            "",
            None,
        ),
        ("[,]", "expected an expression after `[`, found `,`", ",", None),
        (
            "{1: 2 3: 4}",
            "expected `}` to close the map, found `3`",
            "3",
            Some("separate map entries with `,`"),
        ),
        ("{1}", "expected `:` after the map key, found `}`", "}", None),
        (
            "a[1",
            "expected `]` to close the index, found end of expression",
            "",
            None,
        ),
        (
            "a ? b",
            "expected `:` after the `?` branch of the conditional, found end of expression",
            "",
            None,
        ),
        (
            "a ? b ? c : d : e",
            "expected `:` after the `?` branch of the conditional, found `?`",
            "?",
            Some("put parentheses around a conditional inside the `?` branch"),
        ),
        (
            "a.",
            "expected a field or method name after `.`, found end of expression",
            "",
            None,
        ),
        (
            "a.1",
            "expected an operator or the end of the expression, found `.1`",
            ".1",
            Some("to index a list, write `[1]`"),
        ),
        (
            "a.in",
            "expected a field or method name after `.`, found `in`",
            "in",
            Some("`in` is a keyword; read such a field with an index: `[\"in\"]`"),
        ),
        (
            "a b",
            "expected an operator or the end of the expression, found `b`",
            "b",
            None,
        ),
        (
            "a and b",
            "expected an operator or the end of the expression, found `and`",
            "and",
            Some("did you mean `&&`?"),
        ),
        (
            "(a or b)",
            "expected `)` to close the parenthesised expression, found `or`",
            "or",
            Some("did you mean `||`?"),
        ),
        (
            "a not in b",
            "expected an operator or the end of the expression, found `not`",
            "not",
            Some("negate with `!`, as in `!(a in b)`"),
        ),
        ("a)", "unexpected `)` without a matching `(`", ")", None),
        ("a]", "unexpected `]` without a matching `[`", "]", None),
        ("1 + 2 }", "unexpected `}` without a matching `{`", "}", None),
        (
            "if",
            "`if` is a reserved word and cannot be used as an identifier",
            "if",
            None,
        ),
        (
            "while(x)",
            "`while` is a reserved word and cannot be used as an identifier",
            "while",
            None,
        ),
        (
            "x + namespace",
            "`namespace` is a reserved word and cannot be used as an identifier",
            "namespace",
            None,
        ),
        (
            "Foo{a: 1}",
            "message construction `Foo{…}` is not supported",
            "Foo{",
            Some("use a map literal such as `{\"field\": value}`"),
        ),
        (
            "a.b.Foo{}",
            "message construction `a.b.Foo{…}` is not supported",
            "a.b.Foo{",
            None,
        ),
        (
            ".a.b",
            "leading-dot names such as `.name` are not supported",
            ".a",
            Some("remove the leading `.`"),
        ),
        ("a + .", "expected an expression, found `.`", ".", None),
        (
            "!",
            "expected an expression after `!`, found end of expression",
            "",
            None,
        ),
        ("in", "expected an expression, found `in`", "in", None),
        (&parens, &deep, "(", None),
    ];
    for (text, message, at, help) in cases {
        assert_error(text, message, at, help);
    }
}

#[test]
fn too_long_text_is_refused() {
    let text = format!("a{}", " ".repeat(MAX_LEN));
    let err = failed(&text);
    assert_eq!(
        err.message,
        format!("expression is too long ({} bytes; the limit is {MAX_LEN})", MAX_LEN + 1)
    );
    // Just under the limit is fine.
    assert_eq!(shape(&text[..MAX_LEN]), "a");
}

/// Runs `f` on a thread with a small stack, so that a recursion the depth
/// limit failed to bound shows up as a crash rather than passing by luck.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(f)
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    if handle.join().is_err() {
        panic!("the parser panicked");
    }
}

/// Builds text nesting `unit` `n` times: `open` repeated, a core, `close`
/// repeated.
fn nest(open: &str, core: &str, close: &str, n: usize) -> String {
    format!("{}{core}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn depth_limit_is_exact() {
    on_small_stack(|| {
        type Build = fn(usize) -> String;
        let shapes: Vec<(&str, Build)> = vec![
            ("parens", |n| nest("(", "a", ")", n)),
            ("lists", |n| nest("[", "a", "]", n)),
            ("maps", |n| nest("{a: ", "a", "}", n)),
            ("calls", |n| nest("f(", "a", ")", n)),
            ("indexes", |n| format!("a{}", "[a]".repeat(n))),
            ("index keys", |n| nest("a[", "a", "]", n)),
            ("nots", |n| format!("{}a", "!".repeat(n))),
            ("negations", |n| format!("{}a", "-".repeat(n))),
            ("negated literal", |n| format!("{}1", "-".repeat(n + 1))),
            ("selects", |n| format!("a{}", ".b".repeat(n))),
            ("methods", |n| format!("a{}", ".f()".repeat(n))),
            ("left chains", |n| format!("a{}", " + a".repeat(n))),
            ("right chains", |n| nest("a + (", "a", ")", n)),
            ("conditionals", |n| format!("{}a", "a ? a : ".repeat(n))),
            ("conditional branches", |n| nest("a ? (", "a", ") : a", n)),
        ];
        for (name, build) in shapes {
            let ok = build(MAX_DEPTH);
            assert!(
                parse(&ok).is_ok(),
                "{name}: {MAX_DEPTH} levels should parse: {:?}",
                parse(&ok)
            );
            let err = failed(&build(MAX_DEPTH + 2));
            assert!(
                err.message.starts_with("expression nests too deeply"),
                "{name}: {err:?}"
            );
        }
    });
}

#[test]
fn huge_nesting_fails_fast_without_overflow() {
    on_small_stack(|| {
        let n = MAX_LEN / 5;
        let inputs = [
            "(".repeat(MAX_LEN),
            "!".repeat(MAX_LEN - 1) + "a",
            "-".repeat(MAX_LEN - 1) + "1",
            "[".repeat(MAX_LEN),
            "{a:".repeat(n),
            "f(".repeat(n),
            "a[".repeat(n),
            format!("a{}", ".b".repeat(n)),
            format!("a{}", ".f()".repeat(n)),
            format!("a{}", "[0]".repeat(n)),
            format!("a{}", "+a".repeat(n)),
            format!("a{}", "&&a".repeat(n)),
            "a?a:".repeat(n) + "a",
            format!("{}a{}", "a+(".repeat(n / 2), ")".repeat(n / 2)),
            "-(".repeat(n),
            "!a.b+".repeat(n / 2) + "a",
            // Each level opens every binary precedence at once: the most
            // stack per level of nesting.
            nest("a||a&&a==a+a*(", "a", ")", n / 16),
            nest("a?(", "a", "):a", n / 5),
        ];
        for text in inputs {
            let err = failed(&text);
            assert!(
                err.message.starts_with("expression nests too deeply"),
                "{:?}: {err:?}",
                text.get(..12)
            );
        }
        // Far beyond the length limit, the length check answers first.
        let err = failed(&"(".repeat(1_000_000));
        assert!(err.message.starts_with("expression is too long"), "{err:?}");
    });
}

#[test]
fn printer_round_trips_examples() {
    let cases = [
        "a || b && c",
        "(a || b) && c",
        "a - (b - c)",
        "-(1)",
        "-(1).f()",
        "-1.f()",
        "--1",
        "-9223372036854775808",
        "1.0 + 1e300 * -2.5e-7",
        "a ? (b ? c : d) : e ? f : g",
        "(a ? b : c) ? d : e",
        "{(a ? b : c): d, 'k': [1, 2]}.size()",
        "!(a == b) && -a.b < -(a[0])",
        "'\\u0001\\n\"\\'é\\U0001F600'",
        "a.package.if(x) in [null, true]",
        "(1).f() + (1.5)[0] + (-1).g",
    ];
    for text in cases {
        let e = strip(parsed(text));
        let printed = e.to_string();
        assert_eq!(strip(parsed(&printed)), e, "`{text}` printed as `{printed}`");
    }
}

// ---- property tests ----

const TOKENS: &[&str] = &[
    "a",
    "b",
    "_x",
    "f",
    "has",
    "size",
    "in",
    "true",
    "false",
    "null",
    "if",
    "0",
    "1",
    "42",
    "9223372036854775808",
    "0x1f",
    "1u",
    "1.5",
    ".5",
    "1e3",
    "1e",
    "'s'",
    "\"t\"",
    "'''",
    "\"\"\"",
    "r'x'",
    "b'x'",
    "'\\n'",
    "'\\",
    "\\u",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    ",",
    ":",
    "?",
    "+",
    "-",
    "*",
    "/",
    "%",
    "!",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "=",
    "&",
    "|",
    "//",
    "\n",
    " ",
    "é",
    "#",
];

fn ident_name() -> impl Strategy<Value = String> {
    "[_a-zA-Z][_a-zA-Z0-9]{0,5}".prop_filter("not a keyword or reserved word", |s| {
        !RESERVED.contains(&s.as_str()) && !matches!(s.as_str(), "true" | "false" | "null" | "in")
    })
}

/// Field and method names may be reserved words, never keywords.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        ident_name(),
        proptest::sample::select(RESERVED.to_vec()).prop_map(str::to_owned),
    ]
}

fn name(text: String) -> Name {
    Name {
        text,
        span: Span::default(),
    }
}

fn ex(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        Just(ExprKind::Null),
        any::<bool>().prop_map(ExprKind::Bool),
        any::<i64>().prop_map(ExprKind::Int),
        (-5i64..5).prop_map(ExprKind::Int),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(ExprKind::Float),
        (-3.0f64..3.0).prop_map(ExprKind::Float),
        any::<String>().prop_map(ExprKind::String),
        ident_name().prop_map(ExprKind::Ident),
    ]
    .prop_map(ex);
    let unary = prop_oneof![Just(UnaryOp::Not), Just(UnaryOp::Neg)];
    let binary = proptest::sample::select(vec![
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::In,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
    ]);
    leaf.prop_recursive(6, 64, 4, move |inner| {
        let boxed = inner.clone().prop_map(Box::new);
        prop_oneof![
            (boxed.clone(), member_name()).prop_map(|(operand, f)| ExprKind::Select {
                operand,
                field: name(f)
            }),
            (boxed.clone(), boxed.clone()).prop_map(|(operand, index)| ExprKind::Index { operand, index }),
            (ident_name(), proptest::collection::vec(inner.clone(), 0..3)).prop_map(|(f, args)| {
                ExprKind::Call {
                    target: None,
                    function: name(f),
                    args,
                }
            }),
            (
                boxed.clone(),
                member_name(),
                proptest::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(t, f, args)| ExprKind::Call {
                    target: Some(t),
                    function: name(f),
                    args,
                }),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(ExprKind::List),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(ExprKind::Map),
            (unary.clone(), boxed.clone()).prop_map(|(op, operand)| ExprKind::Unary { op, operand }),
            (binary.clone(), boxed.clone(), boxed.clone()).prop_map(|(op, lhs, rhs)| ExprKind::Binary { op, lhs, rhs }),
            (boxed.clone(), boxed.clone(), boxed)
                .prop_map(|(cond, then, otherwise)| { ExprKind::Conditional { cond, then, otherwise } }),
        ]
        .prop_map(ex)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn never_panics_on_cel_like_tokens(
        parts in proptest::collection::vec(
            (proptest::sample::select(TOKENS), proptest::sample::select(&["", " "][..])),
            0..40,
        )
    ) {
        let text: String = parts.iter().flat_map(|(t, sep)| [*t, *sep]).collect();
        if let Ok(e) = parse(&text) {
            // Whatever parses also survives a print and re-parse.
            let printed = e.to_string();
            prop_assert_eq!(strip(parsed(&printed)), strip(e), "printed as `{}`", printed);
        }
    }

    #[test]
    fn print_then_parse_round_trips(e in arb_expr()) {
        let printed = e.to_string();
        match parse(&printed) {
            Ok(back) => prop_assert_eq!(strip(back), e, "printed as `{}`", printed),
            Err(err) => prop_assert!(false, "`{}` failed to re-parse: {:?}", printed, err),
        }
    }
}

#[test]
fn wide_inputs_parse_quickly() {
    let started = std::time::Instant::now();
    let n = MAX_LEN / 10;
    let list = format!("[{}]", "1, ".repeat(n));
    let map = format!("{{{}}}", "'k': v, ".repeat(n));
    let args = format!("f({}0)", "a.b, ".repeat(n));
    let string = format!("'{}'", "é\\n".repeat(n));
    let comment = format!("a // {}\n", "x".repeat(MAX_LEN - 10));
    let flat = format!("[{}]", "(a + b) * -c.d[0] > 1 ? x : y, ".repeat(MAX_LEN / 40));
    for text in [list, map, args, string, comment, flat] {
        let e = parsed(&text);
        let expected = text.split(" //").next().unwrap_or("");
        assert_eq!(slice(&text, e.span), expected);
        // Printing and re-parsing a wide tree works too.
        assert_eq!(strip(parsed(&e.to_string())), strip(e));
    }
    // Generous, for slow machines: a quadratic parser takes minutes here.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
