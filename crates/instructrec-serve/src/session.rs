//! Per-session state for follow-ups. A session id is a capability: whoever holds it can read
//! the stated taste and history it keeps (they come back in the filled instruction) and replace
//! them, so ids are 128 random bits from the operating system, only the server creates them, and
//! a request naming an id the server does not hold is refused rather than starting a session
//! under that name. The map is bounded in count (least recently used dropped first), entries
//! expire after a time without use, and each entry's size is bounded by the request limits (see
//! [`SessionState`]).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use instructrec_data::{ItemId, UserId};
use instructrec_instructions::IntentionKind;
use lru::LruCache;
use rand::TryRngCore;

/// What a follow-up builds on: the need as last understood and the last answer. Every field is
/// bounded by the request limits: the history by `max_history` (or the dataset's history cap),
/// `listed` by `max_candidates`, `answer` by `max_k` (at least the group size), each text by
/// `max_text_chars`, and the intentions by `max_text_chars` joined together.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionState {
    pub user: Option<UserId>,
    pub history: Vec<ItemId>,
    pub preference: Option<String>,
    /// The first stated need and the refinements kept after it, oldest first; joined, they are
    /// the intention of the last answer.
    pub intentions: Vec<(IntentionKind, String)>,
    pub context: Option<String>,
    /// The candidates the client listed, which follow-ups rerank again.
    pub listed: Option<Vec<ItemId>>,
    /// The last answer's items, best first.
    pub answer: Vec<ItemId>,
}

/// Hex digits of a session id: 128 bits.
pub const SESSION_ID_LEN: usize = 32;

/// A fresh session id: 16 bytes from the operating system's random source, as lower-case hex.
pub fn new_session_id() -> Result<String, rand::rand_core::OsError> {
    let mut bytes = [0u8; SESSION_ID_LEN / 2];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

    /// The session's state, or `None` when the id is unknown or the session has expired.
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

    /// Starts a session under a fresh random id and returns the id.
    pub fn create(&self, state: SessionState) -> Result<String, rand::rand_core::OsError> {
        let id = new_session_id()?;
        self.lock().put(id.clone(), (Instant::now(), state));
        Ok(id)
    }

    /// Replaces the state of a session this server created (the caller has just looked it up
    /// with [`Sessions::get`]). A session dropped in between (expired, or pushed out by newer
    /// ones) stays dropped: only [`Sessions::create`] adds entries.
    pub fn update(&self, id: &str, state: SessionState) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some(entry) => {
                *entry = (Instant::now(), state);
                true
            }
            None => false,
        }
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
            intentions: Vec::new(),
            context: None,
            listed: None,
            answer: vec![ItemId(n)],
        }
    }

    #[test]
    fn bounded_and_expiring() {
        let s = Sessions::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(3600));
        let a = s.create(state(1)).unwrap();
        let b = s.create(state(2)).unwrap();
        assert!(s.get(&a).is_some());
        let _c = s.create(state(3)).unwrap();
        // `b` was least recently used.
        assert!(s.get(&b).is_none());
        assert!(!s.update(&b, state(4)), "an evicted session came back");
        assert_eq!(s.get(&a).unwrap().answer, vec![ItemId(1)]);
        assert_eq!(s.len(), 2);

        let s = Sessions::new(NonZeroUsize::new(2).unwrap(), Duration::ZERO);
        let a = s.create(state(1)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.get(&a).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn ids_are_random_hex_and_unknown_ids_are_not_created() {
        let s = Sessions::new(NonZeroUsize::new(10).unwrap(), Duration::from_secs(3600));
        let a = s.create(state(1)).unwrap();
        let b = s.create(state(2)).unwrap();
        for id in [&a, &b] {
            assert_eq!(id.len(), SESSION_ID_LEN);
            assert!(id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_ne!(a, b);
        assert!(!s.update("chosen-by-a-client", state(3)));
        assert!(s.get("chosen-by-a-client").is_none());
        assert_eq!(s.len(), 2);
    }
}
