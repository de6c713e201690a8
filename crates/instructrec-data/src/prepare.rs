//! Preparation: from an import to the canonical [`Prepared`] dataset. Stages, each recorded in
//! the manifest's `dropped` list with what it removed and why:
//! 1. repeated (user, item) interactions: the first (earliest) is kept;
//! 2. items without a title (unless `keep_untitled`, which titles them by their original id);
//! 3. iterative k-core: users and items with fewer than k interactions are removed until none
//!    are left; users also need 3 interactions (train + validation + test), which matters for
//!    k < 3.
//!
//! Then ids are made dense (source order kept), items are split 80/10/10 for product search and
//! the candidate lists are drawn.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::candidates;
use crate::import::{ImportSource, Imported};
use crate::stats::{Stats, StatsTable};
use crate::types::{Dataset, Fold, Interaction, Item, ItemId, User, UserId, MIN_USER_INTERACTIONS};
use crate::{Counts, DataError, Dropped, Manifest, PrepareOptions, Prepared, Source};

/// Version of the prepared directory layout (see docs/data.md).
pub const FORMAT_VERSION: u32 = 1;

/// Wall time of each preparation phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrepareTimings {
    pub import: Duration,
    pub filter: Duration,
    /// Item split and candidate lists.
    pub split: Duration,
    /// Serialising the files and computing their checksums.
    pub render: Duration,
}

/// What `prepare` did, for printing: what was read, dropped and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    pub source: Source,
    pub imported: Counts,
    pub dropped: Vec<Dropped>,
    pub counts: Counts,
    pub stats: Stats,
    pub timings: PrepareTimings,
}

impl fmt::Display for PrepareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.imported;
        writeln!(
            f,
            "imported ({}): {} users, {} items, {} interactions",
            self.source.format, c.users, c.items, c.interactions
        )?;
        for d in &self.dropped {
            writeln!(
                f,
                "dropped, {}: {} users, {} items, {} interactions",
                d.reason, d.users, d.items, d.interactions
            )?;
        }
        let c = &self.counts;
        writeln!(
            f,
            "kept: {} users, {} items, {} interactions",
            c.users, c.items, c.interactions
        )?;
        write!(
            f,
            "{}",
            StatsTable(vec![(self.source.format.clone(), self.stats)])
        )
    }
}

fn validate(options: &PrepareOptions) -> Result<(), DataError> {
    let (train, validation) = options.item_split;
    if !(0.0..=1.0).contains(&train)
        || !(0.0..=1.0).contains(&validation)
        || train + validation > 1.0
    {
        return Err(DataError::Options(format!(
            "item split fractions must be in [0, 1] and sum to at most 1, got {train} and {validation}"
        )));
    }
    if options.history_cap == 0 {
        return Err(DataError::Options("history cap must be at least 1".into()));
    }
    if let Some(bad) = options.candidate_sizes.iter().find(|&&s| s < 2) {
        return Err(DataError::Options(format!(
            "candidate list sizes must be at least 2, got {bad}"
        )));
    }
    Ok(())
}

/// Imports, filters, splits and draws candidates; the result is ready to [`Prepared::save`].
pub fn prepare(
    input: &ImportSource,
    options: &PrepareOptions,
) -> Result<(Prepared, PrepareReport), DataError> {
    validate(options)?;
    let start = Instant::now();
    let imported = input.import()?;
    let import = start.elapsed();
    tracing::debug!(?import, "imported");
    prepare_imported(imported, options, import)
}

/// [`prepare`] on something already imported (`import_time` goes into the report).
pub fn prepare_imported(
    imported: Imported,
    options: &PrepareOptions,
    import_time: Duration,
) -> Result<(Prepared, PrepareReport), DataError> {
    validate(options)?;
    let start = Instant::now();
    let source = Source {
        format: imported.format.name().to_string(),
        paths: imported
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    };
    let imported_counts = Counts {
        users: imported.users.len(),
        items: imported.items.len(),
        interactions: imported.interactions(),
    };
    let titled = imported.items.iter().any(|i| i.title.is_some());
    let (dataset, dropped) = filter(imported, options);
    // What each filter removed, for errors that the data (not a bug) causes.
    let trail = || {
        let c = &imported_counts;
        let mut steps = vec![format!(
            "imported {} users, {} items, {} interactions",
            c.users, c.items, c.interactions
        )];
        steps.extend(dropped.iter().map(|d| {
            let (u, i, n) = (d.users, d.items, d.interactions);
            format!("{}: -{u} users, -{i} items, -{n} interactions", d.reason)
        }));
        let (u, i) = (dataset.users.len(), dataset.items.len());
        steps.push(format!("left {u} users, {i} items"));
        steps.join("; ")
    };
    // A lower k-core helps only when the filters, not the input, removed everyone.
    if dataset.users.is_empty() {
        return Err(DataError::Options(if imported_counts.interactions == 0 {
            format!("the input has no interactions ({})", trail())
        } else if !titled && !options.keep_untitled {
            format!(
                "no user is left after filtering: no imported item has a title ({}); check the \
                 item file, or pass --keep-untitled to title items by their original id",
                trail()
            )
        } else {
            format!(
                "no user is left after filtering ({}); lower --k-core",
                trail()
            )
        }));
    }
    let filter_time = start.elapsed();

    let start = Instant::now();
    let item_split = candidates::split_items(dataset.items.len(), options.seed, options.item_split);
    let mut lists = BTreeMap::new();
    for fold in [Fold::Validation, Fold::Test] {
        for &size in &options.candidate_sizes {
            let drawn = candidates::draw(&dataset, options.seed, fold, size).map_err(|e| {
                DataError::Options(format!(
                    "{e}, or a lower --k-core keeps more items ({})",
                    trail()
                ))
            })?;
            lists.insert((fold, size), drawn);
        }
    }
    let split_time = start.elapsed();

    let stats = Stats::of(&dataset);
    let counts = Counts {
        users: stats.users,
        items: stats.items,
        interactions: stats.interactions,
    };
    let manifest = Manifest {
        format: FORMAT_VERSION,
        source: source.clone(),
        options: options.clone(),
        imported: imported_counts.clone(),
        dropped: dropped.clone(),
        counts: counts.clone(),
        checksums: BTreeMap::new(),
    };
    let mut prepared = Prepared {
        manifest,
        dataset,
        item_split,
        candidates: lists,
    };
    let start = Instant::now();
    prepared.manifest.checksums = crate::store::checksums(&prepared);
    let render_time = start.elapsed();

    let report = PrepareReport {
        source,
        imported: imported_counts,
        dropped,
        counts,
        stats,
        timings: PrepareTimings {
            import: import_time,
            filter: filter_time,
            split: split_time,
            render: render_time,
        },
    };
    Ok((prepared, report))
}

