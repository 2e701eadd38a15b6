//! Token-level fixes between brush-parser's tokenizer and its grammar.
//!
//! brush-parser's grammar tries an arithmetic command `(( … ))` at every
//! two consecutive `(` tokens, and the rule for its expression backtracks
//! over every `(` that has no `)` before the next `;`: input such as
//! `((((((( { ((((((( x y` takes seconds, and each added `(` multiplies the
//! time (found by fuzzing). It also reads `( ( cmd ) )` as arithmetic, where
//! bash runs two nested subshells.
//!
//! Bash decides this lexically: `((` is an arithmetic command only when the
//! two parentheses are written together and the matching `))` is written
//! together too. This module applies that rule to the token stream before
//! the grammar sees it:
//!
//! - an arithmetic command becomes one word token `((…))` (the walker
//!   recognises it, since an unquoted word cannot otherwise begin with `(`),
//!   so the grammar never parses an arithmetic expression;
//! - any other pair of consecutive `(` tokens gets a newline token between
//!   them, which changes nothing for bash (a newline may follow `(`) and
//!   stops the grammar from trying `((` there.
//!
//! What remains is `for (( … ))`, whose expression the grammar still
//! parses: it is refused when it holds more than [`MAX_FOR_PARENS`] `(`.

use std::sync::Arc;

use brush_parser::{SourcePosition, SourceSpan, Token};

/// `(` tokens allowed inside a `for (( … ))` header.
pub(crate) const MAX_FOR_PARENS: usize = 8;

fn is_op(t: Option<&Token>, op: &str) -> bool {
    matches!(t, Some(Token::Operator(o, _)) if o == op)
}

/// The two tokens are written without anything between them.
fn touching(a: Option<&Token>, b: Option<&Token>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.location().end.index == b.location().start.index,
        _ => false,
    }
}

/// The index of the `)` that closes an arithmetic command opened by the
/// `((` at `open` (`open + 1` is the second `(`), if bash would read one:
/// the first `)` at depth zero must be followed at once by another.
fn arithmetic_end(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut k = open + 2;
    while let Some(t) = tokens.get(k) {
        if is_op(Some(t), "(") {
            depth += 1;
        } else if is_op(Some(t), ")") {
            if depth == 0 {
                let next = tokens.get(k + 1);
                return (is_op(next, ")") && touching(Some(t), next)).then_some(k + 1);
            }
            depth -= 1;
        }
        k += 1;
    }
    None
}

/// Applies bash's rule for `((` to `tokens` (see the module docs). `text`
/// is the source and `byte` maps a character index to a byte offset.
/// Refuses a `for (( … ))` header with too many parentheses.
pub(crate) fn fix_parentheses(
    tokens: Vec<Token>,
    text: &str,
    byte: impl Fn(usize) -> usize,
) -> Result<Vec<Token>, String> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        let next = tokens.get(i + 1);
        if !(is_op(Some(t), "(") && is_op(next, "(")) {
            out.push(t.clone());
            i += 1;
            continue;
        }
        let after_for = matches!(out.last(), Some(Token::Word(w, _)) if w == "for");
        let after_redirect = (is_op(out.last(), "<") || is_op(out.last(), ">")) && touching(out.last(), Some(t));
        if after_for {
            // `for (( … ))`: left to the grammar, bounded.
            let end = arithmetic_end(&tokens, i).unwrap_or(tokens.len());
            let parens = tokens
                .get(i + 2..end)
                .unwrap_or_default()
                .iter()
                .filter(|t| is_op(Some(t), "("))
                .count();
            if parens > MAX_FOR_PARENS {
                return Err(format!(
                    "a for (( … )) header has more than {MAX_FOR_PARENS} parentheses"
                ));
            }
            out.push(t.clone());
            i += 1;
            continue;
        }
        let arithmetic = if touching(Some(t), next) && !after_redirect {
            arithmetic_end(&tokens, i)
        } else {
            None
        };
        match (arithmetic, tokens.get(arithmetic.unwrap_or(0))) {
            (Some(end), Some(last)) => {
                let start = t.location().start.clone();
                let stop = last.location().end.clone();
                let word = text
                    .get(byte(start.index)..byte(stop.index))
                    .unwrap_or_default()
                    .to_owned();
                out.push(Token::Word(word, SourceSpan { start, end: stop }));
                i = end + 1;
            }
            _ => {
                if touching(Some(t), next) && heredoc_in_arithmetic_mode(&tokens, i) {
                    return Err("a here-document after `((` that is not arithmetic (brush-parser's \
                                tokenizer misreads it)"
                        .to_owned());
                }
                out.push(t.clone());
                if let Some(n) = next {
                    out.push(newline(t.location().end.clone(), n.location().start.clone()));
                }
                i += 1;
            }
        }
    }
    Ok(out)
}

