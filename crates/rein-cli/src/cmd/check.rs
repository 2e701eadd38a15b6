//! `rein check` and `rein explain`

use super::actra::{ActraArgs, LoadFailed};
use super::{CacheArgs, Format, PolicyArgs, EXIT_ALLOW, EXIT_APPROVAL, EXIT_BLOCK, EXIT_USAGE};
use anyhow::Context;
use clap::{Args, ValueEnum};
use rein_engine::{Effect, Opened, Phase, Policy, Request};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Largest request read from a file or stdin.
const MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    cache: CacheArgs,
    /// The request as JSON: a file, or `-` for stdin. Without it the
    /// request is read from stdin when stdin is a pipe or a file; on a
    /// terminal it must be given.
    #[arg(long, short = 'r', value_name = "FILE|-")]
    request: Option<PathBuf>,
    /// Decide the outcome of an action (`after` rules, output contract)
    /// instead of the request; overrides the request's `phase`.
    #[arg(long, value_enum)]
    phase: Option<PhaseArg>,
    /// Read JSON Lines (one request per line) and print one decision per
    /// line.
    #[arg(long)]
    batch: bool,
    /// Keep limits and sessions in FILE (JSON, created with a random key
    /// if missing): the decision reads them, what it writes is saved
    /// (atomically, mode 0600) before it is printed, with its
    /// `decision_id`. Without it, a decision whose rules need state
    /// (limits, session facts) is `block`.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// With `--state`: the id the decision's writes are recorded under
    /// (default: a new one). For `--phase after`, give the `decision_id`
    /// of the action's `before` check, so that its output joins the call
    /// the session recorded.
    #[arg(long, value_name = "ID", requires = "state")]
    decision_id: Option<String>,
    /// Actor fields the request's credential binds, comma-separated
    /// (`id,chain`): `rein check` has no credential, so a field the policy
    /// requires bound (`bound: true`) blocks unless it is named here, as
    /// `rein serve` blocks a request whose credential does not bind it.
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    bound: Vec<String>,
    #[command(flatten)]
    actra: ActraArgs,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    cache: CacheArgs,
    /// The request as JSON: a file, or `-` for stdin. Without it the
    /// request is read from stdin when stdin is a pipe or a file; on a
    /// terminal it must be given.
    #[arg(long, short = 'r', value_name = "FILE|-")]
    request: Option<PathBuf>,
    /// Explain the `after` phase.
    #[arg(long, value_enum)]
    phase: Option<PhaseArg>,
    /// Print the trace as JSON.
    #[arg(long)]
    json: bool,
    /// Read limits and sessions from FILE, as `rein check --state` keeps
    /// them (nothing is written; a missing file is an empty state).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Actor fields the request's credential binds, comma-separated
    /// (`id,chain`): `rein check` has no credential, so a field the policy
    /// requires bound (`bound: true`) blocks unless it is named here, as
    /// `rein serve` blocks a request whose credential does not bind it.
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    bound: Vec<String>,
    #[command(flatten)]
    actra: ActraArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PhaseArg {
    Before,
    After,
}

fn exit_code(effect: Effect) -> u8 {
    match effect {
        Effect::Allow => EXIT_ALLOW,
        Effect::Block => EXIT_BLOCK,
        Effect::RequireApproval => EXIT_APPROVAL,
    }
}

/// The policy of `check` or `explain` as loaded: whole, or a cache entry
/// of which only the shared part has been read, the rest to be read for
/// the action the request names.
enum Loaded {
    Whole(Policy),
    Entry(rein_engine::PolicyEntry),
}

impl Loaded {
    /// The policy to decide `request` with: from a cache entry, for a
    /// native request, the shared part and the section of the request's
    /// action only (which decides that request as the whole policy does).
    /// `None` (after printing why) when a damaged entry had to be
    /// compiled again and that failed.
    fn for_input(self, request: &Input, color: bool) -> Option<Policy> {
        match (self, request) {
            (Loaded::Whole(policy), _) => Some(policy),
            (Loaded::Entry(entry), Input::Native(r)) => super::report_cached(entry.for_action(&r.action), color),
            (Loaded::Entry(entry), Input::Actra(_)) => super::report_cached(entry.whole(), color),
        }
    }

