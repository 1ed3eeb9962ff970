//! Runs grouped for studies: runs whose configs differ only in `run.seed` (and name/dir) are one
//! group, drawn as a mean curve with a min–max band and summarised by mean ± std over seeds.
//!
//! The paper's speed-up (Fig. 4) against a baseline group: the target is the mean of the
//! baseline seeds' final validation losses; each candidate seed's speed-up is the baseline's
//! steps over the first step at which that seed reaches the target, and the aggregate is the
//! same on the candidate's mean curve. The step-time ratio compares seconds per step from the
//! runs' training wall time (`wall_s`, which excludes evaluation and checkpoints).

use std::path::{Path, PathBuf};

use ire_train::checkpoint::RUN_CONFIG_FILE;
use ire_train::metrics::MetricLine;
use ire_train::RunConfig;

use crate::curves::{first_reach, RunCurves};
use crate::sharpness::SharpnessRecord;
use crate::speedup::{bootstrap, paired_test, Interval, PairedTest};
use crate::LabError;

/// Seeds of one config.
#[derive(Debug, Clone)]
pub struct RunGroup {
    /// Display name: the first run's name without its `-sN` seed suffix.
    pub name: String,
    /// The runs, in the order given.
    pub runs: Vec<RunCurves>,
}

/// Mean, sample standard deviation and range of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of `values` (`None` when empty).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = match n {
            1 => 0.0,
            _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64,
        };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread {
            mean,
            std: var.sqrt(),
            min,
            max,
            n,
        })
    }
}

/// One point of a group's mean curve: the step, the members' x values averaged (step,
/// tokens or wall time) and the loss's spread over members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupPoint {
    /// Step.
    pub step: usize,
    /// Mean training tokens at this step.
    pub tokens: f64,
    /// Mean training seconds at this step.
    pub wall_s: f64,
    /// Loss over the members.
    pub loss: Spread,
}

/// A group's sharpness at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharpnessPoint {
    /// Step of the checkpoints.
    pub step: usize,
    /// Hutchinson's Tr(H) over the members.
    pub trace: Spread,
    /// The largest standard error of the members' estimates (probe noise).
    pub trace_stderr: f64,
    /// λ_max over the members.
    pub lambda_max: Spread,
}

/// A candidate group's speed-up over a baseline group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpeedup {
    /// The target: mean final validation loss of the baseline seeds.
    pub target: f64,
    /// Per candidate seed: the first step reaching the target and the ratio (`None`: never).
    pub per_seed: Vec<Option<(usize, f64)>>,
    /// The same on the candidate's mean validation curve.
    pub mean_curve: Option<(usize, f64)>,
}

impl RunGroup {
    /// Mean validation curve at the steps every member evaluated.
    pub fn val_curve(&self) -> Vec<GroupPoint> {
        curve(self.runs.iter().map(|r| r.val.as_slice()).collect())
    }

    /// Mean training curve at the steps every member logged.
    pub fn train_curve(&self) -> Vec<GroupPoint> {
        curve(self.runs.iter().map(|r| r.train.as_slice()).collect())
    }

    /// Final validation loss over the members (those that have one).
    pub fn final_val(&self) -> Option<Spread> {
        let v: Vec<f64> = self.runs.iter().filter_map(|r| r.final_val()).collect();
        Spread::of(&v)
    }

    /// Steps of the group's runs (the longest).
    pub fn total_steps(&self) -> usize {
        self.runs.iter().map(|r| r.total_steps()).max().unwrap_or(0)
    }

    /// Sharpness at each step every member measured (its latest record of that step): the
    /// spread of Tr(H) and of λ_max over the members.
    pub fn sharpness_curve(&self) -> Vec<SharpnessPoint> {
        let Some(first) = self.runs.first() else {
            return Vec::new();
        };
        let mut steps: Vec<usize> = first.sharpness.iter().map(|r| r.step).collect();
        steps.sort_unstable();
        steps.dedup();
        let mut out = Vec::new();
        for step in steps {
            let at: Vec<&SharpnessRecord> = self
                .runs
                .iter()
                .filter_map(|r| r.sharpness.iter().rev().find(|x| x.step == step))
                .collect();
            if at.len() != self.runs.len() {
                continue;
            }
            let trace: Vec<f64> = at.iter().map(|r| r.trace).collect();
            let lambda: Vec<f64> = at.iter().map(|r| r.lambda_max).collect();
            if let (Some(trace), Some(lambda_max)) = (Spread::of(&trace), Spread::of(&lambda)) {
                let stderr = at.iter().map(|r| r.trace_stderr).fold(0.0, f64::max);
                out.push(SharpnessPoint {
                    step,
                    trace,
                    trace_stderr: stderr,
                    lambda_max,
                });
            }
        }
        out
    }

