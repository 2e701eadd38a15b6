//! A YAML reader that keeps the byte span of every node.
//!
//! Built on the event API of `saphyr-parser`. Its markers count characters,
//! not bytes, and its spans do not always start at the node itself (block
//! scalars start at their first content line, nodes with an anchor or tag at
//! the anchor or tag), so positions are converted and adjusted here. On top
//! of the events this module applies the YAML 1.2 core schema, expands
//! aliases (bounded against alias bombs), and rejects duplicate keys, deep
//! nesting and streams of more than one document.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle as SaphyrStyle, ScanError, Tag};

use crate::source::Span;

/// Deepest nesting of lists and mappings accepted, aliases included.
const MAX_DEPTH: usize = 128;
/// Most nodes a document may have once aliases are expanded.
const MAX_NODES: usize = 1_000_000;
/// Most scalar bytes that aliases may copy in one document; without it a
/// few hundred aliases of a long string could still exhaust memory.
const MAX_ALIAS_BYTES: usize = 64 * 1024 * 1024;
/// Prefix of the YAML core schema tags (`!!str` and friends).
const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// A YAML node with the byte span (in the file text) it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct YamlNode {
    /// The node's content.
    pub value: YamlValue,
    /// Bytes of the node's own text, anchor and tag excluded: a scalar from
    /// its first character (the opening quote, or the `|`/`>` indicator of a
    /// block scalar) to its last (a block scalar's trailing empty lines
    /// excluded); a list or mapping from its `[`, `{`, first `-` or first
    /// key to its closing bracket or the end of its last entry. An absent
    /// value (`key:`) has an empty span where it would be. An alias copy has
    /// the span of the alias (`*name`); the nodes inside a copied collection
    /// keep the spans of the anchored original.
    pub span: Span,
    /// How a scalar was written; [`ScalarStyle::NotScalar`] for collections.
    pub style: ScalarStyle,
}

/// The content of a [`YamlNode`].
#[derive(Clone, Debug, PartialEq)]
pub enum YamlValue {
    /// `~`, `null`, an empty value, or `!!null`.
    Null,
    /// `true` or `false` in any of the core schema spellings.
    Bool(bool),
    /// A decimal, `0x` hexadecimal or `0o` octal integer.
    Int(i64),
    /// A floating point number, including `.inf` and `.nan`.
    Float(f64),
    /// Any other scalar, and every quoted or block scalar.
    String(String),
    /// A list, in source order.
    Seq(Vec<YamlNode>),
    /// A mapping, entries in source order; keys may be any node.
    Map(Vec<(YamlNode, YamlNode)>),
}

/// How a scalar was written in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Unquoted.
    Plain,
    /// `'…'`.
    SingleQuoted,
    /// `"…"`.
    DoubleQuoted,
    /// A `|` block scalar.
    Literal,
    /// A `>` block scalar.
    Folded,
    /// The node is a list or a mapping.
    NotScalar,
}

/// Why a text could not be read as YAML, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct YamlError {
    /// What went wrong, in plain words.
    pub message: String,
    /// Where in the file text: the offending node, key or tag, or an empty
    /// span at the position of a syntax error.
    pub span: Span,
}

impl YamlError {
    fn new(message: impl Into<String>, span: Span) -> YamlError {
        YamlError {
            message: message.into(),
            span,
        }
    }
}

/// Parses one YAML document. An empty text yields a Null node.
///
/// # Errors
///
/// A [`YamlError`] for a syntax error, a second document, a duplicate key,
/// an unsupported tag or a value that does not fit its tag, an integer
/// beyond 64 bits, an unknown or self-containing alias, nesting deeper than
/// 128 levels, or more than 1,000,000 nodes once aliases are expanded.
pub fn parse(text: &str) -> Result<YamlNode, YamlError> {
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| builder.scan_error(&e))?;
        let start = builder.offsets.byte(span.start);
        let end = builder.offsets.byte(span.end).max(start);
        if !builder.event(event, start, end)? {
            break;
        }
    }
    // Only the tree holds nodes now, so those no alias shares are moved
    // into the result rather than copied.
    builder.anchors.clear();
    Ok(match builder.root.take() {
        Some(raw) => to_node(raw),
        None => YamlNode {
            value: YamlValue::Null,
            span: Span::new(0, 0),
            style: ScalarStyle::Plain,
        },
    })
}

impl YamlNode {
    /// For a string scalar: the byte offset in `text` (the whole file) of the
    /// character at byte offset `value_offset` of the decoded string value.
    ///
    /// Used to point diagnostics at a sub-range of a string (e.g. a column
    /// inside an expression written as a YAML string). Handles plain
    /// (single- and multi-line), single- and double-quoted (escapes
    /// included) and literal and folded block scalars. An offset inside a
    /// multi-byte character maps to that character; a character produced
    /// by line folding maps to the line break it came from. `value_offset`
    /// equal to the value's length maps to the end of the scalar's content:
    /// the closing quote, or just past the last non-break character. Never
    /// panics; falls back to the node's span start when the value cannot be
    /// aligned with the text (other kinds of node, alias copies, a `text`
    /// that is not the one parsed, an offset past the end).
    pub fn string_offset(&self, text: &str, value_offset: usize) -> usize {
        let start = self.span.start as usize;
        match self.string_offsets(text) {
            Some(alignment) => alignment.offset(value_offset).unwrap_or(start),
            None => start,
        }
    }

    /// Aligns the whole string value with `text` once, for mapping many
    /// offsets (see [`YamlNode::string_offset`]); `None` when the value cannot
    /// be aligned.
    pub fn string_offsets(&self, text: &str) -> Option<Alignment> {
        let YamlValue::String(value) = &self.value else {
            return None;
        };
        align(text, self.span.start as usize, self.style, value)
    }

    /// Short name of the node's kind for error messages: "null", "boolean",
    /// "integer", "number", "string", "list", "mapping".
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            YamlValue::Null => "null",
            YamlValue::Bool(_) => "boolean",
            YamlValue::Int(_) => "integer",
            YamlValue::Float(_) => "number",
            YamlValue::String(_) => "string",
            YamlValue::Seq(_) => "list",
            YamlValue::Map(_) => "mapping",
        }
    }
}

// ---------------------------------------------------------------------------
// Building the tree from events
// ---------------------------------------------------------------------------

/// Converts saphyr's character indices to byte offsets.
struct CharOffsets {
    /// Byte offset of every character; empty for ASCII text, where the two
    /// are the same and a table would only cost memory.
    starts: Vec<usize>,
    len: usize,
}

impl CharOffsets {
    fn new(text: &str) -> CharOffsets {
        let starts = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices().map(|(i, _)| i).collect()
        };
        CharOffsets {
            starts,
            len: text.len(),
        }
    }

    fn byte(&self, mark: Marker) -> usize {
        let index = mark.index();
        if self.starts.is_empty() {
            index.min(self.len)
        } else {
            self.starts.get(index).copied().unwrap_or(self.len)
        }
    }
}

/// The tree under construction. Children are shared so that an alias can
/// point at its anchored node without copying it; copies are made once, at
/// the end, when the size is known to be within bounds.
struct Raw {
    span: Span,
    style: ScalarStyle,
    kind: RawKind,
}

enum RawKind {
    Scalar(YamlValue),
    Seq(Vec<Rc<Raw>>),
    Map(Vec<(Rc<Raw>, Rc<Raw>)>),
    /// An alias: the anchored node, shown at the alias's own span.
    Alias(Rc<Raw>),
}

/// What an alias needs to know about the node it copies.
struct Anchored {
    raw: Rc<Raw>,
    nodes: usize,
    bytes: usize,
    height: usize,
}

/// A list or mapping whose end event has not arrived yet.
struct Frame {
    start: usize,
    flow: bool,
    anchor: usize,
    nodes_before: usize,
    bytes_before: usize,
    /// Greatest height among the children so far.
    height: usize,
    /// End of the last child, which ends a block collection: saphyr puts
    /// block ends at the next token, past blank lines and comments.
    last_end: usize,
    body: Body,
}

enum Body {
    Seq(Vec<Rc<Raw>>),
    Map {
        entries: Vec<(Rc<Raw>, Rc<Raw>)>,
        key: Option<Rc<Raw>>,
        /// The scalar keys so far, once the mapping is large enough that
        /// scanning `entries` for a duplicate would cost more.
        seen: Option<HashSet<KeyRepr>>,
    },
}

/// Mappings with at most this many entries are checked for a duplicate key
/// by scanning their entries: a policy's mappings are mostly small, where
/// hashing (and copying) every key costs more than comparing.
const SCAN_KEYS: usize = 16;

/// A scalar key's identity, for duplicate detection.
#[derive(PartialEq, Eq, Hash)]
enum KeyRepr {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

struct Builder<'t> {
    text: &'t str,
    offsets: CharOffsets,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    root: Option<Rc<Raw>>,
    /// Nodes so far, aliases counted at their expanded size.
    nodes: usize,
    /// Scalar bytes so far, aliases counted at their expanded size.
    scalar_bytes: usize,
    /// Scalar bytes copied by aliases.
    alias_bytes: usize,
    /// End of the latest event: the lower bound when searching the text for
    /// the start of a node whose event span starts too late.
    last_end: usize,
    documents: usize,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Builder<'t> {
        Builder {
            text,
            offsets: CharOffsets::new(text),
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            nodes: 0,
            scalar_bytes: 0,
            alias_bytes: 0,
            last_end: 0,
            documents: 0,
        }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    /// Handles one event; false once the stream is over.
    fn event(&mut self, event: Event<'_>, start: usize, end: usize) -> Result<bool, YamlError> {
        match event {
            Event::StreamEnd => return Ok(false),
            Event::Nothing | Event::StreamStart => {}
            // An explicit end (`...`) has a span; text after it is not the
            // next node's.
            Event::DocumentEnd => self.last_end = self.last_end.max(end),
            Event::DocumentStart(explicit) => {
                self.documents += 1;
                if self.documents > 1 {
                    let span = if explicit {
                        Span::new(start, end)
                    } else {
                        Span::new(start, start)
                    };
                    return Err(YamlError::new("only one YAML document is allowed", span));
                }
                // An implicit start carries the span of the document's first
                // token, which may lie past where the root node begins.
                if explicit {
                    self.last_end = self.last_end.max(end);
                }
            }
            Event::Alias(id) => self.alias(id, start, end)?,
            Event::Scalar(value, style, anchor, tag) => {
                self.scalar(value, style, anchor, tag.as_deref(), start, end)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.open(false, anchor, tag.as_deref(), start, end)?;
            }
            Event::MappingStart(anchor, tag) => {
                self.open(true, anchor, tag.as_deref(), start, end)?;
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(end)?,
        }
        Ok(true)
    }

    fn scan_error(&self, e: &ScanError) -> YamlError {
        let pos = self.offsets.byte(*e.marker());
        let info = e.info();
        if info.contains("unknown anchor") {
            let name = token_at(self.text, pos);
            return YamlError::new(format!("unknown anchor `{name}`"), Span::new(pos, pos + name.len()));
        }
        // saphyr's own limit on flow nesting (255 levels) can strike before
        // our check sees the events, so report it the same way.
        if info.contains("recursion limit") {
            return YamlError::new(depth_message(), Span::new(pos, pos));
        }
        YamlError::new(info, Span::new(pos, pos))
    }

    fn count(&mut self, nodes: usize, bytes: usize, span: Span) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.scalar_bytes = self.scalar_bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES {
            return Err(YamlError::new(
                format!("the document has more than {MAX_NODES} nodes once aliases are expanded"),
                span,
            ));
        }
        Ok(())
    }

