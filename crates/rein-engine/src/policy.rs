//! The public face of the engine: load a policy, decide, explain.

use crate::ast::{Combining, Effect, Phase, PolicyFile};
use crate::check;
use crate::contract::{check_root, check_root_into, check_root_redacted, ContractValue, Violation};
use crate::decision::{Basis, Decision};
use crate::decision::{LimitNote, LimitNotes, Matched, PolicyRef, ShadowNotes};
use crate::diagnostics::{Diagnostic, LoadError, Severity};
use crate::eval::eval_value;
use crate::eval::{Env, EvalError, Frame, NoTrace, Tracer};
use crate::flat::{resolve, Every, Program};
use crate::ir::LimitIr;
use crate::ir::{CompiledPolicy, CompiledRule, Node, NodeKind};
use crate::request::Request;
use crate::source::SourceFile;
use crate::state::{
    ActionState, BucketKey, Consumption, Decimal, LimitInfo, LimitQuery, SessionCall, StateEffects, StateError,
    StateView,
};
use crate::state_eval::{render_hashed, value_decimal};
use crate::syntax::native::{read_derived_file, read_policy_file};
use crate::types::Type;
use crate::value::format_duration;
use crate::value::Value;
use jiff::SignedDuration;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The reason of a block for a required bound actor field `field` that the
/// request's credential does not bind.
fn unbound_reason(field: &str) -> String {
    format!("actor.{field} must be set by the credential; this request's credential does not bind it")
}

/// Largest policy file the loader reads.
pub const MAX_POLICY_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A loaded, type-checked, compiled policy. Cloning is cheap (one reference
/// count); a `Policy` is `Send + Sync` and can be shared across threads.
#[derive(Clone, Debug)]
pub struct Policy {
    inner: Arc<CompiledPolicy>,
    warnings: Arc<[Diagnostic]>,
}

/// One top-level field of an input contract ([`Policy::input_fields`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractField {
    /// Its name.
    pub name: String,
    /// May be absent.
    pub optional: bool,
    /// Its type as the language writes it (`int`, `list<string>`).
    pub ty: String,
}

/// A request that passed its contract check, laid out for evaluation. Make
/// one with [`Policy::prepare`] to decide the same request repeatedly. It
/// borrows the policy (`'p`), as do the decisions it makes, so that
/// deciding writes to no memory the threads sharing a policy share; keep
/// one longer with [`Prepared::into_owned`].
#[derive(Clone, Debug)]
pub struct Prepared<'p> {
    policy: PolicyRef<'p>,
    action: u32,
    phase: Phase,
    /// The typed values of input, output, actor and snapshot.
    roots: Roots,
    now: Option<jiff::Timestamp>,
    /// The error the action reported instead of an output (phase after).
    error: Option<Value>,
    /// The session the request names.
    session: Option<String>,
}

/// A prepared request's typed root values, one root after another in one
/// vector (one allocation per request): input, output (when the request
/// has one), actor, snapshot.
#[derive(Clone, Debug)]
struct Roots {
    values: Vec<Value>,
    /// Where the output starts (the end of the input).
    output_at: usize,
    /// Where the actor starts (the end of the output, if any).
    actor_at: usize,
    /// Where the snapshot starts.
    snapshot_at: usize,
    /// Whether there is an output (`output_at..actor_at`).
    has_output: bool,
}

impl Roots {
    /// The roots checked one by one, laid out together.
    fn from_parts(input: Vec<Value>, output: Option<Vec<Value>>, actor: Vec<Value>, snapshot: Vec<Value>) -> Roots {
        let mut values = input;
        let output_at = values.len();
        let has_output = output.is_some();
        values.extend(output.into_iter().flatten());
        let actor_at = values.len();
        values.extend(actor);
        let snapshot_at = values.len();
        values.extend(snapshot);
        Roots {
            values,
            output_at,
            actor_at,
            snapshot_at,
            has_output,
        }
    }

    fn input(&self) -> &[Value] {
        self.values.get(..self.output_at).unwrap_or_default()
    }

    fn output(&self) -> Option<&[Value]> {
        self.has_output
            .then(|| self.values.get(self.output_at..self.actor_at).unwrap_or_default())
    }

    fn actor(&self) -> &[Value] {
        self.values.get(self.actor_at..self.snapshot_at).unwrap_or_default()
    }

    fn snapshot(&self) -> &[Value] {
        self.values.get(self.snapshot_at..).unwrap_or_default()
    }
}

/// Why a request is refused before its rules: a contract violation, or a
/// name the policy has no action for (whose text, with its "did you mean"
/// hint, is only written when read: see [`Decision::basis`]).
pub(crate) enum Refusal<'r> {
    Contract(Violation),
    UnknownAction {
        name: &'r str,
        path: &'static str,
        why: &'static str,
    },
}

impl From<Violation> for Refusal<'_> {
    fn from(v: Violation) -> Self {
        Refusal::Contract(v)
    }
}

/// A request's parts, its values read through [`ContractValue`] (from a
/// [`Request`], a host language's objects, or JSON text read in place by
/// `request_text.rs`).
pub(crate) struct Parts<'r, V> {
    pub(crate) action: &'r str,
    pub(crate) phase: Phase,
    pub(crate) input: Option<V>,
    pub(crate) output: Option<V>,
    pub(crate) error: Option<&'r str>,
    pub(crate) actor: Option<V>,
    pub(crate) snapshot: Option<V>,
    pub(crate) session: Option<&'r str>,
    pub(crate) time: Option<jiff::Timestamp>,
}

impl Policy {
    /// Loads a policy from YAML text (named `<string>` in diagnostics).
    pub fn from_yaml_str(text: &str) -> Result<Policy, LoadError> {
        Policy::from_sources([("<string>", text)])
    }

    /// Loads a policy made of several named texts, merged.
    pub fn from_sources<N: Into<String>, T: Into<String>>(
        sources: impl IntoIterator<Item = (N, T)>,
    ) -> Result<Policy, LoadError> {
        let files: Vec<SourceFile> = sources.into_iter().map(|(n, t)| SourceFile::new(n, t)).collect();
        Policy::compile_sources(&files, None, Vec::new())
    }

