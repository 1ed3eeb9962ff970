#!/usr/bin/env bash
# Training throughput of ire vs PyTorch on the same shapes, measured in the same invocation
# (not CI). Prints a table and writes every measurement as JSON lines.
#
#   tools/bench-train.sh [SHAPE ...]          SHAPE: tiny (default) and/or 60m
#
# Per shape and round (ROUNDS, default 3) it runs, back to back: ire with AdamW (with the
# per-op profile in round 1), PyTorch (tools/bench_torch_train.py: transformers
# LlamaForCausalLM, SDPA, torch.optim.AdamW), then ire's AdamW and AdmIRE runs of the same
# model stepped alternately in one process (`--optim both`: K = 10, GNB pass and mask refresh
# included, mean step times over a multiple of 10 steps, so both see the same load). Each ratio
# is taken within a round and the table reports the median over rounds.
#
# Shapes: tiny = d256 L4 h4 ff688 V8192; 60m = d512 L8 h8 ff1376 V32000 ("60m-shaped" of the
# performance issue; the `60m` preset itself has V50304); both seq 256 x batch 8, untied, fp32.
# Needs .venv with torch and transformers (docs/performance.md). Env: THREADS (2), ROUNDS (3),
# PYTHON (.venv/bin/python), OUT (target/bench/bench-train.jsonl), BASELINE (optional: another
# build's bench_train binary, e.g. of the commit before a refactor; each round then also runs
# its AdamW step right after ire's, and the table adds ire/baseline and baseline/PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
PY="${PYTHON:-.venv/bin/python}"
OUT="${OUT:-target/bench/bench-train.jsonl}"
SHAPES=("$@")
[ ${#SHAPES[@]} -gt 0 ] || SHAPES=(tiny)
mkdir -p "$(dirname "$OUT")"
: > "$OUT"

cargo build --release -q -p ire-train --example bench_train
BENCH="${CARGO_TARGET_DIR:-target}/release/examples/bench_train"

for shape in "${SHAPES[@]}"; do
  case "$shape" in
    tiny) ire_shape=(--preset tiny); torch_shape=(--hidden 256 --intermediate 688 --layers 4 --heads 4 --vocab 8192)
          steps=20 ;;
    60m)  ire_shape=(--preset 60m --vocab 32000); torch_shape=(--hidden 512 --intermediate 1376 --layers 8 --heads 8 --vocab 32000)
          steps=10 ;;
    *) echo "unknown shape $shape (tiny, 60m)" >&2; exit 2 ;;
  esac
  for round in $(seq 1 "$ROUNDS"); do
    profile=(); [ "$round" = 1 ] && profile=(--profile)
    tag() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(shape=sys.argv[2], round=int(sys.argv[3])); print(json.dumps(d))' "$1" "$shape" "$round"; }
    echo "== $shape round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    line=$(RAYON_NUM_THREADS=$THREADS "$BENCH" "${ire_shape[@]}" --seq 256 --batch 8 --steps "$steps" --optim adamw "${profile[@]}")
    tag "$line" >> "$OUT"
    if [ -n "${BASELINE:-}" ]; then
      line=$(RAYON_NUM_THREADS=$THREADS "$BASELINE" "${ire_shape[@]}" --seq 256 --batch 8 --steps "$steps" --optim adamw "${profile[@]}")
      tag "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["impl"]="baseline"; print(json.dumps(d))' "$line")" >> "$OUT"
    fi
    line=$(OMP_NUM_THREADS=$THREADS "$PY" tools/bench_torch_train.py --untied --threads "$THREADS" \
      --steps "$steps" "${torch_shape[@]}" --seq 256 --batch 8 | tail -n 1)
    tag "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["impl"]="torch"; print(json.dumps(d))' "$line")" >> "$OUT"
    line=$(RAYON_NUM_THREADS=$THREADS "$BENCH" "${ire_shape[@]}" --seq 256 --batch 8 --steps "$steps" --optim both)
    tag "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["optim"]="both"; print(json.dumps(d))' "$line")" >> "$OUT"
  done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = statistics.median
print(f"\n{'shape':<6} {'ire AdamW tok/s':>16} {'torch tok/s':>12} {'ire/torch':>10} {'RSS ire':>8} {'RSS torch':>9} {'AdmIRE/AdamW':>13}")
for shape in dict.fromkeys(r["shape"] for r in rows):
    by = lambda impl, optim=None: {r["round"]: r for r in rows if r["shape"] == shape
                                    and r["impl"].startswith(impl) and (optim is None or r.get("optim") == optim)}
    ire, torch, both = by("ire", "adamw"), by("torch"), by("ire", "both")
    rounds = sorted(set(ire) & set(torch) & set(both))
    ratio = med([ire[k]["tokens_per_s"] / torch[k]["tokens_per_s"] for k in rounds])
    run_ratio = med([both[k]["admire_over_adamw"] for k in rounds])
    print(f"{shape:<6} {med([ire[k]['tokens_per_s'] for k in rounds]):>16.0f} "
          f"{med([torch[k]['tokens_per_s'] for k in rounds]):>12.0f} {ratio:>9.2f}x "
          f"{max(ire[k]['peak_rss_gb'] for k in rounds):>7.2f}G {max(torch[k]['peak_rss_gb'] for k in rounds):>8.2f}G "
          f"{run_ratio:>12.3f}x")
    prof = next((r for r in rows if r["shape"] == shape and "ms_per_step" in r), None)
    if prof:
        print(f"  where ire's AdamW step goes (ms per step, round 1, step {prof['step_ms_mean']:.0f} ms):")
        for k, v in prof["ms_per_step"].items():
            print(f"    {k:<42} {v:>9.1f}")
    base = by("baseline", "adamw")
    if base and set(base) >= set(rounds):
        per = [ire[k]["tokens_per_s"] / base[k]["tokens_per_s"] for k in rounds]
        old = med([base[k]["tokens_per_s"] / torch[k]["tokens_per_s"] for k in rounds])
        print(f"  baseline build: {med([base[k]['tokens_per_s'] for k in rounds]):.0f} tok/s, "
              f"baseline/PyTorch {old:.2f}x; ire/baseline {med(per):.3f}x "
              f"(rounds {', '.join(f'{x:.3f}' for x in per)})")
print(f"\n{len(rows)} measurements in {sys.argv[1]}")
PY