    /// The whole policy, for requests of any action.
    fn whole(self, color: bool) -> Option<Policy> {
        match self {
            Loaded::Whole(policy) => Some(policy),
            Loaded::Entry(entry) => super::report_cached(entry.whole(), color),
        }
    }
}

/// Loads the policy of `check` or `explain`; `None` (after printing why)
/// when it did not load or the options do not fit together. A native
/// policy with a cache entry is only opened: see [`Loaded`].
fn load(
    policy: &PolicyArgs,
    cache: &CacheArgs,
    actra: &ActraArgs,
    phase: Option<PhaseArg>,
    color: bool,
) -> Option<Loaded> {
    if actra.is_actra() && phase.is_some() {
        eprintln!("error: `--phase` does not apply to Actra policies, which have no `after` rules");
        return None;
    }
    let cache = cache.cache();
    if let (false, None, Some(cache)) = (actra.is_actra(), &actra.governance, &cache) {
        return match cache.open(&policy.paths()) {
            Ok(Opened::Entry(entry)) => Some(Loaded::Entry(entry)),
            Ok(Opened::Compiled(policy, status)) => {
                super::report_cached(Ok((policy, status)), color).map(Loaded::Whole)
            }
            Err(e) => super::report_cached(Err(e), color).map(Loaded::Whole),
        };
    }
    match super::actra::load_cached(&policy.paths(), actra, cache.as_ref(), color, Format::Human) {
        Ok(p) => Some(Loaded::Whole(p)),
        Err(e) if e.is::<LoadFailed>() => None,
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    }
}

/// A request: native, or in Actra's shape for an Actra policy.
enum Input {
    Native(Box<Request>),
    Actra(serde_json::Value),
}

/// Where the request comes from: the `--request` given, or stdin when it
/// is not a terminal. Without `--request` on a terminal, the command would
/// wait silently for input nobody knows it expects: a usage error instead.
/// `--request -` on a terminal reads it, after saying so on stderr.
fn request_source(command: &str, given: Option<&Path>, stdin_is_terminal: bool) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => {
            if path.as_os_str() == "-" && stdin_is_terminal {
                eprintln!("reading the request from the terminal (JSON; end it with Ctrl-D)");
            }
            Ok(path.to_path_buf())
        }
        None if stdin_is_terminal => anyhow::bail!(
            "no request: give it with `--request FILE`, or pipe it in (`rein {command} POLICY < request.json`); \
             `--request -` reads it from the terminal"
        ),
        None => Ok(PathBuf::from("-")),
    }
}

impl Input {
    fn read(path: &Path, phase: Option<PhaseArg>, actra: bool) -> anyhow::Result<Input> {
        let text = read_text(path)?;
        // Name where the request came from: serde's "EOF while parsing a
        // value at line 1 column 0" alone does not say it.
        let from = if path.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            format!("`{}`", path.display())
        };
        if text.trim().is_empty() {
            anyhow::bail!(
                "invalid request: {from} is empty; a request is a JSON object, e.g. \
                 {{\"action\": \"refund\", \"input\": {{\"amount\": 5}}}}"
            );
        }
        Input::parse(&text, phase, actra).map_err(|e| anyhow::anyhow!("{from}: {e:#}"))
    }

    fn parse(text: &str, phase: Option<PhaseArg>, actra: bool) -> anyhow::Result<Input> {
        if actra {
            let value = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("invalid request: {e}"))?;
            Ok(Input::Actra(value))
        } else {
            parse_request(text, phase).map(|r| Input::Native(Box::new(r)))
        }
    }

    fn decide<'p>(&self, policy: &'p Policy, bound: &[String]) -> rein_engine::Decision<'p> {
        match self {
            Input::Native(r) => unbound(policy, r, bound).unwrap_or_else(|| policy.decide(r)),
            Input::Actra(v) => policy.decide_actra(v),
        }
    }
}