    /// Loads policy files. A directory contributes every `.yaml` / `.yml`
    /// file below it, in sorted order, except test files (`*.test.yaml`).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Policy, LoadError> {
        let mut diags = Vec::new();
        let files = read_files(paths, &mut diags);
        Policy::compile_sources(&files, None, diags)
    }

    /// Loads policy files as [`Policy::load`] does, together with derived
    /// sources: named texts (the name is what diagnostics show, e.g.
    /// `<contracts of MCP server fs>`) that may hold only `contracts`, such
    /// as the MCP gateway's contracts from tool schemas. A contract a
    /// derived source declares (an action's, the actor's, the snapshot's)
    /// yields, whole, to one the policy files declare; two derived sources
    /// declaring the same one is an error. The version hash covers the
    /// derived sources too.
    pub fn load_with_derived<P: AsRef<Path>>(paths: &[P], derived: &[(String, String)]) -> Result<Policy, LoadError> {
        let mut diags = Vec::new();
        let files = read_files(paths, &mut diags);
        let derived: Vec<SourceFile> = derived
            .iter()
            .map(|(n, t)| SourceFile::new(n.clone(), t.clone()))
            .collect();
        Policy::compile_all(&files, &derived, None, diags)
    }

    /// Loads named texts as [`Policy::from_sources`] does, together with
    /// derived sources as [`Policy::load_with_derived`] does.
    pub fn from_sources_with_derived<N: Into<String>, T: Into<String>>(
        sources: impl IntoIterator<Item = (N, T)>,
        derived: &[(String, String)],
    ) -> Result<Policy, LoadError> {
        let files: Vec<SourceFile> = sources.into_iter().map(|(n, t)| SourceFile::new(n, t)).collect();
        let derived: Vec<SourceFile> = derived
            .iter()
            .map(|(n, t)| SourceFile::new(n.clone(), t.clone()))
            .collect();
        Policy::compile_all(&files, &derived, None, Vec::new())
    }

    /// Loads policy files as [`Policy::load`] does, and enforces a
    /// governance file on their rules (see the `governance` section of
    /// `docs/actra-compat.md` for how it names native rules).
    pub fn load_governed<P: AsRef<Path>>(paths: &[P], governance: &Path) -> Result<Policy, LoadError> {
        let mut diags = Vec::new();
        let files = read_files(paths, &mut diags);
        let gov = crate::actra::read_source(governance, &mut diags);
        if gov.is_none() && !diags.iter().any(|d| d.severity == Severity::Error) {
            diags.push(Diagnostic::general(format!("cannot read `{}`", governance.display())));
        }
        Policy::compile_sources(&files, gov.as_ref(), diags)
    }

    /// Loads named native texts with a governance text.
    pub fn from_sources_governed<N: Into<String>, T: Into<String>>(
        sources: impl IntoIterator<Item = (N, T)>,
        governance: (&str, &str),
    ) -> Result<Policy, LoadError> {
        let files: Vec<SourceFile> = sources.into_iter().map(|(n, t)| SourceFile::new(n, t)).collect();
        let gov = SourceFile::new(governance.0, governance.1);
        Policy::compile_sources(&files, Some(&gov), Vec::new())
    }

    /// Loads Actra's schema, policy and (optional) governance files, to be
    /// decided with Actra's semantics: first match among the action's
    /// rules in file order, then the global rules, then `allow`.
    pub fn load_actra(schema: &Path, policy: &Path, governance: Option<&Path>) -> Result<Policy, LoadError> {
        let mut diags = Vec::new();
        let schema = crate::actra::read_source(schema, &mut diags);
        let policy = crate::actra::read_source(policy, &mut diags);
        let governance = governance.map(|g| crate::actra::read_source(g, &mut diags));
        match (schema, policy, governance) {
            (Some(s), Some(p), None) => Policy::from_actra_sources(&s, &p, None, Default::default()),
            (Some(s), Some(p), Some(Some(g))) => Policy::from_actra_sources(&s, &p, Some(&g), Default::default()),
            _ => Err(LoadError::new(diags)),
        }
    }

    /// Loads Actra files from text, named `schema.yaml`, `policy.yaml` and
    /// `governance.yaml` in diagnostics.
    pub fn from_actra_strs(schema: &str, policy: &str, governance: Option<&str>) -> Result<Policy, LoadError> {
        crate::actra::load_strs_with(schema, policy, governance, Default::default())
    }

    pub(crate) fn from_actra_sources(
        schema: &SourceFile,
        policy: &SourceFile,
        governance: Option<&SourceFile>,
        options: crate::actra::Options,
    ) -> Result<Policy, LoadError> {
        let (compiled, mut diags) = crate::actra::compile(schema, policy, governance, options);
        Policy::finish_load(compiled, &mut diags).map_err(|()| LoadError::new(diags))
    }

    fn compile_sources(
        files: &[SourceFile],
        governance: Option<&SourceFile>,
        diags: Vec<Diagnostic>,
    ) -> Result<Policy, LoadError> {
        Policy::compile_all(files, &[], governance, diags)
    }

    /// Compiles policy files and derived sources (which come after them in
    /// the file list, so rule positions keep their file indices).
    fn compile_all(
        files: &[SourceFile],
        derived: &[SourceFile],
        governance: Option<&SourceFile>,
        mut diags: Vec<Diagnostic>,
    ) -> Result<Policy, LoadError> {
        let mut parsed: Vec<PolicyFile> = files
            .iter()
            .enumerate()
            .map(|(i, f)| read_policy_file(f, i, &mut diags))
            .collect();
        let first = parsed.len();
        parsed.extend(
            derived
                .iter()
                .enumerate()
                .map(|(i, f)| read_derived_file(f, first + i, &mut diags)),
        );
        let parsed_ok = !diags.iter().any(|d| d.severity == Severity::Error);
        if let Some(g) = governance {
            if let Some(doc) = crate::governance::read(g, &mut diags) {
                if parsed_ok {
                    let mode = crate::governance::Mode {
                        right_hand_reads: true,
                        native: true,
                    };
                    crate::governance::enforce(&doc, &crate::governance::native_views(&parsed), mode, &mut diags);
                }
            }
        }
        // Type checking a file that did not even parse would only repeat
        // its errors.
        let compiled = if parsed_ok {
            check::compile(&parsed, &mut diags)
        } else {
            None
        };
        Policy::finish_load(compiled, &mut diags).map_err(|()| LoadError::new(diags))
    }

    /// Compiles native files already read (the cache's path to a full load).
    pub(crate) fn compile_files(files: &[SourceFile], diags: Vec<Diagnostic>) -> Result<Policy, LoadError> {
        Policy::compile_sources(files, None, diags)
    }

    /// A policy from IR that was checked when it was compiled (read back from
    /// the cache): no warnings, since entries are only written without any.
    pub(crate) fn new_checked(inner: Arc<CompiledPolicy>) -> Policy {
        Policy {
            inner,
            warnings: Arc::from([]),
        }
    }

    /// The compiled IR.
    pub(crate) fn compiled(&self) -> &CompiledPolicy {
        &self.inner
    }

    /// The compiled IR, shared (what outlives a borrow of the policy).
    pub(crate) fn compiled_arc(&self) -> Arc<CompiledPolicy> {
        self.inner.clone()
    }

    /// The policy, if it compiled and no error was found; otherwise
    /// `diags` holds at least one error.
    fn finish_load(compiled: Option<CompiledPolicy>, diags: &mut Vec<Diagnostic>) -> Result<Policy, ()> {
        let has_errors = diags.iter().any(|d| d.severity == Severity::Error);
        match compiled {
            Some(inner) if !has_errors => Ok(Policy {
                inner: Arc::new(inner),
                warnings: std::mem::take(diags).into(),
            }),
            _ => {
                if !has_errors {
                    diags.push(Diagnostic::general("the policy could not be compiled"));
                }
                Err(())
            }
        }
    }

    /// The policy version: a hash of its sources, in every decision.
    pub fn version(&self) -> &str {
        &self.inner.version_hash
    }

    /// The `version` label the author wrote, if any. A policy made of
    /// several files that carry labels gets their distinct labels, sorted
    /// (the order the files are given in does not matter), joined with ` + `
    /// (`billing-3 + hooks-1.2`). A number is kept
    /// as written (`1.10`, not `1.1`).
    pub fn version_label(&self) -> Option<&str> {
        self.inner.version_label.as_deref()
    }

    /// Warnings found while loading.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The effect when no rule matches in `phase`.
    pub fn default_effect(&self, phase: Phase) -> Effect {
        match phase {
            Phase::Before => self.inner.default,
            Phase::After => self.inner.default_after,
        }
    }

    /// Whether a request whose actor holds the top-level field `name`
    /// breaks the actor contract whatever its value: the contract refuses
    /// undeclared fields and does not declare it (`chain` is always
    /// accepted). A server warns of a credential binding such a field:
    /// every request made with it would be blocked.
    pub fn actor_refuses_field(&self, name: &str) -> bool {
        let actor = &self.inner.actor;
        name != "chain" && actor.extra == crate::ast::ExtraFields::Reject && actor.field(name).is_none()
    }

    /// The actor fields the policy requires its credential to set
    /// (`contracts.actor.<field>: {bound: true}`), sorted: a request whose
    /// credential does not bind one of them is blocked before any rule
    /// ([`Policy::unbound_required`]). Computed when the policy loads.
    pub fn bound_actor_fields(&self) -> &[String] {
        &self.inner.bound_actor
    }

    /// Why a request must be blocked before any rule because its
    /// credential does not bind an actor field the policy requires bound
    /// (`bound: true`): `bound(field)` says whether the credential binds
    /// `field` (a request with no credential: a closure returning
    /// `false`). `None` when every required field is bound. The text names
    /// the first such field in sorted order: "actor.<f> must be set by the
    /// credential; this request's credential does not bind it". The
    /// runtime and `rein test` both judge with this.
    pub fn unbound_required(&self, bound: impl Fn(&str) -> bool) -> Option<String> {
        self.inner
            .bound_actor
            .iter()
            .find(|f| !bound(f))
            .map(|f| unbound_reason(f))
    }

    /// Whether `action` has a contract (one hash lookup).
    pub fn has_action(&self, action: &str) -> bool {
        self.inner.action_index.contains_key(action)
    }

    /// True when some `before` rule targeting `action` blocks it whatever
    /// the request: effect `block`, no condition (or the literal `true`)
    /// and no limit. Such an action can never be allowed (the MCP gateway
    /// hides such tools from `tools/list`). False for an unknown action.
    pub fn blocks_unconditionally(&self, action: &str) -> bool {
        let p = &self.inner;
        let Some(a) = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize)) else {
            return false;
        };
        let blocks_always = |r: &CompiledRule| {
            let always = match &r.cond {
                None => true,
                Some(n) => matches!(n.kind, NodeKind::Const(Value::Bool(true))),
            };
            always && r.limit.is_none() && p.rules.get(r.rule as usize).is_some_and(|i| i.effect == Effect::Block)
        };
        match p.combining {
            Combining::DenyOverrides => a.before.iter().any(blocks_always),
            // The first rule whose condition holds decides alone: only a
            // first rule that always blocks blocks every call.
            Combining::FirstMatch => a.before.first().is_some_and(blocks_always),
        }
    }

    /// The top-level fields of `action`'s input contract, in declaration
    /// order, and whether undeclared fields are dropped (`true`) or break
    /// the contract (`false`). `None` for an unknown action. Callers that
    /// build an input from something else (the Python SDK's guard builds
    /// it from a function's parameters) check their mapping against it.
    pub fn input_fields(&self, action: &str) -> Option<(Vec<ContractField>, bool)> {
        let p = &self.inner;
        let a = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize))?;
        let fields = a
            .input
            .fields
            .iter()
            .map(|f| ContractField {
                name: f.name.clone(),
                optional: f.optional,
                ty: f.ty.to_string(),
            })
            .collect();
        Some((fields, a.input.extra == crate::ast::ExtraFields::Ignore))
    }

    /// Whether a result of `action` is checked at all: it has an output
    /// contract or some `after` rule, or the policy's default for the
    /// `after` phase is not `allow`. False for an unknown action.
    pub fn checks_output(&self, action: &str) -> bool {
        let p = &self.inner;
        let Some(a) = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize)) else {
            return false;
        };
        a.output.is_some() || !a.after.is_empty() || p.default_after != Effect::Allow
    }

    /// A rough measure of the work deciding `action` in `phase` takes: one
    /// per rule that targets it, plus the expression nodes of its
    /// condition and limit (0 for an unknown action). Not a time, and it
    /// walks every rule of the action: for callers that choose once how to
    /// run an action's decisions (the Python SDK releases the GIL only for
    /// decisions heavy enough to gain from it).
    pub fn decision_weight(&self, action: &str, phase: Phase) -> usize {
        let p = &self.inner;
        let Some(a) = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize)) else {
            return 0;
        };
        let rules = match phase {
            Phase::Before => &a.before,
            Phase::After => &a.after,
        };
        fn nodes(node: &Node) -> usize {
            1 + node.children().into_iter().map(nodes).sum::<usize>()
        }
        rules
            .iter()
            .map(|r| {
                let limit = r.limit.as_ref().and_then(|l| l.cost.as_ref()).map_or(0, nodes);
                1 + r.cond.as_ref().map_or(0, nodes) + limit
            })
            .sum()
    }

    /// Names of the actions with contracts.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.inner.actions.iter().map(|a| a.name())
    }

    /// Paths of the fields marked `sensitive` that a request for `action`
    /// can carry (`input.card`, `actor.email`, `input.items[].secret`), for
    /// redaction in the audit log. Empty for an unknown action.
    pub fn sensitive_fields(&self, action: &str) -> Vec<String> {
        let p = &self.inner;
        let mut out = Vec::new();
        let Some(ir) = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize)) else {
            return out;
        };
        sensitive_paths(&ir.input, "input", &mut out);
        if let Some(o) = &ir.output {
            sensitive_paths(o, "output", &mut out);
        }
        sensitive_paths(&p.actor, "actor", &mut out);
        sensitive_paths(&p.snapshot, "snapshot", &mut out);
        out
    }

    /// Paths of the top-level fields marked `per_call` that a request for
    /// `action` can carry (`snapshot.tool_use_id`): they name one attempt,
    /// so what an approval covers leaves them out. The actor's and the
    /// snapshot's apply to every action.
    pub fn per_call_fields(&self, action: &str) -> Vec<String> {
        let p = &self.inner;
        let input = p
            .action_index
            .get(action)
            .and_then(|&i| p.actions.get(i as usize))
            .map(|a| &a.input);
        let mut out = Vec::new();
        for (root, obj) in [
            ("input", input),
            ("actor", Some(&p.actor)),
            ("snapshot", Some(&p.snapshot)),
        ] {
            for f in obj.iter().flat_map(|o| o.fields.iter()) {
                if f.per_call {
                    out.push(format!("{root}.{}", f.name));
                }
            }
        }
        out
    }

    /// What `action`'s rules of `phase` need of the state (nothing for an
    /// unknown action). A decision that needs some must be made with
    /// [`Prepared::decide_with_state`].
    pub fn action_state(&self, action: &str, phase: Phase) -> ActionState {
        let p = &self.inner;
        match p.action_index.get(action).and_then(|&i| p.actions.get(i as usize)) {
            Some(a) => {
                let needs = a.state(phase);
                ActionState {
                    reads: needs.reads,
                    writes: needs.writes,
                }
            }
            None => ActionState::default(),
        }
    }

    /// True when some decision of this policy reads or writes state
    /// (limits, session facts, recorded calls, labels).
    pub fn uses_state(&self) -> bool {
        self.inner.uses_state
    }

    /// The longest window a limit or a session function of this policy
    /// may use (`max_window`, 24h by default): older state can be pruned.
    pub fn max_window(&self) -> SignedDuration {
        self.inner.max_window
    }

    /// Every limit of the policy, in rule order.
    pub fn limits(&self) -> Vec<LimitInfo> {
        self.inner.rules.iter().filter_map(|r| r.limit.clone()).collect()
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.inner.rules.len()
    }

    /// Checks a request against its contracts. On a violation, returns the
    /// `block` decision that says why.
    pub fn prepare(&self, request: &Request) -> Result<Prepared<'_>, Box<Decision<'_>>> {
        self.prepare_inner(request)
            .map_err(|r| Box::new(self.refuse(request.phase, r)))
    }

    /// [`Policy::prepare`] for a request before the action runs, its values
    /// read through [`ContractValue`] rather than JSON (the Python binding
    /// reads its objects in place). The same checks as for JSON, in the same
    /// order: a request passes, and is prepared the same, from either.
    /// `None` for `input`, `actor` or `snapshot` is an empty object.
    pub fn prepare_before<V: ContractValue>(
        &self,
        action: &str,
        input: Option<V>,
        actor: Option<V>,
        snapshot: Option<V>,
        session: Option<&str>,
        time: Option<jiff::Timestamp>,
    ) -> Result<Prepared<'_>, Box<Decision<'_>>> {
        let parts = Parts {
            action,
            phase: Phase::Before,
            input,
            output: None,
            error: None,
            actor,
            snapshot,
            session,
            time,
        };
        self.prepare_parts(parts)
            .map_err(|r| Box::new(self.refuse(Phase::Before, r)))
    }

    fn prepare_inner<'r>(&self, request: &'r Request) -> Result<Prepared<'_>, Refusal<'r>> {
        self.prepare_parts(Parts {
            action: &request.action,
            phase: request.phase,
            input: Some(&request.input),
            output: request.output.as_ref(),
            error: request.error.as_deref(),
            actor: Some(&request.actor),
            snapshot: Some(&request.snapshot),
            session: request.session.as_deref(),
            time: request.time,
        })
    }

    pub(crate) fn prepare_parts<'r, V: ContractValue>(
        &self,
        request: Parts<'r, V>,
    ) -> Result<Prepared<'_>, Refusal<'r>> {
        let p = &self.inner;
        let Some(&action) = p.action_index.get(request.action) else {
            return Err(Refusal::UnknownAction {
                name: request.action,
                path: "action",
                why: "the policy has no contract for it",
            });
        };
        let ir = &p.actions[action as usize];
        let output_ty = ir.output.as_ref().filter(|_| request.phase == Phase::After);
        let mut values = Vec::with_capacity(
            ir.input.fields.len()
                + output_ty.map_or(0, |t| t.fields.len())
                + p.actor.fields.len()
                + p.snapshot.fields.len(),
        );
        check_root_into(request.input, &ir.input, "input", &mut values)?;
        let output_at = values.len();
        let has_output = match (request.phase, &ir.output) {
            (Phase::Before, _) => {
                if request.error.is_some() {
                    return Err(Refusal::Contract(Violation {
                        path: "error".into(),
                        message: "an error was given for phase `before`; set `phase: after` to check an outcome".into(),
                    }));
                }
                if request.output.is_some() {
                    return Err(Refusal::Contract(Violation {
                        path: "output".into(),
                        message: "an output was given for phase `before`; set `phase: after` to check an outcome"
                            .into(),
                    }));
                }
                false
            }
            // An action that failed has no output to check; its after rules
            // see `error` instead.
            (Phase::After, _) if request.error.is_some() => {
                if request.output.is_some() {
                    return Err(Refusal::Contract(Violation {
                        path: "error".into(),
                        message: "an outcome has either an output or an error, not both".into(),
                    }));
                }
                false
            }
            (Phase::After, Some(ty)) => match request.output {
                Some(o) => {
                    check_root_into(Some(o), ty, "output", &mut values)?;
                    true
                }
                None => {
                    return Err(Refusal::Contract(Violation {
                        path: "output".into(),
                        message: "phase `after` needs the action's output (or the error it reported)".into(),
                    }))
                }
            },
            // No output contract: nothing to check and nothing rules can read.
            (Phase::After, None) => false,
        };
        let actor_at = values.len();
        check_root_into(request.actor, &p.actor, "actor", &mut values)?;
        let snapshot_at = values.len();
        check_root_into(request.snapshot, &p.snapshot, "snapshot", &mut values)?;
        Ok(Prepared {
            policy: PolicyRef::Borrowed(&self.inner),
            action,
            phase: request.phase,
            roots: Roots {
                values,
                output_at,
                actor_at,
                snapshot_at,
                has_output,
            },
            now: request.time,
            error: request.error.map(|e| Value::Str(e.into())),
            // An empty id is no session: an integration that sends `""`
            // when it has none would otherwise put every such run in one
            // session, each reading the others' approvals and calls.
            session: request.session.filter(|s| !s.trim().is_empty()).map(str::to_string),
        })
    }

    /// The `block` decision of a request whose credential does not bind an
    /// actor field the policy requires bound: `why` is what
    /// [`Policy::unbound_required`] gave. Its basis is
    /// [`Basis::Credential`], no rule matched, its reason is `why`. For a
    /// surface that decides through the engine directly (`rein test`, an
    /// in-process binding with no credential) and must refuse as the
    /// runtime does.
    pub fn unbound_block(&self, phase: Phase, why: String) -> Decision<'_> {
        Decision::new(
            Effect::Block,
            phase,
            Basis::Credential(why),
            PolicyRef::Borrowed(&self.inner),
        )
    }

    fn violation(&self, phase: Phase, v: Violation) -> Decision<'_> {
        Decision::new(
            Effect::Block,
            phase,
            Basis::Contract(v),
            PolicyRef::Borrowed(&self.inner),
        )
    }

    /// The `block` decision of a refused request.
    pub(crate) fn refuse(&self, phase: Phase, refusal: Refusal<'_>) -> Decision<'_> {
        match refusal {
            Refusal::Contract(v) => self.violation(phase, v),
            Refusal::UnknownAction { name, path, why } => {
                Decision::unknown_action(phase, name, path, why, PolicyRef::Borrowed(&self.inner))
            }
        }
    }

    /// Decides a `before` request read back from the audit log, whose
    /// sensitive fields hold keyed hashes, when that can be done without
    /// them: `known(rule_id)` gives the outcome of a rule already known
    /// (whether it matched; a caller passes the recorded outcome of a rule
    /// that is the same in the policy that recorded the request, whose
    /// contracts are also the same), and every other rule of the action is
    /// evaluated, which it may be only if it reads no sensitive field
    /// ([`crate::compare::fields_read`]). Sensitive fields are not checked
    /// against the contract (the clear values passed it when recorded).
    ///
    /// `Err` says why the decision cannot be computed from what the record
    /// holds: a rule to evaluate reads a sensitive field (named), the
    /// action's rules read or write state, the policy combines by first
    /// match, or the request is not of phase `before`.
    pub fn decide_redacted(
        &self,
        request: &Request,
        known: &dyn Fn(&str) -> Option<bool>,
    ) -> Result<Decision<'_>, String> {
        let p = &self.inner;
        if request.phase != Phase::Before {
            return Err("only `before` requests are replayed".into());
        }
        if p.combining != Combining::DenyOverrides {
            return Err("the policy decides by first match, where rule order counts".into());
        }
        let Some(&action) = p.action_index.get(request.action.as_str()) else {
            // Refused on its name alone: no value is read.
            return Ok(self.decide(request));
        };
        let ir = &p.actions[action as usize];
        let needs = ir.state(Phase::Before);
        if needs.reads || needs.writes {
            return Err("its rules read or write state".into());
        }
        let rule_id = |r: &CompiledRule| p.rules.get(r.rule as usize).map_or("?", |i| i.id.as_str());
        for rule in &ir.before {
            let id = rule_id(rule);
            if known(id).is_none() {
                let reads = crate::compare::rule_reads(p, ir, rule);
                if let Some(field) = reads.first_sensitive() {
                    return Err(format!("rule `{id}` reads the sensitive field {field}"));
                }
            }
        }
        let laid_out = (|| {
            Ok::<_, Violation>((
                check_root_redacted(Some(&request.input), &ir.input, "input")?,
                check_root_redacted(Some(&request.actor), &p.actor, "actor")?,
                check_root_redacted(Some(&request.snapshot), &p.snapshot, "snapshot")?,
            ))
        })();
        let (input, actor, snapshot) = match laid_out {
            Ok(v) => v,
            Err(v) => return Ok(self.violation(Phase::Before, v)),
        };
        let prepared = Prepared {
            policy: PolicyRef::Borrowed(&self.inner),
            action,
            phase: Phase::Before,
            roots: Roots::from_parts(input, None, actor, snapshot),
            now: request.time,
            error: None,
            session: request.session.clone().filter(|s| !s.trim().is_empty()),
        };
        Ok(prepared.decide_known(known))
    }

    /// The `before` decision `action` gets when exactly the rules `matched`
    /// (by id) hold and no rule fails: its effect by the policy's combining
    /// (or the default, when none holds), its basis and its reasons, as
    /// [`Policy::decide`] would give them. `None` when an id is not a
    /// `before` rule of `action`, or under first-match combining when more
    /// than one is given. A replay compares it with a recorded decision to
    /// know that the decision was made by these rules (and not refused
    /// before them, or failed in one).
    pub fn decision_from_matches(&self, action: &str, matched: &[String]) -> Option<Decision<'_>> {
        let p = &self.inner;
        let ir = p.action_index.get(action).and_then(|&i| p.actions.get(i as usize))?;
        let mut indices = Matched::with_capacity(matched.len());
        let mut effect: Option<Effect> = None;
        for id in matched {
            let rule = ir
                .before
                .iter()
                .find(|r| p.rules.get(r.rule as usize).is_some_and(|i| i.id == *id))?;
            let e = p.rules.get(rule.rule as usize).map_or(Effect::Block, |r| r.effect);
            effect = Some(effect.map_or(e, |cur| cur.max(e)));
            indices.push(rule.rule);
        }
        if p.combining == Combining::FirstMatch && indices.len() > 1 {
            return None;
        }
        indices.sort_unstable();
        let (effect, basis) = match effect {
            Some(e) => (e, Basis::Rules),
            None => (p.default, Basis::Default),
        };
        let mut decision = Decision::new(effect, Phase::Before, basis, PolicyRef::Borrowed(&self.inner));
        decision.matched = indices;
        Some(decision)
    }

    /// Decides a request: contract check, then every rule that targets the
    /// action in the request's phase. Never fails: a broken contract or an
    /// evaluation error is a `block` decision that says why.
    pub fn decide(&self, request: &Request) -> Decision<'_> {
        // Not through `prepare`: a refusal needs no box.
        match self.prepare_inner(request) {
            Ok(p) => p.decide(),
            Err(r) => self.refuse(request.phase, r),
        }
    }

    /// Decides and records, for every rule considered, whether it matched
    /// and the value of each sub-expression.
    pub fn explain(&self, request: &Request) -> Explanation {
        match self.prepare(request) {
            Ok(p) => p.explain(),
            Err(d) => Explanation {
                decision: d.into_owned(),
                rules: Vec::new(),
            },
        }
    }
    /// Decides a request in Actra's shape, `{"action": {"type": "refund",
    /// "amount": 200}, "actor": {...}, "snapshot": {...}}`: `action.type`
    /// names the action and the other fields of `action` are its input.
    /// Anything that breaks the contracts, including what Actra would let
    /// through (a missing, non-string or undeclared `type`, a value of the
    /// wrong type, `null`, a list or an object), is a `block` naming the
    /// field.
    pub fn decide_actra(&self, input: &serde_json::Value) -> Decision<'_> {
        match self.prepare_actra(input) {
            Ok(p) => p.decide(),
            Err(d) => *d,
        }
    }

    /// [`Policy::explain`] for a request in Actra's shape.
    pub fn explain_actra(&self, input: &serde_json::Value) -> Explanation {
        match self.prepare_actra(input) {
            Ok(p) => p.explain(),
            Err(d) => Explanation {
                decision: d.into_owned(),
                rules: Vec::new(),
            },
        }
    }

    /// [`Policy::prepare`] for a request in Actra's shape.
    pub fn prepare_actra(&self, input: &serde_json::Value) -> Result<Prepared<'_>, Box<Decision<'_>>> {
        self.prepare_actra_inner(input)
            .map_err(|r| Box::new(self.refuse(Phase::Before, r)))
    }

    fn prepare_actra_inner<'r>(&self, input: &'r serde_json::Value) -> Result<Prepared<'_>, Refusal<'r>> {
        let parts = crate::actra::input::split(input)?;
        let p = &self.inner;
        let Some(&action) = p.action_index.get(parts.action_type) else {
            return Err(Refusal::UnknownAction {
                name: parts.action_type,
                path: "action.type",
                why: "the schema declares no such action",
            });
        };
        let ir = &p.actions[action as usize];
        let input = check_root(Some(parts.action), &ir.input, "action")?;
        let actor = check_root(parts.actor, &p.actor, "actor")?;
        let snapshot = check_root(parts.snapshot, &p.snapshot, "snapshot")?;
        Ok(Prepared {
            policy: PolicyRef::Borrowed(&self.inner),
            action,
            phase: Phase::Before,
            roots: Roots::from_parts(input, None, actor, snapshot),
            error: None,
            now: None,
            session: None,
        })
    }
}

