//! Per-session state for follow-ups: a bounded map (least recently used dropped first) whose
//! entries also expire after a time without use.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use instructrec_data::{ItemId, UserId};
use instructrec_instructions::IntentionKind;
use lru::LruCache;

/// What a follow-up builds on: the need as last understood and the last answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionState {
    pub user: Option<UserId>,
    pub history: Vec<ItemId>,
    pub preference: Option<String>,
    pub intention: Option<(IntentionKind, String)>,
    pub context: Option<String>,
    /// The candidates the client listed, which follow-ups rerank again.
    pub listed: Option<Vec<ItemId>>,
    /// The last answer's items, best first.
    pub answer: Vec<ItemId>,
}

pub struct Sessions {
    map: Mutex<LruCache<String, (Instant, SessionState)>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            map: Mutex::new(LruCache::new(capacity)),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, (Instant, SessionState)>> {
        // A panic while holding the lock cannot leave a half-written entry (every update is
        // one `put`), so a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<SessionState> {
        let mut map = self.lock();
        match map.get(id) {
            Some((at, _)) if at.elapsed() > self.ttl => {
                map.pop(id);
                None
            }
            Some((_, state)) => Some(state.clone()),
            None => None,
        }
    }

    pub fn put(&self, id: String, state: SessionState) {
        self.lock().put(id, (Instant::now(), state));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: u32) -> SessionState {
        SessionState {
            user: Some(UserId(n)),
            history: Vec::new(),
            preference: None,
            intention: None,
            context: None,
            listed: None,
            answer: vec![ItemId(n)],
        }
    }

    #[test]
    fn bounded_and_expiring() {
        let s = Sessions::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(3600));
        s.put("a".into(), state(1));
        s.put("b".into(), state(2));
        assert!(s.get("a").is_some());
        s.put("c".into(), state(3));
        // "b" was least recently used.
        assert!(s.get("b").is_none());
        assert_eq!(s.get("a").unwrap().answer, vec![ItemId(1)]);
        assert_eq!(s.len(), 2);

        let s = Sessions::new(NonZeroUsize::new(2).unwrap(), Duration::ZERO);
        s.put("a".into(), state(1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.get("a").is_none());
        assert!(s.is_empty());
    }
}
