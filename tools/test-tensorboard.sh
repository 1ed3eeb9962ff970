#!/usr/bin/env bash
# The TensorBoard check: a short `ire train` killed while writing a checkpoint, then resumed, and
# its event files (RUN/tb/) read back with the `tensorboard` Python package's own reader
# (tools/check_tensorboard.py): every metrics.jsonl value once at its step, including the steps
# the resumed start logged again. Installs tensorboard into a venv outside the clone
# ($IRE_TB_VENV, default ~/.cache/ire/venv-tensorboard) when missing.
#
#   tools/test-tensorboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ire/target}"
venv="${IRE_TB_VENV:-$HOME/.cache/ire/venv-tensorboard}"
if ! "$venv/bin/python" -c "import tensorboard" 2>/dev/null; then
    echo "== installing tensorboard into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "tensorboard==2.21.0"
fi
echo "   tensorboard $("$venv/bin/python" -c 'import tensorboard; print(tensorboard.__version__)')"

echo "== cargo build -p ire-cli"
cargo build -q -p ire-cli
ire="$CARGO_TARGET_DIR/debug/ire"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
train=(train --config "$repo/configs/tiny-admire.toml" --no-progress
    --set model.hidden_size=64 --set model.intermediate_size=128 --set model.num_hidden_layers=2
    --set batch.seq_len=32 --set schedule.total=16 --set schedule.warmup=2
    --set checkpoint.interval=4 --set eval.interval=4 --set eval.windows=4 --set optim.ire.interval=2
    --set run.dir=run)
echo "== ire train, killed while writing step 12's checkpoint (steps 9-12 logged, then resumed from 8)"
if IRE_FAULT=0:12:kill HF_HUB_OFFLINE=1 "$ire" "${train[@]}" >train1.log 2>&1; then
    cat train1.log; echo "test-tensorboard: the killed run exited 0" >&2; exit 1
fi
echo "== ire train --resume run"
HF_HUB_OFFLINE=1 "$ire" train --resume run --no-progress >train2.log 2>&1 || { cat train2.log; exit 1; }
[[ $(ls run/tb | wc -l) == 2 ]] || { ls -l run/tb; echo "test-tensorboard: expected 2 event files (two starts)" >&2; exit 1; }
"$venv/bin/python" "$repo/tools/check_tensorboard.py" run
