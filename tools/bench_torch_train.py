#!/usr/bin/env python3
"""PyTorch CPU training-throughput baseline for ire's `tiny` Llama shape.

Purpose
    Measures what PyTorch (transformers' LlamaForCausalLM, fp32, SDPA attention,
    torch.optim.AdamW) achieves on this CPU for one full training step
    (forward + backward + optimizer step), so ire's own tokens/s on the same
    shape can be put in context.  Defaults are the ire `tiny` config: hidden 256,
    intermediate 688, 4 layers, 4 heads (kv 4), vocab 8192, ctx 256, tied
    embeddings; batch 8 x seq 256 random tokens; torch.set_num_threads(2).

Not run in CI.  Run by hand with the repo venv (CPU only; CUDA is never used):

    .venv/bin/python tools/bench_torch_train.py                 # tiny shape, 10 timed steps
    .venv/bin/python tools/bench_torch_train.py --steps 20 --threads 2 --batch 8 --seq 256

Output: one JSON line
    {"tokens_per_s": median over timed steps of batch*seq/step_time,
     "peak_rss_gb": ru_maxrss of this process in GiB, "params": unique parameters
     (tied embedding counted once), "torch": version, ...extra fields}
3 warm-up steps are run first and not timed.  Results are noisy if the machine
is busy (e.g. cargo compiling): `loadavg_1m` is recorded for that reason.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU Llama training throughput")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=688)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: = heads")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--untied", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    transformers.logging.set_verbosity_error()

    cfg = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads or a.heads,
        max_position_embeddings=a.seq,
        rms_norm_eps=1e-6,
        tie_word_embeddings=not a.untied,
        use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.train()
    params = sum(p.numel() for p in model.parameters())  # parameters() dedups tied tensors
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    gen = torch.Generator().manual_seed(1)

    def step():
        ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    for _ in range(a.warmup):
        step()
    times = []
    loss = None
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    tokens = a.batch * a.seq
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024)  # KiB -> GiB
    print(json.dumps({
        "tokens_per_s": round(tokens / med, 1),
        "peak_rss_gb": round(rss_gb, 3),
        "params": params,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "step_s_median": round(med, 4),
        "step_s_min": round(min(times), 4),
        "step_s_max": round(max(times), 4),
        "tokens_per_step": tokens,
        "threads": a.threads,
        "steps": a.steps,
        "attn": model.config._attn_implementation,
        "last_loss": round(loss, 4),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "shape": {"hidden": a.hidden, "intermediate": a.intermediate, "layers": a.layers,
                  "heads": a.heads, "kv_heads": a.kv_heads or a.heads, "vocab": a.vocab,
                  "seq": a.seq, "batch": a.batch, "tied": not a.untied},
    }))


if __name__ == "__main__":
    main()
