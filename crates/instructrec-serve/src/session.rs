//! Per-session state for follow-ups. A session id is a capability: whoever holds it can read
//! the stated taste and history it keeps (they come back in the filled instruction) and replace
//! them, so ids are 128 random bits from the operating system, only the server creates them, and
//! a request naming an id the server does not hold is refused rather than starting a session
//! under that name. The store is bounded in count (least recently used dropped first), entries
//! expire after a time without use, and each entry's size is bounded by the request limits (see
//! [`SessionState`]).
//!
//! Sessions live in this process's memory, or in a directory (`serve --session-dir`) that
//! several replicas share, so that a conversation continues whichever replica a load balancer
//! sends the next turn to: one JSON file per session, replaced atomically (written beside it,
//! then renamed), its modification time the last use. Replicas on several hosts need the
//! directory on a shared filesystem with atomic rename (NFS has it).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use instructrec_data::{ItemId, UserId};
use instructrec_instructions::IntentionKind;
use lru::LruCache;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};

/// What a follow-up builds on: the need as last understood and the last answer. Every field is
/// bounded by the request limits: the history by `max_history` (or the dataset's history cap),
/// `listed` by `max_candidates`, `answer` by `max_k` (at least the group size), each text by
/// `max_text_chars`, and the intentions by `max_text_chars` joined together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    store: Store,
    ttl: Duration,
}

enum Store {
    Memory(Mutex<LruCache<String, (Instant, SessionState)>>),
    Directory { dir: PathBuf, capacity: usize },
}

/// Whether `id` has the shape of an id this server makes: it becomes a file name, so nothing
/// else may reach the filesystem.
fn well_formed(id: &str) -> bool {
    id.len() == SESSION_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Sessions {
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            store: Store::Memory(Mutex::new(LruCache::new(capacity))),
            ttl,
        }
    }

    /// Sessions kept as files in `dir` (created if missing), shared by every server given it.
    pub fn in_directory(
        dir: &Path,
        capacity: NonZeroUsize,
        ttl: Duration,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Fail at start, not at the first conversation, when the directory cannot be written.
        tempfile::NamedTempFile::new_in(dir)?;
        Ok(Self {
            store: Store::Directory {
                dir: dir.to_path_buf(),
                capacity: capacity.get(),
            },
            ttl,
        })
    }

    fn lock(
        map: &Mutex<LruCache<String, (Instant, SessionState)>>,
    ) -> std::sync::MutexGuard<'_, LruCache<String, (Instant, SessionState)>> {
        // A panic while holding the lock cannot leave a half-written entry (every update is
        // one `put`), so a poisoned map is still consistent.
        map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's state, or `None` when the id is unknown or the session has expired.
    pub fn get(&self, id: &str) -> Option<SessionState> {
        match &self.store {
            Store::Memory(map) => {
                let mut map = Self::lock(map);
                match map.get(id) {
                    Some((at, _)) if at.elapsed() > self.ttl => {
                        map.pop(id);
                        None
                    }
                    Some((_, state)) => Some(state.clone()),
                    None => None,
                }
            }
            Store::Directory { dir, .. } => {
                if !well_formed(id) {
                    return None;
                }
                let path = session_file(dir, id);
                if self.expired(&path)? {
                    // Another replica may have removed it first.
                    let _ = std::fs::remove_file(&path);
                    return None;
                }
                let bytes = std::fs::read(&path).ok()?;
                match serde_json::from_slice(&bytes) {
                    Ok(state) => Some(state),
                    Err(e) => {
                        tracing::warn!("{}: unreadable session: {e}", path.display());
                        None
                    }
                }
            }
        }
    }

    /// Whether the file at `path` was last written longer than the time to live ago; `None`
    /// when there is no such file.
    fn expired(&self, path: &Path) -> Option<bool> {
        let modified = std::fs::metadata(path).ok()?.modified().ok()?;
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO);
        Some(age > self.ttl)
    }

    /// Starts a session under a fresh random id and returns the id.
    pub fn create(&self, state: SessionState) -> Result<String, SessionError> {
        let id = new_session_id()?;
        match &self.store {
            Store::Memory(map) => {
                Self::lock(map).put(id.clone(), (Instant::now(), state));
            }
            Store::Directory { dir, capacity } => {
                write_session(dir, &id, &state)?;
                prune(dir, *capacity, self.ttl);
            }
        }
        Ok(id)
    }

    /// Replaces the state of a session this server created (the caller has just looked it up
    /// with [`Sessions::get`]). A session dropped in between (expired, or pushed out by newer
    /// ones) stays dropped: only [`Sessions::create`] adds entries.
    pub fn update(&self, id: &str, state: SessionState) -> bool {
        match &self.store {
            Store::Memory(map) => match Self::lock(map).get_mut(id) {
                Some(entry) => {
                    *entry = (Instant::now(), state);
                    true
                }
                None => false,
            },
            Store::Directory { dir, .. } => {
                well_formed(id)
                    && session_file(dir, id).is_file()
                    && write_session(dir, id, &state)
                        .inspect_err(|e| tracing::warn!("session {id}: {e}"))
                        .is_ok()
            }
        }
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Memory(map) => Self::lock(map).len(),
            Store::Directory { dir, .. } => session_files(dir).len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no random session id: {0}")]
    Random(#[from] rand::rand_core::OsError),
    #[error("session store: {0}")]
    Store(#[from] std::io::Error),
}

fn session_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn write_session(dir: &Path, id: &str, state: &SessionState) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, state)?;
    tmp.persist(session_file(dir, id)).map_err(|e| e.error)?;
    Ok(())
}

