//! The report's bar chart: our 1+9 test-fold metrics beside the paper's, as SVG. The SVG backend
//! writes text as `<text>` elements, so no font files are needed to render it.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::harness::Setting;
use crate::report::Report;
use crate::scenarios::ScenarioTable;
use instructrec_data::Fold;

const METRICS: [&str; 5] = ["HR@1", "HR@3", "HR@5", "NDCG@3", "NDCG@5"];

struct Series {
    label: String,
    values: [f64; 5],
    ours: bool,
}

fn series(report: &Report) -> Vec<Series> {
    let mut out = Vec::new();
    for m in &report.models {
        for e in &m.results {
            if e.fold == Fold::Test && e.setting == (Setting::Sampled { size: 10 }) {
                let v = &e.metrics;
                out.push(Series {
                    label: format!("{} (ours)", m.name),
                    values: [v.hr1, v.hr3, v.hr5, v.ndcg3, v.ndcg5],
                    ours: true,
                });
            }
        }
    }
    for p in &report.paper {
        out.push(Series {
            label: format!("{} (paper)", p.model),
            values: [p.hr1, p.hr3, p.hr5, p.ndcg3, p.ndcg5],
            ours: false,
        });
    }
    out
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The frame both charts share: a 960x540 SVG with `caption`, axes over `x` and `0..y_max`
/// (head room above 1.0 keeps the legend clear of the data), what `draw` puts in, and the
/// legend in the upper left.
fn svg_chart(
    caption: String,
    x: std::ops::Range<f64>,
    y_max: f64,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(x, 0f64..y_max)?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// The axes of a bar chart with one group of bars per label, each label centred under its
/// group (group `i` spans `i..i + 1` on the x axis).
fn bar_groups(chart: &mut Chart<'_, '_>, labels: &[String], y_desc: &str) -> anyhow::Result<()> {
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 && i < labels.len() {
                labels[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .y_label_formatter(&unit_tick)
        .draw()?;
    Ok(())
}

/// Y tick labels up to 1.0 only: values above it are the legend's head room.
fn unit_tick(y: &f64) -> String {
    if *y <= 1.0 + 1e-9 {
        format!("{y:.1}")
    } else {
        String::new()
    }
}

/// Renders the chart to an SVG string: HR@1 by tuning stage for the held-out protocol, the
/// metric bars otherwise.
pub fn render(report: &Report) -> anyhow::Result<String> {
    if !report.stages.is_empty() {
        return render_stages(report);
    }
    let series = series(report);
    let caption = format!(
        "{} {}: test fold, 1 positive + 9 random negatives",
        report.protocol, report.scenario
    );
    svg_chart(caption, 0f64..METRICS.len() as f64, 1.5, |chart| {
        bar_groups(chart, &METRICS.map(String::from), "value")?;
        let width = 0.8 / series.len().max(1) as f64;
        for (j, s) in series.iter().enumerate() {
            let color = Palette99::pick(j).to_rgba();
            let style = if s.ours {
                color.filled()
            } else {
                color.mix(0.45).filled()
            };
            chart
                .draw_series(s.values.iter().enumerate().map(|(i, &v)| {
                    let x0 = i as f64 + 0.1 + j as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], style)
                }))?
                .label(s.label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], style));
        }
        Ok(())
    })
}

