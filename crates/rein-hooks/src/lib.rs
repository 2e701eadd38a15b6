//! Rein as the gate of coding agents.
//!
//! A hook event from Claude Code, Codex CLI, Gemini CLI or Cursor is read
//! into one shape ([`event`]) with the agent's mapping table ([`table`]:
//! its event names, tool names and answer shapes, as data), its tool call
//! mapped to Rein actions ([`map`]; a shell
//! command becomes one decision per part it would run), every part decided
//! and recorded by the [`Runtime`], the parts combined (`block` beats
//! `require_approval` beats `allow`) and the verdict rendered in the
//! agent's own answer format ([`render`]). Before any policy is asked, a
//! call that would change Rein's own files is refused ([`protect`]).
//!
//! Who acts is bound, not claimed: every decision is made with a
//! [`Credential`] ([`credential_for`]) whose chain the hook maps from the
//! event itself: `[agent:claude-code]` for the main agent,
//! `[agent:claude-code, subagent:<agent_type>]` inside a sub-agent (Claude
//! Code sends `agent_id` and `agent_type` there). Rules read it as
//! `actor.chain`. Behind `rein serve` the links follow the chain of the
//! token that sent the event, which they can only lengthen.
//!
//! Fail-closed is this crate's job, not the agent's: an event that cannot
//! be read, or any error on the way, is answered with an explicit refusal
//! ([`refuse`]), never with silence or a crash (which the agents treat as
//! "let it run").

pub mod event;
pub mod map;
pub mod protect;
pub mod render;
pub mod table;

pub use event::{parse_event, Agent, EventError, EventKind, HookEvent, MAX_EVENT_BYTES};
pub use protect::{Kind as ProtectedKind, Protected};
pub use render::{refuse, refuse_unreadable, Reply};

use rein_engine::{Effect, MatchedRule, Phase, Policy, Request};
use rein_runtime::{Answer, ChainLink, Credential, Refusal, Runtime};
use rein_store::ApprovalState;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

/// The combined decision on one event.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// `None` for events Rein only records or ignores (no opinion).
    pub effect: Option<Effect>,
    /// The action decided.
    pub action: String,
    /// Why, one line per deciding part.
    pub reasons: Vec<String>,
    /// Rules behind the final effect.
    pub rules: Vec<String>,
    /// Pending approvals that would let the call run, with their role.
    pub approvals: Vec<(String, String)>,
    /// The decision ids recorded in the audit log.
    pub decision_ids: Vec<String>,
    /// Where `rein approvals grant ID` finds the approvals opened, as its
    /// arguments (`--db FILE`), for the hint shown with them; `None` leaves
    /// the hint without.
    pub grant_hint: Option<String>,
}

/// Reads an event, decides it with `runtime` and renders the answer.
/// `home` expands `~` in paths. Never fails: errors become refusals.
pub async fn handle(runtime: &Runtime, agent: Agent, bytes: &[u8], home: Option<&Path>) -> Reply {
    handle_from(runtime, agent, bytes, home, None).await
}

/// As [`handle`], for an event sent by the authenticated client `client` (a
/// server token's name), who may then not approve what the event opens.
pub async fn handle_from(
    runtime: &Runtime,
    agent: Agent,
    bytes: &[u8],
    home: Option<&Path>,
    client: Option<&str>,
) -> Reply {
    handle_guarded(runtime, agent, bytes, home, client, &Protected::new()).await
}

/// As [`handle_from`], refusing every tool call that would change Rein's
/// own files in `protected` (or run `rein` to decide approvals), whatever
/// the policy says.
pub async fn handle_guarded(
    runtime: &Runtime,
    agent: Agent,
    bytes: &[u8],
    home: Option<&Path>,
    client: Option<&str>,
    protected: &Protected,
) -> Reply {
    handle_guarded_hinted(runtime, agent, bytes, home, client, protected, None).await
}

/// As [`handle_guarded`], naming in the answer where an approval it opens
/// is granted: `grant_hint` is what `rein approvals grant ID` needs to
/// find the store (`--db FILE`), since its default (`rein.db` in the
/// current folder) is not the hook's.
pub async fn handle_guarded_hinted(
    runtime: &Runtime,
    agent: Agent,
    bytes: &[u8],
    home: Option<&Path>,
    client: Option<&str>,
    protected: &Protected,
    grant_hint: Option<&str>,
) -> Reply {
    handle_credentialed(runtime, agent, bytes, home, client, None, protected, grant_hint).await
}

