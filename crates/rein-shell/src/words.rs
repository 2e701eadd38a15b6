//! One shell word as a rule sees it: quotes removed, expansions kept as
//! written, and the commands hidden inside it (`$(…)`, backticks, and those
//! nested in `${…}` and `$((…))`) collected so they become parts too.

use brush_parser::word::{self, ParameterExpr, WordPiece, WordPieceWithSource};
use brush_parser::ParserOptions;

use crate::{parse, MAX_DEPTH};

/// A command hidden inside a word: the text of a `$(…)` or backtick
/// substitution, analysed as a shell program of its own.
#[derive(Debug, Clone)]
pub(crate) struct Embedded {
    pub(crate) text: String,
}

/// What a word means once the shell has removed its quotes.
#[derive(Debug, Clone, Default)]
pub(crate) struct WordInfo {
    /// Quotes removed and escapes resolved; expansions kept as written
    /// (`"$HOME"/'a b'` → `$HOME/a b`).
    pub(crate) literal: String,
    /// The word contains a parameter expansion, a command substitution or an
    /// arithmetic expansion: its value is only known when it runs.
    pub(crate) dynamic: bool,
    /// Unquoted glob characters (`*`, `?`, `[`, extglob `@(…)`): the shell may
    /// replace the word by file names.
    pub(crate) glob: bool,
    /// Unquoted brace expansion (`{a,b}`, `{1..3}`): the word becomes several.
    pub(crate) brace: bool,
    /// Commands that run while the word is expanded.
    pub(crate) embedded: Vec<Embedded>,
    /// Why the word could not be read fully, if it could not.
    pub(crate) problem: Option<String>,
    /// brush-parser's word grammar left a `$(`, `${` or backtick as plain
    /// text: it gave up on a substitution that bash would run.
    pub(crate) gave_up: bool,
}

impl WordInfo {
    /// A word whose value is fixed before the command runs: no expansion, no
    /// glob, no brace expansion.
    pub(crate) fn is_literal(&self) -> bool {
        !self.dynamic && !self.glob && !self.brace && self.problem.is_none()
    }
}

/// Where a byte of shell text stands, as far as [`quoting`] can be sure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoted {
    /// Unquoted, or not known: the checks below treat it as unquoted.
    No,
    /// Inside `'…'`: plain text to every tokenizer.
    Single,
    /// Inside `"…"`, where only `$` and backquotes are special.
    Double,
}

/// Marks the bytes of `text` that are surely inside quotes, so the checks
/// for brush-parser's defects skip quoted text (`grep '<<;'` is harmless).
/// The scan follows plain single and double quotes and backslashes only;
/// from the first construct that changes what a quote means — a here-
/// document (its body is plain text), a comment, backquotes, `${`, `$((`,
/// `$'`, a substitution inside double quotes — every later byte counts as
/// unquoted. A mistake here can only make the checks stricter.
fn quoting(text: &str) -> Vec<Quoted> {
    let bytes = text.as_bytes();
    let mut marks = vec![Quoted::No; bytes.len()];
    let mut i = 0;
    let mut state = Quoted::No;
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match state {
            Quoted::Single => {
                if b == b'\'' {
                    state = Quoted::No;
                } else if let Some(mark) = marks.get_mut(i) {
                    *mark = Quoted::Single;
                }
            }
            Quoted::Double => match (b, next) {
                (b'"', _) => state = Quoted::No,
                (b'\\', _) => {
                    for mark in marks.iter_mut().skip(i).take(2) {
                        *mark = Quoted::Double;
                    }
                    i += 1;
                }
                (b'`', _) | (b'$', Some(b'(' | b'{')) => return marks,
                _ => {
                    if let Some(mark) = marks.get_mut(i) {
                        *mark = Quoted::Double;
                    }
                }
            },
            Quoted::No => match (b, next) {
                (b'\\', _) => i += 1,
                (b'\'', _) => state = Quoted::Single,
                (b'"', _) => state = Quoted::Double,
                (b'<', Some(b'<')) if bytes.get(i + 2) == Some(&b'<') => i += 2,
                (b'<', Some(b'<')) | (b'`', _) | (b'$', Some(b'{' | b'\'')) => return marks,
                (b'$', Some(b'(')) if bytes.get(i + 2) == Some(&b'(') => return marks,
                (b'#', _) if i == 0 || bytes.get(i - 1).is_some_and(|p| !p.is_ascii_alphanumeric()) => return marks,
                _ => {}
            },
        }
        i += 1;
    }
    marks
}

