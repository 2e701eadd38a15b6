//! The store file from the command line: `rein approvals grant|deny` on it
//! (the approver is the holder of a token from the tokens file, checked as
//! the server checks it), `rein audit verify` on a write-protected copy,
//! and `rein hook` refusing an audit key that is not the store's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_store::{ApprovalRecord, ApprovalState, SqliteStore, Store};
use std::path::Path;
use std::process::{Command, Stdio};

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rein"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("REIN_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const TOKENS: &str = "tokens:
  - {name: agent-1, role: agent, token: agent-token-0123456789}
  - {name: sam, role: approver, token: sam-token-0123456789, approves: [support]}
  - {name: fin, role: approver, token: fin-token-0123456789, approves: [finance]}
  - {name: ops, role: admin, token: ops-token-0123456789}
";

fn approval(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        request_hash: "a".repeat(64),
        decision_id: format!("dec-{id}"),
        rules: vec!["big".into()],
        role: "finance".into(),
        roles: vec!["finance".into()],
        action: "pay".into(),
        requested_by: Some("bot".into()),
        requested_via: Some("agent-1".into()),
        requested_chain: Vec::new(),
        summary: serde_json::json!({}),
        created_at: jiff::Timestamp::now().to_string(),
        expires_at: (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string(),
        state: ApprovalState::Pending,
        decided_by: None,
        decided_at: None,
        comment: None,
        hold_seconds: Some(600),
        sealed: None,
    }
}

fn store_with(dir: &Path, ids: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = SqliteStore::open(dir.join("rein.db")).unwrap();
    for id in ids {
        rt.block_on(store.create_approval(approval(id))).unwrap();
    }
    rt.block_on(store.close()).unwrap();
}

fn state(dir: &Path, id: &str) -> (ApprovalState, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = SqliteStore::open_read_only(dir.join("rein.db")).unwrap();
    let a = rt.block_on(store.get_approval(id)).unwrap().unwrap();
    (a.state, a.decided_by)
}

