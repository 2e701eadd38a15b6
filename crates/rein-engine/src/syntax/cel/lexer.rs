//! Tokens of CEL text, produced one at a time on demand.
//!
//! Lexing lazily means the parser reports whichever error comes first in the
//! text, and never scans past the point where it gives up.

use super::ParseError;

/// What a token is. Names, operators and keywords keep no text: the parser
/// reads it back from the token's byte range.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ident,
    /// The magnitude of an integer literal, at most 2^63 so that a folded
    /// `-` can still reach `i64::MIN`.
    Int(u64),
    Float(f64),
    Str(String),
    True,
    False,
    Null,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Dot,
    Comma,
    Colon,
    Question,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Eof,
}

/// One token and its byte range in the expression text.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
}

/// The largest magnitude an integer literal may have: `i64::MIN` negated.
const MAX_MAGNITUDE: u64 = 1 << 63;

/// Longest piece of source quoted inside an error message.
const QUOTE_LIMIT: usize = 40;

/// Splits CEL text into tokens.
pub(super) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Lexer { text, pos: 0 }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or("")
    }

    fn char_at(&self, at: usize) -> Option<char> {
        self.text.get(at..).and_then(|s| s.chars().next())
    }

    fn skip_trivia(&mut self) {
        loop {
            match self.byte(self.pos) {
                // CEL's whitespace set: space, tab, newline, return, form feed.
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c) => self.pos += 1,
                Some(b'/') if self.byte(self.pos + 1) == Some(b'/') => {
                    let rest = self.text.get(self.pos..).unwrap_or("");
                    self.pos += rest.find('\n').map_or(rest.len(), |i| i + 1);
                }
                _ => return,
            }
        }
    }

    /// The next token, or an `Eof` token at the end of the text.
    pub(super) fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia();
        let start = self.pos;
        let Some(b) = self.byte(start) else {
            return Ok(Token {
                kind: Tok::Eof,
                start,
                end: start,
            });
        };
        let next = self.byte(start + 1);
        let (kind, len) = match b {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b',' => (Tok::Comma, 1),
            b':' => (Tok::Colon, 1),
            b'?' => (Tok::Question, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'%' => (Tok::Percent, 1),
            b'=' if next == Some(b'=') => (Tok::EqEq, 2),
            b'=' => {
                return Err(ParseError::new("unexpected `=`", start, start + 1).with_help("did you mean `==`?"));
            }
            b'!' if next == Some(b'=') => (Tok::NotEq, 2),
            b'!' => (Tok::Bang, 1),
            b'<' if next == Some(b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if next == Some(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'&' if next == Some(b'&') => (Tok::AndAnd, 2),
            b'&' => {
                return Err(ParseError::new("unexpected `&`", start, start + 1).with_help("use `&&`"));
            }
            b'|' if next == Some(b'|') => (Tok::OrOr, 2),
            b'|' => {
                return Err(ParseError::new("unexpected `|`", start, start + 1).with_help("use `||`"));
            }
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => return self.number(start),
            b'.' => (Tok::Dot, 1),
            b'0'..=b'9' => return self.number(start),
            b'"' | b'\'' => {
                let (value, end) = self.string(start, start, false)?;
                self.pos = end;
                return Ok(Token {
                    kind: Tok::Str(value),
                    start,
                    end,
                });
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => return self.word(start),
            _ => {
                let c = self.char_at(start).unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(ParseError::new(
                    format!("unexpected character `{}`", c.escape_debug()),
                    start,
                    start + c.len_utf8(),
                ));
            }
        };
        self.pos = start + len;
        Ok(Token {
            kind,
            start,
            end: start + len,
        })
    }

    /// An identifier or keyword, or a prefixed string such as `r"…"`.
    fn word(&mut self, start: usize) -> Result<Token, ParseError> {
        let mut end = start;
        while self.byte(end).is_some_and(|b| b == b'_' || b.is_ascii_alphanumeric()) {
            end += 1;
        }
        let word = self.slice(start, end);
        if matches!(self.byte(end), Some(b'"' | b'\'')) {
            let lower = word.to_ascii_lowercase();
            if lower == "r" {
                let (value, str_end) = self.string(start, end, true)?;
                self.pos = str_end;
                return Ok(Token {
                    kind: Tok::Str(value),
                    start,
                    end: str_end,
                });
            }
            if matches!(lower.as_str(), "b" | "br" | "rb") {
                // Lex the literal anyway so the error covers all of it.
                let (_, str_end) = self.string(start, end, lower.contains('r'))?;
                return Err(ParseError::new("bytes literals are not supported", start, str_end)
                    .with_help("use a string literal instead"));
            }
        }
        self.pos = end;
        let kind = match word {
            "true" => Tok::True,
            "false" => Tok::False,
            "null" => Tok::Null,
            "in" => Tok::In,
            _ => Tok::Ident,
        };
        Ok(Token { kind, start, end })
    }

    fn digits_end(&self, mut at: usize, hex: bool) -> usize {
        while self
            .byte(at)
            .is_some_and(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
        {
            at += 1;
        }
        at
    }

    /// An integer or floating-point literal starting at a digit or at a `.`
    /// followed by a digit.
    fn number(&mut self, start: usize) -> Result<Token, ParseError> {
        if self.byte(start) == Some(b'0') && self.byte(start + 1) == Some(b'x') {
            let digits = start + 2;
            let end = self.digits_end(digits, true);
            if end == digits {
                return Err(ParseError::new("expected hexadecimal digits after `0x`", start, end));
            }
            let magnitude = u64::from_str_radix(self.slice(digits, end), 16).ok();
            return self.integer(start, end, magnitude);
        }
        let mut end = self.digits_end(start, false);
        let mut float = false;
        if self.byte(end) == Some(b'.') && self.byte(end + 1).is_some_and(|b| b.is_ascii_digit()) {
            float = true;
            end = self.digits_end(end + 1, false);
        }
        if matches!(self.byte(end), Some(b'e' | b'E')) {
            let mut at = end + 1;
            if matches!(self.byte(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exp_end = self.digits_end(at, false);
            if exp_end == at {
                return Err(ParseError::new(
                    format!(
                        "expected digits in the exponent of `{}`",
                        shorten(self.slice(start, at))
                    ),
                    start,
                    at,
                ));
            }
            float = true;
            end = exp_end;
        }
        if !float {
            let magnitude = self.slice(start, end).parse::<u64>().ok();
            return self.integer(start, end, magnitude);
        }
        let text = self.slice(start, end);
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => {
                self.pos = end;
                Ok(Token {
                    kind: Tok::Float(value),
                    start,
                    end,
                })
            }
            _ => Err(ParseError::new(
                format!("floating-point literal `{}` is out of range", shorten(text)),
                start,
                end,
            )),
        }
    }

    /// Finishes an integer literal whose digits span `start..end`;
    /// `magnitude` is `None` when the digits did not fit in a `u64`.
    fn integer(&mut self, start: usize, end: usize, magnitude: Option<u64>) -> Result<Token, ParseError> {
        let text = self.slice(start, end);
        if matches!(self.byte(end), Some(b'u' | b'U')) {
            return Err(ParseError::new(
                format!(
                    "unsupported unsigned integer literal `{}`",
                    shorten(self.slice(start, end + 1))
                ),
                start,
                end + 1,
            )
            .with_help(format!(
                "unsigned integers are not supported; write `{}`",
                shorten(text)
            )));
        }
        match magnitude {
            Some(m) if m <= MAX_MAGNITUDE => {
                self.pos = end;
                Ok(Token {
                    kind: Tok::Int(m),
                    start,
                    end,
                })
            }
            _ => Err(too_large(text, start, end)),
        }
    }

    /// A string literal whose token starts at `start` (at a prefix such as
    /// `r`, if any) and whose opening quote is at `quote`. Returns the value
    /// and the end of the literal.
    fn string(&self, start: usize, quote: usize, raw: bool) -> Result<(String, usize), ParseError> {
        let q = self.byte(quote).unwrap_or(b'"');
        let triple = self.byte(quote + 1) == Some(q) && self.byte(quote + 2) == Some(q);
        let delimiter = if triple {
            if q == b'"' {
                "\"\"\""
            } else {
                "'''"
            }
        } else if q == b'"' {
            "\""
        } else {
            "'"
        };
        let mut at = quote + delimiter.len();
        let mut value = String::new();
        loop {
            let Some(c) = self.char_at(at) else {
                return Err(ParseError::new("unterminated string", start, at)
                    .with_help(format!("add the closing `{delimiter}`")));
            };
            if c == char::from(q) {
                if !triple {
                    return Ok((value, at + 1));
                }
                if self.byte(at + 1) == Some(q) && self.byte(at + 2) == Some(q) {
                    return Ok((value, at + 3));
                }
            } else if !triple && (c == '\n' || c == '\r') {
                return Err(ParseError::new("unterminated string", start, at).with_help(
                    "a string cannot span lines unless it is triple-quoted (`\"\"\"…\"\"\"`); \
                     use `\\n` for a line break",
                ));
            } else if c == '\\' && !raw {
                let (resolved, len) = self.escape(start, at)?;
                value.push(resolved);
                at += len;
                continue;
            }
            value.push(c);
            at += c.len_utf8();
        }
    }

    /// The escape sequence whose backslash is at `at`, inside the string
    /// literal starting at `start`: the character it stands for and its
    /// length in bytes.
    fn escape(&self, start: usize, at: usize) -> Result<(char, usize), ParseError> {
        let Some(c) = self.char_at(at + 1) else {
            return Err(ParseError::new("unterminated string", start, at + 1));
        };
        let simple = match c {
            '\\' | '"' | '\'' | '`' | '?' => Some(c),
            'a' => Some('\u{07}'),
            'b' => Some('\u{08}'),
            'f' => Some('\u{0c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{0b}'),
            _ => None,
        };
        if let Some(resolved) = simple {
            return Ok((resolved, 2));
        }
        let (digits, radix) = match c {
            'x' | 'X' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='3' => (3, 8),
            _ => {
                return Err(ParseError::new(
                    format!("invalid escape sequence `\\{}`", c.escape_debug()),
                    at,
                    at + 1 + c.len_utf8(),
                )
                .with_help(
                    "valid escapes are \\\\ \\\" \\' \\` \\? \\a \\b \\f \\n \\r \\t \\v, \
                     \\xHH, \\uHHHH, \\UHHHHHHHH and three-digit octal \\ooo",
                ));
            }
        };
        // Octal digits include the one already read; the others follow the
        // letter.
        let first = if radix == 8 { at + 1 } else { at + 2 };
        let mut end = first;
        while end < first + digits && self.byte(end).is_some_and(|b| char::from(b).is_digit(radix)) {
            end += 1;
        }
        let sequence = self.slice(at, end);
        if end < first + digits {
            let kind = if radix == 8 {
                "octal digits"
            } else {
                "hexadecimal digits"
            };
            return Err(ParseError::new(
                format!("invalid escape sequence `{sequence}`: expected {digits} {kind}"),
                at,
                end.max(at + 2),
            ));
        }
        let code = u32::from_str_radix(self.slice(first, end), radix).unwrap_or(u32::MAX);
        match char::from_u32(code) {
            Some(resolved) => Ok((resolved, end - at)),
            None => {
                let why = if (0xd800..0xe000).contains(&code) {
                    "surrogate code points are not allowed"
                } else {
                    "it is beyond the largest code point U+10FFFF"
                };
                Err(ParseError::new(
                    format!("invalid unicode escape `{sequence}`: {why}"),
                    at,
                    end,
                ))
            }
        }
    }
}

/// The error for an integer literal that does not fit.
pub(super) fn too_large(text: &str, start: usize, end: usize) -> ParseError {
    ParseError::new(
        format!("integer literal `{}` is too large for 64 bits", shorten(text)),
        start,
        end,
    )
}

/// `text`, cut short so that an error message stays readable.
pub(super) fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or("")),
        None => text.to_owned(),
    }
}