/// Text on which brush-parser 0.4 would panic: a number it parses with
/// `unwrap` into a fixed-size integer — an unquoted file descriptor before
/// `<` or `>` (`i32`), a directory-stack index after `~`, `~+` or `~-`
/// (`usize`).
pub(crate) fn brush_would_panic(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let marks = quoting(text);
    let mut i = 0;
    while i < bytes.len() {
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) || marks.get(i).is_some_and(|m| *m != Quoted::No) {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = text.get(start..i).unwrap_or_default().trim_start_matches('0');
        let after_tilde = match start.checked_sub(1).and_then(|j| bytes.get(j)) {
            Some(b'~') => true,
            Some(b'+' | b'-') => start.checked_sub(2).and_then(|j| bytes.get(j)) == Some(&b'~'),
            _ => false,
        };
        if after_tilde && digits.len() > 18 {
            return Some("a directory-stack index after ~ is too large".to_owned());
        }
        let before_redirect = matches!(bytes.get(i), Some(b'<' | b'>'));
        if before_redirect && (digits.len() > 10 || digits.parse::<i64>().is_ok_and(|n| n > i64::from(i32::MAX))) {
            return Some("a file descriptor number is too large".to_owned());
        }
    }
    None
}

/// Text on which brush-parser 0.4's tokenizer may loop forever, allocating
/// until memory runs out (found by fuzzing: `$(cat <<  `, `$(<< <  `): a
/// here-document operator not followed by a delimiter word (the end of the
/// input, an operator, a comment, a backtick). Bash refuses these too,
/// except as a shift in arithmetic (`$((1 << (n)))`), which is refused here
/// as well. Text surely inside quotes (see [`quoting`]) is skipped.
pub(crate) fn brush_would_hang(text: &str) -> Option<String> {
    let marks = quoting(text);
    // brush-parser 0.4's tokenizer panics (an `unwrap` at the end of a
    // `${…}`) on a here-document inside `${…}` (found by fuzzing).
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find("${")) {
        let start = from + found + 2;
        if marks.get(from + found) == Some(&Quoted::Single) {
            from = start;
            continue;
        }
        let inside = text.get(start..).unwrap_or_default();
        let inside = inside
            .get(..inside.find('}').unwrap_or(inside.len()))
            .unwrap_or_default();
        if inside
            .match_indices("<<")
            .any(|(i, _)| inside.get(i + 2..i + 3) != Some("<"))
        {
            return Some("a here-document inside ${…}".to_owned());
        }
        from = start;
    }
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find("<<")) {
        let at = from + found;
        from = at + 2;
        if marks.get(at).is_some_and(|m| *m != Quoted::No) {
            continue;
        }
        let mut j = at + 2;
        match bytes.get(j) {
            Some(b'<') => {
                from = j + 1;
                continue;
            }
            Some(b'-') => j += 1,
            _ => {}
        }
        loop {
            match bytes.get(j) {
                Some(b' ' | b'\t') => j += 1,
                // A backslash ending the text joins the newline that
                // `parse::program` appends (found by fuzzing: `$(l<<\t\\`).
                Some(b'\\') if matches!(bytes.get(j + 1), Some(&b'\n') | None) => j += 2,
                _ => break,
            }
        }
        if matches!(
            bytes.get(j),
            None | Some(b'#' | b'`' | b'<' | b'>' | b'|' | b'&' | b';' | b'(' | b')' | b'\n')
        ) {
            return Some("a here-document operator without a delimiter".to_owned());
        }
    }
    None
}

