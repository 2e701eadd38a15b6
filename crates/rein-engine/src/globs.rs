//! Whether a shell glob could name a path that a policy glob matches: the
//! `mayMatch` builtin, and `globIgnoreCase`.
//!
//! An agent's shell operand such as `~/.ss?/id_*` or `.en?` reads a secret
//! when it *could* expand to one, so the question is whether the two
//! patterns have a string in common. Both are turned into automata over
//! bytes and the product is searched for a common accepted string, which is
//! exact for what each automaton accepts:
//!
//! - the policy glob is compiled by `globset` with the options `.glob()`
//!   uses; its regex is rebuilt here as a Thompson NFA with globset's own
//!   syntax settings, so both sides of `mayMatch` accept what `.glob()`
//!   would (property-tested against `globset`);
//! - the shell operand is read as bash or zsh would read a glob
//!   ([`shell_glob_regex`]), over-approximating wherever shells differ
//!   (locale-dependent classes, `**`, extended globs, braces), so an answer
//!   of `false` is only given when no expansion can match.
//!
//! With `ignore_case`, both sides compare under case folding: ASCII letters,
//! and the non-ASCII characters whose case mapping is ASCII (`K` Kelvin sign,
//! `ſ`, `ı`, `ß`, `ẞ`, the `ﬀ`-`ﬆ` ligatures) written in the operand.
//! When the search would exceed [`MAX_PAIRS`] states, or the operand is
//! longer than [`MAX_OPERAND_CHARS`], the answer is `true`.

use regex_automata::nfa::thompson::{self, State, WhichCaptures, NFA};
use regex_automata::util::look::Look;
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use rustc_hash::{FxHashMap, FxHashSet};

/// Product states searched before answering `true` unexamined.
pub(crate) const MAX_PAIRS: usize = 1 << 18;

/// Largest NFA built for an operand, in bytes of heap.
const MAX_NFA_BYTES: usize = 4 << 20;

/// Longest operand analysed (PATH_MAX on Linux); a longer one may match
/// anything.
const MAX_OPERAND_CHARS: usize = 4096;

/// Nesting of braces and extended globs followed; deeper counts as "any".
const MAX_NESTING: usize = 16;

/// The policy side of `mayMatch`: a `.glob()` pattern as an automaton.
pub(crate) struct GlobAutomaton {
    nfa: NFA,
}

impl GlobAutomaton {
    /// Compiles a glob with the semantics of `.glob()`.
    pub(crate) fn new(pattern: &str) -> Result<GlobAutomaton, String> {
        let glob = crate::check::glob_builder(pattern)
            .build()
            .map_err(|e| e.kind().to_string())?;
        let nfa = compile(glob.regex()).map_err(|e| format!("the glob cannot be compiled: {e}"))?;
        Ok(GlobAutomaton { nfa })
    }

    /// True when some string matches both the shell glob `operand` and this
    /// glob (see the module documentation).
    pub(crate) fn may_match(&self, operand: &str, ignore_case: bool) -> bool {
        if operand.chars().count() > MAX_OPERAND_CHARS {
            return true;
        }
        let normalized = match normalize_glob_path(operand) {
            Some(n) => n,
            // A `..` after a wildcard: where it leads depends on the
            // expansion; anything may be named.
            None => return true,
        };
        // Most operands are plain ASCII paths: run them through the glob's
        // automaton directly, without building one for the operand.
        if normalized.bytes().all(|b| b.is_ascii() && !SHELL_SPECIAL.contains(&b)) {
            return self.accepts_ascii(normalized.as_bytes(), ignore_case);
        }
        let regex = shell_glob_regex(&widen_zsh_operators(&normalized), ignore_case);
        match compile(&regex) {
            Ok(nfa) => intersects(&nfa, &self.nfa, ignore_case),
            // Too large to analyse: assume the worst.
            Err(_) => true,
        }
    }

    /// True when the path `path` (not a pattern) matches this glob,
    /// comparing as [`GlobAutomaton::may_match`] does with `ignore_case`.
    pub(crate) fn matches_path(&self, path: &str, ignore_case: bool) -> bool {
        if path.is_ascii() {
            return self.accepts_ascii(path.as_bytes(), ignore_case);
        }
        let regex = format!(r"\A{}\z", literal_regex(path, ignore_case));
        match compile(&regex) {
            Ok(nfa) => intersects(&nfa, &self.nfa, ignore_case),
            Err(_) => true,
        }
    }
}

