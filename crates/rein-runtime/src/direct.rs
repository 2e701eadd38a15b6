//! Entry points for callers that see an action's output without having
//! asked through [`Runtime::decide`] in the same process (coding-agent
//! hooks: one process per event), and that look approvals up by request.

use super::*;

/// How many of the newest approvals [`Runtime::approval_for`] looks at.
const APPROVAL_SCAN: u64 = 1_000;

impl Runtime {
    /// Checks an action's output against the output contract and the
    /// `after` rules of a request decided elsewhere (another process, or a
    /// hook that only sees the result). Recorded like any decision; `block`
    /// means the output must be withheld.
    ///
    /// `client` is the authenticated client that reports it (a server
    /// token's name; `None` without one): the record names it, and the
    /// session the request names is that client's ([`scoped_session`]).
    pub async fn check_output(&self, mut request: Request, output: serde_json::Value, client: Option<&str>) -> Answer {
        let started = Instant::now();
        let mut timer = trace::Timer::start();
        let now = Timestamp::now();
        // As in `decide_from`: the state sees the scoped session, the
        // record the one sent.
        let sent_session = request.session.clone();
        scope_session(&mut request, client);
        request.phase = Phase::After;
        request.output = Some(output);
        if request.time.is_none() || !self.config.trust_request_time {
            request.time = Some(now);
        }
        let loaded = self.policy.load_full();
        let decision_id = uuid::Uuid::now_v7().to_string();
        let mut reserved = None;
        let time = request.time.unwrap_or(now);
        let candidate = self.shadow.load_full();
        let policy = &loaded.policy;
        let stateful = policy.uses_state() && policy.action_state(&request.action, Phase::After).any();
        let candidate_stateful = candidate
            .as_deref()
            .is_some_and(|c| shadow::needs_state(c, &request, Phase::After));
        // On a shared store, the state lease (see `decide_bound`).
        timer.begin("rein.state");
        let mut lease = if (stateful || candidate_stateful) && self.state.shared() {
            self.state.enter().await
        } else {
            None
        };
        timer.end();
        let early = candidate
            .as_ref()
            .filter(|_| candidate_stateful)
            .map(|c| shadow::decide_candidate(c, &request, None, None, &self.state, Access::of(&lease)));
        if !stateful {
            if let Some(Ok(guard)) = &mut lease {
                guard.done();
            }
            lease = None;
        }
        let mut rules_record = None;
        let (mut answer, enforced) = self.decide_after(
            &loaded.policy,
            &request,
            &decision_id,
            time,
            &mut reserved,
            &mut rules_record,
            Access::of(&lease),
            &mut timer,
        );
        let candidate_record = early.or_else(|| {
            candidate
                .as_ref()
                .map(|c| shadow::decide_candidate(c, &request, None, None, &self.state, Access::of(&lease)))
        });
        let output = request.output.take();
        request.session = sent_session;
        let sensitive = loaded.sensitive(&request.action);
        let known = loaded.policy.has_action(&request.action);
        let (mut entry, _) = self.entry(
            sensitive,
            known,
            &decision_id,
            &mut request,
            &answer,
            output,
            None,
            None,
            started,
            now,
        );
        entry.client = client.map(str::to_string);
        entry.shadow = shadow::record_value(enforced, rules_record, candidate_record);
        entry.trace = timer.parent.take();
        let traced_action = timer.on().then(|| entry.action.clone());
        // The call this output belongs to was decided elsewhere, under
        // another id: the output cannot be tied to it, so it is not kept
        // (the mirror has no call of this fresh id to attach it to either);
        // the labels the after rules attach are.
        let writes = reserved
            .as_ref()
            .map(|r| {
                r.writes
                    .iter()
                    .filter(|w| !matches!(w, StateWrite::Output { .. }))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let guard = match &mut lease {
            Some(Ok(guard)) => Some(guard),
            _ => None,
        };
        timer.begin("rein.audit.append");
        let recorded = self.record(&mut answer, entry, writes, guard).await;
        timer.end();
        if recorded.is_none() {
            if let Some(reserved) = &reserved {
                self.state.undo(&reserved.writes);
            }
        }
        if let Some(Ok(guard)) = &mut lease {
            guard.done();
        }
        drop(lease);
        if let Some(action) = traced_action {
            timer.finish(&decision_id, "after", &action, answer.effect, answer.audit_seq);
        }
        answer
    }

    /// The newest approval opened for this identical request (same action,
    /// input, actor, snapshot and session), in any state. Lets a caller
    /// that cannot carry an approval id (a hook) find the approval its
    /// earlier, identical call opened.
    pub async fn approval_for(
        &self,
        request: &Request,
        client: Option<&str>,
    ) -> Result<Option<ApprovalRecord>, RuntimeError> {
        // Hashed as `decide_from` hashes the request it decides: with the
        // session in the client's scope.
        let scoped;
        let request = match (&request.session, client) {
            (Some(_), Some(_)) => {
                let mut r = request.clone();
                scope_session(&mut r, client);
                scoped = r;
                &scoped
            }
            _ => request,
        };
        let hash = approval_hash(&self.redactor, request, &self.policy().per_call_fields(&request.action));
        // Newest first; approvals are few next to decisions, so a scan of the
        // recent ones is enough here (an index on the hash can follow). Only
        // the client that asked may use an approval, so another client's is
        // not this request's: it would block instead of opening one.
        let recent = self.store.list_approvals(None, APPROVAL_SCAN).await?;
        Ok(recent
            .into_iter()
            .find(|a| a.request_hash == hash && a.requested_via.as_deref() == client))
    }
}