/// Reads a word as the shell would before running the command. `depth` is
/// the nesting the word is found at; expansions nested in it count on from
/// there.
pub(crate) fn analyze_word(raw: &str, options: &ParserOptions, depth: usize) -> WordInfo {
    let mut info = WordInfo::default();
    if let Some(problem) = brush_would_panic(raw) {
        info.literal = raw.to_owned();
        info.dynamic = true;
        info.problem = Some(problem);
        return info;
    }
    if too_many_parentheses(raw) {
        return fallback(raw, options);
    }
    match word::parse(raw, options) {
        Ok(pieces) => {
            let mut unquoted = String::new();
            render(raw, &pieces, false, options, depth, &mut info, &mut unquoted);
            info.glob = has_glob(&unquoted);
            info.brace = has_brace_expansion(&unquoted);
            if info.gave_up || misread_heredoc(raw, &info, options) {
                return fallback(raw, options);
            }
        }
        Err(_) => return fallback(raw, options),
    }
    info
}

/// Brackets (`(`, `[`, `{`) after the first `$(`, `$[` or `${` above
/// which a word is not given to brush-parser's word grammar: it backtracks
/// over each one that has no match (inside `$(…)`, a here-document can hold
/// any), so its time multiplies with each (fuzzing found 12 taking a
/// second).
const MAX_WORD_PARENS: usize = 8;

fn too_many_parentheses(raw: &str) -> bool {
    let first = ["$(", "$[", "${"].iter().filter_map(|o| raw.find(o)).min();
    first
        .and_then(|p| raw.get(p..))
        .is_some_and(|rest| rest.matches(['(', '[', '{']).count() > MAX_WORD_PARENS)
}

/// brush-parser's word grammar does not know here-documents: inside
/// `$(cat <<'EOF' … EOF)` a `)` of the document ends the substitution for
/// it. Seen as a substitution that does not parse.
fn misread_heredoc(raw: &str, info: &WordInfo, options: &ParserOptions) -> bool {
    raw.contains("<<") && info.embedded.iter().any(|e| parse::program(&e.text, options).is_err())
}

/// Reads a word without brush-parser's word grammar, for the words it
/// cannot be trusted with: the value is the word as written (dynamic), and
/// each `$(…)` ends at the first `)` before which the text parses as a
/// program (bash's rule, with the program parser, which knows
/// here-documents); backticks end at the next unescaped backtick. Quotes
/// are not followed, so a quoted `$(…)` counts too: more parts, never
/// fewer.
fn fallback(raw: &str, options: &ParserOptions) -> WordInfo {
    // Parses tried for the whole word, each at most the word's length.
    const MAX_ATTEMPTS: usize = 32;
    let mut attempts = 0;
    let mut info = WordInfo {
        literal: raw.to_owned(),
        dynamic: true,
        ..WordInfo::default()
    };
    let short: String = raw.chars().take(60).collect();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'$' if raw.get(i..).is_some_and(|r| r.starts_with("$((")) => {
                info.problem.get_or_insert_with(|| {
                    "an arithmetic expansion in a word that brush-parser cannot read".to_owned()
                });
                i += 3;
            }
            b'$' if bytes.get(i + 1) == Some(&b'(') => {
                let start = i + 2;
                let end = raw
                    .get(start..)
                    .unwrap_or_default()
                    .match_indices(')')
                    .map(|(j, _)| start + j)
                    .take_while(|_| {
                        attempts += 1;
                        attempts <= MAX_ATTEMPTS
                    })
                    .find(|&j| {
                        raw.get(start..j)
                            .is_some_and(|inner| parse::program(inner, options).is_ok())
                    });
                match end {
                    Some(j) => {
                        info.embedded.push(Embedded {
                            text: raw.get(start..j).unwrap_or_default().to_owned(),
                        });
                        i = j + 1;
                    }
                    None if attempts > MAX_ATTEMPTS => {
                        info.problem
                            .get_or_insert_with(|| format!("too many substitutions to read in {short:?}…"));
                        break;
                    }
                    None => {
                        info.problem
                            .get_or_insert_with(|| format!("cannot find the end of a $( in {short:?}…"));
                        i = start;
                    }
                }
            }
            b'`' => {
                let mut j = i + 1;
                while bytes.get(j).is_some_and(|&c| c != b'`') {
                    j += if bytes.get(j) == Some(&b'\\') { 2 } else { 1 };
                }
                match raw.get(i + 1..j).filter(|_| j < bytes.len()) {
                    Some(inner) => {
                        let text = inner.replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\");
                        info.embedded.push(Embedded { text });
                        i = j + 1;
                    }
                    None => {
                        info.problem
                            .get_or_insert_with(|| format!("cannot find the end of a backtick in {short:?}…"));
                        i = bytes.len();
                    }
                }
            }
            _ => i += 1,
        }
    }
    info
}

