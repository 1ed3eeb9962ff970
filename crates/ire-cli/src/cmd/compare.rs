//! `ire compare`: draw the runs' loss curves and print the speed-up table (first run = baseline).

use std::path::PathBuf;

use ire_train::compare::{draw, table, RunCurves};

/// Arguments of `ire compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directories; the first is the baseline of the speed-up column.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Where to write the charts (PNG and SVG).
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
}

/// Runs `ire compare`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|d| RunCurves::load(d))
        .collect::<Result<Vec<_>, _>>()?;
    let files = draw(&runs, &args.out)?;
    print!("{}", table(&runs));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
