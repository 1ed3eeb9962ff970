"""Reads a run's TensorBoard event files (RUN/tb/) with TensorBoard's own reader and checks them
against the run's metrics.jsonl: every train and val line is in TensorBoard once, at its step,
with its value (as float32), a refresh's `mask` diagnostics as `mask/tau`, `mask/overlap`,
`mask/flat/<group>` and `mask/layer/<i>`, and nothing else is -- in particular no point an interrupted start
logged after its last checkpoint (the resumed start's SessionLog START purges those).

    python tools/check_tensorboard.py RUN_DIR      # exit 0 and one summary line, or the mismatch
"""
import json
import math
import struct
import sys
from pathlib import Path

from tensorboard.backend.event_processing import event_accumulator

FIELDS = ["loss", "lr", "grad_norm", "tokens_per_s", "mfu", "mask_fraction", "kappa_t"]


def as_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def expected(run):
    want = {}
    for text in (run / "metrics.jsonl").read_text().splitlines():
        line = json.loads(text)
        for field in FIELDS:
            value = line.get(field)
            if value is None:
                continue
            if isinstance(value, str):  # metrics.jsonl writes non-finite losses as text
                value = float(value)
            want.setdefault(f"{line['split']}/{field}", []).append((line["step"], as_f32(value)))
        for tag, value in mask_tags(line.get("mask")):
            want.setdefault(tag, []).append((line["step"], as_f32(value)))
    return want


def mask_tags(mask):
    """The TensorBoard tags of a refresh's mask diagnostics (crates/ire-train/src/report.rs)."""
    if not mask:
        return []
    tags = [("mask/tau", mask["tau"])]
    if mask.get("overlap") is not None:
        tags.append(("mask/overlap", mask["overlap"]))
    tags += [(f"mask/flat/{group}", f) for group, f in sorted(mask["flat"].items())]
    tags += [(f"mask/layer/{i}", f) for i, f in enumerate(mask["layers"])]
    return tags


def read(run):
    acc = event_accumulator.EventAccumulator(
        str(run / "tb"), size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=True
    )
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def main():
    run = Path(sys.argv[1])
    want, got = expected(run), read(run)
    errors = []
    for tag in sorted(set(want) | set(got)):
        w, g = want.get(tag, []), got.get(tag, [])
        if [s for s, _ in w] != [s for s, _ in g]:
            errors.append(f"{tag}: steps {[s for s, _ in g]} in TensorBoard, {[s for s, _ in w]} in metrics.jsonl")
        elif not all(same(a, b) for (_, a), (_, b) in zip(w, g)):
            bad = next((s, a, b) for (s, a), (_, b) in zip(w, g) if not same(a, b))
            errors.append(f"{tag}: at step {bad[0]} TensorBoard has {bad[2]}, metrics.jsonl {bad[1]}")
    files = sorted((run / "tb").glob("events.out.tfevents.*"))
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    points = sum(len(v) for v in got.values())
    print(f"tensorboard: {len(got)} tags, {points} points in {len(files)} event files equal metrics.jsonl")


if __name__ == "__main__":
    main()