/// A name typed on the command line is not an approver: a token from the
/// tokens file is, with its role and approval roles, as on the server.
#[test]
fn deciding_on_the_store_file_needs_an_approvers_token() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), &["ap1", "ap2"]);
    std::fs::write(dir.path().join("rein-tokens.yaml"), TOKENS).unwrap();
    let db = dir.path().join("rein.db");
    let db = db.to_str().unwrap();

    // No tokens file beside the store (a store the hook made): the error
    // says how to get one.
    let bare = tempfile::tempdir().unwrap();
    store_with(bare.path(), &["ap0"]);
    let bare_db = bare.path().join("rein.db");
    let ran = run(
        &[
            "approvals",
            "grant",
            "ap0",
            "--db",
            bare_db.to_str().unwrap(),
            "--token",
            "x",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("does not exist"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("`rein serve --db {}`", bare_db.display())),
        "{}",
        ran.stderr
    );
    assert_eq!(state(bare.path(), "ap0"), (ApprovalState::Pending, None));

    // No token: refused, whatever name is typed.
    let ran = run(&["approvals", "grant", "ap1", "--db", db], &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("needs an approver's token"), "{}", ran.stderr);
    let ran = run(&["approvals", "grant", "ap1", "--db", db, "--as", "alice"], &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    // An unknown token, an agent's token: refused.
    for (token, says) in [
        ("made-up-token-0123456789", "not in the tokens file"),
        ("agent-token-0123456789", "needs `approver` or `admin`"),
    ] {
        let ran = run(&["approvals", "grant", "ap1", "--db", db, "--token", token], &[]);
        assert_eq!(ran.code, Some(2), "{}", ran.stderr);
        assert!(ran.stderr.contains(says), "{}", ran.stderr);
    }
    // An approver of another approval role: refused (exit 1), recorded.
    let ran = run(
        &[
            "approvals",
            "grant",
            "ap1",
            "--db",
            db,
            "--token",
            "sam-token-0123456789",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("may not decide approvals for role `finance`"),
        "{}",
        ran.stderr
    );
    assert_eq!(state(dir.path(), "ap1"), (ApprovalState::Pending, None));
    // A tokens file of one's own is not taken: only the one beside the
    // store counts.
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "tokens:\n  - {name: mallory, role: admin, token: mallory-token-0123456789}\n",
    )
    .unwrap();
    let mallory = [
        "approvals",
        "grant",
        "ap1",
        "--db",
        db,
        "--token",
        "mallory-token-0123456789",
    ];
    let ran = run(&mallory, &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("not in the tokens file"), "{}", ran.stderr);
    let ran = run(&[&mallory[..], &["--tokens", other.to_str().unwrap()]].concat(), &[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(state(dir.path(), "ap1"), (ApprovalState::Pending, None));
    // The approver of the right role, through REIN_TOKEN; an admin.
    let ran = run(
        &["approvals", "grant", "ap1", "--db", db],
        &[("REIN_TOKEN", "fin-token-0123456789")],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("ap1 granted by fin"), "{}", ran.stdout);
    assert_eq!(state(dir.path(), "ap1"), (ApprovalState::Granted, Some("fin".into())));
    let ran = run(
        &[
            "approvals",
            "deny",
            "ap2",
            "--db",
            db,
            "--token",
            "ops-token-0123456789",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(state(dir.path(), "ap2"), (ApprovalState::Denied, Some("ops".into())));
    // The list says who asked (the actor, through which client) and who
    // decided, not a bare `by`.
    let ran = run(&["approvals", "list", "--db", db, "--state", "all"], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let line = |id: &str| ran.stdout.lines().find(|l| l.starts_with(id)).unwrap().to_string();
    assert!(line("ap1").contains("asked by bot via agent-1"), "{}", ran.stdout);
    assert!(line("ap1").ends_with("decided by fin"), "{}", ran.stdout);
    assert!(line("ap2").ends_with("decided by ops"), "{}", ran.stdout);

    // Every attempt that reached the store is in the audit log.
    let export = run(&["audit", "export", "--db", db], &[]);
    let reasons: Vec<String> = export
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reasons"][0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("`sam` could not grant"), "{reasons:?}");
    assert!(reasons[1].contains("granted by `fin`"), "{reasons:?}");
    assert!(reasons[2].contains("denied by `ops`"), "{reasons:?}");
}

/// `rein audit verify` reads a write-protected copy of a store whose
/// newest records are still in its WAL, in a folder the auditor cannot
/// write (so no `-shm` can be made beside it). Run as an unprivileged user
/// when the tests run as root, since root writes anywhere; the test checks
/// that the folder really is not writable for the user that runs verify.
#[cfg(unix)]
#[test]
fn verify_reads_a_write_protected_copy_of_a_wal_store() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let live = work.path().join("live");
    std::fs::create_dir(&live).unwrap();
    {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // A short-lived writer leaves its WAL behind, as `rein hook` does.
        let store = SqliteStore::open_with(live.join("rein.db"), rein_store::SqliteOptions::short_lived()).unwrap();
        for i in 0..5 {
            let entry = rein_store::AuditEntry {
                decision_id: format!("d{i}"),
                time: "2026-01-01T00:00:00.000000Z".into(),
                phase: "before".into(),
                action: "pay".into(),
                input: serde_json::json!({"i": i}),
                actor: serde_json::json!({"id": "bot"}),
                snapshot: serde_json::json!({}),
                output: None,
                error: None,
                session: None,
                effect: "allow".into(),
                rules: vec![],
                reasons: vec![],
                policy_version: "v".into(),
                latency_us: 1,
                approval: None,
                client: None,
                policy_version_label: None,
                actor_source: None,
                shadow: None,
                activation: None,
                trace: None,
            };
            rt.block_on(store.append(entry)).unwrap();
        }
        rt.block_on(store.close()).unwrap();
    }
    let wal = live.join("rein.db-wal");
    assert!(
        wal.metadata().unwrap().len() > 0,
        "the records must still be in the WAL"
    );
    // The same records checkpointed into the file, with no WAL left.
    let merged = work.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    for name in ["rein.db", "rein.db-wal"] {
        std::fs::copy(live.join(name), merged.join(name)).unwrap();
    }
    drop(SqliteStore::open(merged.join("rein.db")).unwrap());
    assert!(!merged.join("rein.db-wal").exists());

    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let as_auditor = |program: &str, args: &[&str]| -> std::process::Output {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
        cmd.output().unwrap()
    };
    for (case, from, names) in [
        ("with its WAL", &live, &["rein.db", "rein.db-wal"][..]),
        ("checkpointed", &merged, &["rein.db"][..]),
    ] {
        let copy = work.path().join(format!("copy-{}", names.len()));
        std::fs::create_dir(&copy).unwrap();
        for name in names {
            std::fs::copy(from.join(name), copy.join(name)).unwrap();
            std::fs::set_permissions(copy.join(name), std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o555)).unwrap();
        // The auditor really cannot write there (root would, and fake the
        // test).
        let probe = copy.join("probe");
        let touched = as_auditor("touch", &[probe.to_str().unwrap()]);
        assert!(
            !touched.status.success() && !probe.exists(),
            "{case}: the folder is writable for the auditor"
        );
        let out = as_auditor(
            env!("CARGO_BIN_EXE_rein"),
            &["audit", "verify", "--db", copy.join("rein.db").to_str().unwrap()],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{case}: stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("5 records"), "{case}: {stdout}");
        // Nothing was written beside the copy.
        let found = std::fs::read_dir(&copy).unwrap().count();
        assert_eq!(found, names.len(), "{case}");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `rein hook` with an audit key other than the one its store was first
/// used with denies, saying so, and records nothing under the wrong key.
#[test]
fn the_hook_refuses_another_audit_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hooks.db");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/agents/coding-agent.yaml");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/claude-code/policy.yaml");
    let hook = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rein"))
            .args([
                "hook",
                "claude-code",
                "--no-cache",
                "--db",
                db.to_str().unwrap(),
                "--policy",
            ])
            .arg(&policy)
            .arg("--policy")
            .arg(&example)
            .env("HOME", dir.path())
            .env_remove("REIN_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let event = serde_json::json!({"session_id": "s", "cwd": dir.path(), "hook_event_name": "PreToolUse",
            "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_use_id": "toolu_1"});
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), event.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let o = &v["hookSpecificOutput"];
        (
            o["permissionDecision"].as_str().unwrap_or_default().to_string(),
            o["permissionDecisionReason"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (first, why) = hook();
    assert_eq!(first, "allow", "{why}");
    let records = |db: &Path| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store = SqliteStore::open_read_only(db).unwrap();
        rt.block_on(store.audit_len()).unwrap()
    };
    let before = records(&db);
    std::fs::write(dir.path().join("rein-audit.key"), [7u8; 32]).unwrap();
    let (second, why) = hook();
    assert_eq!(second, "deny", "{why}");
    assert!(
        why.contains("audit key is not the one this store was first used with"),
        "{why}"
    );
    assert_eq!(records(&db), before);
}

/// The tokens file is the one beside the real store: a link to the store
/// in a folder of one's own, beside a tokens file of one's own, does not
/// make its tokens approvers of the real store (a symbolic link to the
/// file, or to a folder on the way, or a hard link).
#[cfg(unix)]
#[test]
fn a_link_to_the_store_does_not_bring_its_own_tokens_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    store_with(&real, &["ap1"]);
    std::fs::write(real.join("rein-tokens.yaml"), TOKENS).unwrap();
    let evil = dir.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::write(
        evil.join("rein-tokens.yaml"),
        "tokens:\n  - {name: mallory, role: admin, token: mallory-token-0123456789}\n",
    )
    .unwrap();
    let grant = |db: &Path| {
        run(
            &[
                "approvals",
                "grant",
                "ap1",
                "--db",
                db.to_str().unwrap(),
                "--token",
                "mallory-token-0123456789",
            ],
            &[],
        )
    };

    std::os::unix::fs::symlink(real.join("rein.db"), evil.join("rein.db")).unwrap();
    let ran = grant(&evil.join("rein.db"));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("not in the tokens file"), "{}", ran.stderr);
    assert_eq!(state(&real, "ap1"), (ApprovalState::Pending, None));

    // A link to the folder: its files are the real ones, tokens included.
    std::os::unix::fs::symlink(&real, evil.join("dir")).unwrap();
    let ran = grant(&evil.join("dir").join("rein.db"));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(state(&real, "ap1"), (ApprovalState::Pending, None));

    let hard = dir.path().join("hard");
    std::fs::create_dir(&hard).unwrap();
    std::fs::copy(evil.join("rein-tokens.yaml"), hard.join("rein-tokens.yaml")).unwrap();
    std::fs::hard_link(real.join("rein.db"), hard.join("rein.db")).unwrap();
    let ran = grant(&hard.join("rein.db"));
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("hard links"), "{}", ran.stderr);
    assert_eq!(state(&real, "ap1"), (ApprovalState::Pending, None));

    // The real store's own approver still decides, through a link too.
    std::fs::remove_file(hard.join("rein.db")).unwrap();
    let ran = run(
        &[
            "approvals",
            "grant",
            "ap1",
            "--db",
            evil.join("dir").join("rein.db").to_str().unwrap(),
            "--token",
            "fin-token-0123456789",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(state(&real, "ap1"), (ApprovalState::Granted, Some("fin".into())));
}

/// An actor id is the agent's text: `approvals list` prints it escaped, so
/// a newline cannot forge a row and an escape sequence cannot drive the
/// approver's terminal.
#[test]
fn approvals_list_escapes_what_the_agent_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = SqliteStore::open(dir.path().join("rein.db")).unwrap();
    let mut forged = approval("ap9");
    forged.requested_by = Some("bot\nap0  granted  pay\u{1b}[2J".into());
    rt.block_on(store.create_approval(forged)).unwrap();
    rt.block_on(store.close()).unwrap();
    let db = dir.path().join("rein.db");
    let ran = run(&["approvals", "list", "--db", db.to_str().unwrap()], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.stdout);
    assert!(!ran.stdout.contains('\u{1b}'), "{}", ran.stdout);
    assert!(ran.stdout.starts_with("ap9"), "{}", ran.stdout);
}
