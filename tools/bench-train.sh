#!/usr/bin/env bash
# Training throughput of ire vs PyTorch on the same shape, measured in the same run (not CI).
#
#   tools/bench-train.sh [--preset tiny] [--seq 256] [--batch 8] [--steps 10]
#
# ire: crates/ire-train/examples/bench_train.rs (forward + backward + global clip + AdamW) on
# burn-flex; PyTorch: tools/bench_torch_train.py (transformers LlamaForCausalLM, torch.optim.AdamW,
# SDPA). Both on 2 threads, untied tiny Llama (7.36M params) by default. Needs .venv with torch and
# transformers (see docs/performance.md). Prints both JSON lines and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
STEPS="${STEPS:-10}"
PY="${PYTHON:-.venv/bin/python}"

cargo build --release -q -p ire-train --example bench_train
ire_line=$(RAYON_NUM_THREADS=$THREADS target/release/examples/bench_train --steps "$STEPS" "$@")
echo "$ire_line"
# The tiny preset's shape; the PyTorch model is untied like ire's presets.
torch_line=$(OMP_NUM_THREADS=$THREADS "$PY" tools/bench_torch_train.py --untied --threads "$THREADS" --steps "$STEPS" \
  --hidden 256 --intermediate 688 --layers 4 --heads 4 --vocab 8192 --seq 256 --batch 8 | tail -n 1)
echo "$torch_line"
python3 - "$ire_line" "$torch_line" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"ire {a['tokens_per_s']:.0f} tok/s vs torch {b['tokens_per_s']:.0f} tok/s: "
      f"ratio {a['tokens_per_s'] / b['tokens_per_s']:.2f}x; peak RSS ire {a['peak_rss_gb']:.2f} GB, torch {b['peak_rss_gb']:.2f} GB")
PY