    /// Training seconds per step over the members (from the last train line's `wall_s`).
    pub fn seconds_per_step(&self) -> Option<Spread> {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.train.last())
            .filter(|l| l.step > 0 && l.wall_s > 0.0)
            .map(|l| l.wall_s / l.step as f64)
            .collect();
        Spread::of(&v)
    }
}

/// Per step present in every series: the spread of the losses and the mean x values.
fn curve(series: Vec<&[MetricLine]>) -> Vec<GroupPoint> {
    let Some(first) = series.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in first.iter() {
        let at: Vec<&MetricLine> = series
            .iter()
            .filter_map(|s| s.iter().find(|l| l.step == line.step))
            .collect();
        if at.len() != series.len() {
            continue;
        }
        let losses: Vec<f64> = at.iter().map(|l| l.loss).collect();
        let n = at.len() as f64;
        if let Some(loss) = Spread::of(&losses) {
            out.push(GroupPoint {
                step: line.step,
                tokens: at.iter().map(|l| l.tokens as f64).sum::<f64>() / n,
                wall_s: at.iter().map(|l| l.wall_s).sum::<f64>() / n,
                loss,
            });
        }
    }
    out
}

/// The speed-up of `candidate` over `baseline` (see the module doc); `None` when the baseline
/// has no final validation loss.
pub fn group_speedup(baseline: &RunGroup, candidate: &RunGroup) -> Option<GroupSpeedup> {
    let target = baseline.final_val()?.mean;
    let steps = baseline.total_steps();
    let per_seed = candidate
        .runs
        .iter()
        .map(|r| first_reach(r.val.iter().map(|l| (l.step, l.loss)), target, steps))
        .collect();
    let mean = candidate.val_curve();
    let mean_curve = first_reach(mean.iter().map(|p| (p.step, p.loss.mean)), target, steps);
    Some(GroupSpeedup {
        target,
        per_seed,
        mean_curve,
    })
}

/// What identifies a run's config for grouping: its `config.toml` without `run.seed`,
/// `run.name` and `run.dir`; a run without one is a group of its own.
fn group_key(run_dir: &Path) -> Result<String, LabError> {
    let path = run_dir.join(RUN_CONFIG_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(format!("dir:{}", run_dir.display()));
    };
    // The resolved config, so that one config saved by two versions of ire (the older `[optim]`
    // spelling, say) is one group; the text itself when it no longer loads.
    let resolved = RunConfig::load_saved(&path, &[])
        .map(|c| c.to_toml())
        .unwrap_or(text);
    let mut value: toml::Value = toml::from_str(&resolved).map_err(|e| LabError::Config {
        key: path.display().to_string(),
        message: e.message().to_string(),
    })?;
    if let Some(run) = value.get_mut("run").and_then(|r| r.as_table_mut()) {
        for key in ["seed", "name", "dir"] {
            run.remove(key);
        }
    }
    Ok(value.to_string())
}

/// `name` without a trailing `-sN` (the seed suffix of the study's run names).
fn strip_seed(name: &str) -> &str {
    match name.rsplit_once("-s") {
        Some((head, seed)) if !seed.is_empty() && seed.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    }
}

/// A run directory given more than once (under any spelling of its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedRun {
    /// The path as given the second time.
    pub given: PathBuf,
    /// The path it repeats, as given first.
    pub first: PathBuf,
}