/// The block of a request whose credential (the fields named with
/// `--bound`) does not bind a field the policy requires bound, as the
/// runtime decides it before any rule.
fn unbound<'p>(policy: &'p Policy, request: &Request, bound: &[String]) -> Option<rein_engine::Decision<'p>> {
    policy
        .unbound_required(|f| bound.iter().any(|b| b == f))
        .map(|why| policy.unbound_block(request.phase, why))
}

pub fn run_check(args: CheckArgs, color: bool) -> anyhow::Result<u8> {
    if args.state.is_some() && (args.actra.is_actra() || args.batch) {
        eprintln!(
            "error: `--state` decides one native request: Actra policies keep no state, and `--batch` does not \
             take it"
        );
        return Ok(EXIT_USAGE);
    }
    let Some(loaded) = load(&args.policy, &args.cache, &args.actra, args.phase, color) else {
        return Ok(EXIT_USAGE);
    };
    let source = match request_source("check", args.request.as_deref(), std::io::stdin().is_terminal()) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    if args.batch {
        // Requests of any action: the whole policy.
        let Some(policy) = loaded.whole(color) else {
            return Ok(EXIT_USAGE);
        };
        return run_batch(&policy, &source, &args);
    }
    let request = match Input::read(&source, args.phase, args.actra.is_actra()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let Some(policy) = loaded.for_input(&request, color) else {
        return Ok(EXIT_USAGE);
    };
    let refused = match &request {
        Input::Native(r) => unbound(&policy, r, &args.bound),
        Input::Actra(_) => None,
    };
    let (decision, json) = match (refused, &args.state, &request) {
        // Blocked before any rule: nothing read from or written to the state.
        (Some(decision), _, _) => {
            let json = decision.to_json();
            (decision, json)
        }
        (None, Some(file), Input::Native(request)) => match decide_with_state_file(&policy, request, file, &args) {
            Ok(decided) => decided,
            Err(e) => {
                // Nothing is printed: a decision whose writes were not kept
                // must not be acted on (its limit use would be forgotten).
                eprintln!("error: {e:#}");
                return Ok(EXIT_USAGE);
            }
        },
        _ => {
            let decision = request.decide(&policy, &args.bound);
            let json = decision.to_json();
            (decision, json)
        }
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &json)?;
    writeln!(out)?;
    let code = exit_code(decision.effect());
    // The process ends here: freeing a large policy node by node would only
    // add to the command's run time.
    std::mem::forget(decision);
    std::mem::forget(policy);
    Ok(code)
}

/// Largest state file read.
const MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;

/// How long `--state` waits for another `rein check` using the same file.
const STATE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a session is kept after its last call in a state file (the
/// default of `rein serve`).
const SESSION_IDLE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Decides `request` against the state kept in `file` (created if
/// missing), applies what the decision writes and saves the file, all
/// under a lock on `<file>.lock`. Returns the decision and its JSON, which
/// carries the `decision_id` its writes are recorded under.
fn decide_with_state_file<'p>(
    policy: &'p Policy,
    request: &Request,
    file: &Path,
    args: &CheckArgs,
) -> anyhow::Result<(rein_engine::Decision<'p>, serde_json::Value)> {
    let _lock = StateFileLock::acquire(file)?;
    let mut state = load_state(file)?;
    let time = request.time.unwrap_or_else(jiff::Timestamp::now);
    // Only what no request from now on or at this request's time can see is
    // dropped (a request may carry a time of its own).
    state.prune(time.min(jiff::Timestamp::now()), policy.max_window(), SESSION_IDLE);
    let decision_id = match &args.decision_id {
        Some(id) => id.clone(),
        None => new_decision_id()?,
    };
    let decision = match policy.prepare(request) {
        Err(refused) => *refused,
        Ok(prepared) if policy.action_state(&request.action, request.phase).any() => {
            let (decision, effects) = prepared.decide_with_state(&state);
            state.apply(&effects.writes(&decision_id, decision.effect(), time));
            decision
        }
        Ok(prepared) => prepared.decide(),
    };
    save_state(file, &state)?;
    let mut json = decision.to_json();
    if let Some(map) = json.as_object_mut() {
        map.insert("decision_id".into(), decision_id.into());
    }
    Ok((decision, json))
}

/// Explains `request` against the state in `file`, writing nothing.
fn explain_with_state_file(
    policy: &Policy,
    request: &Request,
    file: &Path,
) -> anyhow::Result<rein_engine::Explanation> {
    // Under the lock, in order with the checks around it; a missing file
    // is an empty state, and nothing (not even a lock file) is created.
    let _lock = if file.exists() {
        Some(StateFileLock::acquire(file)?)
    } else {
        None
    };
    let state = load_state(file)?;
    Ok(match policy.prepare(request) {
        // Refused by its contract: no rule (and no state) is looked at.
        Err(_) => policy.explain(request),
        Ok(prepared) => prepared.explain_with_state(&state).0,
    })
}

/// A new decision id: `chk-` and 16 random hex digits.
fn new_decision_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    Ok(format!("chk-{:016x}", u64::from_be_bytes(bytes)))
}

/// The state in `file`, or a new one with a random key if there is none.
/// A file that is there but cannot be read as a state is an error, never
/// replaced: it may hold limit uses that must keep counting.
fn load_state(file: &Path) -> anyhow::Result<rein_engine::MemoryState> {
    let shown = file.display();
    let text = match std::fs::File::open(file) {
        Ok(f) => {
            let mut text = String::new();
            f.take(MAX_STATE_BYTES + 1)
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read the state file `{shown}`"))?;
            if text.len() as u64 > MAX_STATE_BYTES {
                anyhow::bail!("the state file `{shown}` is larger than {MAX_STATE_BYTES} bytes");
            }
            text
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
            return Ok(rein_engine::MemoryState::with_key(key));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open the state file `{shown}`")),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the state file `{shown}` is not JSON ({e}); it was left as it is"))?;
    rein_engine::MemoryState::from_json(&value)
        .map_err(|e| anyhow::anyhow!("the state file `{shown}`: {}; it was left as it is", e.0))
}

/// Writes the state to a new file beside `file` (mode 0600), flushes it to
/// disk and renames it over `file`: a reader sees the old state or the
/// new one, never a part.
fn save_state(file: &Path, state: &rein_engine::MemoryState) -> anyhow::Result<()> {
    let shown = file.display();
    let json = state.to_json().map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // `tempfile` creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".rein-state-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write the state file `{shown}`"))?;
    serde_json::to_writer(&mut tmp, &json).with_context(|| format!("cannot write the state file `{shown}`"))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write the state file `{shown}`"))?;
    tmp.persist(file)
        .map_err(|e| anyhow::anyhow!("cannot write the state file `{shown}`: {}", e.error))?;
    Ok(())
}

/// An exclusive lock on `<state file>.lock`, so that two `rein check
/// --state` on one file cannot both read the old state and the later save
/// lose the other's writes. Released when dropped (or the process ends).
struct StateFileLock {
    /// Held open: closing it releases the lock.
    _file: std::fs::File,
}

impl StateFileLock {
    fn acquire(state: &Path) -> anyhow::Result<StateFileLock> {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .with_context(|| format!("cannot open the lock file `{}`", path.display()))?;
        #[cfg(unix)]
        {
            use rustix::fs::{flock, FlockOperation};
            let deadline = std::time::Instant::now() + STATE_LOCK_WAIT;
            loop {
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => break,
                    Err(e) if e == rustix::io::Errno::WOULDBLOCK && std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) if e == rustix::io::Errno::WOULDBLOCK => anyhow::bail!(
                        "another Rein process has held `{}` for {} s: it is using the state file `{}`",
                        path.display(),
                        STATE_LOCK_WAIT.as_secs(),
                        state.display()
                    ),
                    Err(e) => anyhow::bail!("cannot lock `{}`: {e}", path.display()),
                }
            }
        }
        Ok(StateFileLock { _file: file })
    }
}