/// Reads the body of a here-document whose delimiter was not quoted: `$…`
/// and backticks expand, quotes are ordinary characters.
pub(crate) fn analyze_heredoc(raw: &str, options: &ParserOptions, depth: usize) -> WordInfo {
    let mut info = WordInfo::default();
    if let Some(problem) = brush_would_panic(raw) {
        info.literal = raw.to_owned();
        info.dynamic = true;
        info.problem = Some(problem);
        return info;
    }
    if too_many_parentheses(raw) {
        return fallback(raw, options);
    }
    match word::parse_heredoc(raw, options) {
        Ok(pieces) => {
            let mut unquoted = String::new();
            render(raw, &pieces, true, options, depth, &mut info, &mut unquoted);
            if info.gave_up || misread_heredoc(raw, &info, options) {
                return fallback(raw, options);
            }
        }
        Err(_) => return fallback(raw, options),
    }
    info
}

/// Appends the value of `pieces` to `info.literal`. `unquoted` receives the
/// unquoted text only, with a NUL standing for each quoted or expanded piece,
/// so glob and brace detection cannot be fooled by quotes.
fn render(
    raw: &str,
    pieces: &[WordPieceWithSource],
    quoted: bool,
    options: &ParserOptions,
    depth: usize,
    info: &mut WordInfo,
    unquoted: &mut String,
) {
    if depth > MAX_DEPTH {
        info.dynamic = true;
        info.literal.push_str(raw);
        if info.problem.is_none() {
            info.problem = Some(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        return;
    }
    // The previous piece was text ending in `$` (brush-parser may split a
    // `$(` it gave up on into `$` and `(…`).
    let mut dollar = false;
    for p in pieces {
        let source = raw.get(p.start_index..p.end_index).unwrap_or_default();
        let after_dollar = std::mem::take(&mut dollar);
        match &p.piece {
            WordPiece::Text(t) => {
                info.gave_up |= t.contains("$(")
                    || t.contains("${")
                    || t.contains('`')
                    || (after_dollar && t.starts_with(['(', '{']));
                dollar = t.ends_with('$');
                info.literal.push_str(t);
                if quoted {
                    unquoted.push('\0');
                } else {
                    unquoted.push_str(t);
                }
            }
            WordPiece::SingleQuotedText(t) => {
                info.literal.push_str(t);
                unquoted.push('\0');
            }
            WordPiece::AnsiCQuotedText(t) => {
                info.literal.push_str(&decode_ansi_c(t));
                unquoted.push('\0');
            }
            WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                render(raw, inner, true, options, depth + 1, info, unquoted);
                unquoted.push('\0');
            }
            WordPiece::EscapeSequence(e) => {
                let mut chars = e.chars();
                chars.next(); // the backslash
                let rest: String = chars.collect();
                if rest != "\n" {
                    info.literal.push_str(&rest);
                }
                unquoted.push('\0');
            }
            WordPiece::TildeExpansion(_) => {
                // Left as written: `~` and `~/.ssh` are what a rule matches.
                info.literal.push_str(source);
                unquoted.push('\0');
            }
            WordPiece::ParameterExpansion(expr) => {
                info.literal.push_str(source);
                info.dynamic = true;
                unquoted.push('\0');
                for text in parameter_texts(expr) {
                    scan_embedded(text, options, depth + 1, info);
                }
            }
            WordPiece::CommandSubstitution(inner) | WordPiece::BackquotedCommandSubstitution(inner) => {
                info.literal.push_str(source);
                info.dynamic = true;
                unquoted.push('\0');
                info.embedded.push(Embedded { text: inner.clone() });
            }
            WordPiece::ArithmeticExpression(expr) => {
                info.literal.push_str(source);
                info.dynamic = true;
                unquoted.push('\0');
                scan_embedded(&expr.value, options, depth + 1, info);
            }
        }
    }
}

/// Finds command substitutions inside text that the shell expands as a word
/// (a `${x:-…}` default, an arithmetic expression).
fn scan_embedded(text: &str, options: &ParserOptions, depth: usize, info: &mut WordInfo) {
    if !text.contains('$') && !text.contains('`') {
        return;
    }
    if let Some(problem) = brush_would_panic(text) {
        info.problem.get_or_insert(problem);
        return;
    }
    match word::parse(text, options) {
        Ok(pieces) => {
            let mut inner = WordInfo::default();
            let mut sink = String::new();
            render(text, &pieces, false, options, depth, &mut inner, &mut sink);
            info.embedded.extend(inner.embedded);
            info.gave_up |= inner.gave_up;
            if info.problem.is_none() {
                info.problem = inner.problem;
            }
        }
        Err(_) if text.contains("$(") || text.contains('`') => {
            if info.problem.is_none() {
                info.problem = Some(format!("cannot find the commands inside {text:?}"));
            }
        }
        Err(_) => {}
    }
}

/// The strings of a parameter expansion that are themselves expanded.
fn parameter_texts(expr: &ParameterExpr) -> Vec<&str> {
    use brush_parser::word::Parameter;
    let mut out: Vec<&str> = Vec::new();
    let param = match expr {
        ParameterExpr::Parameter { parameter, .. }
        | ParameterExpr::ParameterLength { parameter, .. }
        | ParameterExpr::Transform { parameter, .. } => Some(parameter),
        ParameterExpr::UseDefaultValues {
            parameter,
            default_value: v,
            ..
        }
        | ParameterExpr::AssignDefaultValues {
            parameter,
            default_value: v,
            ..
        }
        | ParameterExpr::IndicateErrorIfNullOrUnset {
            parameter,
            error_message: v,
            ..
        }
        | ParameterExpr::UseAlternativeValue {
            parameter,
            alternative_value: v,
            ..
        }
        | ParameterExpr::RemoveSmallestSuffixPattern {
            parameter, pattern: v, ..
        }
        | ParameterExpr::RemoveLargestSuffixPattern {
            parameter, pattern: v, ..
        }
        | ParameterExpr::RemoveSmallestPrefixPattern {
            parameter, pattern: v, ..
        }
        | ParameterExpr::RemoveLargestPrefixPattern {
            parameter, pattern: v, ..
        }
        | ParameterExpr::UppercaseFirstChar {
            parameter, pattern: v, ..
        }
        | ParameterExpr::UppercasePattern {
            parameter, pattern: v, ..
        }
        | ParameterExpr::LowercaseFirstChar {
            parameter, pattern: v, ..
        }
        | ParameterExpr::LowercasePattern {
            parameter, pattern: v, ..
        } => {
            if let Some(v) = v {
                out.push(v);
            }
            Some(parameter)
        }
        ParameterExpr::Substring {
            parameter,
            offset,
            length,
            ..
        } => {
            out.push(&offset.value);
            if let Some(l) = length {
                out.push(&l.value);
            }
            Some(parameter)
        }
        ParameterExpr::ReplaceSubstring {
            parameter,
            pattern,
            replacement,
            ..
        } => {
            out.push(pattern);
            if let Some(r) = replacement {
                out.push(r);
            }
            Some(parameter)
        }
        ParameterExpr::VariableNames { .. } | ParameterExpr::MemberKeys { .. } => None,
    };
    if let Some(Parameter::NamedWithIndex { index, .. }) = param {
        out.push(index);
    }
    out
}

/// Unquoted glob characters: `*`, `?`, a `[…]` class, or an extglob
/// pattern (`@(…)`, `!(…)`, `+(…)`).
fn has_glob(unquoted: &str) -> bool {
    if unquoted.contains(['*', '?']) || ["@(", "!(", "+("].iter().any(|p| unquoted.contains(p)) {
        return true;
    }
    match unquoted.find('[') {
        Some(open) => unquoted.get(open + 1..).is_some_and(|rest| rest.contains(']')),
        None => false,
    }
}

/// An unquoted `{…,…}` or `{x..y}`, which bash turns into several words.
fn has_brace_expansion(unquoted: &str) -> bool {
    let mut rest = unquoted;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open + 1..).unwrap_or_default();
        if let Some(close) = after.find('}') {
            let inside = after.get(..close).unwrap_or_default();
            if inside.contains(',') || inside.contains("..") {
                return true;
            }
        }
        rest = after;
    }
    false
}

