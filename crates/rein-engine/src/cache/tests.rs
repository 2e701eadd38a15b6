//! The policy read from one action's section answers as the whole policy;
//! a damaged section is never used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::state::StateView;
use crate::{Effect, MemoryState, Request};
use proptest::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The policy `open` gives for `action`, which must come from the entry.
fn for_action<P: AsRef<Path>>(cache: &PolicyCache, paths: &[P], action: &str) -> Policy {
    match cache.open(paths).unwrap() {
        Opened::Entry(entry) => {
            let (policy, status) = entry.for_action(action).unwrap();
            assert_eq!(status, CacheStatus::Hit);
            policy
        }
        Opened::Compiled(_, status) => panic!("no entry: {status:?}"),
    }
}

/// Everything `rein check` and `rein explain` print of `request`, and what
/// else they ask of the policy.
fn answers(policy: &Policy, request: &Request) -> Vec<String> {
    let explanation = policy.explain(request);
    vec![
        policy.decide(request).to_json().to_string(),
        explanation.to_json().to_string(),
        explanation.to_string(),
        policy.version().to_string(),
        format!("{:?}", policy.version_label()),
        format!("{:?}", policy.action_state(&request.action, request.phase)),
        format!("{:?}", policy.max_window()),
        format!("{:?}", policy.unbound_required(|_| false)),
        format!("{:?}", policy.bound_actor_fields()),
        format!("{}", policy.warnings().len()),
    ]
}

/// Names near `name` (and far from it), which a policy may not have.
fn misspelled(name: &str) -> Vec<String> {
    let mut out = vec![format!("{name}x"), String::new(), "nothing_like_it".into()];
    if name.len() > 1 {
        out.push(name[1..].to_string());
        out.push(name[..name.len() - 1].to_string());
    }
    out
}

/// Decides `request` against the whole policy and the one read from its
/// action's section, with and without state; the answers must be the same.
fn compare(whole: &Policy, cache: &PolicyCache, paths: &[PathBuf], request: &Request, what: &str) {
    let part = for_action(cache, paths, &request.action);
    assert_eq!(answers(whole, request), answers(&part, request), "{what}");
    let mut after = request.clone();
    after.phase = crate::Phase::After;
    assert_eq!(answers(whole, &after), answers(&part, &after), "{what} (after)");
    for name in misspelled(&request.action) {
        let mut other = request.clone();
        other.action = name;
        if whole.has_action(&other.action) {
            continue;
        }
        let refused = for_action(cache, paths, &other.action);
        assert_eq!(
            answers(whole, &other),
            answers(&refused, &other),
            "{what} as `{}`",
            other.action
        );
    }
}

/// A decision with state, as `rein check --state` makes it: the decision's
/// JSON, and the state after its writes.
fn decide_in(policy: &Policy, state: &mut MemoryState, request: &Request, id: &str) -> String {
    let decision = match policy.prepare(request) {
        Err(refused) => *refused,
        Ok(prepared) => {
            let (decision, effects) = prepared.decide_with_state(&*state as &dyn StateView);
            let time = request.time.unwrap_or_else(jiff::Timestamp::now);
            state.apply(&effects.writes(id, decision.effect(), time));
            decision
        }
    };
    format!("{} {}", decision.to_json(), state.to_json().unwrap())
}

