//! Load-time diagnostics: data first (file, span, message, help), rendered
//! at the edge as text (miette) or JSON.

use crate::source::{SourceFile, Span};
use std::fmt;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy does not load.
    Error,
    /// The policy loads, but something is probably wrong.
    Warning,
    /// Information the author may want (a static analysis finding that is
    /// often intended, such as a block carved out of an allow); never a
    /// failure.
    Note,
}

/// One problem found while loading a policy.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Lower-case message without a final period; user text in backticks.
    pub message: String,
    /// The file it is about (`None` for problems with no file, such as an
    /// empty file list).
    pub file: Option<SourceFile>,
    /// Where in the file.
    pub span: Span,
    /// A short label shown under the caret.
    pub label: Option<String>,
    /// A hint: what to do instead.
    pub help: Option<String>,
    /// The name of the check that found it (`rein lint`'s check names,
    /// which `--allow` takes), shown above the message.
    pub code: Option<String>,
}

impl Diagnostic {
    /// An error at `span` of `file`.
    pub fn error(file: &SourceFile, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: Some(file.clone()),
            span,
            label: None,
            help: None,
            code: None,
        }
    }

    /// An error about no file in particular.
    pub fn general(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: None,
            span: Span::default(),
            label: None,
            help: None,
            code: None,
        }
    }

    /// Turns this into a warning.
    pub fn warning(mut self) -> Diagnostic {
        self.severity = Severity::Warning;
        self
    }

    /// Turns this into a note.
    pub fn note(mut self) -> Diagnostic {
        self.severity = Severity::Note;
        self
    }

    /// Names the check that found it.
    pub fn with_code(mut self, code: impl Into<String>) -> Diagnostic {
        self.code = Some(code.into());
        self
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a label under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    /// `file:line:column` of the start of the span.
    pub fn location(&self) -> Option<(String, usize, usize)> {
        let file = self.file.as_ref()?;
        let (line, col) = file.line_col(self.span.start as usize);
        Some((file.name().to_string(), line, col))
    }

    /// The JSON form sent by the server and `--format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::json!({
            "severity": self.severity,
            "message": self.message,
        });
        if let Some((file, line, column)) = self.location() {
            obj["file"] = file.into();
            obj["line"] = line.into();
            obj["column"] = column.into();
        }
        if let Some(help) = &self.help {
            obj["help"] = help.clone().into();
        }
        if let Some(code) = &self.code {
            obj["code"] = code.clone().into();
        }
        obj
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((file, line, col)) = self.location() {
            write!(f, "{file}:{line}:{col}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }

    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code
            .as_ref()
            .map(|c| Box::new(c.as_str()) as Box<dyn fmt::Display>)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.file.as_ref().map(|f| f as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.file.as_ref()?;
        let label = miette::LabeledSpan::new_with_span(self.label.clone(), self.span);
        Some(Box::new(std::iter::once(label)))
    }
}

impl miette::SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text().read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name().to_string(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Everything wrong with a policy that failed to load (at least one error),
/// plus any warnings.
#[derive(Clone, Debug)]
pub struct LoadError {
    diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    /// Wraps a list that holds at least one error.
    pub(crate) fn new(mut diagnostics: Vec<Diagnostic>) -> LoadError {
        // Stable, reading order: by file, then position.
        diagnostics.sort_by(|a, b| {
            let key = |d: &Diagnostic| (d.file.as_ref().map(|f| f.name().to_string()), d.span.start, d.span.end);
            key(a).cmp(&key(b))
        });
        LoadError { diagnostics }
    }

    /// All diagnostics, errors and warnings, in file and position order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Number of errors (not warnings).
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Renders every diagnostic as miette does, with the source line and a
    /// caret; `color` chooses ANSI colours.
    pub fn render(&self, color: bool) -> String {
        render_all(&self.diagnostics, color)
    }
}

/// Renders diagnostics with source snippets (fixed width, so golden tests are
/// stable).
pub fn render_all(diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if handler.render_report(&mut out, &Snippet(d)).is_err() {
            out.push_str(&d.to_string());
            out.push('\n');
        }
    }
    out
}

/// A diagnostic as miette shows it: the location is in the snippet's
/// header, so the title is the message alone.
struct Snippet<'a>(&'a Diagnostic);

impl fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.file {
            // Without a snippet, the location must stay in the title.
            Some(_) => f.write_str(&self.0.message),
            None => fmt::Display::fmt(self.0, f),
        }
    }
}

impl std::error::Error for Snippet<'_> {}

impl miette::Diagnostic for Snippet<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        self.0.severity()
    }
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::code(self.0)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::help(self.0)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.error_count();
        write!(f, "policy failed to load: {n} error{}", if n == 1 { "" } else { "s" })?;
        for d in &self.diagnostics {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// The closest candidate to `name` by edit distance, if close enough to be
/// a plausible typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("amout", ["amount", "currency"]), Some("amount"));
        assert_eq!(did_you_mean("xyz", ["amount", "currency"]), None);
    }
}
