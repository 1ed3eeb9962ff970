#!/usr/bin/env python3
"""Generate reference vectors for the base optimizers SGD, Lion and Muon for the ire-optim tests.

Purpose
    Writes ``crates/ire-optim/tests/data/base_torch.json``: for fixed, seeded gradient
    sequences, the float32 parameters after every step of

    - ``torch.optim.SGD`` (momentum, dampening, Nesterov, L2 weight decay added to the gradient);
    - ``lion_pytorch.Lion`` (decoupled-by-lr weight decay ``θ *= 1 − lr·wd``, sign update);
    - ``torch.optim.Muon`` (momentum by lerp, Nesterov, Newton–Schulz orthogonalisation in
      **bfloat16** as torch runs it, decoupled weight decay, lr adjustment), and the same Muon
      step with the Newton–Schulz iteration run in **float32** (``muon_f32`` cases): torch's
      bf16 result can only be matched within a bf16 tolerance, the f32 formula within f32's.

    The Rust tests replay the same gradients and learning rates and compare. The JSON is
    committed, so the tests never need torch. Not run in CI; regenerate by hand (only if the
    cases change), in a venv with torch and lion-pytorch:

        python tools/make_base_vectors.py            # writes the default path
        python tools/make_base_vectors.py --out x.json

Format::

    {"generator", "torch", "lion_pytorch",
     "cases": [{"optimizer": "sgd" | "lion" | "muon" | "muon_f32", "name", "hp": {...},
                "lrs", "shape", "param0", "grads": [[flat], ...], "params": [[flat], ...]}]}

All numbers are float32-exact (parse as f32). ``hp`` holds the optimizer's own arguments
(torch's names).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "crates", "ire-optim", "tests", "data", "base_torch.json",
)


def flat_f32(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def replay(opt_factory, shape, lrs, param0, grads):
    """The parameters after each step of a fresh optimizer fed `grads` at `lrs`."""
    p = torch.nn.Parameter(torch.tensor(np.asarray(param0, dtype=np.float32).reshape(shape)))
    opt = opt_factory([p])
    params = []
    for lr, g in zip(lrs, grads):
        p.grad = torch.tensor(np.asarray(g, dtype=np.float32).reshape(shape))
        opt.param_groups[0]["lr"] = lr
        opt.step()
        params.append(flat_f32(p.detach().numpy()))
    return params


def case(optimizer, name, hp, shape, lrs, param0, grads, params):
    return {
        "optimizer": optimizer,
        "name": name,
        "hp": hp,
        "lrs": [float(np.float32(x)) for x in lrs],
        "shape": list(shape),
        "param0": flat_f32(param0),
        "grads": [flat_f32(g) for g in grads],
        "params": params,
    }


def sequence(rng, shape, n, zero_every=0):
    """Gradients with a drifting mean plus noise; every `zero_every`-th entry of row 0 zero."""
    base = rng.normal(0.0, 0.5, size=shape)
    grads = []
    for t in range(n):
        g = (base * (1.0 + 0.1 * t) + rng.normal(0.0, 0.3 * (1 + t % 3), size=shape)).astype(np.float32)
        if zero_every:
            g.reshape(-1)[::zero_every] = 0.0
        grads.append(g)
    return grads


def sgd_cases(rng):
    out = []
    shape, n = (4, 6), 12
    lrs = [np.float32(0.05 * (1 - t / (2 * n))) for t in range(n)]
    for name, hp in [
        ("momentum", dict(momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=False)),
        ("nesterov", dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True)),
        ("dampening", dict(momentum=0.5, dampening=0.1, weight_decay=1e-3, nesterov=False)),
        ("plain", dict(momentum=0.0, dampening=0.0, weight_decay=0.1, nesterov=False)),
    ]:
        param0 = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        grads = sequence(rng, shape, n, zero_every=5)
        params = replay(lambda ps: torch.optim.SGD(ps, lr=lrs[0], foreach=False, **hp),
                        shape, lrs, param0, grads)
        out.append(case("sgd", name, hp, shape, lrs, param0, grads, params))
    return out


def lion_cases(rng):
    from lion_pytorch import Lion
    out = []
    shape, n = (5, 4), 12
    lrs = [np.float32(3e-3 * min(1.0, (t + 1) / 3)) for t in range(n)]
    for name, hp in [
        ("paper", dict(betas=(0.9, 0.99), weight_decay=0.1)),
        ("no_decay", dict(betas=(0.95, 0.98), weight_decay=0.0)),
    ]:
        param0 = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        grads = sequence(rng, shape, n, zero_every=7)  # sign(0) = 0: zero entries stay
        params = replay(lambda ps: Lion(ps, lr=lrs[0], use_triton=False, **hp),
                        shape, lrs, param0, grads)
        hp = dict(hp, betas=list(hp["betas"]))
        out.append(case("lion", name, hp, shape, lrs, param0, grads, params))
    return out


def newton_schulz_f32(g, steps, coefficients, eps):
    """torch.optim.Muon's `_zeropower_via_newtonschulz` with float32 in place of bfloat16."""
    a, b, c = coefficients
    x = g.to(torch.float32)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    x = x.div(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        gram_update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, gram_update, x, beta=a)
    if transposed:
        x = x.T
    return x