#[test]
fn each_action_section_answers_every_example_request_as_the_whole_policy() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("policy.test.yaml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut compared = 0;
    for test_file in files {
        let file = crate::testing::read_test_file(&test_file).unwrap();
        assert!(file.actra.is_none() && file.governance.is_none(), "{test_file:?}");
        let dir = tempfile::tempdir().unwrap();
        let cache = PolicyCache::new(dir.path());
        let (whole, status) = cache.load(&file.policy).unwrap();
        assert_eq!(status, CacheStatus::Stored, "{test_file:?}");
        for case in &file.cases {
            let what = format!("{}: {}", test_file.display(), case.name);
            match &case.sequence {
                None => {
                    compare(&whole, &cache, &file.policy, &case.request, &what);
                    compared += 1;
                }
                Some(steps) => {
                    let mut states = [MemoryState::with_key([7; 32]), MemoryState::with_key([7; 32])];
                    for (n, step) in steps.iter().enumerate() {
                        let mut request = step.request.clone();
                        request.time = Some(step.time);
                        compare(&whole, &cache, &file.policy, &request, &what);
                        for i in 0..step.repeat {
                            let id = format!("d{n}-{i}");
                            let part = for_action(&cache, &file.policy, &request.action);
                            let [a, b] = &mut states;
                            assert_eq!(
                                decide_in(&whole, a, &request, &id),
                                decide_in(&part, b, &request, &id),
                                "{what}, step {n}"
                            );
                            if let Some((outcome, _)) = &step.outcome {
                                let mut after = request.clone();
                                after.phase = crate::Phase::After;
                                match outcome {
                                    crate::testing::StepOutcome::Output(o) => after.output = Some(o.clone()),
                                    crate::testing::StepOutcome::Error(e) => after.error = Some(e.clone()),
                                }
                                assert_eq!(
                                    decide_in(&whole, a, &after, &id),
                                    decide_in(&part, b, &after, &id),
                                    "{what}, step {n} after"
                                );
                            }
                        }
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 100, "{compared}");
}

/// The byte ranges of an entry: header, each action's section, shared
/// part, whole policy.
fn layout(bytes: &[u8], key: &blake3::Hash) -> (Header, Shared) {
    let header = entry::read_header(bytes, key).unwrap();
    let blob = &bytes[header.shared.offset as usize..][..header.shared.len as usize];
    let shared = entry::decode(entry::check_blob(blob, "shared").unwrap(), "shared").unwrap();
    (header, shared)
}

fn within(span: Span, at: usize) -> bool {
    (span.offset as usize..(span.offset + span.len) as usize).contains(&at)
}

const SMALL: &str = r#"
default: allow
contracts:
  actions:
    refund:
      input: {amount: int}
    payout:
      input: {amount: int, to: string}
    notify:
      input: {text: string}
rules:
  - id: large
    action: refund
    when: input.amount > 100
    effect: block
    reason: too large
  - id: foreign
    action: payout
    when: input.to.startsWith("ext-")
    effect: require_approval
  - id: loud
    action: notify
    when: input.text.size() > 10
    effect: block
"#;

#[test]
fn damage_to_any_byte_a_decision_reads_is_found_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, SMALL).unwrap();
    let paths = [policy_file];
    let cache = PolicyCache::new(dir.path().join("cache"));
    let (whole, status) = cache.load(&paths).unwrap();
    assert_eq!(status, CacheStatus::Stored);
    let [entry_path] = std::fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let good = std::fs::read(&entry_path).unwrap();
    let key = cache_key(&whole.compiled().files).unwrap();
    let (header, shared) = layout(&good, &key);
    let payout = shared.names.iter().position(|n| n == "payout").unwrap();
    let section = shared.sections[payout];
    let request = Request::new("payout").input(serde_json::json!({"amount": 5, "to": "ext-1"}));
    let expected = answers(&whole, &request);
    let unknown = Request::new("payot");
    let expected_unknown = answers(&whole, &unknown);
    let mut found = 0;
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        std::fs::write(&entry_path, &bad).unwrap();
        // One action's request reads the header, the shared part and its
        // section.
        let reads = at < entry::HEADER_LEN as usize || within(header.shared, at) || within(section, at);
        let (policy, status) = match cache.open(&paths).unwrap() {
            Opened::Entry(e) => e.for_action("payout").unwrap(),
            Opened::Compiled(p, s) => (p, s),
        };
        assert_eq!(answers(&policy, &request), expected, "byte {at}");
        match status {
            CacheStatus::Failed(why) => {
                assert!(reads, "byte {at}: {why}");
                assert!(why.contains("unusable"), "{why}");
                found += 1;
            }
            CacheStatus::Hit => assert!(!reads, "damage at byte {at} went unseen"),
            other => panic!("byte {at}: {other:?}"),
        }
        // The whole policy reads the header and the whole section.
        std::fs::write(&entry_path, &bad).unwrap();
        let (policy, status) = cache.load(&paths).unwrap();
        let reads = at < entry::HEADER_LEN as usize || within(header.shared, at) || within(header.whole, at);
        assert_eq!(status != CacheStatus::Hit, reads, "byte {at}: {status:?}");
        assert_eq!(answers(&policy, &request), expected, "byte {at}");
        // An unknown action reads the header and the shared part.
        std::fs::write(&entry_path, &bad).unwrap();
        let (policy, status) = match cache.open(&paths).unwrap() {
            Opened::Entry(e) => e.for_action("payot").unwrap(),
            Opened::Compiled(p, s) => (p, s),
        };
        let reads = at < entry::HEADER_LEN as usize || within(header.shared, at);
        assert_eq!(status != CacheStatus::Hit, reads, "byte {at}: {status:?}");
        assert_eq!(answers(&policy, &unknown), expected_unknown, "byte {at}");
    }
    assert!(found > 100, "{found}");
    // The last damage, in the whole policy, which one action's request
    // does not read: found by the next whole read, and the entry rewritten.
    assert!(matches!(cache.load(&paths).unwrap().1, CacheStatus::Failed(_)));
    assert_eq!(cache.load(&paths).unwrap().1, CacheStatus::Hit);
    assert_eq!(
        for_action(&cache, &paths, "payout").decide(&request).to_json(),
        whole.decide(&request).to_json()
    );

    // Cut short anywhere: never used.
    for len in (0..good.len()).step_by(7) {
        std::fs::write(&entry_path, &good[..len]).unwrap();
        let (policy, status) = match cache.open(&paths).unwrap() {
            Opened::Entry(e) => e.for_action("payout").unwrap(),
            Opened::Compiled(p, s) => (p, s),
        };
        let end = |s: Span| (s.offset + s.len) as usize;
        let reads = len < end(header.shared).max(end(section));
        assert_eq!(status != CacheStatus::Hit, reads, "{len}: {status:?}");
        assert_eq!(answers(&policy, &request), expected);
        // The whole policy ends the entry: any cut is seen.
        std::fs::write(&entry_path, &good[..len]).unwrap();
        let (policy, status) = cache.load(&paths).unwrap();
        assert!(matches!(status, CacheStatus::Failed(_)), "{len}: {status:?}");
        assert_eq!(answers(&policy, &request), expected);
    }
}

#[test]
fn a_section_is_used_only_for_the_action_it_names() {
    // Each section holds its action's id and name: one found where
    // another action's is looked up (its checksum matching) is not used.
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, SMALL).unwrap();
    let paths = [policy_file];
    let cache = PolicyCache::new(dir.path().join("cache"));
    let (whole, _) = cache.load(&paths).unwrap();
    let key = cache_key(&whole.compiled().files).unwrap();
    let good = std::fs::read(cache.dir().join(format!("{}.{SUFFIX}", key.to_hex()))).unwrap();
    let section = |id: usize| -> entry::Section {
        let (_, shared) = layout(&good, &key);
        let span = shared.sections[id];
        let blob = &good[span.offset as usize..][..span.len as usize];
        entry::decode(entry::check_blob(blob, "s").unwrap(), "s").unwrap()
    };
    let (_, shared) = layout(&good, &key);
    assert_eq!(shared.names, ["refund", "payout", "notify"]);
    let err = entry::with_action(shared, section(0), "payout", 1).err().unwrap();
    assert!(err.contains("another action"), "{err}");
    let (_, shared) = layout(&good, &key);
    let err = entry::with_action(shared, section(0), "refund", 1).err().unwrap();
    assert!(err.contains("another action"), "{err}");
    let (_, shared) = layout(&good, &key);
    let p = entry::with_action(shared, section(1), "payout", 1).unwrap();
    assert_eq!(p.actions.len(), 1);
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].id, "foreign");
}

