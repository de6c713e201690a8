//! The SVG charts of reports and of the scenario table. Plotters' SVG backend writes text as
//! `<text>` elements, so no font files are needed to render them. Every chart keeps the same
//! rules, so that charts can be read side by side:
//!
//! - a model has one colour wherever it appears ([`model_colour`]), whatever else a chart shows
//!   and in whatever order; the paper's figures for a model are drawn in that colour, hatched on
//!   a lighter fill;
//! - metrics lie in [0, 1], and the y axis ends at 1;
//! - the legend stands to the right of the plots, never over them;
//! - every bar is labelled with its value.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::harness::Setting;
use crate::paper::{paper_setting, same_scenario};
use crate::report::Report;
use crate::scenarios::ScenarioTable;
use instructrec_data::Fold;

const METRICS: [&str; 5] = ["HR@1", "HR@3", "HR@5", "NDCG@3", "NDCG@5"];

// ---------------------------------------------------------------------------------------------
// Colours

/// The instruction model's usual row (`instructrec-mean`); the paper's InstructRec rows take it.
const INSTRUCTREC: RGBColor = RGBColor(214, 39, 40);

/// The fixed colour of every model name reports use: the baselines, the instruction model by
/// task form and scoring rule (see `InstructionScoring::model_name`), and the paper's other
/// models. A `-permuted` row takes its model's colour, darker ([`model_colour`]).
const MODEL_COLOURS: [(&str, RGBColor); 14] = [
    ("popularity", RGBColor(127, 127, 127)),
    ("bm25", RGBColor(140, 86, 75)),
    ("sasrec", RGBColor(31, 119, 180)),
    ("bert4rec", RGBColor(23, 190, 207)),
    ("two-tower", RGBColor(148, 103, 189)),
    ("dssm", RGBColor(44, 160, 44)),
    ("tem", RGBColor(188, 189, 34)),
    ("instructrec-mean", INSTRUCTREC),
    ("instructrec", RGBColor(150, 20, 60)),
    ("instructrec-t2", RGBColor(255, 127, 14)),
    ("instructrec-t2-mean", RGBColor(253, 174, 97)),
    ("instructrec-t0", RGBColor(231, 41, 138)),
    ("gpt-3.5", RGBColor(227, 119, 194)),
    ("flan-t5-xl untuned", RGBColor(57, 59, 121)),
];

/// Colours for names not in [`MODEL_COLOURS`], picked by a hash of the name.
const OTHER_COLOURS: [RGBColor; 10] = [
    RGBColor(27, 158, 119),
    RGBColor(117, 112, 179),
    RGBColor(102, 166, 30),
    RGBColor(230, 171, 2),
    RGBColor(166, 118, 29),
    RGBColor(1, 102, 94),
    RGBColor(106, 61, 154),
    RGBColor(177, 89, 40),
    RGBColor(82, 82, 82),
    RGBColor(0, 60, 140),
];

/// A model's colour, from its name alone, so that it is the same in every chart: the fixed
/// colour of a known name (letter case aside), its model's colour darkened for a `-permuted`
/// control row, and otherwise one of [`OTHER_COLOURS`] chosen by an FNV-1a hash of the name
/// (stable across runs and platforms, unlike the standard library's hasher).
fn model_colour(name: &str) -> RGBColor {
    let key = name.trim().to_ascii_lowercase();
    if let Some(model) = key.strip_suffix("-permuted") {
        let RGBColor(r, g, b) = model_colour(model);
        let dark = |c: u8| (u16::from(c) * 9 / 20) as u8;
        return RGBColor(dark(r), dark(g), dark(b));
    }
    if let Some((_, colour)) = MODEL_COLOURS.iter().find(|(n, _)| *n == key) {
        return *colour;
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    OTHER_COLOURS[(hash % OTHER_COLOURS.len() as u64) as usize]
}

/// The model a paper row is of, as ours are named: "SASRec (trained on CDs)" is `sasrec`, every
/// InstructRec row is the instruction model.
fn paper_family(model: &str) -> String {
    let name = model.split(" (").next().unwrap_or(model).trim();
    family(name)
}

/// The model a row of ours is of: its name without letter case, the instruction model's rows
/// (every task form and scoring rule) as `instructrec`.
fn family(name: &str) -> String {
    let key = name.trim().to_ascii_lowercase();
    if key.starts_with("instructrec") {
        "instructrec".into()
    } else {
        key
    }
}

/// A paper row's colour: its model's ([`INSTRUCTREC`] for the instruction model).
fn paper_colour(model: &str) -> RGBColor {
    let name = model.split(" (").next().unwrap_or(model);
    if paper_family(model) == "instructrec" {
        INSTRUCTREC
    } else {
        model_colour(name)
    }
}

/// `colour` a share `weight` of the way to white: the fill of the paper's bars.
fn lighter(RGBColor(r, g, b): RGBColor, weight: f64) -> RGBColor {
    let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * weight).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

// ---------------------------------------------------------------------------------------------
// Layout

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

// Font sizes, in plotters' units (the SVG's `font-size` is the size / 1.24).
const TITLE_FONT: f64 = 20.0;
const PANEL_FONT: f64 = 16.0;
const LABEL_FONT: f64 = 14.0;
const VALUE_FONT: f64 = 11.0;

// Sizes in pixels: the outer margin, the y axis's label area, a plot's height, the chart's
// title, a panel's title, the gap between panels.
const MARGIN: i32 = 12;
const Y_AREA: i32 = 58;
const PLOT_H: i32 = 280;
const TITLE_H: i32 = 40;
const PANEL_TITLE_H: i32 = 24;
const GAP: i32 = 14;
// The narrowest bar, group of bars and plot; bars fill 80% of their group.
const MIN_BAR: i32 = 15;
const MIN_GROUP: i32 = 90;
const MIN_PLOT_W: i32 = 600;
/// Group labels are widened to fit on one line only while the plot stays this narrow.
const MAX_PLOT_W: i32 = 1000;
const BAR_SHARE: f64 = 0.8;

/// About how wide `text` is in a sans-serif font of `size` (0.6 em a character).
fn text_width(text: &str, size: f64) -> i32 {
    (text.chars().count() as f64 * size / 1.24 * 0.6).ceil() as i32
}

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font())
}

/// A pixel rectangle: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PxRect {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl PxRect {
    #[cfg(test)]
    fn overlaps(&self, other: &PxRect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }
}

/// What a chart drew where, for the tests to hold against the SVG.
#[derive(Debug, Default)]
struct Drawn {
    svg: String,
    /// Each panel's plotting area.
    plots: Vec<PxRect>,
    legend: Option<PxRect>,
    bars: Vec<DrawnBar>,
}

