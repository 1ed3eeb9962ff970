//! `ire compare`: group the runs by config (seeds of one config form one curve with a band), draw
//! the loss curves (and AdmIRE's flat share per parameter group) and print the study table (first
//! group = baseline of the speed-ups; then the mask at the last refresh). A run
//! given twice (under any spelling of its path) counts once, with a warning.

use std::path::PathBuf;

use anyhow::Context;
use ire_lab::charts::draw;
use ire_lab::curves::RunCurves;
use ire_lab::groups::{distinct_runs, group_table, load_groups, singletons};
use ire_lab::mask::{draw_mask, mask_table};

/// Arguments of `ire compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directories; the first run's group is the baseline of the speed-up columns.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Where to write the charts (PNG and SVG) and the table (table.md).
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Keep every run apart, even seeds of one config.
    #[arg(long)]
    no_group: bool,
}

/// Runs `ire compare`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (dirs, repeats) = distinct_runs(&args.runs)?;
    for r in &repeats {
        tracing::warn!(
            "{} is the run {} given again; counted once",
            r.given.display(),
            r.first.display()
        );
    }
    let groups = if args.no_group {
        let runs = dirs
            .iter()
            .map(|d| RunCurves::load(d))
            .collect::<Result<Vec<_>, _>>()?;
        singletons(runs)
    } else {
        load_groups(&dirs)?
    };
    let mut files = draw(&groups, &args.out)?;
    files.extend(draw_mask(&groups, &args.out)?);
    let table = group_table(&groups) + &mask_table(&groups).unwrap_or_default();
    let table_path = args.out.join("table.md");
    std::fs::write(&table_path, &table)
        .with_context(|| format!("writing {}", table_path.display()))?;
    print!("{table}");
    for f in files.iter().chain([&table_path]) {
        println!("wrote {}", f.display());
    }
    Ok(())
}