    fn alias(&mut self, id: usize, start: usize, end: usize) -> Result<(), YamlError> {
        let span = Span::new(start, end);
        let name = self.text.get(start..end).unwrap_or("*");
        // saphyr knows an anchor from where it is written, so an alias inside
        // its own anchored node gets an id we have not completed yet.
        let Some(target) = self.anchors.get(&id) else {
            return Err(YamlError::new(
                format!("alias `{name}` refers to a node that contains it"),
                span,
            ));
        };
        let (raw, nodes, bytes, height) = (Rc::clone(&target.raw), target.nodes, target.bytes, target.height);
        if self.stack.len() + height > MAX_DEPTH {
            return Err(YamlError::new(depth_message(), span));
        }
        self.alias_bytes = self.alias_bytes.saturating_add(bytes);
        if self.alias_bytes > MAX_ALIAS_BYTES {
            return Err(YamlError::new(
                format!("aliases copy more than {MAX_ALIAS_BYTES} bytes of text"),
                span,
            ));
        }
        self.count(nodes, bytes, span)?;
        let node = Rc::new(Raw {
            span,
            style: raw.style,
            kind: RawKind::Alias(raw),
        });
        self.last_end = self.last_end.max(end);
        self.attach(node, height, end)
    }

    fn scalar(
        &mut self,
        value: Cow<'_, str>,
        style: SaphyrStyle,
        anchor: usize,
        tag: Option<&Tag>,
        start: usize,
        end: usize,
    ) -> Result<(), YamlError> {
        let bytes = self.bytes();
        let has_props = anchor > 0 || tag.is_some();
        let span = match style {
            SaphyrStyle::Literal | SaphyrStyle::Folded => {
                // saphyr starts a block scalar at its first content line;
                // find the `|`/`>` between the previous token and there
                // (`.` for a leading `...`, which yields no event).
                let from = if has_props { start } else { self.last_end.min(start) };
                let at = skip_fill(bytes, from, b"-?:.");
                let s = if matches!(bytes.get(at), Some(b'|' | b'>')) && at <= end {
                    at
                } else {
                    start
                };
                // Its end lies past the trailing line breaks, on the next
                // line; a diagnostic should stop at the last content.
                let mut e = end;
                while e > s + 1 && matches!(bytes.get(e - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    e -= 1;
                }
                Span::new(s, e)
            }
            _ if value.is_empty() && style == SaphyrStyle::Plain => {
                // An absent value: an empty span where it would be.
                let at = if has_props { end } else { start };
                Span::new(at, at)
            }
            _ if has_props => {
                let at = skip_fill(bytes, start, b"");
                Span::new(if at <= end { at } else { start }, end)
            }
            _ => Span::new(start, end),
        };
        let style = match style {
            SaphyrStyle::Plain => ScalarStyle::Plain,
            SaphyrStyle::SingleQuoted => ScalarStyle::SingleQuoted,
            SaphyrStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
            SaphyrStyle::Literal => ScalarStyle::Literal,
            SaphyrStyle::Folded => ScalarStyle::Folded,
        };
        // A tag problem is shown with the tag and the value.
        let error_span = if tag.is_some() {
            Span::new(start.min(span.start as usize), span.end as usize)
        } else {
            span
        };
        let len = value.len();
        let resolved = resolve_scalar(value, style, tag).map_err(|m| YamlError::new(m, error_span))?;
        self.count(1, len, span)?;
        let raw = Rc::new(Raw {
            span,
            style,
            kind: RawKind::Scalar(resolved),
        });
        if anchor > 0 {
            self.anchors.insert(
                anchor,
                Anchored {
                    raw: Rc::clone(&raw),
                    nodes: 1,
                    bytes: len,
                    height: 0,
                },
            );
        }
        self.last_end = self.last_end.max(span.end as usize);
        self.attach(raw, 0, span.end as usize)
    }

    fn open(
        &mut self,
        is_map: bool,
        anchor: usize,
        tag: Option<&Tag>,
        start: usize,
        end: usize,
    ) -> Result<(), YamlError> {
        let bytes = self.bytes();
        // A flow collection's event ends just past its bracket.
        let flow = end > start && matches!(bytes.get(end - 1), Some(b'[' | b'{'));
        // The anchor and tag, without the bracket or the line break after.
        let mut props_end = if flow { end - 1 } else { end };
        while props_end > start && matches!(bytes.get(props_end - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            props_end -= 1;
        }
        let props = Span::new(start, props_end);
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError::new(depth_message(), Span::new(start, end)));
        }
        if let Some(tag) = tag {
            let wanted = if is_map { "map" } else { "seq" };
            if core_tag(tag) != Some(wanted) {
                let kind = if is_map { "mapping" } else { "list" };
                return Err(YamlError::new(
                    format!("tag `{}` cannot be used on a {kind}", tag_name(tag)),
                    props,
                ));
            }
        }
        let in_block_map_value = matches!(
            self.stack.last(),
            Some(Frame {
                flow: false,
                body: Body::Map { key: Some(_), .. },
                ..
            })
        );
        let node_start = if flow {
            end - 1
        } else if !is_map && in_block_map_value {
            // Here the list may be "indentless" (`key:\n- a`), whose event
            // starts after the first `- `; look for the `-` from the key.
            let at = skip_fill(bytes, self.last_end.min(end), b":");
            if bytes.get(at) == Some(&b'-') && at <= end {
                at
            } else {
                end
            }
        } else {
            // A block collection's event is empty at its first `-` or key,
            // after any anchor and tag.
            end
        };
        self.count(1, 0, Span::new(node_start, node_start))?;
        let body = if is_map {
            Body::Map {
                entries: Vec::new(),
                key: None,
                seen: None,
            }
        } else {
            Body::Seq(Vec::new())
        };
        self.stack.push(Frame {
            start: node_start,
            flow,
            anchor,
            nodes_before: self.nodes - 1,
            bytes_before: self.scalar_bytes,
            height: 0,
            last_end: node_start,
            body,
        });
        self.last_end = self.last_end.max(end);
        Ok(())
    }

    fn close(&mut self, end: usize) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let node_end = if frame.flow {
            end
        } else {
            frame.last_end.max(frame.start)
        };
        let span = Span::new(frame.start, node_end);
        let kind = match frame.body {
            Body::Seq(items) => RawKind::Seq(items),
            Body::Map { entries, .. } => RawKind::Map(entries),
        };
        let raw = Rc::new(Raw {
            span,
            style: ScalarStyle::NotScalar,
            kind,
        });
        let height = frame.height + 1;
        if frame.anchor > 0 {
            self.anchors.insert(
                frame.anchor,
                Anchored {
                    raw: Rc::clone(&raw),
                    nodes: self.nodes - frame.nodes_before,
                    bytes: self.scalar_bytes - frame.bytes_before,
                    height,
                },
            );
        }
        self.last_end = self.last_end.max(end);
        self.attach(raw, height, node_end)
    }

    /// Adds a finished node to the open collection, or makes it the root.
    fn attach(&mut self, raw: Rc<Raw>, height: usize, end: usize) -> Result<(), YamlError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(raw);
            return Ok(());
        };
        frame.height = frame.height.max(height);
        frame.last_end = frame.last_end.max(end);
        match &mut frame.body {
            Body::Seq(items) => items.push(raw),
            Body::Map { entries, key, seen } => match key.take() {
                Some(k) => entries.push((k, raw)),
                None => {
                    if let Some(value) = scalar_of(&raw) {
                        let duplicate = if entries.len() < SCAN_KEYS {
                            entries
                                .iter()
                                .any(|(k, _)| scalar_of(k).is_some_and(|k| same_key(k, value)))
                        } else {
                            let seen = seen.get_or_insert_with(|| {
                                entries.iter().filter_map(|(k, _)| scalar_of(k).map(key_repr)).collect()
                            });
                            !seen.insert(key_repr(value))
                        };
                        if duplicate {
                            return Err(YamlError::new(
                                format!("duplicate key `{}`", display_scalar(value)),
                                raw.span,
                            ));
                        }
                    }
                    *key = Some(raw);
                }
            },
        }
        Ok(())
    }
}

fn depth_message() -> String {
    format!("nesting deeper than {MAX_DEPTH} levels")
}

/// The scalar value of a node, looking through aliases.
fn scalar_of(raw: &Raw) -> Option<&YamlValue> {
    let mut raw = raw;
    loop {
        match &raw.kind {
            RawKind::Scalar(v) => return Some(v),
            RawKind::Alias(target) => raw = target,
            RawKind::Seq(_) | RawKind::Map(_) => return None,
        }
    }
}

fn key_repr(value: &YamlValue) -> KeyRepr {
    match value {
        YamlValue::Bool(b) => KeyRepr::Bool(*b),
        YamlValue::Int(i) => KeyRepr::Int(*i),
        // Normalized so that 0.0 and -0.0, and all NaNs, compare equal.
        YamlValue::Float(f) if *f == 0.0 => KeyRepr::Float(0),
        YamlValue::Float(f) if f.is_nan() => KeyRepr::Float(f64::NAN.to_bits()),
        YamlValue::Float(f) => KeyRepr::Float(f.to_bits()),
        YamlValue::String(s) => KeyRepr::Str(s.clone()),
        YamlValue::Null | YamlValue::Seq(_) | YamlValue::Map(_) => KeyRepr::Null,
    }
}

