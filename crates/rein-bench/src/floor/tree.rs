//! The JSON tree the floor parses request text into: `serde_json::Value`
//! as the product builds it.
//!
//! `cedar-policy`, a dev-dependency of this crate, turns on `serde_json`'s
//! `preserve_order`, and Cargo unifies features within a build, so in the
//! decide bench every `serde_json::Value` object is an `IndexMap`. `rein`
//! itself is built without it: its `Value` objects are `BTreeMap`s. The
//! floor parses into this tree instead, which has the shape of the
//! product's `Value` (a `BTreeMap` per object, a `String` per key and
//! string) whatever the features, so the JSON floor costs in the bench
//! what it would cost beside the product.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// A parsed JSON value (`serde_json::Value` without `preserve_order`).
#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number that fits an `i64`.
    Int(i64),
    /// A number that fits only a `u64`.
    Uint(u64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Tree>),
    /// An object, its keys ordered.
    Object(BTreeMap<String, Tree>),
}

impl Tree {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Tree> {
        match self {
            Tree::Object(map) => map.get(key),
            _ => None,
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Tree::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Tree, E> {
        Ok(Tree::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Tree, E> {
        Ok(i64::try_from(u).map_or(Tree::Uint(u), Tree::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Tree, E> {
        Ok(Tree::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
        Ok(Tree::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Tree, E> {
        Ok(Tree::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Tree>()? {
            out.insert(k, v);
        }
        Ok(Tree::Object(out))
    }
}
