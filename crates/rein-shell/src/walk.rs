//! Walks brush-parser's syntax tree and turns every simple command that
//! would run into a [`Part`].
//!
//! Bounds: the input is at most [`MAX_INPUT_BYTES`]; brush-parser recurses
//! once per nesting construct, so the number of constructs that can nest
//! (`(`, `{`, `[`, backticks, and the reserved words that open a compound
//! command) is counted first — an upper bound on its recursion whatever the
//! quoting — and the parse runs on a thread whose stack is sized for it. The
//! walk itself counts its depth and stops at [`MAX_DEPTH`]; it recurses only
//! through that count (the `[[ … ]]` tree is walked with an explicit stack).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use brush_parser::ast::{
    self, Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, ExtendedTestExpr, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, Pipeline, ProcessSubstitutionKind, SourceLocation, SubshellCommand,
};
use brush_parser::{ParserOptions, SourceSpan};

use crate::dirs::{self, Dirs};
use crate::parse;
use crate::programs;
use crate::tokens::arithmetic_word;
use crate::words::{analyze_heredoc, analyze_word, Embedded, WordInfo};
use crate::wrappers::{foreign_syntax, is_shell, peel, shell_call, su_command, Peel, ShellCall};
use crate::{Analysis, Part, MAX_DEPTH, MAX_INPUT_BYTES, MAX_PARTS};

/// Inputs with at most this many nesting constructs are parsed on the
/// caller's thread (measured: a nesting level costs brush-parser about
/// 17 KiB of stack in a debug build, 6 KiB optimised).
const INLINE_OPENS: usize = 16;
/// More nesting constructs than this: not understood.
const MAX_OPENS: usize = 2048;
/// Stack given to the parse per nesting construct, about four times the
/// measured cost in a debug build.
const STACK_PER_OPEN: usize = 64 * 1024;
/// Stack for the walk itself and everything but the parser's recursion.
const STACK_BASE: usize = 4 * 1024 * 1024;
/// The parts may hold at most this many bytes of strings (see
/// `part_size`): lists copied into every part of a long command line (a
/// pipeline's `upstream`, a group's `writes`) could otherwise grow with the
/// square of the input.
const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// Walks of one loop body at most: a `cd` in the body that still moves
/// the later iterations after this many walks makes the directory unknown.
const MAX_LOOP_WALKS: usize = 3;
/// Walks of loop bodies beyond the first, in one analysis (nested loops
/// would otherwise multiply them).
const MAX_REWALKS: usize = 16;

/// The directories after a command succeeds, and after it fails.
type Outcome = (Dirs, Dirs);

/// Words that open a compound command and make brush-parser recurse.
const OPENING_WORDS: &[&str] = &[
    "if", "elif", "then", "else", "while", "until", "for", "select", "case", "do", "coproc", "function", "time", "!",
];

/// An upper bound on brush-parser's recursion for `text`: quotes are
/// ignored on purpose, so no quoting trick can make it smaller.
fn count_opens(text: &str) -> usize {
    let chars = text.chars().filter(|c| matches!(c, '(' | '{' | '[' | '`')).count();
    let words = text
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '<' | '>'))
        .filter(|w| OPENING_WORDS.contains(w))
        .count();
    chars + words
}

pub(crate) fn analyze(command: &str) -> Analysis {
    if command.len() > MAX_INPUT_BYTES {
        return single_problem(
            command,
            format!("the command is longer than {} KiB", MAX_INPUT_BYTES / 1024),
        );
    }
    let opens = count_opens(command);
    if opens > MAX_OPENS {
        return single_problem(
            command,
            format!("the command has more than {MAX_OPENS} nesting constructs"),
        );
    }
    if opens <= INLINE_OPENS {
        return guarded(command, INLINE_OPENS);
    }
    let owned = command.to_owned();
    let spawned = std::thread::Builder::new()
        .name("rein-shell".to_owned())
        .stack_size(STACK_BASE + opens * STACK_PER_OPEN)
        .spawn(move || guarded(&owned, opens));
    match spawned {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| single_problem(command, "internal error in the shell analysis".to_owned())),
        Err(e) => single_problem(command, format!("cannot start the shell analysis: {e}")),
    }
}

/// Runs the analysis; a panic (in brush-parser, say) becomes a part that is
/// not understood.
fn guarded(command: &str, budget: usize) -> Analysis {
    catch_unwind(AssertUnwindSafe(|| {
        let mut w = Walker::new(budget);
        w.text(command, &Ctx::default());
        w.finish()
    }))
    .unwrap_or_else(|_| single_problem(command, "internal error in the shell analysis".to_owned()))
}

/// An analysis with one part that is not understood.
fn single_problem(command: &str, reason: String) -> Analysis {
    let mut text: String = command.chars().take(1024).collect();
    if text.len() < command.len() {
        text.push('…');
    }
    let mut w = Walker::new(0);
    w.unknown(&text, "", Vec::new(), &Ctx::default(), reason);
    w.finish()
}

/// What an enclosing construct gives the parts inside it.
#[derive(Debug, Clone, Default)]
struct Ctx {
    via: Vec<String>,
    env: Vec<String>,
    writes: Vec<String>,
    reads: Vec<String>,
    dynamic_redirects: bool,
    dynamic_args: bool,
    stdin_from: Option<String>,
    upstream: Vec<String>,
    /// A here-document or here-string on standard input: its text when
    /// literal, else why not (for `bash <<EOF`).
    stdin_doc: Option<Result<String, String>>,
    /// Text a wrapper replaces by its input (`xargs -I R`, `find -exec {}`):
    /// inside a `sh -c` string it is code injection.
    replace: Option<String>,
    depth: usize,
}

impl Ctx {
    fn deeper(&self) -> Ctx {
        let mut c = self.clone();
        c.depth += 1;
        c
    }

    fn with_via(&self, via: String) -> Ctx {
        let mut c = self.deeper();
        c.via.push(via);
        c
    }
}

/// The text a walk is reading, with its positions (brush-parser counts
/// characters) mapped to byte offsets.
struct Source<'a> {
    text: &'a str,
    /// Byte offset of each character, when the text is not ASCII.
    offsets: Option<Vec<usize>>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        let offsets = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
        Source { text, offsets }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.offsets {
            None => char_index.min(self.text.len()),
            Some(o) => o.get(char_index).copied().unwrap_or(self.text.len()),
        }
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        let (s, e) = (self.byte(start), self.byte(end));
        self.text.get(s..e.max(s)).unwrap_or_default()
    }

    fn span(&self, span: &SourceSpan) -> &'a str {
        self.slice(span.start.index, span.end.index)
    }

    /// Moves `start` back over a redirection operator before it
    /// (`2>`, `<<-`, `&>>`), for a command that begins with a redirection.
    fn back_over_operator(&self, start: usize) -> usize {
        let chars: Vec<char> = self.text.get(..self.byte(start)).unwrap_or_default().chars().collect();
        let mut i = chars.len();
        while i > 0 && chars.get(i - 1).is_some_and(|c| *c == ' ' || *c == '\t') {
            i -= 1;
        }
        let before_ops = i;
        while i > 0
            && chars
                .get(i - 1)
                .is_some_and(|c| matches!(c, '<' | '>' | '&' | '|' | '-'))
        {
            i -= 1;
        }
        if i == before_ops {
            return start;
        }
        while i > 0 && chars.get(i - 1).is_some_and(char::is_ascii_digit) {
            i -= 1;
        }
        i
    }
}

