#!/usr/bin/env bash
# Multi-process against in-process data parallelism on this machine: the tiny AdmIRE config at
# the same global batch (2 × micro-batch 4), trained by one process with two devices (threads,
# the local engine) and by `mpirun -n 2` (two processes, the MPI engine), alternating, in the
# same rounds. Prints each run's median step time (steps after the first 5) and the share of the
# gradient all-reduce that rank 0 logs, then the ratio 2-process / in-process per round.
#
#   tools/bench-dist.sh [STEPS=40] [ROUNDS=3]
#
# Needs a release build with MPI: cargo build --release --features mpi (and OpenMPI installed).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40}
rounds=${2:-3}
ire="${CARGO_TARGET_DIR:-target}/release/ire"
[[ -x $ire ]] || { echo "bench-dist: build first: cargo build --release --features mpi" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo=$PWD
cd "$work"
"$ire" prepare --config "$repo/configs/tiny-admire.toml" >/dev/null 2>&1
common=(train --config "$repo/configs/tiny-admire.toml" --no-progress --set "schedule.total=$steps"
    --set batch.micro_batch=4 --set eval.interval=100000 --set checkpoint.interval=0)

# Median seconds per step after the first 5, from metrics.jsonl's cumulative wall_s.
median_step() {
    python3 - "$1" <<'PY'
import json, statistics, sys
w = [json.loads(l)["wall_s"] for l in open(sys.argv[1]) if '"split":"train"' in l]
d = [b - a for a, b in zip(w[5:], w[6:])]
print(f"{statistics.median(d):.4f}")
PY
}
share() { grep -o 'gradient all-reduce ([a-z]*): .*' "$1" | sed 's/\x1b\[[0-9;]*m//g' | tail -1; }

echo "tiny AdmIRE, global batch 8 x 256 tokens, $steps steps, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-22s %-10s %s\n' round run s/step all-reduce
for r in $(seq 1 "$rounds"); do
    "$ire" "${common[@]}" --set "run.dir=local-$r" --set 'run.devices=["cpu", "cpu"]' >"local-$r.log" 2>&1
    mpirun -n 2 --oversubscribe --allow-run-as-root "$ire" "${common[@]}" --set "run.dir=mpi-$r" >"mpi-$r.log" 2>&1
    a=$(median_step "local-$r/metrics.jsonl"); b=$(median_step "mpi-$r/metrics.jsonl")
    printf '%-6s %-22s %-10s %s\n' "$r" "1 process x 2 devices" "$a" "$(share "local-$r.log")"
    printf '%-6s %-22s %-10s %s\n' "$r" "2 processes (mpirun)" "$b" "$(share "mpi-$r.log")"
    python3 -c "print(f'       2-process / in-process: {$b / $a:.3f}')"
done
