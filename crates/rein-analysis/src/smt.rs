//! The solver: terms of [`rein_engine::analysis`] printed as SMT-LIB (with
//! `easy-smt`'s s-expressions) and sent to a `z3` child process, one query
//! at a time between `push` and `pop`.
//!
//! Every query has two bounds: the solver's own `:timeout` (it answers
//! `unknown`) and a hard deadline a little later, past which the process is
//! killed (a solver that hangs or stops answering cannot hang Rein); the
//! next query starts a fresh process. Either way the answer is
//! [`Answer::Unknown`], never a verdict.

use easy_smt::{Context, ContextBuilder, SExpr};
use rein_engine::analysis::{Literal, Logic, Sort, Term};
use rustc_hash::FxHashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Why the solver could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    /// The program could not be started.
    #[error(
        "cannot start the SMT solver `{program}`: {reason}; install Z3 (`apt-get install z3`) or name one with `--solver PATH`"
    )]
    Missing {
        /// The program tried.
        program: String,
        /// What the OS said.
        reason: String,
    },
    /// It started but does not speak SMT-LIB as Z3 does.
    #[error("the SMT solver `{program}` does not answer as Z3 does: {reason}")]
    Broken {
        /// The program tried.
        program: String,
        /// What went wrong.
        reason: String,
    },
}

/// How to run the solver.
#[derive(Clone, Debug)]
pub struct SolverConfig {
    /// The `z3` executable.
    pub program: PathBuf,
    /// The most one query may take; past it the answer is `unknown`.
    pub timeout: Duration,
}