/// `run_dirs` with each run kept once, in order of first mention: two paths that canonicalize
/// to the same folder (`runs/a`, `./runs/a`, `runs/../runs/a`, a symlink) are one run, so a run
/// given twice is not counted as two seeds. Returns the kept paths and the repeats dropped
/// (for a warning). A path that does not exist is an error naming it.
pub fn distinct_runs(
    run_dirs: &[impl AsRef<Path>],
) -> Result<(Vec<PathBuf>, Vec<RepeatedRun>), LabError> {
    let mut kept: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut repeats = Vec::new();
    for dir in run_dirs {
        let dir = dir.as_ref();
        let canonical = std::fs::canonicalize(dir).map_err(|e| LabError::io(dir, e))?;
        match kept.iter().find(|(c, _)| *c == canonical) {
            Some((_, first)) => repeats.push(RepeatedRun {
                given: dir.to_path_buf(),
                first: first.clone(),
            }),
            None => kept.push((canonical, dir.to_path_buf())),
        }
    }
    Ok((kept.into_iter().map(|(_, d)| d).collect(), repeats))
}

/// Loads `run_dirs` and groups them by config, groups in order of their first run; a run given
/// twice is loaded once (see [`distinct_runs`], whose repeats the caller can warn about).
pub fn load_groups(run_dirs: &[impl AsRef<Path>]) -> Result<Vec<RunGroup>, LabError> {
    let (run_dirs, _) = distinct_runs(run_dirs)?;
    let mut keyed: Vec<(String, RunGroup)> = Vec::new();
    for dir in &run_dirs {
        let run = RunCurves::load(dir)?;
        let key = group_key(dir)?;
        match keyed.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.runs.push(run),
            None => {
                let name = strip_seed(&run.name).to_string();
                keyed.push((
                    key,
                    RunGroup {
                        name,
                        runs: vec![run],
                    },
                ));
            }
        }
    }
    Ok(keyed.into_iter().map(|(_, g)| g).collect())
}

/// Each run a group of its own (no grouping).
pub fn singletons(runs: Vec<RunCurves>) -> Vec<RunGroup> {
    runs.into_iter()
        .map(|r| RunGroup {
            name: r.name.clone(),
            runs: vec![r],
        })
        .collect()
}