#[test]
fn a_request_is_never_moved_between_a_section_and_another_policy() {
    // `Prepared::under` moves a prepared request by its action id when the
    // contracts' fingerprints match: a policy of one section (its action
    // at id 0) or of names only must not match the whole policy, or a
    // `payout` request would be decided by `refund`'s rules.
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, SMALL).unwrap();
    let paths = [policy_file];
    let cache = PolicyCache::new(dir.path().join("cache"));
    let (whole, _) = cache.load(&paths).unwrap();
    let payout = Request::from_json_str(r#"{"action": "payout", "input": {"amount": 5, "to": "ext-1"}}"#).unwrap();
    let one = for_action(&cache, &paths, "payout");
    let none = for_action(&cache, &paths, "nothing");
    assert_eq!(one.decide(&payout).effect(), whole.decide(&payout).effect());
    let from_whole = whole.prepare(&payout).unwrap();
    let from_one = one.prepare(&payout).unwrap();
    assert!(from_one.under(&whole).is_none());
    assert!(from_whole.under(&one).is_none());
    assert!(from_whole.under(&none).is_none());
    // Two whole policies of the same contracts still share the check.
    let (again, _) = cache.load(&paths).unwrap();
    let moved = from_whole.under(&again).expect("same contracts");
    assert_eq!(moved.decide().effect(), Effect::RequireApproval);
}

