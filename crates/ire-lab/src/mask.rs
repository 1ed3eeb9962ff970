//! What AdmIRE's mask covered over training, per run group: the flat fraction of each parameter
//! group (embedding, attention and MLP projections, norms, LM head) at every refresh, from the
//! `mask` objects of `metrics.jsonl` ([`ire_optim::MaskReport`]). `ire compare` draws them
//! (`mask_groups.png`/`.svg`, one panel per run group) and tables the last refresh.
//!
//! Seeds of one config are averaged at the steps every seed refreshed at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::groups::RunGroup;
use crate::LabError;

/// The parameter groups in model order (HF names, as [`ire_optim::group_of`] names them).
pub const PARAM_GROUPS: [&str; 10] = [
    "embed_tokens",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "norm",
    "lm_head",
];

/// One run group's mask over training.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskCurves {
    /// The refresh steps (those every seed has).
    pub steps: Vec<usize>,
    /// Per parameter group, its flat fraction at each of `steps` (mean over seeds).
    pub flat: BTreeMap<String, Vec<f64>>,
    /// The overlap with the previous refresh at each of `steps` (NaN at the first).
    pub overlap: Vec<f64>,
}

impl MaskCurves {
    /// The group's mask curves, or `None` when no run of it logged a refresh (AdamW).
    pub fn of(group: &RunGroup) -> Option<MaskCurves> {
        let per_run: Vec<BTreeMap<usize, &ire_optim::MaskReport>> = group
            .runs
            .iter()
            .map(|r| {
                let reports = r
                    .train
                    .iter()
                    .filter_map(|l| l.mask.as_ref().map(|m| (l.step, m)));
                reports.collect()
            })
            .collect();
        let first = per_run.first()?;
        let steps: Vec<usize> = first
            .keys()
            .copied()
            .filter(|s| per_run.iter().all(|r| r.contains_key(s)))
            .collect();
        if steps.is_empty() {
            return None;
        }
        let mean = |f: &dyn Fn(&ire_optim::MaskReport) -> f64| -> Vec<f64> {
            let at =
                |s: &usize| per_run.iter().map(|r| f(r[s])).sum::<f64>() / per_run.len() as f64;
            steps.iter().map(at).collect()
        };
        let names: Vec<&String> = first[&steps[0]].flat.keys().collect();
        let flat = names
            .into_iter()
            .map(|g| {
                (
                    g.clone(),
                    mean(&|m| m.flat.get(g).copied().unwrap_or(f64::NAN)),
                )
            })
            .collect();
        let overlap = mean(&|m| m.overlap.unwrap_or(f64::NAN));
        Some(MaskCurves {
            steps,
            flat,
            overlap,
        })
    }

    /// The parameter groups present, in model order (then any other name).
    fn groups(&self) -> Vec<&str> {
        let known = PARAM_GROUPS
            .iter()
            .copied()
            .filter(|g| self.flat.contains_key(*g));
        let other = self
            .flat
            .keys()
            .map(String::as_str)
            .filter(|g| !PARAM_GROUPS.contains(g));
        known.chain(other).collect()
    }
}

/// The table of the last refresh as Markdown: one row per run group that has a mask, the flat
/// percentage of each parameter group and the overlap with the refresh before; `None` when no
/// group has a mask.
pub fn mask_table(groups: &[RunGroup]) -> Option<String> {
    let rows: Vec<(&str, MaskCurves)> = groups
        .iter()
        .filter_map(|g| MaskCurves::of(g).map(|c| (g.name.as_str(), c)))
        .collect();
    let names = rows
        .first()?
        .1
        .groups()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let mut out = format!(
        "\nFlat share of each parameter group at the last mask refresh (AdmIRE):\n\n| group | step | {} | overlap |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len() + 3)
    );
    for (name, c) in &rows {
        let last = c.steps.len() - 1;
        let cell = |g: &String| match c.flat.get(g).map(|v| v[last]) {
            Some(v) if v.is_finite() => format!("{:.0} %", 100.0 * v),
            _ => "-".into(),
        };
        let cells: Vec<String> = names.iter().map(cell).collect();
        let overlap = c.overlap[last];
        let overlap = match overlap.is_finite() {
            true => format!("{overlap:.2}"),
            false => "-".into(),
        };
        out += &format!(
            "| {name} | {} | {} | {overlap} |\n",
            c.steps[last],
            cells.join(" | ")
        );
    }
    out += "\n- **flat share**: coordinates in AdmIRE's flat mask (smallest Hessian estimate, boosted \
            1 + κ times) over the group's coordinates, mean over seeds; groups by Hugging Face name \
            (`norm`: every RMSNorm). **overlap**: the share of the flat coordinates that were flat \
            at the refresh before.\n";
    Some(out)
}

