//! The run config: one TOML file per run, one section per component. Each section is a struct
//! owned by the crate that uses it (`[data]` → `ire_data`, `[optim]`/`[schedule]` → `ire_optim`);
//! this file joins them, applies `--set key=value` overrides, and validates the whole.

use std::path::{Path, PathBuf};

use ire_llama::{InitScheme, LlamaConfig};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// A whole training run, as read from `configs/*.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Name, directory, seed and devices of the run.
    pub run: RunSection,
    /// Model shape: a preset plus overrides.
    pub model: ModelSection,
    /// Dataset and tokenizer.
    #[serde(default)]
    pub data: ire_data::DataConfig,
    /// The base optimizer (AdamW, SGD, Lion or Muon) with its hyperparameters, and IRE on top of
    /// it when `[optim.ire]` is present (AdamW + IRE: the paper's AdmIRE).
    pub optim: ire_optim::OptimConfig,
    /// Learning-rate schedule and the number of steps.
    pub schedule: ire_optim::ScheduleConfig,
    /// Batch shape.
    pub batch: BatchSection,
    /// Periodic evaluation.
    #[serde(default)]
    pub eval: EvalSection,
    /// Periodic checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    /// Logging: metrics.jsonl and the MFU estimate.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// What to do when a step's loss or gradient norm is not finite.
    #[serde(default)]
    pub guard: GuardSection,
    /// Several processes (mpirun, srun, torchrun): the collective engine and its timeout.
    #[serde(default)]
    pub dist: DistSection,
}

/// The collective engine of a data-parallel group (`dist.engine`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// `local` for one process, `nccl` for several processes on CUDA, `mpi` on CPU.
    #[default]
    Auto,
    /// Threads of one process, one per device (burn-collective).
    Local,
    /// MPI (build with `--features mpi`): host buffers.
    Mpi,
    /// NCCL (CUDA build): in place on the GPU's buffers.
    Nccl,
}

/// `[dist]`: how the processes of a multi-process job (one per device, started by mpirun, srun
/// or torchrun) form their group. A single process needs none of it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistSection {
    /// `auto` (default), `local`, `mpi` or `nccl`.
    #[serde(default)]
    pub engine: EngineKind,
    /// Seconds a collective may wait for the other ranks before the job is aborted (a rank
    /// that hangs or died). Must exceed the longest gap between ranks: an evaluation or a
    /// checkpoint written by rank 0 while the others wait.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Gradients are all-reduced in flat buckets of at most this many MiB.
    #[serde(default = "default_bucket_mb")]
    pub bucket_mb: usize,
    /// Processes in the job: set from the launcher's environment by `ire train` (recorded so
    /// that the global batch of a checkpoint is known); not a setting.
    #[serde(default = "one_process")]
    pub processes: usize,
    /// TCP port on `MASTER_ADDR` where rank 0 hands out the NCCL id when MPI is not the
    /// launcher; default `MASTER_PORT + 1` (torchrun's agent already listens on `MASTER_PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendezvous_port: Option<u16>,
}

impl Default for DistSection {
    fn default() -> Self {
        Self {
            engine: EngineKind::Auto,
            timeout_s: default_timeout_s(),
            bucket_mb: default_bucket_mb(),
            processes: 1,
            rendezvous_port: None,
        }
    }
}

fn default_timeout_s() -> u64 {
    600
}
fn default_bucket_mb() -> usize {
    25
}
fn one_process() -> usize {
    1
}

/// `[run]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Human-readable name, used in logs and plots.
    pub name: String,
    /// Run directory (metrics, checkpoints, resolved config). Relative paths are relative to
    /// the current directory.
    pub dir: PathBuf,
    /// Seed for initialisation, data order and the GNB label sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// One model replica per entry; gradients are averaged across them (data parallel).
    /// `"cpu"` on the CPU build, `"cuda:N"` on the CUDA build.
    #[serde(default = "default_devices")]
    pub devices: Vec<String>,
    /// `"f32"` (default) or `"bf16"`: the dtype of the model's matmuls and attention; weights,
    /// gradients, optimizer state and checkpoints stay f32 ([`ire_llama::precision`]).
    #[serde(default)]
    pub precision: ire_llama::Precision,
}

fn default_seed() -> u64 {
    1
}
fn default_devices() -> Vec<String> {
    vec!["cpu".into()]
}