/// A bar as drawn (read by the tests).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
struct DrawnBar {
    rect: PxRect,
    value: f64,
    hatched: bool,
}

// ---------------------------------------------------------------------------------------------
// Legend

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    /// A bar of ours (solid) or of the paper (hatched).
    Bar { colour: RGBColor, hatched: bool },
    Line {
        colour: RGBColor,
        width: u32,
        dashed: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct LegendEntry {
    label: String,
    mark: Mark,
}

const LEGEND_ROW: i32 = 20;

fn legend_size(entries: &[LegendEntry]) -> (i32, i32) {
    let text = entries
        .iter()
        .map(|e| text_width(&e.label, LABEL_FONT))
        .max()
        .unwrap_or(0);
    (
        8 + 22 + 8 + text + 10,
        8 + LEGEND_ROW * entries.len() as i32 + 4,
    )
}

/// The legend, in a box whose top left corner is `at`; returns the box.
fn draw_legend(root: &Area<'_>, at: (i32, i32), entries: &[LegendEntry]) -> anyhow::Result<PxRect> {
    let (w, h) = legend_size(entries);
    let rect = PxRect {
        x0: at.0,
        y0: at.1,
        x1: at.0 + w,
        y1: at.1 + h,
    };
    root.draw(&Rectangle::new(
        [(rect.x0, rect.y0), (rect.x1, rect.y1)],
        WHITE.filled(),
    ))?;
    root.draw(&Rectangle::new(
        [(rect.x0, rect.y0), (rect.x1, rect.y1)],
        BLACK.stroke_width(1),
    ))?;
    for (i, e) in entries.iter().enumerate() {
        let y = rect.y0 + 8 + LEGEND_ROW * i as i32 + LEGEND_ROW / 2;
        let x = rect.x0 + 8;
        match e.mark {
            Mark::Bar { colour, hatched } => {
                let swatch = PxRect {
                    x0: x,
                    y0: y - 6,
                    x1: x + 22,
                    y1: y + 6,
                };
                draw_bar(root, swatch, colour, hatched)?;
            }
            Mark::Line {
                colour,
                width,
                dashed,
            } => draw_hline(root, (x, x + 22), y, colour, width, dashed)?,
        }
        root.draw(&Text::new(
            e.label.clone(),
            (x + 30, y),
            font(LABEL_FONT).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(rect)
}

/// A bar in pixels: filled with `colour`, or (the paper's) a lighter fill hatched and outlined
/// in `colour`.
fn draw_bar(root: &Area<'_>, r: PxRect, colour: RGBColor, hatched: bool) -> anyhow::Result<()> {
    if !hatched {
        root.draw(&Rectangle::new(
            [(r.x0, r.y0), (r.x1, r.y1)],
            colour.filled(),
        ))?;
        return Ok(());
    }
    root.draw(&Rectangle::new(
        [(r.x0, r.y0), (r.x1, r.y1)],
        lighter(colour, 0.7).filled(),
    ))?;
    // Lines x + y = c, 45 degrees up to the right, clipped to the bar.
    let step = 5;
    let mut c = r.x0 + r.y0 + step;
    while c < r.x1 + r.y1 {
        let top = r.y0.max(c - r.x1);
        let bottom = r.y1.min(c - r.x0);
        if top < bottom {
            root.draw(&PathElement::new(
                vec![(c - bottom, bottom), (c - top, top)],
                colour.stroke_width(1),
            ))?;
        }
        c += step;
    }
    root.draw(&Rectangle::new(
        [(r.x0, r.y0), (r.x1, r.y1)],
        colour.stroke_width(1),
    ))?;
    Ok(())
}

fn draw_hline(
    root: &Area<'_>,
    (x0, x1): (i32, i32),
    y: i32,
    colour: RGBColor,
    width: u32,
    dashed: bool,
) -> anyhow::Result<()> {
    let style = colour.stroke_width(width);
    if !dashed {
        root.draw(&PathElement::new(vec![(x0, y), (x1, y)], style))?;
        return Ok(());
    }
    let mut x = x0;
    while x < x1 {
        root.draw(&PathElement::new(vec![(x, y), ((x + 6).min(x1), y)], style))?;
        x += 10;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Bar charts

/// One bar: its group, value (in [0, 1]) and, for the scenario table, the half width of its
/// 95% interval.
#[derive(Debug, Clone, Copy)]
struct Bar {
    group: usize,
    value: f64,
    half: Option<f64>,
    colour: RGBColor,
    hatched: bool,
}

/// One plot: groups of bars along the x axis, each group's bars in the order given.
#[derive(Debug, Clone)]
struct Panel {
    title: String,
    /// Each group's label, one line per `\n`.
    groups: Vec<String>,
    bars: Vec<Bar>,
}

#[derive(Debug, Clone)]
struct BarChart {
    title: String,
    y_desc: String,
    panels: Vec<Panel>,
    legend: Vec<LegendEntry>,
}

/// Draws `chart`: its panels one above the other, each with its y axis over [0, 1], every bar
/// labelled with its value (rotated when bars are too narrow for it), and the legend to the right
/// of the panels.
fn draw_bars(chart: &BarChart) -> anyhow::Result<Drawn> {
    let slots = chart
        .panels
        .iter()
        .flat_map(|p| (0..p.groups.len()).map(|g| p.bars.iter().filter(|b| b.group == g).count()))
        .max()
        .unwrap_or(1)
        .max(1) as i32;
    let n_groups = chart
        .panels
        .iter()
        .map(|p| p.groups.len())
        .max()
        .unwrap_or(1)
        .max(1) as i32;
    let mut group_w = MIN_GROUP.max((f64::from(slots * MIN_BAR) / BAR_SHARE).ceil() as i32);
    let longest_line = chart
        .panels
        .iter()
        .flat_map(|p| &p.groups)
        .flat_map(|g| g.lines())
        .map(|l| text_width(l, LABEL_FONT))
        .max()
        .unwrap_or(0);
    let lines = chart
        .panels
        .iter()
        .flat_map(|p| &p.groups)
        .map(|g| g.lines().count())
        .max()
        .unwrap_or(1) as i32;
    // Group labels on lines under their group where they fit (widening groups up to a point),
    // else turned to read upwards.
    let flat_labels = longest_line + 8 <= group_w.max(MAX_PLOT_W / n_groups);
    if flat_labels {
        group_w = group_w.max(longest_line + 8);
    }
    let plot_w = MIN_PLOT_W.max(group_w * n_groups);
    let bar_w = f64::from(plot_w) / f64::from(n_groups) * BAR_SHARE / f64::from(slots);
    let value_w = text_width("0.00", VALUE_FONT);
    let flat_values = bar_w >= f64::from(value_w + 2);
    let headroom = if flat_values { 16 } else { value_w + 8 };
    let x_area = if flat_labels {
        lines * 17 + 10
    } else {
        longest_line + 14
    };
    let title_h = if chart.panels.iter().any(|p| !p.title.is_empty()) {
        PANEL_TITLE_H
    } else {
        0
    };
    let panel_h = title_h + headroom + PLOT_H + x_area;
    let panel_w = Y_AREA + plot_w + 2 * MARGIN;
    let (legend_w, legend_h) = legend_size(&chart.legend);
    let n_panels = chart.panels.len().max(1) as i32;
    let panels_h = TITLE_H + n_panels * panel_h + (n_panels - 1) * GAP;
    let width = panel_w + legend_w + 3 * MARGIN;
    let height = panels_h.max(TITLE_H + title_h + headroom + legend_h) + MARGIN;

    let mut drawn = Drawn::default();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            chart.title.clone(),
            (MARGIN + Y_AREA, MARGIN),
            font(TITLE_FONT).pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
        for (i, panel) in chart.panels.iter().enumerate() {
            let top = TITLE_H + i as i32 * (panel_h + GAP);
            let area = root
                .clone()
                .shrink((MARGIN, top), (panel_w - MARGIN, panel_h));
            let mut c = ChartBuilder::on(&area)
                .margin_top(title_h + headroom)
                .margin_right(MARGIN)
                .x_label_area_size(x_area)
                .y_label_area_size(Y_AREA)
                .build_cartesian_2d(0f64..panel.groups.len().max(1) as f64, 0f64..1f64)?;
            unit_mesh(&mut c, &chart.y_desc)?;
            let plot = plot_rect(&c);
            drawn.plots.push(plot);
            if !panel.title.is_empty() {
                root.draw(&Text::new(
                    panel.title.clone(),
                    (plot.x0, top),
                    font(PANEL_FONT).pos(Pos::new(HPos::Left, VPos::Top)),
                ))?;
            }
            draw_group_labels(&root, &c, plot, &panel.groups, flat_labels)?;
            let slot = BAR_SHARE / f64::from(slots);
            for g in 0..panel.groups.len() {
                let bars: Vec<&Bar> = panel.bars.iter().filter(|b| b.group == g).collect();
                let start = g as f64 + 0.5 - bars.len() as f64 * slot / 2.0;
                for (j, bar) in bars.iter().enumerate() {
                    let x0 = start + j as f64 * slot + 0.05 * slot;
                    let x1 = start + (j + 1) as f64 * slot - 0.05 * slot;
                    let value = bar.value.clamp(0.0, 1.0);
                    let (px0, py0) = c.backend_coord(&(x0, value));
                    let (px1, py1) = c.backend_coord(&(x1, 0.0));
                    let r = PxRect {
                        x0: px0,
                        y0: py0,
                        x1: px1.max(px0 + 1),
                        y1: py1,
                    };
                    draw_bar(&root, r, bar.colour, bar.hatched)?;
                    drawn.bars.push(DrawnBar {
                        rect: r,
                        value: bar.value,
                        hatched: bar.hatched,
                    });
                    let centre = (px0 + r.x1) / 2;
                    let mut label_y = r.y0;
                    if let Some(half) = bar.half {
                        let (_, lo) = c.backend_coord(&(x0, (value - half).max(0.0)));
                        let (_, hi) = c.backend_coord(&(x0, (value + half).min(1.0)));
                        let whisker = BLACK.stroke_width(1);
                        root.draw(&PathElement::new(vec![(centre, lo), (centre, hi)], whisker))?;
                        for y in [lo, hi] {
                            root.draw(&PathElement::new(
                                vec![(centre - 3, y), (centre + 3, y)],
                                whisker,
                            ))?;
                        }
                        label_y = label_y.min(hi);
                    }
                    let text = format!("{:.2}", bar.value);
                    let style = if flat_values {
                        font(VALUE_FONT).pos(Pos::new(HPos::Center, VPos::Bottom))
                    } else {
                        font(VALUE_FONT)
                            .transform(FontTransform::Rotate270)
                            .pos(Pos::new(HPos::Left, VPos::Center))
                    };
                    root.draw(&Text::new(text, (centre, label_y - 3), style))?;
                }
            }
        }
        let first = drawn.plots.first().copied();
        let legend_at = (MARGIN + panel_w + MARGIN, first.map_or(TITLE_H, |p| p.y0));
        if !chart.legend.is_empty() {
            drawn.legend = Some(draw_legend(&root, legend_at, &chart.legend)?);
        }
        root.present()?;
    }
    drawn.svg = svg;
    Ok(drawn)
}

/// Where a chart's axes' ranges are drawn: x from the left end of its range to the right, y from
/// 1 (top) to 0 (bottom).
fn plot_rect(chart: &Chart<'_, '_>) -> PxRect {
    let (xs, ys) = (chart.x_range(), chart.y_range());
    let (x0, y0) = chart.backend_coord(&(xs.start, ys.end));
    let (x1, y1) = chart.backend_coord(&(xs.end, ys.start));
    PxRect { x0, y0, x1, y1 }
}

/// The y axis over [0, 1] with ticks every 0.2 and horizontal grid lines; no x ticks (groups are
/// labelled by [`draw_group_labels`]).
fn unit_mesh(chart: &mut Chart<'_, '_>, y_desc: &str) -> anyhow::Result<()> {
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .y_desc(y_desc)
        .label_style(font(LABEL_FONT))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    Ok(())
}

/// Each group's label centred under it: its lines one under the other, or, when they do not fit
/// (`flat` false), turned to read upwards side by side.
fn draw_group_labels(
    root: &Area<'_>,
    chart: &Chart<'_, '_>,
    plot: PxRect,
    groups: &[String],
    flat: bool,
) -> anyhow::Result<()> {
    for (g, label) in groups.iter().enumerate() {
        let (x, _) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        let lines: Vec<&str> = label.lines().collect();
        for (k, line) in lines.iter().enumerate() {
            if flat {
                root.draw(&Text::new(
                    line.to_string(),
                    (x, plot.y1 + 6 + 17 * k as i32),
                    font(LABEL_FONT).pos(Pos::new(HPos::Center, VPos::Top)),
                ))?;
            } else {
                let dx = (2 * k as i32 - lines.len() as i32 + 1) * 8;
                root.draw(&Text::new(
                    line.to_string(),
                    (x + dx, plot.y1 + 6),
                    font(LABEL_FONT)
                        .transform(FontTransform::Rotate270)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reports

/// Renders a report's chart to an SVG string: HR@1 by tuning stage for the held-out protocol,
/// the metric bars otherwise.
pub fn render(report: &Report) -> anyhow::Result<String> {
    Ok(draw_report(report)?.svg)
}

fn draw_report(report: &Report) -> anyhow::Result<Drawn> {
    if report.stages.is_empty() {
        draw_bars(&report_chart(report))
    } else {
        draw_stages(report)
    }
}

/// A row of bars: one value per metric of [`METRICS`].
struct Series {
    label: String,
    /// The model it is of, as [`family`] names it.
    family: String,
    values: [f64; 5],
    colour: RGBColor,
    hatched: bool,
}

/// The metric bars of a report: one panel per list setting of the test fold (of the validation
/// fold in a report that has no test results; in the order the models' results have them), every model that has a result in it, and the paper's figures
/// of the report's scenario ([`same_scenario`]) beside their models, in the panel of the setting
/// they are comparable with ([`paper_setting`]). `report.paper` already holds only the figures
/// of the report's dataset (see [`crate::paper::figures_for`]).
fn report_chart(report: &Report) -> BarChart {
    let results = || report.models.iter().flat_map(|m| &m.results);
    let fold = results().map(|e| e.fold).max().unwrap_or(Fold::Test);
    let mut settings: Vec<Setting> = Vec::new();
    for e in results() {
        if e.fold == fold && !settings.contains(&e.setting) {
            settings.push(e.setting);
        }
    }
    let paper_at = paper_setting(report.protocol);
    let paper_rows = same_scenario(&report.paper, &report.scenario);
    if !paper_rows.is_empty() && !settings.contains(&paper_at) {
        settings.push(paper_at);
    }
    let mut legend: Vec<LegendEntry> = Vec::new();
    let mut panels = Vec::new();
    for setting in settings {
        let mut series: Vec<Series> = Vec::new();
        let mut paper: Vec<Series> = if setting == paper_at {
            paper_rows
                .iter()
                .map(|p| Series {
                    label: format!("{} (paper)", p.model),
                    family: paper_family(p.model),
                    values: [p.hr1, p.hr3, p.hr5, p.ndcg3, p.ndcg5],
                    colour: paper_colour(p.model),
                    hatched: true,
                })
                .collect()
        } else {
            Vec::new()
        };
        for m in &report.models {
            let Some(e) = m
                .results
                .iter()
                .find(|e| e.fold == fold && e.setting == setting)
            else {
                continue;
            };
            let v = &e.metrics;
            series.push(Series {
                label: format!("{} (ours)", m.name),
                family: family(&m.name),
                values: [v.hr1, v.hr3, v.hr5, v.ndcg3, v.ndcg5],
                colour: model_colour(&m.name),
                hatched: false,
            });
            // The paper's figures for this model right after ours.
            if !m.name.ends_with("-permuted") {
                let ours = family(&m.name);
                let (theirs, rest): (Vec<Series>, Vec<Series>) =
                    paper.into_iter().partition(|p| p.family == ours);
                series.extend(theirs);
                paper = rest;
            }
        }
        series.extend(paper);
        for s in &series {
            if !legend.iter().any(|e| e.label == s.label) {
                legend.push(LegendEntry {
                    label: s.label.clone(),
                    mark: Mark::Bar {
                        colour: s.colour,
                        hatched: s.hatched,
                    },
                });
            }
        }
        let bars = (0..METRICS.len())
            .flat_map(|g| {
                series.iter().map(move |s| Bar {
                    group: g,
                    value: s.values[g],
                    half: None,
                    colour: s.colour,
                    hatched: s.hatched,
                })
            })
            .collect();
        panels.push(Panel {
            title: setting_title(setting),
            groups: METRICS.map(String::from).to_vec(),
            bars,
        });
    }
    BarChart {
        title: format!(
            "{} on {}: test fold",
            report.title(),
            report.dataset.source.format
        ),
        y_desc: "value".into(),
        panels,
        legend,
    }
}

fn setting_title(setting: Setting) -> String {
    match setting {
        Setting::Sampled { size } => format!("1 positive + {} sampled negatives", size - 1),
        Setting::FullRanking => "full ranking (the whole catalogue)".into(),
        Setting::Tournament { size, groups } => format!(
            "1 positive + {} negatives, ranked in {groups} groups and a final",
            size - 1
        ),
    }
}

/// Held-out protocol: HR@1 on the held-out cases against the tuning stage, with a 95% interval
/// (1.96 standard errors) per stage, and the other models, random ranking and the paper's
/// models (tuned with the scenario) as horizontal reference lines: ours solid in the model's
/// colour, the paper's dashed in its model's colour.
fn draw_stages(report: &Report) -> anyhow::Result<Drawn> {
    let mut points = Vec::new();
    for (i, st) in report.stages.iter().enumerate() {
        if let Some(e) = report.sampled_result(&st.model) {
            let m = &e.metrics;
            let half = 1.96 * (m.hr1 * (1.0 - m.hr1) / m.cases.max(1) as f64).sqrt();
            points.push((i as f64, m.hr1, half));
        }
    }
    let stage_models: Vec<&str> = report.stages.iter().map(|s| s.model.as_str()).collect();
    // (label, value, colour, width, dashed)
    let mut references: Vec<(String, f64, RGBColor, u32, bool)> = report
        .models
        .iter()
        .filter(|m| !stage_models.contains(&m.name.as_str()))
        .filter_map(|m| {
            let e = report.sampled_result(&m.name)?;
            let label = format!("{} (ours)", m.name);
            Some((label, e.metrics.hr1, model_colour(&m.name), 2, false))
        })
        .collect();
    let size =
        report
            .stages
            .iter()
            .find_map(|st| match report.sampled_result(&st.model)?.setting {
                Setting::Sampled { size } => Some(size),
                _ => None,
            });
    if let Some(size) = size {
        let grey = RGBColor(90, 90, 90);
        references.push((
            format!("random (1/{size})"),
            1.0 / size as f64,
            grey,
            1,
            true,
        ));
    }
    references.extend(report.paper.iter().map(|p| {
        let label = format!("{} (paper, tuned with I1)", p.model);
        (label, p.hr1, paper_colour(p.model), 2, true)
    }));
    let ours = "instruction model, held-out stages";
    let mut legend: Vec<LegendEntry> = vec![LegendEntry {
        label: ours.into(),
        mark: Mark::Line {
            colour: BLACK,
            width: 2,
            dashed: false,
        },
    }];
    legend.extend(
        references
            .iter()
            .map(|(label, v, colour, width, dashed)| LegendEntry {
                label: format!("{label}: {v:.3}"),
                mark: Mark::Line {
                    colour: *colour,
                    width: *width,
                    dashed: *dashed,
                },
            }),
    );
    let names: Vec<String> = report.stages.iter().map(|s| s.name.clone()).collect();
    let n = names.len().max(1) as f64;
    let plot_w = MIN_PLOT_W.max(names.len() as i32 * 120);
    let x_area = 40;
    let panel_w = Y_AREA + plot_w + 2 * MARGIN;
    let headroom = 16;
    let panel_h = headroom + PLOT_H + x_area;
    let (legend_w, legend_h) = legend_size(&legend);
    let width = panel_w + legend_w + 3 * MARGIN;
    let height = (TITLE_H + panel_h).max(TITLE_H + headroom + legend_h) + MARGIN;

    let mut drawn = Drawn::default();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            format!("{}: HR@1 by tuning stage (95% intervals)", report.title()),
            (MARGIN + Y_AREA, MARGIN),
            font(TITLE_FONT).pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
        let area = root
            .clone()
            .shrink((MARGIN, TITLE_H), (panel_w - MARGIN, panel_h));
        let mut chart = ChartBuilder::on(&area)
            .margin_top(headroom)
            .margin_right(MARGIN)
            .x_label_area_size(x_area)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..1f64)?;
        unit_mesh(&mut chart, "HR@1")?;
        let plot = plot_rect(&chart);
        drawn.plots.push(plot);
        for (i, name) in names.iter().enumerate() {
            let (x, _) = chart.backend_coord(&(i as f64, 0.0));
            root.draw(&Text::new(
                name.clone(),
                (x, plot.y1 + 6),
                font(LABEL_FONT).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        root.draw(&Text::new(
            "tuning stage",
            ((plot.x0 + plot.x1) / 2, plot.y1 + 24),
            font(LABEL_FONT).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        for (_, v, colour, width, dashed) in &references {
            let (_, y) = chart.backend_coord(&(0.0, v.clamp(0.0, 1.0)));
            draw_hline(&root, (plot.x0, plot.x1), y, *colour, *width, *dashed)?;
        }
        let black = BLACK.stroke_width(2);
        chart.draw_series(LineSeries::new(
            points.iter().map(|&(x, y, _)| (x, y)),
            black,
        ))?;
        for (i, &(x, y, half)) in points.iter().enumerate() {
            let centre = chart.backend_coord(&(x, y));
            let (_, lo) = chart.backend_coord(&(x, (y - half).max(0.0)));
            let (_, hi) = chart.backend_coord(&(x, (y + half).min(1.0)));
            root.draw(&PathElement::new(
                vec![(centre.0, lo), (centre.0, hi)],
                BLACK.stroke_width(1),
            ))?;
            root.draw(&Circle::new(centre, 4, BLACK.filled()))?;
            // Right of the point, on the side the line to the next point leaves free.
            let rising = points.get(i + 1).is_some_and(|next| next.1 > y);
            let (dy, v) = if rising {
                (4, VPos::Top)
            } else {
                (-4, VPos::Bottom)
            };
            root.draw(&Text::new(
                format!("{y:.2}"),
                (centre.0 + 7, centre.1 + dy),
                font(VALUE_FONT).pos(Pos::new(HPos::Left, v)),
            ))?;
        }
        drawn.legend = Some(draw_legend(
            &root,
            (MARGIN + panel_w + MARGIN, plot.y0),
            &legend,
        )?);
        root.present()?;
    }
    drawn.svg = svg;
    Ok(drawn)
}

// ---------------------------------------------------------------------------------------------
// The scenario table

/// The scenario table's chart to an SVG string: HR@1 of each model in each scenario and setting.
pub fn render_scenarios(table: &ScenarioTable) -> anyhow::Result<String> {
    Ok(draw_bars(&scenario_chart(table))?.svg)
}

/// One bar group per scenario and setting, one bar per model (in the order models first appear)
/// in its fixed colour, with 95% intervals (1.96 standard errors).
fn scenario_chart(table: &ScenarioTable) -> BarChart {
    let mut groups: Vec<(String, String)> = Vec::new();
    let mut models: Vec<&str> = Vec::new();
    for row in &table.rows {
        let group = (row.scenario.clone(), row.setting.clone());
        if !groups.contains(&group) {
            groups.push(group);
        }
        if !models.contains(&row.model.as_str()) {
            models.push(&row.model);
        }
    }
    let mut bars = Vec::new();
    for (g, (scenario, setting)) in groups.iter().enumerate() {
        for model in &models {
            let rows = table
                .rows
                .iter()
                .filter(|r| r.model == *model && r.scenario == *scenario && r.setting == *setting);
            for r in rows {
                bars.push(Bar {
                    group: g,
                    value: r.hr1,
                    half: Some(1.96 * r.hr1_se),
                    colour: model_colour(model),
                    hatched: false,
                });
            }
        }
    }
    BarChart {
        title: "HR@1 by scenario and list setting (95% intervals)".into(),
        y_desc: "HR@1".into(),
        panels: vec![Panel {
            title: String::new(),
            groups: groups.iter().map(|(s, t)| format!("{s}\n{t}")).collect(),
            bars,
        }],
        legend: models
            .iter()
            .map(|m| LegendEntry {
                label: m.to_string(),
                mark: Mark::Bar {
                    colour: model_colour(m),
                    hatched: false,
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::harness::Evaluation;
    use crate::heldout::StageInfo;
    use crate::metrics::{Metrics, StdErrors};
    use crate::protocol::Protocol;
    use crate::report::ModelReport;
    use crate::scenarios::ScenarioRow;
    use crate::synthetic;

    const GAMES: &str = "../shared/datasets/amazon-games/raw/Games.inter.json";
    const TOYS: &str = "../shared/datasets/amazon-toys/sequential_data.txt";

    /// The SVG's `tag` elements: their attributes and text.
    fn elements(svg: &str, tag: &str) -> Vec<(HashMap<String, String>, String)> {
        let open = format!("<{tag} ");
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find(&open) {
            rest = &rest[start + open.len()..];
            let end = rest.find('>').unwrap();
            let head = &rest[..end];
            let mut attrs = HashMap::new();
            for part in head.split("\" ") {
                if let Some((k, v)) = part.split_once("=\"") {
                    attrs.insert(
                        k.trim().to_string(),
                        v.trim_end_matches(['"', '/']).to_string(),
                    );
                }
            }
            let text = if head.ends_with('/') {
                String::new()
            } else {
                let close = format!("</{tag}>");
                let body = &rest[end + 1..];
                body[..body.find(&close).unwrap()].trim().to_string()
            };
            out.push((attrs, text));
        }
        out
    }

    fn num(attrs: &HashMap<String, String>, key: &str) -> i32 {
        attrs[key].parse().unwrap()
    }

    fn hex(RGBColor(r, g, b): RGBColor) -> String {
        format!("#{r:02X}{g:02X}{b:02X}")
    }

    /// The fill of the SVG rectangle drawn exactly at `r`.
    fn fill_at(svg: &str, r: PxRect) -> String {
        elements(svg, "rect")
            .into_iter()
            .find(|(a, _)| {
                num(a, "x") == r.x0
                    && num(a, "y") == r.y0
                    && num(a, "width") == r.x1 - r.x0
                    && num(a, "height") == r.y1 - r.y0
                    && a["fill"] != "none"
            })
            .map(|(a, _)| a["fill"].clone())
            .unwrap_or_else(|| panic!("no rect at {r:?}"))
    }

    fn texts(svg: &str) -> Vec<String> {
        elements(svg, "text").into_iter().map(|(_, t)| t).collect()
    }

    fn metrics(values: [f64; 5]) -> Metrics {
        Metrics {
            cases: 100,
            hr1: values[0],
            hr3: values[1],
            hr5: values[2],
            ndcg3: values[3],
            ndcg5: values[4],
            se: StdErrors::default(),
            ..Metrics::default()
        }
    }

    fn model(name: &str, results: &[(Setting, [f64; 5])]) -> ModelReport {
        ModelReport {
            name: name.into(),
            config: serde_json::json!({}),
            config_hash: "0".repeat(64),
            model_hash: "0".repeat(64),
            train_wall_s: 0.0,
            training: None,
            loaded_from: None,
            results: results
                .iter()
                .map(|&(setting, v)| Evaluation {
                    setting,
                    fold: Fold::Test,
                    metrics: metrics(v),
                    eval_wall_s: 1.0,
                    ranks: Vec::new(),
                    asked: None,
                })
                .collect(),
        }
    }

    const SAMPLED: Setting = Setting::Sampled { size: 10 };

    /// A report as `eval` starts it on data read from `path` (so its paper rows are chosen as
    /// they are in a real run), with `models`.
    fn report(protocol: Protocol, path: &str, models: Vec<ModelReport>) -> Report {
        let mut prepared = synthetic::prepared(20, 120, 7);
        prepared.manifest.source.paths = vec![path.to_string()];
        let mut r =
            Report::new(&prepared, protocol, "test".into(), 1, &[(Fold::Test, 10)]).unwrap();
        r.models = models;
        r
    }

    /// Distinct values per model, so a bar's value says whose it is.
    fn values(k: usize) -> [f64; 5] {
        let base = 0.1 + 0.07 * k as f64;
        [base, base + 0.1, base + 0.15, base + 0.05, base + 0.08]
    }

    #[test]
    fn a_model_keeps_its_colour_whatever_the_other_models_and_their_order() {
        let a_names = ["bm25", "sasrec", "instructrec-mean", "my-model"];
        let b_names = ["my-model", "instructrec-mean", "popularity", "tem", "bm25"];
        // Each model has the same values in both reports, chosen by its name.
        let all = [
            "bm25",
            "sasrec",
            "instructrec-mean",
            "my-model",
            "popularity",
            "tem",
        ];
        let value_of = |name: &str| values(all.iter().position(|n| *n == name).unwrap());
        let mk = |names: &[&str]| {
            let models = names
                .iter()
                .map(|n| model(n, &[(SAMPLED, value_of(n))]))
                .collect();
            draw_report(&report(Protocol::Sequential, GAMES, models)).unwrap()
        };
        let (a, b) = (mk(&a_names), mk(&b_names));
        let fill = |drawn: &Drawn, name: &str| {
            let hr1 = value_of(name)[0];
            let bar = drawn
                .bars
                .iter()
                .find(|b| !b.hatched && b.value == hr1)
                .unwrap();
            fill_at(&drawn.svg, bar.rect)
        };
        for name in ["bm25", "instructrec-mean", "my-model"] {
            assert_eq!(fill(&a, name), fill(&b, name), "{name}");
            assert_eq!(fill(&a, name), hex(model_colour(name)), "{name}");
        }
        for (drawn, names) in [(&a, &a_names[..]), (&b, &b_names[..])] {
            let mut fills: Vec<String> = names.iter().map(|n| fill(drawn, n)).collect();
            fills.sort();
            fills.dedup();
            assert_eq!(fills.len(), names.len(), "two models share a colour");
        }
        // The paper's SASRec is drawn in SASRec's colour (its outline), hatched.
        let sasrec = hex(model_colour("sasrec"));
        let outlined = elements(&a.svg, "rect")
            .into_iter()
            .filter(|(attrs, _)| attrs["fill"] == "none" && attrs["stroke"] == sasrec)
            .count();
        assert_eq!(outlined, 5 + 1, "five hatched bars and the legend swatch");
    }

    #[test]
    fn colours_are_fixed_by_name() {
        let fixed: Vec<RGBColor> = MODEL_COLOURS.iter().map(|(_, c)| *c).collect();
        for (i, c) in fixed.iter().enumerate() {
            assert!(!fixed[i + 1..].contains(c), "{:?} twice", MODEL_COLOURS[i]);
        }
        assert_eq!(model_colour("SASRec"), model_colour("sasrec"));
        assert_eq!(model_colour("instructrec-mean"), INSTRUCTREC);
        assert_eq!(paper_colour("InstructRec (tuned on Games)"), INSTRUCTREC);
        assert_eq!(
            paper_colour("SASRec (trained on CDs)"),
            model_colour("sasrec")
        );
        assert_eq!(paper_colour("TEM"), model_colour("tem"));
        // The permuted-prompt control: its model's colour, darker, and no other model's.
        let permuted = model_colour("instructrec-mean-permuted");
        assert_ne!(permuted, INSTRUCTREC);
        assert!(!fixed.contains(&permuted));
        assert!(permuted.0 < INSTRUCTREC.0);
        // Unknown names: one of the second palette, the same every time.
        let other = model_colour("instructrec-mean S1");
        assert!(OTHER_COLOURS.contains(&other));
        assert_eq!(other, model_colour("instructrec-mean S1"));
        let spread: std::collections::HashSet<(u8, u8, u8)> = (0..40)
            .map(|i| model_colour(&format!("model-{i}")))
            .map(|RGBColor(r, g, b)| (r, g, b))
            .collect();
        assert!(spread.len() >= 6, "the hash uses the palette: {spread:?}");
    }

    #[test]
    fn bars_stay_in_the_plot_and_the_y_axis_ends_at_1() {
        let models = vec![
            model(
                "sasrec",
                &[(SAMPLED, [1.0; 5]), (Setting::FullRanking, [0.5; 5])],
            ),
            model(
                "bm25",
                &[(SAMPLED, [0.5; 5]), (Setting::FullRanking, [0.0; 5])],
            ),
        ];
        let drawn = draw_report(&report(Protocol::Sequential, GAMES, models)).unwrap();
        assert_eq!(drawn.plots.len(), 2, "one panel per setting");
        assert_eq!(drawn.bars.len(), 2 * 5 + 4 * 5 + 2 * 5);
        for bar in &drawn.bars {
            let r = bar.rect;
            let plot = drawn
                .plots
                .iter()
                .find(|p| r.x0 >= p.x0 && r.x1 <= p.x1 && r.y1 == p.y1)
                .unwrap_or_else(|| panic!("{bar:?} stands on no plot's x axis"));
            assert!(r.y0 >= plot.y0, "{bar:?} rises above {plot:?}");
            let h = f64::from(plot.y1 - plot.y0);
            let expected = f64::from(plot.y1) - bar.value * h;
            assert!(
                (f64::from(r.y0) - expected).abs() <= 1.0,
                "{bar:?}: axis is not 0..1"
            );
            if bar.value == 1.0 {
                assert_eq!(r.y0, plot.y0, "a 1.0 bar reaches the top and no further");
            }
        }
        // The y ticks: 0.0 to 1.0, nothing above.
        let ticks: Vec<f64> = texts(&drawn.svg)
            .iter()
            .filter(|t| t.len() == 3 && t.as_bytes()[1] == b'.')
            .filter_map(|t| t.parse().ok())
            .collect();
        assert!(ticks.contains(&1.0) && ticks.contains(&0.0), "{ticks:?}");
        assert!(ticks.iter().all(|&t| t <= 1.0), "{ticks:?}");
    }

    #[test]
    fn the_legend_never_overlaps_a_plot() {
        let names = [
            "popularity",
            "bm25",
            "sasrec",
            "bert4rec",
            "two-tower",
            "instructrec-mean",
            "instructrec-mean-permuted",
        ];
        let models = names
            .iter()
            .enumerate()
            .map(|(k, n)| {
                model(
                    n,
                    &[
                        (SAMPLED, values(k)),
                        (Setting::Sampled { size: 100 }, values(k)),
                    ],
                )
            })
            .collect();
        let bars = draw_report(&report(Protocol::Sequential, GAMES, models)).unwrap();
        let table = ScenarioTable {
            rows: (0..12)
                .flat_map(|s| {
                    names.iter().map(move |m| ScenarioRow {
                        scenario: format!("personalised-search-i{s}"),
                        setting: "1+9 sampled".into(),
                        model: m.to_string(),
                        cases: 100,
                        hr1: 0.95,
                        hr1_se: 0.05,
                        ndcg5: 0.5,
                        ndcg5_se: 0.01,
                        asked: None,
                        ranks: Vec::new(),
                    })
                })
                .collect(),
            comparisons: Vec::new(),
            sources: Vec::new(),
        };
        let scenarios = draw_bars(&scenario_chart(&table)).unwrap();
        let stages = draw_stages(&held_out_report()).unwrap();
        for drawn in [&bars, &scenarios, &stages] {
            let legend = drawn.legend.unwrap();
            for plot in &drawn.plots {
                assert!(
                    !legend.overlaps(plot),
                    "legend {legend:?} over plot {plot:?}"
                );
            }
            // The box drawn is the one checked, and it lies inside the picture.
            let svg_root = &elements(&drawn.svg, "svg")[0].0;
            assert!(legend.x1 <= num(svg_root, "width") && legend.y1 <= num(svg_root, "height"));
            let outlined = elements(&drawn.svg, "rect").into_iter().any(|(a, _)| {
                a["fill"] == "none"
                    && a["stroke"] == "#000000"
                    && (num(&a, "x"), num(&a, "y")) == (legend.x0, legend.y0)
                    && (num(&a, "width"), num(&a, "height"))
                        == (legend.x1 - legend.x0, legend.y1 - legend.y0)
            });
            assert!(outlined, "no legend box at {legend:?}");
            // Whiskers and bars stay in the plot too.
            for bar in &drawn.bars {
                assert!(drawn
                    .plots
                    .iter()
                    .any(|p| bar.rect.y0 >= p.y0 && bar.rect.y1 <= p.y1));
            }
        }
    }

    #[test]
    fn a_report_on_another_dataset_has_no_paper_bars() {
        let models = || vec![model("sasrec", &[(SAMPLED, values(1))])];
        let games = report(Protocol::Sequential, GAMES, models());
        assert_eq!(games.paper.len(), 4);
        let drawn = draw_report(&games).unwrap();
        assert_eq!(drawn.bars.iter().filter(|b| b.hatched).count(), 4 * 5);
        assert!(texts(&drawn.svg).iter().any(|t| t == "SASRec (paper)"));

        for path in [TOYS, "../shared/datasets/ml-100k/ml-100k.inter"] {
            let other = report(Protocol::Sequential, path, models());
            assert!(other.paper.is_empty(), "{path}");
            let drawn = draw_report(&other).unwrap();
            assert_eq!(drawn.bars.len(), 5);
            assert!(drawn.bars.iter().all(|b| !b.hatched));
            assert!(!drawn.svg.contains("(paper"), "{path}");
            let md = other.markdown("x.svg");
            assert!(!md.contains("## The paper's figures"), "{md}");
            assert!(
                md.contains("The paper measured this scenario on Games"),
                "{md}"
            );
        }
        // Zero-shot was measured on CDs: a Games -> Toys report shows none of it.
        let zero_shot = report(Protocol::ZeroShot, TOYS, models());
        assert!(zero_shot.paper.is_empty());
        assert!(!render(&zero_shot).unwrap().contains("(paper"));
    }

    #[test]
    fn every_bar_is_labelled_with_its_value() {
        let models = vec![
            model("bm25", &[(SAMPLED, [0.6213, 0.25, 0.5, 0.126, 1.0])]),
            model("sasrec", &[(SAMPLED, [0.0, 0.333, 0.666, 0.999, 0.05])]),
        ];
        let drawn = draw_report(&report(Protocol::Sequential, GAMES, models)).unwrap();
        let labels: Vec<String> = texts(&drawn.svg);
        for bar in &drawn.bars {
            let text = format!("{:.2}", bar.value);
            assert!(labels.contains(&text), "no label {text}");
        }
        for text in [
            "0.62", "0.25", "0.13", "1.00", "0.00", "0.33", "0.67", "0.05",
        ] {
            assert!(labels.iter().any(|l| l == text), "no label {text}");
        }
        // One label per bar, just above it.
        let value_labels = elements(&drawn.svg, "text")
            .into_iter()
            .filter(|(_, t)| t.len() == 4 && t.starts_with(['0', '1']) && t.contains('.'))
            .count();
        assert_eq!(value_labels, drawn.bars.len());

        // Many bars: the labels turn upright and all of them are still there.
        let many: Vec<ModelReport> = (0..12)
            .map(|k| model(&format!("model-{k}"), &[(SAMPLED, values(k))]))
            .collect();
        let drawn = draw_report(&report(Protocol::Sequential, GAMES, many)).unwrap();
        let rotated: Vec<(HashMap<String, String>, String)> = elements(&drawn.svg, "text")
            .into_iter()
            .filter(|(a, t)| {
                t.len() == 4
                    && a.get("transform")
                        .is_some_and(|t| t.starts_with("rotate(270"))
            })
            .collect();
        assert_eq!(rotated.len(), drawn.bars.len());
        for bar in &drawn.bars {
            let text = format!("{:.2}", bar.value);
            let centre = (bar.rect.x0 + bar.rect.x1) / 2;
            let above = rotated
                .iter()
                .any(|(a, t)| *t == text && num(a, "x") == centre && num(a, "y") < bar.rect.y0);
            assert!(above, "no upright {text} above {bar:?}");
        }
    }

    #[test]
    fn the_tournament_chart_shows_every_model_and_the_paper_beside_its_setting() {
        let tournament = Setting::Tournament {
            size: 100,
            groups: 10,
        };
        let wide = Setting::Sampled { size: 100 };
        let models = vec![
            model("popularity", &[(wide, values(0)), (tournament, values(0))]),
            model("tem", &[(wide, values(1)), (tournament, values(1))]),
            model(
                "instructrec-mean",
                &[(wide, values(2)), (tournament, values(2))],
            ),
            // The permuted control is only scored on the first setting's lists.
            model("instructrec-mean-permuted", &[(wide, values(3))]),
        ];
        let r = report(Protocol::Tournament, GAMES, models);
        assert_eq!(r.paper.len(), 2);
        let chart = report_chart(&r);
        let legend: Vec<&str> = chart.legend.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            legend,
            [
                "popularity (ours)",
                "tem (ours)",
                "instructrec-mean (ours)",
                "instructrec-mean-permuted (ours)",
                "TEM (paper)",
                "InstructRec (paper)",
            ]
        );
        let drawn = draw_bars(&chart).unwrap();
        assert_eq!(drawn.plots.len(), 2);
        let in_plot = |b: &DrawnBar, p: &PxRect| b.rect.y1 == p.y1;
        let first: Vec<&DrawnBar> = drawn
            .bars
            .iter()
            .filter(|b| in_plot(b, &drawn.plots[0]))
            .collect();
        let second: Vec<&DrawnBar> = drawn
            .bars
            .iter()
            .filter(|b| in_plot(b, &drawn.plots[1]))
            .collect();
        assert_eq!((first.len(), second.len()), (4 * 5, 5 * 5));
        assert!(
            first.iter().all(|b| !b.hatched),
            "the paper's figures are 1+99 in groups"
        );
        assert_eq!(second.iter().filter(|b| b.hatched).count(), 2 * 5);
        let svg_texts = texts(&drawn.svg);
        for label in legend {
            assert!(svg_texts.iter().any(|t| t == label), "{label} missing");
        }
        // The paper's bars stand right after their model's: TEM after tem, in each group.
        let bars = &chart.panels[1].bars;
        let tem = model_colour("tem");
        let i = bars
            .iter()
            .position(|b| b.colour == tem && !b.hatched)
            .unwrap();
        assert!(bars[i + 1].hatched && bars[i + 1].colour == tem);
    }

    #[test]
    fn only_the_paper_rows_of_the_reports_scenario_are_drawn() {
        let models = vec![model("tem", &[(SAMPLED, values(1))])];
        let mut r = report(Protocol::PersonalisedSearch, GAMES, models);
        assert_eq!(r.paper.len(), 6, "the markdown lists P2, I1 and I2 rows");
        r.scenario = "<P1,I1,T3>".into();
        let drawn = draw_report(&r).unwrap();
        let hatched: Vec<f64> = drawn
            .bars
            .iter()
            .filter(|b| b.hatched)
            .map(|b| b.value)
            .collect();
        assert_eq!(hatched.len(), 2 * 5);
        // HR@1 of the paper's I1 rows: TEM 0.5723, InstructRec 0.8278.
        assert_eq!(hatched[..2], [0.5723, 0.8278]);
    }

    fn held_out_report() -> Report {
        let stage = |name: &str| StageInfo {
            name: name.into(),
            model: format!("instructrec-mean {name}"),
            dir: String::new(),
            trained_on: "P1".into(),
            filter: Default::default(),
            seed: 1,
            steps: 10,
            train_examples: 10,
            train_wall_s: 1.0,
        };
        let mut r = report(
            Protocol::HeldOut,
            GAMES,
            vec![
                model("popularity", &[(SAMPLED, values(0))]),
                model("bm25", &[(SAMPLED, values(1))]),
                model("instructrec-mean S1", &[(SAMPLED, values(2))]),
                model("instructrec-mean S2", &[(SAMPLED, [0.99; 5])]),
            ],
        );
        r.stages = vec![stage("S1"), stage("S2")];
        r
    }

    #[test]
    fn the_held_out_chart_labels_its_stages_and_keeps_to_the_unit_axis() {
        let r = held_out_report();
        assert_eq!(r.paper.len(), 2);
        let drawn = draw_report(&r).unwrap();
        let labels = texts(&drawn.svg);
        let title = labels
            .iter()
            .find(|l| l.contains("by tuning stage"))
            .unwrap();
        assert_eq!(title.matches("held-out").count(), 1, "{title}");
        for text in [
            "0.24",
            "0.99",
            "S1",
            "S2",
            "bm25 (ours): 0.170",
            "TEM (paper, tuned with I1): 0.572",
        ] {
            assert!(labels.iter().any(|l| l == text), "no {text} in {labels:?}");
        }
        // Lines of the paper's TEM in TEM's colour; ours of bm25 in bm25's.
        let polylines = elements(&drawn.svg, "polyline");
        for colour in [model_colour("tem"), model_colour("bm25"), INSTRUCTREC] {
            assert!(polylines.iter().any(|(a, _)| a["stroke"] == hex(colour)));
        }
        let plot = drawn.plots[0];
        for (a, _) in &polylines {
            for point in a["points"].split_whitespace() {
                let y: i32 = point.split(',').nth(1).unwrap().parse().unwrap();
                assert!(y >= plot.y0 - 12, "a line at {y} above the plot {plot:?}");
            }
        }
    }
}
