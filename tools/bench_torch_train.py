#!/usr/bin/env python3
"""PyTorch CPU training-throughput baseline for ire's `tiny` Llama shape.

Purpose
    Measures what PyTorch (transformers' LlamaForCausalLM, fp32, SDPA attention,
    torch.optim.AdamW) achieves on this CPU for one full training step
    (forward + backward + optimizer step), so ire's own tokens/s on the same
    shape can be put in context.  With --device cuda it measures a GPU
    (tools/gpu-check.sh): --dtype bf16 autocasts like the paper's OpenWebText
    script, --fused uses the fused CUDA AdamW; eager (no torch.compile).  Defaults are the ire `tiny` config: hidden 256,
    intermediate 688, 4 layers, 4 heads (kv 4), vocab 8192, ctx 256, tied
    embeddings; batch 8 x seq 256 random tokens; torch.set_num_threads(2).

Not run in CI.  Run by hand with the repo venv (the CPU unless --device says otherwise):

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
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: torch.autocast(bfloat16) around forward and loss, f32 master weights")
    ap.add_argument("--fused", action="store_true", help="torch.optim.AdamW(fused=True) (CUDA)")
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
    dev = torch.device(a.device)
    model = LlamaForCausalLM(cfg).to(torch.float32).to(dev)
    model.train()
    params = sum(p.numel() for p in model.parameters())  # parameters() dedups tied tensors
    extra = {"fused": True} if a.fused else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, **extra)
    gen = torch.Generator().manual_seed(1)
    cuda = dev.type == "cuda"
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16")

    def step():
        ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen).to(dev)
        with autocast:
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss.detach())  # a host read: synchronises CUDA every step

    for _ in range(a.warmup):
        step()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
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
        "impl": "torch",
        "device": a.device,
        "precision": a.dtype,
        "fused_adamw": a.fused,
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated(dev) / 1e9, 3) if cuda else None,
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
