//! Text to brush-parser's syntax tree: its tokenizer, the fixes of
//! [`crate::tokens`], then its grammar. The checks that keep brush-parser
//! from panicking come first.

use brush_parser::ast::Program;
use brush_parser::ParserOptions;

use crate::tokens::fix_parentheses;
use crate::words::{brush_would_hang, brush_would_panic};

/// Parses `text` as a shell program; the error says why not.
pub(crate) fn program(text: &str, options: &ParserOptions) -> Result<Program, String> {
    if let Some(problem) = brush_would_panic(text).or_else(|| brush_would_hang(text)) {
        return Err(problem);
    }
    let tokens = brush_parser::uncached_tokenize_str(text, &options.tokenizer_options())
        .map_err(|e| format!("cannot parse: {e}"))?;
    let offsets: Option<Vec<usize>> = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
    let byte = |i: usize| match &offsets {
        None => i.min(text.len()),
        Some(o) => o.get(i).copied().unwrap_or(text.len()),
    };
    let tokens = fix_parentheses(tokens, text, byte)?;
    brush_parser::parse_tokens(&tokens, options).map_err(|e| format!("cannot parse: {e}"))
}