/// The study table as Markdown, then a legend saying what each column and each ± means: per
/// group the runs, steps, final validation loss (mean ± std and range over seeds; one run: its
/// value alone), the speed-up over the first group (mean curve, and per seed), the
/// seconds-per-step ratio to the first group and, when measured, Tr(H) and λ_max at the last
/// step every seed was measured at.
pub fn group_table(groups: &[RunGroup]) -> String {
    let sharp = groups.iter().any(|g| !g.sharpness_curve().is_empty());
    let mut header = vec![
        "group",
        "runs",
        "steps",
        "final val loss (nats)",
        "min – max",
        "reaches baseline's final",
        "speed-up (mean curve)",
        "speed-up per seed",
        "time/step vs baseline",
        "Δ final vs baseline, paired by seed",
    ];
    if sharp {
        header.extend(["Tr(H)", "λ_max"]);
    }
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    let base = groups.first();
    for (i, g) in groups.iter().enumerate() {
        let mut cells = vec![g.name.clone(), g.runs.len().to_string()];
        cells.push(g.total_steps().to_string());
        cells.extend(loss_cells(g));
        cells.extend(speedup_cells(i, base, g));
        cells.push(time_cell(base, g));
        cells.push(match (i, base) {
            (0, _) | (_, None) => "-".into(),
            (_, Some(b)) => paired_cell(b, g),
        });
        if sharp {
            cells.extend(sharpness_cells(g));
        }
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out + &legend(sharp)
}

/// `mean ± std` over several values, the value alone for one (a ± of one run would be 0 and
/// mean nothing).
fn value_pm(s: &Spread, decimals: usize) -> String {
    match s.n {
        1 => format!("{:.*}", decimals, s.mean),
        _ => format!("{:.*} ± {:.*}", decimals, s.mean, decimals, s.std),
    }
}

/// The final validation loss and its range over seeds (`-` for one run).
fn loss_cells(g: &RunGroup) -> [String; 2] {
    match g.final_val() {
        Some(s) if s.n > 1 => [value_pm(&s, 4), format!("{:.4} – {:.4}", s.min, s.max)],
        Some(s) => [value_pm(&s, 4), "-".into()],
        None => ["-".into(), "-".into()],
    }
}

/// Where the mean curve reaches the baseline's final loss, its speed-up, and each seed's.
fn speedup_cells(i: usize, base: Option<&RunGroup>, g: &RunGroup) -> [String; 3] {
    match (i, base.and_then(|b| group_speedup(b, g))) {
        (0, _) => ["(baseline)".into(), "1.00×".into(), "-".into()],
        (_, None) => ["-".into(), "-".into(), "-".into()],
        (_, Some(s)) => {
            let fmt = |r: &Option<(usize, f64)>| match r {
                Some((_, x)) => format!("{x:.2}×"),
                None => "never".into(),
            };
            let reach = match s.mean_curve {
                Some((step, _)) => format!("step {step}"),
                None => "never".into(),
            };
            let seeds: Vec<String> = s.per_seed.iter().map(fmt).collect();
            [reach, fmt(&s.mean_curve), seeds.join(", ")]
        }
    }
}

/// Seconds per step over the baseline's.
fn time_cell(base: Option<&RunGroup>, g: &RunGroup) -> String {
    match (
        g.seconds_per_step(),
        base.and_then(|b| b.seconds_per_step()),
    ) {
        (Some(a), Some(b)) if b.mean > 0.0 => format!("{:.2}×", a.mean / b.mean),
        _ => "-".into(),
    }
}

/// The final validation losses of the runs of `g` and `base` with the same `run.seed`, as
/// `(candidate, baseline)` pairs in seed order.
pub fn seed_pairs(base: &RunGroup, g: &RunGroup) -> Vec<(f64, f64)> {
    let by_seed = |r: &RunCurves| Some((r.seed?, r.final_val()?));
    let baseline: std::collections::BTreeMap<u64, f64> =
        base.runs.iter().filter_map(by_seed).collect();
    let mut pairs: Vec<(u64, f64, f64)> = g
        .runs
        .iter()
        .filter_map(by_seed)
        .filter_map(|(seed, loss)| Some((seed, loss, *baseline.get(&seed)?)))
        .collect();
    pairs.sort_by_key(|p| p.0);
    pairs.into_iter().map(|(_, c, b)| (c, b)).collect()
}

/// The mean paired difference of final losses against the baseline over shared seeds, its 95 %
/// bootstrap interval (resampling the pairs) and the sign-flip test (`None` below two pairs).
pub fn paired_difference(base: &RunGroup, g: &RunGroup) -> Option<(Interval, PairedTest)> {
    let pairs = seed_pairs(base, g);
    if pairs.len() < 2 {
        return None;
    }
    let (cand, baseline): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    let diffs: Vec<f64> = cand.iter().zip(&baseline).map(|(c, b)| c - b).collect();
    let mean = |s: &[Vec<f64>]| Some(s[0].iter().sum::<f64>() / s[0].len() as f64);
    let interval = bootstrap(&[&diffs], mean, 10_000, 0x1e5)?;
    Some((interval, paired_test(&cand, &baseline)?))
}

/// `−0.0123 [−0.0201, −0.0040], p = 0.06 (5 seeds)`, or `-` below two shared seeds.
fn paired_cell(base: &RunGroup, g: &RunGroup) -> String {
    match paired_difference(base, g) {
        Some((ci, test)) => format!(
            "{:+.4} [{:+.4}, {:+.4}], p = {:.3} ({} seeds)",
            ci.estimate,
            ci.low,
            ci.high,
            test.p_value,
            seed_pairs(base, g).len()
        ),
        None => "-".into(),
    }
}

/// Tr(H) and λ_max at the last step every seed was measured at. Tr(H)'s ± says what it is:
/// the spread over seeds, or one run's probe standard error.
fn sharpness_cells(g: &RunGroup) -> [String; 2] {
    let Some(p) = g.sharpness_curve().last().copied() else {
        return ["-".into(), "-".into()];
    };
    let trace = match p.trace.n {
        1 => format!(
            "{:.1} ± {:.1} (probe s.e., step {})",
            p.trace.mean, p.trace_stderr, p.step
        ),
        n => format!(
            "{:.1} ± {:.1} (std over {n} seeds, step {})",
            p.trace.mean, p.trace.std, p.step
        ),
    };
    [trace, value_pm(&p.lambda_max, 2)]
}

/// What the columns of [`group_table`] mean (Markdown, under the table).
fn legend(sharp: bool) -> String {
    let mut out = String::from(
        "\nColumns:\n\
         - **group**: runs whose configs differ only in `run.seed` (named after the first, without \
         its `-sN` suffix); the first group is the baseline. **runs**: its runs (seeds); **steps**: \
         the longest run's steps.\n\
         - **final val loss (nats)**: the last validation loss, mean cross-entropy per token. With \
         several seeds: mean ± sample standard deviation over the seeds, and their **min – max**; \
         one run: its value alone.\n\
         - **reaches baseline's final**: the first step at which the group's mean validation curve \
         is at or below the mean final validation loss of the baseline's seeds.\n\
         - **speed-up**: the baseline's steps over that step (the paper's Fig. 4), on the mean \
         curve and per seed (`never`: not reached).\n\
         - **time/step vs baseline**: training seconds per step (evaluation and checkpoints \
         excluded) over the baseline's.\n\
         - **Δ final vs baseline, paired by seed**: the group's final validation loss minus the \
         baseline's run of the same `run.seed`, averaged over the shared seeds (negative: better \
         than the baseline), with its 95 % bootstrap interval over the pairs and the exact \
         two-sided sign-flip p-value (with n seeds it cannot go below 2/2ⁿ: 0.0625 for 5); `-` \
         below two shared seeds.\n",
    );
    if sharp {
        out += "- **Tr(H)**: Hutchinson's trace of the validation loss's Hessian at the last step \
                every seed was measured at (`ire sharpness`). Its ± is the standard deviation of \
                the seeds' estimates (`std over N seeds`) or, for one run, the standard error \
                over its random probes (`probe s.e.`). **λ_max**: the largest Hessian eigenvalue \
                (power iteration), ± std over seeds.\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ire_train::metrics::MetricLine;

    fn line(split: &str, step: usize, loss: f64, wall_s: f64) -> MetricLine {
        MetricLine {
            split: split.into(),
            step,
            tokens: step as u64 * 100,
            loss,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            mfu: None,
            wall_s,
            mask_fraction: None,
            mask: None,
            kappa_t: None,
        }
    }

    fn run(name: &str, val: &[(usize, f64)], secs_per_step: f64) -> RunCurves {
        let last = val.last().map(|v| v.0).unwrap_or(0);
        RunCurves {
            name: name.into(),
            train: vec![line("train", last, 0.0, secs_per_step * last as f64)],
            val: val.iter().map(|&(s, l)| line("val", s, l, 0.0)).collect(),
            sharpness: Vec::new(),
            setup: None,
            seed: None,
        }
    }

    #[test]
    fn the_paired_column_pairs_runs_by_seed() {
        let group = |name: &str, finals: &[(u64, f64)]| RunGroup {
            name: name.into(),
            runs: finals
                .iter()
                .map(|&(seed, loss)| RunCurves {
                    seed: Some(seed),
                    ..run(
                        &format!("{name}-s{seed}"),
                        &[(10, loss + 1.0), (20, loss)],
                        1.0,
                    )
                })
                .collect(),
        };
        // Seeds given in another order, one seed only in the baseline: pairs by seed.
        let base = group(
            "adamw",
            &[(3, 5.0), (1, 5.2), (2, 4.9), (4, 5.1), (5, 5.05), (6, 7.0)],
        );
        let cand = group(
            "admire",
            &[(1, 5.1), (2, 4.85), (3, 4.9), (5, 4.99), (4, 5.0)],
        );
        let pairs = seed_pairs(&base, &cand);
        assert_eq!(
            pairs,
            vec![
                (5.1, 5.2),
                (4.85, 4.9),
                (4.9, 5.0),
                (5.0, 5.1),
                (4.99, 5.05)
            ]
        );
        let (ci, test) = paired_difference(&base, &cand).unwrap();
        assert!((ci.estimate + 0.082).abs() < 1e-12, "{ci:?}");
        assert!(
            ci.low <= -0.082 && -0.082 <= ci.high && ci.high < 0.0,
            "{ci:?}"
        );
        assert!((test.p_value - 2.0 / 32.0).abs() < 1e-12, "{test:?}");
        let table = group_table(&[base.clone(), cand]);
        assert!(table.contains("-0.0820 ["), "{table}");
        assert!(table.contains("p = 0.062 (5 seeds)"), "{table}");
        // Below two shared seeds there is nothing to pair.
        let one = group("lion", &[(1, 5.0)]);
        assert!(paired_difference(&base, &one).is_none());
        assert!(group_table(&[base, one])
            .lines()
            .nth(3)
            .unwrap()
            .ends_with("| - |"));
    }

    #[test]
    fn spread_is_the_sample_statistics() {
        let s = Spread::of(&[1.0, 2.0, 6.0]).unwrap();
        assert_eq!((s.mean, s.min, s.max, s.n), (3.0, 1.0, 6.0, 3));
        assert!((s.std - 7f64.sqrt()).abs() < 1e-12);
        assert_eq!(Spread::of(&[4.0]).unwrap().std, 0.0);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn speedup_per_seed_and_on_the_mean_curve() {
        // Baseline seeds end at 3.0 and 2.0 after 100 steps: the target is 2.5.
        let base = RunGroup {
            name: "adamw".into(),
            runs: vec![
                run("adamw-s1", &[(50, 3.5), (100, 3.0)], 1.0),
                run("adamw-s2", &[(50, 3.0), (100, 2.0)], 1.0),
            ],
        };
        // Seed 1 reaches 2.5 at step 25 (4×), seed 2 at step 50 (2×), seed 3 never; the mean
        // curve (2.75, 2.5, 2.25) reaches it at step 50.
        let cand = RunGroup {
            name: "admire".into(),
            runs: vec![
                run("admire-s1", &[(25, 2.5), (50, 2.25), (100, 2.0)], 1.1),
                run("admire-s2", &[(25, 2.75), (50, 2.5), (100, 2.0)], 1.1),
                run("admire-s3", &[(25, 3.0), (50, 2.75), (100, 2.75)], 1.1),
            ],
        };
        let s = group_speedup(&base, &cand).unwrap();
        assert_eq!(s.target, 2.5);
        assert_eq!(s.per_seed, vec![Some((25, 4.0)), Some((50, 2.0)), None]);
        assert_eq!(s.mean_curve, Some((50, 2.0)));
        let curve = cand.val_curve();
        assert_eq!(curve.len(), 3);
        assert!(
            curve[2].loss.mean == 2.25 && curve[2].loss.max == 2.75,
            "{curve:?}"
        );

        let table = group_table(&[base, cand]);
        assert!(
            table.contains("| adamw | 2 | 100 | 2.5000 ± 0.7071 | 2.0000 – 3.0000 | (baseline)"),
            "{table}"
        );
        assert!(
            table.contains("| step 50 | 2.00× | 4.00×, 2.00×, never | 1.10× |"),
            "{table}"
        );
    }

    fn record(step: usize, trace: f64, lambda_max: f64) -> SharpnessRecord {
        SharpnessRecord {
            step,
            settings: crate::sharpness::SharpnessSettings::default(),
            loss: 3.0,
            trace,
            trace_stderr: 1.5,
            lambda_max,
            lambda_iters: 5,
            eps: 1e-4,
            params: 10,
            seconds: 1.0,
        }
    }

    #[test]
    fn sharpness_is_summarised_at_steps_every_seed_measured() {
        let mut a = run("adamw-s1", &[(500, 3.0)], 1.0);
        let mut b = run("adamw-s2", &[(500, 3.0)], 1.0);
        a.sharpness = vec![record(250, 100.0, 9.0), record(500, 80.0, 7.0)];
        // Seed 2 measured step 250 twice (the latest counts) and never step 500.
        b.sharpness = vec![record(250, 1.0, 1.0), record(250, 120.0, 11.0)];
        let g = RunGroup {
            name: "adamw".into(),
            runs: vec![a, b],
        };
        let curve = g.sharpness_curve();
        assert_eq!(curve.len(), 1);
        assert_eq!(
            (curve[0].step, curve[0].trace.mean, curve[0].lambda_max.mean),
            (250, 110.0, 10.0)
        );
        let table = group_table(&[g]);
        assert!(
            table.contains("| 110.0 ± 14.1 (std over 2 seeds, step 250) | 10.00 ± 1.41 |"),
            "{table}"
        );
        assert!(table.contains("`std over N seeds`"), "{table}");
    }

    #[test]
    fn one_run_shows_its_values_without_a_plus_minus() {
        let mut solo = run("admire-s1", &[(250, 3.5), (500, 3.25)], 1.0);
        solo.sharpness = vec![record(500, 80.0, 7.0)];
        let g = RunGroup {
            name: "admire".into(),
            runs: vec![solo],
        };
        let table = group_table(&[g]);
        let row = table.lines().nth(2).unwrap();
        assert_eq!(
            row,
            "| admire | 1 | 500 | 3.2500 | - | (baseline) | 1.00× | - | 1.00× | - \
             | 80.0 ± 1.5 (probe s.e., step 500) | 7.00 |"
        );
        // The only ± left is the probes' standard error, and the legend says so.
        assert_eq!(row.matches('±').count(), 1);
        assert!(
            table.contains("over its random probes (`probe s.e.`)"),
            "{table}"
        );
    }

    #[test]
    fn the_table_has_a_legend_of_its_columns() {
        let g = RunGroup {
            name: "adamw".into(),
            runs: vec![run("adamw-s1", &[(100, 3.0)], 1.0)],
        };
        let table = group_table(&[g]);
        let header = table.lines().next().unwrap();
        assert!(header.contains("| final val loss (nats) |"), "{header}");
        assert!(!header.contains("Tr(H)"), "no sharpness measured: {header}");
        let legend = table.split("\nColumns:\n").nth(1).expect("a legend");
        for column in [
            "**group**",
            "**final val loss (nats)**",
            "**speed-up**",
            "**time/step vs baseline**",
        ] {
            assert!(legend.contains(column), "{column} missing: {legend}");
        }
        assert!(legend.contains("mean ± sample standard deviation over the seeds"));
        assert!(!legend.contains("Tr(H)"), "{legend}");
    }

    /// A run folder with `metrics.jsonl` (val losses at steps 10, 20) and a config.
    fn run_folder(dir: &Path, final_loss: f64) {
        std::fs::create_dir_all(dir).unwrap();
        let lines: Vec<String> = [(10, 4.0), (20, final_loss)]
            .iter()
            .map(|&(s, l)| serde_json::to_string(&line("val", s, l, 0.0)).unwrap())
            .collect();
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
        std::fs::write(dir.join(RUN_CONFIG_FILE), "[run]\nseed = 1\n").unwrap();
    }

    #[test]
    fn a_run_given_twice_is_one_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        run_folder(&a, 3.0);
        run_folder(&b, 2.0);
        let again = tmp.path().join("b/../a");
        let (kept, repeats) = distinct_runs(&[&a, &b, &again, &a]).unwrap();
        assert_eq!(kept, vec![a.clone(), b.clone()]);
        assert_eq!(
            repeats,
            vec![
                RepeatedRun {
                    given: again.clone(),
                    first: a.clone()
                },
                RepeatedRun {
                    given: a.clone(),
                    first: a.clone()
                },
            ]
        );
        // Same config: without the check, a given twice would be a second seed of a's group.
        let groups = load_groups(&[&a, &again]).unwrap();
        assert_eq!((groups.len(), groups[0].runs.len()), (1, 1));
        assert_eq!(groups[0].final_val().unwrap().n, 1);
        let groups = load_groups(&[&a, &b]).unwrap();
        assert_eq!(
            groups[0].runs.len(),
            2,
            "two runs of one config are two seeds"
        );
        let missing = distinct_runs(&[tmp.path().join("nope")]).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn seed_suffixes_are_stripped_from_group_names() {
        assert_eq!(strip_seed("admire-lr2e-3-s12"), "admire-lr2e-3");
        assert_eq!(strip_seed("adamw-2T-lr0.004-s1"), "adamw-2T-lr0.004");
        assert_eq!(strip_seed("tiny-admire"), "tiny-admire");
        assert_eq!(strip_seed("runs-s"), "runs-s");
    }
}
