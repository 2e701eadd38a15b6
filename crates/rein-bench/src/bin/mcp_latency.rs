//! bench/mcp_gateway.sh: the latency of `tools/call` over stdio, one call
//! at a time, against a server started as `mcp_latency [OPTIONS] -- CMD…`
//! (the server directly, or `rein mcp gateway … -- server`). Prints one
//! JSON line: median, p90, p99 and max per call in µs, the CPU time of the
//! child's process tree per call, and its resident memory sampled every
//! `--sample-every` calls (to see that it stays flat).
//!
//! Options: `--calls N` (default 20,000), `--warmup N` (default 1,000),
//! `--sample-every N` (default 10,000), `--tool NAME` (default `echo`).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or_else(|| anyhow::anyhow!("usage: mcp_latency [--calls N] [--warmup N] -- CMD…"))?;
    let (options, command) = (&args[..split], &args[split + 1..]);
    let option = |name: &str, default: usize| -> anyhow::Result<usize> {
        match options.iter().position(|a| a == name) {
            Some(i) => Ok(options
                .get(i + 1)
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?
                .parse()?),
            None => Ok(default),
        }
    };
    let calls = option("--calls", 20_000)?;
    let warmup = option("--warmup", 1_000)?;
    let sample_every = option("--sample-every", 10_000)?.max(1);
    let tool = options
        .iter()
        .position(|a| a == "--tool")
        .and_then(|i| options.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "echo".to_string());
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command after --"))?;

    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut client = Client {
        to_server: child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?,
        from_server: BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?),
        line: String::new(),
        next_id: 0,
    };
    client.call(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp_latency", "version": "0"}}),
    )?;
    client.notify("notifications/initialized")?;
    let listed = client.call("tools/list", json!({}))?;
    anyhow::ensure!(
        listed["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == json!(tool))),
        "the server does not list `{tool}`: {listed}"
    );
    let params = json!({"name": tool, "arguments": {"text": "hello"}});
    for _ in 0..warmup {
        let reply = client.call("tools/call", params.clone())?;
        anyhow::ensure!(reply["result"]["isError"] != json!(true), "refused: {reply}");
    }
    let cpu_before = tree_cpu_ticks(pid);
    let mut micros = Vec::with_capacity(calls);
    let mut rss = Vec::new();
    for i in 0..calls {
        let start = Instant::now();
        let reply = client.call("tools/call", params.clone())?;
        micros.push(start.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(reply["result"]["isError"] != json!(true), "refused: {reply}");
        if (i + 1) % sample_every == 0 {
            rss.push(tree_rss_kib(pid));
        }
    }
    let cpu_ticks = tree_cpu_ticks(pid).saturating_sub(cpu_before);
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize];
    let ticks_per_second = 100.0; // USER_HZ on Linux
    println!(
        "{}",
        json!({
            "calls": calls,
            "median_us": round(at(0.5)),
            "p90_us": round(at(0.9)),
            "p99_us": round(at(0.99)),
            "max_us": round(at(1.0)),
            "cpu_us_per_call": round(cpu_ticks as f64 / ticks_per_second * 1e6 / calls as f64),
            "rss_kib": rss,
        })
    );
    drop(client);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A JSON-RPC client over the child's pipes, one request at a time.
struct Client {
    to_server: std::process::ChildStdin,
    from_server: BufReader<std::process::ChildStdout>,
    line: String,
    next_id: u64,
}

impl Client {
    /// Sends a request and reads messages until its response.
    fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        writeln!(self.to_server, "{message}")?;
        self.to_server.flush()?;
        loop {
            self.line.clear();
            if self.from_server.read_line(&mut self.line)? == 0 {
                anyhow::bail!("the server closed its output");
            }
            let reply: Value = serde_json::from_str(&self.line)?;
            if reply.get("id") == Some(&json!(self.next_id)) {
                return Ok(reply);
            }
        }
    }

    /// Sends a notification.
    fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        writeln!(self.to_server, "{}", json!({"jsonrpc": "2.0", "method": method}))?;
        Ok(self.to_server.flush()?)
    }
}

/// The process and its descendants (the gateway and the server behind it).
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", all[i])).unwrap_or_default();
        all.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        i += 1;
    }
    all
}

/// utime + stime of the tree, in clock ticks.
fn tree_cpu_ticks(pid: u32) -> u64 {
    tree(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            // Fields after the command name, which is in parentheses.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after.split_whitespace().collect();
            let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum()
}

/// Resident memory of the direct child (the gateway, or the server when run
/// directly), in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
