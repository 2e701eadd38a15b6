//! What decides whether an approval may be decided, shared by both stores:
//! each reads the approval's row its own way ([`Gate`]) and changes it with
//! its own conditional UPDATE, but who may decide it, and until when, is
//! one rule. (A difference between the stores here would be a way round the
//! self-approval check on one of them.)

use crate::{chain, ApprovalError, ApprovalRecord, ApprovalState, StoreError};

/// The columns of an approval that decide whether it may be decided or used.
pub(crate) struct Gate {
    pub state: String,
    pub requested_by: Option<String>,
    pub requested_via: Option<String>,
    /// JSON list of the requester's chain ids (NULL in rows older than the
    /// column: none kept).
    pub requested_chain: Option<String>,
    pub expires_key: String,
    pub request_hash: String,
    pub hold_seconds: Option<i64>,
}

impl Gate {
    /// Whether `approver` may grant or deny approval `id` at `now_key`: it
    /// is pending, `approver` is neither its requester, the client that
    /// sent it, nor any link of the requester's delegation chain (the
    /// runtime checks the approver's other ids), and it has not expired.
    pub fn may_decide(&self, id: &str, approver: &str, now_key: &str) -> Result<Result<(), ApprovalError>, StoreError> {
        if self.state != "pending" {
            return Ok(Err(ApprovalError::WrongState {
                id: id.to_owned(),
                state: self.state.clone(),
                expected: "pending".into(),
            }));
        }
        let in_chain = match &self.requested_chain {
            Some(chain) => serde_json::from_str::<Vec<String>>(chain)
                .map_err(|e| StoreError(format!("corrupt approval `{id}`: requested_chain: {e}")))?
                .iter()
                .any(|link| link == approver),
            None => false,
        };
        if self.requested_by.as_deref() == Some(approver) || self.requested_via.as_deref() == Some(approver) || in_chain
        {
            return Ok(Err(ApprovalError::SelfApproval(approver.to_owned())));
        }
        if now_key >= self.expires_key.as_str() {
            return Ok(Err(ApprovalError::Expired(id.to_owned())));
        }
        Ok(Ok(()))
    }

    /// The new expiry (`expires_at`, its key) of a decision at `now`: a
    /// grant holds for the rule's ttl from now (not from the request);
    /// approvals from before `hold_seconds` keep the expiry they were given,
    /// and so does a denial.
    pub fn decided_expiry(&self, grant: bool, now: &str) -> Result<Option<(String, String)>, StoreError> {
        match (grant, self.hold_seconds) {
            (true, Some(hold)) => expiry_after(now, hold).map(Some),
            _ => Ok(None),
        }
    }
}

/// `now` plus `hold` seconds, as the approval's `expires_at` and its
/// fixed-width key.
fn expiry_after(now: &str, hold: i64) -> Result<(String, String), StoreError> {
    let now: jiff::Timestamp = now
        .trim()
        .parse()
        .map_err(|e| StoreError(format!("`{now}` is not an RFC 3339 time: {e}")))?;
    let hold = jiff::SignedDuration::from_secs(hold.max(0));
    // Past the end of time: the largest time there is.
    let until = now.checked_add(hold).unwrap_or(jiff::Timestamp::MAX);
    let at = chain::format_time(until);
    Ok((at.clone(), at))
}

/// The columns of an approval's row, in [`ApprovalRow`]'s order: both
/// stores select these.
pub(crate) const COLUMNS: &str = "id, request_hash, decision_id, rules, role, action, requested_by, summary, \
                                  created_at, expires_at, state, decided_by, decided_at, comment, roles, \
                                  requested_via, hold_seconds, sealed, requested_chain";

/// An approval's row as both stores keep it ([`COLUMNS`], in order), read
/// but not yet checked: [`ApprovalRow::into_record`] is the
/// one place that turns it into an [`ApprovalRecord`].
pub(crate) struct ApprovalRow {
    pub id: String,
    pub request_hash: String,
    pub decision_id: String,
    /// JSON array.
    pub rules: String,
    pub role: String,
    pub action: String,
    pub requested_by: Option<String>,
    /// JSON.
    pub summary: String,
    pub created_at: String,
    pub expires_at: String,
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    /// JSON array; NULL in rows written before roles were kept.
    pub roles: Option<String>,
    pub requested_via: Option<String>,
    pub hold_seconds: Option<i64>,
    pub sealed: Option<String>,
    /// JSON array; NULL in rows written before the chain was kept.
    pub requested_chain: Option<String>,
}