/// `[model]`: a preset, optionally with individual fields replaced.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `tiny`, `60m`, `119m` or `229m`.
    pub preset: String,
    /// Initialisation: `torch` (PyTorch defaults, the paper's) or `hf` (normal(0, 0.02)).
    #[serde(default)]
    pub init: InitScheme,
    /// Replaces the preset's vocabulary size (must cover the tokenizer's).
    pub vocab_size: Option<usize>,
    /// Replaces the preset's width.
    pub hidden_size: Option<usize>,
    /// Replaces the preset's MLP width.
    pub intermediate_size: Option<usize>,
    /// Replaces the preset's depth.
    pub num_hidden_layers: Option<usize>,
    /// Replaces the preset's head count.
    pub num_attention_heads: Option<usize>,
    /// Replaces the preset's kv head count (grouped-query attention).
    pub num_key_value_heads: Option<usize>,
    /// Replaces the preset's context length.
    pub max_position_embeddings: Option<usize>,
    /// Ties lm_head to the embedding.
    pub tie_word_embeddings: Option<bool>,
}

impl ModelSection {
    /// The preset with the overrides applied, validated.
    pub fn resolve(&self) -> Result<LlamaConfig, TrainError> {
        let mut c = LlamaConfig::preset(&self.preset)
            .map_err(|e| TrainError::config("model.preset", e.to_string()))?;
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut c.vocab_size, self.vocab_size);
        set(&mut c.hidden_size, self.hidden_size);
        set(&mut c.intermediate_size, self.intermediate_size);
        set(&mut c.num_hidden_layers, self.num_hidden_layers);
        set(&mut c.num_attention_heads, self.num_attention_heads);
        let heads_changed = self.num_attention_heads.is_some();
        match self.num_key_value_heads {
            Some(kv) => c.num_key_value_heads = kv,
            None if heads_changed => c.num_key_value_heads = c.num_attention_heads,
            None => {}
        }
        set(&mut c.max_position_embeddings, self.max_position_embeddings);
        if let Some(t) = self.tie_word_embeddings {
            c.tie_word_embeddings = t;
        }
        c.validate("[model]")
            .map_err(|e| TrainError::config("model", e.to_string()))?;
        Ok(c)
    }
}

/// `[batch]`: the global batch is `micro_batch × grad_accum × devices` sequences.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// Sequences per forward/backward on one device.
    pub micro_batch: usize,
    /// Micro-batches accumulated per optimizer step on each device.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Tokens per sequence; defaults to the model's `max_position_embeddings`.
    pub seq_len: Option<usize>,
}

fn one() -> usize {
    1
}

/// `[eval]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every this many steps (and at the last step); 0 disables periodic evaluation.
    #[serde(default = "default_eval_interval")]
    pub interval: usize,
    /// Number of fixed validation windows (the same ones at every evaluation).
    #[serde(default = "default_eval_windows")]
    pub windows: usize,
}

fn default_eval_interval() -> usize {
    50
}
fn default_eval_windows() -> usize {
    32
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            interval: default_eval_interval(),
            windows: default_eval_windows(),
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Save every this many steps (and at the end, and on Ctrl-C); 0 saves only at the end.
    #[serde(default = "default_ckpt_interval")]
    pub interval: usize,
    /// How many of the newest checkpoints to keep.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_ckpt_interval() -> usize {
    100
}
fn default_keep() -> usize {
    3
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            interval: default_ckpt_interval(),
            keep: default_keep(),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Write a train line to metrics.jsonl every this many steps.
    #[serde(default = "one")]
    pub log_interval: usize,
    /// Peak FLOP/s of one device that MFU is measured against (docs/metrics.md). Unset: on the
    /// CPU, `ire train` measures this machine's f32 GEMM peak on the run's threads at start
    /// (under a second) and records it here in the run's config.toml, so a resume reuses it; on
    /// CUDA 4.95e14 (H100 TF32 dense). The log's first lines say which.
    pub peak_flops: Option<f64>,
    /// When stderr is not a terminal (a log file), print a progress line (step/total, loss,
    /// lr, tokens/s, MFU, elapsed, ETA) every this many steps; 0: by time only
    /// (`progress_seconds`). The first and the last step always get one.
    #[serde(default)]
    pub progress_steps: usize,
    /// When stderr is not a terminal, print a progress line at least every this many seconds
    /// (or every `progress_steps` steps, whichever comes first).
    #[serde(default = "default_progress_seconds")]
    pub progress_seconds: f64,
    /// Also write the train and val scalars as TensorBoard event files in `RUN_DIR/tb/`.
    #[serde(default = "yes")]
    pub tensorboard: bool,
}