/// A policy of `actions` actions (`a0`, `a1`, ...) and rules drawn from
/// `rules`: (action, kind, constant, effect, shadow, phase after).
fn generated(actions: usize, rules: &[(usize, u8, i64, u8, bool, bool)]) -> String {
    let mut y = String::from("default:\n  before: allow\n  after: block\ncontracts:\n  actions:\n");
    for a in 0..actions {
        y.push_str(&format!(
            "    a{a}:\n      input: {{n: int, s: string, tags: list<string>}}\n      output: {{ok: bool}}\n"
        ));
    }
    y.push_str(if rules.is_empty() { "rules: []\n" } else { "rules:\n" });
    for (i, &(action, kind, c, effect, shadow, after)) in rules.iter().enumerate() {
        let action = action % actions;
        let target = if kind % 5 == 4 {
            // Several actions: the rule's info sits in several sections.
            format!("[a{action}, a{}]", (action + 1) % actions)
        } else {
            format!("a{action}")
        };
        let when = match (kind % 5, after) {
            (_, true) => format!("output.ok == {}", c % 2 == 0),
            (0, _) => format!("input.n > {c}"),
            (1, _) => format!("input.s.startsWith(\"{}\")", c.rem_euclid(3)),
            (2, _) => format!("\"t{}\" in input.tags", c.rem_euclid(3)),
            (3, _) => format!("input.n / (input.n - {c}) > 0"),
            _ => format!("input.n < {c} || input.s == \"x\""),
        };
        let effect = ["allow", "block", "require_approval"][effect as usize % 3];
        y.push_str(&format!(
            "  - id: r{i}\n    action: {target}\n    when: '{when}'\n    effect: {effect}\n"
        ));
        if i % 3 == 0 {
            y.push_str(&format!("    reason: reason {i}\n"));
        }
        if shadow {
            y.push_str("    mode: shadow\n");
        }
        if after {
            y.push_str("    phase: after\n");
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Generated policies (up to 40 actions, past the count above which
    /// an unknown name gets no hint): every action's section answers
    /// every request as the whole policy, and unknown names are refused
    /// alike.
    #[test]
    fn sections_of_generated_policies_answer_as_the_whole(
        actions in 1usize..40,
        rules in proptest::collection::vec((0usize..40, 0u8..5, -3i64..5, 0u8..3, proptest::bool::weighted(0.2), proptest::bool::weighted(0.2)), 0..60),
        requests in proptest::collection::vec((0usize..40, -4i64..6, 0u8..4, proptest::bool::ANY), 1..8),
    ) {
        let text = generated(actions, &rules);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, &text).unwrap();
        let paths = vec![file];
        let cache = PolicyCache::new(dir.path().join("cache"));
        let (whole, status) = cache.load(&paths).unwrap();
        prop_assume!(status == CacheStatus::Stored);
        for (a, n, s, ok) in requests {
            let mut request = Request::new(format!("a{}", a % (actions + 1)))
                .input(serde_json::json!({"n": n, "s": s.to_string(), "tags": [format!("t{s}")]}));
            compare(&whole, &cache, &paths, &request, &text);
            request.phase = crate::Phase::After;
            request.output = Some(serde_json::json!({"ok": ok}));
            let part = for_action(&cache, &paths, &request.action);
            prop_assert_eq!(answers(&whole, &request), answers(&part, &request));
        }
    }
}
