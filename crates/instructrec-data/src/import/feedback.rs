//! The feedback log that `instructrec serve --feedback-log PATH` appends to, and reading it back
//! as interactions of an import (`data prepare --feedback PATH`).
//!
//! One JSON object a line: `{"timestamp": secs, "user": raw id, "item": raw id, "event":
//! "clicked"|"liked"|"bought", "session"?: id}`. Ids are the source's own (`original_id` of the
//! prepared dataset), so a log survives re-preparing the dataset with other options. Only
//! [`FeedbackEvent::counts_as_interaction`] events (`liked`, `bought`) become interactions;
//! clicks are counted and left out. Events whose user or item the import does not have are
//! counted and reported, never silently dropped; a malformed line is an error naming
//! `file:line: field`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{for_each_line, Imported, JsonRecord};
use crate::types::{Interaction, ItemId};
use crate::DataError;

/// What a user did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackEvent {
    Clicked,
    Liked,
    Bought,
}

impl FeedbackEvent {
    pub const ALL: [FeedbackEvent; 3] = [Self::Clicked, Self::Liked, Self::Bought];

    pub fn name(self) -> &'static str {
        match self {
            Self::Clicked => "clicked",
            Self::Liked => "liked",
            Self::Bought => "bought",
        }
    }

    /// `liked` and `bought` say the user wanted the item; a click says only that the title
    /// looked interesting, so it is not an interaction.
    pub fn counts_as_interaction(self) -> bool {
        matches!(self, Self::Liked | Self::Bought)
    }
}

impl std::str::FromStr for FeedbackEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("expected \"clicked\", \"liked\" or \"bought\", got {s:?}"))
    }
}

/// One line of the feedback log (field order is the line's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// Seconds since the Unix epoch, when the server received the event.
    pub timestamp: i64,
    /// The source's user id.
    pub user: String,
    /// The source's item id.
    pub item: String,
    pub event: FeedbackEvent,
    /// The serving session the event came from, when the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl FeedbackRecord {
    /// The line as appended to the log, line break included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a feedback record always serialises");
        line.push('\n');
        line
    }

    fn parse(path: &Path, line: usize, text: &str) -> Result<Self, DataError> {
        let r = JsonRecord::parse(path, line, text)?;
        let event = r.required_str("event")?;
        let event = event.parse().map_err(|m| r.error("event", m))?;
        Ok(Self {
            timestamp: r.required_integer("timestamp")?,
            user: r.required_str("user")?.to_string(),
            item: r.required_str("item")?.to_string(),
            event,
            session: r.optional_str("session")?.map(str::to_string),
        })
    }
}

/// Every record of a feedback log, in file order.
pub fn read_feedback(path: &Path) -> Result<Vec<FeedbackRecord>, DataError> {
    let mut records = Vec::new();
    for_each_line(path, |line, text| {
        records.push(FeedbackRecord::parse(path, line, text)?);
        Ok(())
    })?;
    Ok(records)
}

/// What adding a feedback log to an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackCounts {
    /// Lines read.
    pub events: usize,
    /// `liked`/`bought` events added as interactions.
    pub added: usize,
    /// Clicks, read and not counted as interactions.
    pub clicks: usize,
    /// Interaction events whose user id the import does not have.
    pub unknown_users: usize,
    /// Interaction events of a known user whose item id the import does not have.
    pub unknown_items: usize,
}

impl std::fmt::Display for FeedbackCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events: {} liked/bought added as interactions, {} clicks not counted, {} for \
             unknown users, {} for unknown items (not added)",
            self.events, self.added, self.clicks, self.unknown_users, self.unknown_items
        )
    }
}

/// Appends the log's `liked` and `bought` events to the import as interactions (timestamp
/// kept, no rating), after the user's imported interactions and in log order, matching the
/// source's raw user and item ids. The log's path joins `imported.paths`, so the manifest names
/// it. Preparation then treats them as any interaction (a repeat of an item the user already
/// has is dropped as a repeat).
pub fn add_feedback(imported: &mut Imported, log: &Path) -> Result<FeedbackCounts, DataError> {
    let records = read_feedback(log)?;
    let users: std::collections::HashMap<&str, usize> = imported
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    let items: std::collections::HashMap<&str, u32> = imported
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.original_id.as_str(), i as u32))
        .collect();
    let mut counts = FeedbackCounts {
        events: records.len(),
        ..FeedbackCounts::default()
    };
    let mut added = Vec::new();
    for r in &records {
        if !r.event.counts_as_interaction() {
            counts.clicks += 1;
            continue;
        }
        let Some(&user) = users.get(r.user.as_str()) else {
            counts.unknown_users += 1;
            continue;
        };
        let Some(&item) = items.get(r.item.as_str()) else {
            counts.unknown_items += 1;
            continue;
        };
        added.push((user, item, r.timestamp));
    }
    counts.added = added.len();
    for (user, item, timestamp) in added {
        imported.sequences[user].push(Interaction {
            item: ItemId(item),
            timestamp: Some(timestamp),
            rating: None,
            review: None,
        });
    }
    imported.paths.push(log.to_path_buf());
    if counts.unknown_users + counts.unknown_items > 0 {
        tracing::warn!(
            "{}: {} events name a user and {} an item that the dataset does not have; they are \
             not added (was the log written by a server over another dataset?)",
            log.display(),
            counts.unknown_users,
            counts.unknown_items
        );
    }
    tracing::info!("feedback log {}: {counts}", log.display());
    Ok(counts)
}
