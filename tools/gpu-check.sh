#!/usr/bin/env bash
# The one prepared device check: run it the first time a task is lent a GPU machine (no Rust
# toolchain, no network there; python3 with torch and transformers), and in CI on a CPU build
# (IRE_GPU_CHECK_DEVICE=cpu, tiny shapes) so that it cannot rot. Prints JSON lines (also kept in
# $OUT/gpu-check.jsonl) and a short table. Each part has its own time limit and the whole a
# budget (7.5 minutes on a GPU), so one slow or broken part cannot eat the device time of the rest.
#
# On the GPU machine (build here first, then carry the stripped binary and the prepared data):
#
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p ire-cli --features cuda
#   mkdir -p gpu && cp target/release/ire gpu/ire && strip gpu/ire
#   ire prepare --config configs/tiny-adamw.toml          # data/embedded-bpe8192
#   (device tool) run: bash tools/gpu-check.sh   with carry ["gpu", "data/embedded-bpe8192"]
#
# What it measures:
#   curve   the tiny AdamW and AdmIRE configs, STEPS steps on the device, against the CPU curves of
#           the same seed in tools/gpu-check-reference.jsonl (written by `--write-reference` on a
#           CPU build); largest |Δ loss| per optimizer
#   tau     AdmIRE's exact threshold (k-th smallest of 10M values) on the device vs a host sort
#   allreduce  `ire bench allreduce`: known values summed by NCCL in place on the device (1, 64 and
#           256 MiB buckets), exact against the host sum, with the bandwidth; one process, and two
#           under torchrun when nvidia-smi lists 2+ GPUs. First the NCCL library: cudarc opens
#           libnccl.so, never libnccl.so.2 (all that libnccl2 and the pip wheel install), so a
#           lone libnccl.so.2 is linked as libnccl.so in a temporary folder put on LD_LIBRARY_PATH
#   step    `ire bench step` (AdmIRE and AdamW stepped alternately, K = 10: tokens/s, MFU, the
#           AdmIRE/AdamW step-time ratio) and tools/bench_torch_train.py (transformers Llama, SDPA,
#           fused AdamW, eager) on the 60m- and 229m-shaped models at the paper's micro-batches,
#           f32 and bf16; peak GPU memory of each (nvidia-smi for ire, torch's allocator for torch)
#
# Environment: IRE_GPU_CHECK_DEVICE (cuda:0; "cpu" for the CPU mode), IRE (gpu/ire, else
# target/release/ire), OUT (/tmp/gpu-out), GPU_CHECK_DATA (data/embedded-bpe8192), STEPS (60 on a
# GPU, 4 on the CPU), PYTHON (python3), GPU_CHECK_LIMIT (seconds per part: 90 on a GPU, 300 on the
# CPU), GPU_CHECK_BUDGET (seconds for everything: 450 on a GPU; parts past it are reported skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${IRE_GPU_CHECK_DEVICE:-cuda:0}"
IRE="${IRE:-$([[ -x gpu/ire ]] && echo gpu/ire || echo target/release/ire)}"
OUT="${OUT:-/tmp/gpu-out}"
DATA="${GPU_CHECK_DATA:-data/embedded-bpe8192}"
PY="${PYTHON:-python3}"
REFERENCE=tools/gpu-check-reference.jsonl
mkdir -p "$OUT"
LOG="$OUT/gpu-check.jsonl"
: >"$LOG"
if [[ $DEVICE == cpu ]]; then
    STEPS="${STEPS:-4}"
    LIMIT="${GPU_CHECK_LIMIT:-300}"
    BUDGET="${GPU_CHECK_BUDGET:-3600}"
    TAU_VALUES=200000
    ALLREDUCE_MIB=1,4
    # shape name, ire preset args, torch shape args, micro-batch, seq, timed steps
    SHAPES=("tiny|--preset tiny --vocab 512|--hidden 256 --intermediate 688 --layers 4 --heads 4 --vocab 512 --untied|2|64|2")
    TORCH_DEVICE=cpu