/// As [`handle_guarded_hinted`], for an event sent with a credential of
/// its own (`base`: a server token's): its bound fields and scopes apply,
/// and the links the hook maps from the event follow its chain (see
/// [`credential_for`]).
#[allow(clippy::too_many_arguments)]
pub async fn handle_credentialed(
    runtime: &Runtime,
    agent: Agent,
    bytes: &[u8],
    home: Option<&Path>,
    client: Option<&str>,
    base: Option<&Credential>,
    protected: &Protected,
    grant_hint: Option<&str>,
) -> Reply {
    handle_in_project(runtime, agent, bytes, home, client, base, protected, grant_hint, None).await
}

/// As [`handle_credentialed`], for a hook that knows the project it was
/// started in (`project`: a command hook's own working directory). For an
/// agent whose events' `cwd` is the folder the command runs in (its table's
/// `cwd_is_the_commands`: Codex runs `exec_command` in any `workdir` its
/// model names, and sends that as `cwd`), `snapshot.project_root` is the
/// project's, not that folder's: a command run in `~` is not run in a
/// project of its own.
#[allow(clippy::too_many_arguments)]
pub async fn handle_in_project(
    runtime: &Runtime,
    agent: Agent,
    bytes: &[u8],
    home: Option<&Path>,
    client: Option<&str>,
    base: Option<&Credential>,
    protected: &Protected,
    grant_hint: Option<&str>,
    project: Option<&Path>,
) -> Reply {
    match parse_event(agent, bytes) {
        Err(e) => refuse_unreadable(agent, bytes, &format!("Rein could not read the hook event: {e}")),
        Ok(mut event) => {
            let command_cwd = table::table(agent).is_ok_and(|t| t.cwd_is_the_commands);
            if command_cwd {
                if let Some(project) = project.and_then(Path::to_str) {
                    event.project = Some(project.to_string());
                }
            }
            let protected = protected.with_agent_settings(&event, home);
            let mut verdict = decide_credentialed(runtime, &event, home, client, base, &protected).await;
            verdict.grant_hint = grant_hint.map(str::to_string);
            render::render(&event, &verdict)
        }
    }
}

/// The refusal of a tool call that would change a file in `protected` (or
/// the agent's settings, see [`Protected::with_agent_settings`]), decided
/// without a runtime and recorded nowhere: for a hook that forwards events
/// to a server, which guards and records its own files.
pub fn protected_refusal(event: &HookEvent, protected: &Protected, home: Option<&Path>) -> Option<Reply> {
    if !matches!(event.kind, EventKind::BeforeTool | EventKind::PermissionRequest) {
        return None;
    }
    let protected = protected.with_agent_settings(event, home);
    let call = map::map_tool(event, home);
    let reasons: Vec<String> = call
        .inputs
        .iter()
        .filter_map(|input| protected.check(&call.action, input))
        .chain(unread_refusal(&protected, &call.action, &call.inputs))
        .collect();
    if reasons.is_empty() {
        return None;
    }
    let verdict = Verdict {
        effect: Some(Effect::Block),
        action: call.action,
        rules: vec![PROTECTED_RULE.to_string()],
        reasons,
        ..Verdict::default()
    };
    Some(render::render(event, &verdict))
}

/// Decides one event (tool calls part by part) and records every decision.
/// `client` is the authenticated sender, if any (see [`handle_from`]).
pub async fn decide_event(runtime: &Runtime, event: &HookEvent, home: Option<&Path>, client: Option<&str>) -> Verdict {
    decide_guarded(runtime, event, home, client, &Protected::new()).await
}

/// The rule id a refusal by [`Protected`] is filed under.
pub const PROTECTED_RULE: &str = "rein_protects_itself";

/// As [`decide_event`], with Rein's own files guarded (see
/// [`handle_guarded`]): a part the guard refuses is blocked and recorded
/// without asking the policy.
pub async fn decide_guarded(
    runtime: &Runtime,
    event: &HookEvent,
    home: Option<&Path>,
    client: Option<&str>,
    protected: &Protected,
) -> Verdict {
    decide_credentialed(runtime, event, home, client, None, protected).await
}