/// `mask_groups.png` and `.svg` in `out_dir`: per run group with a mask, a panel of each
/// parameter group's flat fraction against the step. Nothing when no group has a mask.
pub fn draw_mask(groups: &[RunGroup], out_dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    let panels: Vec<(&str, MaskCurves)> = groups
        .iter()
        .filter_map(|g| MaskCurves::of(g).map(|c| (g.name.as_str(), c)))
        .collect();
    if panels.is_empty() {
        return Ok(Vec::new());
    }
    crate::charts::register_font();
    std::fs::create_dir_all(out_dir).map_err(|e| LabError::io(out_dir, e))?;
    let size = (1000, 380 * panels.len() as u32);
    let png = out_dir.join("mask_groups.png");
    let svg = out_dir.join("mask_groups.svg");
    let plot_err = |path: &PathBuf| {
        let path = path.clone();
        move |message| LabError::Plot { path, message }
    };
    draw_panels(BitMapBackend::new(&png, size).into_drawing_area(), &panels)
        .map_err(plot_err(&png))?;
    draw_panels(SVGBackend::new(&svg, size).into_drawing_area(), &panels)
        .map_err(plot_err(&svg))?;
    Ok(vec![png, svg])
}

fn draw_panels<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[(&str, MaskCurves)],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(err)?;
    for (part, (name, curves)) in area.split_evenly((panels.len(), 1)).iter().zip(panels) {
        // The key sits right of the plot: the curves span the whole 0–1 range.
        let (plot, key) = part.split_horizontally(part.dim_in_pixel().0.saturating_sub(150));
        let x_max = curves.steps.last().copied().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("{name}: flat share per parameter group"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max * 1.02, 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|v| crate::charts::count_label(*v))
            .y_desc("flat fraction")
            .draw()
            .map_err(err)?;
        for (i, g) in curves.groups().into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points = curves.steps.iter().zip(&curves.flat[g]);
            let points = points
                .filter(|(_, v)| v.is_finite())
                .map(|(s, v)| (*s as f64, *v));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(err)?;
            let y = 50 + 24 * i as i32;
            key.draw(&PathElement::new(
                vec![(4, y), (28, y)],
                color.stroke_width(3),
            ))
            .map_err(err)?;
            key.draw(&Text::new(g.to_string(), (34, y - 7), ("sans-serif", 14)))
                .map_err(err)?;
        }
    }
    area.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curves::RunCurves;
    use ire_optim::MaskReport;
    use ire_train::metrics::MetricLine;

    fn line(step: usize, embed: f64, q: f64, overlap: Option<f64>) -> MetricLine {
        MetricLine {
            split: "train".into(),
            step,
            tokens: 0,
            loss: 5.0,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            mfu: None,
            wall_s: 0.0,
            mask_fraction: Some(0.6),
            kappa_t: None,
            mask: Some(MaskReport {
                tau: 1e-9,
                flat: BTreeMap::from([("embed_tokens".into(), embed), ("q_proj".into(), q)]),
                layers: vec![q],
                overlap,
            }),
        }
    }

    fn run(name: &str, lines: Vec<MetricLine>) -> RunCurves {
        RunCurves {
            name: name.into(),
            train: lines,
            val: Vec::new(),
            sharpness: Vec::new(),
            setup: None,
            seed: None,
        }
    }

    #[test]
    fn seeds_are_averaged_at_their_common_refreshes_and_the_last_one_is_tabled() {
        let a = run(
            "admire-s1",
            vec![line(10, 0.9, 0.2, None), line(20, 0.95, 0.3, Some(0.8))],
        );
        // The second seed stopped before step 20's refresh: only step 10 is common.
        let b = run("admire-s2", vec![line(10, 0.7, 0.4, None)]);
        let group = RunGroup {
            name: "admire".into(),
            runs: vec![a.clone(), b],
        };
        let c = MaskCurves::of(&group).unwrap();
        assert_eq!(c.steps, vec![10]);
        assert!((c.flat["embed_tokens"][0] - 0.8).abs() < 1e-12);
        assert!((c.flat["q_proj"][0] - 0.3).abs() < 1e-12);
        assert!(c.overlap[0].is_nan());

        let one = RunGroup {
            name: "admire".into(),
            runs: vec![a],
        };
        let adamw = RunGroup {
            name: "adamw".into(),
            runs: vec![run("adamw", vec![])],
        };
        assert_eq!(MaskCurves::of(&adamw), None);
        let table = mask_table(&[adamw.clone(), one]).unwrap();
        assert!(
            table.contains("| group | step | embed_tokens | q_proj | overlap |"),
            "{table}"
        );
        assert!(
            table.contains("| admire | 20 | 95 % | 30 % | 0.80 |"),
            "{table}"
        );
        assert!(!table.contains("| adamw |"));
        assert_eq!(mask_table(&[adamw]), None);
    }

    #[test]
    fn the_chart_is_written_only_when_a_group_has_a_mask() {
        let dir = tempfile::tempdir().unwrap();
        let admire = RunGroup {
            name: "admire".into(),
            runs: vec![run(
                "admire",
                vec![line(10, 0.9, 0.2, None), line(20, 0.95, 0.3, Some(0.8))],
            )],
        };
        let adamw = RunGroup {
            name: "adamw".into(),
            runs: vec![run("adamw", vec![])],
        };
        assert!(draw_mask(std::slice::from_ref(&adamw), dir.path())
            .unwrap()
            .is_empty());
        let files = draw_mask(&[adamw, admire], dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
    }
}