impl<'p> Prepared<'p> {
    /// This prepared request, owning (a reference to) its policy: for a
    /// caller that keeps it past the borrow of the policy. Its decisions
    /// then each take a reference count ([`Prepared::decide`]).
    pub fn into_owned(self) -> Prepared<'static> {
        Prepared {
            policy: self.policy.into_owned(),
            action: self.action,
            phase: self.phase,
            roots: self.roots,
            now: self.now,
            error: self.error,
            session: self.session,
        }
    }

    /// The action's name.
    pub fn action(&self) -> &str {
        self.policy.actions.get(self.action as usize).map_or("", |a| a.name())
    }

    /// The session the request names (`None` for an empty or blank id,
    /// which names none).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The request's input after its contract check, rendered as JSON
    /// (what a session keeps of the call, before sensitive fields are
    /// hashed).
    pub fn input_json(&self) -> serde_json::Value {
        match self.policy.actions.get(self.action as usize) {
            Some(a) => Value::Object(self.roots.input().to_vec()).to_json(&Type::Object(a.input.clone())),
            None => serde_json::Value::Null,
        }
    }

    /// This request prepared for `other` without being checked again, when
    /// `other` has exactly this policy's contracts (actions, their input
    /// and output contracts and `tool:` facts, actor, snapshot): then its
    /// contract check would give the same typed values. `None` otherwise
    /// (prepare the request for `other` itself). Shadow mode decides a
    /// candidate policy this way, paying for the contract check once.
    pub fn under<'o>(&self, other: &'o Policy) -> Option<Prepared<'o>> {
        let (Some(mine), Some(theirs)) = (
            self.policy.contracts_fingerprint,
            other.compiled().contracts_fingerprint,
        ) else {
            return None;
        };
        // Equal fingerprints mean equal action ids; the name is checked
        // too, so that a policy whose fingerprint was carried over wrongly
        // can never decide a request by another action's rules.
        let same_action = match (
            self.policy.actions.get(self.action as usize),
            other.compiled().actions.get(self.action as usize),
        ) {
            (Some(a), Some(b)) => a.name() == b.name(),
            _ => false,
        };
        (mine == theirs && same_action).then(|| Prepared {
            policy: PolicyRef::Borrowed(&other.inner),
            action: self.action,
            phase: self.phase,
            roots: self.roots.clone(),
            now: self.now,
            error: self.error.clone(),
            session: self.session.clone(),
        })
    }

    /// Decides this request. A request whose rules read state (limits,
    /// session facts) is `block`ed: decide it with
    /// [`Prepared::decide_with_state`]. An action whose decisions only
    /// write state (a call that a session rule reads later, labels) is
    /// decided as usual, but nothing is recorded: a caller that keeps
    /// state must use [`Prepared::decide_with_state`] whenever
    /// [`Policy::action_state`] says `any()`, or later rules would not see
    /// the call.
    ///
    /// The decision borrows the policy as this request does: deciding one
    /// made by [`Policy::prepare`] changes no reference count; one made
    /// owned by [`Prepared::into_owned`] takes one per decision.
    pub fn decide(&self) -> Decision<'p> {
        match self.every_flat() {
            // Built in place: a `Decision` is large to move.
            Some(every) => self.finish_every(every),
            None => self.run(&mut NoTrace, |_, _, _| {}),
        }
    }

    /// What a rule of `action` reads for this request: its roots, the
    /// action's `tool:` facts, the time, the error reported; with a state,
    /// the state and the session it is read for.
    #[inline(always)]
    fn env<'a>(&'a self, action: &'a crate::ir::ActionIr, state: Option<&'a dyn StateView>) -> Env<'a> {
        Env {
            input: self.roots.input(),
            output: self.roots.output(),
            actor: self.roots.actor(),
            snapshot: self.roots.snapshot(),
            tool: action.tool_values(),
            action: &action.name,
            now: self.now,
            error: self.error.as_ref(),
            session: state.and(self.session.as_deref()),
            state,
        }
    }

    /// The decision's fast path: native combining over the action's flat
    /// program alone ([`Program::every`]), when the program is marked
    /// [`Program::fast`] (the action's rules of the phase neither read nor
    /// write state, it has no shadow rules for the phase, the policy
    /// combines natively) and knows every rule's outcome. `None`
    /// otherwise: the caller decides through [`Prepared::run`], which gives
    /// the same decision wherever this one gives one (the tree evaluator
    /// agrees with the flat program wherever that answers). Reads, of the
    /// action, its program's one cache line and its `tool:` facts.
    #[inline(always)]
    fn every_flat(&self) -> Option<Every> {
        let action = self.policy.actions.get(self.action as usize)?;
        let program = action.flat(self.phase);
        if !program.fast {
            return None;
        }
        let env = self.env(action, None);
        program.every(&env)
    }

    /// The decision of [`Prepared::every_flat`]'s answer: the strongest
    /// effect of the rules that held, else the default.
    #[inline(always)]
    fn finish_every(&self, every: Every) -> Decision<'p> {
        match every.effect {
            Some(e) => self.finish(e, Basis::Rules, every.matched, Vec::new()),
            None => self.finish(self.default_effect(), Basis::Default, every.matched, Vec::new()),
        }
    }

    /// Decides this request reading what its rules need through `state`,
    /// and returns what the decision writes if it is finally allowed (see
    /// [`StateEffects::writes`]). For an action without stateful rules this
    /// is [`Prepared::decide`] with no effects.
    pub fn decide_with_state(&self, state: &dyn StateView) -> (Decision<'p>, StateEffects) {
        // An action without stateful rules: `run_with_state` would decide
        // as `decide` does, with no effects but the session.
        if let Some(every) = self.every_flat() {
            let d = self.finish_every(every);
            let effects = StateEffects {
                session: self.session.clone(),
                ..StateEffects::default()
            };
            return (d, effects);
        }
        self.run_with_state(state, &mut NoTrace, |_, _, _| {})
    }

    /// [`Prepared::explain`] with state, as [`Prepared::decide_with_state`].
    pub fn explain_with_state(&self, state: &dyn StateView) -> (Explanation, StateEffects) {
        self.explain_inner(Some(state))
    }

    /// [`Prepared::decide`] with the outcome of some rules given (see
    /// [`Policy::decide_redacted`]); native combining.
    fn decide_known(&self, known: &dyn Fn(&str) -> Option<bool>) -> Decision<'p> {
        let policy = &self.policy;
        let Some(action) = policy.actions.get(self.action as usize) else {
            return self.finish(
                Effect::Block,
                Basis::EvalError,
                Vec::new(),
                vec![(u32::MAX, "internal: unknown action id".into())],
            );
        };
        let env = Env {
            input: self.roots.input(),
            output: None,
            actor: self.roots.actor(),
            snapshot: self.roots.snapshot(),
            tool: action.tool_values(),
            action: &action.name,
            now: self.now,
            error: None,
            state: None,
            session: None,
        };
        let mut frame = Frame {
            locals: Vec::new(),
            tracer: &mut NoTrace,
        };
        let mut matched = Matched::new();
        let mut errors = Vec::new();
        let mut effect: Option<Effect> = None;
        let rules = action.rules(self.phase);
        for o in action.flat(self.phase).outcomes(rules, &policy.rules, &env, true) {
            let outcome = match policy.rules.get(o.rule as usize).and_then(|i| known(&i.id)) {
                Some(known) => Ok(known),
                None => resolve(&o, rules, &env, &mut frame),
            };
            match outcome {
                Ok(true) => {
                    matched.push(o.rule);
                    effect = Some(effect.map_or(o.effect, |cur| cur.max(o.effect)));
                }
                Ok(false) => {}
                Err(e) => errors.push((o.rule, e.0)),
            }
        }
        if !errors.is_empty() {
            return self.finish(Effect::Block, Basis::EvalError, matched, errors);
        }
        match effect {
            Some(e) => self.finish(e, Basis::Rules, matched, errors),
            None => self.finish(self.default_effect(), Basis::Default, matched, errors),
        }
    }

    /// Decides and traces every rule.
    pub fn explain(&self) -> Explanation {
        self.explain_inner(None).0
    }

    fn explain_inner(&self, state: Option<&dyn StateView>) -> (Explanation, StateEffects) {
        let mut rules = Vec::new();
        let mut tracer = Recorder::default();
        let after_rule = |rule, outcome, tracer: &mut Recorder| {
            let steps = std::mem::take(&mut tracer.steps);
            rules.push((rule, outcome, steps));
        };
        let (decision, effects) = match state {
            Some(state) => self.run_with_state(state, &mut tracer, after_rule),
            None => (self.run(&mut tracer, after_rule), StateEffects::default()),
        };
        let policy = &self.policy;
        let rules = rules
            .into_iter()
            .filter_map(|(i, outcome, steps)| {
                let info = policy.rules.get(i as usize)?;
                let file = policy.files.get(info.file)?;
                let condition = info
                    .when_span
                    .and_then(|s| file.text().get(s.start as usize..s.end as usize))
                    .map(str::to_string);
                let mut seen: Vec<(String, serde_json::Value)> = Vec::new();
                for (span, value) in steps {
                    // The whole condition is the rule's outcome; repeated
                    // reads of the same value add nothing.
                    if Some(span) == info.when_span {
                        continue;
                    }
                    let expr = one_line(file.text().get(span.start as usize..span.end as usize).unwrap_or("?"));
                    if !seen.iter().any(|(e, v)| *e == expr && *v == value) {
                        seen.push((expr, value));
                    }
                }
                Some(RuleTrace {
                    id: info.id.clone(),
                    effect: info.effect,
                    condition: condition.map(|c| one_line(&c)),
                    outcome,
                    steps: seen.into_iter().map(|(expr, value)| Step { expr, value }).collect(),
                    shadow: info.shadow,
                })
            })
            .collect();
        (
            Explanation {
                decision: decision.into_owned(),
                rules,
            },
            effects,
        )
    }

    fn run<T: Tracer>(&self, tracer: &mut T, mut after_rule: impl FnMut(u32, Outcome, &mut T)) -> Decision<'p> {
        let policy = &self.policy;
        let Some(action) = policy.actions.get(self.action as usize) else {
            return self.finish(
                Effect::Block,
                Basis::EvalError,
                Vec::new(),
                vec![(u32::MAX, "internal: unknown action id".into())],
            );
        };
        // Fail closed: deciding without state would read an empty one.
        if action.state(self.phase).reads {
            return self.finish(Effect::Block, Basis::State(NEEDS_STATE.into()), Vec::new(), Vec::new());
        }
        let env = self.env(action, None);
        let mut frame = Frame {
            locals: Vec::new(),
            tracer,
        };
        let rules = action.rules(self.phase);
        let program = action.flat(self.phase);
        // The combining mode is chosen once per decision, outside the rule
        // loops, so that the native path pays nothing for Actra's.
        let mut decision = match policy.combining {
            Combining::DenyOverrides => self.every_match(rules, program, &env, &mut frame, &mut after_rule),
            Combining::FirstMatch => self.first_match(rules, program, &env, &mut frame, &mut after_rule),
        };
        // One test per decision, none per rule: without shadow rules the
        // enforced path is what it was.
        let shadow = action.shadow_rules(self.phase);
        if !shadow.is_empty() {
            let program = action.shadow_flat(self.phase);
            self.shadow_pass(&mut decision, shadow, program, &env, &mut frame, after_rule);
        }
        decision
    }

    /// Evaluates the action's `mode: shadow` rules after the enforced ones
    /// and notes on `decision` which matched and what its effect would
    /// have been with them enforced; its own effect never changes. Only
    /// when the enforced rules were evaluated (a contract violation or a
    /// refusal before the rules decides without any rule).
    #[cold]
    fn shadow_pass<T: Tracer>(
        &self,
        decision: &mut Decision<'p>,
        rules: &[CompiledRule],
        program: &Program,
        env: &Env<'_>,
        frame: &mut Frame<'_, T>,
        mut after_rule: impl FnMut(u32, Outcome, &mut T),
    ) {
        if !matches!(decision.basis, Basis::Rules | Basis::Default | Basis::EvalError) {
            return;
        }
        let (matched, errors, shadow_effect) = self.evaluate_every(rules, program, env, frame, &mut after_rule);
        // Combined as if the shadow rules were among the enforced ones: an
        // error (theirs or the enforced rules') blocks; otherwise the
        // strongest match, or the default when none matched at all.
        let effect = if !errors.is_empty() || decision.basis == Basis::EvalError {
            Effect::Block
        } else {
            let enforced = (decision.basis == Basis::Rules).then_some(decision.effect);
            match (enforced, shadow_effect) {
                (Some(a), Some(b)) => a.max(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => decision.effect,
            }
        };
        decision.shadow = Some(Box::new(ShadowNotes {
            matched,
            errors,
            effect,
        }));
    }

    /// Evaluates every rule of `rules` in order: the rules that held, the
    /// rules that failed (with why), and the strongest effect among those
    /// that held. The one loop of native combining and of shadow rules.
    /// `program` (the flat form of `rules`) decides what it can; the tree
    /// evaluator the rest, and every rule of a traced decision.
    ///
    /// Every rule is evaluated even after a `block` matched: the decision
    /// lists every rule that held and every one that failed.
    #[inline(always)]
    fn evaluate_every<T: Tracer>(
        &self,
        rules: &[CompiledRule],
        program: &Program,
        env: &Env<'_>,
        frame: &mut Frame<'_, T>,
        after_rule: &mut impl FnMut(u32, Outcome, &mut T),
    ) -> (Matched, Vec<(u32, String)>, Option<Effect>) {
        let policy = &self.policy;
        let mut matched = Matched::new();
        let mut errors = Vec::new();
        let mut effect: Option<Effect> = None;
        for o in program.outcomes(rules, &policy.rules, env, !T::ENABLED) {
            let outcome = resolve(&o, rules, env, frame);
            match &outcome {
                Ok(true) => {
                    matched.push(o.rule);
                    effect = Some(effect.map_or(o.effect, |cur| cur.max(o.effect)));
                }
                Ok(false) => {}
                Err(e) => errors.push((o.rule, e.0.clone())),
            }
            after_rule(o.rule, Outcome::from(outcome), &mut *frame.tracer);
        }
        (matched, errors, effect)
    }

    /// Native combining: every rule is evaluated; `block` beats
    /// `require_approval` beats `allow`; an evaluation error blocks.
    /// Inlined into `run` so that the native hot path stays as it was
    /// before the combining modes were split (measured: the refund
    /// example's prepared decision is not slower, see the commit message).
    #[inline(always)]
    fn every_match<T: Tracer>(
        &self,
        rules: &[CompiledRule],
        program: &Program,
        env: &Env<'_>,
        frame: &mut Frame<'_, T>,
        mut after_rule: impl FnMut(u32, Outcome, &mut T),
    ) -> Decision<'p> {
        let (matched, errors, effect) = self.evaluate_every(rules, program, env, frame, &mut after_rule);
        if !errors.is_empty() {
            return self.finish(Effect::Block, Basis::EvalError, matched, errors);
        }
        match effect {
            Some(e) => self.finish(e, Basis::Rules, matched, errors),
            None => self.finish(self.default_effect(), Basis::Default, matched, errors),
        }
    }

    /// Actra's combining: rules in list order, the first that holds decides
    /// alone. A rule that fails to evaluate blocks, since whether it would
    /// have decided is unknown.
    fn first_match<T: Tracer>(
        &self,
        rules: &[CompiledRule],
        program: &Program,
        env: &Env<'_>,
        frame: &mut Frame<'_, T>,
        mut after_rule: impl FnMut(u32, Outcome, &mut T),
    ) -> Decision<'p> {
        let policy = &self.policy;
        for o in program.outcomes(rules, &policy.rules, env, !T::ENABLED) {
            let outcome = resolve(&o, rules, env, frame);
            let decided = match &outcome {
                Ok(true) => Some(self.finish(o.effect, Basis::Rules, Matched::from_slice(&[o.rule]), Vec::new())),
                Ok(false) => None,
                Err(e) => Some(self.finish(
                    Effect::Block,
                    Basis::EvalError,
                    Matched::new(),
                    vec![(o.rule, e.0.clone())],
                )),
            };
            after_rule(o.rule, Outcome::from(outcome), &mut *frame.tracer);
            if let Some(d) = decided {
                return d;
            }
        }
        self.finish(self.default_effect(), Basis::Default, Vec::new(), Vec::new())
    }

    /// The stateful path: the rules of an action that reads or writes
    /// state, with limits and session facts read through `state`. Native
    /// combining only (Actra's files have no state).
    fn run_with_state<T: Tracer>(
        &self,
        state: &dyn StateView,
        tracer: &mut T,
        mut after_rule: impl FnMut(u32, Outcome, &mut T),
    ) -> (Decision<'p>, StateEffects) {
        let policy = &self.policy;
        let mut effects = StateEffects {
            session: self.session.clone(),
            ..StateEffects::default()
        };
        let Some(action) = policy.actions.get(self.action as usize) else {
            return (self.run(tracer, after_rule), effects);
        };
        let needs = *action.state(self.phase);
        if !(needs.reads || needs.writes) {
            return (self.run(tracer, after_rule), effects);
        }
        if let (Some(rule), None) = (needs.session_rule, &self.session) {
            let id = policy.rules.get(rule as usize).map_or("?", |r| r.id.as_str());
            let why = format!("session required: rule `{id}` reads the session, and the request names none");
            return (
                self.finish(Effect::Block, Basis::State(why), Vec::new(), Vec::new()),
                effects,
            );
        }
        let env = self.env(action, Some(state));
        let mut frame = Frame {
            locals: Vec::new(),
            tracer,
        };
        let mut matched = Matched::new();
        let mut errors = Vec::new();
        let mut effect: Option<Effect> = None;
        let mut notes = Vec::new();
        let rules = action.rules(self.phase);
        for o in action
            .flat(self.phase)
            .outcomes(rules, &policy.rules, &env, !T::ENABLED)
        {
            let rule_effect = o.effect;
            let mut outcome = resolve(&o, rules, &env, &mut frame);
            // Only a rule that holds reads its limit.
            let limit = match outcome {
                Ok(true) => rules.get(o.pos).and_then(|r| r.limit.as_deref()),
                _ => None,
            };
            if let Some(limit) = limit {
                let id = policy.rules.get(o.rule as usize).map_or("?", |r| r.id.as_str());
                match self.check_limit(limit, id, &env, &mut frame, state) {
                    Ok(check) => {
                        if T::ENABLED {
                            frame.tracer.limit(
                                limit.span,
                                serde_json::json!({
                                    "bucket": check.bucket.describe(),
                                    "used": check.used.normalize().to_string(),
                                    "cost": check.cost.normalize().to_string(),
                                    "max": limit.max.normalize().to_string(),
                                    "over": check.over,
                                }),
                            );
                        }
                        let hit = if rule_effect == Effect::Allow {
                            !check.over
                        } else {
                            check.over
                        };
                        if hit && rule_effect != Effect::Allow {
                            notes.push(LimitNote {
                                rule: o.rule,
                                reason: format!(
                                    "{id}: {} of {} used for {} in the last {}",
                                    check.used.normalize(),
                                    limit.max.normalize(),
                                    shorten(&check.bucket.describe(), MAX_BUCKET_IN_REASON),
                                    format_duration(limit.window)
                                ),
                                retry_after_seconds: check.retry_after_seconds,
                            });
                        }
                        // A call over an allow rule's limit is not allowed by
                        // it, so it takes nothing from that bucket; every
                        // other call the rule lets through counts (if it is
                        // finally allowed, an approved re-send included).
                        if !(rule_effect == Effect::Allow && check.over) {
                            effects.consume.push(Consumption {
                                bucket: check.bucket,
                                amount: check.cost,
                            });
                        }
                        outcome = Ok(hit);
                    }
                    Err(LimitFailure::Eval(e)) => outcome = Err(e),
                    Err(LimitFailure::State(e)) => {
                        return (
                            self.finish(Effect::Block, Basis::State(e.to_string()), Vec::new(), Vec::new()),
                            effects,
                        )
                    }
                }
            }
            match &outcome {
                Ok(true) => {
                    matched.push(o.rule);
                    effect = Some(effect.map_or(rule_effect, |cur| cur.max(rule_effect)));
                }
                Ok(false) => {}
                Err(e) => errors.push((o.rule, e.0.clone())),
            }
            after_rule(o.rule, Outcome::from(outcome), &mut *frame.tracer);
        }
        let mut decision = if !errors.is_empty() {
            self.finish(Effect::Block, Basis::EvalError, matched, errors)
        } else {
            match effect {
                Some(e) => self.finish(e, Basis::Rules, matched, Vec::new()),
                None => self.finish(self.default_effect(), Basis::Default, matched, Vec::new()),
            }
        };
        if !notes.is_empty() {
            decision.limits = Some(Box::new(LimitNotes { notes }));
        }
        // Shadow rules read no state (the checker refuses it) and write
        // none: they add no labels, consume nothing and record no call.
        let shadow = action.shadow_rules(self.phase);
        if !shadow.is_empty() {
            let program = action.shadow_flat(self.phase);
            self.shadow_pass(&mut decision, shadow, program, &env, &mut frame, &mut after_rule);
        }
        effects.labels = decision.labels().into_iter().map(str::to_string).collect();
        if action.recorded && self.session.is_some() {
            let hash = |v: &serde_json::Value| state.keyed_hash(v);
            match self.phase {
                Phase::Before => {
                    effects.call = Some(SessionCall {
                        decision_id: String::new(),
                        action: action.name().to_string(),
                        time: self.now.unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                        effect: decision.effect,
                        input: render_hashed(
                            &Value::Object(self.roots.input().to_vec()),
                            &Type::Object(action.input.clone()),
                            &hash,
                        ),
                        output: None,
                    })
                }
                Phase::After => {
                    if let (Some(output), Some(ty)) = (self.roots.output(), &action.output) {
                        effects.output = Some(render_hashed(
                            &Value::Object(output.to_vec()),
                            &Type::Object(ty.clone()),
                            &hash,
                        ));
                    }
                }
            }
        }
        (decision, effects)
    }

    /// A limit's bucket, this call's cost, and whether it would go over.
    fn check_limit<'a, T: Tracer>(
        &self,
        limit: &'a LimitIr,
        rule: &str,
        env: &Env<'a>,
        frame: &mut Frame<'_, T>,
        state: &dyn StateView,
    ) -> Result<LimitCheck, LimitFailure> {
        let now = self.now.ok_or_else(|| {
            LimitFailure::Eval(EvalError(
                "the request carries no time, so the limit's window cannot be placed".into(),
            ))
        })?;
        let mut per = Vec::with_capacity(limit.per.len());
        for key in &limit.per {
            let v = eval_value(&key.node, env, frame).map_err(LimitFailure::Eval)?;
            let text = if key.hashed {
                let hash = state.keyed_hash(&v.to_json(&key.node.ty));
                serde_json::Value::String(hash).to_string()
            } else {
                key_text(&v, &key.node.ty)
            };
            per.push((key.text.clone(), text));
        }
        let bucket = BucketKey {
            rule: rule.to_string(),
            per,
        };
        let cost = match &limit.cost {
            None => Decimal::ONE,
            Some(n) => {
                let v = eval_value(n, env, frame).map_err(LimitFailure::Eval)?;
                value_decimal(&v)
                    .filter(|d| !d.is_sign_negative() || d.is_zero())
                    .ok_or_else(|| {
                        LimitFailure::Eval(EvalError(format!(
                            "the amount {} cannot be counted exactly against the limit",
                            v.to_json(&n.ty)
                        )))
                    })?
            }
        };
        let room = limit
            .max
            .checked_sub(cost)
            .ok_or_else(|| LimitFailure::Eval(EvalError("the amount is too large for the limit".into())))?;
        let used = state
            .limit_use(&LimitQuery {
                bucket: &bucket,
                window: limit.window,
                now,
                room,
            })
            .map_err(LimitFailure::State)?;
        let over = used.used.checked_add(cost).is_none_or(|total| total > limit.max);
        Ok(LimitCheck {
            bucket,
            cost,
            used: used.used,
            over,
            retry_after_seconds: used.retry_after_seconds,
        })
    }

    fn default_effect(&self) -> Effect {
        match self.phase {
            Phase::Before => self.policy.default,
            Phase::After => self.policy.default_after,
        }
    }

    /// The decision: `matched` as a [`Matched`] (a `Vec` is taken too; a
    /// few matches stay off the heap only from a `Matched`).
    fn finish(
        &self,
        effect: Effect,
        basis: Basis,
        matched: impl Into<Matched>,
        errors: Vec<(u32, String)>,
    ) -> Decision<'p> {
        // A borrowed policy is copied, an owned one counted once more.
        let mut decision = Decision::new(effect, self.phase, basis, self.policy.clone());
        decision.matched = matched.into();
        decision.errors = errors;
        decision
    }
}