/// The links of `actor.chain` an event stands for: the agent
/// (`agent:claude-code`, `agent:codex`, `agent:gemini`), then, for an event
/// from inside a sub-agent, `subagent:<agent_type>`. Claude Code's nested
/// sub-agents send only the innermost one's fields: the chain then names
/// the innermost sub-agent (still a `subagent` link).
pub fn chain_links(event: &HookEvent) -> Vec<ChainLink> {
    let mut links = vec![ChainLink {
        kind: "agent".to_string(),
        id: event.agent.name().to_string(),
    }];
    if event.in_subagent() {
        if let Some(kind) = &event.agent_type {
            links.push(ChainLink {
                kind: "subagent".to_string(),
                id: kind.clone(),
            });
        }
    }
    links
}

/// The credential an event is decided with: `base`'s bound fields and
/// action scopes (a server token's; none in process), and its chain (none
/// in process) followed by the event's [`chain_links`]. Appending only
/// narrows: a link's scope still applies to what the links after it do,
/// and the hook adds no scope of its own. Errors when a link is not one
/// (the event's fields are checked when read; this is the last guard).
pub fn credential_for(event: &HookEvent, base: Option<&Credential>) -> Result<Credential, String> {
    let mut credential = base.cloned().unwrap_or_default();
    let mut chain = credential.chain.take().unwrap_or_default();
    for link in chain_links(event) {
        link.validate()?;
        chain.push(link);
    }
    credential.chain = Some(chain);
    // What the base prepared no longer describes it: prepared again on
    // first use, once for every part of the event.
    credential.prepared = rein_runtime::identity::Prepared::default();
    Ok(credential)
}

/// Sets on `request.actor` what `credential` binds (its fields, and its
/// chain as `actor.chain`) with the runtime's own identity step
/// ([`rein_runtime::identity::bind`]), as the runtime will before deciding:
/// the approval probe, the approval lookup and the `after` check (which
/// has no credential of its own) then see the actor the decision sees.
/// The error is the runtime's reason to block: a contradicted field, an
/// action outside a link's scope, a required field the credential does
/// not bind.
pub fn bind_request(policy: &Policy, request: &mut Request, credential: &Credential) -> Result<(), String> {
    match rein_runtime::identity::bind(policy, request, Some(credential)).refusal {
        None => Ok(()),
        Some(why) => Err(why),
    }
}

/// As [`decide_guarded`], with the credential the event is sent with
/// (`base`, see [`credential_for`]): every part is decided with the
/// event's chain bound, so no part of the event (a tool's input, a
/// prompt) can make it another actor's.
pub async fn decide_credentialed(
    runtime: &Runtime,
    event: &HookEvent,
    home: Option<&Path>,
    client: Option<&str>,
    base: Option<&Credential>,
    protected: &Protected,
) -> Verdict {
    let credential = match credential_for(event, base) {
        Ok(c) => c,
        Err(why) => {
            return Verdict {
                effect: Some(Effect::Block),
                action: event.tool_name.clone().unwrap_or_else(|| event.event_name.clone()),
                reasons: vec![format!("the hook event names no actor Rein can bind: {why}")],
                ..Verdict::default()
            }
        }
    };
    let credential = &credential;
    let policy = runtime.policy();
    let one = |action: &str, input: Json| (action.to_string(), vec![input], None);
    let (action, inputs, part_labels): (String, Vec<Json>, Option<Vec<String>>) = match &event.kind {
        EventKind::BeforeTool | EventKind::PermissionRequest | EventKind::AfterTool => {
            let call = map::map_tool(event, home);
            let labels = call.shell.as_ref().map(|_| {
                call.inputs
                    .iter()
                    .map(|i| i["part"].as_str().unwrap_or_default().to_string())
                    .collect()
            });
            (call.action, call.inputs, labels)
        }
        EventKind::UserPrompt => one(
            "prompt.submit",
            json!({"prompt": event.prompt.clone().unwrap_or_default()}),
        ),
        EventKind::SessionStart => one(
            "session.start",
            json!({"source": event.session_detail.clone().unwrap_or_default()}),
        ),
        EventKind::SessionEnd => one(
            "session.end",
            json!({"reason": event.session_detail.clone().unwrap_or_default()}),
        ),
        EventKind::Other(_) => return Verdict::default(),
    };

    // All parts at once: their audit records then share one group commit
    // (one fsync) instead of one each.
    let guarded = matches!(event.kind, EventKind::BeforeTool | EventKind::PermissionRequest);
    let unread = guarded.then(|| unread_refusal(protected, &action, &inputs)).flatten();
    let parts = futures_util::future::join_all(inputs.into_iter().map(|input| {
        let refusal = guarded
            .then(|| {
                protected
                    .check(&action, &input)
                    .or_else(|| cut_part(&input).then(|| unread.clone()).flatten())
            })
            .flatten();
        let mut request = request_for(event, &action, input, home);
        let bound = bind_request(&policy, &mut request, credential);
        async move {
            if let Some(why) = refusal {
                return refuse_part(runtime, &request, Phase::Before, PROTECTED_RULE, &why, client).await;
            }
            match event.kind {
                EventKind::AfterTool => match bound {
                    // The runtime's `after` check takes no credential: a
                    // contradiction is refused here, the output withheld.
                    Err(why) => refuse_part(runtime, &request, Phase::After, BOUND_ACTOR_RULE, &why, client).await,
                    Ok(()) => {
                        let output = output_of(event.tool_response.as_ref().unwrap_or(&Json::Null));
                        PartAnswer::from(runtime.check_output(request, output, client).await)
                    }
                },
                EventKind::BeforeTool | EventKind::PermissionRequest => {
                    decide_with_approvals(runtime, request, client, credential).await
                }
                _ => PartAnswer::from(runtime.decide_bound(request, None, client, Some(credential)).await),
            }
        }
    }))
    .await;
    let mut verdict = combine(&action, parts, part_labels.as_deref());
    if matches!(event.kind, EventKind::SessionStart | EventKind::SessionEnd) {
        // Recorded, but a session event cannot be refused.
        verdict.effect = None;
    }
    verdict
}