impl Default for SolverConfig {
    fn default() -> SolverConfig {
        SolverConfig {
            program: PathBuf::from("z3"),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A solver's answer to "is there an assignment making this true?".
#[derive(Clone, Debug)]
pub enum Answer {
    /// Yes: the values of the variables asked for.
    Sat(FxHashMap<u32, Literal>),
    /// No: proved.
    Unsat,
    /// Not decided (timeout, the solver gave up, crashed or was killed).
    Unknown(String),
}

/// Grace on top of the solver's own timeout before the process is killed.
const KILL_GRACE: Duration = Duration::from_millis(500);

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    declared: usize,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `z3` process fed queries about one [`Logic`].
pub struct Solver {
    config: SolverConfig,
    running: Option<Running>,
    ctx: Context,
    /// Queries answered, by kind, for reports.
    pub stats: Stats,
}

/// What the solver was asked and answered.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Queries sent.
    pub queries: usize,
    /// Answered `sat`.
    pub sat: usize,
    /// Answered `unsat`.
    pub unsat: usize,
    /// Not decided.
    pub unknown: usize,
}

impl Solver {
    /// Starts the solver and checks that it answers.
    pub fn new(config: SolverConfig) -> Result<Solver, SolverError> {
        let ctx = ContextBuilder::new()
            .without_solver()
            .build()
            .map_err(|e| SolverError::Broken {
                program: config.program.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut s = Solver {
            config,
            running: None,
            ctx,
            stats: Stats::default(),
        };
        s.start()?;
        Ok(s)
    }

    fn program(&self) -> String {
        self.config.program.display().to_string()
    }

    fn start(&mut self) -> Result<(), SolverError> {
        let mut child = Command::new(&self.config.program)
            .args(["-in", "-smt2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| SolverError::Missing {
                program: self.program(),
                reason: e.to_string(),
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(SolverError::Broken {
                program: self.program(),
                reason: "no pipes".into(),
            });
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Lines are read on a thread so that waiting for an answer can time
        // out; the thread ends when the process does.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let millis = self.config.timeout.as_millis().max(1);
        let mut running = Running {
            child,
            stdin,
            lines: rx,
            declared: 0,
        };
        let setup = format!(
            "(set-option :print-success false)\n(set-option :produce-models true)\n(set-option :timeout {millis})\n(echo \"ready\")\n"
        );
        let deadline = Instant::now() + self.config.timeout + KILL_GRACE + Duration::from_secs(5);
        let ok = running
            .stdin
            .write_all(setup.as_bytes())
            .and_then(|()| running.stdin.flush());
        match (ok, read_expr(&running.lines, deadline)) {
            (Ok(()), Ok(line)) if line.trim() == "ready" => {
                self.running = Some(running);
                Ok(())
            }
            (_, Ok(other)) => Err(SolverError::Broken {
                program: self.program(),
                reason: format!("it answered `{}` to a greeting", other.trim()),
            }),
            (_, Err(e)) => Err(SolverError::Broken {
                program: self.program(),
                reason: e,
            }),
        }
    }

    /// Is `query` (with the logic's axioms) satisfiable? On `sat`, the
    /// values of `wanted` variables.
    pub fn check(&mut self, logic: &Logic, query: &Term, wanted: &[u32]) -> Answer {
        self.stats.queries += 1;
        let answer = self.check_inner(logic, query, wanted);
        match &answer {
            Answer::Sat(_) => self.stats.sat += 1,
            Answer::Unsat => self.stats.unsat += 1,
            Answer::Unknown(_) => self.stats.unknown += 1,
        }
        answer
    }

    fn check_inner(&mut self, logic: &Logic, query: &Term, wanted: &[u32]) -> Answer {
        if self.running.is_none() {
            if let Err(e) = self.start() {
                return Answer::Unknown(e.to_string());
            }
        }
        let mut script = String::new();
        let declared = self.running.as_ref().map_or(0, |r| r.declared);
        for (i, v) in logic.vars.iter().enumerate().skip(declared) {
            let sort = match v.sort {
                Sort::Bool => "Bool",
                Sort::Int => "Int",
                Sort::Real => "Real",
                Sort::Str => "String",
            };
            script.push_str(&format!("(declare-const v{i} {sort})\n"));
        }
        // Only the axioms of the variables the query reads (and their
        // definitions read): the solver works on this query, not on every
        // rule of the policy.
        let mut vars = wanted.to_vec();
        query.vars(&mut vars);
        let mut parts = logic.axioms_for_vars(vars);
        parts.push(query.clone());
        let formula = self.to_sexpr(&Term::and(parts));
        script.push_str(&format!(
            "(push 1)\n(assert {})\n(check-sat)\n",
            self.ctx.display(formula)
        ));
        let deadline = Instant::now() + self.config.timeout + KILL_GRACE;
        let Some(running) = self.running.as_mut() else {
            return Answer::Unknown("the solver is not running".into());
        };
        running.declared = logic.vars.len();
        if let Err(e) = running
            .stdin
            .write_all(script.as_bytes())
            .and_then(|()| running.stdin.flush())
        {
            self.running = None;
            return Answer::Unknown(format!("the solver stopped: {e}"));
        }
        let verdict = match read_expr(&running.lines, deadline) {
            Ok(v) => v.trim().to_string(),
            Err(e) => {
                // Killed on drop; a fresh process answers the next query.
                self.running = None;
                return Answer::Unknown(e);
            }
        };
        let answer = match verdict.as_str() {
            "unsat" => Answer::Unsat,
            "sat" if wanted.is_empty() => Answer::Sat(FxHashMap::default()),
            "sat" => {
                let names: Vec<String> = wanted.iter().map(|i| format!("v{i}")).collect();
                let cmd = format!("(get-value ({}))\n", names.join(" "));
                let read = running
                    .stdin
                    .write_all(cmd.as_bytes())
                    .and_then(|()| running.stdin.flush())
                    .map_err(|e| e.to_string())
                    .and_then(|()| read_expr(&running.lines, deadline));
                match read {
                    Ok(text) => match parse_values(&text, logic) {
                        Some(values) => Answer::Sat(values),
                        None => Answer::Unknown(format!("unreadable model: {}", shorten(&text))),
                    },
                    Err(e) => {
                        self.running = None;
                        return Answer::Unknown(e);
                    }
                }
            }
            "unknown" => Answer::Unknown(self.reason_unknown(deadline)),
            other => {
                self.running = None;
                return Answer::Unknown(format!("the solver answered `{}`", shorten(other)));
            }
        };
        if let Some(running) = self.running.as_mut() {
            if running
                .stdin
                .write_all(b"(pop 1)\n")
                .and_then(|()| running.stdin.flush())
                .is_err()
            {
                self.running = None;
            }
        }
        answer
    }

    fn reason_unknown(&mut self, deadline: Instant) -> String {
        let Some(running) = self.running.as_mut() else {
            return "unknown".into();
        };
        let asked = running
            .stdin
            .write_all(b"(get-info :reason-unknown)\n")
            .and_then(|()| running.stdin.flush());
        if asked.is_err() {
            return "unknown".into();
        }
        match read_expr(&running.lines, deadline + KILL_GRACE) {
            Ok(text) => {
                let t = text.trim();
                if t.contains("timeout") || t.contains("canceled") {
                    "the solver timed out".into()
                } else {
                    format!("the solver gave up ({})", shorten(t))
                }
            }
            Err(e) => {
                self.running = None;
                e
            }
        }
    }

    fn to_sexpr(&self, t: &Term) -> SExpr {
        let c = &self.ctx;
        let b = |x: &Term| self.to_sexpr(x);
        match t {
            Term::Bool(true) => c.true_(),
            Term::Bool(false) => c.false_(),
            Term::Int(i) => {
                if *i < 0 {
                    c.negate(c.numeral(i.unsigned_abs()))
                } else {
                    c.numeral(i.unsigned_abs())
                }
            }
            Term::Real(num, den) => {
                let (neg, digits) = match num.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, num.as_str()),
                };
                let frac = c.list(vec![
                    c.atom("/"),
                    c.atom(format!("{digits}.0")),
                    c.atom(format!("{den}.0")),
                ]);
                if neg {
                    c.negate(frac)
                } else {
                    frac
                }
            }
            Term::Str(s) => c.atom(smt_string(s)),
            Term::Var(i) => c.atom(format!("v{i}")),
            Term::Not(x) => c.not(b(x)),
            Term::And(xs) => match xs.len() {
                0 => c.true_(),
                _ => c.and_many(xs.iter().map(b)),
            },
            Term::Or(xs) => match xs.len() {
                0 => c.false_(),
                _ => c.or_many(xs.iter().map(b)),
            },
            Term::Ite(x, y, z) => c.ite(b(x), b(y), b(z)),
            Term::Eq(x, y) => c.eq(b(x), b(y)),
            Term::Lt(x, y) => c.lt(b(x), b(y)),
            Term::Le(x, y) => c.lte(b(x), b(y)),
            Term::Add(x, y) => c.plus(b(x), b(y)),
            Term::Sub(x, y) => c.sub(b(x), b(y)),
            Term::Mul(x, y) => c.times(b(x), b(y)),
            Term::Neg(x) => c.negate(b(x)),
            Term::ToReal(x) => c.list(vec![c.atom("to_real"), b(x)]),
            Term::StrLen(x) => c.list(vec![c.atom("str.len"), b(x)]),
            Term::PrefixOf(x, y) => c.list(vec![c.atom("str.prefixof"), b(x), b(y)]),
            Term::SuffixOf(x, y) => c.list(vec![c.atom("str.suffixof"), b(x), b(y)]),
            Term::Contains(x, y) => c.list(vec![c.atom("str.contains"), b(x), b(y)]),
        }
    }
}

/// A string literal in SMT-LIB 2.6: `""` for a quote, `\u{..}` for
/// anything outside printable ASCII and for the backslash (so that no
/// escape is read into the text).
fn smt_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\"\""),
            '\\' => out.push_str("\\u{5c}"),
            ' '..='~' => out.push(ch),
            other => out.push_str(&format!("\\u{{{:x}}}", other as u32)),
        }
    }
    out.push('"');
    out
}

