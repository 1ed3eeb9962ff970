//! `ire toy`: the paper's Fig. 1 example, L(u,v) = (1+u²)v²/2 from (1, 0.01), with plain GD as
//! the base and the AdmIRE mask/boost code on the diagonal Hessian (v², 1+u²), γ = 0.5.

/// Arguments of `ire toy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Boost κ (0 = plain gradient descent).
    #[arg(long, default_value_t = 0.0)]
    kappa: f64,
    /// Learning rate η.
    #[arg(long, default_value_t = 1.0)]
    lr: f64,
    /// Maximum number of steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Print every iterate (default: the first 5 and the last).
    #[arg(long)]
    all: bool,
}

/// Runs `ire toy`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let r = ire_optim::toy::run(args.kappa, args.lr, args.steps);
    println!(
        "# L(u,v) = (1+u^2) v^2 / 2, theta0 = (1, 0.01), lr {}, kappa {}",
        args.lr, args.kappa
    );
    println!("step u v");
    let n = r.trajectory.len();
    for (i, (u, v)) in r.trajectory.iter().enumerate() {
        if args.all || i < 6 || i + 1 == n {
            println!("{i} {u:.6} {v:.6e}");
        } else if i == 6 {
            println!("...");
        }
    }
    match r.diverged {
        Some(step) => println!("diverged at step {step}: |v| grows without bound (lr above the stability limit 2/(1+u^2))"),
        None => println!(
            "limit u = {:.6} (sharpness 1+u^2 = {:.6}); converged (|v| < 1e-12) at step {}",
            r.limit_u,
            1.0 + r.limit_u * r.limit_u,
            r.converged_step.map(|s| s.to_string()).unwrap_or_else(|| "- (not yet)".into())
        ),
    }
    Ok(())
}