/// A shell part that stands for text the analysis dropped (a command cut
/// after `MAX_PARTS` parts, or too large): no program, no text of its own.
fn cut_part(input: &Json) -> bool {
    input["understood"] == json!(false)
        && input["program"].as_str().is_some_and(str::is_empty)
        && input["part"].as_str().is_some_and(str::is_empty)
}

/// Why the words of a shell command, some of which were never analysed
/// (see [`cut_part`]), may touch Rein's files: the whole line is in the
/// first part's `command` (later parts carry only its start).
fn unread_refusal(protected: &Protected, action: &str, inputs: &[Json]) -> Option<String> {
    if action != "shell.exec" || !inputs.iter().any(cut_part) {
        return None;
    }
    let command = inputs.first()?["command"].as_str()?;
    protected.check_unread(command, &[])
}

/// The rule id an `after` event is refused under when its actor
/// contradicts the credential, or its action is outside a scope of the
/// credential's chain (see [`bind_request`]).
pub const BOUND_ACTOR_RULE: &str = "actor_bound_by_credential";

/// Records a part refused before any rule (a `block` record of `phase`
/// whose input describes the request, as for any request refused before
/// deciding, filed under `rule`) and answers it with the reason `why`.
async fn refuse_part(
    runtime: &Runtime,
    request: &Request,
    phase: Phase,
    rule: &str,
    why: &str,
    client: Option<&str>,
) -> PartAnswer {
    // The actor too: it holds the chain the credential bound (a
    // sub-agent's link), so that the record says who was refused.
    let body =
        json!({"action": request.action, "input": request.input, "actor": request.actor, "session": request.session});
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let answer = runtime
        .record_refusal(Refusal {
            phase,
            status: 403,
            code: rule,
            message: why,
            body: Some(&bytes),
            declared_len: None,
            client,
        })
        .await;
    let mut part = PartAnswer::from(answer);
    // Whatever else the record says, the part is refused for this reason.
    part.effect = Effect::Block;
    part.rules = vec![rule.to_string()];
    part.reasons = vec![why.to_string()];
    part.approval = None;
    part
}

