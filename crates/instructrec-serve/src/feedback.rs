//! The feedback log behind `POST /v1/feedback` (`serve --feedback-log PATH`): one JSON line per
//! event ([`FeedbackRecord`]: timestamp, the source's user and item ids, event, session),
//! appended durably so that `data prepare --feedback PATH` can read the events back as
//! interactions.
//!
//! Durability: the file is opened in append mode; each event is one buffer holding the whole
//! line, written with a single `write_all` while a mutex is held and followed by `fsync`
//! (`sync_data`) before the request is answered. Concurrent requests therefore never interleave
//! partial lines, and an answered event survives a crash of the process or the machine. One
//! fsync per event costs a few milliseconds on a disk; feedback is rare next to model calls.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
pub use instructrec_data::import::{FeedbackEvent, FeedbackRecord};

/// The open feedback log, shared by all requests.
#[derive(Debug)]
pub struct FeedbackLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl FeedbackLog {
    /// Opens `path` for appending, creating it if needed. A last line without its line break
    /// (a crash mid-write) is closed with one, so the next event starts on its own line and the
    /// broken one is reported by `data prepare` with its line number.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open the feedback log {}", path.display()))?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event (the whole line in one write, then fsync). Blocking: call it off the
    /// async workers.
    pub fn append(&self, record: &FeedbackRecord) -> std::io::Result<()> {
        let line = record.to_line();
        // A panic while holding the lock cannot leave half a line behind a later one: each
        // line is one write, so the file is still whole lines (or a last cut line).
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }
}

/// The OpenAPI schema of [`FeedbackRecord`] (a type of the data crate): one line of the
/// feedback log, with the source's ids whatever the request named them by. tests/openapi.rs
/// checks real answers against it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = FeedbackRecord)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct FeedbackRecordSchema {
    /// Seconds since the Unix epoch, when the server received the event.
    pub timestamp: i64,
    /// The source's user id.
    pub user: String,
    /// The source's item id.
    pub item: String,
    #[schema(value_type = crate::request::FeedbackEventSchema)]
    pub event: FeedbackEvent,
    /// The session the event came from, as the request sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
