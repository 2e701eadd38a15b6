//! The layout of a cache entry, read in part.
//!
//! A process that decides one request needs the policy's shared parts
//! (contracts of the actor and snapshot, defaults, version, the action
//! names) and the one action the request names, not the rest. An entry is
//! therefore cut in sections, each checked by its own BLAKE3 checksum
//! before it is decoded:
//!
//! ```text
//! MAGIC (16) | key (32) | header: shared offset, length, whole offset,
//! length (4 x u64 LE) | BLAKE3 of the header (32)
//! section of action 0 | section of action 1 | ... | shared | whole
//! ```
//!
//! where each section is `BLAKE3(payload) (32) | payload` (postcard). The
//! shared section is the compiled policy without its actions and rules,
//! with the action names (in id order) and where each action's section
//! lies. An action's section holds its id, its IR and the rules it refers
//! to (its own, and those its state needs name), renumbered in their policy
//! order, so a policy made of the shared part and one section decides that
//! action's requests exactly as the whole policy does. The whole policy
//! follows for the callers that ask many questions (`rein test`, `rein
//! hook`).

use crate::ast::ExtraFields;
use crate::ir::{ActionIr, CompiledPolicy, CompiledRule, RuleInfo, StateNeeds};
use crate::types::ObjectType;
use crate::value::Value;
use std::sync::Arc;

/// The entry format, bumped whenever the IR or the layout changes shape
/// (ir5: the entry is cut in sections).
pub(super) const MAGIC: &[u8; 16] = b"rein-policy-ir5\n";
/// Bytes before the first section: magic, key, the four offsets and
/// lengths, the header's checksum.
pub(super) const HEADER_LEN: u64 = 16 + 32 + 32 + 32;
const SUM_LEN: u64 = 32;

/// Where a section lies in the entry: its checksum and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Span {
    pub offset: u64,
    pub len: u64,
}

/// The header after the key.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    pub shared: Span,
    pub whole: Span,
}

#[derive(serde::Serialize)]
struct SharedOut<'a> {
    policy: &'a CompiledPolicy,
    names: &'a [String],
    sections: &'a [Span],
}

/// The shared section: the policy without actions and rules, the action
/// names in id order, and where each action's section lies.
#[derive(serde::Deserialize)]
pub(super) struct Shared {
    pub policy: CompiledPolicy,
    pub names: Vec<String>,
    pub sections: Vec<Span>,
}

#[derive(serde::Serialize)]
struct SectionOut<'a> {
    id: u32,
    action: &'a ActionIr,
    rules: &'a [&'a RuleInfo],
}

/// One action's section: its IR with rule numbers local to `rules`.
#[derive(serde::Deserialize)]
pub(super) struct Section {
    pub id: u32,
    pub action: ActionIr,
    pub rules: Vec<RuleInfo>,
}

/// The entry for `policy` under `key`, whole.
pub(super) fn encode(key: &blake3::Hash, policy: &CompiledPolicy) -> Result<Vec<u8>, String> {
    let whole = postcard::to_stdvec(policy).map_err(|e| e.to_string())?;
    // An owned copy to take apart (the IR has no `Clone`): what the
    // sections hold is exactly what the whole entry decodes to.
    let mut copy: CompiledPolicy = postcard::from_bytes(&whole).map_err(|e| e.to_string())?;
    // Every field named, so that a field added to the IR must be placed
    // here: in the shared part (as is), or split by action.
    let CompiledPolicy {
        actions,
        action_index,
        actor: _,
        bound_actor: _,
        snapshot: _,
        rules,
        default: _,
        default_after: _,
        combining: _,
        version_hash: _,
        version_label: _,
        max_window: _,
        uses_state: _,
        contracts_fingerprint: _,
        files: _,
        derived: _,
    } = &mut copy;
    let actions = std::mem::take(actions);
    let rules = std::mem::take(rules);
    let index = std::mem::take(action_index);
    if index.len() != actions.len()
        || actions
            .iter()
            .enumerate()
            .any(|(i, a)| index.get(a.name()).is_none_or(|&at| at as usize != i))
    {
        return Err("the action index does not match the actions".into());
    }

    let mut out = Vec::with_capacity(whole.len() * 2 + HEADER_LEN as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key.as_bytes());
    out.resize(HEADER_LEN as usize, 0);
    let mut names = Vec::with_capacity(actions.len());
    let mut sections = Vec::with_capacity(actions.len());
    for (id, action) in actions.into_iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| "too many actions")?;
        names.push(action.name().to_string());
        let payload = section(id, action, &rules)?;
        sections.push(push_blob(&mut out, &payload));
    }
    let shared = postcard::to_stdvec(&SharedOut {
        policy: &copy,
        names: &names,
        sections: &sections,
    })
    .map_err(|e| e.to_string())?;
    let header = Header {
        shared: push_blob(&mut out, &shared),
        whole: push_blob(&mut out, &whole),
    };
    let fields = header_bytes(&header);
    out[16 + 32..16 + 32 + 32].copy_from_slice(&fields);
    out[16 + 32 + 32..HEADER_LEN as usize].copy_from_slice(blake3::hash(&fields).as_bytes());
    Ok(out)
}