/// Whether two scalar keys are the same key: `key_repr(a) == key_repr(b)`,
/// without copying either.
fn same_key(a: &YamlValue, b: &YamlValue) -> bool {
    match (a, b) {
        (YamlValue::String(x), YamlValue::String(y)) => x == y,
        (YamlValue::Int(x), YamlValue::Int(y)) => x == y,
        (YamlValue::Bool(x), YamlValue::Bool(y)) => x == y,
        (YamlValue::Float(_), YamlValue::Float(_)) => key_repr(a) == key_repr(b),
        (
            YamlValue::Null | YamlValue::Seq(_) | YamlValue::Map(_),
            YamlValue::Null | YamlValue::Seq(_) | YamlValue::Map(_),
        ) => true,
        _ => false,
    }
}

fn display_scalar(value: &YamlValue) -> String {
    match value {
        YamlValue::Bool(b) => b.to_string(),
        YamlValue::Int(i) => i.to_string(),
        YamlValue::Float(f) => f.to_string(),
        YamlValue::String(s) => s.clone(),
        YamlValue::Null | YamlValue::Seq(_) | YamlValue::Map(_) => "null".to_string(),
    }
}

/// Turns the shared tree into owned nodes: a node nothing else holds is
/// moved, one an alias shares is copied. Recursion is bounded by the depth
/// limit, which counts aliased nodes too.
fn to_node(raw: Rc<Raw>) -> YamlNode {
    let raw = match Rc::try_unwrap(raw) {
        Ok(raw) => raw,
        Err(shared) => return copy_node(&shared),
    };
    let value = match raw.kind {
        RawKind::Scalar(v) => v,
        RawKind::Seq(items) => YamlValue::Seq(items.into_iter().map(to_node).collect()),
        RawKind::Map(entries) => YamlValue::Map(entries.into_iter().map(|(k, v)| (to_node(k), to_node(v))).collect()),
        RawKind::Alias(target) => {
            let mut node = to_node(target);
            node.span = raw.span;
            return node;
        }
    };
    YamlNode {
        value,
        span: raw.span,
        style: raw.style,
    }
}

/// Copies a shared node (see [`to_node`]).
fn copy_node(raw: &Raw) -> YamlNode {
    let value = match &raw.kind {
        RawKind::Scalar(v) => v.clone(),
        RawKind::Seq(items) => YamlValue::Seq(items.iter().map(|i| copy_node(i)).collect()),
        RawKind::Map(entries) => YamlValue::Map(entries.iter().map(|(k, v)| (copy_node(k), copy_node(v))).collect()),
        RawKind::Alias(target) => {
            let mut node = copy_node(target);
            node.span = raw.span;
            return node;
        }
    };
    YamlNode {
        value,
        span: raw.span,
        style: raw.style,
    }
}

/// Skips white space, comments, a byte order mark, anchors, tags and the
/// given indicator characters, to where a node's own text starts.
fn skip_fill(bytes: &[u8], mut i: usize, indicators: &[u8]) -> usize {
    loop {
        match bytes.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(0xEF) if bytes.get(i + 1..i + 3) == Some(&[0xBB, 0xBF][..]) => i += 3,
            Some(b'#') => {
                while bytes.get(i).is_some_and(|b| *b != b'\n' && *b != b'\r') {
                    i += 1;
                }
            }
            // A verbatim tag may contain flow indicators: `!<tag:a,b>`.
            Some(b'!') if bytes.get(i + 1) == Some(&b'<') => {
                i += 2;
                while let Some(b) = bytes.get(i) {
                    i += 1;
                    if *b == b'>' {
                        break;
                    }
                }
            }
            Some(b'&' | b'!') => {
                i += 1;
                while bytes.get(i).is_some_and(|b| !is_blank_or_flow(*b)) {
                    i += 1;
                }
            }
            Some(b) if indicators.contains(b) => i += 1,
            _ => return i,
        }
    }
}

fn is_blank_or_flow(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}')
}

/// The anchor-like token at `pos` (e.g. `*name`), for messages.
fn token_at(text: &str, pos: usize) -> &str {
    let rest = text.get(pos..).unwrap_or("");
    let len = rest.bytes().position(is_blank_or_flow).unwrap_or(rest.len());
    rest.get(..len).unwrap_or("")
}

// ---------------------------------------------------------------------------
// Core schema
// ---------------------------------------------------------------------------

/// The core schema name (`str`, `int`, …) of a `tag:yaml.org,2002:` tag.
fn core_tag(tag: &Tag) -> Option<&str> {
    if tag.handle == CORE_TAG_PREFIX {
        Some(&tag.suffix)
    } else if tag.handle.is_empty() {
        tag.suffix.strip_prefix(CORE_TAG_PREFIX)
    } else {
        None
    }
}

/// A tag as a user would write it.
fn tag_name(tag: &Tag) -> String {
    if let Some(name) = core_tag(tag) {
        format!("!!{name}")
    } else if tag.handle == "!" || (tag.handle.is_empty() && tag.suffix == "!") {
        format!("!{}", tag.suffix.trim_start_matches('!'))
    } else {
        format!("!<{}{}>", tag.handle, tag.suffix)
    }
}

/// The value of a scalar; a string takes the parser's text without copying
/// it when the parser owns it.
fn resolve_scalar(value: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Result<YamlValue, String> {
    let Some(tag) = tag else {
        if style != ScalarStyle::Plain || !maybe_not_string(&value) {
            return Ok(YamlValue::String(value.into_owned()));
        }
        return match resolve_plain(&value)? {
            YamlValue::String(_) => Ok(YamlValue::String(value.into_owned())),
            other => Ok(other),
        };
    };
    if core_tag(tag) == Some("str") {
        return Ok(YamlValue::String(value.into_owned()));
    }
    let value: &str = &value;
    let invalid = |name: &str| format!("`{value}` is not a valid `!!{name}` value");
    match core_tag(tag) {
        Some("null") if is_null(value) => Ok(YamlValue::Null),
        Some("bool") => parse_bool(value).map(YamlValue::Bool).ok_or_else(|| invalid("bool")),
        Some("int") => match parse_int(value) {
            Some(i) => i.map(YamlValue::Int),
            None => Err(invalid("int")),
        },
        Some("float") => match parse_float(value) {
            Some(f) => Ok(YamlValue::Float(f)),
            None => match parse_int(value) {
                Some(Ok(i)) => Ok(YamlValue::Float(i as f64)),
                _ => Err(invalid("float")),
            },
        },
        Some(name @ "null") => Err(invalid(name)),
        Some(name @ ("seq" | "map")) => Err(format!("tag `!!{name}` cannot be used on a scalar")),
        _ => Err(format!("unsupported tag `{}`", tag_name(tag))),
    }
}

/// False when a plain scalar is a string whatever else it holds: nulls,
/// booleans and numbers of the core schema all start with one of these
/// (or are empty).
fn maybe_not_string(value: &str) -> bool {
    matches!(
        value.as_bytes().first(),
        None | Some(b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'~' | b'+' | b'-' | b'.' | b'0'..=b'9')
    )
}

/// The YAML 1.2 core schema for untagged plain scalars.
pub(crate) fn resolve_plain(value: &str) -> Result<YamlValue, String> {
    if is_null(value) {
        return Ok(YamlValue::Null);
    }
    if let Some(b) = parse_bool(value) {
        return Ok(YamlValue::Bool(b));
    }
    if let Some(i) = parse_int(value) {
        return i.map(YamlValue::Int);
    }
    if let Some(f) = parse_float(value) {
        return Ok(YamlValue::Float(f));
    }
    Ok(YamlValue::String(value.to_string()))
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `None` when `s` is not written as an integer; an error when it is but
/// does not fit.
fn parse_int(s: &str) -> Option<Result<i64, String>> {
    let too_big = || format!("integer `{s}` does not fit in 64 bits");
    let radix = |digits: &str, radix: u32| {
        if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
            Some(i64::from_str_radix(digits, radix).map_err(|_| too_big()))
        } else {
            None
        }
    };
    if let Some(hex) = s.strip_prefix("0x") {
        return radix(hex, 16);
    }
    if let Some(oct) = s.strip_prefix("0o") {
        return radix(oct, 8);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // `str::parse` takes the sign itself.
        Some(s.parse::<i64>().map_err(|_| too_big()))
    } else {
        None
    }
}

fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    if is_float_syntax(s) {
        s.parse::<f64>().ok()
    } else {
        None
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let int_end = digits_from(i);
    let int_digits = int_end - i;
    i = int_end;
    if b.get(i) == Some(&b'.') {
        let frac_end = digits_from(i + 1);
        if int_digits == 0 && frac_end == i + 1 {
            return false;
        }
        i = frac_end;
    } else if int_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_end = digits_from(i);
        if exp_end == i {
            return false;
        }
        i = exp_end;
    }
    i == b.len()
}

// ---------------------------------------------------------------------------
// Aligning a decoded string with its source text
// ---------------------------------------------------------------------------

/// The file text, read without panicking.
struct Src<'a> {
    text: &'a str,
}

impl Src<'_> {
    fn byte(&self, p: usize) -> Option<u8> {
        self.text.as_bytes().get(p).copied()
    }

    fn ch(&self, p: usize) -> Option<char> {
        self.text.get(p..)?.chars().next()
    }

    /// Length of the line break at `p`, if there is one.
    fn break_len(&self, p: usize) -> Option<usize> {
        match self.byte(p)? {
            b'\n' => Some(1),
            b'\r' if self.byte(p + 1) == Some(b'\n') => Some(2),
            b'\r' => Some(1),
            _ => None,
        }
    }

    fn skip_blanks(&self, mut p: usize) -> usize {
        while matches!(self.byte(p), Some(b' ' | b'\t')) {
            p += 1;
        }
        p
    }

    fn skip_spaces(&self, mut p: usize) -> usize {
        while self.byte(p) == Some(b' ') {
            p += 1;
        }
        p
    }
}

/// Where each byte of a string value came from in the source text.
#[derive(Clone, Debug)]
pub struct Alignment {
    starts: Vec<usize>,
    end: usize,
}

impl Alignment {
    /// The source offset of the character holding value byte `value_offset`;
    /// the value's length maps to the end of the scalar's content, and
    /// anything past it to `None`.
    pub fn offset(&self, value_offset: usize) -> Option<usize> {
        match self.starts.get(value_offset) {
            Some(&at) => Some(at),
            None if value_offset == self.starts.len() => Some(self.end),
            None => None,
        }
    }
}

