//! `ire compare`'s charts: loss curves of run groups against steps, tokens and wall time, and
//! sharpness against steps when measured (PNG + SVG). Titles name the runs' model, data and
//! batch (from their saved configs); step and token axes have integer tick labels
//! ([`count_label`]); the loss axis is in nats. The table and seed grouping are in
//! [`crate::groups`].

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::curves::RunSetup;
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
    /// A tick label of this axis: counts as integers ([`count_label`]), seconds with at most
    /// one decimal.
    fn tick(&self, v: f64) -> String {
        match self {
            XAxis::Step | XAxis::Tokens => count_label(v),
            XAxis::Wall if v.abs() >= 10.0 => format!("{v:.0}"),
            XAxis::Wall => trim_zeros(format!("{v:.1}")),
        }
    }
    /// How many x tick labels to ask for: for counts, no more than there are integers in
    /// `0..=x_max`, so no two ticks round to the same label.
    fn label_count(&self, x_max: f64) -> usize {
        match self {
            XAxis::Step | XAxis::Tokens => (x_max.floor().max(1.0) as usize + 1).min(10),
            XAxis::Wall => 10,
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

/// A count (steps, tokens) as an axis label: an integer below 10 000 (`10`, `9500`), else with
/// a k / M / B suffix and at most one decimal (`20k`, `12.5k`, `1.5M`, `3B`).
pub fn count_label(v: f64) -> String {
    let v = v.round();
    let (scaled, suffix) = match v.abs() {
        a if a < 1e4 => return format!("{v:.0}"),
        a if a < 1e6 => (v / 1e3, "k"),
        a if a < 1e9 => (v / 1e6, "M"),
        _ => (v / 1e9, "B"),
    };
    trim_zeros(format!("{scaled:.1}")) + suffix
}

/// `12.0` → `12`, `12.5` → `12.5`.
fn trim_zeros(s: String) -> String {
    match s.strip_suffix(".0") {
        Some(t) => t.to_string(),
        None => s,
    }
}

/// What the charted runs trained, for titles: each of model, data and batch once when every
/// run with a saved config agrees on it, else `model differs between runs` (and so on); empty
/// when no run has a config.
pub fn setup_title(groups: &[RunGroup]) -> String {
    let setups: Vec<&RunSetup> = groups
        .iter()
        .flat_map(|g| &g.runs)
        .filter_map(|r| r.setup.as_ref())
        .collect();
    if setups.is_empty() {
        return String::new();
    }
    let part = |what: &str, field: fn(&RunSetup) -> &String| {
        let first = field(setups[0]);
        match setups.iter().all(|s| field(s) == first) {
            true => first.clone(),
            false => format!("{what} differs between runs"),
        }
    };
    [
        part("model", |s| &s.model),
        part("data", |s| &s.data),
        part("batch", |s| &s.batch),
    ]
    .join(" · ")
}

/// A chart's caption: `what`, and the runs' setup when known.
fn caption(what: &str, groups: &[RunGroup]) -> String {
    match setup_title(groups) {
        setup if setup.is_empty() => what.to_string(),
        setup => format!("{what} — {setup}"),
    }
}

/// DejaVu Sans (free licence, see assets/DejaVuSans.LICENSE), so PNG text renders without
/// system fonts or C libraries.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF shipped with the crate; failure would be a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws `loss_vs_{steps,tokens,wall}.{png,svg}` into `out_dir`: per group its mean training
/// curve (dashed, smoothed when long), mean validation curve (thick, with points) and, for several seeds, the
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
        .caption(
            caption("Hessian trace (Hutchinson) vs step", groups),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_labels(XAxis::Step.label_count(x_max))
        .x_label_formatter(&|v| count_label(*v))
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
        .caption(
            caption(&format!("loss vs {}", axis.label()), groups),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max.max(1.0), (y_min - pad)..(y_max + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(axis.label())
        .x_labels(axis.label_count(x_max))
        .x_label_formatter(&|v| axis.tick(*v))
        .y_desc("loss (nats, cross-entropy per token)")
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
        let train: Vec<(f64, f64)> = train.iter().filter(finite).map(xy).collect();
        draw_train(
            &mut chart,
            &train,
            color,
            &format!("{} train{seeds}", g.name),
        )?;
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

/// Most points a training curve is drawn with: a longer log is averaged over consecutive
/// windows, so that a noisy per-step loss reads as a curve beside the validation losses.
const TRAIN_POINTS: usize = 100;

/// `points` averaged (x and y) over consecutive windows of `w` points, `w` the smallest that
/// leaves at most `max_points`; returns the means and `w`.
pub fn window_means(points: &[(f64, f64)], max_points: usize) -> (Vec<(f64, f64)>, usize) {
    let w = points.len().div_ceil(max_points.max(1)).max(1);
    let means = points
        .chunks(w)
        .map(|c| {
            let n = c.len() as f64;
            let x = c.iter().map(|p| p.0).sum::<f64>() / n;
            (x, c.iter().map(|p| p.1).sum::<f64>() / n)
        })
        .collect();
    (means, w)
}

/// A group's training curve: dashed, lighter and thinner than its validation curve but
/// readable beside it; averaged over windows when long ([`window_means`]), as its label says.
fn draw_train<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    train: &[(f64, f64)],
    color: RGBAColor,
    label: &str,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (points, w) = window_means(train, TRAIN_POINTS);
    let label = match w {
        1 => label.to_string(),
        w => format!("{label}, smoothed over {w} logs"),
    };
    let style = color.mix(0.75).stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(points, 8, 5, style))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| {
            plotters::element::DashedPathElement::new(vec![(x, y), (x + 18, y)], 5, 3, style)
        });
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curves::RunCurves;

    #[test]
    fn counts_are_labelled_as_integers() {
        let labels: Vec<String> = [0.0, 10.0, 150.0, 9999.6, 20000.0, 12500.0, 1.5e6, 3e9]
            .iter()
            .map(|&v| count_label(v))
            .collect();
        assert_eq!(
            labels,
            ["0", "10", "150", "10k", "20k", "12.5k", "1.5M", "3B"]
        );
        // A tick a float step put at 2.0000000001 still reads as an integer.
        assert_eq!(count_label(2.000_000_000_1), "2");
        assert_eq!(XAxis::Step.tick(10.0), "10");
        assert_eq!(XAxis::Tokens.tick(20000.0), "20k");
        assert_eq!(
            (XAxis::Wall.tick(2.5), XAxis::Wall.tick(40.0)),
            ("2.5".into(), "40".into())
        );
    }

    #[test]
    fn long_train_curves_are_averaged_over_windows() {
        let pts: Vec<(f64, f64)> = (1..=7).map(|s| (s as f64, s as f64 * 2.0)).collect();
        let (means, w) = window_means(&pts, 3);
        assert_eq!(w, 3);
        assert_eq!(means, vec![(2.0, 4.0), (5.0, 10.0), (7.0, 14.0)]);
        assert_eq!(window_means(&pts, 100), (pts.clone(), 1));
        assert_eq!(window_means(&[], 100), (vec![], 1));
    }

    #[test]
    fn a_short_axis_asks_for_no_more_ticks_than_integers() {
        // 0..=3 steps: 4 ticks (plotters would otherwise put one every 0.5, "0", "1", "1", …).
        assert_eq!(XAxis::Step.label_count(3.0), 4);
        assert_eq!(XAxis::Step.label_count(150.0), 10);
        assert_eq!(XAxis::Step.label_count(0.0), 2);
    }

    fn group(name: &str, setups: &[Option<RunSetup>]) -> RunGroup {
        let runs = setups
            .iter()
            .map(|s| RunCurves {
                name: name.into(),
                train: Vec::new(),
                val: Vec::new(),
                sharpness: Vec::new(),
                setup: s.clone(),
                seed: None,
            })
            .collect();
        RunGroup {
            name: name.into(),
            runs,
        }
    }

    #[test]
    fn titles_name_the_setup_or_say_that_runs_differ() {
        let setup = |model: &str, batch: &str| RunSetup {
            model: model.into(),
            data: "embedded".into(),
            batch: batch.into(),
        };
        let tiny = setup(
            "Llama tiny: hidden 256, 4 layers, 7.4M params",
            "batch 8 × 256 tokens",
        );
        let same = [
            group("a", &[Some(tiny.clone())]),
            group("b", &[Some(tiny.clone()), None]),
        ];
        assert_eq!(
            setup_title(&same),
            "Llama tiny: hidden 256, 4 layers, 7.4M params · embedded · batch 8 × 256 tokens"
        );
        assert_eq!(
            caption("loss vs step", &same),
            format!("loss vs step — {}", setup_title(&same))
        );
        let other = setup(
            "Llama tiny: hidden 256, 4 layers, 7.4M params",
            "batch 16 × 256 tokens",
        );
        let differ = [group("a", &[Some(tiny)]), group("b", &[Some(other)])];
        assert_eq!(
            setup_title(&differ),
            "Llama tiny: hidden 256, 4 layers, 7.4M params · embedded · batch differs between runs"
        );
        assert_eq!(
            caption("loss vs step", &[group("a", &[None])]),
            "loss vs step"
        );
    }
}