impl GlobAutomaton {
    /// Whether the glob accepts the ASCII bytes `text` (folded when
    /// `ignore_case`): the product with a one-string automaton, as a
    /// simulation. The same answer as [`intersects`] on the text's literal
    /// regex (property-tested).
    fn accepts_ascii(&self, text: &[u8], ignore_case: bool) -> bool {
        let mut walker = Walker::new(&self.nfa, ignore_case);
        let mut current: Vec<StateID> = vec![self.nfa.start_anchored()];
        let mut at_start = true;
        for &byte in text {
            let byte = if ignore_case { byte.to_ascii_lowercase() } else { byte };
            let mut next: Vec<StateID> = Vec::new();
            for &state in &current {
                let consuming = walker.closure(state, at_start, false).0.clone();
                for c in consuming {
                    for (set, to) in walker.moves(c).iter() {
                        if set[usize::from(byte >> 6)] & (1u64 << (byte & 63)) != 0 && !next.contains(to) {
                            next.push(*to);
                        }
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            current = next;
            at_start = false;
        }
        current.iter().any(|&state| walker.closure(state, at_start, true).1)
    }
}

/// Bytes with a meaning in a shell glob: an operand without any is a plain
/// path.
const SHELL_SPECIAL: &[u8] = b"*?[]{}()\\$`~^#<!@+";

fn compile(regex: &str) -> Result<NFA, String> {
    thompson::Compiler::new()
        // As globset builds its matcher.
        .syntax(syntax::Config::new().utf8(false).dot_matches_new_line(true))
        .configure(
            thompson::Config::new()
                .which_captures(WhichCaptures::None)
                .nfa_size_limit(Some(MAX_NFA_BYTES)),
        )
        .build(regex)
        .map_err(|e| e.to_string())
}

/// Lexical normalisation as `.glob()` applies to its operand (`//`, `.`,
/// `a/..`), for a glob. `None` when a `..` follows a part with glob
/// characters, since what it climbs out of depends on the expansion.
fn normalize_glob_path(path: &str) -> Option<String> {
    if !path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Some(path.to_string());
    }
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if has_glob_chars(last) => return None,
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    Some(match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    })
}

/// Whether a path part may stand for a part of unknown length: wildcards,
/// expansions left unexpanded (`$HOME`, `` `cmd` ``), a leading `~`.
/// zsh's extended glob operators (`^x` all but x, `x#` repeats, `a~b`
/// exclusion, `<1-9>` numbers) are literal text in bash. A path component
/// holding one unescaped is read as `*` (any component), which covers both
/// shells; when such a component is part of a brace list, the whole operand
/// is read as `**`.
fn widen_zsh_operators(path: &str) -> String {
    let operator_at = |part: &str, first_part: bool| {
        let mut escaped = false;
        part.char_indices().any(|(i, c)| {
            let found = !escaped && (matches!(c, '^' | '#' | '<') || (c == '~' && !(first_part && i == 0)));
            escaped = !escaped && c == '\\';
            found
        })
    };
    let parts: Vec<&str> = path.split('/').collect();
    if !parts.iter().enumerate().any(|(i, p)| operator_at(p, i == 0)) {
        return path.to_string();
    }
    let mut out: Vec<&str> = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if operator_at(part, i == 0) {
            if part.contains(['{', '}']) {
                return "**".to_string();
            }
            // A `[^...]` class inside the part is matched by `*` as well.
            out.push("*");
        } else {
            out.push(part);
        }
    }
    out.join("/")
}

fn has_glob_chars(part: &str) -> bool {
    part.starts_with('~') || part.contains(['*', '?', '[', ']', '{', '}', '\\', '(', ')', '$', '`'])
}

// Regex pieces for the shell side. `(?-u:…)` matches bytes, so a piece
// covers a C-locale shell (one byte) as well as a UTF-8 one (one character).

/// `**` (zsh, bash with `globstar`) and the extended globs: anything.
const ANY_STRING: &str = r"(?s-u:.*)";
/// `*`: anything within one path component.
const IN_COMPONENT: &str = r"(?-u:[^/]*)";
/// `?`: one character (or byte) other than `/`.
const ONE_CHAR: &str = r"(?:[^/]|(?-u:[^/]))";

/// Non-ASCII characters whose case mapping (lower, upper, or the lower of
/// the upper) is ASCII, with that mapping in lower case. A case-insensitive
/// file system may fold them into ASCII names (`.\u{212A}ube` for
/// `.kube`). Checked against the standard library in the tests.
const FOLDS_TO_ASCII: &[(char, &str)] = &[
    ('\u{DF}', "ss"),
    ('\u{131}', "i"),
    ('\u{17F}', "s"),
    ('\u{1E9E}', "ss"),
    ('\u{212A}', "k"),
    ('\u{FB00}', "ff"),
    ('\u{FB01}', "fi"),
    ('\u{FB02}', "fl"),
    ('\u{FB03}', "ffi"),
    ('\u{FB04}', "ffl"),
    ('\u{FB05}', "st"),
    ('\u{FB06}', "st"),
];

/// Every ASCII string a single character may fold to, as regex
/// alternatives: what a wildcard character may stand for under folding.
fn all_folds() -> String {
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for (_, s) in FOLDS_TO_ASCII {
        if !seen.contains(s) {
            seen.push(s);
            out.push('|');
            out.push_str(s);
        }
    }
    out
}

/// A regex for the shell glob `glob`, anchored at both ends.
pub(crate) fn shell_glob_regex(glob: &str, ignore_case: bool) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let conv = ShellGlob {
        chars: &chars,
        ignore_case,
    };
    let mut out = String::from(r"\A(?:");
    conv.sequence(0, chars.len(), 0, &mut out);
    out.push_str(r")\z");
    out
}

/// The regex of a string taken literally.
fn literal_regex(text: &str, ignore_case: bool) -> String {
    let mut out = String::new();
    for c in text.chars() {
        push_literal(c, ignore_case, &mut out);
    }
    out
}

fn push_literal(c: char, ignore_case: bool, out: &mut String) {
    let folds = if ignore_case { fold_of(c) } else { None };
    match folds {
        Some(ascii) => {
            out.push_str("(?:");
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            out.push('|');
            out.push_str(ascii);
            out.push(')');
        }
        None => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
    }
}

fn fold_of(c: char) -> Option<&'static str> {
    FOLDS_TO_ASCII.iter().find(|(f, _)| *f == c).map(|(_, s)| *s)
}

struct ShellGlob<'a> {
    chars: &'a [char],
    ignore_case: bool,
}

