//! A report on disk: JSON for machines, markdown for people and an SVG plot, side by side. Kept
//! apart from `report` so that the plot can read a report without the report depending on it.

use std::path::Path;

use crate::plot;
use crate::report::{write_atomic, Report};
use crate::scenarios::ScenarioTable;

impl Report {
    /// Writes `<stem>.json`, `<stem>.md` and `<stem>.svg` next to each other, each atomically.
    pub fn write(&self, stem: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        write_three(stem, &json, |svg| self.markdown(svg), plot::render(self)?)
    }
}

impl ScenarioTable {
    /// Writes `<stem>.json`, `<stem>.md` and `<stem>.svg` next to each other, each atomically.
    pub fn write(&self, stem: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        let svg = plot::render_scenarios(self)?;
        write_three(stem, &json, |name| self.markdown(name), svg)
    }
}

/// The three files of a report; the markdown is given the SVG's file name to link to.
fn write_three(
    stem: &Path,
    json: &str,
    markdown: impl FnOnce(&str) -> String,
    svg: String,
) -> anyhow::Result<()> {
    write_atomic(&stem.with_extension("json"), json.as_bytes())?;
    let svg_path = stem.with_extension("svg");
    let svg_name = svg_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plot.svg")
        .to_string();
    write_atomic(&stem.with_extension("md"), markdown(&svg_name).as_bytes())?;
    write_atomic(&svg_path, svg.as_bytes())
}
