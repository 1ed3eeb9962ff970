//! `ire compare`: loss curves of several runs against steps, tokens and wall time (PNG + SVG),
//! and the paper's speed-up table.
//!
//! Speed-up (paper Fig. 4): for a baseline B and a candidate A, the first step at which A's
//! validation loss reaches B's final validation loss, and B's total steps divided by that step.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::metrics::{read_metrics, MetricLine};
use crate::TrainError;

/// One run's curves.
#[derive(Debug, Clone)]
pub struct RunCurves {
    /// Display name (the run directory's name).
    pub name: String,
    /// Train lines in step order.
    pub train: Vec<MetricLine>,
    /// Validation lines in step order.
    pub val: Vec<MetricLine>,
}

impl RunCurves {
    /// Reads `RUN_DIR/metrics.jsonl`.
    pub fn load(run_dir: &Path) -> Result<Self, TrainError> {
        let path = run_dir.join("metrics.jsonl");
        if !path.exists() {
            return Err(TrainError::checkpoint(
                run_dir,
                "no metrics.jsonl here; is this a run directory of `ire train`?",
            ));
        }
        let lines = read_metrics(&path)?;
        let (val, train): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.split == "val");
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| run_dir.display().to_string());
        Ok(Self { name, train, val })
    }

    /// Last validation loss.
    pub fn final_val(&self) -> Option<f64> {
        self.val.last().map(|l| l.loss)
    }

    /// Last training loss.
    pub fn final_train(&self) -> Option<f64> {
        self.train.last().map(|l| l.loss)
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> usize {
        self.train
            .last()
            .map(|l| l.step)
            .unwrap_or(0)
            .max(self.val.last().map(|l| l.step).unwrap_or(0))
    }
}

/// The paper's speed-up of `candidate` over `baseline`: `(first step where candidate's val loss
/// ≤ baseline's final val loss, baseline total steps / that step)`; `None` if never reached.
pub fn speedup(baseline: &RunCurves, candidate: &RunCurves) -> Option<(usize, f64)> {
    let target = baseline.final_val()?;
    let hit = candidate.val.iter().find(|l| l.loss <= target)?;
    Some((hit.step, baseline.total_steps() as f64 / hit.step as f64))
}

/// The comparison table as text: one row per run, speed-ups against the first run.
pub fn table(runs: &[RunCurves]) -> String {
    let mut out = format!(
        "{:<28} {:>8} {:>12} {:>12} {:>14} {:>9}\n",
        "run", "steps", "final train", "final val", "reaches base", "speed-up"
    );
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    for (i, run) in runs.iter().enumerate() {
        let (reach, ratio) = if i == 0 {
            ("(baseline)".to_string(), "1.00x".to_string())
        } else {
            match speedup(&runs[0], run) {
                Some((step, r)) => (format!("step {step}"), format!("{r:.2}x")),
                None => ("never".into(), "-".into()),
            }
        };
        out += &format!(
            "{:<28} {:>8} {:>12} {:>12} {:>14} {:>9}\n",
            run.name,
            run.total_steps(),
            fmt(run.final_train()),
            fmt(run.final_val()),
            reach,
            ratio
        );
    }
    out
}

/// The x axis of a chart.
#[derive(Debug, Clone, Copy)]
enum XAxis {
    Step,
    Tokens,
    Wall,
}

impl XAxis {
    fn value(&self, l: &MetricLine) -> f64 {
        match self {
            XAxis::Step => l.step as f64,
            XAxis::Tokens => l.tokens as f64,
            XAxis::Wall => l.wall_s,
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

/// Draws `loss_vs_{steps,tokens,wall}.{png,svg}` into `out_dir`; returns the files written.
pub fn draw(runs: &[RunCurves], out_dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    register_font();
    std::fs::create_dir_all(out_dir).map_err(|e| TrainError::io(out_dir, e))?;
    let mut written = Vec::new();
    for axis in [XAxis::Step, XAxis::Tokens, XAxis::Wall] {
        let png = out_dir.join(format!("loss_vs_{}.png", axis.slug()));
        let svg = out_dir.join(format!("loss_vs_{}.svg", axis.slug()));
        draw_chart(
            BitMapBackend::new(&png, (1000, 650)).into_drawing_area(),
            runs,
            axis,
        )
        .map_err(|e| TrainError::Plot {
            path: png.clone(),
            message: e,
        })?;
        draw_chart(
            SVGBackend::new(&svg, (1000, 650)).into_drawing_area(),
            runs,
            axis,
        )
        .map_err(|e| TrainError::Plot {
            path: svg.clone(),
            message: e,
        })?;
        written.push(png);
        written.push(svg);
    }
    Ok(written)
}

fn draw_chart<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    runs: &[RunCurves],
    axis: XAxis,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    let all = runs.iter().flat_map(|r| r.train.iter().chain(r.val.iter()));
    let (mut x_max, mut y_min, mut y_max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for l in all {
        x_max = x_max.max(axis.value(l));
        if l.loss.is_finite() {
            y_min = y_min.min(l.loss);
            y_max = y_max.max(l.loss);
        }
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
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
    for (i, run) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let train: Vec<(f64, f64)> = run.train.iter().map(|l| (axis.value(l), l.loss)).collect();
        chart
            .draw_series(LineSeries::new(train, color.mix(0.35).stroke_width(1)))
            .map_err(err)?
            .label(format!("{} train", run.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.mix(0.35)));
        let val: Vec<(f64, f64)> = run.val.iter().map(|l| (axis.value(l), l.loss)).collect();
        chart
            .draw_series(LineSeries::new(val.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(format!("{} val", run.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart
            .draw_series(val.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}