/// Walks the decoded value in step with the source: each decoded character
/// is checked against the value, so a wrong guess about the source fails
/// instead of giving a wrong offset.
struct Aligner<'v> {
    value: &'v str,
    pos: usize,
    /// Source offset of the character each value byte belongs to: filled in
    /// one walk, so mapping every span of a condition costs one alignment.
    starts: Vec<usize>,
    /// Source end of the last character that did not come from a line break.
    content_end: Option<usize>,
    /// Where the value's trailing line feeds start (block chomping).
    tail: usize,
}

impl<'v> Aligner<'v> {
    fn new(value: &'v str) -> Aligner<'v> {
        Aligner {
            value,
            pos: 0,
            starts: Vec::with_capacity(value.len()),
            content_end: None,
            tail: value.trim_end_matches('\n').len(),
        }
    }

    /// Records that the next value character is `c`, from `src..src_end`.
    fn emit(&mut self, c: char, src: usize, src_end: usize, from_break: bool) -> Option<()> {
        if !self.value.get(self.pos..)?.starts_with(c) {
            return None;
        }
        let next = self.pos + c.len_utf8();
        self.starts.resize(next, src);
        self.pos = next;
        if !from_break {
            self.content_end = Some(src_end);
        }
        Some(())
    }

    fn peek(&self) -> Option<char> {
        self.value.get(self.pos..)?.chars().next()
    }

    fn done(&self) -> bool {
        self.pos >= self.value.len()
    }

    fn in_tail(&self) -> bool {
        self.pos >= self.tail
    }

    /// The alignment once the whole value is aligned; `end` is where the
    /// offset just past the value maps to.
    fn result(self, end: usize) -> Option<Alignment> {
        if !self.done() {
            return None;
        }
        Some(Alignment {
            starts: self.starts,
            end,
        })
    }

    /// End of the last character that did not come from a line break.
    fn content_end_or(&self, start: usize) -> usize {
        self.content_end.unwrap_or(start)
    }
}

/// Which scalar a line fold is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    Plain,
    Quoted,
    /// After a `\` that escapes the line break.
    Escaped,
}

/// Where the character at `value_offset` of `value`, a scalar of `style`
/// starting at `start`, is in `text`.
fn align(text: &str, start: usize, style: ScalarStyle, value: &str) -> Option<Alignment> {
    let src = Src { text };
    let mut al = Aligner::new(value);
    match style {
        ScalarStyle::Plain => {
            align_plain(&src, start, &mut al)?;
            let end = al.content_end_or(start);
            al.result(end)
        }
        ScalarStyle::SingleQuoted => {
            let close = align_single(&src, start, &mut al)?;
            al.result(close)
        }
        ScalarStyle::DoubleQuoted => {
            let close = align_double(&src, start, &mut al)?;
            al.result(close)
        }
        ScalarStyle::Literal => align_block(&src, start, true, value),
        ScalarStyle::Folded => align_block(&src, start, false, value),
        ScalarStyle::NotScalar => None,
    }
}

/// Emits a run of blanks, or folds it away when a line break follows.
fn blanks(src: &Src<'_>, p: usize, al: &mut Aligner<'_>, fold: Fold) -> Option<usize> {
    let q = src.skip_blanks(p);
    if src.break_len(q).is_some() {
        // Trailing white space before a break is not content.
        return flow_fold(src, q, al, fold);
    }
    for i in p..q {
        al.emit(char::from(src.byte(i)?), i, i + 1, false)?;
    }
    Some(q)
}

/// Folds the line break at `p` and the empty lines and indentation after it
/// (plain and quoted scalars): one break becomes a space, each empty line a
/// line feed. After an escaped break only the empty lines count.
fn flow_fold(src: &Src<'_>, p: usize, al: &mut Aligner<'_>, fold: Fold) -> Option<usize> {
    let first_len = src.break_len(p)?;
    let mut at = p + first_len;
    let mut empty_lines = 0usize;
    loop {
        let mut q = src.skip_blanks(at);
        // saphyr 0.3.4 reads a comment line that starts with a tab inside
        // a plain scalar as an empty line.
        if fold == Fold::Plain && src.byte(q) == Some(b'#') {
            while src.byte(q).is_some() && src.break_len(q).is_none() {
                q += 1;
            }
        }
        match src.break_len(q) {
            Some(n) => {
                al.emit('\n', q, q + n, true)?;
                empty_lines += 1;
                at = q + n;
            }
            None => {
                at = q;
                break;
            }
        }
    }
    if empty_lines == 0 && fold != Fold::Escaped {
        al.emit(' ', p, p + first_len, true)?;
    }
    Some(at)
}

fn align_plain(src: &Src<'_>, start: usize, al: &mut Aligner<'_>) -> Option<()> {
    let mut p = start;
    // A plain scalar has no closing mark: it ends with its value.
    while !al.done() {
        let c = src.ch(p)?;
        p = match c {
            ' ' | '\t' => blanks(src, p, al, Fold::Plain)?,
            '\n' | '\r' => flow_fold(src, p, al, Fold::Plain)?,
            _ => {
                al.emit(c, p, p + c.len_utf8(), false)?;
                p + c.len_utf8()
            }
        };
    }
    Some(())
}

/// Returns the position of the closing quote.
fn align_single(src: &Src<'_>, start: usize, al: &mut Aligner<'_>) -> Option<usize> {
    if src.byte(start)? != b'\'' {
        return None;
    }
    let mut p = start + 1;
    loop {
        let c = src.ch(p)?;
        p = match c {
            '\'' if src.byte(p + 1) == Some(b'\'') => {
                al.emit('\'', p, p + 2, false)?;
                p + 2
            }
            '\'' => return al.done().then_some(p),
            ' ' | '\t' => blanks(src, p, al, Fold::Quoted)?,
            '\n' | '\r' => flow_fold(src, p, al, Fold::Quoted)?,
            _ => {
                al.emit(c, p, p + c.len_utf8(), false)?;
                p + c.len_utf8()
            }
        };
    }
}

/// Returns the position of the closing quote.
fn align_double(src: &Src<'_>, start: usize, al: &mut Aligner<'_>) -> Option<usize> {
    if src.byte(start)? != b'"' {
        return None;
    }
    let mut p = start + 1;
    loop {
        let c = src.ch(p)?;
        p = match c {
            '"' => return al.done().then_some(p),
            '\\' => {
                let e = src.ch(p + 1)?;
                if e == '\n' || e == '\r' {
                    flow_fold(src, p + 1, al, Fold::Escaped)?
                } else {
                    let (decoded, len) = unescape(src, p, e)?;
                    al.emit(decoded, p, p + len, false)?;
                    p + len
                }
            }
            ' ' | '\t' => blanks(src, p, al, Fold::Quoted)?,
            '\n' | '\r' => flow_fold(src, p, al, Fold::Quoted)?,
            _ => {
                al.emit(c, p, p + c.len_utf8(), false)?;
                p + c.len_utf8()
            }
        };
    }
}

