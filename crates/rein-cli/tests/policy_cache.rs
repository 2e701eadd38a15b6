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
    // Every part of an entry a check reads: the magic, the key, the
    // header, the sections (the refund example has one action).
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

/// Runs `rein` with `args` and `stdin` in a fresh environment (no cache
/// directory from the environment, no colour).
fn rein_in(args: &[String], stdin: &str, home: &Path) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rein(&args, stdin, home)
}

/// Every example's test requests (the first step of a sequence), decided
/// and explained by `rein check` and `rein explain` from the cache entry,
/// which reads the shared part and the request's action's section only:
/// the same bytes on stdout and the same exit code as the whole policy
/// compiled without the cache (`--batch --no-cache` decides them all in
/// one process; `rein explain --no-cache` per request).
#[test]
fn one_actions_section_answers_every_example_request_as_the_whole_policy() {
    let mut test_files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("policy.test.yaml"))
        .filter(|p| p.is_file())
        .collect();
    test_files.sort();
    assert!(test_files.len() >= 10);
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let mut compared = 0;
    for test_file in test_files {
        let file = rein_engine::testing::read_test_file(&test_file).unwrap();
        let mut policy: Vec<String> = Vec::new();
        for p in &file.policy {
            policy.push("-p".into());
            policy.push(p.to_str().unwrap().into());
        }
        // Cases by the actor fields their credential binds (`--bound`
        // holds for a whole batch).
        let mut groups: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
        for case in &file.cases {
            let mut request = match &case.sequence {
                Some(steps) => {
                    let mut r = steps[0].request.clone();
                    r.time = Some(steps[0].time);
                    r
                }
                None => case.request.clone(),
            };
            // A fixed time: the runs must decide the same request.
            request.time.get_or_insert("2026-03-02T10:00:00Z".parse().unwrap());
            let bound = case.bound.clone().unwrap_or_default().join(",");
            groups
                .entry(bound)
                .or_default()
                .push((case.name.clone(), serde_json::to_string(&request).unwrap()));
        }
        for (bound, cases) in groups {
            let mut common = policy.clone();
            if !bound.is_empty() {
                common.extend(["--bound".to_string(), bound.clone()]);
            }
            let lines: String = cases.iter().map(|(_, r)| format!("{r}\n")).collect();
            let batch = rein_in(
                &[
                    &["check".to_string(), "--batch".into(), "--no-cache".into()][..],
                    &common,
                ]
                .concat(),
                &lines,
                home.path(),
            );
            assert!(batch.status.success(), "{}", text(&batch.stderr));
            let whole: Vec<serde_json::Value> = text(&batch.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(whole.len(), cases.len());
            for (n, ((name, request), expected)) in cases.iter().zip(&whole).enumerate() {
                let what = format!("{}: {name}", test_file.display());
                let cached = [
                    &[
                        "check".to_string(),
                        "--cache-dir".into(),
                        cache.to_str().unwrap().into(),
                    ][..],
                    &common,
                ]
                .concat();
                let out = rein_in(&cached, request, home.path());
                let stderr = text(&out.stderr);
                assert!(!stderr.contains("policy cache"), "{what}: {stderr}");
                assert_eq!(
                    text(&out.stdout),
                    format!("{}\n", serde_json::to_string_pretty(expected).unwrap()),
                    "{what}"
                );
                let code = match expected["effect"].as_str().unwrap() {
                    "allow" => 0,
                    "block" => 1,
                    _ => 3,
                };
                assert_eq!(out.status.code(), Some(code), "{what}");
                // Explained too (every request of the small examples, a
                // sample of the large one).
                if cases.len() < 40 || n % 20 == 0 {
                    let json = n % 2 == 0;
                    let mut explain = vec!["explain".to_string()];
                    if json {
                        explain.push("--json".into());
                    }
                    explain.extend(common.iter().cloned());
                    let uncached = rein_in(
                        &[&explain[..], &["--no-cache".to_string()]].concat(),
                        request,
                        home.path(),
                    );
                    let cached = rein_in(
                        &[
                            &explain[..],
                            &["--cache-dir".to_string(), cache.to_str().unwrap().into()],
                        ]
                        .concat(),
                        request,
                        home.path(),
                    );
                    assert_eq!(text(&cached.stdout), text(&uncached.stdout), "{what}");
                    assert_eq!(text(&cached.stderr), text(&uncached.stderr), "{what}");
                    assert_eq!(cached.status.code(), uncached.status.code(), "{what}");
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 300, "{compared}");
}

/// A policy of several actions, generated: requests of each action, of
/// unknown names (with and without a "did you mean" hint), in both
/// phases, as `rein check` and `rein explain` answer them from the cache
/// and without it; `--batch` (the whole entry) too.
#[test]
fn generated_policies_answer_alike_from_one_section_and_unknown_names_get_the_same_hint() {
    for actions in [3usize, 40] {
        let mut yaml = String::from("default: allow\ncontracts:\n  actions:\n");
        for a in 0..actions {
            yaml.push_str(&format!(
                "    pay_{a}:\n      input: {{amount: int}}\n      output: {{ok: bool}}\n"
            ));
        }
        yaml.push_str("rules:\n");
        for a in 0..actions {
            yaml.push_str(&format!(
                "  - id: big_{a}\n    action: pay_{a}\n    when: input.amount > {a}\n    effect: block\n    reason: more than {a}\n\
                 \x20 - id: both_{a}\n    action: [pay_{a}, pay_{}]\n    when: input.amount == 7\n    effect: require_approval\n\
                 \x20 - id: out_{a}\n    action: pay_{a}\n    phase: after\n    when: '!output.ok'\n    effect: block\n",
                (a + 1) % actions
            ));
        }
        let home = tempfile::tempdir().unwrap();
        let policy = home.path().join("policy.yaml");
        std::fs::write(&policy, &yaml).unwrap();
        let cache = home.path().join("cache");
        let p = policy.to_str().unwrap();
        let c = cache.to_str().unwrap();
        let mut requests = Vec::new();
        for a in [0, 1, actions - 1] {
            for amount in [0, 2, 7] {
                requests.push(format!(r#"{{"action": "pay_{a}", "input": {{"amount": {amount}}}}}"#));
            }
            requests.push(format!(
                r#"{{"action": "pay_{a}", "phase": "after", "input": {{"amount": 1}}, "output": {{"ok": false}}}}"#
            ));
        }
        requests.push(r#"{"action": "pay_", "input": {"amount": 1}}"#.into());
        requests.push(r#"{"action": "refund", "input": {"amount": 1}}"#.into());
        let mut hints = 0;
        for request in &requests {
            for command in ["check", "explain"] {
                let uncached = rein(&[command, "-p", p, "--no-cache"], request, home.path());
                let cached = rein(&[command, "-p", p, "--cache-dir", c], request, home.path());
                assert_eq!(
                    text(&cached.stdout),
                    text(&uncached.stdout),
                    "{actions} {command} {request}"
                );
                assert_eq!(cached.status.code(), uncached.status.code());
                assert!(text(&cached.stderr).is_empty(), "{}", text(&cached.stderr));
                hints += usize::from(text(&cached.stdout).contains("did you mean"));
            }
        }
        // Up to 32 actions an unknown name gets the closest one.
        assert_eq!(hints > 0, actions <= 32, "{actions}");
        let lines: String = requests.iter().map(|r| format!("{r}\n")).collect();
        let uncached = rein(&["check", "--batch", "-p", p, "--no-cache"], &lines, home.path());
        let cached = rein(&["check", "--batch", "-p", p, "--cache-dir", c], &lines, home.path());
        assert_eq!(text(&cached.stdout), text(&uncached.stdout));
        assert!(text(&cached.stderr).is_empty(), "{}", text(&cached.stderr));

        // Damage anywhere in the entry: the answer stays the same; damage
        // a request reads is reported and the entry rewritten.
        let [entry] = entries(&cache).try_into().unwrap();
        let good = std::fs::read(&entry).unwrap();
        let request = &requests[1];
        let expected = rein(&["check", "-p", p, "--no-cache"], request, home.path());
        let mut reported = 0;
        for at in (0..good.len()).step_by(good.len() / 60 + 1) {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            std::fs::write(&entry, &bad).unwrap();
            let out = rein(&["check", "-p", p, "--cache-dir", c], request, home.path());
            assert_eq!(text(&out.stdout), text(&expected.stdout), "byte {at}");
            assert_eq!(out.status.code(), expected.status.code(), "byte {at}");
            if text(&out.stderr).contains("rein: policy cache") {
                reported += 1;
                let next = rein(&["check", "-p", p, "--cache-dir", c], request, home.path());
                assert!(next.stderr.is_empty(), "byte {at}: {}", text(&next.stderr));
            } else {
                assert!(out.stderr.is_empty(), "byte {at}: {}", text(&out.stderr));
            }
            std::fs::write(&entry, &good).unwrap();
        }
        assert!(reported > 0);
    }
}