fn yes() -> bool {
    true
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            log_interval: 1,
            peak_flops: None,
            progress_steps: 0,
            progress_seconds: default_progress_seconds(),
            tensorboard: true,
        }
    }
}

fn default_progress_seconds() -> f64 {
    30.0
}

/// What a non-finite step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NonFinitePolicy {
    /// Stop the run (no update applied, nothing saved from the bad step).
    Stop,
    /// Skip the update and go on, up to `guard.max_skipped` steps in the whole run.
    Skip,
}

/// `[guard]`: the check between the backward pass and the optimizer.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// `"stop"` (default) or `"skip"`.
    #[serde(default = "default_policy")]
    pub nonfinite: NonFinitePolicy,
    /// With `"skip"`: the run stops once more than this many steps were skipped.
    #[serde(default = "default_max_skipped")]
    pub max_skipped: usize,
}

fn default_policy() -> NonFinitePolicy {
    NonFinitePolicy::Stop
}
fn default_max_skipped() -> usize {
    10
}

impl Default for GuardSection {
    fn default() -> Self {
        Self {
            nonfinite: default_policy(),
            max_skipped: default_max_skipped(),
        }
    }
}

impl RunConfig {
    /// Reads a config file, applies `overrides` (`key.path=value`, the value in TOML syntax or a
    /// bare string), and validates it. Every error names the file and the key.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// As [`RunConfig::load`] for a config that ire wrote itself (a run's or a checkpoint's
    /// `config.toml`): the same, except that AdmIRE-only keys on an AdamW run are ignored, not
    /// refused: earlier versions of ire wrote them into every resolved config.
    pub fn load_saved(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse_text(&text, &path.display().to_string(), overrides, false)
    }

    /// As [`RunConfig::load`] from text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self, TrainError> {
        Self::parse_text(text, origin, overrides, true)
    }

    /// [`RunConfig::parse`]; `check_written` refuses keys written for another optimizer.
    fn parse_text(
        text: &str,
        origin: &str,
        overrides: &[String],
        check_written: bool,
    ) -> Result<Self, TrainError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| line_column(text, span.start));
            TrainError::Config {
                key: match at {
                    Some((line, column)) => format!("{origin}:{line}:{column}"),
                    None => origin.to_string(),
                },
                message: e.message().to_string(),
            }
        })?;
        for item in overrides {
            apply_override(&mut value, item)?;
        }
        if let Some(optim) = value.get_mut("optim").and_then(toml::Value::as_table_mut) {
            ire_optim::config_read::upgrade(optim, !check_written).map_err(optim_error)?;
        }
        // serde_path_to_error names the key at fault (`optim.kappa`), which toml's own error
        // loses once overrides have turned the text into a tree.
        let mut cfg: RunConfig =
            serde_path_to_error::deserialize(value).map_err(|e| TrainError::Config {
                key: format!("{origin}: {}", e.path()),
                message: e.inner().message().to_string(),
            })?;
        cfg.optim.fill_tables();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), TrainError> {
        let model = self.model.resolve()?;
        if self.run.devices.is_empty() {
            return Err(TrainError::config(
                "run.devices",
                "at least one device, e.g. [\"cpu\"]",
            ));
        }
        if self.batch.micro_batch == 0 {
            return Err(TrainError::config(
                "batch.micro_batch",
                "a positive integer",
            ));
        }
        if self.batch.grad_accum == 0 {
            return Err(TrainError::config("batch.grad_accum", "a positive integer"));
        }
        let seq_len = self.seq_len(&model);
        if seq_len == 0 {
            return Err(TrainError::config("batch.seq_len", "a positive integer"));
        }
        if seq_len > model.max_position_embeddings {
            return Err(TrainError::config(
                "batch.seq_len",
                format!(
                    "{seq_len} is beyond the model's context (model.max_position_embeddings = {}): \
                     set model.max_position_embeddings = {seq_len} to train on longer sequences \
                     (the export then says so), or lower batch.seq_len",
                    model.max_position_embeddings
                ),
            ));
        }
        if self.checkpoint.keep == 0 {
            return Err(TrainError::config("checkpoint.keep", "at least 1"));
        }
        if self.eval.windows == 0 {
            return Err(TrainError::config(
                "eval.windows",
                "at least 1 validation window",
            ));
        }
        if self.dist.timeout_s == 0 || self.dist.bucket_mb == 0 || self.dist.processes == 0 {
            return Err(TrainError::config(
                "dist",
                "timeout_s, bucket_mb and processes must be positive",
            ));
        }
        if self.metrics.log_interval == 0 {
            return Err(TrainError::config("metrics.log_interval", "at least 1"));
        }
        let secs = self.metrics.progress_seconds;
        if secs.is_nan() || secs < 0.0 {
            return Err(TrainError::config(
                "metrics.progress_seconds",
                "a number of seconds, 0 or more",
            ));
        }
        self.schedule
            .build()
            .map_err(|e| TrainError::config("schedule", e.to_string()))?;
        self.optim.validate().map_err(optim_error)?;
        self.data
            .validate()
            .map_err(|e| TrainError::config("data", e.to_string()))?;
        Ok(())
    }

    /// Tokens per sequence.
    pub fn seq_len(&self, model: &LlamaConfig) -> usize {
        self.batch.seq_len.unwrap_or(model.max_position_embeddings)
    }

    /// Data-parallel replicas: the devices of this process times the processes of the job.
    pub fn replicas(&self) -> usize {
        self.run.devices.len() * self.dist.processes
    }

    /// Sequences per optimizer step over all replicas.
    pub fn global_batch(&self) -> usize {
        self.batch.micro_batch * self.batch.grad_accum * self.replicas()
    }

    /// The config as TOML text (saved in the run directory and in every checkpoint); `[optim]`
    /// in the current spelling, with only the tables the run uses.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serializes to TOML")
    }
}