/// A key's value as canonical JSON text, without building a JSON value for
/// the scalars keys are.
fn key_text(v: &Value, ty: &Type) -> String {
    match v {
        Value::Str(s) => serde_json::Value::String(s.to_string()).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_json(ty).to_string(),
    }
}

/// Longest description of a bucket a limit's reason quotes: keys are
/// request values, and a reason is stored with every decision.
const MAX_BUCKET_IN_REASON: usize = 200;

/// `text` cut to at most `max` bytes on a character boundary, with `…`
/// when cut.
fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// Why [`Prepared::decide`] refuses an action whose rules read state.
const NEEDS_STATE: &str =
    "this decision needs state (limits or session rules): decide it through a runtime or with a state";

/// What a limit found for one call.
struct LimitCheck {
    bucket: BucketKey,
    cost: Decimal,
    used: Decimal,
    over: bool,
    retry_after_seconds: Option<u64>,
}

/// Why a limit could not be checked: its expressions (the rule fails), or
/// the state (the decision fails).
enum LimitFailure {
    Eval(EvalError),
    State(StateError),
}

/// How one rule's condition came out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "error")]
pub enum Outcome {
    /// The condition held (or the rule has none).
    Matched,
    /// The condition did not hold.
    NotMatched,
    /// The condition failed to evaluate.
    Error(String),
}

