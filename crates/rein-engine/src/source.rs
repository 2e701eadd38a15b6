//! Source files, byte spans and line/column lookup.
//!
//! Every later stage of the pipeline points back into the text it came from
//! through a [`Span`], so that a diagnostic can show file, line, column and
//! the offending line with a caret.

use std::sync::Arc;

/// A half-open byte range `start..end` inside one source text.
///
/// Spans produced by the condition parser are relative to the expression
/// text; the policy loader shifts them into file coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span {
            start: clamp(start),
            end: clamp(end.max(start)),
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// True for an empty span.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        miette::SourceSpan::new((span.start as usize).into(), span.len())
    }
}

/// One source text with its name (usually a file path), shared cheaply.
#[derive(Clone, Debug)]
pub struct SourceFile {
    inner: Arc<SourceInner>,
}

#[derive(Debug)]
struct SourceInner {
    name: String,
    text: String,
    /// Where each line starts, found on first use: only diagnostics need
    /// them, and a policy read from the cache (a 1.3 MB text at 10,000
    /// rules: 7 M instructions to scan) usually shows none.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl SourceFile {
    /// Wraps `text` read from `name`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            inner: Arc::new(SourceInner {
                name: name.into(),
                text: text.into(),
                line_starts: std::sync::OnceLock::new(),
            }),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.inner.line_starts.get_or_init(|| {
            let mut starts = vec![0];
            starts.extend(self.inner.text.match_indices('\n').map(|(i, _)| i + 1));
            starts
        })
    }

    /// The file name shown in diagnostics.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.inner.text.len());
        let starts = self.line_starts();
        let line = match starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = starts[line];
        let col = self
            .inner
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Byte offset of a 0-based line and 0-based character column, clamped
    /// to the text.
    pub fn offset_of(&self, line0: usize, col0: usize) -> usize {
        let Some(&start) = self.line_starts().get(line0) else {
            return self.inner.text.len();
        };
        let rest = &self.inner.text[start..];
        let in_line = rest
            .char_indices()
            .take_while(|(_, c)| *c != '\n')
            .nth(col0)
            .map_or_else(|| rest.find('\n').unwrap_or(rest.len()), |(i, _)| i);
        start + in_line
    }
}

impl PartialEq for SourceFile {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let f = SourceFile::new("p.yaml", "ab\ncé d\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // `d` sits after a two-byte character.
        assert_eq!(f.line_col(7), (2, 4));
        assert_eq!(f.offset_of(1, 3), 7);
        assert_eq!(f.offset_of(9, 0), f.text().len());
    }
}
