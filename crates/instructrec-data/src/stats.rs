//! Dataset statistics in the shape of the paper's dataset table.

use std::fmt;
use std::path::PathBuf;

use crate::types::Dataset;
use crate::{DataError, Prepared};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// 1 - interactions / (users x items), as a fraction.
    pub sparsity: f64,
    /// Mean interactions per user.
    pub average_length: f64,
}

impl Stats {
    pub fn of(dataset: &Dataset) -> Self {
        let users = dataset.users.len();
        let items = dataset.items.len();
        let interactions: usize = dataset.sequences.iter().map(Vec::len).sum();
        let cells = users as f64 * items as f64;
        Self {
            users,
            items,
            interactions,
            sparsity: if cells > 0.0 {
                1.0 - interactions as f64 / cells
            } else {
                0.0
            },
            average_length: if users > 0 {
                interactions as f64 / users as f64
            } else {
                0.0
            },
        }
    }
}

/// A table with one named row per dataset: `StatsTable(vec![("games".into(), stats)])`.
pub struct StatsTable(pub Vec<(String, Stats)>);

impl StatsTable {
    /// The statistics of prepared directories, each row named by its folder.
    pub fn of_dirs(dirs: &[PathBuf]) -> Result<Self, DataError> {
        let rows = dirs.iter().map(|dir| {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            Ok((name.into_owned(), Stats::of(&Prepared::load(dir)?.dataset)))
        });
        rows.collect::<Result<_, _>>().map(Self)
    }
}

impl fmt::Display for StatsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .0
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(0)
            .max("Dataset".len());
        writeln!(
            f,
            "{:<width$}  {:>8}  {:>8}  {:>13}  {:>9}  {:>11}",
            "Dataset", "#Users", "#Items", "#Interactions", "Sparsity", "Avg. length"
        )?;
        for (name, s) in &self.0 {
            writeln!(
                f,
                "{:<width$}  {:>8}  {:>8}  {:>13}  {:>8.4}%  {:>11.2}",
                name,
                s.users,
                s.items,
                s.interactions,
                s.sparsity * 100.0,
                s.average_length
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        StatsTable(vec![(String::new(), *self)]).fmt(f)
    }
}
