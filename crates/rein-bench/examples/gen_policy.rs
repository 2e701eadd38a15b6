//! Writes a generated benchmark policy and requests to files, for timing
//! `rein check` as a whole process:
//!
//! ```text
//! cargo run --release -p rein-bench --bin gen_policy -- 1000 target/bench-policy
//! cargo build --release -p rein-cli
//! hyperfine -N --warmup 3 \
//!   'target/release/rein check -p target/bench-policy/policy.yaml -r target/bench-policy/request.json'
//! ```
//!
//! Usage: `gen_policy <rules> [out-dir] [seed]` (out-dir defaults to `.`).
//! Writes `policy.yaml`, `request.json` (a known action that is allowed),
//! `request-blocked.json` (one blocked by a rule), `requests.jsonl` (the
//! whole pool, for `rein check --batch`), and the Cedar equivalents
//! `policy.cedar` and `schema.cedarschema`.
//!
//! (A binary rather than a cargo example so that `cargo test` does not
//! build it and with it the benches' dev-dependencies, Cedar included.)

use rein_bench::{Verdict, Workload};
use std::path::PathBuf;
use std::process::ExitCode;

const POOL: usize = 1_000;
const DEFAULT_SEED: u64 = 0x5EED_2026;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_policy: {e}");
            eprintln!("usage: gen_policy <rules> [out-dir] [seed]");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let rules: usize = args
        .next()
        .ok_or("missing the number of rules")?
        .parse()
        .map_err(|e| format!("bad number of rules: {e}"))?;
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let seed: u64 = match args.next() {
        Some(s) => s.parse().map_err(|e| format!("bad seed: {e}"))?,
        None => DEFAULT_SEED,
    };
    if rules == 0 {
        return Err("the number of rules must be at least 1".into());
    }
    let w = Workload::generate(rules, POOL, seed);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let first = |want: Verdict| w.requests.iter().find(|r| r.known.is_some() && w.expected(r) == want);
    write("policy.yaml", w.rein_yaml())?;
    if let Some(r) = first(Verdict::Allow) {
        write("request.json", pretty(&r.rein_json()))?;
    }
    if let Some(r) = first(Verdict::Block) {
        write("request-blocked.json", pretty(&r.rein_json()))?;
    }
    let mut lines = String::new();
    for r in &w.requests {
        lines.push_str(&r.rein_json().to_string());
        lines.push('\n');
    }
    write("requests.jsonl", lines)?;
    write("policy.cedar", w.cedar_policies())?;
    write("schema.cedarschema", w.cedar_schema())?;
    println!(
        "wrote {} rules over {} actions and {} requests to {}",
        w.rules.len(),
        w.actions.len(),
        w.requests.len(),
        dir.display()
    );
    Ok(())
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