impl ShellGlob<'_> {
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    /// Converts `chars[start..end]`.
    fn sequence(&self, start: usize, end: usize, depth: usize, out: &mut String) {
        let mut i = start;
        while i < end {
            let c = self.chars[i];
            match c {
                '\\' if i + 1 < end => {
                    push_literal(self.chars[i + 1], self.ignore_case, out);
                    i += 2;
                }
                '(' => match self.closing(i, end, '(', ')') {
                    // zsh's `(a|b)` and glob qualifiers (`id_rsa(N)`),
                    // bash's text: anything covers them.
                    Some(close) => {
                        out.push_str(ANY_STRING);
                        i = close + 1;
                    }
                    None => {
                        push_literal('(', self.ignore_case, out);
                        i += 1;
                    }
                },
                '*' | '?' | '+' | '@' | '!' if self.at(i + 1) == Some('(') => {
                    // An extended glob (`*(a|b)`, `!(x)`); without `extglob`
                    // it is literal text, which "anything" covers as well.
                    match self.closing(i + 1, end, '(', ')') {
                        Some(close) => {
                            out.push_str(ANY_STRING);
                            i = close + 1;
                        }
                        None => {
                            self.simple(c, out);
                            i += 1;
                        }
                    }
                }
                '*' => {
                    let mut j = i;
                    while j < end && self.chars[j] == '*' {
                        j += 1;
                    }
                    out.push_str(if j - i >= 2 { ANY_STRING } else { IN_COMPONENT });
                    i = j;
                }
                '~' if i == 0 && depth == 0 => {
                    // `~` or `~user`: a home directory, which may be any
                    // path.
                    let mut j = i + 1;
                    while j < end && self.chars[j] != '/' {
                        j += 1;
                    }
                    out.push_str(ANY_STRING);
                    i = j;
                }
                '$' if self
                    .at(i + 1)
                    .is_some_and(|c| c.is_alphanumeric() || "_{(@*#?$!-".contains(c)) =>
                {
                    // An expansion left as written (`$HOME`, `${X}`,
                    // `$(cmd)`): its value may be anything.
                    out.push_str(ANY_STRING);
                    i = match self.at(i + 1) {
                        Some('{') => self.closing(i + 1, end, '{', '}').map_or(end, |c| c + 1),
                        Some('(') => self.closing(i + 1, end, '(', ')').map_or(end, |c| c + 1),
                        Some(c) if c.is_alphanumeric() || c == '_' => {
                            let mut j = i + 1;
                            while j < end && (self.chars[j].is_alphanumeric() || self.chars[j] == '_') {
                                j += 1;
                            }
                            j
                        }
                        _ => i + 2,
                    };
                }
                '`' => {
                    out.push_str(ANY_STRING);
                    let mut j = i + 1;
                    while j < end && self.chars[j] != '`' {
                        j += if self.chars[j] == '\\' { 2 } else { 1 };
                    }
                    i = (j + 1).min(end);
                }
                '[' => match self.bracket(i, end) {
                    Some(next) => {
                        self.bracket_regex(i, next, out);
                        i = next;
                    }
                    None => {
                        push_literal('[', self.ignore_case, out);
                        i += 1;
                    }
                },
                '{' => match self.closing(i, end, '{', '}') {
                    Some(close) if depth >= MAX_NESTING => {
                        out.push_str(ANY_STRING);
                        i = close + 1;
                    }
                    Some(close) => {
                        let commas = self.top_level_commas(i + 1, close);
                        if !commas.is_empty() {
                            // Brace expansion: one word per alternative.
                            out.push_str("(?:");
                            let mut from = i + 1;
                            for (n, &comma) in commas.iter().chain([close].iter()).enumerate() {
                                if n > 0 {
                                    out.push('|');
                                }
                                self.sequence(from, comma, depth + 1, out);
                                from = comma + 1;
                            }
                            out.push(')');
                            i = close + 1;
                        } else if self.chars[i + 1..close].windows(2).any(|w| w == ['.', '.']) {
                            // A sequence (`{1..9}`, `{a..z}`): some words
                            // within one component, or the text itself.
                            let text: String = self.chars[i..=close].iter().collect();
                            out.push_str("(?:");
                            out.push_str(if text.contains('/') { ANY_STRING } else { IN_COMPONENT });
                            out.push(')');
                            i = close + 1;
                        } else {
                            push_literal('{', self.ignore_case, out);
                            i += 1;
                        }
                    }
                    None => {
                        push_literal('{', self.ignore_case, out);
                        i += 1;
                    }
                },
                c => {
                    self.simple(c, out);
                    i += 1;
                }
            }
        }
    }

    fn simple(&self, c: char, out: &mut String) {
        match c {
            '?' => {
                if self.ignore_case {
                    out.push_str("(?:");
                    out.push_str(ONE_CHAR);
                    out.push_str(&all_folds());
                    out.push(')');
                } else {
                    out.push_str(ONE_CHAR);
                }
            }
            '*' => out.push_str(IN_COMPONENT),
            c => push_literal(c, self.ignore_case, out),
        }
    }

    /// The position of the `close` that matches the `open` at `i`, skipping
    /// escaped characters and nested pairs.
    fn closing(&self, i: usize, end: usize, open: char, close: char) -> Option<usize> {
        let mut depth = 0usize;
        let mut j = i;
        while j < end {
            let c = self.chars[j];
            if c == '\\' {
                j += 2;
                continue;
            }
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            j += 1;
        }
        None
    }

    fn top_level_commas(&self, start: usize, end: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut j = start;
        while j < end {
            match self.chars[j] {
                '\\' => j += 1,
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => out.push(j),
                _ => {}
            }
            j += 1;
        }
        out
    }

    /// The position after the `]` that closes the bracket expression at
    /// `i`, or `None` when it is not one (then `[` is literal, as in bash).
    fn bracket(&self, i: usize, end: usize) -> Option<usize> {
        let mut j = i + 1;
        if matches!(self.at(j), Some('!' | '^')) {
            j += 1;
        }
        let mut first = true;
        while j < end {
            let c = self.chars[j];
            if c == ']' && !first {
                return Some(j + 1);
            }
            if c == '[' && matches!(self.at(j + 1), Some(':' | '=' | '.')) {
                if let Some(close) = self.class_name_end(j, end) {
                    j = close;
                    first = false;
                    continue;
                }
            }
            j += if c == '\\' { 2 } else { 1 };
            first = false;
        }
        None
    }

    /// For `[:name:]`, `[=c=]`, `[.c.]` at `j`: the position after its `]`.
    fn class_name_end(&self, j: usize, end: usize) -> Option<usize> {
        let kind = self.at(j + 1)?;
        let mut k = j + 2;
        while k + 1 < end {
            if self.chars[k] == kind && self.chars[k + 1] == ']' {
                return Some(k + 2);
            }
            k += 1;
        }
        None
    }

    /// The regex of the bracket expression `chars[i..next]`.
    fn bracket_regex(&self, i: usize, next: usize, out: &mut String) {
        let mut j = i + 1;
        let negated = matches!(self.at(j), Some('!' | '^'));
        if negated {
            j += 1;
        }
        let end = next - 1; // the closing `]`
        let mut ranges: Vec<(char, char)> = Vec::new();
        // Members whose extent depends on the locale: `[:alpha:]` and the
        // like may hold non-ASCII characters, `[=e=]` and `[.x.]` others.
        let mut locale_dependent = false;
        let mut posix: Vec<&'static str> = Vec::new();
        let mut unknown_member = false;
        while j < end {
            let c = self.chars[j];
            if c == '[' && matches!(self.at(j + 1), Some(':' | '=' | '.')) {
                if let Some(close) = self.class_name_end(j, end + 1) {
                    let name: String = self.chars[j + 2..close - 2].iter().collect();
                    let mut name_chars = name.chars();
                    match (
                        self.chars[j + 1],
                        posix_class(&name),
                        name_chars.next(),
                        name_chars.next(),
                    ) {
                        (':', Some(set), _, _) => posix.push(set),
                        // `[=e=]`, `[.e.]`: the character and, in some
                        // locales, others.
                        ('=' | '.', _, Some(c), None) => ranges.push((c, c)),
                        // An unknown class or a named collating symbol
                        // (`[.hyphen.]`): could be any character.
                        _ => unknown_member = true,
                    }
                    locale_dependent = true;
                    j = close;
                    continue;
                }
            }
            let (lo, after) = self.member(j);
            if self.at(after) == Some('-') && after + 1 < end {
                let (hi, after_hi) = self.member(after + 1);
                // An inverted range matches nothing in bash; keeping both
                // ends only errs towards a match.
                if lo <= hi {
                    ranges.push((lo, hi));
                } else {
                    ranges.push((lo, lo));
                    ranges.push((hi, hi));
                }
                j = after_hi;
            } else {
                ranges.push((lo, lo));
                j = after;
            }
        }
        let text: String = self.chars[i..next].iter().collect();
        let has_slash = text.contains('/');
        let mut alts: Vec<String> = Vec::new();
        if negated {
            // Exclude only what is certain: ASCII members, and never more.
            let mut class = String::from("[^/");
            let mut bytes = String::from("(?-u:[^/");
            for &(lo, hi) in &ranges {
                class.push_str(&class_range(lo, hi));
                if hi.is_ascii() {
                    bytes.push_str(&byte_range(lo as u8, hi as u8));
                } else if lo.is_ascii() {
                    bytes.push_str(&byte_range(lo as u8, 0x7F));
                }
            }
            for set in &posix {
                class.push_str(set);
                bytes.push_str(set);
            }
            if locale_dependent {
                // `[![:alpha:]]` may or may not exclude `é`: let it match.
                alts.push(r"[\x{80}-\x{10FFFF}]".to_string());
            }
            class.push(']');
            bytes.push_str("])");
            alts.push(class);
            alts.push(bytes);
            if self.ignore_case {
                alts.push(all_folds()[1..].to_string());
            }
        } else {
            let mut class = String::from("[");
            let mut bytes = String::from("(?-u:[");
            let mut folds: Vec<&str> = Vec::new();
            for &(lo, hi) in &ranges {
                class.push_str(&class_range(lo, hi));
                if hi.is_ascii() {
                    bytes.push_str(&byte_range(lo as u8, hi as u8));
                } else {
                    if lo.is_ascii() {
                        bytes.push_str(&byte_range(lo as u8, 0x7F));
                    }
                    bytes.push_str(r"\x80-\xFF");
                }
                if self.ignore_case {
                    for (f, s) in FOLDS_TO_ASCII {
                        if (lo..=hi).contains(f) && !folds.contains(s) {
                            folds.push(s);
                        }
                    }
                }
            }
            for set in &posix {
                class.push_str(set);
                bytes.push_str(set);
            }
            if locale_dependent {
                class.push_str(r"\x{80}-\x{10FFFF}");
                bytes.push_str(r"\x80-\xFF");
                if self.ignore_case {
                    folds = FOLDS_TO_ASCII.iter().map(|(_, s)| *s).collect();
                }
            }
            if unknown_member {
                alts.push(ONE_CHAR.to_string());
            }
            if class.len() > 1 {
                class.push(']');
                bytes.push_str("])");
                alts.push(class);
                alts.push(bytes);
            }
            alts.extend(folds.iter().map(|s| s.to_string()));
            if alts.is_empty() {
                alts.push(ONE_CHAR.to_string());
            }
        }
        if has_slash {
            // Bash splits a pattern at `/` before matching, which leaves
            // such a bracket as literal text.
            alts.push(literal_regex(&text, self.ignore_case));
        }
        out.push_str("(?:");
        out.push_str(&alts.join("|"));
        out.push(')');
    }

    /// One member character at `j` (a backslash escapes), and the position
    /// after it.
    fn member(&self, j: usize) -> (char, usize) {
        match self.chars[j] {
            '\\' if j + 1 < self.chars.len() => (self.chars[j + 1], j + 2),
            c => (c, j + 1),
        }
    }
}