fn header_bytes(h: &Header) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, n) in [h.shared.offset, h.shared.len, h.whole.offset, h.whole.len]
        .into_iter()
        .enumerate()
    {
        b[i * 8..i * 8 + 8].copy_from_slice(&n.to_le_bytes());
    }
    b
}

/// Appends `payload` with its checksum; where it went.
fn push_blob(out: &mut Vec<u8>, payload: &[u8]) -> Span {
    let offset = out.len() as u64;
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    Span {
        offset,
        len: SUM_LEN + payload.len() as u64,
    }
}

/// The section of action `id`: its rule numbers made local to the rules
/// it refers to, kept in policy order (so that matched rules sort, and
/// read, as in the whole policy).
fn section(id: u32, mut action: ActionIr, rules: &[RuleInfo]) -> Result<Vec<u8>, String> {
    // Every field named: a field added to the IR that refers to rules must
    // be renumbered here.
    let ActionIr {
        name: _,
        input: _,
        output: _,
        before,
        after,
        shadow_before,
        shadow_after,
        state_before,
        state_after,
        recorded: _,
        tool: _,
        flat: _,
    } = &mut action;
    let mut lists = [before, after, shadow_before, shadow_after];
    let mut needs = [state_before, state_after];
    let mut used: Vec<u32> = Vec::new();
    for list in &lists {
        for r in list.iter() {
            let CompiledRule {
                rule,
                cond: _,
                limit: _,
            } = r;
            used.push(*rule);
        }
    }
    for n in &needs {
        let StateNeeds {
            reads: _,
            writes: _,
            session_rule,
            labels_rule,
        } = **n;
        used.extend(session_rule);
        used.extend(labels_rule);
    }
    used.sort_unstable();
    used.dedup();
    let local = |global: u32| -> Result<u32, String> {
        let at = used.binary_search(&global).map_err(|_| "a rule number was missed")?;
        u32::try_from(at).map_err(|_| "too many rules".to_string())
    };
    for list in &mut lists {
        for r in list.iter_mut() {
            r.rule = local(r.rule)?;
        }
    }
    for n in &mut needs {
        n.session_rule = n.session_rule.map(local).transpose()?;
        n.labels_rule = n.labels_rule.map(local).transpose()?;
    }
    let infos = used
        .iter()
        .map(|&g| {
            rules
                .get(g as usize)
                .ok_or_else(|| format!("rule {g} is not in the policy"))
        })
        .collect::<Result<Vec<&RuleInfo>, String>>()?;
    postcard::to_stdvec(&SectionOut {
        id,
        action: &action,
        rules: &infos,
    })
    .map_err(|e| e.to_string())
}

