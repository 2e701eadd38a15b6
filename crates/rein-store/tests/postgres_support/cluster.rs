//! A throwaway PostgreSQL cluster of a test's own (initdb into a temporary
//! directory, on a free port), for what must not be done to the shared one
//! (stopping it, TLS settings). Needs PostgreSQL's server binaries
//! (`/usr/lib/postgresql/<major>/bin`, or the folder in `REIN_TEST_PG_BIN`);
//! without them a test is skipped with a note, except under `CI=true` with
//! `REIN_TEST_PG` set, where that is a failure.

use std::path::PathBuf;
use std::process::Command;

/// The folder of `initdb` and `pg_ctl`.
fn server_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("REIN_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop()
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A cluster of its own, stopped and removed when dropped.
pub struct Cluster {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    port: u16,
    /// Server options beyond the port and the socket folder.
    extra: String,
}

impl Cluster {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a server program (as `postgres` when we are root: the server
    /// refuses to run as root).
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = self.bin.join(program);
        let out = if is_root() {
            let mut line = shell_quote(&path.to_string_lossy());
            for a in args {
                line.push(' ');
                line.push_str(&shell_quote(a));
            }
            // From `/`: the server's programs look up their own folder from
            // the current one, which the `postgres` user may not be able to
            // read (a checkout under /root).
            Command::new("su")
                .current_dir("/")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new(&path).current_dir("/").args(args).output()
        };
        out.unwrap()
    }

    pub fn start(&self) {
        let data = self.data();
        let log = self.dir.path().join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
            self.port,
            self.dir.path().display(),
            self.extra
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn stop(&self, mode: &str) {
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-m", mode, "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://rein@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-m", "immediate", "stop"],
        );
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Makes a cluster, or `None` (skipped) where none can be made.
pub fn cluster(extra: &str) -> Option<Cluster> {
    let required = std::env::var("CI").as_deref() == Ok("true") && std::env::var_os("REIN_TEST_PG").is_some();
    let Some(bin) = server_bin() else {
        assert!(
            !required,
            "PostgreSQL's server binaries are missing: CI must run the restart test"
        );
        eprintln!("note: no PostgreSQL server binaries (initdb); restart test skipped");
        return None;
    };
    let dir = tempfile::Builder::new().prefix("rein-pg-restart-").tempdir().unwrap();
    if is_root() {
        let uid = id_of("-u");
        let gid = id_of("-g");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    let cluster = Cluster {
        bin,
        dir,
        port: free_port(),
        extra: extra.to_owned(),
    };
    let out = cluster.run(
        "initdb",
        &[
            "-D",
            &cluster.data().to_string_lossy(),
            "-U",
            "rein",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    );
    assert!(
        out.status.success(),
        "initdb: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.start();
    Some(cluster)
}

pub fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