fn class_range(lo: char, hi: char) -> String {
    if lo == hi {
        format!(r"\x{{{:X}}}", lo as u32)
    } else {
        format!(r"\x{{{:X}}}-\x{{{:X}}}", lo as u32, hi as u32)
    }
}

fn byte_range(lo: u8, hi: u8) -> String {
    if lo == hi {
        format!(r"\x{lo:02X}")
    } else {
        format!(r"\x{lo:02X}-\x{hi:02X}")
    }
}

/// The ASCII part of a POSIX class, in regex class syntax.
fn posix_class(name: &str) -> Option<&'static str> {
    Some(match name {
        "alpha" => "[:alpha:]",
        "digit" => "[:digit:]",
        "alnum" => "[:alnum:]",
        "upper" => "[:upper:]",
        "lower" => "[:lower:]",
        "space" => "[:space:]",
        "blank" => "[:blank:]",
        "punct" => "[:punct:]",
        "print" => "[:print:]",
        "graph" => "[:graph:]",
        "cntrl" => "[:cntrl:]",
        "xdigit" => "[:xdigit:]",
        "word" => "[:word:]",
        _ => return None,
    })
}

/// A set of bytes.
type ByteSet = [u64; 4];

fn set_add(set: &mut ByteSet, lo: u8, hi: u8, fold: bool) {
    for b in lo..=hi {
        let b = if fold { b.to_ascii_lowercase() } else { b };
        set[usize::from(b >> 6)] |= 1u64 << (b & 63);
    }
}

