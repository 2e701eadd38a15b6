//! The web console end to end in a real browser: a real `rein serve` (this
//! build's binary, the example refund policy, a SQLite store and a tokens
//! file of an agent, two approvers and an admin in a temporary folder), and
//! `tests/browser/console_test.py` driving Debian's headless Chromium with
//! Playwright for Python against it: an approval appearing in the open
//! inbox without a reload, granted in the page, the agent's retry allowed,
//! the audit filter and a record's detail, sign-in refusals, a forged
//! cross-site post, self-approval, keyboard, phone width, axe-core on every
//! page, and a screenshot of each page.
//!
//! The browser, Playwright and axe-core are what `.ci/browser` installs;
//! without them the test says SKIPPED on stderr and passes, except under
//! `CI=true`, where it fails. The screenshots land in
//! `target/console-screenshots/` (or `REIN_CONSOLE_SCREENSHOTS`), which CI
//! keeps.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest `rein serve` may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the browser script may run (it waits at most 15 s for any one
/// thing; the whole run takes well under a minute on a quiet machine).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Who the tokens file names (the names are what approvals record).
const AGENT: (&str, &str) = ("agent-1", "browser-agent-token-5f0c1d9e7a2b");
/// The approver who grants in the page.
const APPROVER: (&str, &str) = ("lee", "browser-lee-token-8e3a6b1c4d7f");
/// An approver who asks for an approval with their own token.
const REQUESTER: (&str, &str) = ("sam", "browser-sam-token-2c9d4e7a1b6f");
const ADMIN: (&str, &str) = ("ops", "browser-ops-token-6a1f3c8e2d5b");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// What the browser test needs, where `.ci/browser` installs it.
struct Tools {
    python: PathBuf,
    chromium: PathBuf,
    axe: PathBuf,
}

fn find_tools() -> Result<Tools, String> {
    let root = repo();
    let venv = match std::env::var_os("REIN_BROWSER_VENV") {
        Some(p) => root.join(p),
        None => root.join(".tools/browser-venv"),
    };
    let npm = match std::env::var_os("REIN_BROWSER_NPM") {
        Some(p) => root.join(p),
        None => root.join(".tools/browser-npm"),
    };
    let tools = Tools {
        python: venv.join("bin/python"),
        chromium: std::env::var_os("REIN_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from),
        axe: npm.join("node_modules/axe-core/axe.min.js"),
    };
    for p in [&tools.python, &tools.chromium, &tools.axe] {
        if !p.is_file() {
            return Err(format!("no {}: run .ci/browser", p.display()));
        }
    }
    let playwright = Command::new(&tools.python)
        .args(["-c", "import playwright.sync_api"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tools.python.display()))?;
    if !playwright.status.success() {
        return Err(format!(
            "the venv has no playwright ({}): run .ci/browser",
            String::from_utf8_lossy(&playwright.stderr).trim()
        ));
    }
    Ok(tools)
}

/// The tools, or `None` after a SKIPPED note (a failure under `CI=true`).
fn tools(test: &str) -> Option<Tools> {
    match find_tools() {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test} cannot run under CI=true: {why}"
            );
            // Straight to stderr: libtest swallows the output of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test} (Chromium, Playwright, axe-core): {why}\n"
            );
            None
        }
    }
}

