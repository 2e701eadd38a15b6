//! JSON text read once into a flat, borrowed tape that the contract checker
//! reads in place (a [`ContractValue`]), instead of a `serde_json::Value`
//! with a heap allocation per object, key and string.
//!
//! serde_json does the reading (the same grammar, escapes, numbers and
//! nesting limit as [`crate::Request::from_json_str`]); this module only
//! chooses where the values go. Strings without escapes borrow the text.
//! The reader is deliberately narrower than the request reader: it refuses
//! (and the caller falls back to the request reader, whose error texts are
//! the ones users see) a repeated key at any depth and a text with a
//! number that [`crate::json::check_number_texts`] may refuse.

use crate::contract::Violation;
use crate::contract::{json_kind, ContractValue, Node};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value as Json};
use std::borrow::Cow;
use std::fmt;

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
/// pair; larger ones are sorted.
const PAIRWISE_KEYS: usize = 16;

impl<'a> Tape<'a> {
    /// Reads `text`, or `None` when the text is not JSON, repeats a key in
    /// an object, or may hold a number the request reader refuses.
    pub(super) fn read(text: &'a str) -> Option<Tape<'a>> {
        // Indices are u32: a larger text goes to the request reader.
        if u32::try_from(text.len()).is_err() {
            return None;
        }
        let mut tape = Tape {
            // A token takes at least a few bytes of text.
            toks: Vec::with_capacity(text.len() / 6 + 4),
            items: Vec::new(),
            pending: Vec::new(),
            whole_double: false,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        Any(&mut tape).deserialize(&mut de).ok()?;
        de.end().ok()?;
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

    /// Whether the object at `at` (complete, `len` keys) has a key twice.
    fn repeats_a_key(&self, at: u32, len: usize) -> bool {
        if len < 2 {
            return false;
        }
        let keys = Cursor { tape: self, at }.keys();
        if len <= PAIRWISE_KEYS {
            // On the stack: the usual object costs no allocation.
            let mut seen: [&str; PAIRWISE_KEYS] = [""; PAIRWISE_KEYS];
            for (n, key) in keys.enumerate() {
                if seen[..n].contains(&key) {
                    return true;
                }
                seen[n] = key;
            }
            false
        } else {
            let mut all: Vec<&str> = keys.collect();
            all.sort_unstable();
            all.windows(2).any(|w| w[0] == w[1])
        }
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

/// Reads one value of any kind onto the tape.
struct Any<'t, 'a>(&'t mut Tape<'a>);

impl<'de, 't> DeserializeSeed<'de> for Any<'t, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 't> Visitor<'de> for Any<'t, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push(Tok::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push(Tok::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(Tok::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        if v.is_finite() && v.fract() == 0.0 {
            self.0.whole_double = true;
        }
        // As `crate::json` reads it: a float JSON cannot hold is null.
        self.0.push(Number::from_f64(v).map_or(Tok::Null, Tok::Number));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.0.push(Tok::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push(Tok::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.0.push(Tok::Str(Cow::Owned(v)));
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.0.push(Tok::Null);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(Tok::Null);
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let tape = self.0;
        let at = tape.push(Tok::List {
            len: 0,
            items: 0,
            end: 0,
        });
        let first = tape.pending.len();
        loop {
            let next = tape.toks.len() as u32;
            if seq.next_element_seed(Any(&mut *tape))?.is_none() {
                break;
            }
            tape.pending.push(next);
        }
        let items = tape.items.len() as u32;
        let len = (tape.pending.len() - first) as u32;
        tape.items.extend(tape.pending.drain(first..));
        let end = tape.toks.len() as u32;
        tape.toks[at as usize] = Tok::List { len, items, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let tape = self.0;
        let at = tape.push(Tok::Object { len: 0, end: 0 });
        let mut len = 0usize;
        while map.next_key_seed(Key(&mut *tape))?.is_some() {
            map.next_value_seed(Any(&mut *tape))?;
            len += 1;
        }
        let end = tape.toks.len() as u32;
        tape.toks[at as usize] = Tok::Object { len: len as u32, end };
        if tape.repeats_a_key(at, len) {
            // The request reader names the key and where it is.
            return Err(de::Error::custom("a key appears twice in one object"));
        }
        Ok(())
    }
}

/// Reads an object's key onto the tape.
struct Key<'t, 'a>(&'t mut Tape<'a>);

impl<'de, 't> DeserializeSeed<'de> for Key<'t, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(Any(self.0))
    }
}