/// Decodes the body of a `$'…'` string (ANSI-C quoting), as bash does.
pub(crate) fn decode_ansi_c(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'e' | 'E' => out.push('\u{1b}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' | '\'' | '"' | '?' => out.push(e),
            'c' => {
                if let Some(k) = chars.next() {
                    out.push(char::from((k as u32 & 0x1f) as u8));
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                push_code(&mut out, v & 0xff);
            }
            'x' | 'u' | 'U' => {
                let max = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v: u32 = 0;
                let mut n = 0;
                while n < max {
                    match chars.peek().and_then(|d| d.to_digit(16)) {
                        Some(d) => {
                            v = v.saturating_mul(16).saturating_add(d);
                            chars.next();
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push('\\');
                    out.push(e);
                } else {
                    push_code(&mut out, v);
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

fn push_code(out: &mut String, v: u32) {
    out.push(char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(raw: &str) -> WordInfo {
        analyze_word(raw, &ParserOptions::default(), 0)
    }

    #[test]
    fn quotes_are_removed() {
        assert_eq!(w(r#""a b"'c'\ d"#).literal, "a bc d");
        assert!(w(r#""a b"'c'\ d"#).is_literal());
        assert_eq!(w(r"\rm").literal, "rm");
        assert_eq!(w(r#"r""m"#).literal, "rm");
    }

    #[test]
    fn expansions_stay_as_written_and_are_dynamic() {
        let i = w(r#""$HOME"/'a b'"#);
        assert_eq!(i.literal, "$HOME/a b");
        assert!(i.dynamic);
        let i = w("$(echo rm)");
        assert_eq!(i.literal, "$(echo rm)");
        assert_eq!(i.embedded.len(), 1);
        assert_eq!(i.embedded[0].text, "echo rm");
    }

    #[test]
    fn nested_substitutions_are_found() {
        assert_eq!(w("${x:-$(rm y)}").embedded[0].text, "rm y");
        assert_eq!(w("$((1+$(rm z)))").embedded[0].text, "rm z");
        assert_eq!(w("${a[$(rm q)]}").embedded[0].text, "rm q");
    }

    #[test]
    fn nesting_is_bounded() {
        // Deeply nested words are read by the fallback, which still finds
        // the commands inside.
        let deep = format!("{}$(rm y){}", "${x:-".repeat(100), "}".repeat(100));
        let i = w(&deep);
        assert!(i.dynamic);
        assert_eq!(i.embedded.len(), 1);
        assert_eq!(i.embedded[0].text, "rm y");
        // Below the fallback's threshold, the depth limit applies.
        let info = analyze_word("${x:-${x:-$(rm y)}}", &ParserOptions::default(), MAX_DEPTH);
        assert!(info.problem.is_some_and(|p| p.contains("nested")));
    }

    #[test]
    fn numbers_brush_parser_cannot_hold_are_refused() {
        assert!(brush_would_panic("echo 99999999999>x").is_some());
        assert!(brush_would_panic("echo 0000000000000000000001>x").is_none());
        assert!(brush_would_panic("echo 2147483648<x").is_some());
        assert!(brush_would_panic("echo 2147483647<x").is_none());
        assert!(brush_would_panic("cd ~+99999999999999999999").is_some());
        assert!(brush_would_panic("cd ~-99999999999999999999/x").is_some());
        assert!(brush_would_panic("echo 99999999999999999999999 ~2").is_none());
        assert!(w("~99999999999999999999999").problem.is_some());
    }

    #[test]
    fn heredoc_operators_without_delimiter_are_refused() {
        for text in [
            "$(<<  ",
            "\"$(<<  ",
            "`$(<<  `",
            "$(<<  #x",
            "$(cat <<  \\\n",
            "$(l<<\t\t\\",
            "cat << \\",
            "cat <<",
            "$(<< <  ",
            "echo ${HO:E cat <<EOF\n} x\nEOF\n",
        ] {
            assert!(brush_would_hang(text).is_some(), "{text:?}");
        }
        assert!(brush_would_hang("echo ${a} <<EOF\nx\nEOF").is_none());
        for text in ["cat <<EOF\nx\nEOF", "cat <<< x", "echo $((1 << 2))", "cat <<-'E'\nE"] {
            assert!(brush_would_hang(text).is_none(), "{text:?}");
        }
        // Input ending after a delimiter: made safe by `parse::program`'s
        // final newline instead.
        for text in ["$(cat <<  r ", "$(<<\t\tr ", "$(l<<\t\te>))\\", "$(l<<\t\te>))\\\n"] {
            assert!(parse::program(text, &ParserOptions::default()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn quoted_text_is_not_taken_for_brush_defects() {
        let refused = |text: &str| brush_would_panic(text).or_else(|| brush_would_hang(text)).is_some();
        // Found by the property test `quoting_is_removed`.
        for text in [
            "a '<<;'",
            "a \"<<\"",
            "a 'x' \"<<\" '<<'",
            "a \\<\\<",
            "echo '99999999999>x'",
            "echo \"2147483648<x\"",
            "cd '~+99999999999999999999'",
            "echo '${x<<}'",
            "a \"$HOME <<\"",
        ] {
            assert!(!refused(text), "{text:?}");
        }
        // From the first construct the scan does not follow on, quotes no
        // longer count: a here-document body, a comment, backquotes, `${`,
        // `$((`, `$'`, a substitution in double quotes.
        for text in [
            "cat <<E\nit's\nE\n echo <<",
            "echo x # it's\n cat <<",
            "echo `echo '` <<",
            "echo ${x:-'} <<",
            "echo $(('1')) '<<;'",
            "echo $'\\'' <<;'",
            "echo \"$(echo ')\" <<;'",
            "echo \"`echo '`\" <<;'",
            "echo 'a' 99999999999>x",
            "echo \"${x<<}\"",
        ] {
            assert!(refused(text), "{text:?}");
        }
    }

    #[test]
    fn ansi_c_strings_are_decoded() {
        assert_eq!(w(r"$'\x72\x6d'").literal, "rm");
        assert_eq!(w(r"$'\162m'").literal, "rm");
        assert_eq!(decode_ansi_c(r"a\nb\u00e9\'"), "a\nbé'");
    }

    #[test]
    fn globs_and_braces_only_count_unquoted() {
        assert!(w("*.txt").glob);
        assert!(!w("'*.txt'").glob);
        assert!(!w("[").glob);
        assert!(w("/bin/r[m]").glob);
        assert!(w("@(rm|ls)").glob);
        assert!(w("{rm,-rf}").brace);
        assert!(w("a{1..3}").brace);
        assert!(!w("'{a,b}'").brace);
        assert!(!w("{}").brace);
    }

    #[test]
    fn tilde_is_kept() {
        let i = w("~/.ssh/id_rsa");
        assert_eq!(i.literal, "~/.ssh/id_rsa");
        assert!(i.is_literal());
    }
}