/// The request Rein decides for one input of an event; `home` is the
/// user's home folder (`snapshot.home`). Its actor holds what the event
/// says (`agent`, `permission_mode`, `agent_id`, `agent_type`), not yet
/// what the credential binds ([`bind_request`] adds `actor.chain`).
pub fn request_for(event: &HookEvent, action: &str, input: Json, home: Option<&Path>) -> Request {
    let mut actor = json!({"agent": event.agent.name()});
    if let Some(mode) = &event.permission_mode {
        actor["permission_mode"] = json!(mode);
    }
    if let Some(id) = &event.agent_id {
        actor["agent_id"] = json!(id);
    }
    if let Some(kind) = &event.agent_type {
        actor["agent_type"] = json!(kind);
    }
    // The project the hook runs in, where the event's `cwd` is only where
    // the command runs (see `handle_in_project`).
    let root = project_root(Path::new(event.project.as_deref().unwrap_or(&event.cwd)));
    let mut snapshot = json!({"cwd": event.cwd, "project_root": root.to_string_lossy()});
    if let Some(branch) = git_branch(&root) {
        snapshot["git_branch"] = json!(branch);
    }
    if let Some(id) = &event.tool_use_id {
        snapshot["tool_use_id"] = json!(id);
    }
    if let Some(home) = home.and_then(Path::to_str) {
        snapshot["home"] = json!(map::resolve(Path::new("/"), home, None));
    }
    let mut request = Request::new(action).input(input).actor(actor).snapshot(snapshot);
    request.session = event.session_id.clone();
    request
}

/// What `after` rules see of a tool's result: `output.text`, every string
/// of the response joined by newlines. Tools answer in many shapes (Bash's
/// `stdout`/`stderr`, Read's `file.content`, MCP content blocks); one text
/// field lets a rule look for secrets in any of them.
pub fn output_of(response: &Json) -> Json {
    fn collect<'a>(v: &'a Json, out: &mut Vec<&'a str>) {
        match v {
            Json::String(s) if !s.is_empty() => out.push(s),
            Json::Array(items) => items.iter().for_each(|i| collect(i, out)),
            Json::Object(m) => m
                .iter()
                .filter(|(k, _)| k.as_str() != "type")
                .for_each(|(_, v)| collect(v, out)),
            _ => {}
        }
    }
    let mut parts = Vec::new();
    collect(response, &mut parts);
    json!({"text": parts.join("\n")})
}

/// The branch checked out in `dir`, read from `.git/HEAD` (no `git`
/// process: a hook must be fast). `None` when detached or not a repository.
/// The project an event's `cwd` belongs to: the nearest folder at or above
/// it holding `.git` (a repository or a worktree), else `cwd` itself. A
/// coding agent's shell keeps the folder a `cd` left it in, and the next
/// event's `cwd` is that folder: after `cd src` the project is still the
/// repository (its `.git` still inside it, its branch still known), not
/// `src`.
pub fn project_root(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(cwd)
        .to_path_buf()
}

fn git_branch(dir: &Path) -> Option<String> {
    let git = dir.join(".git");
    // A worktree's `.git` is a file naming its git folder.
    let git_dir = match std::fs::read_to_string(&git) {
        Ok(link) => dir.join(link.trim().strip_prefix("gitdir:")?.trim()),
        Err(_) => git,
    };
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref: refs/heads/").map(str::to_string)
}

struct PartAnswer {
    effect: Effect,
    rules: Vec<String>,
    reasons: Vec<String>,
    /// The matched rules whose own effect is `allow`, and their reasons:
    /// they say nothing about why a part was refused.
    allowing: Vec<MatchedRule>,
    approval: Option<(String, String)>,
    decision_id: String,
}

impl From<Answer> for PartAnswer {
    fn from(a: Answer) -> Self {
        PartAnswer {
            effect: a.effect,
            approval: a.approval.map(|p| (p.id, p.role)),
            rules: a.rules,
            reasons: a.reasons,
            allowing: a.matched.into_iter().filter(|m| m.effect == Effect::Allow).collect(),
            decision_id: a.decision_id,
        }
    }
}