else
    STEPS="${STEPS:-60}"
    LIMIT="${GPU_CHECK_LIMIT:-90}"
    BUDGET="${GPU_CHECK_BUDGET:-450}"
    TAU_VALUES=10000000
    ALLREDUCE_MIB=1,64,256
    SHAPES=(
        "60m|--preset 60m|--hidden 512 --intermediate 1376 --layers 8 --heads 8 --vocab 50304 --untied|40|150|10"
        "229m|--preset 229m|--hidden 768 --intermediate 3072 --layers 16 --heads 12 --vocab 50304 --untied|16|1024|6"
    )
    TORCH_DEVICE=cuda
fi

emit() { echo "$1" | tee -a "$LOG"; }
# The time limit of the next part: LIMIT, cut to what is left of BUDGET (seconds for the whole
# script); fails when less than 15 s are left (the part is then reported as skipped).
START=$SECONDS
part_limit() {
    local left=$((BUDGET - (SECONDS - START)))
    ((left >= 15)) || return 1
    echo $((left < LIMIT ? left : LIMIT))
}
# A JSON line {"check": $1, "error": ...} for a part that failed or ran out of time.
failed() { emit "$(python3 -c 'import json,sys; print(json.dumps({"check": sys.argv[1], **json.loads(sys.argv[2]), "error": sys.argv[3][-400:]}))' "$1" "$2" "$3")"; }

# Peak GPU memory (MiB) while a command runs, from nvidia-smi every 200 ms; "null" without it.
with_peak_memory() {
    local peak_file="$OUT/peak.txt" sampler=""
    : >"$peak_file"
    if command -v nvidia-smi >/dev/null && [[ $DEVICE != cpu ]]; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$peak_file" &
        sampler=$!
    fi
    local status=0
    "$@" || status=$?
    if [[ -n $sampler ]]; then kill "$sampler" 2>/dev/null || true; fi
    PEAK=$(sort -n "$peak_file" | tail -1)
    PEAK=${PEAK:-null}
    return $status
}

echo "== device $DEVICE, binary $IRE" >&2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >&2 || true

# --- curve: tiny AdamW and AdmIRE on the device vs the CPU reference --------------------------
"$IRE" prepare --config configs/tiny-adamw.toml --set "data.prepared_dir=\"$DATA\"" >"$OUT/prepare.log" 2>&1 ||
    { echo "ire prepare failed: $OUT/prepare.log" >&2; exit 1; }
for opt in adamw admire; do
    dir="$OUT/curve-$opt"
    rm -rf "$dir"
    args=(train --config "configs/tiny-$opt.toml" --no-progress --stop-at "$STEPS"
        --set "run.devices=[\"$DEVICE\"]" --set "run.dir=\"$dir\"" --set "data.prepared_dir=\"$DATA\""
        --set schedule.total=60 --set schedule.warmup=10 --set eval.interval=0 --set checkpoint.interval=0)
    if ! limit=$(part_limit); then
        failed curve "{\"optim\": \"$opt\"}" "skipped: the check's time budget is spent"
        continue
    fi
    if ! timeout "$limit" "$IRE" "${args[@]}" >"$dir.log" 2>&1; then
        failed curve "{\"optim\": \"$opt\"}" "$(tail -3 "$dir.log")"
        continue
    fi
    if [[ ${1:-} == --write-reference ]]; then
        grep '"split":"train"' "$dir/metrics.jsonl" | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    print(json.dumps({"optim": sys.argv[1], "step": r["step"], "loss": r["loss"]}))' "$opt" >>"$OUT/reference.jsonl"
    fi
    emit "$(python3 - "$dir/metrics.jsonl" "$REFERENCE" "$opt" "$DEVICE" <<'PY'
