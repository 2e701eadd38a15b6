//! What decides whether an approval may be decided, shared by both stores:
//! each reads the approval's row its own way ([`Gate`]) and changes it with
//! its own conditional UPDATE, but who may decide it, and until when, is
//! one rule. (A difference between the stores here would be a way round the
//! self-approval check on one of them.)

use crate::{chain, ApprovalError, StoreError};

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