/// A hook cannot carry an approval id, so the approval an earlier,
/// identical call opened is found by the request: granted → used now;
/// denied → refused; pending → still waiting (no second approval opened);
/// used or expired → decided afresh (which opens a new one if required).
async fn decide_with_approvals(
    runtime: &Runtime,
    mut request: Request,
    client: Option<&str>,
    credential: &Credential,
) -> PartAnswer {
    let bound = Some(credential);
    // An approval only ever changes a `require_approval` decision: for any
    // other the lookup (a read of the store) is skipped.
    request.phase = Phase::Before;
    // The probe needs a time for rules that read `now` (the runtime sets
    // its own when it decides).
    if request.time.is_none() {
        request.time = Some(jiff::Timestamp::now());
    }
    // The probe decides without state: an action whose rules read state
    // (a limit, a session fact) would always come out `block` there, and
    // its granted approval never be found. For such an action the approval
    // is looked up whatever the probe says (the runtime uses it only if
    // the decision asks for one).
    let policy = runtime.policy();
    let stateful = policy.uses_state() && policy.action_state(&request.action, Phase::Before).any();
    if !stateful && policy.decide(&request).effect() != Effect::RequireApproval {
        return PartAnswer::from(runtime.decide_bound(request, None, client, bound).await);
    }
    let now = jiff::Timestamp::now();
    let existing = match runtime.approval_for(&request, client).await {
        Ok(found) => found.filter(|a| {
            a.state != ApprovalState::Used
                && a.expires_at
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|expires| expires > now)
        }),
        Err(e) => {
            let mut answer = PartAnswer::from(runtime.decide_bound(request, None, client, bound).await);
            answer.effect = Effect::Block;
            answer.approval = None;
            answer
                .reasons
                .insert(0, format!("approvals could not be looked up: {e}"));
            return answer;
        }
    };
    match existing {
        None => PartAnswer::from(runtime.decide_bound(request, None, client, bound).await),
        Some(a) => {
            let decided = runtime.decide_bound(request, Some(a.id.clone()), client, bound).await;
            // Blocked only for want of the grant: the rules asked, none
            // blocked, nothing failed. A block of its own (a rule that
            // now refuses, a limit, a state error) stays a block; shown as
            // "waiting", the agent's own prompt could let it run.
            let only_waiting = decided.violation.is_none()
                && decided.errors.is_empty()
                && decided.matched.iter().any(|m| m.effect == Effect::RequireApproval)
                && !decided.matched.iter().any(|m| m.effect == Effect::Block);
            let mut answer = PartAnswer::from(decided);
            if a.state == ApprovalState::Pending && answer.effect == Effect::Block && only_waiting {
                // Not granted yet: still waiting for the same approval.
                answer.effect = Effect::RequireApproval;
                answer.reasons = vec![format!("waiting for approval `{}` (role `{}`)", a.id, a.role)];
                answer.approval = Some((a.id, a.role));
            }
            answer
        }
    }
}

fn combine(action: &str, parts: Vec<PartAnswer>, labels: Option<&[String]>) -> Verdict {
    let effect = parts
        .iter()
        .map(|p| p.effect)
        .max_by_key(|e| severity(*e))
        .unwrap_or(Effect::Block);
    let mut verdict = Verdict {
        effect: Some(effect),
        action: action.to_string(),
        ..Verdict::default()
    };
    for (i, part) in parts.into_iter().enumerate() {
        verdict.decision_ids.push(part.decision_id);
        if part.effect != effect {
            continue;
        }
        let label = labels.and_then(|l| l.get(i)).filter(|l| !l.is_empty());
        // The reasons of rules that allowed a part say nothing about why
        // it was refused.
        let refusing = effect != Effect::Allow;
        let reasons: Vec<&String> = part
            .reasons
            .iter()
            .filter(|r| !refusing || !part.allowing.iter().any(|m| m.reason == **r))
            .collect();
        let reason = if reasons.is_empty() {
            format!("{effect}")
        } else {
            reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("; ")
        };
        verdict.reasons.push(match label {
            Some(l) if labels.is_some_and(|l| l.len() > 1) => format!("`{l}`: {reason}"),
            _ => reason,
        });
        // Likewise the rules that allowed it.
        let allowed_by = |rule: &str| refusing && part.allowing.iter().any(|m| m.id == rule);
        for r in part.rules.clone() {
            if !allowed_by(&r) && !verdict.rules.contains(&r) {
                verdict.rules.push(r);
            }
        }
        if let Some(a) = part.approval {
            verdict.approvals.push(a);
        }
    }
    verdict
}

fn severity(e: Effect) -> u8 {
    match e {
        Effect::Allow => 0,
        Effect::RequireApproval => 1,
        Effect::Block => 2,
    }
}