import json, os, sys
metrics, reference, opt, device = sys.argv[1:]
run = {r["step"]: r for r in map(json.loads, open(metrics)) if r["split"] == "train"}
lines = open(reference) if os.path.exists(reference) else []  # absent while it is first written
ref = {r["step"]: r["loss"] for r in map(json.loads, lines) if r["optim"] == opt}
steps = sorted(s for s in run if s in ref)
diff = max((abs(run[s]["loss"] - ref[s]) for s in steps), default=None)
tps = sorted(r["tokens_per_s"] for r in run.values())
# The CPU must reproduce the CPU reference (same kernels); a GPU differs by TF32 matmuls and
# reduction order, which over 60 steps of lr 2e-3 should stay within a few hundredths.
tol = 1e-3 if device == "cpu" else 5e-2
print(json.dumps({"check": "curve", "optim": opt, "device": device, "steps": len(steps),
                  "max_abs_diff": diff, "tolerance": tol,
                  "ok": diff is not None and diff <= tol,
                  "final_loss": run[max(run)]["loss"], "reference_final": ref.get(max(run)),
                  "tokens_per_s_median": tps[len(tps) // 2]}))
PY
)"
done
if [[ ${1:-} == --write-reference ]]; then
    mv "$OUT/reference.jsonl" "$REFERENCE"
    echo "wrote $REFERENCE" >&2
fi

# --- tau: the exact threshold on the device vs a host sort --------------------------------------
if ! limit=$(part_limit); then
    failed tau '{}' "skipped: the check's time budget is spent"
elif line=$(timeout "$limit" "$IRE" bench tau --values "$TAU_VALUES" --device "$DEVICE" 2>"$OUT/tau.log"); then
    emit "$(python3 -c 'import json,sys; print(json.dumps({"check": "tau", **json.loads(sys.argv[1])}))' "$line")"
else
    failed tau '{}' "$(tail -3 "$OUT/tau.log")"
fi

# --- allreduce: NCCL in place on the device, one process and two --------------------------------
# Where libnccl.so is (cudarc's name), else the first libnccl.so.2 on LD_LIBRARY_PATH, in ldconfig's
# cache or in the pip wheel (nvidia/nccl/lib), linked as libnccl.so in a folder put first on
# LD_LIBRARY_PATH (exported: run it in this shell, not in $(...)). Sets NCCL_LINE (a JSON line);
# returns 1 when there is no NCCL at all.
nccl_library() {
    local dirs=() d so2="" wheel
    IFS=':' read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}"; do
        [[ -n $d ]] || continue
        if [[ -e $d/libnccl.so ]]; then
            NCCL_LINE="{\"check\": \"nccl_lib\", \"found\": \"$d/libnccl.so\"}"
            return 0
        fi
        [[ -z $so2 && -e $d/libnccl.so.2 ]] && so2="$d/libnccl.so.2"
    done
    d=$(ldconfig -p 2>/dev/null | awk '$1 == "libnccl.so" {print $NF; exit}' || true)
    if [[ -n $d ]]; then
        NCCL_LINE="{\"check\": \"nccl_lib\", \"found\": \"$d\"}"
        return 0
    fi
    [[ -n $so2 ]] || so2=$(ldconfig -p 2>/dev/null | awk '$1 == "libnccl.so.2" {print $NF; exit}' || true)
    if [[ -z $so2 ]]; then
        wheel=$("$PY" -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null || true)
        [[ -n $wheel && -e $wheel/lib/libnccl.so.2 ]] && so2="$wheel/lib/libnccl.so.2"
    fi
    if [[ -z $so2 ]]; then
        NCCL_LINE='{"check": "nccl_lib", "found": null, "error": "no libnccl.so or libnccl.so.2 (LD_LIBRARY_PATH, ldconfig, pip nvidia-nccl)"}'
        return 1
    fi
    local link_dir
    link_dir=$(mktemp -d)
    ln -sf "$so2" "$link_dir/libnccl.so"
    export LD_LIBRARY_PATH="$link_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "only $so2: linked it as $link_dir/libnccl.so, first on LD_LIBRARY_PATH" >&2
    NCCL_LINE="{\"check\": \"nccl_lib\", \"found\": \"$so2\", \"linked\": \"$link_dir/libnccl.so\"}"
}
# `ire bench allreduce` in $1 processes (1: plainly; 2: torchrun, one GPU each): rank 0's JSON
# line (kept also when the sums were wrong: its "ok" is false then).
allreduce() {
    local procs=$1 limit line status=0 log="$OUT/allreduce-$1.log"
    if ! limit=$(part_limit); then
        failed allreduce "{\"processes\": $procs}" "skipped: the check's time budget is spent"
        return
    fi
    local cmd=("$IRE" bench allreduce --sizes-mib "$ALLREDUCE_MIB" --reps 5)
    if [[ $procs == 1 ]]; then
        cmd+=(--device "$DEVICE")
    else
        cmd=("$PY" -m torch.distributed.run --nproc-per-node "$procs" --no-python "${cmd[@]}")
    fi
    line=$(timeout "$limit" "${cmd[@]}" 2>"$log" | grep '^{' | tail -1) || status=$?
    if [[ -n $line ]] && { ((status == 0)) || [[ $line == *'"ok":false'* ]]; }; then
        emit "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(processes=int(sys.argv[2])); print(json.dumps(d))' "$line" "$procs")"
    else
        failed allreduce "{\"processes\": $procs}" "exit status $status: $(tail -3 "$log")"
    fi
}
if [[ $DEVICE != cpu ]]; then
    NCCL_LINE=""
    if nccl_library; then
        emit "$NCCL_LINE"
        allreduce 1
        gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
        if ((${gpus:-0} >= 2)) && "$PY" -c 'import torch.distributed.run' 2>/dev/null; then
            allreduce 2
        else
            emit "{\"check\": \"allreduce\", \"processes\": 2, \"skipped\": \"${gpus:-0} GPU(s) or no torchrun: NCCL needs one GPU per rank\"}"
        fi
    else
        emit "$NCCL_LINE"
    fi
else
    allreduce 1 # the in-process engine of the CPU build: the check itself cannot rot
fi

# --- step: ire and PyTorch throughput on the paper's shapes --------------------------------------
torch_ok=$("$PY" -c 'import torch, transformers; print(1)' 2>/dev/null || echo 0)
for spec in "${SHAPES[@]}"; do
    IFS='|' read -r shape ire_shape torch_shape micro seq steps <<<"$spec"
    for precision in f32 bf16; do
        meta="{\"shape\": \"$shape\", \"precision\": \"$precision\"}"
        if ! limit=$(part_limit); then
            failed step "$meta" "skipped: the check's time budget is spent"
            continue
        fi
        # shellcheck disable=SC2086  # the shape arguments are words
        if with_peak_memory timeout "$limit" "$IRE" bench step $ire_shape --batch "$micro" --seq "$seq" \
            --steps "$steps" --warmup 2 --optim both --precision "$precision" --device "$DEVICE" \
            >"$OUT/step.json" 2>"$OUT/step-$shape-$precision.log"; then
            emit "$(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read()); d.update(check="step", shape=sys.argv[2], peak_gpu_mib=json.loads(sys.argv[3])); print(json.dumps(d))' \
                "$OUT/step.json" "$shape" "$PEAK")"
        else
            failed step "$meta" "$(tail -3 "$OUT/step-$shape-$precision.log")"
        fi
        if [[ $torch_ok != 1 ]]; then
            emit "{\"check\": \"step\", \"impl\": \"torch\", \"shape\": \"$shape\", \"precision\": \"$precision\", \"skipped\": \"torch or transformers not importable by $PY\"}"
            continue
        fi
        fused=(); [[ $TORCH_DEVICE == cuda ]] && fused=(--fused)
        if ! limit=$(part_limit); then
            failed step "{\"impl\": \"torch\", \"shape\": \"$shape\", \"precision\": \"$precision\"}" \
                "skipped: the check's time budget is spent"
            continue
        fi
        # shellcheck disable=SC2086
        if line=$(timeout "$limit" "$PY" tools/bench_torch_train.py $torch_shape --batch "$micro" --seq "$seq" \
            --steps "$steps" --warmup 2 --device "$TORCH_DEVICE" --dtype "$precision" "${fused[@]}" \
            2>"$OUT/torch-$shape-$precision.log" | tail -1); [[ -n $line ]]; then
            emit "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(check="step", shape=sys.argv[2]); print(json.dumps(d))' "$line" "$shape")"
        else
            failed step "{\"impl\": \"torch\", \"shape\": \"$shape\", \"precision\": \"$precision\"}" \
                "$(tail -3 "$OUT/torch-$shape-$precision.log")"
        fi
    done
done

# --- the table ----------------------------------------------------------------------------------
python3 - "$LOG" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
for r in rows:
    if r["check"] == "curve":
        if "error" in r:
            print(f"curve {r.get('optim')}: ERROR {r['error']}")
        elif r["max_abs_diff"] is None:
            print(f"curve {r['optim']}: no reference steps to compare with")
        else:
            print(f"curve {r['optim']}: max |Δloss| {r['max_abs_diff']:.2e} over {r['steps']} steps "
                  f"(tolerance {r['tolerance']:g}) {'OK' if r['ok'] else 'FAIL'}")
    elif r["check"] == "tau":
        print("tau: " + (f"device {r['tau_device']:.9g} vs host {r['tau_host']:.9g} "
              f"{'exact' if r['exact'] else 'DIFFERENT'} ({r['values']} values, {r['device_s']:.3f} s)"
              if "error" not in r else f"ERROR {r['error']}"))
    elif r["check"] == "nccl_lib":
        print(f"nccl library: {r.get('found')}" + (f" (linked as {r['linked']})" if r.get("linked") else "")
              + (f" ERROR {r['error']}" if "error" in r else ""))
    elif r["check"] == "allreduce":
        head = f"allreduce{' ' + r['engine'] if 'engine' in r else ''} x{r.get('processes')}:"
        if "skipped" in r or "error" in r:
            print(f"{head} {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR ' + r['error']}")
        else:
            sizes = ", ".join(f"{s['bytes'] >> 20} MiB {s['algbw_gb_s']:.1f} GB/s" if s.get("algbw_gb_s") is not None
                              else f"{s['bytes'] >> 20} MiB" for s in r["sizes"])
            print(f"{head} {sizes} (algorithmic bandwidth) {'exact' if r['ok'] else 'WRONG SUMS'}")
print(f"\n{'shape':<6} {'prec':<5} {'ire tok/s':>10} {'torch tok/s':>12} {'ire/torch':>9} {'ire MFU':>8} "
      f"{'AdmIRE/AdamW':>13} {'ire GiB':>8} {'torch GiB':>9}")
steps = [r for r in rows if r["check"] == "step"]
for key in dict.fromkeys((r["shape"], r["precision"]) for r in steps):
    ire = next((r for r in steps if (r["shape"], r["precision"]) == key and r.get("impl") == "ire"), {})
    torch = next((r for r in steps if (r["shape"], r["precision"]) == key and r.get("impl") == "torch"), {})
    f = lambda v, fmt: format(v, fmt) if isinstance(v, (int, float)) else "-"
    ratio = ire.get("tokens_per_s", 0) / torch["tokens_per_s"] if torch.get("tokens_per_s") else None
    mib = ire.get("peak_gpu_mib")
    print(f"{key[0]:<6} {key[1]:<5} {f(ire.get('tokens_per_s'), '10.0f'):>10} {f(torch.get('tokens_per_s'), '12.0f'):>12} "
          f"{f(ratio, '9.2f'):>9} {f(ire.get('mfu'), '8.3f'):>8} {f(ire.get('admire_over_adamw'), '13.2f'):>13} "
          f"{f(mib / 1024 if mib else None, '8.1f'):>8} {f(torch.get('peak_gpu_gb'), '9.1f'):>9}")
bad = [r for r in rows if "error" in r or r.get("ok") is False or r.get("exact") is False]
print(f"\n{len(bad)} problem(s)" if bad else "\nall checks passed")
sys.exit(1 if bad else 0)
PY