def muon_f32_replay(shape, lrs, param0, grads, hp):
    """Muon's step exactly as torch.optim.Muon writes it, Newton–Schulz in float32."""
    p = torch.tensor(np.asarray(param0, dtype=np.float32).reshape(shape))
    buf = torch.zeros_like(p)
    rows, cols = shape
    params = []
    for lr, g in zip(lrs, grads):
        g = torch.tensor(np.asarray(g, dtype=np.float32).reshape(shape))
        buf.lerp_(g, 1 - hp["momentum"])
        update = g.lerp(buf, hp["momentum"]) if hp["nesterov"] else buf
        update = newton_schulz_f32(update, hp["ns_steps"], hp["ns_coefficients"], hp["eps"])
        if hp["adjust_lr_fn"] in (None, "original"):
            adjusted = lr * max(1.0, rows / cols) ** 0.5
        else:  # "match_rms_adamw"
            adjusted = lr * 0.2 * max(rows, cols) ** 0.5
        p.mul_(1 - lr * hp["weight_decay"])
        p.add_(update, alpha=-adjusted)
        params.append(flat_f32(p.numpy()))
    return params


def muon_cases(rng):
    out = []
    n = 10
    lrs = [np.float32(0.02 * (1 - t / (2 * n))) for t in range(n)]
    for name, shape, adjust in [
        ("wide", (6, 16), None),
        ("tall", (16, 6), None),
        ("tall_match_rms_adamw", (16, 6), "match_rms_adamw"),
    ]:
        hp = dict(weight_decay=0.1, momentum=0.95, nesterov=True,
                  ns_coefficients=[3.4445, -4.775, 2.0315], eps=1e-7, ns_steps=5,
                  adjust_lr_fn=adjust)
        param0 = rng.normal(0.0, 0.5, size=shape).astype(np.float32)
        grads = sequence(rng, shape, n)
        torch_hp = dict(hp, ns_coefficients=tuple(hp["ns_coefficients"]))
        params = replay(lambda ps: torch.optim.Muon(ps, lr=lrs[0], **torch_hp),
                        shape, lrs, param0, grads)
        out.append(case("muon", name, hp, shape, lrs, param0, grads, params))
        params32 = muon_f32_replay(shape, lrs, param0, grads, hp)
        out.append(case("muon_f32", name, hp, shape, lrs, param0, grads, params32))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(20261208)
    cases = sgd_cases(rng) + lion_cases(rng) + muon_cases(rng)
    import lion_pytorch
    doc = {
        "generator": "tools/make_base_vectors.py",
        "torch": torch.__version__,
        "lion_pytorch": getattr(lion_pytorch, "__version__", "0.2.5"),
        "cases": cases,
    }
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases, torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