/// Every session file in `dir` with its last write.
fn session_files(dir: &Path) -> Vec<(SystemTime, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .is_some_and(well_formed)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect()
}

/// Removes expired sessions, then the least recently written beyond `capacity`.
fn prune(dir: &Path, capacity: usize, ttl: Duration) {
    let mut files = session_files(dir);
    let now = SystemTime::now();
    files.sort();
    let expired = files
        .iter()
        .take_while(|(at, _)| now.duration_since(*at).unwrap_or(Duration::ZERO) > ttl)
        .count();
    let excess = files.len().saturating_sub(capacity).max(expired);
    for (_, path) in &files[..excess] {
        let _ = std::fs::remove_file(path);
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
    fn a_directory_store_is_shared_bounded_expiring_and_reads_only_its_own_names() {
        let dir = tempfile::tempdir().unwrap();
        let open = |cap: usize, ttl: Duration| {
            Sessions::in_directory(dir.path(), NonZeroUsize::new(cap).unwrap(), ttl).unwrap()
        };
        let (one, two) = (
            open(2, Duration::from_secs(3600)),
            open(2, Duration::from_secs(3600)),
        );
        let a = one.create(state(1)).unwrap();
        assert_eq!(two.get(&a).unwrap().answer, vec![ItemId(1)]);
        assert!(two.update(&a, state(5)));
        assert_eq!(one.get(&a).unwrap().answer, vec![ItemId(5)]);
        // Names that are not ids never reach the filesystem, even when such a file exists.
        std::fs::write(dir.path().join("notes.json"), "{}").unwrap();
        for id in ["notes", "../a", &a.to_uppercase(), ""] {
            assert!(one.get(id).is_none(), "{id}");
            assert!(!one.update(id, state(6)), "{id}");
        }
        assert!(
            !one.update(&"0".repeat(SESSION_ID_LEN), state(6)),
            "update created a session"
        );
        // The least recently written goes beyond the capacity.
        std::thread::sleep(Duration::from_millis(20));
        let b = one.create(state(2)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let c = two.create(state(3)).unwrap();
        assert!(one.get(&a).is_none() && one.get(&b).is_some() && one.get(&c).is_some());
        assert_eq!(one.len(), 2);
        // Expired files are neither read nor kept.
        let short = open(10, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert!(short.get(&b).is_none());
        assert!(!dir.path().join(format!("{b}.json")).exists());
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
