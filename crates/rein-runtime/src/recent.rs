//! A bounded memory of recent decisions, so an outcome is checked against
//! the original request (the audit log keeps sensitive fields only hashed).

use rein_engine::{Effect, Request};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub(crate) struct Recent {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, (Request, Effect)>,
    order: VecDeque<String>,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn insert(&self, id: String, request: Request, effect: Effect) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        // Oldest first out: outcomes arrive soon after their decision.
        while inner.order.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
        inner.order.push_back(id.clone());
        inner.map.insert(id, (request, effect));
    }

    pub fn get(&self, id: &str) -> Option<(Request, Effect)> {
        let inner = self.inner.lock().ok()?;
        inner.map.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest() {
        let r = Recent::new(2);
        for id in ["a", "b", "c"] {
            r.insert(id.into(), Request::new(id), Effect::Allow);
        }
        assert!(r.get("a").is_none());
        assert_eq!(r.get("c").map(|(req, _)| req.action), Some("c".to_string()));
    }
}
