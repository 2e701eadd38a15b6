//! `rein check`, `rein explain` and `rein test` on the compiled-policy
//! cache, as processes: a second run reads the entry the first wrote, an
//! edited policy is compiled again, a damaged or foreign entry is reported,
//! ignored and rewritten, and the output is the same with and without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `rein` with `home` as HOME and no cache directory in the
/// environment, so the default cache is `home/.cache/rein/policies`.
fn rein(args: &[&str], stdin: &str, home: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(args)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("REIN_CACHE_DIR")
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The entries in `dir`, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(list) => list
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "policy-ir"))
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    found
}

/// What tells a file apart from one written in its place: every write of an
/// entry is a new file renamed over the old one.
#[cfg(unix)]
fn identity(path: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.ino(), meta.modified().unwrap())
}

struct Setup {
    dir: tempfile::TempDir,
    policy: PathBuf,
    cache: PathBuf,
    request: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::copy(repo().join("examples/refund/policy.yaml"), &policy).unwrap();
        let request = std::fs::read_to_string(repo().join("examples/refund/request.json")).unwrap();
        let cache = dir.path().join(".cache/rein/policies");
        Setup {
            dir,
            policy,
            cache,
            request,
        }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, command: &str, extra: &[&str]) -> Output {
        let mut args = vec![command, "-p", self.policy.to_str().unwrap()];
        args.extend_from_slice(extra);
        rein(&args, &self.request, self.home())
    }
}

#[test]
fn check_stores_then_reads_the_compiled_policy_with_the_same_answer() {
    let s = Setup::new();
    let uncached = s.run("check", &["--no-cache"]);
    assert_eq!(uncached.status.code(), Some(1), "{}", text(&uncached.stderr));
    assert!(entries(&s.cache).is_empty(), "--no-cache wrote an entry");

    let first = s.run("check", &[]);
    assert!(first.stderr.is_empty(), "{}", text(&first.stderr));
    let [entry] = entries(&s.cache).try_into().unwrap();
    let stored = identity(&entry);

    let second = s.run("check", &[]);
    assert!(second.stderr.is_empty(), "{}", text(&second.stderr));
    // Read, not written again.
    assert_eq!(identity(&entry), stored);
    assert_eq!(entries(&s.cache), std::slice::from_ref(&entry));
    for out in [&first, &second] {
        assert_eq!(out.status.code(), uncached.status.code());
        assert_eq!(text(&out.stdout), text(&uncached.stdout));
    }

    // The entry is private, as `rein hook` keeps it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.cache), 0o700);
        assert_eq!(mode(&entry), 0o600);
    }
}

#[test]
fn an_edited_policy_is_compiled_again_never_read_from_the_old_entry() {
    let s = Setup::new();
    let before = s.run("check", &[]);
    assert_eq!(before.status.code(), Some(1), "{}", text(&before.stderr));
    let [old] = entries(&s.cache).try_into().unwrap();
    let old_identity = identity(&old);

    // The same length, one digit changed: `large_refund` no longer
    // matches a refund of 1500, the default decides.
    let yaml = std::fs::read_to_string(&s.policy).unwrap();
    let edited = yaml.replacen(
        "when: input.amount > 1000 && actor.role != \"admin\"",
        "when: input.amount > 1500 && actor.role != \"admin\"",
        1,
    );
    assert_ne!(edited, yaml, "the policy no longer has the rule this test edits");
    std::fs::write(&s.policy, &edited).unwrap();
    let after = s.run("check", &[]);
    let uncached = s.run("check", &["--no-cache"]);
    assert!(after.stderr.is_empty(), "{}", text(&after.stderr));
    assert_eq!(text(&after.stdout), text(&uncached.stdout));
    assert_eq!(after.status.code(), uncached.status.code());
    assert_ne!(text(&after.stdout), text(&before.stdout), "the edit changed nothing");
    // A new entry beside the old one, which is left as it was.
    assert_eq!(entries(&s.cache).len(), 2);
    assert_eq!(identity(&old), old_identity);

    // Back to the first text: the first entry answers again.
    std::fs::write(&s.policy, &yaml).unwrap();
    let again = s.run("check", &[]);
    assert_eq!(text(&again.stdout), text(&before.stdout));
    assert_eq!(identity(&old), old_identity);
}