impl From<Result<bool, EvalError>> for Outcome {
    fn from(r: Result<bool, EvalError>) -> Self {
        match r {
            Ok(true) => Outcome::Matched,
            Ok(false) => Outcome::NotMatched,
            Err(e) => Outcome::Error(e.0),
        }
    }
}

/// A decision with the trace of every rule considered.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The decision (owning its policy: explaining is not the hot path).
    pub decision: Decision<'static>,
    /// One entry per rule considered, in policy order. Empty when the
    /// request broke its contract (no rule was considered).
    pub rules: Vec<RuleTrace>,
}

/// How one rule was evaluated.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleTrace {
    /// The rule id.
    pub id: String,
    /// The rule's effect.
    pub effect: Effect,
    /// The condition's source text; `None` when the rule has none.
    pub condition: Option<String>,
    /// Whether it matched.
    pub outcome: Outcome,
    /// Each evaluated sub-expression and its value, innermost first.
    pub steps: Vec<Step>,
    /// A `mode: shadow` rule: evaluated and shown, never enforced.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// One evaluated sub-expression.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// Its source text.
    pub expr: String,
    /// Its value as JSON, or `{"error": ...}`.
    pub value: serde_json::Value,
}

impl Explanation {
    /// The JSON form of `rein explain --json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "decision": self.decision.to_json(),
            "rules": self.rules,
        })
    }
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.decision;
        writeln!(f, "decision: {}", d.effect())?;
        for r in d.reasons() {
            writeln!(f, "  reason: {r}")?;
        }
        if let Some(shadow) = d.shadow_rules() {
            let ids: Vec<&str> = shadow.rules.iter().map(|r| r.id.as_str()).collect();
            let matched = if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            };
            writeln!(
                f,
                "  shadow: {} with the shadow rules enforced (matched: {matched})",
                shadow.effect
            )?;
        }
        if self.rules.is_empty() && d.violation().is_none() {
            writeln!(f, "no rule targets this action in phase `{}`", d.phase().as_str())?;
        }
        for rule in &self.rules {
            let mark = match &rule.outcome {
                Outcome::Matched => "matched".to_string(),
                Outcome::NotMatched => "not matched".to_string(),
                Outcome::Error(e) => format!("error: {e}"),
            };
            let mode = if rule.shadow { ", shadow" } else { "" };
            writeln!(f, "\nrule {} ({}{mode}): {mark}", rule.id, rule.effect)?;
            match &rule.condition {
                Some(c) => writeln!(f, "  when: {c}")?,
                None => writeln!(f, "  when: (always)")?,
            }
            for step in &rule.steps {
                writeln!(f, "    {} = {}", step.expr, step.value)?;
            }
        }
        Ok(())
    }
}