/// An `[optim]` error keyed by its field (`optim.ire.kappa`).
fn optim_error(e: ire_optim::OptimError) -> TrainError {
    match e {
        ire_optim::OptimError::Config { field, message, .. } => {
            TrainError::config(&format!("optim.{field}"), message)
        }
        other => TrainError::config("optim", other.to_string()),
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Applies one `a.b.c=value` override to a TOML tree; `false` for a key holding a table removes
/// the table (`optim.ire=false`).
fn apply_override(root: &mut toml::Value, item: &str) -> Result<(), TrainError> {
    let (key, raw) = item.split_once('=').ok_or_else(|| TrainError::Config {
        key: item.to_string(),
        message: "an override must look like section.key=value".into(),
    })?;
    let key = key.trim();
    // Parse the value as TOML (numbers, booleans, arrays, quoted strings); else a bare string.
    let value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node.as_table_mut().ok_or_else(|| TrainError::Config {
            key: key.to_string(),
            message: format!("`{part}` is inside a value that is not a table"),
        })?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    let table = node.as_table_mut().ok_or_else(|| TrainError::Config {
        key: key.to_string(),
        message: "the parent of this key is not a table".into(),
    })?;
    let last = parts[parts.len() - 1];
    // `table=false` removes a table (`--set optim.ire=false`: the base alone).
    if value.as_bool() == Some(false) && table.get(last).is_some_and(toml::Value::is_table) {
        table.remove(last);
        return Ok(());
    }
    table.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIRE: &str = include_str!("../../../configs/tiny-admire.toml");
    const ADAMW: &str = include_str!("../../../configs/tiny-adamw.toml");

    /// The key and message of a config error.
    fn config_error(text: &str, set: &[&str]) -> (String, String) {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        match RunConfig::parse(text, "t.toml", &set) {
            Err(TrainError::Config { key, message }) => (key, message),
            other => panic!("expected a config error for {set:?}, got {other:?}"),
        }
    }

    /// A valid value of each IRE key (written with `--set`).
    const ADMIRE_VALUES: &[&str] = &[
        "kappa=2",
        "gamma=0.5",
        "interval=5",
        "prog_decay=true",
        "scope=\"per_tensor\"",
        "estimator=\"adam_v\"",
        "hessian=\"abs\"",
        "start=3",
    ];

    /// `text` with its `[optim]` in the older spelling (`name = "admire"` or `"adamw"`, every key
    /// directly in the section), as configs were written before bases and IRE were apart.
    fn older_spelling(text: &str, name: &str) -> String {
        let start = text.find("[optim]").unwrap();
        let end = text.find("[schedule]").unwrap();
        let optim = format!("[optim]\nname = \"{name}\"\nbeta2 = 0.95\nclip_norm = 1.0\n\n");
        format!("{}{optim}{}", &text[..start], &text[end..])
    }

    #[test]
    fn ire_keys_are_refused_outside_their_table_and_on_an_older_adamw_config() {
        assert_eq!(ADMIRE_VALUES.len(), ire_optim::ADMIRE_ONLY_KEYS.len());
        let old_adamw = older_spelling(ADAMW, "adamw");
        let old_admire = older_spelling(ADAMW, "admire");
        for (value, key) in ADMIRE_VALUES.iter().zip(ire_optim::ADMIRE_ONLY_KEYS) {
            // The current spelling: in [optim.ire], never at the top of [optim].
            let (at, message) = config_error(ADAMW, &[&format!("optim.{value}")]);
            assert_eq!(at, format!("optim.{key}"), "{value}");
            assert!(message.contains("belongs in [optim.ire]"), "{message}");
            RunConfig::parse(ADMIRE, "t.toml", &[format!("optim.ire.{value}")]).unwrap();
            // The older spelling: AdmIRE's to take, refused with name = "adamw".
            let (at, message) = config_error(&old_adamw, &[&format!("optim.{value}")]);
            assert_eq!(at, format!("optim.{key}"), "{value}");
            assert!(message.contains("only applies to AdmIRE"), "{message}");
            assert!(message.contains("optim.name = \"admire\""), "{message}");
            RunConfig::parse(&old_admire, "t.toml", &[format!("optim.{value}")]).unwrap();
        }
        // AdamW with its own keys only is accepted, in either spelling.
        let cfg = RunConfig::parse(ADAMW, "t.toml", &["optim.adamw.beta2=0.99".into()]).unwrap();
        assert_eq!(cfg.optim.adamw_params().beta2, 0.99);
        let cfg = RunConfig::parse(&old_adamw, "t.toml", &["optim.beta2=0.99".into()]).unwrap();
        assert_eq!(cfg.optim.adamw_params().beta2, 0.99);
    }

    #[test]
    fn a_resolved_config_loads_again_and_older_saved_configs_load() {
        for text in [ADAMW, ADMIRE] {
            let cfg = RunConfig::parse(text, "t.toml", &[]).unwrap();
            let saved = cfg.to_toml();
            assert!(
                saved.contains("[optim.adamw]") && !saved.contains("name = \"ad"),
                "{saved}"
            );
            assert_eq!(
                saved.contains("[optim.ire]"),
                cfg.optim.ire.is_some(),
                "{saved}"
            );
            let again = RunConfig::parse(&saved, "saved.toml", &[]).unwrap();
            assert_eq!(again.to_toml(), saved);
            assert_eq!(again.optim, cfg.optim);
        }
        // What older versions saved for an AdamW run (every optim key, the AdmIRE ones too) is
        // refused as input, but loads as a saved config, its AdmIRE keys ignored.
        let cfg = RunConfig::parse(ADAMW, "t.toml", &[]).unwrap();
        let old = older_spelling(ADAMW, "adamw").replace("[optim]\n", "[optim]\nkappa = 4.0\n");
        assert_eq!(config_error(&old, &[]).0, "optim.kappa");
        let saved = RunConfig::parse_text(&old, "saved.toml", &[], false).unwrap();
        assert_eq!(saved.optim, cfg.optim);
        // `--set optim.ire=false` removes the table: AdmIRE's config becomes AdamW's.
        let off = RunConfig::parse(ADMIRE, "t.toml", &["optim.ire=false".into()]).unwrap();
        assert_eq!(off.optim, cfg.optim);
        // A key that is not a table is set to false as before (and refused where wrong).
        let (at, _) = config_error(ADMIRE, &["optim.base=false"]);
        assert_eq!(at, "t.toml: optim.base");
    }

    #[test]
    fn seq_len_beyond_the_context_is_refused_naming_both_keys() {
        let (key, message) = config_error(ADMIRE, &["batch.seq_len=512"]);
        assert_eq!(key, "batch.seq_len");
        assert!(
            message.contains(
                "512 is beyond the model's context (model.max_position_embeddings = 256)"
            ) && message.contains("set model.max_position_embeddings = 512"),
            "{message}"
        );
        // Following the advice works, and the model (hence the export) has that context.
        let set = [
            "batch.seq_len=512".into(),
            "model.max_position_embeddings=512".into(),
        ];
        let cfg = RunConfig::parse(ADMIRE, "t.toml", &set).unwrap();
        let model = cfg.model.resolve().unwrap();
        assert_eq!(
            (cfg.seq_len(&model), model.max_position_embeddings),
            (512, 512)
        );
        // Shorter sequences than the context stay fine.
        RunConfig::parse(ADMIRE, "t.toml", &["batch.seq_len=128".into()]).unwrap();
    }
}
