//! Metrics as JSON lines in `RUN_DIR/metrics.jsonl`: one object per logged train step
//! (`"split": "train"`) and per evaluation (`"split": "val"`). `ire compare` reads them back.
//!
//! Durability: every line is flushed as it is written; a resumed run *truncates* the file after
//! the last line it keeps (bytes are never re-serialised, so kept lines stay byte-identical);
//! a torn last line (the process was killed mid-write) is skipped with a warning. JSON has no
//! NaN or infinity, so a non-finite loss is written as the string `"NaN"`, `"inf"` or `"-inf"`
//! and read back as the float.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// One line of `metrics.jsonl` (docs/metrics.md documents every field; a test checks it does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricLine {
    /// `"train"` or `"val"`.
    pub split: String,
    /// Optimizer steps done.
    pub step: usize,
    /// Training tokens consumed so far (all devices).
    pub tokens: u64,
    /// Mean loss (train: over the step's global batch; val: over the fixed windows).
    #[serde(with = "float_or_text")]
    #[schemars(with = "f64")]
    pub loss: f64,
    /// Learning rate used at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Global gradient norm before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training throughput of this step (all devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Model FLOPs utilisation estimate (PaLM formula) against the configured peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    /// Seconds of training since the run started (excluding evaluation and checkpoints).
    pub wall_s: f64,
    /// AdmIRE: fraction of coordinates in the flat mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_fraction: Option<f64>,
    /// AdmIRE: the boost κ_t applied at this step (0 before the start step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kappa_t: Option<f64>,
    /// AdmIRE, on the train line of a step that refreshed the mask: τ, the flat fraction per
    /// parameter group and per layer, and the overlap with the previous refresh's flat set
    /// ([`ire_optim::MaskReport`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<ire_optim::MaskReport>,
}

impl MetricLine {
    /// The fields that must be identical between an interrupted-and-resumed run and an
    /// uninterrupted one (everything but timings).
    pub fn deterministic_part(&self) -> MetricLine {
        MetricLine {
            tokens_per_s: None,
            mfu: None,
            wall_s: 0.0,
            ..self.clone()
        }
    }
}

/// Appends metric lines to a file, flushing each so a crash loses nothing already logged.
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `path` for appending, first cutting the file after the last line at or before
    /// `keep_until_step` (the steps a resumed run will log again) and dropping a torn last line.
    pub fn open(path: &Path, keep_until_step: Option<usize>) -> Result<Self, TrainError> {
        if let Some(limit) = keep_until_step {
            if path.exists() {
                let text = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
                let keep = kept_prefix(path, &text, limit)?;
                if keep < text.len() {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| TrainError::io(path, e))?;
                    f.set_len(keep as u64)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| TrainError::io(path, e))?;
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one line.
    pub fn write(&mut self, line: &MetricLine) -> Result<(), TrainError> {
        let text = serde_json::to_string(line).map_err(|e| {
            TrainError::checkpoint(&self.path, format!("cannot serialise a metric line: {e}"))
        })?;
        writeln!(self.file, "{text}")
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Byte length of the prefix of `text` that holds the complete lines with `step ≤ limit`.
/// Lines are in step order; the first line past `limit` (or a torn tail) ends the prefix.
fn kept_prefix(path: &Path, text: &[u8], limit: usize) -> Result<usize, TrainError> {
    let mut keep = 0;
    for (number, line) in complete_lines(text).enumerate() {
        let parsed = parse_line(path, number + 1, line)?;
        if parsed.step > limit {
            break;
        }
        keep += line.len() + 1;
    }
    Ok(keep)
}

/// The newline-terminated lines of `text` (a last line without `\n` is torn: not yielded).
fn complete_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    text[..end]
        .split(|&b| b == b'\n')
        .take(text[..end].iter().filter(|&&b| b == b'\n').count())
}

fn parse_line(path: &Path, number: usize, line: &[u8]) -> Result<MetricLine, TrainError> {
    serde_json::from_slice(line).map_err(|e| {
        TrainError::checkpoint(path, format!("line {number}: not a metrics line: {e}"))
    })
}

/// Reads every line of a `metrics.jsonl`; a malformed line is an error naming its number, a
/// torn last line (no newline, not valid JSON: the writer was killed) is skipped with a warning.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricLine>, TrainError> {
    let text = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let mut lines = Vec::new();
    let mut count = 0;
    for (i, line) in complete_lines(&text).enumerate() {
        count = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push(parse_line(path, i + 1, line)?);
    }
    let consumed: usize = complete_lines(&text).map(|l| l.len() + 1).sum();
    let tail = &text[consumed..];
    if !tail.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<MetricLine>(tail) {
            Ok(line) => lines.push(line),
            Err(_) => tracing::warn!(
                "{}: line {} is torn (the writer was interrupted); ignoring it",
                path.display(),
                count + 1
            ),
        }
    }
    Ok(lines)
}