fn shorten(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 200 {
        format!("{}…", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}

/// Reads lines until they hold one whole s-expression (or atom).
fn read_expr(lines: &Receiver<String>, deadline: Instant) -> Result<String, String> {
    let mut text = String::new();
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(wait) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if balanced(&text) {
                    return Ok(text);
                }
            }
            Err(RecvTimeoutError::Timeout) => return Err("the solver passed its deadline and was stopped".into()),
            Err(RecvTimeoutError::Disconnected) => return Err("the solver exited".into()),
        }
    }
}

/// True when the text is non-blank and its parentheses (outside string
/// literals) close.
fn balanced(text: &str) -> bool {
    let mut depth = 0i64;
    let mut in_str = false;
    let mut any = false;
    for ch in text.chars() {
        if in_str {
            if ch == '"' {
                in_str = false;
            }
            continue;
        }
        match ch {
            '"' => {
                in_str = true;
                any = true;
            }
            '(' => {
                depth += 1;
                any = true;
            }
            ')' => depth -= 1,
            c if !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    any && !in_str && depth <= 0
}

/// The answer to `(get-value (v1 v2 ...))`: `((v1 value) (v2 value) ...)`.
fn parse_values(text: &str, logic: &Logic) -> Option<FxHashMap<u32, Literal>> {
    let tokens = tokenize(text)?;
    let mut pos = 0;
    let tree = parse_tree(&tokens, &mut pos)?;
    let Tree::List(pairs) = tree else { return None };
    let mut out = FxHashMap::default();
    for pair in pairs {
        let Tree::List(kv) = pair else { return None };
        let [Tree::Atom(name), value] = kv.as_slice() else {
            return None;
        };
        let idx: u32 = name.strip_prefix('v')?.parse().ok()?;
        let sort = logic.vars.get(idx as usize)?.sort;
        out.insert(idx, literal(value, sort)?);
    }
    Some(out)
}

#[derive(Debug)]
enum Tree {
    Atom(String),
    Str(String),
    List(Vec<Tree>),
}

#[derive(Debug)]
enum Token {
    Open,
    Close,
    Atom(String),
    Str(String),
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut raw = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            raw.push('"');
                        }
                        '"' => break,
                        other => raw.push(other),
                    }
                }
                out.push(Token::Str(unescape(&raw)?));
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            _ => {
                let mut atom = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '(' || c == ')' || c == '"' || c.is_whitespace() {
                        break;
                    }
                    atom.push(c);
                    chars.next();
                }
                out.push(Token::Atom(atom));
            }
        }
    }
    Some(out)
}