/// Redirections of one command.
#[derive(Default)]
struct Redirs {
    writes: Vec<String>,
    reads: Vec<String>,
    dynamic: bool,
    stdin_doc: Option<Result<String, String>>,
    /// Programs feeding standard input (`< <(…)`, substitutions in a
    /// here-document or here-string).
    upstream: Vec<String>,
    /// `> >(…)`: run after the command, fed by it.
    output_subs: Vec<SubshellCommand>,
}

/// Files that are not files.
fn is_pseudo_file(path: &str) -> bool {
    matches!(path, "/dev/null" | "/dev/stdout" | "/dev/stderr")
}

/// Appends the items not in `list` yet, keeping the order; linear time.
fn extend_unique<'a>(list: &mut Vec<String>, items: impl IntoIterator<Item = &'a String>) {
    let mut seen: Option<HashSet<String>> = None;
    for item in items {
        let present = if list.len() < 16 {
            list.contains(item)
        } else {
            seen.get_or_insert_with(|| list.iter().cloned().collect())
                .contains(item)
        };
        if !present {
            if let Some(set) = &mut seen {
                set.insert(item.clone());
            }
            list.push(item.clone());
        }
    }
}

/// The distinct non-empty programs of `parts`, in order.
fn programs(parts: &[Part]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in parts {
        if !p.program.is_empty() && seen.insert(p.program.as_str()) {
            out.push(p.program.clone());
        }
    }
    out
}

/// What a part costs in the output budget: its strings plus a word each.
fn part_size(p: &Part) -> usize {
    let lists = [&p.args, &p.writes, &p.reads, &p.upstream, &p.via, &p.env];
    let list_bytes: usize = lists.iter().flat_map(|l| l.iter()).map(|s| s.len() + 8).sum();
    p.program.len() + p.path.len() + p.text.len() + list_bytes + 64
}

fn basename(path: &str) -> &str {
    match path.rsplit('/').next() {
        Some(b) if !b.is_empty() => b,
        _ => path,
    }
}

struct Walker {
    parts: Vec<Part>,
    /// Substitution level of each part (0: not inside `$(…)`, `<(…)`).
    levels: Vec<u32>,
    level: u32,
    options: ParserOptions,
    /// Nesting constructs a parse may have on this thread's stack.
    budget: usize,
    /// Bytes of output so far (`part_size`).
    size: usize,
    /// The output budget is spent: the walk stops.
    full: bool,
    /// More than [`MAX_PARTS`] parts: the walk stops.
    too_many: bool,
    /// Where the shell being walked may be (see [`crate::dirs`]).
    dirs: Dirs,
    /// The outcome of the directory change the last simple command made.
    dir_outcome: Option<Outcome>,
    /// Directory changes walked so far.
    dir_changes: usize,
    /// Commands that run later than where they are written: function
    /// bodies and trap handlers.
    deferred: Vec<Deferred>,
    /// Loop bodies walked again (`MAX_REWALKS`).
    rewalks: usize,
}

/// Parts that run later, wherever the shell is then: a function body, a
/// trap handler. If a directory change follows, they are not understood.
struct Deferred {
    parts: std::ops::Range<usize>,
    /// `Walker::dir_changes` when they were walked.
    changes: usize,
    what: String,
}

/// How far a walk had come, to walk a loop body again.
struct Mark {
    parts: usize,
    size: usize,
    deferred: usize,
}

impl Walker {
    fn new(budget: usize) -> Self {
        Walker {
            parts: Vec::new(),
            levels: Vec::new(),
            level: 0,
            options: ParserOptions::default(),
            budget,
            size: 0,
            full: false,
            too_many: false,
            dirs: Dirs::default(),
            dir_outcome: None,
            dir_changes: 0,
            deferred: Vec::new(),
            rewalks: 0,
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            parts: self.parts.len(),
            size: self.size,
            deferred: self.deferred.len(),
        }
    }

    fn back_to(&mut self, mark: &Mark) {
        self.parts.truncate(mark.parts);
        self.levels.truncate(mark.parts);
        self.size = mark.size;
        self.deferred.truncate(mark.deferred);
    }

    fn finish(mut self) -> Analysis {
        for d in &self.deferred {
            if self.dir_changes <= d.changes {
                continue;
            }
            let reason = format!("{} runs later, and a later cd changes the directory it runs in", d.what);
            for p in self.parts.get_mut(d.parts.clone()).unwrap_or_default() {
                if p.understood {
                    p.understood = false;
                    p.reason = Some(reason.clone());
                    p.dirs.clear();
                }
            }
        }
        if self.too_many {
            self.parts.truncate(MAX_PARTS - 1);
            let reason = format!("the command has more than {MAX_PARTS} parts");
            let mut p = Self::part("", "", Vec::new(), &Ctx::default());
            p.understood = false;
            p.reason = Some(reason);
            self.parts.push(p);
        } else if self.full {
            let reason = "the command is too large to analyse".to_owned();
            let mut p = Self::part("", "", Vec::new(), &Ctx::default());
            p.understood = false;
            p.reason = Some(reason);
            self.parts.push(p);
        }
        let problems: Vec<String> = self.parts.iter().filter_map(|p| p.reason.clone()).collect();
        Analysis {
            understood: self.parts.iter().all(|p| p.understood),
            parts: self.parts,
            problems,
        }
    }

    fn push(&mut self, mut part: Part) {
        if self.full {
            return;
        }
        if self.parts.len() >= MAX_PARTS {
            self.too_many = true;
            self.full = true;
            return;
        }
        part.dirs = self.dirs.cwds();
        if let Dirs::Unknown(reason) = &self.dirs {
            if part.understood {
                part.understood = false;
                part.reason = Some(reason.clone());
            }
        }
        if let Some((v, why)) = part
            .env
            .iter()
            .find_map(|v| dirs::special_variable(v).map(|why| (v, why)))
        {
            let reason = format!("{v} is set for this command, {why}");
            if part.understood {
                part.understood = false;
                part.reason = Some(reason.clone());
            }
            self.dirs = Dirs::Unknown(reason);
        }
        self.size += part_size(&part);
        if self.size > MAX_OUTPUT_BYTES {
            self.full = true;
            return;
        }
        self.parts.push(part);
        self.levels.push(self.level);
    }

