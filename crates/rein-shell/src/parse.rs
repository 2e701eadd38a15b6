//! Text to brush-parser's syntax tree: its tokenizer, the fixes of
//! [`crate::tokens`], then its grammar. The checks that keep brush-parser
//! from panicking come first.

use brush_parser::ast::Program;
use brush_parser::ParserOptions;
use brush_parser::Token;

use crate::tokens::fix_parentheses;
use crate::words::{brush_would_hang, brush_would_panic};
use crate::MAX_PARTS;

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
    // More commands than the analysis keeps parts for: the grammar, which
    // costs far more than the tokenizer, is not run (a 63 KB `ls;ls;…` took
    // 80 ms to parse for parts that are cut at `MAX_PARTS` anyway).
    let separators = tokens
        .iter()
        .zip(std::iter::once(None).chain(tokens.iter().map(Some)))
        .filter(|(t, before)| match t {
            Token::Operator(op, _) if op == "\n" => {
                !matches!(before, Some(Token::Operator(b, _)) if b == "\n" || b == ";")
            }
            Token::Operator(op, _) => matches!(op.as_str(), ";" | "&&" | "||" | "|" | "|&" | "&"),
            Token::Word(..) => false,
        })
        .count();
    if separators > MAX_SEPARATORS {
        return Err(format!(
            "the command has more than {MAX_SEPARATORS} commands, more than the analysis lists ({MAX_PARTS} parts)"
        ));
    }
    if let Some(word) = tokens.iter().find_map(|t| match t {
        Token::Word(w, _) if element_word_too_intricate(w) => Some(w),
        _ => None,
    }) {
        let short: String = word.chars().take(40).collect();
        let more = if short.len() < word.len() { "…" } else { "" };
        return Err(format!(
            "cannot parse: the word {short:?}{more} starts like an array element and has more than \
             {MAX_ELEMENT_BRACKETS} brackets, more than the shell parser can read in bounded time"
        ));
    }
    brush_parser::parse_tokens(&tokens, options).map_err(|e| format!("cannot parse: {e}"))
}

/// Command separators (`;`, `&&`, `||`, `|`, `&`, line ends) above which
/// the text is not parsed: well beyond [`MAX_PARTS`], so that every command
/// line the parts could hold is parsed.
const MAX_SEPARATORS: usize = 4 * MAX_PARTS;

/// Brackets (`(`, `[`, `{`) above which a word that starts like an array
/// element (`name[`) is not given to brush-parser 0.4: its grammar tries
/// such a word as an assignment, and its time multiplies with each nested
/// bracket (found by fuzzing: `f[${f[${f[}}${f[${x[f[}${}}` takes a second,
/// a 175-byte command 27 s). Real element names have two or three.
const MAX_ELEMENT_BRACKETS: usize = 6;

fn element_word_too_intricate(word: &str) -> bool {
    let name_len = word
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let starts_like_element = name_len > 0
        && !word.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && word.as_bytes().get(name_len) == Some(&b'[');
    starts_like_element && word.matches(['(', '[', '{']).count() > MAX_ELEMENT_BRACKETS
}