/// Z3's escapes in a string literal: `\u{h..}`, `\uhhhh`; anything else is
/// taken as written.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find("\\u") {
        out.push_str(rest.get(..i)?);
        let after = rest.get(i + 2..)?;
        if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}')?;
            let code = u32::from_str_radix(braced.get(..end)?, 16).ok()?;
            out.push(char::from_u32(code)?);
            rest = braced.get(end + 1..)?;
        } else if after.len() >= 4 && after.get(..4)?.chars().all(|c| c.is_ascii_hexdigit()) {
            let code = u32::from_str_radix(after.get(..4)?, 16).ok()?;
            out.push(char::from_u32(code)?);
            rest = after.get(4..)?;
        } else {
            out.push_str("\\u");
            rest = after;
        }
    }
    out.push_str(rest);
    Some(out)
}

fn parse_tree(tokens: &[Token], pos: &mut usize) -> Option<Tree> {
    let t = tokens.get(*pos)?;
    *pos += 1;
    match t {
        Token::Atom(a) => Some(Tree::Atom(a.clone())),
        Token::Str(s) => Some(Tree::Str(s.clone())),
        Token::Close => None,
        Token::Open => {
            let mut items = Vec::new();
            loop {
                if let Token::Close = tokens.get(*pos)? {
                    *pos += 1;
                    return Some(Tree::List(items));
                }
                items.push(parse_tree(tokens, pos)?);
            }
        }
    }
}

/// A model value: `true`, `5`, `(- 5)`, `2.5`, `(/ 1.0 3.0)`, `"text"`.
fn literal(t: &Tree, sort: Sort) -> Option<Literal> {
    match sort {
        Sort::Bool => match t {
            Tree::Atom(a) if a == "true" => Some(Literal::Bool(true)),
            Tree::Atom(a) if a == "false" => Some(Literal::Bool(false)),
            _ => None,
        },
        Sort::Int => int(t).map(Literal::Int),
        Sort::Real => real(t).map(Literal::Real),
        Sort::Str => match t {
            Tree::Str(s) => Some(Literal::Str(s.clone())),
            _ => None,
        },
    }
}

fn int(t: &Tree) -> Option<i128> {
    match t {
        Tree::Atom(a) => a.parse().ok(),
        Tree::List(items) => match items.as_slice() {
            [Tree::Atom(op), x] if op == "-" => int(x)?.checked_neg(),
            _ => None,
        },
        Tree::Str(_) => None,
    }
}

fn real(t: &Tree) -> Option<f64> {
    match t {
        Tree::Atom(a) => a.parse().ok(),
        Tree::List(items) => match items.as_slice() {
            [Tree::Atom(op), x] if op == "-" => Some(-real(x)?),
            [Tree::Atom(op), x, y] if op == "/" => Some(real(x)? / real(y)?),
            _ => None,
        },
        Tree::Str(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_and_read_back() {
        assert_eq!(smt_string("a\"b\\c é"), "\"a\"\"b\\u{5c}c \\u{e9}\"");
        assert_eq!(unescape("a\\u{e9}\\u00e9b").as_deref(), Some("aééb"));
        let toks = tokenize(r#"((v1 "x""y") (v2 (- 3)) (v3 (/ 1.0 4.0)))"#).unwrap();
        let mut pos = 0;
        let Tree::List(items) = parse_tree(&toks, &mut pos).unwrap() else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 3);
        let Tree::List(kv) = &items[0] else {
            panic!("not a pair")
        };
        assert!(matches!(&kv[1], Tree::Str(s) if s == "x\"y"));
        let Tree::List(kv) = &items[1] else {
            panic!("not a pair")
        };
        assert_eq!(int(&kv[1]), Some(-3));
        let Tree::List(kv) = &items[2] else {
            panic!("not a pair")
        };
        assert_eq!(real(&kv[1]), Some(0.25));
        assert!(balanced("(a \"(\" b)\n") && !balanced("(a\n") && !balanced("  \n"));
    }
}