    /// A part from `ctx` with everything else empty.
    fn part(text: &str, path: &str, args: Vec<String>, ctx: &Ctx) -> Part {
        Part {
            program: basename(path).to_owned(),
            path: path.to_owned(),
            operands: programs::generic_operands(&args),
            known: false,
            dirs: Vec::new(),
            args,
            writes: ctx.writes.clone(),
            reads: ctx.reads.clone(),
            stdin_from: ctx.stdin_from.clone(),
            upstream: ctx.upstream.clone(),
            via: ctx.via.clone(),
            env: ctx.env.clone(),
            text: text.to_owned(),
            dynamic_args: ctx.dynamic_args,
            dynamic_redirects: ctx.dynamic_redirects,
            understood: true,
            reason: None,
        }
    }

    fn unknown(&mut self, text: &str, path: &str, args: Vec<String>, ctx: &Ctx, reason: String) {
        let mut p = Self::part(text, path, args, ctx);
        p.understood = false;
        p.reason = Some(reason);
        self.push(p);
    }

    /// Analyses a whole command line (the input, a substitution, a `bash -c`
    /// string).
    fn text(&mut self, text: &str, ctx: &Ctx) {
        if ctx.depth > MAX_DEPTH {
            return self.unknown(
                text,
                "",
                Vec::new(),
                ctx,
                format!("nested more than {MAX_DEPTH} levels deep"),
            );
        }
        if count_opens(text) > self.budget.max(INLINE_OPENS) {
            return self.unknown(text, "", Vec::new(), ctx, "too deeply nested to analyse".to_owned());
        }
        match parse::program(text, &self.options) {
            Ok(program) => {
                let src = Source::new(text);
                for list in &program.complete_commands {
                    self.list(&src, list, ctx);
                }
            }
            Err(problem) => self.unknown(text, "", Vec::new(), ctx, problem),
        }
    }

    /// A list of commands; `self.dirs` follows them (`a && b` runs `b` where
    /// `a` succeeded, `a || b` where `a` failed, `a &` in a copy).
    fn list(&mut self, src: &Source, list: &CompoundList, ctx: &Ctx) -> Outcome {
        let mut last = (self.dirs.clone(), self.dirs.clone());
        for item in &list.0 {
            if self.full {
                break;
            }
            let and_or = &item.0;
            let before = self.dirs.clone();
            let (mut ok, mut failed) = self.pipeline(src, &and_or.first, ctx);
            for next in &and_or.additional {
                match next {
                    ast::AndOr::And(p) => {
                        self.dirs = ok;
                        let (o, f) = self.pipeline(src, p, ctx);
                        ok = o;
                        failed = failed.union(&f);
                    }
                    ast::AndOr::Or(p) => {
                        self.dirs = failed;
                        let (o, f) = self.pipeline(src, p, ctx);
                        ok = ok.union(&o);
                        failed = f;
                    }
                }
            }
            self.dirs = match item.1 {
                // A background command runs in a subshell.
                ast::SeparatorOperator::Async => before,
                ast::SeparatorOperator::Sequence => ok.union(&failed),
            };
            last = match item.1 {
                ast::SeparatorOperator::Async => (self.dirs.clone(), self.dirs.clone()),
                ast::SeparatorOperator::Sequence => (ok, failed),
            };
        }
        last
    }

    /// The stages run in subshells, except that with `shopt -s lastpipe`
    /// the last may run in this shell: its directory changes may stay.
    fn pipeline(&mut self, src: &Source, p: &Pipeline, ctx: &Ctx) -> Outcome {
        let before = self.dirs.clone();
        let outcome = self.stages(src, p, ctx, &before);
        self.dirs = before;
        if p.bang {
            (outcome.1, outcome.0)
        } else {
            outcome
        }
    }

    fn stages(&mut self, src: &Source, p: &Pipeline, ctx: &Ctx, before: &Dirs) -> Outcome {
        let timed;
        let ctx = if p.timed.is_some() {
            timed = ctx.with_via("time".to_owned());
            &timed
        } else {
            ctx
        };
        let mut outcome = (before.clone(), before.clone());
        // The programs of the stages so far, for `upstream`.
        let mut upstream: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        for (i, cmd) in p.seq.iter().enumerate() {
            if self.full {
                break;
            }
            let start = self.parts.len();
            self.dirs = before.clone();
            let stage_outcome = if i == 0 {
                self.command(src, cmd, ctx)
            } else {
                let mut c = ctx.clone();
                c.stdin_from = last.take();
                // Standard input is the pipe, not a document of an
                // enclosing command.
                c.stdin_doc = None;
                extend_unique(&mut c.upstream, &upstream);
                self.command(src, cmd, &c)
            };
            if p.seq.len() == 1 {
                outcome = stage_outcome;
            } else if i + 1 == p.seq.len() {
                outcome = (stage_outcome.0.union(before), stage_outcome.1.union(before));
            }
            let stage = self.parts.get(start..).unwrap_or_default();
            extend_unique(&mut upstream, &programs(stage));
            last = stage
                .iter()
                .zip(self.levels.get(start..).unwrap_or_default())
                .filter(|(part, level)| !part.program.is_empty() && **level == self.level)
                .map(|(part, _)| part.program.clone())
                .next_back();
        }
        outcome
    }

    fn command(&mut self, src: &Source, cmd: &Command, ctx: &Ctx) -> Outcome {
        match cmd {
            Command::Simple(s) => {
                self.dir_outcome = None;
                self.simple(src, s, ctx);
                return self
                    .dir_outcome
                    .take()
                    .unwrap_or_else(|| (self.dirs.clone(), self.dirs.clone()));
            }
            Command::Compound(c, redirects) => {
                let c_ctx = self.enclosing_redirects(src, redirects.as_ref(), ctx);
                self.compound(src, c, &c_ctx);
            }
            Command::Function(f) => {
                let name = &f.fname.value;
                let c = ctx.with_via(format!("function {name}"));
                let before = self.dirs.clone();
                let start = self.parts.len();
                let c = self.enclosing_redirects(src, f.body.1.as_ref(), &c);
                self.compound(src, &f.body.0, &c);
                let after = std::mem::replace(&mut self.dirs, before.clone());
                if dirs::SHADOWED_BUILTINS.contains(&name.as_str()) {
                    self.dirs = Dirs::Unknown(format!(
                        "a function named {name} changes what later `{name}` commands do"
                    ));
                } else if after != before {
                    self.dirs = Dirs::Unknown(format!(
                        "the function {name} changes the working directory, and where it is called from cannot be \
                         told"
                    ));
                }
                self.deferred.push(Deferred {
                    parts: start..self.parts.len(),
                    changes: self.dir_changes,
                    what: format!("the body of the function {name}"),
                });
            }
            Command::ExtendedTest(t, redirects) => {
                let c = self.enclosing_redirects(src, redirects.as_ref(), ctx);
                self.extended_test(src, &t.expr, &c);
                if c.writes.len() > ctx.writes.len() || c.reads.len() > ctx.reads.len() {
                    let text = src.span(&t.loc);
                    self.push(Self::part(text, "", Vec::new(), &c));
                }
            }
        }
        (self.dirs.clone(), self.dirs.clone())
    }

