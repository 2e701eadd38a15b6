//! A bounded memory of recent decisions, so an outcome is checked against
//! the original request (the audit log keeps sensitive fields only hashed).
//!
//! Keyed by the decision id as a number (ids are v7 UUIDs made by the
//! runtime), and requests are shared: inserting copies nothing, and a
//! lookup copies the request outside the lock.

use rein_engine::{Effect, Request};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub(crate) struct Recent {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// A decision: its request, its effect, and the client that asked.
type Entry = (Arc<Request>, Effect, Option<Arc<str>>);

#[derive(Default)]
struct Inner {
    map: FxHashMap<u128, Entry>,
    order: VecDeque<u128>,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn insert(&self, id: u128, request: Arc<Request>, effect: Effect, client: Option<Arc<str>>) {
        if self.capacity == 0 {
            return;
        }
        let evicted;
        {
            let Ok(mut inner) = self.inner.lock() else { return };
            // Oldest first out: outcomes arrive soon after their decision.
            evicted = if inner.order.len() >= self.capacity {
                inner.order.pop_front().and_then(|old| inner.map.remove(&old))
            } else {
                None
            };
            inner.order.push_back(id);
            inner.map.insert(id, (request, effect, client));
        }
        // The evicted request is freed outside the lock.
        drop(evicted);
    }

    /// The request, effect and client of decision `id`, if it is still
    /// here.
    pub fn get(&self, id: &str) -> Option<(Request, Effect, Option<Arc<str>>)> {
        let key = uuid::Uuid::try_parse(id).ok()?.as_u128();
        let (request, effect, client) = {
            let inner = self.inner.lock().ok()?;
            let (request, effect, client) = inner.map.get(&key)?;
            (Arc::clone(request), *effect, client.clone())
        };
        Some((Arc::unwrap_or_clone(request), effect, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest() {
        let r = Recent::new(2);
        let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::now_v7()).collect();
        for (id, action) in ids.iter().zip(["a", "b", "c"]) {
            r.insert(id.as_u128(), Arc::new(Request::new(action)), Effect::Allow, None);
        }
        assert!(r.get(&ids[0].to_string()).is_none());
        assert_eq!(
            r.get(&ids[2].to_string()).map(|(req, _, _)| req.action),
            Some("c".to_string())
        );
        assert!(r.get("not a uuid").is_none());
    }
}