/// Source text on one line: YAML block scalars keep their line breaks.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Records (span, value) of evaluated non-constant nodes.
#[derive(Default)]
struct Recorder {
    steps: Vec<(crate::source::Span, serde_json::Value)>,
}

impl Tracer for Recorder {
    fn limit(&mut self, span: crate::source::Span, found: serde_json::Value) {
        self.steps.push((span, found));
    }

    fn record(&mut self, node: &Node, value: &Result<Cow<'_, Value>, EvalError>) {
        if matches!(node.kind, NodeKind::Const(_)) {
            return;
        }
        let v = match value {
            Ok(v) => v.to_json(&node.ty),
            Err(e) => serde_json::json!({ "error": e.0 }),
        };
        self.steps.push((node.span, v));
    }
}

fn sensitive_paths(obj: &crate::types::ObjectType, prefix: &str, out: &mut Vec<String>) {
    for f in &obj.fields {
        let path = format!("{prefix}.{}", f.name);
        if f.sensitive {
            out.push(path.clone());
        }
        let mut ty = &f.ty;
        let mut path = path;
        while let crate::types::Type::List(inner) | crate::types::Type::Map(inner) = ty {
            ty = inner;
            path.push_str("[]");
        }
        if let crate::types::Type::Object(inner) = ty {
            sensitive_paths(inner, &path, out);
        }
    }
}