fn overlaps(a: &ByteSet, b: &ByteSet) -> bool {
    a.iter().zip(b).any(|(x, y)| x & y != 0)
}

/// The byte transitions of one NFA, by state, with epsilon closures
/// computed on demand.
struct Walker<'a> {
    nfa: &'a NFA,
    fold: bool,
    /// (state, at start, at end) → consuming states reached and whether a
    /// match is.
    closures: FxHashMap<(StateID, bool, bool), (Vec<StateID>, bool)>,
    /// Consuming state → its transitions as (bytes, next).
    moves: FxHashMap<StateID, Vec<(ByteSet, StateID)>>,
}

impl<'a> Walker<'a> {
    fn new(nfa: &'a NFA, fold: bool) -> Walker<'a> {
        Walker {
            nfa,
            fold,
            closures: FxHashMap::default(),
            moves: FxHashMap::default(),
        }
    }

    fn closure(&mut self, from: StateID, at_start: bool, at_end: bool) -> &(Vec<StateID>, bool) {
        let nfa = self.nfa;
        self.closures.entry((from, at_start, at_end)).or_insert_with(|| {
            let mut consuming = Vec::new();
            let mut matched = false;
            let mut seen: FxHashSet<StateID> = FxHashSet::default();
            let mut stack = vec![from];
            while let Some(id) = stack.pop() {
                if !seen.insert(id) {
                    continue;
                }
                match nfa.state(id) {
                    State::ByteRange { .. } | State::Sparse(_) | State::Dense(_) => consuming.push(id),
                    State::Look { look, next } => {
                        let holds = match look {
                            Look::Start => at_start,
                            Look::End => at_end,
                            // Not produced by either side; passing errs
                            // towards a match.
                            _ => true,
                        };
                        if holds {
                            stack.push(*next);
                        }
                    }
                    State::Union { alternates } => stack.extend(alternates.iter().rev()),
                    State::BinaryUnion { alt1, alt2 } => {
                        stack.push(*alt2);
                        stack.push(*alt1);
                    }
                    State::Capture { next, .. } => stack.push(*next),
                    State::Fail => {}
                    State::Match { .. } => matched = true,
                }
            }
            (consuming, matched)
        })
    }

    fn moves(&mut self, id: StateID) -> &Vec<(ByteSet, StateID)> {
        let nfa = self.nfa;
        let fold = self.fold;
        self.moves.entry(id).or_insert_with(|| {
            let mut by_next: FxHashMap<StateID, ByteSet> = FxHashMap::default();
            match nfa.state(id) {
                State::ByteRange { trans } => {
                    set_add(by_next.entry(trans.next).or_default(), trans.start, trans.end, fold);
                }
                State::Sparse(sparse) => {
                    for t in sparse.transitions.iter() {
                        set_add(by_next.entry(t.next).or_default(), t.start, t.end, fold);
                    }
                }
                State::Dense(dense) => {
                    for (b, next) in dense.transitions.iter().enumerate() {
                        if *next != StateID::ZERO {
                            let b = u8::try_from(b).unwrap_or(u8::MAX);
                            set_add(by_next.entry(*next).or_default(), b, b, fold);
                        }
                    }
                }
                _ => {}
            }
            by_next.into_iter().map(|(next, set)| (set, next)).collect()
        })
    }
}

/// True when some byte string is accepted by both NFAs (after folding ASCII
/// case when `fold`), or when the search grows past [`MAX_PAIRS`].
fn intersects(a: &NFA, b: &NFA, fold: bool) -> bool {
    let mut wa = Walker::new(a, fold);
    let mut wb = Walker::new(b, fold);
    let start = (a.start_anchored(), b.start_anchored(), true);
    let mut seen: FxHashSet<(StateID, StateID, bool)> = FxHashSet::default();
    let mut queue = vec![start];
    seen.insert(start);
    while let Some((sa, sb, at_start)) = queue.pop() {
        if wa.closure(sa, at_start, true).1 && wb.closure(sb, at_start, true).1 {
            return true;
        }
        let ca = wa.closure(sa, at_start, false).0.clone();
        let cb = wb.closure(sb, at_start, false).0.clone();
        for &x in &ca {
            let mx = wa.moves(x).clone();
            for &y in &cb {
                for (sx, nx) in &mx {
                    for (sy, ny) in wb.moves(y).iter() {
                        if overlaps(sx, sy) {
                            let pair = (*nx, *ny, false);
                            if seen.insert(pair) {
                                if seen.len() > MAX_PAIRS {
                                    return true;
                                }
                                queue.push(pair);
                            }
                        }
                    }
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn may(operand: &str, glob: &str) -> bool {
        GlobAutomaton::new(glob).unwrap().may_match(operand, false)
    }

    fn may_ci(operand: &str, glob: &str) -> bool {
        GlobAutomaton::new(glob).unwrap().may_match(operand, true)
    }

    #[test]
    fn operands_that_could_name_a_secret_may_match() {
        for (operand, glob) in [
            ("/home/u/.ss?/id_*", "**/.ssh/**"),
            (".en?", "**/.env"),
            (".env", "**/.env"),
            ("/p/.e*", "**/.env"),
            ("/p/[.]env", "**/.env"),
            ("/p/.[!x]nv", "**/.env"),
            ("/p/.[^x]nv", "**/.env"),
            ("/p/.[[:alpha:]]nv", "**/.env"),
            ("/p/.[[=e=]]nv", "**/.env"),
            ("/p/.[[.e.]]nv", "**/.env"),
            ("/p/.[[.hyphen.]]nv", "**/.env"),
            ("/p/.[[:nonsense:]]nv", "**/.env"),
            ("/p/.[![=x=]]nv", "**/.env"),
            ("/p/*/.env", "**/.env"),
            ("/p/**", "**/.env"),
            ("/home/u/.{ssh,aws}/id_rsa", "**/.ssh/**"),
            ("/p/.e@(n|x)v", "**/.env"),
            ("/p/.\\env", "**/.env"),
            ("/home/u/.ssh/x/../id_rsa", "**/.ssh/id_rsa"),
            ("/home/u/.ssh", "**/.ssh"),
            ("/p/{a..z}/.env", "**/.env"),
            ("/p/[a/b]", "/p/[a/b]"),
            // `**` reaches below.
            ("/home/**/id_rsa", "/home/u/.ssh/id_rsa"),
            ("/home/*/.ssh/id_rsa", "/home/u/.ssh/id_rsa"),
            // zsh: alternation, qualifiers, extended glob operators.
            ("/home/u/.(ssh|aws)/id_rsa", "**/.ssh/**"),
            ("/home/u/.ssh/id_rsa(N)", "**/.ssh/id_rsa"),
            ("/home/u/.ssh/^id_rsa.pub", "**/.ssh/id_rsa"),
            ("/home/u/.ssh/id_rsa#", "**/.ssh/id_rsa"),
            ("/home/u/.s#h/id_rsa", "**/.ssh/id_rsa"),
            ("/home/u/.ssh/*~*.pub", "**/.ssh/id_rsa"),
            ("/home/u/.ssh/id_<->", "**/.ssh/id_1"),
            ("/home/u/{.ssh,^x}/id", "**/.ssh/**"),
            // A home directory or an expansion may be any path.
            ("~/.ss?/id_*", "/home/u/.ssh/id_rsa"),
            ("~alice/.ssh/id_rsa", "/Users/alice/.ssh/id_rsa"),
            ("~", "/home/u"),
            ("$HOME/.ssh/id_rsa", "/home/u/.ssh/id_rsa"),
            ("${HOME}/.ssh/id_rsa", "/Users/bob/.ssh/id_rsa"),
            ("$(pwd)/.env", "/p/.env"),
            ("`pwd`/.env", "/p/.env"),
            ("~/../u/.ssh/id_rsa", "/home/u/.ssh/id_rsa"),
            // A `..` after a wildcard could lead anywhere.
            ("/p/*/../.env", "**/.env"),
            ("/p/*/../x", "/etc/passwd"),
        ] {
            assert!(may(operand, glob), "{operand} should may-match {glob}");
        }
    }

    #[test]
    fn operands_that_cannot_name_a_secret_do_not() {
        for (operand, glob) in [
            ("/p/src/*.rs", "**/.env"),
            ("/p/.en", "**/.env"),
            ("/p/.env?", "**/.env"),
            ("/p/.[!e]nv", "**/.env"),
            ("/p/.[![=e=]]nv", "**/.env"),
            ("/p/.[[=x=]]nv", "**/.env"),
            ("/p/?env", "**/.ssh/**"),
            ("/home/u/*", "/home/u/.ssh/**"),
            ("/home/u/.ssh*", "/home/u/.ssh/**"),
            ("/p/.ENV", "**/.env"),
            ("/p/.{a,b}nv", "**/.env"),
            ("/p/x/../y", "/p/x"),
            // A lone `$` is literal; escaped zsh operators are too.
            ("/p/\\^x", "/p/y"),
            ("/p/$", "/p/a"),
            ("~/.ssh/id_rsa.pub", "**/.ssh/id_rsa"),
        ] {
            assert!(!may(operand, glob), "{operand} should not may-match {glob}");
        }
    }

    #[test]
    fn a_shell_wildcard_may_stand_for_several_bytes_of_the_policy_glob() {
        use Tok::{Class, Lit, Quest};
        // A shell `?` or class matches one character, of up to four bytes in
        // UTF-8, where a policy `?` matches one byte. The first two were
        // found by the property test below.
        for (toks, glob, both) in [
            (vec![Quest, Quest], "???{a,b/}", "€a"),
            (vec![Quest, Lit('a'), Quest], "a????", "aa€"),
            (vec![Quest], "????", "𝄞"),
            (vec![Class(true, vec!['a']), Lit('b')], "???b", "€b"),
        ] {
            let operand = render(&toks);
            assert!(shell_matches(&toks, both.as_bytes()), "{operand} on {both}");
            assert!(
                crate::check::compile_glob(glob).unwrap().is_match(both),
                "{glob} on {both}"
            );
            assert!(
                may(&operand, glob),
                "{operand} should may-match {glob}, as {both} matches both"
            );
        }
        // No character is longer than four bytes or shorter than one: the
        // first `?` below can only be `a`, the last at most four bytes.
        assert!(!may("?", "?????"));
        assert!(may("?a?", "a?????"));
        assert!(!may("?a?", "a??????"));
        assert!(!may("??", "?"));
    }

    #[test]
    fn ignore_case_folds_ascii_and_the_characters_that_fold_into_it() {
        assert!(may_ci("/p/.ENV", "**/.env"));
        assert!(may_ci("/p/.En?", "**/.env"));
        assert!(may_ci("/p/.env", "**/.ENV"));
        assert!(may_ci("/home/u/.\u{212A}ube/config", "**/.kube/config"));
        assert!(may_ci("/home/u/.\u{17F}\u{17F}h/id_rsa", "**/.ssh/**"));
        assert!(may_ci("/home/u/.[\u{17F}]sh/id_rsa", "**/.ssh/**"));
        assert!(may_ci("/home/u/.[!sS]sh/id_rsa", "**/.ssh/**"));
        assert!(may_ci("/home/u/.?h/id_rsa", "**/.ssh/**"));
        assert!(may_ci("/p/con\u{FB01}g", "/p/config"));
        assert!(!may_ci("/p/.enx", "**/.env"));
        assert!(!may("/home/u/.\u{212A}ube/config", "**/.kube/config"));
    }

    #[test]
    fn the_fold_table_is_what_the_standard_library_says() {
        let mut found: Vec<(char, String)> = Vec::new();
        for c in (0x80u32..=0x10FFFF).filter_map(char::from_u32) {
            let lower: String = c.to_lowercase().collect();
            let upper: String = c.to_uppercase().collect();
            let lower_of_upper: String = upper.chars().flat_map(char::to_lowercase).collect();
            let upper_of_lower: String = lower.chars().flat_map(char::to_uppercase).collect();
            let ascii = [lower, upper, lower_of_upper, upper_of_lower]
                .into_iter()
                .find(|s| s.is_ascii());
            if let Some(s) = ascii {
                found.push((c, s.to_ascii_lowercase()));
            }
        }
        let table: Vec<(char, String)> = FOLDS_TO_ASCII.iter().map(|(c, s)| (*c, s.to_string())).collect();
        assert_eq!(found, table);
    }

    #[test]
    fn large_operands_are_answered_quickly_and_never_wrongly_false() {
        let automaton = GlobAutomaton::new("**/.ssh/**").unwrap();
        let started = std::time::Instant::now();
        for operand in [
            "*?[!a]".repeat(680),
            format!("/home/{}.ssh/x", "{a,b}".repeat(800)),
            "[".repeat(4000),
            "[".repeat(20_000),
            format!("{}/.ssh/x", "*/".repeat(2000)),
        ] {
            let _ = automaton.may_match(&operand, true);
        }
        assert!(automaton.may_match(&format!("{}/.ssh/x", "*/".repeat(2000)), false));
        // Too long to analyse: may match anything.
        assert!(automaton.may_match(&"a".repeat(5000), false));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn globs_and_paths_are_normalised_lexically() {
        assert_eq!(normalize_glob_path("/a//b/./c/../d").as_deref(), Some("/a/b/d"));
        assert_eq!(normalize_glob_path("a/*/../b"), None);
        assert_eq!(normalize_glob_path("a/b*").as_deref(), Some("a/b*"));
    }

    /// A shell glob as tokens, for a reference matcher written
    /// independently of the regex translation.
    #[derive(Clone, Debug)]
    enum Tok {
        Lit(char),
        Star,
        StarStar,
        Quest,
        Class(bool, Vec<char>),
    }

    fn render(toks: &[Tok]) -> String {
        let mut out = String::new();
        for t in toks {
            match t {
                Tok::Lit(c) => out.push(*c),
                Tok::Star => out.push('*'),
                Tok::StarStar => out.push_str("**"),
                Tok::Quest => out.push('?'),
                Tok::Class(neg, cs) => {
                    out.push('[');
                    if *neg {
                        out.push('!');
                    }
                    out.extend(cs);
                    out.push(']');
                }
            }
        }
        out
    }

    /// Bash pathname matching of the tokens against the bytes `s` (with
    /// `**` as `globstar` reads it inside a path: anything), in a UTF-8
    /// locale or the C locale: `?` and a class match one character or one
    /// byte.
    fn shell_matches(toks: &[Tok], s: &[u8]) -> bool {
        // The lengths of the first character and of the first byte.
        let firsts = |s: &[u8]| -> Vec<usize> {
            let Some(&b) = s.first() else { return Vec::new() };
            let char_len = match b {
                0..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            // A whole character only where one starts (not inside one).
            match s.get(..char_len).map(std::str::from_utf8) {
                Some(Ok(_)) if char_len > 1 => vec![1, char_len],
                _ => vec![1],
            }
        };
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Lit(c), rest)) => {
                let mut buf = [0; 4];
                let lit = c.encode_utf8(&mut buf).as_bytes();
                s.starts_with(lit) && shell_matches(rest, &s[lit.len()..])
            }
            Some((Tok::Quest, rest)) => {
                s.first() != Some(&b'/') && firsts(s).into_iter().any(|n| shell_matches(rest, &s[n..]))
            }
            Some((Tok::Class(neg, cs), rest)) => {
                s.first() != Some(&b'/')
                    && firsts(s).into_iter().any(|n| {
                        // The members are ASCII: a longer character or a
                        // lone non-ASCII byte is never one of them.
                        let member = n == 1 && cs.iter().any(|&c| c as u32 == u32::from(s[0]));
                        member != *neg && shell_matches(rest, &s[n..])
                    })
            }
            Some((Tok::Star, rest)) => (0..=s.len())
                .take_while(|&n| n == 0 || s[n - 1] != b'/')
                .any(|n| shell_matches(rest, &s[n..])),
            Some((Tok::StarStar, rest)) => (0..=s.len()).any(|n| shell_matches(rest, &s[n..])),
        }
    }

    // Every character neither pattern names matches, on either side, as
    // any other of the same length in UTF-8 does, so one of each length
    // stands for all: `c` (one byte), `é` (two; policy globs name it, and
    // an unnamed two-byte character matches nothing `é` does not), `€`
    // (three) and `𝄞` (four). The longer ones are needed because a shell
    // `?` or class matches one character, of up to four bytes, where a
    // policy `?` matches one byte: `??` names `€a`, which `???a` matches.
    // (A byte that starts no character matches as `c` does.)
    const ALPHABET: [char; 7] = ['a', 'b', 'c', '/', 'é', '€', '𝄞'];

    /// Every string over [`ALPHABET`] of at most `len` characters, shortest
    /// first, made one at a time: there are millions of length 8.
    fn strings_up_to(len: usize) -> impl Iterator<Item = String> {
        (0..=len).flat_map(|n| {
            let count = ALPHABET.len().pow(u32::try_from(n).unwrap());
            (0..count).map(move |mut index| {
                let mut s = String::new();
                for _ in 0..n {
                    s.push(ALPHABET[index % ALPHABET.len()]);
                    index /= ALPHABET.len();
                }
                s
            })
        })
    }

    fn tok() -> impl proptest::strategy::Strategy<Value = Tok> {
        use proptest::prelude::*;
        prop_oneof![
            4 => prop::sample::select(vec!['a', 'b', '/']).prop_map(Tok::Lit),
            2 => Just(Tok::Star),
            1 => Just(Tok::StarStar),
            2 => Just(Tok::Quest),
            1 => (any::<bool>(), prop::collection::vec(prop::sample::select(vec!['a', 'b']), 1..3))
                .prop_map(|(n, cs)| Tok::Class(n, cs)),
        ]
    }

    fn policy_glob() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop::sample::select(vec![
                "a", "b", "é", "/", "*", "**", "**/", "/**", "?", "[ab]", "[!a]", "{a,b/}", "\\a",
            ]),
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        /// The policy side accepts exactly what `.glob()` accepts.
        #[test]
        fn the_automaton_matches_as_globset_does(glob in policy_glob(), s in "[ab/.é]{0,7}") {
            let Ok(matcher) = crate::check::compile_glob(&glob) else { return Ok(()) };
            let automaton = GlobAutomaton::new(&glob).unwrap();
            proptest::prop_assert_eq!(automaton.matches_path(&s, false), matcher.is_match(&s), "{} on {:?}", glob, s);
            // Ignoring case: some spelling of `s` in other cases matches.
            let letters: Vec<usize> = s.char_indices().filter(|(_, c)| c.is_ascii_alphabetic()).map(|(i, _)| i).collect();
            let some_case_matches = (0u32..1 << letters.len()).any(|mask| {
                let mut v = s.clone().into_bytes();
                for (bit, &i) in letters.iter().enumerate() {
                    if mask & (1 << bit) != 0 {
                        v[i] = v[i].to_ascii_uppercase();
                    }
                }
                matcher.is_match(String::from_utf8(v).unwrap())
            });
            proptest::prop_assert_eq!(automaton.matches_path(&s, true), some_case_matches, "{} on {:?} ignoring case", glob, s);
        }

        /// The fast path for plain ASCII operands answers as the automaton
        /// product does.
        #[test]
        fn plain_operands_answer_as_the_product_does(glob in policy_glob(), s in "[aAbB/.c]{0,8}", fold in proptest::bool::ANY) {
            let Ok(automaton) = GlobAutomaton::new(&glob) else { return Ok(()) };
            let regex = format!(r"\A{}\z", literal_regex(&s, fold));
            let product = intersects(&compile(&regex).unwrap(), &automaton.nfa, fold);
            proptest::prop_assert_eq!(automaton.accepts_ascii(s.as_bytes(), fold), product, "{} on {:?}", glob, s);
        }

        /// Never `false` when a string matches both, and `true` only when
        /// one does (every string over the alphabet up to a length is
        /// tried).
        #[test]
        fn may_match_is_true_exactly_when_a_path_matches_both(
            toks in proptest::collection::vec(tok(), 0..5),
            glob in policy_glob(),
        ) {
            let operand = render(&toks);
            // Stars next to each other read as one `**`, as documented.
            let mut toks = toks;
            let mut i = 0;
            while i + 1 < toks.len() {
                if matches!(toks[i], Tok::Star | Tok::StarStar) && matches!(toks[i + 1], Tok::Star | Tok::StarStar) {
                    toks[i] = Tok::StarStar;
                    toks.remove(i + 1);
                } else {
                    i += 1;
                }
            }
            // Lexical normalisation changes the text of these; `.glob()`
            // sees only normalised paths, which the reference does not model.
            proptest::prop_assume!(normalize_glob_path(&operand).as_ref() == Some(&operand));
            let Ok(matcher) = crate::check::compile_glob(&glob) else { return Ok(()) };
            let automaton = GlobAutomaton::new(&glob).unwrap();
            let witness = |len: usize| strings_up_to(len).find(|text| {
                shell_matches(&toks, text.as_bytes()) && matcher.is_match(text)
            });
            let answer = automaton.may_match(&operand, false);
            let short = witness(6);
            // Never false when a string matches both.
            proptest::prop_assert!(answer || short.is_none(), "{} vs {}: false, but {:?} matches both", operand, glob, short);
            // And true only when one does (longer witnesses looked for only
            // when needed, since enumerating them is slow).
            if answer && short.is_none() {
                proptest::prop_assert!(witness(8).is_some(), "{} vs {}: true, but nothing matches both", operand, glob);
            }
        }
    }
}
