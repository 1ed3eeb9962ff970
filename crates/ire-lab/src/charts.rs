//! `ire compare`'s charts: loss curves of run groups against steps, tokens and wall time, and
//! sharpness against steps when measured (PNG + SVG). The table and seed grouping are in
//! [`crate::groups`].

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::groups::{GroupPoint, RunGroup};
use crate::LabError;

/// The x axis of a chart.
#[derive(Debug, Clone, Copy)]
enum XAxis {
    Step,
    Tokens,
    Wall,
}

impl XAxis {
    fn value(&self, p: &GroupPoint) -> f64 {
        match self {
            XAxis::Step => p.step as f64,
            XAxis::Tokens => p.tokens,
            XAxis::Wall => p.wall_s,
        }
    }
    fn label(&self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens",
            XAxis::Wall => "training seconds",
        }
    }
    fn slug(&self) -> &'static str {
        match self {
            XAxis::Step => "steps",
            XAxis::Tokens => "tokens",
            XAxis::Wall => "wall",
        }
    }
}

/// DejaVu Sans (free licence, see assets/DejaVuSans.LICENSE), so PNG text renders without
/// system fonts or C libraries.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF shipped with the crate; failure would be a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws `loss_vs_{steps,tokens,wall}.{png,svg}` into `out_dir`: per group its mean training
/// curve (thin), mean validation curve (thick, with points) and, for several seeds, the
/// min–max band of the validation losses; returns the files written.
pub fn draw(runs: &[RunGroup], out_dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    register_font();
    std::fs::create_dir_all(out_dir).map_err(|e| LabError::io(out_dir, e))?;
    let mut written = Vec::new();
    for axis in [XAxis::Step, XAxis::Tokens, XAxis::Wall] {
        let png = out_dir.join(format!("loss_vs_{}.png", axis.slug()));
        let svg = out_dir.join(format!("loss_vs_{}.svg", axis.slug()));
        draw_chart(
            BitMapBackend::new(&png, (1000, 650)).into_drawing_area(),
            runs,
            axis,
        )
        .map_err(|e| LabError::Plot {
            path: png.clone(),
            message: e,
        })?;
        draw_chart(
            SVGBackend::new(&svg, (1000, 650)).into_drawing_area(),
            runs,
            axis,
        )
        .map_err(|e| LabError::Plot {
            path: svg.clone(),
            message: e,
        })?;
        written.push(png);
        written.push(svg);
    }
    if runs.iter().any(|g| !g.sharpness_curve().is_empty()) {
        for (path, svg) in [
            ("sharpness_vs_steps.png", false),
            ("sharpness_vs_steps.svg", true),
        ] {
            let path = out_dir.join(path);
            let drawn = match svg {
                false => draw_sharpness(
                    BitMapBackend::new(&path, (1000, 650)).into_drawing_area(),
                    runs,
                ),
                true => draw_sharpness(
                    SVGBackend::new(&path, (1000, 650)).into_drawing_area(),
                    runs,
                ),
            };
            drawn.map_err(|e| LabError::Plot {
                path: path.clone(),
                message: e,
            })?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Tr(H) against the checkpoint step per group: the mean over seeds with bars of ± the seeds'
/// spread (or one run's probe standard error).
fn draw_sharpness<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    groups: &[RunGroup],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let curves: Vec<Vec<(f64, f64, f64)>> = groups
        .iter()
        .map(|g| {
            g.sharpness_curve()
                .iter()
                .map(|p| {
                    let bar = if p.trace.n > 1 {
                        p.trace.std
                    } else {
                        p.trace_stderr
                    };
                    (p.step as f64, p.trace.mean, bar)
                })
                .collect()
        })
        .collect();
    let pts = curves.iter().flatten();
    let x_max = pts.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = pts.map(|p| p.1 + p.2).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&area)
        .caption("Hessian trace (Hutchinson) vs step", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("Tr(H) on validation windows")
        .draw()
        .map_err(err)?;
    for (i, (g, curve)) in groups.iter().zip(&curves).enumerate() {
        if curve.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|p| (p.0, p.1)),
                color.stroke_width(3),
            ))
            .map_err(err)?
            .label(g.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart
            .draw_series(curve.iter().map(|&(x, y, e)| {
                PathElement::new(vec![(x, y - e), (x, y + e)], color.stroke_width(2))
            }))
            .map_err(err)?;
        chart
            .draw_series(
                curve
                    .iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(err)?;
    }
    finish(chart, &area)
}

fn draw_chart<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    groups: &[RunGroup],
    axis: XAxis,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let curves: Vec<(Vec<GroupPoint>, Vec<GroupPoint>)> = groups
        .iter()
        .map(|g| (g.train_curve(), g.val_curve()))
        .collect();
    let (x_max, y_min, y_max) = bounds(&curves, axis);
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(&area)
        .caption(format!("loss vs {}", axis.label()), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max.max(1.0), (y_min - pad)..(y_max + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(axis.label())
        .y_desc("cross-entropy")
        .draw()
        .map_err(err)?;
    for (i, (g, (train, val))) in groups.iter().zip(&curves).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let seeds = match g.runs.len() {
            1 => String::new(),
            n => format!(" (mean of {n})"),
        };
        let finite = |p: &&GroupPoint| p.loss.mean.is_finite();
        let xy = |p: &GroupPoint| (axis.value(p), p.loss.mean);
        if g.runs.len() > 1 {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    band(val, axis),
                    color.mix(0.18).filled(),
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(
                train.iter().filter(finite).map(xy),
                color.mix(0.35).stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("{} train{seeds}", g.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.mix(0.35)));
        let points: Vec<(f64, f64)> = val.iter().filter(finite).map(xy).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(format!("{} val{seeds}", g.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    finish(chart, &area)
}

/// The largest x, and the smallest and largest finite loss (0..1 when there is none).
fn bounds(curves: &[(Vec<GroupPoint>, Vec<GroupPoint>)], axis: XAxis) -> (f64, f64, f64) {
    let (mut x_max, mut y_min, mut y_max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for p in curves.iter().flat_map(|(t, v)| t.iter().chain(v.iter())) {
        x_max = x_max.max(axis.value(p));
        for y in [p.loss.min, p.loss.max] {
            if y.is_finite() {
                y_min = y_min.min(y);
                y_max = y_max.max(y);
            }
        }
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    (x_max, y_min, y_max)
}

/// The outline of the seeds' min–max band of a validation curve.
fn band(val: &[GroupPoint], axis: XAxis) -> Vec<(f64, f64)> {
    val.iter()
        .filter(|p| p.loss.min.is_finite() && p.loss.max.is_finite())
        .map(|p| (axis.value(p), p.loss.min))
        .chain(
            val.iter()
                .rev()
                .filter(|p| p.loss.max.is_finite())
                .map(|p| (axis.value(p), p.loss.max)),
        )
        .collect()
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the legend and writes the chart out.
fn finish<'a, DB: DrawingBackend + 'a>(
    mut chart: Chart<'a, DB>,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}
