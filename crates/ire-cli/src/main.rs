//! `ire`: pretrain Llama models with AdmIRE or AdamW, from a TOML config.
//!
//! The binary is thin: it parses the command line, sets up logging (`log.rs`), and hands each subcommand
//! to a function in `cmd/` that calls the library crates. Errors come back as `anyhow` chains
//! and are printed as one message with its causes.

mod backend;
mod cmd;
mod log;

use clap::{Parser, Subcommand};

/// Pretrain Llama language models with AdmIRE (Wang et al., NeurIPS 2024) or AdamW.
#[derive(Parser, Debug)]
#[command(name = "ire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a freshly initialised model in Hugging Face format.
    Init(cmd::init::Args),
    /// Print the mean next-token loss and the first logits of a model on given tokens (JSON).
    Score(cmd::score::Args),
    /// Train (or resume) a run from a TOML config; default configs/tiny-admire.toml.
    Train(cmd::train::Args),
    /// Tokenize a config's dataset into shards (done automatically by train).
    Prepare(cmd::prepare::Args),
    /// Plot runs' loss curves and print the speed-up table.
    Compare(cmd::compare::Args),
    /// Run a sweep (a base config and axes of overrides) locally, resumably, or emit a Slurm array.
    Sweep(cmd::sweep::Args),
    /// Print a config resolved (every key, its value and meaning), or the reference of every key.
    Config(cmd::config::Args),
    /// A config's expected peak memory per device, from the shapes.
    Memory(cmd::memory::Args),
    /// Export a run's checkpoint as a Hugging Face folder.
    Export(cmd::export::Args),
    /// Continue a prompt with a trained model (cached decoding, seeded sampling).
    Sample(cmd::sample::Args),
    /// Hessian trace (Hutchinson) and top eigenvalue of a run's checkpoints on validation windows.
    Sharpness(cmd::sharpness::Args),
    /// Dataset-free device measurements (JSON): training-step throughput, the exact τ check.
    Bench(cmd::bench::Args),
    /// The paper's toy example (Fig. 1): GD vs IRE on L(u,v) = (1+u^2)v^2/2.
    Toy(cmd::toy::Args),
}

fn main() -> std::process::ExitCode {
    log::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(args),
        Command::Score(args) => cmd::score::run(args),
        Command::Train(args) => match cmd::train::run(args) {
            Ok(code) => return std::process::ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Prepare(args) => cmd::prepare::run(args),
        Command::Compare(args) => cmd::compare::run(args),
        Command::Sweep(args) => cmd::sweep::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Memory(args) => cmd::memory::run(args),
        Command::Sample(args) => cmd::sample::run(args),
        Command::Sharpness(args) => cmd::sharpness::run(args),
        Command::Toy(args) => cmd::toy::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let message = format!("error: {}", error_chain(&err));
            eprintln!("{message}");
            log::write_line(&message);
            std::process::ExitCode::FAILURE
        }
    }
}

/// `outer: inner: …`, skipping a cause whose text its parent already includes (our errors put
/// the underlying I/O message in their own text, which would otherwise print twice).
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !last.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        last = text;
    }
    out
}