    /// Walks a loop by `walk` (its condition and body) until the
    /// directories an iteration may start in stop growing: a `cd` in the
    /// body moves the later iterations. Each walk replaces the parts of the
    /// one before; past `MAX_LOOP_WALKS` the directory is unknown.
    fn looping(&mut self, mut walk: impl FnMut(&mut Self)) {
        let mark = self.mark();
        let mut entry = self.dirs.clone();
        let mut walks = 1;
        loop {
            self.dirs = entry.clone();
            walk(self);
            let grown = entry.union(&self.dirs);
            if entry.covers(&grown) || self.full {
                self.dirs = grown;
                return;
            }
            self.back_to(&mark);
            walks += 1;
            self.rewalks += 1;
            entry = if walks > MAX_LOOP_WALKS || self.rewalks > MAX_REWALKS {
                Dirs::Unknown("a cd in a loop moves its later iterations to directories that cannot be told".to_owned())
            } else {
                grown
            };
        }
    }

    /// Walks `walk` in a copy of the shell's directory state (a subshell,
    /// a substitution, another shell process).
    fn scoped<T>(&mut self, walk: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.dirs.clone();
        let outcome = self.dir_outcome.take();
        let out = walk(self);
        self.dirs = before;
        self.dir_outcome = outcome;
        out
    }

    /// The context for the commands inside a compound command with these
    /// redirections.
    fn enclosing_redirects(&mut self, src: &Source, redirects: Option<&ast::RedirectList>, ctx: &Ctx) -> Ctx {
        let mut c = ctx.clone();
        let Some(list) = redirects else { return c };
        let mut r = Redirs::default();
        for io in &list.0 {
            self.redirect(src, io, &mut r, ctx);
        }
        self.apply_redirs(src, &mut c, r, ctx);
        c
    }

    /// Adds the files of `r` to `c`; runs `> >(…)` substitutions at once
    /// (their feeder is the whole compound command).
    fn apply_redirs(&mut self, src: &Source, c: &mut Ctx, r: Redirs, ctx: &Ctx) {
        extend_unique(&mut c.writes, &r.writes);
        extend_unique(&mut c.reads, &r.reads);
        extend_unique(&mut c.upstream, &r.upstream);
        c.dynamic_redirects |= r.dynamic;
        if r.stdin_doc.is_some() {
            c.stdin_doc = r.stdin_doc;
        }
        for sub in &r.output_subs {
            self.subshell_sub(src, sub, ctx);
        }
    }

