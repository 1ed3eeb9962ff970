#!/usr/bin/env bash
# One prepared GPU check for a task that is lent a GPU machine (no Rust toolchain, no network
# there). Build here first, then carry the binary:
#
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p ire-cli --features cuda
#   mkdir -p gpu && cp target/release/ire gpu/ire && strip gpu/ire
#   (device tool) run: bash tools/gpu-check.sh   with carry ["gpu", "data/embedded-bpe8192"]
#
# It trains the tiny AdmIRE and AdamW runs for 60 steps on cuda:0, prints throughput from
# metrics.jsonl and the compare table, and leaves charts under $OUT (or /tmp/gpu-out).
# Not yet run on a GPU (written in a session without one): expect to adjust it the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-out}"
IRE=gpu/ire
nvidia-smi --query-gpu=name,memory.total --format=csv || true
for opt in admire adamw; do
  "$IRE" train --config "configs/tiny-$opt.toml" --no-progress \
    --set 'run.devices=["cuda:0"]' --set "run.dir=\"$OUT/tiny-$opt\"" \
    --set schedule.total=60 --set schedule.warmup=10 --set eval.interval=20 --set checkpoint.interval=0
  python3 - "$OUT/tiny-$opt/metrics.jsonl" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
tps = [r["tokens_per_s"] for r in rows[5:]]
print(f"{sys.argv[1]}: median {statistics.median(tps):.0f} tok/s, final loss {rows[-1]['loss']:.4f}")
PY
done
"$IRE" compare "$OUT/tiny-adamw" "$OUT/tiny-admire" --out "$OUT/compare"