/// Applies the three filtering stages and makes ids dense.
fn filter(imported: Imported, options: &PrepareOptions) -> (Dataset, Vec<Dropped>) {
    let Imported {
        items,
        users,
        mut sequences,
        ..
    } = imported;
    let mut dropped = Vec::new();

    // Stage 1: repeated (user, item). `last_user[i]` marks the last user seen with item i, so
    // no per-user set is allocated.
    let mut last_user = vec![u32::MAX; items.len()];
    let mut repeats = 0;
    for (u, seq) in sequences.iter_mut().enumerate() {
        let before = seq.len();
        seq.retain(|i| std::mem::replace(&mut last_user[i.item.index()], u as u32) != u as u32);
        repeats += before - seq.len();
    }
    dropped.push(Dropped {
        reason: "repeated (user, item) interactions (the first is kept)".into(),
        users: 0,
        items: 0,
        interactions: repeats,
    });

    // Stage 2: untitled items.
    let mut item_alive: Vec<bool> = items
        .iter()
        .map(|i| i.title.is_some() || options.keep_untitled)
        .collect();
    let untitled = item_alive.iter().filter(|a| !**a).count();
    let interactions_before: usize = sequences.iter().map(Vec::len).sum();
    for seq in &mut sequences {
        seq.retain(|i| item_alive[i.item.index()]);
    }
    let interactions_after: usize = sequences.iter().map(Vec::len).sum();
    dropped.push(Dropped {
        reason: if options.keep_untitled {
            "items without a title (none: --keep-untitled titles them by their original id)".into()
        } else {
            "items without a title".into()
        },
        users: 0,
        items: untitled,
        interactions: interactions_before - interactions_after,
    });

    // Stage 3: iterative k-core.
    let k = options.k_core;
    let user_min = k.max(MIN_USER_INTERACTIONS);
    let item_min = k.max(1);
    let mut user_alive = vec![true; users.len()];
    let users_before = users.len();
    let items_before = item_alive.iter().filter(|a| **a).count();
    loop {
        let mut item_degree = vec![0usize; items.len()];
        for seq in &sequences {
            for i in seq {
                item_degree[i.item.index()] += 1;
            }
        }
        let mut changed = false;
        for (alive, degree) in item_alive.iter_mut().zip(&item_degree) {
            if *alive && *degree < item_min {
                *alive = false;
                changed = true;
            }
        }
        for (u, seq) in sequences.iter_mut().enumerate() {
            if !user_alive[u] {
                continue;
            }
            seq.retain(|i| item_alive[i.item.index()]);
            if seq.len() < user_min {
                user_alive[u] = false;
                seq.clear();
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let kept_interactions: usize = sequences.iter().map(Vec::len).sum();
    dropped.push(Dropped {
        reason: if k >= MIN_USER_INTERACTIONS {
            format!("k-core (k={k}): users and items with fewer than {k} interactions, iteratively")
        } else {
            format!(
                "k-core (k={k}): items with fewer than {item_min} and users with fewer than {user_min} interactions (train, validation and test need 3), iteratively"
            )
        },
        users: users_before - user_alive.iter().filter(|a| **a).count(),
        items: items_before - item_alive.iter().filter(|a| **a).count(),
        interactions: interactions_after - kept_interactions,
    });

    // Dense ids in source order.
    let mut new_item = vec![u32::MAX; items.len()];
    let mut kept_items = Vec::new();
    for (old, item) in items.into_iter().enumerate() {
        if !item_alive[old] {
            continue;
        }
        let id = ItemId(kept_items.len() as u32);
        new_item[old] = id.0;
        kept_items.push(Item {
            id,
            title: item.title.unwrap_or_else(|| item.original_id.clone()),
            original_id: item.original_id,
            categories: item.categories,
            brand: item.brand,
            description: item.description,
            features: item.features,
        });
    }
    let mut kept_users = Vec::new();
    let mut kept_sequences = Vec::new();
    for ((original_id, seq), alive) in users.into_iter().zip(sequences).zip(user_alive) {
        if !alive {
            continue;
        }
        kept_users.push(User {
            id: UserId(kept_users.len() as u32),
            original_id,
        });
        kept_sequences.push(
            seq.into_iter()
                .map(|i| Interaction {
                    item: ItemId(new_item[i.item.index()]),
                    ..i
                })
                .collect(),
        );
    }
    (
        Dataset {
            items: kept_items,
            users: kept_users,
            sequences: kept_sequences,
        },
        dropped,
    )
}