    fn compound(&mut self, src: &Source, cc: &CompoundCommand, ctx: &Ctx) {
        let ctx = &ctx.deeper();
        if ctx.depth > MAX_DEPTH {
            let text = cc.location().map(|l| src.span(&l)).unwrap_or_default();
            return self.unknown(
                text,
                "",
                Vec::new(),
                ctx,
                format!("nested more than {MAX_DEPTH} levels deep"),
            );
        }
        match cc {
            CompoundCommand::BraceGroup(b) => {
                self.list(src, &b.list, ctx);
            }
            CompoundCommand::Subshell(s) => {
                self.scoped(|w| w.list(src, &s.list, ctx));
            }
            CompoundCommand::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word_subs(written(src, w), ctx);
                }
                if let Some(why) = dirs::special_variable(&f.variable_name) {
                    self.dirs = Dirs::Unknown(format!("the loop assigns {}, {why}", f.variable_name));
                }
                self.looping(|w| {
                    w.list(src, &f.body.list, ctx);
                });
            }
            CompoundCommand::ArithmeticForClause(f) => {
                self.looping(|w| {
                    for e in [&f.initializer, &f.condition, &f.updater].into_iter().flatten() {
                        w.arithmetic(&e.value, ctx);
                    }
                    w.list(src, &f.body.list, ctx);
                });
            }
            CompoundCommand::CaseClause(c) => {
                self.word_subs(written(src, &c.value), ctx);
                for item in &c.cases {
                    for p in &item.patterns {
                        self.word_subs(written(src, p), ctx);
                    }
                    if let Some(cmd) = &item.cmd {
                        self.list(src, cmd, ctx);
                    }
                }
            }
            CompoundCommand::IfClause(i) => {
                // `then` runs where the condition succeeded, `elif` and
                // `else` where it failed.
                let (ok, mut failed) = self.list(src, &i.condition, ctx);
                self.dirs = ok;
                self.list(src, &i.then, ctx);
                let mut out = self.dirs.clone();
                let mut has_else = false;
                for e in i.elses.iter().flatten() {
                    self.dirs = failed.clone();
                    if let Some(cond) = &e.condition {
                        let (o, f) = self.list(src, cond, ctx);
                        self.dirs = o;
                        failed = f;
                    } else {
                        has_else = true;
                    }
                    self.list(src, &e.body, ctx);
                    out = out.union(&self.dirs);
                }
                if !has_else {
                    out = out.union(&failed);
                }
                self.dirs = out;
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                self.looping(|walker| {
                    walker.list(src, &w.0, ctx);
                    walker.list(src, &w.1.list, ctx);
                });
            }
            CompoundCommand::Arithmetic(a) => {
                let written = src.span(&a.loc);
                if written.starts_with("((") && written.ends_with("))") {
                    self.arithmetic(&a.expr.value, ctx);
                } else {
                    // brush-parser reads `( (…) )` as an arithmetic command;
                    // bash runs two nested subshells (it needs `((` and `))`
                    // written together for arithmetic).
                    self.scoped(|w| w.text(&a.expr.value, ctx));
                }
            }
            CompoundCommand::Coprocess(c) => {
                let c_ctx = ctx.with_via("coproc".to_owned());
                self.scoped(|w| w.command(src, &c.body, &c_ctx));
            }
        }
    }

    /// The words of a `[[ … ]]`, walked without recursion.
    fn extended_test(&mut self, src: &Source, expr: &ExtendedTestExpr, ctx: &Ctx) {
        let mut stack = vec![expr];
        while let Some(e) = stack.pop() {
            if self.full {
                return;
            }
            match e {
                ExtendedTestExpr::And(a, b) | ExtendedTestExpr::Or(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                ExtendedTestExpr::Not(a) | ExtendedTestExpr::Parenthesized(a) => stack.push(a),
                ExtendedTestExpr::UnaryTest(_, w) => {
                    self.word_subs(written(src, w), ctx);
                }
                ExtendedTestExpr::BinaryTest(_, a, b) => {
                    self.word_subs(written(src, a), ctx);
                    self.word_subs(written(src, b), ctx);
                }
            }
        }
    }

    /// Runs the commands inside an arithmetic expression.
    fn arithmetic(&mut self, text: &str, ctx: &Ctx) {
        if !text.contains("$(") && !text.contains('`') {
            return;
        }
        let info = analyze_word(&format!("$(({text}))"), &self.options, ctx.depth);
        self.embedded(&info, ctx);
    }

    /// Runs the commands inside a word (`$(…)`, backticks), and reports a
    /// word that cannot be read.
    fn word_subs(&mut self, raw: &str, ctx: &Ctx) -> WordInfo {
        let info = analyze_word(raw, &self.options, ctx.depth);
        self.embedded(&info, ctx);
        info
    }

    /// The parts of the substitutions of `info`; their programs.
    fn embedded(&mut self, info: &WordInfo, ctx: &Ctx) -> Vec<String> {
        if info.dynamic {
            if let Some(reason) = dirs::assigns_in_expansion(&info.literal) {
                self.dirs = Dirs::Unknown(reason);
            }
        }
        let start = self.parts.len();
        if let Some(problem) = &info.problem {
            self.unknown(&info.literal, "", Vec::new(), ctx, problem.clone());
        }
        for Embedded { text } in &info.embedded {
            self.level += 1;
            self.scoped(|w| w.text(text, &ctx.deeper()));
            self.level -= 1;
        }
        self.programs_since(start)
    }

    fn programs_since(&self, start: usize) -> Vec<String> {
        programs(self.parts.get(start..).unwrap_or_default())
    }

    /// The parts of a `<(…)` or `>(…)`.
    fn subshell_sub(&mut self, src: &Source, sub: &SubshellCommand, ctx: &Ctx) -> Vec<String> {
        let start = self.parts.len();
        self.level += 1;
        let c = ctx.deeper();
        if c.depth > MAX_DEPTH {
            let text = src.span(&sub.loc);
            self.unknown(
                text,
                "",
                Vec::new(),
                &c,
                format!("nested more than {MAX_DEPTH} levels deep"),
            );
        } else {
            self.scoped(|w| w.list(src, &sub.list, &c));
        }
        self.level -= 1;
        self.programs_since(start)
    }

    /// One redirection: files into `r`, substitutions run now.
    fn redirect(&mut self, src: &Source, io: &IoRedirect, r: &mut Redirs, ctx: &Ctx) {
        match io {
            IoRedirect::File(_, kind, target) => match target {
                IoFileRedirectTarget::Filename(w) => {
                    let info = self.word_subs(written(src, w), ctx);
                    let (write, read) = match kind {
                        IoFileRedirectKind::Read => (false, true),
                        IoFileRedirectKind::Write | IoFileRedirectKind::Append | IoFileRedirectKind::Clobber => {
                            (true, false)
                        }
                        IoFileRedirectKind::ReadAndWrite => (true, true),
                        IoFileRedirectKind::DuplicateInput => (false, true),
                        IoFileRedirectKind::DuplicateOutput => (true, false),
                    };
                    self.file(&info, write, read, r);
                }
                IoFileRedirectTarget::Fd(_) => {}
                IoFileRedirectTarget::Duplicate(w) => {
                    let info = self.word_subs(written(src, w), ctx);
                    let fd_like =
                        info.literal == "-" || info.literal.trim_end_matches('-').chars().all(|c| c.is_ascii_digit());
                    if !info.is_literal() {
                        r.dynamic = true;
                    } else if !fd_like && matches!(kind, IoFileRedirectKind::DuplicateOutput) {
                        // `>&file`: standard output and error to a file.
                        self.file(&info, true, false, r);
                    }
                }
                IoFileRedirectTarget::ProcessSubstitution(kind, sub) => match kind {
                    ProcessSubstitutionKind::Read => {
                        let programs = self.subshell_sub(src, sub, ctx);
                        r.upstream.extend(programs);
                    }
                    ProcessSubstitutionKind::Write => r.output_subs.push(sub.clone()),
                },
            },
            IoRedirect::OutputAndError(w, _) => {
                let info = self.word_subs(written(src, w), ctx);
                self.file(&info, true, false, r);
            }
            IoRedirect::HereString(_, w) => {
                let info = analyze_word(written(src, w), &self.options, ctx.depth);
                let programs = self.embedded(&info, ctx);
                r.upstream.extend(programs);
                // The program reads what the expansions give (`cat <<<
                // "$API_KEY"` prints the environment's value).
                r.dynamic |= !info.is_literal();
                r.stdin_doc = Some(if info.is_literal() {
                    Ok(info.literal)
                } else {
                    Err("a shell reads commands from a here-string that is not literal".to_owned())
                });
            }
            IoRedirect::HereDocument(_, doc) => {
                if doc.requires_expansion {
                    let info = analyze_heredoc(&doc.doc.value, &self.options, ctx.depth);
                    let programs = self.embedded(&info, ctx);
                    r.upstream.extend(programs);
                    r.dynamic |= info.dynamic || info.problem.is_some();
                    r.stdin_doc = Some(if !info.dynamic && info.problem.is_none() {
                        Ok(info.literal)
                    } else {
                        Err("a shell reads commands from a here-document that is not literal".to_owned())
                    });
                } else {
                    r.stdin_doc = Some(Ok(doc.doc.value.clone()));
                }
            }
        }
    }

    fn file(&mut self, info: &WordInfo, write: bool, read: bool, r: &mut Redirs) {
        if !info.is_literal() {
            r.dynamic = true;
        }
        if is_pseudo_file(&info.literal) {
            return;
        }
        if write {
            r.writes.push(info.literal.clone());
        }
        if read {
            r.reads.push(info.literal.clone());
        }
    }

    /// The source text of a simple command.
    fn simple_text<'s>(src: &Source<'s>, s: &ast::SimpleCommand) -> &'s str {
        let mut spans: Vec<(usize, usize, bool)> = Vec::new();
        let add_item = |spans: &mut Vec<(usize, usize, bool)>, item: &CommandPrefixOrSuffixItem| {
            let (span, redirect) = match item {
                CommandPrefixOrSuffixItem::Word(w) | CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                    (w.loc.clone(), false)
                }
                CommandPrefixOrSuffixItem::ProcessSubstitution(_, sub) => (Some(sub.loc.clone()), false),
                CommandPrefixOrSuffixItem::IoRedirect(io) => (redirect_span(io), true),
            };
            if let Some(sp) = span {
                spans.push((sp.start.index, sp.end.index, redirect));
            }
        };
        for item in s.prefix.iter().flat_map(|p| p.0.iter()) {
            add_item(&mut spans, item);
        }
        if let Some(w) = &s.word_or_name {
            if let Some(sp) = &w.loc {
                spans.push((sp.start.index, sp.end.index, false));
            }
        }
        for item in s.suffix.iter().flat_map(|p| p.0.iter()) {
            add_item(&mut spans, item);
        }
        let Some(first) = spans.iter().min_by_key(|s| s.0) else {
            return "";
        };
        let end = spans.iter().map(|s| s.1).max().unwrap_or(first.1);
        let start = if first.2 {
            src.back_over_operator(first.0)
        } else {
            first.0
        };
        src.slice(start, end)
    }

    fn simple(&mut self, src: &Source, s: &ast::SimpleCommand, ctx: &Ctx) {
        let text = Self::simple_text(src, s);
        if let Some(expr) = s.word_or_name.as_ref().and_then(|w| arithmetic_word(&w.value)) {
            return self.arithmetic_command(src, s, expr, text, ctx);
        }
        let mut words: Vec<WordInfo> = Vec::new();
        let mut env: Vec<String> = Vec::new();
        let mut r = Redirs::default();
        let mut output_subs: Vec<&SubshellCommand> = Vec::new();

        let items = s
            .prefix
            .iter()
            .flat_map(|p| p.0.iter())
            .map(Item::Item)
            .chain(s.word_or_name.iter().map(Item::Word))
            .chain(s.suffix.iter().flat_map(|p| p.0.iter()).map(Item::Item));
        for item in items {
            match item {
                Item::Word(w) | Item::Item(CommandPrefixOrSuffixItem::Word(w)) => {
                    words.push(self.word_subs(written(src, w), ctx));
                }
                Item::Item(CommandPrefixOrSuffixItem::AssignmentWord(a, w)) => {
                    if words.is_empty() {
                        // `VAR=x cmd`: an assignment for the command.
                        let name = match &a.name {
                            ast::AssignmentName::VariableName(n) | ast::AssignmentName::ArrayElementName(n, _) => n,
                        };
                        env.push(name.clone());
                        // The whole `NAME=value` as written: its value's
                        // substitutions run.
                        self.word_subs(written(src, w), ctx);
                    } else {
                        // `export A=1`, `declare A=(…)`: an argument.
                        words.push(self.word_subs(written(src, w), ctx));
                    }
                }
                Item::Item(CommandPrefixOrSuffixItem::IoRedirect(io)) => self.redirect(src, io, &mut r, ctx),
                Item::Item(CommandPrefixOrSuffixItem::ProcessSubstitution(kind, sub)) => {
                    let written = src.span(&sub.loc);
                    let arrow = match kind {
                        ProcessSubstitutionKind::Read => "<",
                        ProcessSubstitutionKind::Write => ">",
                    };
                    words.push(WordInfo {
                        literal: format!("{arrow}{written}"),
                        dynamic: true,
                        ..WordInfo::default()
                    });
                    match kind {
                        ProcessSubstitutionKind::Read => {
                            let programs = self.subshell_sub(src, sub, ctx);
                            r.upstream.extend(programs);
                        }
                        ProcessSubstitutionKind::Write => output_subs.push(sub),
                    }
                }
            }
        }

        let mut c = ctx.clone();
        extend_unique(&mut c.env, &env);
        let redir_output_subs = std::mem::take(&mut r.output_subs);
        extend_unique(&mut c.writes, &r.writes);
        extend_unique(&mut c.reads, &r.reads);
        extend_unique(&mut c.upstream, &r.upstream);
        c.dynamic_redirects |= r.dynamic;
        if r.stdin_doc.is_some() {
            c.stdin_doc = r.stdin_doc;
        }

        let start = self.parts.len();
        self.run(text, &words, c);

        // `>(…)` reads what the command writes.
        if !output_subs.is_empty() || !redir_output_subs.is_empty() {
            let mut feed = ctx.clone();
            let programs = self.programs_since(start);
            feed.stdin_from = programs.last().cloned();
            extend_unique(&mut feed.upstream, &programs);
            for sub in output_subs.into_iter().chain(redir_output_subs.iter()) {
                self.subshell_sub(src, sub, &feed);
            }
        }
    }

    /// `(( … ))`, which `tokens::fix_parentheses` turned into a word: the
    /// shell evaluates it; the commands inside it run; its redirections
    /// make a part without program.
    fn arithmetic_command(&mut self, src: &Source, s: &ast::SimpleCommand, expr: &str, text: &str, ctx: &Ctx) {
        self.arithmetic(expr, ctx);
        let mut r = Redirs::default();
        let mut extra_words = false;
        let prefix = s.prefix.iter().flat_map(|p| p.0.iter());
        for item in prefix.chain(s.suffix.iter().flat_map(|p| p.0.iter())) {
            match item {
                CommandPrefixOrSuffixItem::IoRedirect(io) => self.redirect(src, io, &mut r, ctx),
                _ => extra_words = true,
            }
        }
        let mut c = ctx.clone();
        let has_files = !r.writes.is_empty() || !r.reads.is_empty() || r.dynamic;
        self.apply_redirs(src, &mut c, r, ctx);
        if extra_words {
            let reason = "an arithmetic command with other words".to_owned();
            self.unknown(text, "", Vec::new(), &c, reason);
        } else if has_files {
            let p = Self::part(text, "", Vec::new(), &c);
            self.push(p);
        }
    }

    /// The part(s) for a command line of `words`, seeing through wrappers.
    /// A wrapper that runs its command in another directory (`env -C`)
    /// runs it in a child process: directory changes inside stay there.
    fn run(&mut self, text: &str, words: &[WordInfo], ctx: Ctx) {
        let before = self.dirs.clone();
        if self.run_wrapped(text, words, ctx) {
            self.dirs = before;
            self.dir_outcome = None;
        }
    }

    /// [`Self::run`]; true when a wrapper changed the directory.
    fn run_wrapped(&mut self, text: &str, words: &[WordInfo], ctx: Ctx) -> bool {
        let mut ctx = ctx;
        let mut words = words;
        let mut moved = false;
        loop {
            let Some(first) = words.first() else {
                // Assignments or redirections only.
                let p = Self::part(text, "", Vec::new(), &ctx);
                let assigned = p.env.clone();
                self.push(p);
                if let Some(reason) = dirs::changes_dir_rules("", &[], &assigned) {
                    self.dirs = Dirs::Unknown(reason);
                }
                return moved;
            };
            let args: Vec<String> = words.iter().skip(1).map(|w| w.literal.clone()).collect();
            if ctx.depth > MAX_DEPTH {
                let reason = format!("nested more than {MAX_DEPTH} levels deep");
                self.unknown(text, &first.literal, args, &ctx, reason);
                return moved;
            }
            if !first.is_literal() {
                let reason = if let Some(p) = &first.problem {
                    p.clone()
                } else if first.dynamic {
                    format!("the program name is not literal: {}", first.literal)
                } else if first.brace {
                    format!("the program name is a brace expansion: {}", first.literal)
                } else {
                    format!("the program name is a glob pattern: {}", first.literal)
                };
                let mut p = Self::part(text, &first.literal, args, &ctx);
                // Not a path: the whole word is the name (`{rm,-rf,/}`).
                p.program = first.literal.clone();
                self.not_understood(p, reason);
                // It may be `cd`.
                self.dirs = Dirs::Unknown(format!(
                    "the working directory after `{text}` cannot be known: its program is not literal"
                ));
                return moved;
            }
            let path = first.literal.as_str();
            if path == "!" && words.len() > 1 {
                // `time ! cmd`: a negation brush-parser left as a word.
                words = words.get(1..).unwrap_or_default();
                continue;
            }
            let program = basename(path);
            match peel(program, words) {
                Some(Peel::Through(t)) => {
                    ctx = ctx.with_via(program.to_owned());
                    extend_unique(&mut ctx.env, &t.env);
                    extend_unique(&mut ctx.writes, &t.writes);
                    extend_unique(&mut ctx.reads, &t.reads);
                    ctx.dynamic_args |= t.adds_args;
                    if t.replace.is_some() {
                        ctx.replace = t.replace;
                    }
                    if let Some(dir) = t.chdir {
                        moved = true;
                        self.dirs = match dir {
                            Ok(d) if words.iter().any(|w| w.literal == d && !w.is_literal()) => Dirs::Unknown(format!(
                                "{program} runs the command in a directory that is not literal: {d}"
                            )),
                            Ok(d) => self.dirs.enter(&d),
                            Err(reason) => Dirs::Unknown(reason),
                        };
                    }
                    words = words.get(t.next..).unwrap_or_default();
                    continue;
                }
                Some(Peel::Unknown(reason)) => {
                    self.unknown(text, path, args, &ctx, reason);
                    return moved;
                }
                Some(Peel::Shell(sh)) => {
                    let mut part = Self::part(text, path, args, &ctx);
                    extend_unique(&mut part.writes, &sh.writes);
                    let script = match sh.script {
                        Ok(s) => s,
                        Err(reason) => {
                            self.not_understood(part, reason);
                            return moved;
                        }
                    };
                    // Input put into the string by an enclosing `xargs -I` or
                    // `find -exec` is code; `parallel` quotes what it puts
                    // in its own string, unless a shell inside reads it again.
                    let outer = ctx.replace.as_deref().filter(|r| script.contains(*r));
                    let own = sh
                        .replace
                        .as_deref()
                        .filter(|r| script.contains(*r) && (script.contains("-c") || script.contains("eval")));
                    if let Some(r) = outer.or(own) {
                        let reason = format!("{} runs a shell string in which {r} is replaced by input", sh.via);
                        self.not_understood(part, reason);
                        return moved;
                    }
                    let mut c = ctx.with_via(sh.via);
                    extend_unique(&mut c.writes, &sh.writes);
                    c.dynamic_args |= sh.adds_args;
                    c.stdin_doc = None;
                    self.scoped(|w| w.text(&script, &c));
                    return moved;
                }
                Some(Peel::Itself) | None => {}
            }
            self.program(text, path, program, words, args, ctx);
            return moved;
        }
    }

    /// A command whose program is known and is not a wrapper to see
    /// through: shells, interpreters, `eval`, `source`, `trap`, `find`,
    /// `cd`, or a plain part.
    fn program(&mut self, text: &str, path: &str, program: &str, words: &[WordInfo], args: Vec<String>, ctx: Ctx) {
        let mut part = Self::part(text, path, args, &ctx);
        part.dynamic_args |= words
            .iter()
            .skip(1)
            .any(|w| w.dynamic || w.brace || w.problem.is_some());

        if is_shell(program) {
            let from_stdin = match shell_call(program, words) {
                ShellCall::Command(i) => {
                    let Some(cmd) = words.get(i) else { return };
                    if !cmd.is_literal() {
                        let reason = format!("{program} -c runs a command string that is not literal");
                        return self.not_understood(part, reason);
                    }
                    if let Some(r) = ctx.replace.as_deref().filter(|r| cmd.literal.contains(*r)) {
                        let reason = format!("{program} -c runs a string in which {r} is replaced by input");
                        return self.not_understood(part, reason);
                    }
                    if let Some(reason) = foreign_syntax(program, &cmd.literal) {
                        return self.not_understood(part, reason);
                    }
                    let c = ctx.with_via(format!("{program} -c"));
                    return self.scoped(|w| w.text(&cmd.literal, &c));
                }
                ShellCall::Stdin => true,
                ShellCall::Script(i) => {
                    let script = words.get(i);
                    if script.is_some_and(|w| w.literal.starts_with("<(") && w.dynamic) {
                        let reason = format!(
                            "{program} runs a script from a process substitution, which the analysis does not see"
                        );
                        return self.not_understood(part, reason);
                    }
                    script.is_some_and(|w| w.literal == "/dev/stdin" || programs::is_stdin_name(&w.literal))
                }
                ShellCall::Unknown(reason) => return self.not_understood(part, reason),
            };
            let asks_version = words
                .iter()
                .skip(1)
                .any(|w| matches!(w.literal.as_str(), "--version" | "--help"));
            if from_stdin && !asks_version {
                let foreign = match &ctx.stdin_doc {
                    Some(Ok(script)) => foreign_syntax(program, script),
                    _ => None,
                };
                if let Some(reason) = foreign {
                    return self.not_understood(part, reason);
                }
                return match &ctx.stdin_doc {
                    Some(Ok(script)) if program != "fish" => {
                        let mut c = ctx.with_via(format!("{program} <<"));
                        c.stdin_doc = None;
                        self.scoped(|w| w.text(script, &c))
                    }
                    Some(Err(reason)) => self.not_understood(part, reason.clone()),
                    _ => {
                        let reason = format!(
                            "{program} reads commands from standard input (a pipe, a file or the terminal), which \
                             the analysis does not see"
                        );
                        self.not_understood(part, reason)
                    }
                };
            }
        } else if programs::is_interpreter(program) {
            if let Some(reason) = programs::interpreter_reads_stdin(program, words) {
                return self.not_understood(part, reason);
            }
        }

        match program {
            "eval" if words.len() > 1 => {
                if words.iter().skip(1).any(|w| !w.is_literal()) {
                    self.not_understood(part, "eval of a string that is not literal".to_owned());
                    self.dirs = Dirs::Unknown(format!(
                        "the working directory after `{text}` cannot be known: eval of a string that is not literal"
                    ));
                    return;
                }
                let script = part.args.join(" ");
                let c = ctx.with_via("eval".to_owned());
                // The same shell: its `cd`s stay.
                self.text(&script, &c);
                self.dir_outcome = None;
            }
            "source" | "." => {
                let file = part.args.first().cloned().unwrap_or_default();
                self.not_understood(part, format!("runs the commands of the file {file}"));
                self.dirs = Dirs::Unknown(format!(
                    "the working directory after `{text}` cannot be known: the file may change it"
                ));
            }
            "alias" if part.args.iter().any(|a| a.contains('=')) => self.not_understood(
                part,
                "defines an alias, which can change what later commands run".to_owned(),
            ),
            "su" => match su_command(words) {
                Ok((Some(i), login)) => match words.get(i) {
                    Some(cmd) if cmd.is_literal() => {
                        let script = cmd.literal.clone();
                        let c = ctx.with_via("su -c".to_owned());
                        self.scoped(|w| {
                            if login {
                                w.dirs = Dirs::Unknown(
                                    "su - runs the command in the target user's home directory".to_owned(),
                                );
                            }
                            w.text(&script, &c)
                        })
                    }
                    _ => self.not_understood(part, "su -c runs a command string that is not literal".to_owned()),
                },
                Ok((None, _)) => self.push(part),
                Err(reason) => self.not_understood(part, reason),
            },
            "trap" => self.trap(part, words, &ctx),
            "find" => self.find(part, words, &ctx),
            _ => self.plain(part, program, words, text),
        }
    }

    /// Fills what the program's grammar says into `part`.
    fn read_grammar(part: &mut Part, program: &str, words: &[WordInfo]) -> programs::Reading {
        let mut reading = programs::read(program, words);
        // `./ls` or `/tmp/x/ls` is whatever that file is, not the tool.
        if programs::is_system_path(&part.path) {
            part.known = reading.known;
            part.operands = std::mem::take(&mut reading.operands);
        } else {
            part.known = false;
        }
        extend_unique(&mut part.writes, &reading.writes);
        extend_unique(&mut part.reads, &reading.reads);
        reading
    }

    /// A part that is no wrapper, shell or special builtin; `cd`,
    /// `pushd` and `popd` change the directory of the later parts.
    fn plain(&mut self, mut part: Part, program: &str, words: &[WordInfo], text: &str) {
        let reading = Self::read_grammar(&mut part, program, words);
        if let Some(reason) = reading.runs {
            return self.not_understood(part, reason);
        }
        let before = self.dirs.clone();
        if let Some(dir) = &reading.chdir {
            self.dirs = match dir {
                Ok(d) => self.dirs.enter(d),
                Err(reason) => Dirs::Unknown(reason.clone()),
            };
        }
        let understood = part.understood;
        self.push(part);
        // A variable set for the part (`HOME=/x cd`) may have made the
        // directory unknown: that stays.
        if reading.chdir.is_some() || !matches!(self.dirs, Dirs::Unknown(_)) {
            self.dirs = before;
        }
        if !understood && self.full {
            return;
        }
        let args: Vec<String> = words.iter().skip(1).map(|w| w.literal.clone()).collect();
        if let Some(ok) = dirs::change(program, words, text, &self.dirs) {
            self.dir_changes += 1;
            let failed = self.dirs.clone();
            self.dirs = ok.union(&failed);
            self.dir_outcome = Some((ok, failed));
        } else if let Some(reason) = dirs::changes_dir_rules(program, &args, &[]) {
            self.dirs = Dirs::Unknown(format!(
                "the working directory after `{text}` cannot be known: {reason}"
            ));
        }
    }

    fn not_understood(&mut self, mut part: Part, reason: String) {
        part.understood = false;
        part.reason = Some(reason);
        self.push(part);
    }

    /// `trap 'commands' SIGNAL…`: the commands run later, on the signal.
    fn trap(&mut self, part: Part, words: &[WordInfo], ctx: &Ctx) {
        let mut i = 1;
        while words
            .get(i)
            .is_some_and(|w| w.literal.starts_with('-') && w.literal != "-")
        {
            if words.get(i).is_some_and(|w| w.literal == "--") {
                i += 1;
                break;
            }
            i += 1;
        }
        // `trap -p`, `trap -l`, `trap` alone, `trap - SIG`, `trap '' SIG`
        // run nothing.
        let action = words.get(i).filter(|_| words.len() > i + 1);
        let Some(action) = action else { return self.push(part) };
        if action.literal.is_empty() || action.literal == "-" {
            return self.push(part);
        }
        if !action.is_literal() {
            return self.not_understood(part, "trap with commands that are not literal".to_owned());
        }
        let script = action.literal.clone();
        self.push(part);
        let c = ctx.with_via("trap".to_owned());
        let before = self.dirs.clone();
        let start = self.parts.len();
        self.text(&script, &c);
        let after = std::mem::replace(&mut self.dirs, before.clone());
        if after != before {
            // The handler may run before any later command (`DEBUG`).
            self.dirs = Dirs::Unknown("a trap handler changes the working directory".to_owned());
        }
        self.deferred.push(Deferred {
            parts: start..self.parts.len(),
            changes: self.dir_changes,
            what: "a trap handler".to_owned(),
        });
    }

    /// `find … -exec cmd {} ;`: find is a part, and so is each command it
    /// runs.
    fn find(&mut self, mut part: Part, words: &[WordInfo], ctx: &Ctx) {
        let text = part.text.clone();
        Self::read_grammar(&mut part, "find", words);
        self.push(part);
        let mut i = 1;
        while let Some(w) = words.get(i) {
            if self.full {
                return;
            }
            i += 1;
            if !matches!(w.literal.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
                continue;
            }
            let start = i;
            while words
                .get(i)
                .is_some_and(|w| w.literal != ";" && !(w.literal == "+" && i > start))
            {
                i += 1;
            }
            let cmd = words.get(start..i).unwrap_or_default();
            i += 1;
            let in_dir = matches!(w.literal.as_str(), "-execdir" | "-okdir");
            let mut c = ctx.with_via("find -exec".to_owned());
            c.stdin_doc = None;
            c.replace = Some("{}".to_owned());
            if cmd.iter().any(|w| w.literal.contains("{}")) {
                c.dynamic_args = true;
            }
            // The command runs in a child process; `-execdir` runs it in
            // the directory of each file found.
            self.scoped(|walker| {
                if in_dir {
                    walker.dirs = Dirs::Unknown(format!(
                        "find {} runs the command in the directory of each file found",
                        w.literal
                    ));
                }
                walker.run(&text, cmd, c);
            });
        }
    }
}

/// A word as written in the source. brush-parser's tokenizer can drop part
/// of a word's value (a here-document line `)` inside `$(…)`), never its
/// position.
fn written<'a>(src: &Source<'a>, w: &'a ast::Word) -> &'a str {
    match &w.loc {
        Some(loc) => match src.span(loc) {
            "" => &w.value,
            text => text,
        },
        None => &w.value,
    }
}

/// An item of a simple command, in order.
enum Item<'a> {
    Word(&'a ast::Word),
    Item(&'a CommandPrefixOrSuffixItem),
}

fn redirect_span(io: &IoRedirect) -> Option<SourceSpan> {
    match io {
        IoRedirect::File(_, _, target) => match target {
            IoFileRedirectTarget::Filename(w) | IoFileRedirectTarget::Duplicate(w) => w.loc.clone(),
            IoFileRedirectTarget::ProcessSubstitution(_, sub) => Some(sub.loc.clone()),
            IoFileRedirectTarget::Fd(_) => None,
        },
        IoRedirect::HereDocument(_, doc) => doc.here_end.loc.clone(),
        IoRedirect::HereString(_, w) | IoRedirect::OutputAndError(w, _) => w.loc.clone(),
    }
}
