//! A `rein serve` for the end-to-end suites' server-hook scenarios, on a
//! free port of the loopback-only namespace, killed when dropped.
//!
//! Included by each suite's `main.rs` with
//! `#[path = "../agent_e2e/rein_serve.rs"] mod rein_serve;`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running `rein serve`, killed when dropped.
pub struct ReinServe {
    child: Arc<Mutex<Child>>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl ReinServe {
    /// Starts `rein_bin serve` with `policies`, its database, token file and
    /// log in `root`, knowing one agent `agent` by `token`; returns once
    /// `/healthz` answers.
    pub fn start(rein_bin: &str, policies: &[PathBuf], root: &Path, agent: &str, token: &str) -> ReinServe {
        let tokens = root.join("tokens.yaml");
        fs::write(
            &tokens,
            format!("tokens:\n  - {{name: {agent}, role: agent, token: \"{token}\"}}\n"),
        )
        .unwrap();
        // Nothing else binds ports in this namespace.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = root.join("serve.log");
        let mut cmd = Command::new(rein_bin);
        cmd.arg("serve");
        for p in policies {
            cmd.arg("--policy").arg(p);
        }
        let child = cmd
            .arg("--db")
            .arg(root.join("serve.db"))
            .arg("--tokens")
            .arg(&tokens)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let serve = ReinServe {
            child: Arc::new(Mutex::new(child)),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        loop {
            if http.get(format!("{}/healthz", serve.url)).call().is_ok() {
                return serve;
            }
            if let Some(status) = serve.child.lock().unwrap().try_wait().unwrap() {
                panic!("rein serve exited ({status}):\n{}", serve.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "rein serve did not start:\n{}",
                serve.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr so far.
    // Not every suite shows it.
    #[allow(dead_code)]
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits for it; for a scripted turn.
    pub fn killer(&self) -> impl Fn() + Clone + Send + Sync + 'static {
        let child = self.child.clone();
        move || {
            let mut child = child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ReinServe {
    fn drop(&mut self) {
        (self.killer())();
    }
}
