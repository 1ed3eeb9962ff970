#!/usr/bin/env bash
# Checks ire against Hugging Face transformers in both directions (by hand, not in CI: torch is
# several GB). Needs target/release/ire and .venv with torch + transformers (docs/hf-compat.md).
#
#  1. ire -> transformers: `ire init` writes untied/tied, MHA/GQA models; transformers loads each
#     with no missing/unexpected keys and must give the same loss on the same tokens (|Δ| < 1e-4).
#  2. transformers -> ire: transformers writes tiny random GQA checkpoints (f32, bf16; both
#     config.json styles); `ire score` must give transformers' loss.
#  3. A trained run exported by `ire export` (if RUN_DIR is given) loads in transformers too, and
#     its tokenizer in AutoTokenizer with eos/bos/pad set to ire's ids
#     (`tools/hf_reference.py tokenizer`, which needs no torch).
#
#   tools/hf-roundtrip.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
IRE="${IRE:-target/release/ire}"
PY="${PYTHON:-.venv/bin/python}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
TOK=5,17,200,2,99,255,0,42,42,7,250,3,128,64,12,1
fail=0
check() { # model dir
  local json
  json=$("$IRE" score --model "$1" --tokens "$TOK")
  if "$PY" tools/hf_reference.py compare --model "$1" --tokens "$TOK" --ire-json "$json" | tail -n 1; then :; else fail=1; fi
}
echo "== ire -> transformers"
"$IRE" init --preset tiny --vocab-size 512 --init hf --seed 1 --out "$TMP/untied" >/dev/null
"$IRE" init --preset tiny --vocab-size 512 --init hf --seed 2 --tied --out "$TMP/tied" >/dev/null
"$IRE" init --preset tiny --vocab-size 512 --init torch --seed 3 --kv-heads 2 --out "$TMP/gqa" >/dev/null
for m in untied tied gqa; do echo "-- $m"; check "$TMP/$m"; done
echo "== transformers -> ire"
"$PY" tools/hf_reference.py make-tiny --out "$TMP/hf_gqa" --kv-heads 2 >/dev/null
"$PY" tools/hf_reference.py make-tiny --out "$TMP/hf_bf16_old" --kv-heads 1 --tied --dtype bfloat16 --old-config >/dev/null
"$PY" tools/hf_reference.py make-tiny --out "$TMP/hf_f16" --kv-heads 4 --dtype float16 >/dev/null
for m in hf_gqa hf_bf16_old hf_f16; do echo "-- $m"; check "$TMP/$m"; done
if [ $# -ge 1 ]; then
  echo "== ire export $1 -> transformers"
  "$IRE" export "$1" --out "$TMP/exported" >/dev/null
  check "$TMP/exported"
  "$PY" tools/hf_reference.py tokenizer --model "$TMP/exported" | tail -n 2 || fail=1
fi
[ $fail = 0 ] && echo "all round trips match" || { echo "MISMATCH"; exit 1; }
