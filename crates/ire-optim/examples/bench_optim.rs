//! Optimizer overhead of AdmIRE relative to AdamW on the `tiny` and `60m` parameter sets
//! (CPU, `Autodiff<Flex>`): one AdmIRE step without a refresh vs one AdamW step (target ≤ 1.05)
//! and one mask refresh — h = ĝ², the exact global threshold and the masks, excluding the GNB
//! forward/backward — vs one AdamW step (target ≤ 1.0); and one step of each other base (SGD,
//! Lion, Muon) vs AdamW's. Medians over several repetitions, measured in one run, interleaved so
//! that drift hits all alike.
//!
//! ```text
//! cargo run -p ire-optim --example bench_optim            # dev profile: deps at opt-level 3
//! cargo run -p ire-optim --example bench_optim -- tiny 9  # one preset, 9 repetitions
//! ```
//!
//! Gradients are random normals of the right shapes (drawn on the device, outside the timed
//! region); no model forward/backward runs.

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use ire_llama::{InitScheme, Llama, LlamaConfig};
use ire_optim::{BaseName, OptimConfig, Optimizer};

type B = Autodiff<Flex>;

struct RandomGrads(GradientsParams);

impl<Bk: AutodiffBackend> ModuleVisitor<Bk> for RandomGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let v = param.val();
        let g = Tensor::<Bk::InnerBackend, D>::random(
            v.shape(),
            Distribution::Normal(0.0, 1e-3),
            &v.device(),
        );
        self.0.register(param.id, g);
    }
}

fn random_grads<M: AutodiffModule<B>>(model: &M) -> GradientsParams {
    let mut v = RandomGrads(GradientsParams::new());
    model.visit(&mut v);
    v.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    B::sync(&Default::default()).expect("the CPU backend syncs");
    (out, t.elapsed().as_secs_f64() * 1e3)
}

fn bench(preset: &str, reps: usize) {
    let device = Default::default();
    let cfg = LlamaConfig::preset(preset).expect("a known preset");
    let mut model = Llama::<B>::init(&cfg, InitScheme::Torch, 0, &device).expect("a valid preset");
    let p = cfg.num_params();
    let mut adamw = Optimizer::<B>::new(&OptimConfig::adamw(), 0).expect("valid defaults");
    let mut admire = Optimizer::<B>::new(&OptimConfig::admire(), 0).expect("valid defaults");

    // Warm-up: create Adam state in both and a first mask.
    let g = random_grads(&model);
    model = adamw.step(1, 1e-4, 1e-4, model, g);
    let g = random_grads(&model);
    model = admire.step(0, 1e-4, 1e-4, model, g);
    admire.refresh_mask(&model, &random_grads(&model));
    let mut bases: Vec<(BaseName, Optimizer<B>, Vec<f64>)> = Vec::new();
    for base in [BaseName::Sgd, BaseName::Lion, BaseName::Muon] {
        let mut opt = Optimizer::<B>::new(&OptimConfig::base(base), 0).expect("valid defaults");
        let g = random_grads(&model);
        model = opt.step(0, 1e-4, 1e-4, model, g);
        bases.push((base, opt, Vec::new()));
    }

    let (mut t_adamw, mut t_admire, mut t_refresh) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let it = 2 + rep;
        let g = random_grads(&model);
        let (m, ms) = timed(|| adamw.step(it, 1e-4, 1e-4, model, g));
        model = m;
        t_adamw.push(ms);
        let g = random_grads(&model);
        // iteration > start and a mask exists: the boost runs.
        let (m, ms) = timed(|| admire.step(it, 1e-4, 1e-4, model, g));
        model = m;
        t_admire.push(ms);
        let est = random_grads(&model);
        let (stats, ms) = timed(|| admire.refresh_mask(&model, &est));
        t_refresh.push(ms);
        assert!(stats.fraction >= (0.6 * p as f64).floor() / p as f64);
        for (_, opt, times) in bases.iter_mut() {
            let g = random_grads(&model);
            let (m, ms) = timed(|| opt.step(it, 1e-4, 1e-4, model, g));
            model = m;
            times.push(ms);
        }
    }
    let (a, b, r) = (median(t_adamw), median(t_admire), median(t_refresh));
    println!(
        "{preset:>5}  p = {:>6.2}M  AdamW step {a:8.1} ms  AdmIRE step {b:8.1} ms ({:.3}x)  refresh {r:8.1} ms ({:.3}x)  [median of {reps}]",
        p as f64 / 1e6,
        b / a,
        r / a
    );
    for (base, _, times) in bases {
        let t = median(times);
        println!(
            "{preset:>5}  {:>5} step {t:8.1} ms ({:.3}x AdamW's)",
            base.as_str(),
            t / a
        );
    }
}

fn main() {
    // The allocator and denormal settings training runs with (`ire_train::train` applies them).
    ire_llama::ops::cpu::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let presets: Vec<&str> = match args.first() {
        Some(p) => vec![p.as_str()],
        None => vec!["tiny", "60m"],
    };
    let reps = args.get(1).and_then(|r| r.parse().ok());
    println!(
        "ire-optim bench: {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for preset in presets {
        let reps = reps.unwrap_or(if preset == "tiny" { 9 } else { 5 });
        bench(preset, reps);
    }
}
