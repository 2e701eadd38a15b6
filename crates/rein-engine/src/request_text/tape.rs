//! JSON text read once into a flat, borrowed tape that the contract checker
//! reads in place (a [`ContractValue`]), instead of a `serde_json::Value`
//! with a heap allocation per object, key and string.
//!
//! The reader takes a strict subset of what serde_json reads (RFC 8259's
//! grammar, as [`crate::Request::from_json_str`] reads it), and gives each
//! value the same meaning: strings without escapes borrow the text; an
//! integer of up to 18 digits is read here, every other number by
//! serde_json's own number reader (`Number::from_str`, the same parser, so
//! the same rounding). It refuses (and the caller falls back to the request
//! reader, whose error texts are the ones users see) whatever it is not
//! sure of: any syntax error, a control character or a lone surrogate in a
//! string, nesting deeper than [`MAX_DEPTH`], a repeated key at any depth,
//! and a text with a number that [`crate::json::check_number_texts`] may
//! refuse.

use crate::contract::Violation;
use crate::contract::{json_kind, ContractValue, Node};
use serde_json::{Number, Value as Json};
use std::borrow::Cow;
use std::str::FromStr;

/// One value of the tape. A list or an object is followed by its
/// elements (an object's as key, value, key, value...), each with its own
/// descendants; `end` is the index just past the last of them.
#[derive(Debug)]
enum Tok<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    /// `items` indexes [`Tape::items`], where the `len` elements' own
    /// indices are, so that element `i` is found without a walk.
    List {
        len: u32,
        items: u32,
        end: u32,
    },
    Object {
        len: u32,
        end: u32,
    },
}

/// A JSON document read into a tape; the root is at index 0.
#[derive(Debug)]
pub(super) struct Tape<'a> {
    toks: Vec<Tok<'a>>,
    items: Vec<u32>,
    /// Elements of the lists being read, until their list is finished.
    pending: Vec<u32>,
    /// A number was read as a whole double: its text may be one that
    /// [`crate::json::check_number_texts`] refuses (`2.9999999999999999`).
    whole_double: bool,
}

/// Objects up to this many keys are searched for a repeated key pair by
/// pair as they are read; larger ones are sorted once read.
const PAIRWISE_KEYS: usize = 16;

impl<'a> Tape<'a> {
    /// Reads `text`, or `None` when the text is not JSON, repeats a key in
    /// an object, or may hold a number the request reader refuses.
    pub(super) fn read(text: &'a str) -> Option<Tape<'a>> {
        // Indices are u32: a larger text goes to the request reader.
        if u32::try_from(text.len()).is_err() {
            return None;
        }
        let mut reader = Reader {
            text,
            bytes: text.as_bytes(),
            at: 0,
            tape: Tape {
                // A token takes at least a few bytes of text.
                toks: Vec::with_capacity(text.len() / 6 + 4),
                items: Vec::new(),
                pending: Vec::new(),
                whole_double: false,
            },
        };
        reader.value(0)?;
        reader.skip_whitespace();
        if reader.at != text.len() {
            return None;
        }
        let tape = reader.tape;
        if tape.whole_double && crate::json::check_number_texts(text.as_bytes()).is_err() {
            return None;
        }
        Some(tape)
    }

    /// The root value.
    pub(super) fn root(&self) -> Cursor<'_, 'a> {
        Cursor { tape: self, at: 0 }
    }

    fn push(&mut self, tok: Tok<'a>) -> u32 {
        let at = self.toks.len() as u32;
        self.toks.push(tok);
        at
    }

    /// The index just past value `at` and its descendants.
    fn end_of(&self, at: u32) -> u32 {
        match self.toks[at as usize] {
            Tok::List { end, .. } | Tok::Object { end, .. } => end,
            _ => at + 1,
        }
    }

    /// Whether the object at `at` has a key twice.
    fn repeats_a_key(&self, at: u32) -> bool {
        let mut all: Vec<&str> = Cursor { tape: self, at }.keys().collect();
        all.sort_unstable();
        all.windows(2).any(|w| w[0] == w[1])
    }
}

/// A value of a [`Tape`], read by the contract checker.
#[derive(Clone, Copy)]
pub(super) struct Cursor<'t, 'a> {
    tape: &'t Tape<'a>,
    at: u32,
}

impl<'t, 'a> Cursor<'t, 'a> {
    fn tok(&self) -> &'t Tok<'a> {
        &self.tape.toks[self.at as usize]
    }