/// Serde for a float that may be non-finite: a JSON number, or `"NaN"`, `"inf"`, `"-inf"`
/// (also accepts `null` as NaN, which older ire versions wrote).
mod float_or_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *x {
            x if x.is_finite() => s.serialize_f64(x),
            x if x.is_nan() => s.serialize_str("NaN"),
            x if x > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            Some(Repr::Number(x)) => Ok(x),
            None => Ok(f64::NAN),
            Some(Repr::Text(t)) => match t.as_str() {
                "NaN" | "nan" => Ok(f64::NAN),
                "inf" | "Infinity" => Ok(f64::INFINITY),
                "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"NaN\", \"inf\" or \"-inf\", got \"{other}\""
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names of a type's serialized form (from its schema, so a new field is in it).
    fn fields<T: schemars::JsonSchema>() -> Vec<String> {
        let schema = schemars::schema_for!(T);
        let props = schema.as_value()["properties"].as_object().cloned();
        props.unwrap_or_default().keys().cloned().collect()
    }

    #[test]
    fn docs_metrics_md_documents_every_field() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let metric = fields::<MetricLine>();
        let state = fields::<crate::checkpoint::TrainerState>();
        assert!(
            metric.len() >= 11 && state.len() >= 8,
            "{metric:?} {state:?}"
        );
        for field in metric.iter().chain(&state) {
            assert!(
                doc.contains(&format!("| `{field}` |")),
                "docs/metrics.md has no row for `{field}`: document it (meaning, unit, when present)"
            );
        }
    }

    fn line(step: usize, loss: f64) -> MetricLine {
        MetricLine {
            split: "val".into(),
            step,
            tokens: 10 * step as u64,
            loss,
            lr: None,
            grad_norm: None,
            tokens_per_s: None,
            mfu: None,
            wall_s: 0.1 * step as f64,
            mask_fraction: None,
            kappa_t: None,
            mask: None,
        }
    }

    #[test]
    fn non_finite_losses_round_trip() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.5] {
            let text = serde_json::to_string(&line(1, x)).unwrap();
            let back: MetricLine = serde_json::from_str(&text).unwrap();
            assert!(
                back.loss == x || (x.is_nan() && back.loss.is_nan()),
                "{text}"
            );
        }
        let old = r#"{"split":"val","step":2,"tokens":20,"loss":null,"wall_s":0.2}"#;
        assert!(serde_json::from_str::<MetricLine>(old)
            .unwrap()
            .loss
            .is_nan());
        let bad = r#"{"split":"val","step":2,"tokens":20,"loss":"big","wall_s":0.2}"#;
        let err = serde_json::from_str::<MetricLine>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"big\""), "{err}");
    }

    #[test]
    fn resume_truncates_without_rewriting_and_drops_a_torn_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        let mut w = MetricsWriter::open(&path, None).unwrap();
        for s in 1..=4 {
            w.write(&line(s, 1.0 / 3.0 + s as f64)).unwrap();
        }
        drop(w);
        let full = std::fs::read(&path).unwrap();
        // A kill mid-write leaves half a line.
        let mut torn = full.clone();
        torn.extend_from_slice(br#"{"split":"val","step":5,"tok"#);
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 4, "torn line skipped");
        MetricsWriter::open(&path, Some(2)).unwrap();
        let kept = std::fs::read(&path).unwrap();
        let two_lines = full
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(1)
            .unwrap()
            .0
            + 1;
        assert_eq!(kept, full[..two_lines], "kept lines are the same bytes");
        // Truncating at a step past the end keeps everything but the torn tail.
        std::fs::write(&path, &torn).unwrap();
        MetricsWriter::open(&path, Some(100)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), full);
    }

    #[test]
    fn a_malformed_line_names_its_number() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"split\":\"val\",\"step\":1,\"tokens\":1,\"loss\":1,\"wall_s\":0}\n{oops}\n",
        )
        .unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("metrics.jsonl"),
            "{err}"
        );
    }
}