/// Held-out protocol: HR@1 on the held-out cases against the tuning stage, with a 95% interval
/// (1.96 standard errors) per stage, and the other models, random ranking and the paper's
/// models (tuned with the scenario) as horizontal reference lines.
fn render_stages(report: &Report) -> anyhow::Result<String> {
    let mut points = Vec::new();
    for (i, st) in report.stages.iter().enumerate() {
        if let Some(e) = report.sampled_result(&st.model) {
            let m = &e.metrics;
            let half = 1.96 * (m.hr1 * (1.0 - m.hr1) / m.cases.max(1) as f64).sqrt();
            points.push((i as f64, m.hr1, half));
        }
    }
    let stage_models: Vec<&str> = report.stages.iter().map(|s| s.model.as_str()).collect();
    let mut references: Vec<(String, f64)> = report
        .models
        .iter()
        .filter(|m| !stage_models.contains(&m.name.as_str()))
        .filter_map(|m| {
            let e = report.sampled_result(&m.name)?;
            Some((format!("{} (ours)", m.name), e.metrics.hr1))
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
        references.push((format!("random (1/{size})"), 1.0 / size as f64));
    }
    references.extend(
        report
            .paper
            .iter()
            .map(|p| (format!("{} (paper, tuned with I1)", p.model), p.hr1)),
    );
    let names: Vec<String> = report.stages.iter().map(|s| s.name.clone()).collect();
    let n = names.len() as f64;
    let caption = format!(
        "{} {}: HR@1 by tuning stage (95% intervals)",
        report.protocol, report.scenario
    );
    svg_chart(caption, -0.5f64..n - 0.5, 1.3, |chart| {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("tuning stage")
            .y_desc("HR@1")
            .y_label_formatter(&unit_tick)
            .draw()?;
        for (j, (label, v)) in references.iter().enumerate() {
            let style = Palette99::pick(j + 1).mix(0.8).stroke_width(1);
            chart
                .draw_series(LineSeries::new([(-0.5, *v), (n - 0.5, *v)], style))?
                .label(format!("{label}: {v:.3}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], style));
        }
        let ours = BLACK.stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(x, y, _)| (x, y)),
                ours,
            ))?
            .label("instruction model, held-out stages")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], ours));
        chart.draw_series(
            points
                .iter()
                .map(|&(x, y, _)| Circle::new((x, y), 4, BLACK.filled())),
        )?;
        chart.draw_series(points.iter().map(|&(x, y, half)| {
            PathElement::new([(x, (y - half).max(0.0)), (x, (y + half).min(1.0))], BLACK)
        }))?;
        Ok(())
    })
}

/// The scenario table: HR@1 of each model in each scenario and setting, one bar group per
/// scenario and one colour per model, with 95% intervals (1.96 standard errors).
pub fn render_scenarios(table: &ScenarioTable) -> anyhow::Result<String> {
    let mut groups: Vec<String> = Vec::new();
    let mut models: Vec<&str> = Vec::new();
    for row in &table.rows {
        let group = format!("{}, {}", row.scenario, row.setting);
        if !groups.contains(&group) {
            groups.push(group);
        }
        if !models.contains(&row.model.as_str()) {
            models.push(&row.model);
        }
    }
    let n = groups.len() as f64;
    svg_chart(
        "HR@1 by scenario (95% intervals)".into(),
        0f64..n,
        1.5,
        |chart| {
            bar_groups(chart, &groups, "HR@1")?;
            let width = 0.8 / models.len().max(1) as f64;
            for (j, model) in models.iter().enumerate() {
                let style = Palette99::pick(j).to_rgba().filled();
                let bars: Vec<(f64, f64, f64)> = table
                    .rows
                    .iter()
                    .filter(|r| r.model == *model)
                    .filter_map(|r| {
                        let group = format!("{}, {}", r.scenario, r.setting);
                        let i = groups.iter().position(|g| *g == group)?;
                        Some((i as f64 + 0.1 + j as f64 * width, r.hr1, 1.96 * r.hr1_se))
                    })
                    .collect();
                chart
                    .draw_series(bars.iter().map(|&(x0, v, _)| {
                        Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], style)
                    }))?
                    .label(model.to_string())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], style));
                chart.draw_series(bars.iter().map(|&(x0, v, half)| {
                    let x = x0 + width * 0.45;
                    PathElement::new([(x, (v - half).max(0.0)), (x, (v + half).min(1.0))], BLACK)
                }))?;
            }
            Ok(())
        },
    )
}