    /// The string this value is, if it is one.
    pub(super) fn as_str(&self) -> Option<&'t str> {
        match self.tok() {
            Tok::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this value is an object.
    pub(super) fn is_object(&self) -> bool {
        matches!(self.tok(), Tok::Object { .. })
    }

    /// Whether this value is `null`.
    pub(super) fn is_null(&self) -> bool {
        matches!(self.tok(), Tok::Null)
    }

    /// The keys of an object, in the text's order (none for another
    /// value).
    fn keys(self) -> impl Iterator<Item = &'t str> {
        let (tape, end) = match *self.tok() {
            Tok::Object { end, .. } => (self.tape, end),
            _ => (self.tape, self.at + 1),
        };
        let mut i = self.at + 1;
        std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let Tok::Str(key) = &tape.toks[i as usize] else {
                return None;
            };
            i = tape.end_of(i + 1);
            Some(&**key)
        })
    }

    /// Calls `visit` with each key and value of an object, in the text's
    /// order (nothing for another value).
    pub(super) fn each_entry<E>(&self, mut visit: impl FnMut(&'t str, Self) -> Result<(), E>) -> Result<(), E> {
        let Tok::Object { end, .. } = *self.tok() else {
            return Ok(());
        };
        let mut i = self.at + 1;
        while i < end {
            let Tok::Str(key) = &self.tape.toks[i as usize] else {
                break;
            };
            visit(
                key,
                Cursor {
                    tape: self.tape,
                    at: i + 1,
                },
            )?;
            i = self.tape.end_of(i + 1);
        }
        Ok(())
    }

    /// This value as a `serde_json::Value` (for a message only).
    fn to_json(self) -> Json {
        match self.tok() {
            Tok::Null => Json::Null,
            Tok::Bool(b) => Json::Bool(*b),
            Tok::Number(n) => Json::Number(n.clone()),
            Tok::Str(s) => Json::String(s.to_string()),
            Tok::List { len, .. } => Json::Array(
                (0..*len as usize)
                    .filter_map(|i| self.item(i))
                    .map(Cursor::to_json)
                    .collect(),
            ),
            Tok::Object { .. } => {
                let mut map = serde_json::Map::new();
                let _ = self.each_entry::<()>(|k, v| {
                    map.insert(k.to_string(), v.to_json());
                    Ok(())
                });
                Json::Object(map)
            }
        }
    }
}

impl<'t, 'a> ContractValue for Cursor<'t, 'a> {
    fn node(&self) -> Node<'_> {
        match self.tok() {
            Tok::Null => Node::Null,
            Tok::Bool(b) => Node::Bool(*b),
            Tok::Number(n) => Node::Number(n.clone()),
            Tok::Str(s) => Node::Str(Cow::Borrowed(s)),
            Tok::List { len, .. } => Node::List(*len as usize),
            Tok::Object { len, .. } => Node::Object(*len as usize),
        }
    }

    fn item(&self, i: usize) -> Option<Self> {
        let Tok::List { len, items, .. } = *self.tok() else {
            return None;
        };
        if i >= len as usize {
            return None;
        }
        let at = *self.tape.items.get(items as usize + i)?;
        Some(Cursor { tape: self.tape, at })
    }

    fn entries(&self, visit: &mut dyn FnMut(&str, Self) -> Result<(), Violation>) -> Result<(), Violation> {
        self.each_entry(visit)
    }

    fn kind(&self) -> &'static str {
        match self.tok() {
            Tok::Number(n) => json_kind(&Json::Number(n.clone())),
            Tok::Null => "null",
            Tok::Bool(_) => "a boolean",
            Tok::Str(_) => "a string",
            Tok::List { .. } => "a list",
            Tok::Object { .. } => "an object",
        }
    }

    fn shown(&self) -> String {
        self.to_json().to_string()
    }
}

/// Nesting deeper than this is left to the request reader (serde_json's
/// own limit is 128).
const MAX_DEPTH: usize = 100;

/// The bytes that end a run of plain characters in a string: the quote,
/// a backslash, a control character.
static STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// The reader: a cursor in the text and the tape it fills. Every method
/// returns `None` where the text is not plainly JSON.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    tape: Tape<'a>,
}

