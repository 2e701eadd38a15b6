//! The loopback-only network namespace every real-program end-to-end suite
//! (`claude_code_e2e`, `codex_e2e`, `gemini_e2e`) runs its `netns_*` tests in.
//!
//! Outside, the suite's own `#[test]` finds its pinned programs, then
//! [`Suite::run_in_namespace`] runs this same test binary again inside
//! `unshare --net` (with `lo` up), under the suite's timeout. Inside, every
//! `netns_*` test first calls [`Suite::inside`], which checks that loopback
//! is the only link. Missing programs or no namespace: [`Suite::unavailable`]
//! says SKIPPED on stderr, except under `CI=true`, where it fails.
//!
//! Included by each suite's `main.rs` with
//! `#[path = "../agent_e2e/namespace.rs"] mod namespace;`.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One suite: what its messages name, and how its re-run is told apart.
pub struct Suite {
    /// The outer `#[test]`'s name, e.g. `claude_code_e2e`.
    pub name: &'static str,
    /// The program under test as messages name it, e.g. `Claude Code`.
    pub program: &'static str,
    /// Set (to "1") in the environment of the re-run inside the namespace.
    pub netns_env: &'static str,
    /// Longest the whole re-run may take.
    pub timeout: Duration,
}

impl Suite {
    /// Whether this process is the re-run inside the namespace.
    pub fn is_rerun(&self) -> bool {
        std::env::var_os(self.netns_env).is_some()
    }

    /// Skipped locally, failed under `CI=true`.
    pub fn unavailable(&self, why: &str) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the {} end-to-end test cannot run under CI=true: {why}", self.program);
        }
        // Straight to stderr: libtest would swallow `eprintln!` of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED {} (the real {} end to end): {why}\n",
            self.name,
            self.program
        );
    }

    /// Runs this test binary's `netns_*` tests again inside a loopback-only
    /// network namespace, with `env` (the programs found outside) set, and
    /// fails unless they pass within the suite's timeout. No namespace to be
    /// had: [`Suite::unavailable`].
    pub fn run_in_namespace(&self, env: &[(&str, &OsStr)]) {
        let probe = in_loopback_namespace(&["true".as_ref()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match probe {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return self.unavailable(&format!(
                    "cannot make a loopback-only network namespace (unshare --net, ip link): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return self.unavailable(&format!("cannot run unshare: {e}")),
        }

        let exe = std::env::current_exe().unwrap();
        let log_path = std::env::temp_dir().join(format!("rein-{}-{}.log", self.name, std::process::id()));
        let log = fs::File::create(&log_path).unwrap();
        let started = Instant::now();
        let mut child = in_loopback_namespace(&[
            exe.as_os_str(),
            "--ignored".as_ref(),
            "--test-threads=1".as_ref(),
            "--nocapture".as_ref(),
            "netns_".as_ref(),
        ])
        .env(self.netns_env, "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        // Its own process group, so that a timeout can end every process in it.
        .process_group(0)
        .spawn()
        .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > self.timeout {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        let output = fs::read_to_string(&log_path).unwrap_or_default();
        let _ = fs::remove_file(&log_path);
        // Indented, so the re-run's own `test result:` lines are not counted
        // as a second test binary's by whoever reads this output.
        let output: String = output.lines().map(|l| format!("  netns| {l}\n")).collect();
        println!("{output}");
        match status {
            None => panic!("the namespaced run did not finish within {:?}:\n{output}", self.timeout),
            Some(s) if !s.success() => panic!("the namespaced run failed ({s}):\n{output}"),
            Some(_) => println!("namespaced run passed in {:.1}s", started.elapsed().as_secs_f64()),
        }
    }

    /// True only in the re-run inside the loopback-only namespace, which it
    /// checks first (a `netns_*` test run on its own does nothing).
    pub fn inside(&self) -> bool {
        if !self.is_rerun() {
            eprintln!("runs only inside the namespace that `{}` makes", self.name);
            return false;
        }
        let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(str::trim)
            .collect();
        assert_eq!(names, ["lo"], "the namespace must have loopback only:\n{links}");
        true
    }
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// `unshare --net` (mapping the user to root when not root), then `lo` up,
/// then `argv`.
fn in_loopback_namespace(argv: &[&OsStr]) -> Command {
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--net", "--", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .args(argv);
    cmd
}
