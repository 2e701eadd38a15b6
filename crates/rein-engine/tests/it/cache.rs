//! The compiled-policy cache: hits, misses, and entries that must not be
//! trusted.

use rein_engine::{CacheStatus, Effect, PolicyCache, Request};
use serde_json::json;
use std::path::{Path, PathBuf};

const POLICY: &str = r#"
version: 1
default: allow
contracts:
  actions:
    file.write:
      input:
        path: string
        ticket: {type: string, pattern: "^[A-Z]+-[0-9]+$"}
rules:
  - id: no_env
    action: file.write
    when: input.path.glob("**/.env")
    effect: block
  - id: no_tmp
    action: file.write
    when: input.path.matches("^/tmp/")
    effect: require_approval
"#;

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn write(path: &str, ticket: &str) -> Request {
    Request::new("file.write").input(json!({"path": path, "ticket": ticket}))
}

fn entries(cache: &PolicyCache) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "policy-ir"))
        .collect();
    found.sort();
    found
}

#[test]
fn the_second_load_is_read_back_and_decides_as_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let cache = PolicyCache::new(dir.path().join("cache"));
    let (compiled, first) = cache.load(&[&policy]).unwrap();
    assert_eq!(first, CacheStatus::Stored);
    let (cached, second) = cache.load(&[&policy]).unwrap();
    assert_eq!(second, CacheStatus::Hit);
    assert_eq!(cached.version(), compiled.version());
    // The glob, the regex and the contract pattern are compiled on first use
    // in the cached policy.
    for (request, effect) in [
        (write("/p/.env", "AB-1"), Effect::Block),
        (write("/tmp/x", "AB-1"), Effect::RequireApproval),
        (write("/p/src/main.rs", "AB-1"), Effect::Allow),
        (write("/p/src/main.rs", "lowercase-1"), Effect::Block),
    ] {
        let a = compiled.decide(&request);
        let b = cached.decide(&request);
        assert_eq!(a.effect(), effect, "{request:?}");
        assert_eq!(b.to_json(), a.to_json(), "{request:?}");
    }
    // Explanations still quote the source the cached policy was looked up by.
    let explained = cached.explain(&write("/p/.env", "AB-1"));
    assert!(format!("{explained:?}").contains("glob"), "{explained:?}");
}

#[test]
fn a_changed_policy_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let cache = PolicyCache::new(dir.path().join("cache"));
    assert_eq!(cache.load(&[&policy]).unwrap().1, CacheStatus::Stored);
    write_policy(dir.path(), &POLICY.replace("effect: require_approval", "effect: block"));
    let (p, status) = cache.load(&[&policy]).unwrap();
    assert_eq!(status, CacheStatus::Stored);
    assert_eq!(p.decide(&write("/tmp/x", "AB-1")).effect(), Effect::Block);
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn a_damaged_entry_is_refused_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let cache = PolicyCache::new(dir.path().join("cache"));
    cache.load(&[&policy]).unwrap();
    let [entry] = entries(&cache).try_into().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&entry, &bytes).unwrap();
    let (p, status) = cache.load(&[&policy]).unwrap();
    match status {
        CacheStatus::Failed(why) => assert!(why.contains("checksum"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.decide(&write("/p/.env", "AB-1")).effect(), Effect::Block);
    // The compiled policy replaced it.
    assert_eq!(cache.load(&[&policy]).unwrap().1, CacheStatus::Hit);

    // Entries of the previous formats (before actions carried `tool:`
    // facts; before the actor carried the reserved `chain` and the bound
    // fields; before the entry was cut in sections), whole but for their
    // magic: refused, never decoded.
    let good = std::fs::read(&entry).unwrap();
    for magic in [b"rein-policy-ir1\n", b"rein-policy-ir2\n", b"rein-policy-ir4\n"] {
        let mut old = magic.to_vec();
        old.extend_from_slice(&good[16..]);
        std::fs::write(&entry, &old).unwrap();
        match cache.load(&[&policy]).unwrap().1 {
            CacheStatus::Failed(why) => assert!(why.contains("does not start"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    // A truncated entry, and one holding something else.
    std::fs::write(&entry, b"rein-policy-ir5\nshort").unwrap();
    match cache.load(&[&policy]).unwrap().1 {
        CacheStatus::Failed(why) => assert!(why.contains("truncated"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&entry, b"{}").unwrap();
    match cache.load(&[&policy]).unwrap().1 {
        CacheStatus::Failed(why) => assert!(why.contains("does not start"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_entry_with_a_valid_checksum_but_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let cache = PolicyCache::new(dir.path().join("cache"));
    cache.load(&[&policy]).unwrap();
    let [permissive] = entries(&cache).try_into().unwrap();
    // An entry for another policy renamed to this policy's key.
    write_policy(dir.path(), &POLICY.replace("effect: block", "effect: allow"));
    cache.load(&[&policy]).unwrap();
    let strict = entries(&cache).into_iter().find(|e| *e != permissive).unwrap();
    write_policy(dir.path(), POLICY);
    std::fs::rename(&strict, &permissive).unwrap();
    let (p, status) = cache.load(&[&policy]).unwrap();
    match status {
        CacheStatus::Failed(why) => assert!(why.contains("other policy texts"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.decide(&write("/p/.env", "AB-1")).effect(), Effect::Block);
}

#[cfg(unix)]
#[test]
fn an_entry_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), POLICY);
    let cache = PolicyCache::new(dir.path().join("cache"));
    cache.load(&[&policy]).unwrap();
    let [entry] = entries(&cache).try_into().unwrap();
    assert_eq!(std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    match cache.load(&[&policy]).unwrap().1 {
        CacheStatus::Failed(why) => assert!(why.contains("others may write"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn policies_with_errors_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = PolicyCache::new(dir.path().join("cache"));
    let broken = write_policy(dir.path(), "version: 1\nrules: [");
    let e = cache.load(&[&broken]).unwrap_err();
    assert!(!e.diagnostics().is_empty());
    let missing = dir.path().join("missing.yaml");
    let e = cache.load(&[&missing]).unwrap_err();
    assert!(format!("{:?}", e.diagnostics()).contains("missing.yaml"), "{e:?}");
    assert!(!cache.dir().exists());
}

#[test]
fn the_cache_keeps_a_bounded_number_of_entries() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let cache = PolicyCache::new(dir.path().join("cache"));
    for i in 0..40 {
        write_policy(dir.path(), &POLICY.replace("version: 1", &format!("version: {i}")));
        assert_eq!(cache.load(&[&policy]).unwrap().1, CacheStatus::Stored);
    }
    assert_eq!(entries(&cache).len(), 32);
}