/// Where the screenshots go: `target/console-screenshots/` beside this
/// build's target folder, emptied first so that only this run's are there.
fn screenshot_dir() -> PathBuf {
    let dir = match std::env::var_os("REIN_CONSOLE_SCREENSHOTS") {
        Some(p) => repo().join(p),
        // CARGO_TARGET_TMPDIR is `<target>/tmp`, wherever the target is.
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("console-screenshots"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` to exit, at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `rein serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `rein serve` on a free port with the example refund policy, the
    /// store and `tokens` in `dir`; ready once `/healthz` answers 200.
    fn start(dir: &Path, tokens: &Path) -> Server {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        // Another process may take the free port before the server binds
        // it: then try another one.
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join(format!("serve-{port}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_rein"))
                .current_dir(repo())
                .env("NO_COLOR", "1")
                .env("REIN_LOG", "info")
                .env_remove("REIN_TOKEN")
                .args(["serve", "--policy", "examples/refund/policy.yaml", "--db"])
                .arg(dir.join("rein.db"))
                .arg("--tokens")
                .arg(tokens)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(r) = http.get(format!("{}/healthz", server.url)).call() {
                    if r.status() == 200 {
                        return server;
                    }
                }
                if let Some(status) = server.child.try_wait().unwrap() {
                    let log = server.log_text();
                    assert!(
                        log.contains("cannot listen"),
                        "`rein serve` exited ({status}) before it was ready:\n{log}"
                    );
                    break; // the port was taken: next one
                }
                assert!(
                    Instant::now() < deadline,
                    "`rein serve` did not answer /healthz within {START_TIMEOUT:?}:\n{}",
                    server.log_text()
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("`rein serve` found no free port in three tries");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn console_in_headless_chromium() {
    let Some(tools) = tools("console_in_headless_chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "tokens:\n  \
             - {{name: {}, role: agent, token: {}}}\n  \
             - {{name: {}, role: approver, token: {}, approves: [support]}}\n  \
             - {{name: {}, role: approver, token: {}, approves: [support]}}\n  \
             - {{name: {}, role: admin, token: {}}}\n",
            AGENT.0, AGENT.1, APPROVER.0, APPROVER.1, REQUESTER.0, REQUESTER.1, ADMIN.0, ADMIN.1
        ),
    )
    .unwrap();
    // A secret: the server warns about a tokens file others may read.
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let server = Server::start(dir.path(), &tokens);
    let shots = screenshot_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console_test.py");

    let mut child = Command::new(&tools.python)
        .arg(&script)
        .current_dir(dir.path())
        .env("REIN_URL", &server.url)
        .env("REIN_TOKEN_AGENT", AGENT.1)
        .env("REIN_TOKEN_APPROVER", APPROVER.1)
        .env("REIN_APPROVER_NAME", APPROVER.0)
        .env("REIN_TOKEN_REQUESTER", REQUESTER.1)
        .env("REIN_REQUESTER_NAME", REQUESTER.0)
        .env("REIN_TOKEN_ADMIN", ADMIN.1)
        .env("REIN_REQUEST", repo().join("examples/refund/request.json"))
        .env("REIN_CHROMIUM", &tools.chromium)
        .env("REIN_AXE_JS", &tools.axe)
        .env("REIN_SCREENSHOTS", &shots)
        // Playwright must use the system Chromium, never fetch one.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout ends Chromium too.
        .process_group(0)
        .spawn()
        .unwrap();
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = wait_for(&mut child, SCRIPT_TIMEOUT);
    if status.is_none() {
        // The whole group: the script, Playwright's driver, Chromium.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
    }
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    // Shown whatever the result (libtest shows it for a failure, or with
    // --nocapture).
    println!("{out}");
    eprintln!("{err}");
    let report = || {
        format!(
            "console_test.py:\n{out}\n{err}\nscreenshots: {}\n`rein serve` log:\n{}",
            shots.display(),
            server.log_text()
        )
    };
    let status = status.unwrap_or_else(|| panic!("console_test.py ran over {SCRIPT_TIMEOUT:?}\n{}", report()));
    assert!(status.success(), "console_test.py failed ({status})\n{}", report());
    assert!(out.contains("console_test: all "), "{}", report());
    for page in [
        "login",
        "approvals",
        "approval",
        "audit",
        "audit-record",
        "session",
        "policy",
        "playground",
    ] {
        let png = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            png.display()
        );
    }
    assert!(
        !server.log_text().contains("panicked"),
        "the server panicked:\n{}",
        server.log_text()
    );
}