/// `.yaml`/`.yml` files, except policy test files (`*.test.yaml`), which
/// sit beside the policies they test.
fn is_policy_file_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.ends_with(".test.yaml") && !name.ends_with(".test.yml")
}

/// Named as a policy test file (`*.test.yaml`, `*.test.yml`).
fn is_test_file_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// Reads policy files and directories; problems become diagnostics.
pub(crate) fn read_files<P: AsRef<Path>>(paths: &[P], diags: &mut Vec<Diagnostic>) -> Vec<SourceFile> {
    let mut list: Vec<PathBuf> = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            let mut found = Vec::new();
            collect_yaml(p, &mut found, diags, 0);
            found.sort();
            if found.is_empty() {
                diags.push(Diagnostic::general(format!(
                    "`{}` holds no .yaml or .yml file",
                    p.display()
                )));
            }
            list.extend(found);
        } else if p.is_file() && is_test_file_name(p) {
            // Read as a policy it would only earn "unknown key `policy`,
            // `cases`": say what it is instead.
            diags.push(Diagnostic::general(format!(
                "`{}` is a policy test file (`policy:` and `cases:`), not a policy: give the policy it names, \
                 or run its cases with `rein test {}`",
                p.display(),
                p.display()
            )));
        } else {
            list.push(p.to_path_buf());
        }
    }
    let mut out = Vec::new();
    for path in list {
        let name = path.display().to_string();
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_POLICY_FILE_BYTES => {
                diags.push(Diagnostic::general(format!(
                    "`{name}` is {} bytes; policy files are limited to {MAX_POLICY_FILE_BYTES} bytes",
                    m.len()
                )));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                diags.push(Diagnostic::general(format!("cannot read `{name}`: {e}")));
                continue;
            }
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => out.push(SourceFile::new(name, text)),
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let valid = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
                    let file = SourceFile::new(name.clone(), valid);
                    diags.push(Diagnostic::error(
                        &file,
                        crate::source::Span::new(at, at),
                        format!("the file is not valid UTF-8 (bad byte at offset {at})"),
                    ));
                }
            },
            Err(e) => diags.push(Diagnostic::general(format!("cannot read `{name}`: {e}"))),
        }
    }
    out
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>, depth: usize) {
    if depth > 16 {
        diags.push(Diagnostic::general(format!("`{}` is nested too deeply", dir.display())));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diagnostic::general(format!(
                "cannot read directory `{}`: {e}",
                dir.display()
            )));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out, diags, depth + 1);
        } else if is_policy_file_name(&path) {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
default: allow
contracts:
  actions:
    refund:
      input:
        amount: int
rules:
  - id: large
    action: refund
    when: input.amount > 100
    effect: block
  - id: any
    action: refund
    effect: allow
"#;

    /// Threads sharing a policy would all write its reference count: a
    /// decision borrows it instead, on every path that decides.
    #[test]
    fn deciding_takes_no_reference_to_the_policy() {
        let policy = Policy::from_yaml_str(POLICY).unwrap();
        let references = || Arc::strong_count(&policy.inner);
        let before = references();
        let big = Request::new("refund").input(serde_json::json!({"amount": 500}));
        let unknown = Request::new("refnd");
        let prepared = policy.prepare(&big).unwrap();
        let kept = [
            prepared.decide(),
            policy.decide(&big),
            policy.decide(&unknown),
            policy
                .decide_json_str(r#"{"action": "refund", "input": {"amount": 500}}"#)
                .unwrap(),
            policy.decide_json_str(r#"{"action": "refnd"}"#).unwrap(),
        ];
        assert_eq!(references(), before);
        assert_eq!(
            kept.iter().map(Decision::effect).collect::<Vec<_>>(),
            [Effect::Block; 5]
        );
        assert_eq!(kept[0].rules(), ["large", "any"]);
        // Kept longer: one reference each, given back when dropped.
        let owned: Vec<Decision<'static>> = kept.into_iter().map(Decision::into_owned).collect();
        assert_eq!(references(), before + 5);
        let prepared = prepared.into_owned();
        assert_eq!(references(), before + 6);
        drop(owned);
        assert_eq!(prepared.decide().rules(), ["large", "any"]);
        drop(prepared);
        assert_eq!(references(), before);
    }
}
