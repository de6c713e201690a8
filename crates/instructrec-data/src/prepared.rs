//! A prepared dataset on disk and in memory. Later stages only ever see this, never the raw
//! importers, so every model is trained and evaluated on exactly the same split and candidates.

use std::collections::BTreeMap;
use std::path::Path;

use crate::types::{CandidateSet, Dataset, Fold, Interaction, ItemId, ItemSplit, UserId, UserRef};
use crate::{DataError, Manifest};

#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub manifest: Manifest,
    pub dataset: Dataset,
    pub item_split: ItemSplit,
    /// Keyed by fold and list size (10 = 1 positive + 9 negatives, 100 = 1 + 99).
    pub candidates: BTreeMap<(Fold, usize), Vec<CandidateSet>>,
}

impl Prepared {
    /// Reads a directory written by [`Prepared::save`], verifying the manifest's checksums.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        crate::store::load(dir)
    }

    /// Writes atomically: everything goes to a sibling temporary directory that is renamed
    /// into place only when complete.
    pub fn save(&self, dir: &Path) -> Result<(), DataError> {
        crate::store::save(self, dir)
    }

    /// Every item's title, by item index: what the text models and the instruction model read.
    pub fn titles(&self) -> Vec<String> {
        self.dataset.items.iter().map(|i| i.title.clone()).collect()
    }

    /// Candidate lists as JSON lines in the stored lists' shape (`user`, `positive`,
    /// `negatives`) with the source's raw ids: what `eval --candidates` reads by default, so
    /// that lists written here (mined hard negatives, an export) can be scored in a later run
    /// or elsewhere.
    pub fn raw_id_lines(&self, sets: &[CandidateSet]) -> Vec<u8> {
        let item = |i: &ItemId| self.dataset.items[i.index()].original_id.as_str();
        let mut bytes = Vec::new();
        for s in sets {
            let line = serde_json::json!({
                "user": self.dataset.users[s.user.index()].original_id,
                "positive": item(&s.positive),
                "negatives": s.negatives.iter().map(item).collect::<Vec<_>>(),
            });
            serde_json::to_writer(&mut bytes, &line).expect("in-memory JSON cannot fail");
            bytes.push(b'\n');
        }
        bytes
    }

    /// The user a command names (see [`UserRef`]), or why there is none.
    pub fn resolve_user(&self, user: &UserRef) -> Result<UserId, String> {
        let users = &self.dataset.users;
        match user {
            UserRef::Id(i) if (*i as usize) < users.len() => Ok(UserId(*i)),
            UserRef::Id(i) => Err(format!(
                "no user #{i} (dense ids run from #0 to #{})",
                users.len().saturating_sub(1)
            )),
            UserRef::Name(name) => users
                .iter()
                .find(|u| u.original_id == name.trim())
                .map(|u| u.id)
                .ok_or_else(|| {
                    format!("no user with the source id {name:?} (a dense id is written #12)")
                }),
        }
    }

    /// The user's held-out item for a fold (leave-one-out: last = test, second last = validation).
    pub fn held_out(&self, user: UserId, fold: Fold) -> ItemId {
        let seq = &self.dataset.sequences[user.index()];
        match fold {
            Fold::Test => seq[seq.len() - 1].item,
            Fold::Validation => seq[seq.len() - 2].item,
        }
    }

    /// Everything the user did before the held-out item of `fold` (full, uncapped).
    pub fn history_before(&self, user: UserId, fold: Fold) -> &[Interaction] {
        let seq = &self.dataset.sequences[user.index()];
        match fold {
            Fold::Test => &seq[..seq.len() - 1],
            Fold::Validation => &seq[..seq.len() - 2],
        }
    }

    /// The training part of a user's sequence: all but the validation and test items.
    pub fn train_sequence(&self, user: UserId) -> &[Interaction] {
        self.history_before(user, Fold::Validation)
    }

    /// At most `manifest.options.history_cap` most recent items before the fold's held-out item,
    /// oldest first: the history that instructions show.
    pub fn recent_history(&self, user: UserId, fold: Fold) -> &[Interaction] {
        let full = self.history_before(user, fold);
        let cap = self.manifest.options.history_cap;
        &full[full.len().saturating_sub(cap)..]
    }

    /// The fixed candidate lists for a fold and list size, if they were prepared.
    pub fn candidates(&self, fold: Fold, size: usize) -> Option<&[CandidateSet]> {
        self.candidates.get(&(fold, size)).map(Vec::as_slice)
    }
}