/// One decision per input line. A line that is not a request is answered
/// with a `block` line that says why, so output lines match input lines.
fn run_batch(policy: &Policy, source: &Path, args: &CheckArgs) -> anyhow::Result<u8> {
    let reader: Box<dyn BufRead> = if source.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(source).with_context(|| format!("cannot open `{}`", source.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match Input::parse(&line, args.phase, args.actra.is_actra()) {
            Ok(request) => serde_json::to_writer(&mut out, &request.decide(policy, &args.bound).to_json())?,
            Err(e) => serde_json::to_writer(
                &mut out,
                &serde_json::json!({
                    "effect": "block",
                    "rules": [],
                    "reasons": [format!("line {}: {e}", n + 1)],
                    "error": "invalid_request",
                    "policy_version": policy.version(),
                }),
            )?,
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(EXIT_ALLOW)
}

pub fn run_explain(args: ExplainArgs, color: bool) -> anyhow::Result<u8> {
    let Some(loaded) = load(&args.policy, &args.cache, &args.actra, args.phase, color) else {
        return Ok(EXIT_USAGE);
    };
    let request = match request_source("explain", args.request.as_deref(), std::io::stdin().is_terminal())
        .and_then(|source| Input::read(&source, args.phase, args.actra.is_actra()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let Some(policy) = loaded.for_input(&request, color) else {
        return Ok(EXIT_USAGE);
    };
    let refused = match &request {
        Input::Native(r) => unbound(&policy, r, &args.bound),
        Input::Actra(_) => None,
    };
    let explanation = match (refused, &request, &args.state) {
        (Some(decision), _, _) => rein_engine::Explanation {
            decision: decision.into_owned(),
            rules: Vec::new(),
        },
        (None, Input::Native(r), Some(file)) => match explain_with_state_file(&policy, r, file) {
            Ok(explanation) => explanation,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(EXIT_USAGE);
            }
        },
        (None, Input::Native(r), None) => policy.explain(r),
        (None, Input::Actra(_), Some(_)) => {
            eprintln!("error: `--state` does not apply to Actra policies, which keep no state");
            return Ok(EXIT_USAGE);
        }
        (None, Input::Actra(v), None) => policy.explain_actra(v),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &explanation.to_json())?;
        writeln!(out)?;
    } else {
        write!(out, "{explanation}")?;
    }
    Ok(exit_code(explanation.decision.effect()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_REQUEST_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read the request from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_REQUEST_BYTES + 1).read_to_string(&mut text))
            .with_context(|| format!("cannot read the request from `{}`", path.display()))?;
    }
    if text.len() as u64 > MAX_REQUEST_BYTES {
        anyhow::bail!("the request is larger than {MAX_REQUEST_BYTES} bytes");
    }
    Ok(text)
}

/// Parses a request; a request without a time is stamped with the current
/// time, so `now` in conditions means "when the check ran".
fn parse_request(text: &str, phase: Option<PhaseArg>) -> anyhow::Result<Request> {
    let mut request = Request::from_json_str(text)?;
    if let Some(p) = phase {
        request.phase = match p {
            PhaseArg::Before => Phase::Before,
            PhaseArg::After => Phase::After,
        };
    }
    if request.time.is_none() {
        request.time = Some(jiff::Timestamp::now());
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_without_request_is_a_usage_error_not_a_wait() {
        let e = request_source("check", None, true).unwrap_err().to_string();
        assert!(e.contains("--request FILE"), "{e}");
        assert_eq!(request_source("check", None, false).unwrap(), PathBuf::from("-"));
        assert_eq!(
            request_source("check", Some(Path::new("-")), true).unwrap(),
            PathBuf::from("-")
        );
        assert_eq!(
            request_source("check", Some(Path::new("r.json")), true).unwrap(),
            PathBuf::from("r.json")
        );
    }
}