/// brush-parser's tokenizer treats everything from a `((` written together
/// to the next `))` written together as arithmetic, where `<<` is a shift:
/// a here-document there is tokenized as commands. Harmless when bash also
/// reads arithmetic; otherwise (`<((…))`, `((cmd) )`) the tokens are wrong.
fn heredoc_in_arithmetic_mode(tokens: &[Token], open: usize) -> bool {
    let mut k = open + 2;
    while let Some(t) = tokens.get(k) {
        let next = tokens.get(k + 1);
        if is_op(Some(t), ")") && is_op(next, ")") && touching(Some(t), next) {
            return false;
        }
        if is_op(Some(t), "<<") || is_op(Some(t), "<<-") {
            return true;
        }
        k += 1;
    }
    false
}

fn newline(start: Arc<SourcePosition>, end: Arc<SourcePosition>) -> Token {
    Token::Operator("\n".to_owned(), SourceSpan { start, end })
}

/// An arithmetic command turned into one word by [`fix_parentheses`]: its
/// expression.
pub(crate) fn arithmetic_word(word: &str) -> Option<&str> {
    word.strip_prefix("((")?.strip_suffix("))")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(text: &str) -> Vec<String> {
        let tokens = brush_parser::uncached_tokenize_str(text, &Default::default()).unwrap();
        fix_parentheses(tokens, text, |i| i)
            .unwrap()
            .iter()
            .map(|t| t.to_str().to_owned())
            .collect()
    }

    #[test]
    fn arithmetic_commands_become_one_word() {
        assert_eq!(fixed("((i++)); ls"), ["((i++))", ";", "ls"]);
        assert_eq!(fixed("(( a + (b * 2) )) > f"), ["(( a + (b * 2) ))", ">", "f"]);
    }

    #[test]
    fn other_double_parentheses_are_separated() {
        assert_eq!(fixed("( (a) )"), ["(", "\n", "(", "a", ")", ")"]);
        assert_eq!(
            fixed("((a) | (b))"),
            ["(", "\n", "(", "a", ")", "|", "(", "b", ")", ")"]
        );
        assert_eq!(fixed("((a) )"), ["(", "\n", "(", "a", ")", ")"]);
        assert_eq!(fixed("cat <((ls))"), ["cat", "<", "(", "\n", "(", "ls", ")", ")"]);
        assert_eq!(fixed("(((x"), ["(", "\n", "(", "\n", "(", "x"]);
    }

    #[test]
    fn heredocs_the_tokenizer_misreads_are_refused() {
        let text = "cat <(( bash <<'E'\nprintf x\nE\ntrue ))";
        let tokens = brush_parser::uncached_tokenize_str(text, &Default::default()).unwrap();
        assert!(fix_parentheses(tokens, text, |i| i).is_err());
        let text = "cat <( ( bash <<'E'\nprintf x\nE\ntrue ))";
        let tokens = brush_parser::uncached_tokenize_str(text, &Default::default()).unwrap();
        assert!(fix_parentheses(tokens, text, |i| i).is_ok());
    }

    #[test]
    fn for_headers_are_left_but_bounded() {
        assert_eq!(
            fixed("for ((i=0;i<3;i++)); do :; done").get(1..3),
            Some(&["(".to_owned(), "(".to_owned()][..])
        );
        let many = format!("for (({}1{};;)); do :; done", "(".repeat(9), ")".repeat(9));
        let tokens = brush_parser::uncached_tokenize_str(&many, &Default::default()).unwrap();
        assert!(fix_parentheses(tokens, &many, |i| i).is_err());
    }
}
