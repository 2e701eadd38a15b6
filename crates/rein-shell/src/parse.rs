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
    // brush-parser's tokenizer can loop forever when the input ends inside
    // a here-document's header within `$(` (`$(cat <<  tag `, found by
    // fuzzing); a final newline, which changes nothing for bash, keeps it
    // out of that state. After a backslash that newline would only continue
    // the line (`$(l<<e>)\`, found by fuzzing), so one more follows.
    // Positions of the text's own characters stay.
    let terminated;
    let input = match (text.ends_with('\n'), text.trim_end_matches('\n').ends_with('\\')) {
        (true, false) => text,
        (false, false) => {
            terminated = format!("{text}\n");
            &terminated
        }
        (_, true) => {
            terminated = format!("{text}\n\n");
            &terminated
        }
    };
    // The checks above cover the panics fuzzing has found so far; any other
    // panic in brush-parser ends here too, as text that is not understood.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(text, input, options)))
        .unwrap_or_else(|_| Err("cannot parse: the shell parser failed on this text".to_owned()))
}

fn parse(text: &str, input: &str, options: &ParserOptions) -> Result<Program, String> {
    let tokens = brush_parser::uncached_tokenize_str(input, &options.tokenizer_options())
        .map_err(|e| format!("cannot parse: {e}"))?;
    let offsets: Option<Vec<usize>> = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
    let byte = |i: usize| match &offsets {
        None => i.min(text.len()),
        Some(o) => o.get(i).copied().unwrap_or(text.len()),
    };
    let tokens = fix_parentheses(tokens, text, byte)?;
    brush_parser::parse_tokens(&tokens, options).map_err(|e| format!("cannot parse: {e}"))
}