impl<'a> Reader<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.list(depth + 1),
            b'"' => {
                let s = self.string()?;
                self.tape.push(Tok::Str(s));
                Some(())
            }
            b't' => self.literal("true", Tok::Bool(true)),
            b'f' => self.literal("false", Tok::Bool(false)),
            b'n' => self.literal("null", Tok::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, tok: Tok<'a>) -> Option<()> {
        if !self.bytes[self.at..].starts_with(word.as_bytes()) {
            return None;
        }
        self.at += word.len();
        self.tape.push(tok);
        Some(())
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1; // `{`
        let at = self.tape.push(Tok::Object { len: 0, end: 0 });
        let mut len = 0usize;
        // The tape positions of the first keys, to find a repeated one as
        // each is read (a larger object is searched once it is complete).
        let mut keys = [0u32; PAIRWISE_KEYS];
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                if len < PAIRWISE_KEYS {
                    let repeated = keys[..len].iter().any(|&k| match &self.tape.toks[k as usize] {
                        Tok::Str(seen) => seen.len() == key.len() && *seen == key,
                        _ => false,
                    });
                    if repeated {
                        return None;
                    }
                    keys[len] = self.tape.push(Tok::Str(key));
                } else {
                    self.tape.push(Tok::Str(key));
                }
                if self.peek()? != b':' {
                    return None;
                }
                self.at += 1;
                self.value(depth)?;
                len += 1;
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let end = self.tape.toks.len() as u32;
        self.tape.toks[at as usize] = Tok::Object { len: len as u32, end };
        (len <= PAIRWISE_KEYS || !self.tape.repeats_a_key(at)).then_some(())
    }

    fn list(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1; // `[`
        let at = self.tape.push(Tok::List {
            len: 0,
            items: 0,
            end: 0,
        });
        let first = self.tape.pending.len();
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                let next = self.tape.toks.len() as u32;
                self.value(depth)?;
                self.tape.pending.push(next);
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let items = self.tape.items.len() as u32;
        let len = (self.tape.pending.len() - first) as u32;
        let Tape {
            items: all, pending, ..
        } = &mut self.tape;
        all.extend(pending.drain(first..));
        let end = self.tape.toks.len() as u32;
        self.tape.toks[at as usize] = Tok::List { len, items, end };
        Some(())
    }

    /// A string at `"`: borrowed when it has no escape.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at + 1;
        let mut i = start
            + self
                .bytes
                .get(start..)?
                .iter()
                .position(|&b| STRING_STOP[usize::from(b)])?;
        match self.bytes[i] {
            b'"' => {
                self.at = i + 1;
                // Both ends are ASCII: a boundary of the UTF-8 text.
                return self.text.get(start..i).map(Cow::Borrowed);
            }
            b'\\' => {}
            // serde_json refuses a control character in a string.
            _ => return None,
        }
        let mut out = String::with_capacity(i - start + 8);
        out.push_str(self.text.get(start..i)?);
        loop {
            match *self.bytes.get(i)? {
                b'"' => {
                    self.at = i + 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let c = match *self.bytes.get(i + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let (c, used) = self.unicode_escape(i)?;
                            out.push(c);
                            i += used;
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(c);
                    i += 2;
                }
                0..=0x1f => return None,
                _ => {
                    // Copy the run up to the next quote or backslash.
                    let run = self.bytes[i..].iter().position(|&b| STRING_STOP[usize::from(b)])?;
                    out.push_str(self.text.get(i..i + run)?);
                    i += run;
                }
            }
        }
    }

    /// The character of the `\u` escape at `i`, and the bytes it took (a
    /// surrogate pair takes two escapes; a lone surrogate is refused).
    fn unicode_escape(&self, i: usize) -> Option<(char, usize)> {
        let unit = |at: usize| -> Option<u32> {
            let hex = self.text.get(at + 2..at + 6)?;
            if self.bytes.get(at + 1) != Some(&b'u') || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(hex, 16).ok()
        };
        let first = unit(i)?;
        match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(i + 6) != Some(&b'\\') {
                    return None;
                }
                let second = unit(i + 6)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return None;
                }
                let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                Some((char::from_u32(c)?, 12))
            }
            0xDC00..=0xDFFF => None,
            c => Some((char::from_u32(c)?, 6)),
        }
    }

    /// A number, by JSON's grammar.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        let mut i = start;
        let negative = self.bytes[i] == b'-';
        if negative {
            i += 1;
        }
        let digits_start = i;
        match *self.bytes.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.bytes.get(i) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let digits_end = i;
        let mut integer = true;
        if self.bytes.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let from = i;
            while let Some(b'0'..=b'9') = self.bytes.get(i) {
                i += 1;
            }
            if i == from {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(i) {
            integer = false;
            i += 1;
            if let Some(b'+' | b'-') = self.bytes.get(i) {
                i += 1;
            }
            let from = i;
            while let Some(b'0'..=b'9') = self.bytes.get(i) {
                i += 1;
            }
            if i == from {
                return None;
            }
        }
        self.at = i;
        let digits = &self.text[digits_start..digits_end];
        // An integer that surely fits is read here; -0, longer integers and
        // fractions by serde_json's own reader.
        let number = match digits.parse::<u64>() {
            Ok(v) if integer && digits.len() <= 18 && !negative => Number::from(v),
            Ok(v) if integer && digits.len() <= 18 && v != 0 => Number::from(-(v as i64)),
            _ => {
                let n = Number::from_str(&self.text[start..i]).ok()?;
                if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                    if f.is_finite() && f.fract() == 0.0 {
                        self.tape.whole_double = true;
                    }
                }
                n
            }
        };
        self.tape.push(Tok::Number(number));
        Some(())
    }
}