impl ApprovalRow {
    /// The record, or why the row is corrupt.
    pub fn into_record(self) -> Result<ApprovalRecord, StoreError> {
        let id = self.id;
        let corrupt = |what: &str, e: serde_json::Error| StoreError(format!("corrupt approval `{id}`: {what}: {e}"));
        // No list or an empty one: the approval needs its `role`; an empty
        // list must never mean "any approver".
        let mut roles: Vec<String> = match &self.roles {
            Some(roles) => serde_json::from_str(roles).map_err(|e| corrupt("roles", e))?,
            None => Vec::new(),
        };
        if roles.is_empty() {
            roles.push(self.role.clone());
        }
        let requested_chain: Vec<String> = match &self.requested_chain {
            Some(chain) => serde_json::from_str(chain).map_err(|e| corrupt("requested_chain", e))?,
            None => Vec::new(),
        };
        Ok(ApprovalRecord {
            request_hash: self.request_hash,
            decision_id: self.decision_id,
            rules: serde_json::from_str(&self.rules).map_err(|e| corrupt("rules", e))?,
            role: self.role,
            roles,
            action: self.action,
            requested_by: self.requested_by,
            requested_via: self.requested_via,
            requested_chain,
            summary: serde_json::from_str(&self.summary).map_err(|e| corrupt("summary", e))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            state: parse_state(&self.state)?,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            comment: self.comment,
            hold_seconds: self.hold_seconds.map(|s| u64::try_from(s).unwrap_or(0)),
            sealed: self.sealed,
            id,
        })
    }
}

fn parse_state(s: &str) -> Result<ApprovalState, StoreError> {
    Ok(match s {
        "pending" => ApprovalState::Pending,
        "granted" => ApprovalState::Granted,
        "denied" => ApprovalState::Denied,
        "used" => ApprovalState::Used,
        other => return Err(StoreError(format!("corrupt approval: unknown state `{other}`"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate {
            state: "pending".into(),
            requested_by: Some("alice".into()),
            requested_via: Some("agent-token".into()),
            requested_chain: Some(r#"["user:bob","agent:planner"]"#.into()),
            expires_key: "2026-12-06T12:00:00.000000Z".into(),
            request_hash: "h".into(),
            hold_seconds: Some(60),
        }
    }

    #[test]
    fn nobody_the_request_came_from_decides_it() {
        let now = "2026-12-06T11:00:00.000000Z";
        for who in ["alice", "agent-token", "user:bob", "agent:planner"] {
            assert!(matches!(
                gate().may_decide("a", who, now).unwrap(),
                Err(ApprovalError::SelfApproval(_))
            ));
        }
        assert!(gate().may_decide("a", "carol", now).unwrap().is_ok());
    }

    #[test]
    fn only_a_pending_unexpired_approval_is_decided() {
        let mut decided = gate();
        decided.state = "granted".into();
        assert!(matches!(
            decided.may_decide("a", "carol", "2026-12-06T11:00:00.000000Z").unwrap(),
            Err(ApprovalError::WrongState { .. })
        ));
        // At the expiry itself it is expired.
        assert!(matches!(
            gate().may_decide("a", "carol", "2026-12-06T12:00:00.000000Z").unwrap(),
            Err(ApprovalError::Expired(_))
        ));
        let mut corrupt = gate();
        corrupt.requested_chain = Some("not json".into());
        assert!(corrupt.may_decide("a", "carol", "2026-12-06T11:00:00.000000Z").is_err());
    }

    #[test]
    fn a_grant_holds_from_the_grant() {
        let expiry = gate().decided_expiry(true, "2026-12-06T11:00:00Z").unwrap();
        assert_eq!(
            expiry.unwrap().0,
            chain::format_time("2026-12-06T11:01:00Z".parse().unwrap())
        );
        assert_eq!(gate().decided_expiry(false, "2026-12-06T11:00:00Z").unwrap(), None);
        let mut old = gate();
        old.hold_seconds = None;
        assert_eq!(old.decided_expiry(true, "2026-12-06T11:00:00Z").unwrap(), None);
    }
}