/// Reads and checks the header (`head` is the entry's first
/// [`HEADER_LEN`] bytes, or fewer when the entry is shorter).
pub(super) fn read_header(head: &[u8], key: &blake3::Hash) -> Result<Header, String> {
    let rest = head
        .strip_prefix(MAGIC.as_slice())
        .ok_or("it does not start as an entry does")?;
    let (stored_key, rest) = rest.split_at_checked(32).ok_or("it is truncated")?;
    if stored_key != key.as_bytes() {
        return Err("it was written for other policy texts".into());
    }
    let (fields, rest) = rest.split_at_checked(32).ok_or("it is truncated")?;
    let sum = rest.get(..32).ok_or("it is truncated")?;
    if sum != blake3::hash(fields).as_bytes() {
        return Err("the checksum of its header does not match (damaged or altered)".into());
    }
    let n = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fields[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    Ok(Header {
        shared: Span {
            offset: n(0),
            len: n(1),
        },
        whole: Span {
            offset: n(2),
            len: n(3),
        },
    })
}

/// The payload of the section `blob` (its checksum and payload, as read
/// from `span`), checked.
pub(super) fn check_blob<'b>(blob: &'b [u8], what: &str) -> Result<&'b [u8], String> {
    let (sum, payload) = blob
        .split_at_checked(SUM_LEN as usize)
        .ok_or_else(|| format!("its {what} is truncated"))?;
    if sum != blake3::hash(payload).as_bytes() {
        return Err(format!(
            "the checksum of its {what} does not match (damaged or altered)"
        ));
    }
    Ok(payload)
}

/// Decodes exactly one `T` from `payload`.
pub(super) fn decode<'a, T: serde::Deserialize<'a>>(payload: &'a [u8], what: &str) -> Result<T, String> {
    let (value, left) =
        postcard::take_from_bytes::<T>(payload).map_err(|e| format!("its {what} cannot be decoded: {e}"))?;
    if !left.is_empty() {
        return Err(format!("its {what} has bytes after its end"));
    }
    Ok(value)
}

/// The policy of the shared part and one action's section: it decides
/// requests for that action as the whole policy does, and refuses every
/// other name as unknown.
pub(super) fn with_action(shared: Shared, section: Section, name: &str, id: usize) -> Result<CompiledPolicy, String> {
    if section.id as usize != id || section.action.name() != name {
        return Err(format!("its section for `{name}` holds another action"));
    }
    let lists = [
        &section.action.before,
        &section.action.after,
        &section.action.shadow_before,
        &section.action.shadow_after,
    ];
    let named = [&section.action.state_before, &section.action.state_after]
        .into_iter()
        .flat_map(|n| [n.session_rule, n.labels_rule])
        .flatten();
    let in_range = |r: u32| (r as usize) < section.rules.len();
    if !lists.into_iter().flatten().all(|r| in_range(r.rule)) || !named.into_iter().all(in_range) {
        return Err(format!("its section for `{name}` names a rule it does not hold"));
    }
    let mut policy = shared.policy;
    // Its actions are not the whole policy's (one, at id 0): a request
    // prepared for either must never be moved to the other by
    // `Prepared::under`, which trusts equal fingerprints to mean equal
    // action ids.
    policy.contracts_fingerprint = None;
    policy.action_index.clear();
    policy.action_index.insert(name.to_string(), 0);
    policy.actions = vec![section.action];
    policy.rules = section.rules;
    Ok(policy)
}

/// The policy of the shared part alone, for a name it has no action for:
/// it refuses every request as the whole policy refuses an unknown action,
/// its "did you mean" hint drawn from the same names in the same order
/// (actions that hold nothing but their name, and that no name reaches).
pub(super) fn without_action(shared: Shared) -> CompiledPolicy {
    let empty = Arc::new(ObjectType {
        name: String::new(),
        fields: Vec::new(),
        index: Default::default(),
        extra: ExtraFields::Reject,
    });
    let mut policy = shared.policy;
    // Actions by name only: no prepared request may be moved here (see
    // `with_action`).
    policy.contracts_fingerprint = None;
    policy.action_index.clear();
    policy.rules.clear();
    policy.actions = shared
        .names
        .into_iter()
        .map(|name| ActionIr {
            name: Value::Str(name.into()),
            input: empty.clone(),
            output: None,
            before: Vec::new(),
            after: Vec::new(),
            shadow_before: Vec::new(),
            shadow_after: Vec::new(),
            state_before: StateNeeds::default(),
            state_after: StateNeeds::default(),
            recorded: false,
            tool: None,
            flat: Default::default(),
        })
        .collect();
    policy
}