/// The character and source length of the escape `\e…` at `p`.
fn unescape(src: &Src<'_>, p: usize, e: char) -> Option<(char, usize)> {
    let simple = match e {
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        't' | '\t' => '\t',
        'n' => '\n',
        'v' => '\u{b}',
        'f' => '\u{c}',
        'r' => '\r',
        'e' => '\u{1b}',
        ' ' => ' ',
        '"' => '"',
        '/' => '/',
        '\\' => '\\',
        'N' => '\u{85}',
        '_' => '\u{a0}',
        'L' => '\u{2028}',
        'P' => '\u{2029}',
        'x' | 'u' | 'U' => {
            let digits = match e {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let hex = src.text.get(p + 2..p + 2 + digits)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let code = u32::from_str_radix(hex, 16).ok()?;
            return Some((char::from_u32(code)?, 2 + digits));
        }
        _ => return None,
    };
    Some((simple, 1 + e.len_utf8()))
}

/// Aligns a block scalar whose indicator is at `start`.
fn align_block(src: &Src<'_>, start: usize, literal: bool, value: &str) -> Option<Alignment> {
    if !matches!(src.byte(start)?, b'|' | b'>') {
        return None;
    }
    let mut p = start + 1;
    let mut explicit = None;
    for _ in 0..2 {
        match src.byte(p) {
            Some(d @ b'1'..=b'9') => {
                explicit = Some(usize::from(d - b'0'));
                p += 1;
            }
            Some(b'+' | b'-') => p += 1,
            _ => break,
        }
    }
    // The rest of the header line is blanks and maybe a comment.
    while src.byte(p).is_some() && src.break_len(p).is_none() {
        p += 1;
    }
    let body = p + src.break_len(p).unwrap_or(0);
    // Without an indentation indicator, the first non-empty line sets the
    // indentation. With one, it is relative to the parent's indentation,
    // which is not known here: after that guess, try others until one
    // aligns (a wrong one cannot, as every character is checked).
    let mut line = body;
    let auto = loop {
        let q = src.skip_spaces(line);
        match src.break_len(q) {
            Some(n) => line = q + n,
            None => break q - line,
        }
    };
    // Empty and white-space-only lines do not count for `auto`, so with an
    // indicator the indentation may also exceed it.
    let high = explicit.map_or(0, |d| auto.max(d) + 8);
    let others = (1..=high).rev().take(80).filter(|&n| n != auto);
    std::iter::once(auto).chain(others).find_map(|indent| {
        let mut al = Aligner::new(value);
        align_block_lines(src, body, indent, literal, &mut al)?;
        let end = al.content_end_or(body);
        al.result(end)
    })
}

/// Aligns block scalar content starting at `body` with indentation `indent`.
fn align_block_lines(src: &Src<'_>, body: usize, indent: usize, literal: bool, al: &mut Aligner<'_>) -> Option<()> {
    let mut p = body;
    // Line breaks since the last content line: the one ending it, then one
    // per empty line.
    let mut breaks: Vec<(usize, usize)> = Vec::new();
    let mut seen_content = false;
    while !al.in_tail() {
        let spaces = src.skip_spaces(p) - p;
        let q = p + spaces.min(indent);
        if let Some(n) = src.break_len(p + spaces).filter(|_| spaces <= indent) {
            breaks.push((p + spaces, n));
            p += spaces + n;
            continue;
        }
        if spaces < indent || src.byte(q).is_none() {
            // A less indented line, or the end of the text.
            break;
        }
        if !seen_content || literal {
            for &(at, n) in &breaks {
                al.emit('\n', at, at + n, true)?;
            }
        } else {
            fold_block_breaks(&breaks, al)?;
        }
        breaks.clear();
        seen_content = true;
        let mut r = q;
        while let Some(c) = src.ch(r) {
            if c == '\n' || c == '\r' {
                break;
            }
            al.emit(c, r, r + c.len_utf8(), false)?;
            r += c.len_utf8();
        }
        match src.break_len(r) {
            Some(n) => {
                breaks.push((r, n));
                p = r + n;
            }
            None => {
                p = r;
                break;
            }
        }
    }
    // The chomped tail: line feeds from the breaks in order; one the text
    // lacks (no final line break) sits at the end.
    let mut pending = breaks.into_iter();
    while !al.done() {
        let (at, n) = match pending.next() {
            Some(b) => b,
            None => {
                // Kept trailing empty lines after the last collected break.
                let q = src.skip_spaces(p);
                match src.break_len(q) {
                    Some(n) => {
                        p = q + n;
                        (q, n)
                    }
                    None => (p, 0),
                }
            }
        };
        al.emit('\n', at, at + n, true)?;
    }
    Some(())
}

/// Between two content lines of a folded scalar: a single break folds to a
/// space; otherwise the breaks are kept, the first one only when a line
/// starting with white space is involved.
fn fold_block_breaks(breaks: &[(usize, usize)], al: &mut Aligner<'_>) -> Option<()> {
    let Some((&(first, first_len), empty)) = breaks.split_first() else {
        return Some(());
    };
    if empty.is_empty() && al.peek() == Some(' ') {
        return al.emit(' ', first, first + first_len, true);
    }
    let feeds = al
        .value
        .get(al.pos..)?
        .bytes()
        .take(breaks.len())
        .take_while(|b| *b == b'\n')
        .count();
    let kept = if feeds == breaks.len() { breaks } else { empty };
    for &(at, n) in kept {
        al.emit('\n', at, at + n, true)?;
    }
    Some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ok(text: &str) -> YamlNode {
        match parse(text) {
            Ok(node) => node,
            Err(e) => panic!("{text:?} failed: {} at {:?}", e.message, e.span),
        }
    }

    fn err(text: &str) -> YamlError {
        match parse(text) {
            Ok(node) => panic!("{text:?} parsed: {node:?}"),
            Err(e) => e,
        }
    }

    fn slice(text: &str, span: Span) -> &str {
        &text[span.start as usize..span.end as usize]
    }

    fn value(text: &str) -> YamlValue {
        ok(text).value
    }

    fn entries(node: &YamlNode) -> &[(YamlNode, YamlNode)] {
        match &node.value {
            YamlValue::Map(entries) => entries,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    fn items(node: &YamlNode) -> &[YamlNode] {
        match &node.value {
            YamlValue::Seq(items) => items,
            other => panic!("not a list: {other:?}"),
        }
    }

    /// The value of `key` in a top-level mapping.
    fn get<'n>(node: &'n YamlNode, key: &str) -> &'n YamlNode {
        entries(node)
            .iter()
            .find(|(k, _)| k.value == YamlValue::String(key.to_string()))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {key}"))
    }

    /// The text from where `string_offset` maps `offset`.
    fn from<'t>(text: &'t str, node: &YamlNode, offset: usize) -> &'t str {
        &text[node.string_offset(text, offset)..]
    }

    /// Asserts that the text at a mapped offset starts as expected.
    macro_rules! assert_at {
        ($rest:expr, $want:expr) => {{
            let rest: &str = $rest;
            let want: &str = $want;
            assert!(rest.starts_with(want), "{rest:?} does not start with {want:?}");
        }};
    }

    fn s(v: &str) -> YamlValue {
        YamlValue::String(v.to_string())
    }

    #[test]
    fn empty_and_comment_only_texts_are_null() {
        for text in ["", "   \n\n", "# just a comment\n", "---\n", "---\n...\n"] {
            let node = ok(text);
            assert_eq!(node.value, YamlValue::Null, "{text:?}");
            assert_eq!(node.kind_name(), "null");
        }
        assert_eq!(ok("").span, Span::new(0, 0));
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        for t in ["~", "null", "Null", "NULL"] {
            assert_eq!(value(t), YamlValue::Null, "{t}");
        }
        assert_eq!(value("k:").value_of_key("k"), YamlValue::Null);
        for t in ["true", "True", "TRUE"] {
            assert_eq!(value(t), YamlValue::Bool(true), "{t}");
        }
        for t in ["false", "False", "FALSE"] {
            assert_eq!(value(t), YamlValue::Bool(false), "{t}");
        }
        let ints = [
            ("0", 0),
            ("42", 42),
            ("-17", -17),
            ("+8", 8),
            ("0x1F", 31),
            ("0xff", 255),
            ("0o17", 15),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("007", 7),
        ];
        for (t, want) in ints {
            assert_eq!(value(t), YamlValue::Int(want), "{t}");
        }
        let floats = [
            ("1.5", 1.5),
            ("1e3", 1000.0),
            ("-2.5E-3", -0.0025),
            ("+1.0e+2", 100.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            (".inf", f64::INFINITY),
            (".Inf", f64::INFINITY),
            ("+.INF", f64::INFINITY),
            ("-.inf", f64::NEG_INFINITY),
            ("-.Inf", f64::NEG_INFINITY),
        ];
        for (t, want) in floats {
            assert_eq!(value(t), YamlValue::Float(want), "{t}");
        }
        for t in [".nan", ".NaN", ".NAN"] {
            assert!(matches!(value(t), YamlValue::Float(f) if f.is_nan()), "{t}");
        }
        let strings = [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "1_000",
            "0x",
            "0xg",
            "-0x1",
            "0o8",
            "0b101",
            "1e",
            "1.2.3",
            ".",
            "e3",
            "nan",
            "inf",
            ".infinity",
            "+",
            "tRue",
            "nULL",
            "12:30",
            "1 2",
            "-.nan",
        ];
        for t in strings {
            assert_eq!(value(t), s(t), "{t}");
        }
    }

    impl YamlValue {
        fn value_of_key(&self, key: &str) -> YamlValue {
            let YamlValue::Map(entries) = self else {
                panic!("not a mapping")
            };
            entries
                .iter()
                .find(|(k, _)| k.value == s(key))
                .map(|(_, v)| v.value.clone())
                .unwrap()
        }
    }

    #[test]
    fn quoted_and_block_scalars_are_always_strings() {
        let text = "a: 'true'\nb: \"12\"\nc: |\n  null\nd: >-\n  1.5\ne: ''\n";
        let node = ok(text);
        assert_eq!(node.value.value_of_key("a"), s("true"));
        assert_eq!(node.value.value_of_key("b"), s("12"));
        assert_eq!(node.value.value_of_key("c"), s("null\n"));
        assert_eq!(node.value.value_of_key("d"), s("1.5"));
        assert_eq!(node.value.value_of_key("e"), s(""));
        assert_eq!(get(&node, "a").style, ScalarStyle::SingleQuoted);
        assert_eq!(get(&node, "b").style, ScalarStyle::DoubleQuoted);
        assert_eq!(get(&node, "c").style, ScalarStyle::Literal);
        assert_eq!(get(&node, "d").style, ScalarStyle::Folded);
        assert_eq!(node.style, ScalarStyle::NotScalar);
    }

    #[test]
    fn integers_too_large_are_errors() {
        let text = "n: 99999999999999999999\n";
        let e = err(text);
        assert_eq!(e.message, "integer `99999999999999999999` does not fit in 64 bits");
        assert_eq!(slice(text, e.span), "99999999999999999999");
        assert_eq!(
            err("0x8000000000000000").message,
            "integer `0x8000000000000000` does not fit in 64 bits"
        );
        assert!(err("-9223372036854775809").message.contains("64 bits"));
        // Quoted, it is just a string.
        assert_eq!(value("'99999999999999999999'"), s("99999999999999999999"));
    }

    #[test]
    fn core_tags_are_applied() {
        assert_eq!(value("!!str 12"), s("12"));
        assert_eq!(value("!!str true"), s("true"));
        assert_eq!(value("!!str"), s(""));
        assert_eq!(value("!!int \"12\""), YamlValue::Int(12));
        assert_eq!(value("!!int 0x10"), YamlValue::Int(16));
        assert_eq!(value("!!float 1"), YamlValue::Float(1.0));
        assert_eq!(value("!!float '2.5'"), YamlValue::Float(2.5));
        assert_eq!(value("!!bool 'True'"), YamlValue::Bool(true));
        assert_eq!(value("!!null ''"), YamlValue::Null);
        assert_eq!(value("!!null ~"), YamlValue::Null);
        assert_eq!(value("!<tag:yaml.org,2002:str> 5"), s("5"));
        assert_eq!(value("!!seq [1]"), YamlValue::Seq(vec![ok("1").with_span(7, 8)]));
        assert!(matches!(value("!!map {a: 1}"), YamlValue::Map(_)));
        assert!(matches!(value("- !!str &x a\n- *x"), YamlValue::Seq(v) if v.len() == 2));
    }

    impl YamlNode {
        fn with_span(mut self, start: usize, end: usize) -> YamlNode {
            self.span = Span::new(start, end);
            self
        }
    }

    #[test]
    fn values_that_do_not_fit_their_tag_are_errors() {
        let text = "a: !!int abc";
        let e = err(text);
        assert_eq!(e.message, "`abc` is not a valid `!!int` value");
        assert_eq!(slice(text, e.span), "!!int abc");
        assert!(err("!!float x").message.contains("!!float"));
        assert!(err("!!bool yes").message.contains("!!bool"));
        assert!(err("!!null 0").message.contains("!!null"));
        assert!(err("!!int 99999999999999999999").message.contains("64 bits"));
    }

    #[test]
    fn other_tags_are_errors_naming_the_tag() {
        let cases = [
            ("!custom x", "`!custom`"),
            ("!!binary aGVsbG8=", "`!!binary`"),
            ("!!timestamp 2001-12-14", "`!!timestamp`"),
            ("a: !foo [1]", "`!foo`"),
            ("!!set {a}", "`!!set`"),
            ("!!str [a]", "`!!str`"),
            ("!!map [a]", "`!!map`"),
            ("!!seq a", "`!!seq`"),
            ("!<tag:example.com:x> a", "tag:example.com:x"),
        ];
        for (text, name) in cases {
            let e = err(text);
            assert!(e.message.contains(name), "{text}: {}", e.message);
            assert!(e.message.contains("tag"), "{text}: {}", e.message);
        }
        let text = "x: !foo [1]";
        assert_eq!(slice(text, err(text).span), "!foo");
        let text = "x: &a !!str\n  - 1\n";
        assert_eq!(slice(text, err(text).span), "&a !!str");
        let text = "x: !custom 'v'";
        assert_eq!(slice(text, err(text).span), "!custom 'v'");
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let text = "base: &b {x: 1, y: [2, 3]}\ncopy: *b\nname: &n bob\nwho: *n\n";
        let node = ok(text);
        let base = get(&node, "base");
        let copy = get(&node, "copy");
        assert_eq!(copy.value, base.value);
        assert_eq!(slice(text, copy.span), "*b");
        assert_eq!(slice(text, base.span), "{x: 1, y: [2, 3]}");
        assert_eq!(get(&node, "who").value, s("bob"));
        assert_eq!(slice(text, get(&node, "who").span), "*n");
        assert_eq!(slice(text, get(&node, "name").span), "bob");
        // A redefined anchor: aliases see the latest definition.
        let seq = ok("- &a 1\n- *a\n- &a 2\n- *a\n");
        let got: Vec<_> = items(&seq).iter().map(|n| n.value.clone()).collect();
        let want = [1, 1, 2, 2].map(YamlValue::Int);
        assert_eq!(got, want);
    }

    #[test]
    fn unknown_and_recursive_aliases_are_errors() {
        let text = "a: 1\nb: *nope\n";
        let e = err(text);
        assert_eq!(e.message, "unknown anchor `*nope`");
        assert_eq!(slice(text, e.span), "*nope");
        let text = "a: &x [1, *x]\n";
        let e = err(text);
        assert!(e.message.contains("`*x`"), "{}", e.message);
        assert_eq!(slice(text, e.span), "*x");
    }

    #[test]
    fn alias_bombs_are_stopped() {
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "l{i}: &l{i} [*l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}]\n"
            ));
        }
        let start = std::time::Instant::now();
        let e = err(&text);
        assert!(e.message.contains("1000000 nodes"), "{}", e.message);
        assert!(slice(&text, e.span).starts_with("*l"));
        assert!(start.elapsed().as_secs() < 5);
        // Few nodes but a long string copied many times.
        let long = "x".repeat(1 << 20);
        let mut text = format!("s: &s {long}\nl: [");
        for _ in 0..100 {
            text.push_str("*s, ");
        }
        text.push(']');
        assert!(err(&text).message.contains("bytes"));
        // Moderate use is fine.
        let small = ok("a: &a [1, 2]\nb: [*a, *a, *a]\n");
        assert_eq!(items(get(&small, "b")).len(), 3);
    }

    #[test]
    fn nesting_is_limited() {
        let deep = "[".repeat(100_000);
        let e = err(&deep);
        assert_eq!(e.message, "nesting deeper than 128 levels");
        let deep = "{a: ".repeat(100_000);
        assert_eq!(err(&deep).message, "nesting deeper than 128 levels");
        let ok_text = format!("{}{}", "[".repeat(128), "]".repeat(128));
        ok(&ok_text);
        let too_deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        let e = err(&too_deep);
        assert_eq!(e.message, "nesting deeper than 128 levels");
        assert_eq!(e.span.start, 128);
        // Block nesting.
        let mut block = String::new();
        for i in 0..300 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        assert_eq!(err(&block).message, "nesting deeper than 128 levels");
        let dashes = "- ".repeat(100_000);
        assert_eq!(err(&dashes).message, "nesting deeper than 128 levels");
        // Aliases count at the depth they are copied to.
        let half = format!("a: &a {}{}\n", "[".repeat(100), "]".repeat(100));
        ok(&half);
        let aliased = format!("{half}b: {}*a{}\n", "[".repeat(40), "]".repeat(40));
        assert_eq!(err(&aliased).message, "nesting deeper than 128 levels");
    }

    #[test]
    fn duplicate_keys_are_found_in_small_and_large_mappings() {
        // Small mappings are scanned, large ones hashed: the same keys are
        // duplicates either way, wherever the first one stands.
        for n in [1, SCAN_KEYS - 1, SCAN_KEYS, SCAN_KEYS + 1, 3 * SCAN_KEYS] {
            let keys: String = (0..n).map(|i| format!("k{i}: {i}\n")).collect();
            ok(&keys);
            for first in [0, n / 2, n - 1] {
                let text = format!("{keys}k{first}: again\n");
                let e = err(&text);
                assert_eq!(e.message, format!("duplicate key `k{first}`"), "{n} keys");
                assert_eq!(slice(&text, e.span), format!("k{first}"));
            }
            for (a, b, shown) in [
                ("0.0", "-0.0", "-0"),
                (".nan", ".NaN", "NaN"),
                ("1", "0o1", "1"),
                ("~", "null", "null"),
            ] {
                let text = format!("{a}: x\n{keys}{b}: y\n");
                assert_eq!(
                    err(&text).message,
                    format!("duplicate key `{shown}`"),
                    "{n} keys, {a} {b}"
                );
            }
            ok(&format!("1: x\n{keys}'1': y\ntrue: z\n'true': w\n"));
            let text = format!("&k kk: a\n{keys}*k : y\n");
            assert_eq!(err(&text).message, "duplicate key `kk`");
        }
    }

    #[test]
    fn plain_scalars_that_cannot_be_other_values_are_strings() {
        for s in ["kind", "x1", "_", "a.b", "Yes", "on", "x@y"] {
            assert_eq!(value(s), YamlValue::String(s.into()), "{s}");
        }
        for (s, v) in [
            ("nothing", YamlValue::String("nothing".into())),
            ("truth", YamlValue::String("truth".into())),
            ("-x", YamlValue::String("-x".into())),
            (".5", YamlValue::Float(0.5)),
            ("+7", YamlValue::Int(7)),
            ("False", YamlValue::Bool(false)),
            ("Null", YamlValue::Null),
        ] {
            assert_eq!(value(s), v, "{s}");
        }
    }

    #[test]
    fn duplicate_keys_are_errors_at_the_second_key() {
        let text = "name: a\nother: b\nname: c\n";
        let e = err(text);
        assert_eq!(e.message, "duplicate key `name`");
        assert_eq!(e.span, Span::new(17, 21));
        let text = "{a: 1, \"a\": 2}";
        let e = err(text);
        assert_eq!(e.message, "duplicate key `a`");
        assert_eq!(slice(text, e.span), "\"a\"");
        assert!(err("1: a\n0x1: b\n").message.contains("duplicate key `1`"));
        assert!(err("~: a\nnull: b\n").message.contains("duplicate key `null`"));
        assert!(err("k: &k x\n*k : y\nx: 1\n").message.contains("duplicate key `x`"));
        // Nested mappings have their own keys; different kinds differ.
        ok("a: {x: 1}\nb: {x: 2}\n");
        ok("1: a\n'1': b\ntrue: c\n'true': d\n");
        // Non-scalar keys stay in the tree for the caller to judge.
        let node = ok("? [a, b]\n: 1\n? {c: d}\n: 2\n");
        let keys: Vec<_> = entries(&node).iter().map(|(k, _)| k.kind_name()).collect();
        assert_eq!(keys, ["list", "mapping"]);
    }

    #[test]
    fn only_one_document_is_allowed() {
        let text = "a: 1\n---\nb: 2\n";
        let e = err(text);
        assert_eq!(e.message, "only one YAML document is allowed");
        assert_eq!(slice(text, e.span), "---");
        let text = "a: 1\n...\nb: 2\n";
        let e = err(text);
        assert_eq!(e.message, "only one YAML document is allowed");
        assert_eq!(e.span.start, 9);
        assert_eq!(err("---\na\n---\n]]]\n").message, "only one YAML document is allowed");
        assert_eq!(err("---\n---\n").message, "only one YAML document is allowed");
        ok("--- \na: 1\n...\n");
        ok("%YAML 1.2\n---\na: 1\n");
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let cases = [
            "a: [1, 2",
            "a: b: c",
            "a: 'unterminated",
            "key: \"bad \\q escape\"",
            "- a\nb: c",
            "[a, , b]",
            "a:\n  - b\n c: d",
            "@reserved",
        ];
        for text in cases {
            let e = err(text);
            assert!(!e.message.is_empty(), "{text}");
            assert!(!e.message.contains("ScanError"), "{text}: {}", e.message);
            assert!(!e.message.contains("Marker"), "{text}: {}", e.message);
            assert!(e.span.start as usize <= text.len(), "{text}");
        }
        let text = "a: 1\nb: [x, y\nc: 2\n";
        let e = err(text);
        assert!(e.span.start >= 8, "{:?} {}", e.span, e.message);
        // Positions are bytes even after multi-byte characters.
        let text = "é😀: [ü, ]]";
        let e = err(text);
        assert!(text.is_char_boundary(e.span.start as usize));
        assert_eq!(&text[e.span.start as usize..], "]");
    }

    #[test]
    fn spans_cover_each_node() {
        let text = "a: b\nnested:\n  x: \"q\\\"\"\n  y: 'it''s'\nlist:\n  - 1\n  - [2, {k: v}]\nindentless:\n- p\n- -1\nblock: |\n  one\n  two\n\n\nfold: >-\n  f\nlast: &anc !!str end\n";
        let node = ok(text);
        assert_eq!(slice(text, node.span), text.trim_end());
        let nested = get(&node, "nested");
        assert_eq!(slice(text, nested.span), "x: \"q\\\"\"\n  y: 'it''s'");
        assert_eq!(slice(text, get(nested, "x").span), "\"q\\\"\"");
        assert_eq!(slice(text, get(nested, "y").span), "'it''s'");
        let list = get(&node, "list");
        assert_eq!(slice(text, list.span), "- 1\n  - [2, {k: v}]");
        assert_eq!(slice(text, items(list)[1].span), "[2, {k: v}]");
        assert_eq!(slice(text, items(&items(list)[1])[1].span), "{k: v}");
        let indentless = get(&node, "indentless");
        assert_eq!(slice(text, indentless.span), "- p\n- -1");
        assert_eq!(items(indentless)[1].value, YamlValue::Int(-1));
        assert_eq!(slice(text, get(&node, "block").span), "|\n  one\n  two");
        assert_eq!(slice(text, get(&node, "fold").span), ">-\n  f");
        assert_eq!(slice(text, get(&node, "last").span), "end");
        let keys: Vec<_> = entries(&node).iter().map(|(k, _)| slice(text, k.span)).collect();
        assert_eq!(keys, ["a", "nested", "list", "indentless", "block", "fold", "last"]);
    }

    #[test]
    fn spans_with_anchors_tags_and_comments() {
        let text = "a: &x |  # note | >\n  body\nb: !!str >\n  folded\nc: &m\n  k: v\nd: &s [1]\ne: !!seq\n- z\nf: &e\ng: # comment\n  - |\n    in list\n";
        let node = ok(text);
        assert_eq!(slice(text, get(&node, "a").span), "|  # note | >\n  body");
        assert_eq!(slice(text, get(&node, "b").span), ">\n  folded");
        assert_eq!(slice(text, get(&node, "c").span), "k: v");
        assert_eq!(slice(text, get(&node, "d").span), "[1]");
        assert_eq!(slice(text, get(&node, "e").span), "- z");
        assert_eq!(get(&node, "f").value, YamlValue::Null);
        assert!(get(&node, "f").span.is_empty());
        let g = get(&node, "g");
        assert_eq!(slice(text, g.span), "- |\n    in list");
        assert_eq!(slice(text, items(g)[0].span), "|\n    in list");
    }

    #[test]
    fn spans_are_bytes_in_non_ascii_text() {
        let text = "é: 😀 x\nü😀:\n  - \"ß\\u00e9\"\n  - 'ñ'\n  - |\n    日本\nlast: [é, 😀]\n";
        let node = ok(text);
        let (k, v) = &entries(&node)[0];
        assert_eq!(slice(text, k.span), "é");
        assert_eq!(slice(text, v.span), "😀 x");
        let list = get(&node, "ü😀");
        let got: Vec<_> = items(list).iter().map(|n| slice(text, n.span)).collect();
        assert_eq!(got, ["\"ß\\u00e9\"", "'ñ'", "|\n    日本"]);
        assert_eq!(items(list)[0].value, s("ßé"));
        let last = get(&node, "last");
        assert_eq!(slice(text, last.span), "[é, 😀]");
        assert_eq!(slice(text, items(last)[1].span), "😀");
        // CRLF line ends.
        let text = "a: 1\r\nb: \"ü\"\r\nc: |\r\n  x\r\n";
        let node = ok(text);
        assert_eq!(slice(text, get(&node, "b").span), "\"ü\"");
        assert_eq!(slice(text, get(&node, "c").span), "|\r\n  x");
        // A byte order mark.
        let text = "\u{feff}k: v\n";
        let node = ok(text);
        assert_eq!(slice(text, entries(&node)[0].0.span), "k");
    }

    #[test]
    fn root_block_scalars_and_documents() {
        let text = "--- |\n  top\n";
        let node = ok(text);
        assert_eq!(node.value, s("top\n"));
        assert_eq!(slice(text, node.span), "|\n  top");
        let text = "# c\n>\n folded\n line\n";
        let node = ok(text);
        assert_eq!(node.value, s("folded line\n"));
        assert_eq!(slice(text, node.span), ">\n folded\n line");
        assert_at!(from(text, &node, 7), "line\n");
    }

    #[test]
    fn string_offset_plain() {
        let text = "key: hello world\n";
        let v = get(&ok(text), "key").clone();
        assert_at!(from(text, &v, 0), "hello world\n");
        assert_at!(from(text, &v, 6), "world\n");
        assert_at!(from(text, &v, 11), "\n");
        let text = "key: first line\n  second   line\n\n  third # c\nnext: 1\n";
        let v = get(&ok(text), "key").clone();
        assert_eq!(v.value, s("first line second   line\nthird"));
        assert_at!(from(text, &v, 6), "line\n  second");
        assert_at!(from(text, &v, 11), "second   line");
        assert_at!(from(text, &v, 18), "  line");
        assert_at!(from(text, &v, 20), "line\n\n  third");
        assert_at!(from(text, &v, 25), "third # c");
        assert_at!(from(text, &v, 30), " # c");
        let text = "- é😀 ok\n";
        let v = items(&ok(text))[0].clone();
        assert_at!(from(text, &v, 2), "😀 ok");
        assert_at!(from(text, &v, 7), "ok");
        // Inside a multi-byte character: that character.
        assert_at!(from(text, &v, 3), "😀 ok");
    }

    #[test]
    fn string_offset_single_quoted() {
        let text = "k: 'it''s a\n   folded\n\n   text  '\n";
        let v = get(&ok(text), "k").clone();
        assert_eq!(v.value, s("it's a folded\ntext  "));
        assert_at!(from(text, &v, 0), "it''s");
        assert_at!(from(text, &v, 2), "''s a");
        assert_at!(from(text, &v, 3), "s a");
        assert_at!(from(text, &v, 7), "folded");
        assert_at!(from(text, &v, 14), "text");
        assert_at!(from(text, &v, v_len(&v)), "'\n");
    }

    fn v_len(node: &YamlNode) -> usize {
        match &node.value {
            YamlValue::String(s) => s.len(),
            _ => 0,
        }
    }

    #[test]
    fn string_offset_double_quoted() {
        let text = r#"k: "a \"q\" b\n\tc \x41\u00e9\U0001F600 end""#;
        let v = get(&ok(text), "k").clone();
        assert_eq!(v.value, s("a \"q\" b\n\tc Aé😀 end"));
        assert_at!(from(text, &v, 2), r#"\"q\""#);
        assert_at!(from(text, &v, 3), r#"q\" b"#);
        assert_at!(from(text, &v, 6), r"b\n");
        assert_at!(from(text, &v, 7), r"\n\tc");
        assert_at!(from(text, &v, 8), r"\tc");
        assert_at!(from(text, &v, 9), r"c \x41");
        assert_at!(from(text, &v, 11), r"\x41");
        assert_at!(from(text, &v, 12), r"\u00e9");
        assert_at!(from(text, &v, 14), r"\U0001F600");
        assert_at!(from(text, &v, 19), "end\"");
        assert_at!(from(text, &v, v_len(&v)), "\"");
        // Folding and escaped line breaks.
        let text = "k: \"one\n  two \\\n  three\n\n  four\"\n";
        let v = get(&ok(text), "k").clone();
        assert_eq!(v.value, s("one two three\nfour"));
        assert_at!(from(text, &v, 3), "\n  two");
        assert_at!(from(text, &v, 4), "two \\");
        assert_at!(from(text, &v, 8), "three");
        assert_at!(from(text, &v, 14), "four\"");
        // Expressions with non-ASCII text.
        let text = "when: \"ß == 'é'\"\n";
        let v = get(&ok(text), "when").clone();
        assert_at!(from(text, &v, 6), "'é'\"");
    }

    #[test]
    fn string_offset_literal() {
        let text = "rule:\n  when: |\n    a == 1\n      && b\n\n    c\nnext: 1\n";
        let when = get(get(&ok(text), "rule"), "when").clone();
        assert_eq!(when.value, s("a == 1\n  && b\n\nc\n"));
        assert_at!(from(text, &when, 0), "a == 1\n");
        assert_at!(from(text, &when, 5), "1\n      && b");
        assert_at!(from(text, &when, 6), "\n      && b");
        assert_at!(from(text, &when, 7), "  && b");
        assert_at!(from(text, &when, 9), "&& b");
        assert_at!(from(text, &when, 14), "\n    c");
        assert_at!(from(text, &when, 15), "c\n");
        // The end is the end of the last content line.
        assert_at!(from(text, &when, v_len(&when)), "\nnext");
        // Explicit indentation, keep and strip chomping.
        let text = "a: |2-\n     x\n    y\nb: |+\n  z\n\nc: 1\n";
        let node = ok(text);
        let a = get(&node, "a");
        assert_eq!(a.value, s("   x\n  y"));
        assert_at!(from(text, a, 3), "x\n");
        assert_at!(from(text, a, 5), "  y\n");
        assert_at!(from(text, a, 7), "y\n");
        let b = get(&node, "b");
        assert_eq!(b.value, s("z\n\n"));
        assert_at!(from(text, b, 0), "z\n");
        assert_at!(from(text, b, 2), "\nc: 1");
        // With an anchor and a tag, and at the end of the text with no
        // final line break.
        let text = "k: &a !!str |\n  é😀\n  x";
        let k = get(&ok(text), "k").clone();
        assert_eq!(k.value, s("é😀\nx\n"));
        assert_at!(from(text, &k, 2), "😀\n");
        assert_at!(from(text, &k, 7), "x");
        assert_eq!(k.string_offset(text, 8), text.len());
        assert_eq!(k.string_offset(text, 9), text.len());
    }

    #[test]
    fn string_offset_folded() {
        let text = "k: >\n  one\n  two\n\n  three\n    more\n  four\n";
        let k = get(&ok(text), "k").clone();
        assert_eq!(k.value, s("one two\nthree\n  more\nfour\n"));
        assert_at!(from(text, &k, 3), "\n  two");
        assert_at!(from(text, &k, 4), "two\n");
        assert_at!(from(text, &k, 8), "three");
        assert_at!(from(text, &k, 14), "  more");
        assert_at!(from(text, &k, 16), "more");
        assert_at!(from(text, &k, 21), "four");
        let text = "- >2\n   in\n  out\n";
        let k = items(&ok(text))[0].clone();
        assert_eq!(k.value, s(" in\nout\n"));
        assert_at!(from(text, &k, 1), "in\n");
        assert_at!(from(text, &k, 4), "out\n");
        // CRLF.
        let text = "k: >\r\n  a\r\n  b\r\n";
        let k = get(&ok(text), "k").clone();
        assert_eq!(k.value, s("a b\n"));
        assert_at!(from(text, &k, 2), "b\r\n");
    }

    #[test]
    fn string_offset_falls_back_to_the_span_start() {
        let text = "a: 12\nb: &x \"str\"\nc: *x\nd: [x]\n";
        let node = ok(text);
        let a = get(&node, "a");
        assert_eq!(a.string_offset(text, 1), 3);
        let c = get(&node, "c");
        assert_eq!(c.value, s("str"));
        assert_eq!(c.string_offset(text, 1), c.span.start as usize);
        let b = get(&node, "b");
        assert_eq!(b.string_offset(text, 99), b.span.start as usize);
        assert_eq!(get(&node, "d").string_offset(text, 0), 27);
        // A different text.
        assert_eq!(b.string_offset("", 1), b.span.start as usize);
        assert_eq!(
            b.string_offset("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 1),
            b.span.start as usize
        );
        assert_at!(from(text, b, 1), "tr\"");
    }

    #[test]
    fn kind_names() {
        let node = ok("[~, true, 1, 1.5, s, [], {}]");
        let names: Vec<_> = items(&node).iter().map(YamlNode::kind_name).collect();
        assert_eq!(
            names,
            ["null", "boolean", "integer", "number", "string", "list", "mapping"]
        );
    }

    #[test]
    fn large_inputs_stay_fast() {
        let start = std::time::Instant::now();
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!("key{i}: \"value é {i}\"\n"));
        }
        let node = ok(&text);
        assert_eq!(entries(&node).len(), 50_000);
        let long = format!("k: {}x\n", "a ".repeat(500_000));
        let node = ok(&long);
        assert_eq!(get(&node, "k").string_offset(&long, 1_000_000), long.len() - 2);
        let spaces = format!("k: \"a{}b\"\n", " ".repeat(200_000));
        let node = ok(&spaces);
        let k = get(&node, "k");
        assert_eq!(k.string_offset(&spaces, 200_001), spaces.len() - 3);
        let wide = format!("[{}]", "[1], ".repeat(100_000));
        ok(&wide);
        assert!(err(&"[".repeat(1_000_000)).message.contains("nesting"));
        assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    }

    /// Checks invariants on every node of a parse result.
    fn check_tree(text: &str, node: &YamlNode, depth: usize) {
        assert!(depth <= MAX_DEPTH + 1);
        let (a, b) = (node.span.start as usize, node.span.end as usize);
        assert!(a <= b && b <= text.len(), "{:?} in {text:?}", node.span);
        assert!(text.is_char_boundary(a) && text.is_char_boundary(b));
        match &node.value {
            YamlValue::String(v) => {
                for i in 0..=v.len() + 1 {
                    let o = node.string_offset(text, i);
                    assert!(o <= text.len() && text.is_char_boundary(o), "{text:?} {i}");
                }
            }
            YamlValue::Seq(items) => items.iter().for_each(|n| check_tree(text, n, depth + 1)),
            YamlValue::Map(entries) => entries.iter().for_each(|(k, v)| {
                check_tree(text, k, depth + 1);
                check_tree(text, v, depth + 1);
            }),
            _ => {
                let _ = node.string_offset(text, 0);
            }
        }
    }

    fn check_any(text: &str) {
        match parse(text) {
            Ok(node) => check_tree(text, &node, 0),
            Err(e) => {
                assert!(e.span.start <= e.span.end);
                assert!(e.span.end as usize <= text.len(), "{e:?} {text:?}");
                assert!(text.is_char_boundary(e.span.start as usize));
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Fragments that exercise YAML syntax.
        fn yamlish() -> impl Strategy<Value = String> {
            let pieces = prop::sample::select(vec![
                "[",
                "]",
                "{",
                "}",
                ",",
                ":",
                ": ",
                "-",
                "- ",
                "?",
                " ",
                "  ",
                "\n",
                "\r\n",
                "\t",
                "#",
                "&a ",
                "*a",
                "&b",
                "*b",
                "!",
                "!!str ",
                "!!int ",
                "!x ",
                "|",
                "|2",
                "|-",
                ">",
                ">+",
                "'",
                "\"",
                "\\",
                "\\n",
                "\\x4",
                "\\u00e9",
                "a",
                "1",
                "0x1F",
                ".inf",
                "é",
                "😀",
                "---",
                "...",
                "%YAML 1.2",
                "\u{feff}",
                "''",
                "~",
                "true",
                "k",
                "\n  ",
                "\n    ",
                "\n- ",
                "!<a,b>",
                "%TAG ! x\n",
            ]);
            prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
        }

        /// A value written as a double-quoted YAML string, with the text
        /// each character of the value is written as.
        fn double_quoted(value: &str) -> (String, Vec<String>) {
            let mut out = String::from("\"");
            let mut parts = Vec::new();
            for c in value.chars() {
                let part = match c {
                    '"' => "\\\"".to_string(),
                    '\\' => "\\\\".to_string(),
                    '\n' => "\\n".to_string(),
                    '\t' => "\\t".to_string(),
                    c if (c as u32) < 0x20 => format!("\\x{:02x}", c as u32),
                    c => c.to_string(),
                };
                out.push_str(&part);
                parts.push(part);
            }
            out.push('"');
            (out, parts)
        }

        /// Asserts that every character of a string node's value maps to
        /// itself in the text, or to a line break for a folded or kept one.
        fn assert_maps_each_char(text: &str, node: &YamlNode) -> Result<(), TestCaseError> {
            let YamlValue::String(value) = &node.value else {
                return Err(TestCaseError::fail("not a string"));
            };
            for (i, c) in value.char_indices() {
                let at = from(text, node, i);
                let mut buf = [0u8; 4];
                let same = at.starts_with(c.encode_utf8(&mut buf) as &str);
                let folded = matches!(c, ' ' | '\n') && at.starts_with(['\n', '\r']);
                prop_assert!(same || folded, "{text:?} char {i} {c:?} -> {at:?}");
            }
            Ok(())
        }

        /// Block scalar lines: extra indentation and content (maybe none).
        fn block_lines() -> impl Strategy<Value = Vec<(usize, String)>> {
            prop::collection::vec((0usize..3, "([a-zé]{1,5}( [a-z😀]{1,4}){0,2})?"), 1..7)
        }

        fn block_text(header: &str, indent: usize, lines: &[(usize, String)]) -> String {
            let mut text = format!("top:\n  k: {header}\n");
            for (extra, content) in lines {
                if content.is_empty() {
                    text.push('\n');
                } else {
                    text.push_str(&" ".repeat(2 + indent + extra));
                    text.push_str(content);
                    text.push('\n');
                }
            }
            text.push_str("  z: 1\n");
            text
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            #[test]
            fn never_panics_on_yamlish_text(text in yamlish()) {
                check_any(&text);
            }

            #[test]
            fn never_panics_on_any_text(text in any::<String>()) {
                check_any(&text);
            }

            #[test]
            fn double_quoted_offsets_point_at_each_character(
                value in "[a-zé😀 \"\\\\\n\t\u{1}{}:#-]{0,30}",
                indent in 0usize..4,
            ) {
                let (quoted, parts) = double_quoted(&value);
                let text = format!("{}key: {quoted}\n", " ".repeat(indent));
                let node = ok(&text);
                let (_, v) = &entries(&node)[0];
                prop_assert_eq!(&v.value, &YamlValue::String(value.clone()));
                for ((i, _), part) in value.char_indices().zip(&parts) {
                    prop_assert!(from(&text, v, i).starts_with(part.as_str()));
                }
                prop_assert!(from(&text, v, value.len()).starts_with("\"\n"));
            }

            #[test]
            fn single_quoted_offsets_point_at_each_character(value in "[a-zé😀 '\"{}:#-]{0,30}") {
                let text = format!("- '{}'\n", value.replace('\'', "''"));
                let node = ok(&text);
                let v = &items(&node)[0];
                prop_assert_eq!(&v.value, &YamlValue::String(value.clone()));
                for (i, c) in value.char_indices() {
                    let want = if c == '\'' { "''".to_string() } else { c.to_string() };
                    prop_assert!(from(&text, v, i).starts_with(&want));
                }
            }

            #[test]
            fn literal_offsets_point_at_each_character(
                lines in prop::collection::vec("[a-zé😀 '\"#:-]{0,12}", 1..6),
                indent in 1usize..6,
            ) {
                // Leading spaces on the first line would need an indicator.
                let lines: Vec<String> = lines.iter().map(|l| l.trim().to_string()).collect();
                let pad = " ".repeat(indent);
                let body: String = lines.iter().map(|l| format!("{pad}{l}\n")).collect();
                let text = format!("k: |+\n{body}other: 1\n");
                let node = ok(&text);
                let v = get(&node, "k");
                let want: String = lines.iter().map(|l| format!("{l}\n")).collect();
                let want = if want.trim().is_empty() { want.clone() } else { want };
                prop_assert_eq!(&v.value, &YamlValue::String(want.clone()));
                for (i, c) in want.char_indices() {
                    let mut buf = [0u8; 4];
                    prop_assert!(from(&text, v, i).starts_with(c.encode_utf8(&mut buf) as &str));
                }
            }

            #[test]
            fn block_offsets_point_at_each_character(
                mut lines in block_lines(),
                indent in 1usize..5,
                literal in any::<bool>(),
                chomp in prop::sample::select(vec!["", "-", "+"]),
                explicit in any::<bool>(),
            ) {
                let mut header = String::from(if literal { "|" } else { ">" });
                if explicit {
                    // Relative to the mapping's indentation of 2.
                    header.push_str(&indent.to_string());
                } else if let Some(first) = lines.iter_mut().find(|(_, c)| !c.is_empty()) {
                    // Without an indicator the first line sets the indentation.
                    first.0 = 0;
                }
                header.push_str(chomp);
                let text = block_text(&header, indent, &lines);
                let node = ok(&text);
                let k = get(get(&node, "top"), "k");
                assert_maps_each_char(&text, k)?;
            }

            #[test]
            fn multi_line_quoted_offsets_point_at_each_character(
                lines in prop::collection::vec("[a-z'\"é ]{0,6}", 1..5),
                double in any::<bool>(),
            ) {
                let body = if double {
                    lines.iter().map(|l| l.replace('"', "\\\"")).collect::<Vec<_>>().join("\n    ")
                } else {
                    lines.iter().map(|l| l.replace('\'', "''")).collect::<Vec<_>>().join("\n    ")
                };
                let q = if double { '"' } else { '\'' };
                let text = format!("k: {q}{body}{q}\n");
                let node = ok(&text);
                let k = get(&node, "k");
                if let YamlValue::String(value) = &k.value {
                    for (i, c) in value.char_indices() {
                        let at = from(&text, k, i);
                        let mut buf = [0u8; 4];
                        let same = at.starts_with(c.encode_utf8(&mut buf) as &str);
                        let escaped = (c == '"' && at.starts_with("\\\""))
                            || (c == '\'' && at.starts_with("''"));
                        let folded = matches!(c, ' ' | '\n') && at.starts_with(['\n', '\r']);
                        prop_assert!(same || escaped || folded, "{text:?} {i} {c:?} {at:?}");
                    }
                    prop_assert!(from(&text, k, value.len()).starts_with(q));
                }
            }

            #[test]
            fn plain_offsets_point_at_each_character(words in prop::collection::vec("[a-zé😀]{1,6}", 1..6)) {
                let value = words.join(" ");
                let text = format!("k: {}\n", words.join("\n   "));
                let node = ok(&text);
                let v = get(&node, "k");
                prop_assert_eq!(&v.value, &YamlValue::String(value.clone()));
                for (i, c) in value.char_indices() {
                    let at = from(&text, v, i);
                    if c == ' ' {
                        prop_assert!(at.starts_with('\n'));
                    } else {
                        let mut buf = [0u8; 4];
                        prop_assert!(at.starts_with(c.encode_utf8(&mut buf) as &str));
                    }
                }
            }
        }
    }
}