#[test]
fn a_damaged_entry_is_reported_ignored_and_rewritten() {
    let s = Setup::new();
    let good = s.run("check", &[]);
    let [entry] = entries(&s.cache).try_into().unwrap();
    let length = std::fs::metadata(&entry).unwrap().len() as usize;
    // Every part of an entry: the magic, the key, the checksum, the payload.
    for (at, damage) in [
        (3, "does not start"),
        (20, "other policy texts"),
        (60, "checksum"),
        (length / 2, "checksum"),
    ] {
        let mut bytes = std::fs::read(&entry).unwrap();
        bytes[at] ^= 0x55;
        std::fs::write(&entry, bytes).unwrap();
        let out = s.run("check", &[]);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("rein: policy cache") && stderr.contains(damage),
            "byte {at}: {stderr}"
        );
        assert_eq!(text(&out.stdout), text(&good.stdout), "byte {at}");
        assert_eq!(out.status.code(), good.status.code());
        // Rewritten whole: the next run reads it quietly.
        let next = s.run("check", &[]);
        assert!(next.stderr.is_empty(), "byte {at}: {}", text(&next.stderr));
        assert_eq!(text(&next.stdout), text(&good.stdout));
    }

    // Cut short, or not an entry at all.
    for bytes in [&b"rein-policy-ir"[..], b"", b"{\"rules\": []}"] {
        std::fs::write(&entry, bytes).unwrap();
        let out = s.run("check", &[]);
        assert!(
            text(&out.stderr).contains("rein: policy cache"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), text(&good.stdout));
        assert!(s.run("check", &[]).stderr.is_empty());
    }
}

#[cfg(unix)]
#[test]
fn an_entry_others_may_write_is_refused_and_replaced_by_a_private_one() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let good = s.run("check", &[]);
    let [entry] = entries(&s.cache).try_into().unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = s.run("check", &[]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("others may write"), "{stderr}");
    assert_eq!(text(&out.stdout), text(&good.stdout));
    assert_eq!(std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777, 0o600);

    // A link in the entry's place is not followed.
    let elsewhere = s.home().join("elsewhere");
    std::fs::rename(&entry, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    let out = s.run("check", &[]);
    assert!(
        text(&out.stderr).contains("not a regular file"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), text(&good.stdout));
    assert!(!std::fs::symlink_metadata(&entry).unwrap().file_type().is_symlink());
}

#[test]
fn explain_and_test_read_the_entry_check_wrote() {
    let s = Setup::new();
    let explained = s.run("explain", &["--no-cache"]);
    assert_eq!(explained.status.code(), Some(1), "{}", text(&explained.stderr));
    s.run("check", &[]);
    let [entry] = entries(&s.cache).try_into().unwrap();
    let stored = identity(&entry);
    for json in [false, true] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        let uncached = s.run("explain", &[extra, &["--no-cache"]].concat());
        let cached = s.run("explain", extra);
        assert!(cached.stderr.is_empty(), "{}", text(&cached.stderr));
        assert_eq!(text(&cached.stdout), text(&uncached.stdout));
        assert_eq!(cached.status.code(), uncached.status.code());
    }
    assert_eq!(identity(&entry), stored);

    // `rein test` on the policy's tests: the policy a test file names is
    // the same text, so it hits the same entry.
    let tests = s.dir.path().join("policy.test.yaml");
    std::fs::copy(repo().join("examples/refund/policy.test.yaml"), &tests).unwrap();
    let uncached = rein(&["test", "--no-cache", tests.to_str().unwrap()], "", s.home());
    let cached = rein(&["test", tests.to_str().unwrap()], "", s.home());
    assert_eq!(
        cached.status.code(),
        Some(0),
        "{}{}",
        text(&cached.stdout),
        text(&cached.stderr)
    );
    assert_eq!(text(&cached.stdout), text(&uncached.stdout));
    assert!(cached.stderr.is_empty(), "{}", text(&cached.stderr));
    assert_eq!(entries(&s.cache), std::slice::from_ref(&entry));
    assert_eq!(identity(&entry), stored);
}

#[test]
fn the_cache_directory_can_be_named_and_governed_policies_are_not_cached() {
    let s = Setup::new();
    let named = s.home().join("named");
    let flag = s.run("check", &["--cache-dir", named.to_str().unwrap()]);
    assert!(flag.stderr.is_empty(), "{}", text(&flag.stderr));
    assert_eq!(entries(&named).len(), 1);
    assert!(entries(&s.cache).is_empty());

    let by_env = s.home().join("by-env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
        .args(["check", "-p", s.policy.to_str().unwrap()])
        .env("HOME", s.home())
        .env("REIN_CACHE_DIR", &by_env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(s.request.as_bytes()).unwrap();
    let env = child.wait_with_output().unwrap();
    assert_eq!(text(&env.stdout), text(&flag.stdout));
    assert_eq!(entries(&by_env).len(), 1);
    assert!(entries(&s.cache).is_empty());

    // The cache keys the policy texts only: a governance file would not be
    // part of the key, so such a policy is compiled every time.
    let governance = s.home().join("governance.yaml");
    std::fs::write(
        &governance,
        "version: 1\ngovernance:\n  rules:\n    - id: refunds_check_fraud\n      applies_to:\n        actions: [refund]\n      \
         select:\n        where:\n          when:\n            subject: {domain: snapshot, field: fraud_flag}\n      \
         must:\n        min_count: 1\n      error: refund policies must look at the fraud flag\n",
    )
    .unwrap();
    let governed = s.run("check", &["--governance", governance.to_str().unwrap()]);
    assert_eq!(governed.status.code(), flag.status.code(), "{}", text(&governed.stderr));
    assert!(entries(&s.cache).is_empty());
}
