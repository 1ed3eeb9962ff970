#!/usr/bin/env python3
"""HuggingFace `transformers` reference for ire's Llama implementation (ire-llama).

Purpose
    * ``make-tiny``: write a tiny random ``LlamaForCausalLM`` checkpoint
      (config.json + model.safetensors) that ire can load.
    * ``score``:     mean next-token cross-entropy + first logits of a checkpoint
      as computed by transformers (float32, eager attention) -> one JSON line.
    * ``compare``:   score, then diff against the JSON line printed by ``ire score``;
      exits 1 if |loss_hf - loss_ire| >= 1e-4.
    * ``tokenizer``: load an exported folder with ``AutoTokenizer`` (needs
      transformers and tokenizers only, no torch) and check that eos/bos/pad are set,
      with the ids ire uses (config.json's eos/bos_token_id; pad = eos), that
      encoding adds no special token (ire trains without them) and gives the ids of
      the raw tokenizer.json; exits 1 otherwise.
    * ``fixtures``:  (re)generate the committed test fixtures
      crates/ire-llama/tests/fixtures/{hf_tiny_gqa,hf_tiny_tied_bf16}/
      (config.json, model.safetensors, expected.json), so the Rust tests need
      no torch.  expected.json = {"tokens": [24 ids], "loss": mean next-token CE,
      "logits_first": logits[pos 0][:8], "logits_last": logits[pos 23][:8]},
      computed in float32 (bf16 weights upcast to f32).
      hf_tiny_gqa: f32, kv 2, untied, transformers-5 config style;
      hf_tiny_tied_bf16: bf16, kv 2, tied, --old-config style.

Not run in CI (needs torch/transformers).  Run by hand with the repo venv:

    .venv/bin/python tools/hf_reference.py make-tiny --out /tmp/tiny [--kv-heads 2] [--tied] \
        [--dtype float32|bfloat16|float16] [--old-config | --new-config] \
        [--init-std 0.02] [--plain-norms]
    .venv/bin/python tools/hf_reference.py score --model /tmp/tiny --tokens 1,2,3,4
    .venv/bin/python tools/hf_reference.py compare --model /tmp/tiny --tokens 1,2,3,4 \
        --ire-json "$(target/release/ire score ...)"        # or --ire-json @file / -
    .venv/bin/python tools/hf_reference.py fixtures

Model: hidden 64, intermediate 176, 2 layers, 4 heads (head_dim 16), kv heads 2
(default), vocab 256, max_position_embeddings 128, rms_norm_eps 1e-6,
rope_theta 10000, torch.manual_seed(0), weights ~ N(0, 0.02) (transformers'
initializer_range).  In addition the RMSNorm weights (input_layernorm,
post_attention_layernorm, model.norm) are set to 1 + N(0, 0.1) instead of the
all-ones init, so that a loader which ignores them fails the comparison
(``--plain-norms`` keeps all-ones).

Observed (torch 2.15.0 CPU; transformers 5.24.0 and 4.55.4; 2026-11):
  * Config style written by save_pretrained:
      transformers 5.24: "rope_parameters": {"rope_theta": 10000.0, "rope_type":
        "default"} and "dtype": "float32"|"bfloat16"|... (no top-level
        rope_theta/torch_dtype, no rope_scaling).
      transformers 4.55: top-level "rope_theta": 10000.0, "rope_scaling": null,
        "torch_dtype": "...".
    ``--old-config`` forces the 4.x style, ``--new-config`` the 5.x style,
    whichever transformers is installed.  Both versions load both styles and give
    bit-identical loss/logits (rope_theta 10000 is also the default, so the
    rope_parameters block being ignored by 4.55 is harmless here).
  * The repo .venv currently holds transformers 4.55.4 (because another tool pinned
    tokenizers==0.21.4 / huggingface_hub<1.0 there, which transformers 5 refuses).
    The committed fixtures were written with transformers 5.24.0 through an
    overlay that leaves .venv alone:
      .venv/bin/pip install --no-deps --target /tmp/hf5 transformers==5.24.0 \
          huggingface_hub==2.4.0 tokenizers==0.23.3
      PYTHONPATH=/tmp/hf5 .venv/bin/python tools/hf_reference.py fixtures
    Regenerating with 4.55.4 gives byte-identical model.safetensors and
    expected.json; only config.json differs ("transformers_version", and 4.55
    drops "pad_token_id": null).
  * model.safetensors tensor names: model.embed_tokens.weight,
    model.layers.{i}.{input_layernorm,post_attention_layernorm}.weight,
    model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
    model.layers.{i}.mlp.{gate,up,down}_proj.weight, model.norm.weight,
    lm_head.weight (21 tensors).  With --tied, lm_head.weight is NOT in the file
    (20 tensors; config tie_word_embeddings=true).  No rotary inv_freq buffer is
    saved.  Shapes are [out_features, in_features] (k/v_proj: [kv_heads*16, 64]).
    Header metadata {"format": "pt"}.  Sizes: f32 untied ~0.50 MB, bf16 tied ~0.22 MB.
  * score reports missing=[] unexpected=[] for tied/untied, kv 2/4, f32/bf16/f16
    and both config styles; a checkpoint with a tensor removed/added exits 2 with
    the missing/unexpected names.  Loss on the fixture tokens: 5.6080 (f32 untied
    kv2), 5.4369 (bf16 tied), ~ ln 256 = 5.545 as expected for a random model.
    labels=input_ids loss equals a float64 recomputation of
    mean_{t=1..S-1} -log softmax(logits[t-1])[tok_t] to ~1.5e-7 (asserted < 1e-5),
    and the same checkpoints run in float64 differ from the f32 run by < 4e-7 in
    logits and 0 in (f32-printed) loss: f32 noise is far below the 1e-4 tolerance.
    The f16 copy of the f32 model scores within 4e-5 of it; bf16 tied vs f32 tied
    within 1.3e-4 (so bf16 fixtures need expected values computed from the bf16
    weights, as done here).
  * Sensitivity of the hf_tiny_gqa fixture (std 0.02) to typical port bugs,
    |d loss| / max |d logits| at the last position (position 0 is RoPE-blind):
      no RoPE 5.6e-4 / 1.5e-3;  RoPE on interleaved pairs instead of halves
      7.2e-4 / 1.7e-3;  GQA kv heads tiled instead of repeat_interleave'd
      3.1e-2 / 0.14;  RMSNorm weights ignored 5.3e-3 / 3.7e-2.
    So a 1e-4 loss tolerance catches all of them, RoPE bugs only by ~5x; f32
    agreement should be ~1e-6, so a tighter tolerance (1e-5) is safer.  With
    --init-std 0.05 the RoPE effects are ~20x larger.
"""
import argparse
import json
import inspect
import os
import re
import sys

try:
    import torch
except ImportError:  # the `tokenizer` check needs no torch; the other commands say so
    torch = None

DTYPE_NAMES = ("bfloat16", "float16", "float32")
DTYPES = {n: getattr(torch, n) for n in DTYPE_NAMES} if torch is not None else {}
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURE_DIR = os.path.join(REPO, "crates", "ire-llama", "tests", "fixtures")
# fixed token ids for the fixtures' expected.json (24 ids < 256, includes 0 and 255)
FIXTURE_TOKENS = [1, 17, 42, 255, 0, 128, 7, 7, 7, 200, 3, 99,
                  64, 31, 250, 5, 18, 18, 77, 140, 2, 211, 56, 9]


def _quiet_transformers():
    import transformers
    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    return transformers


def _tf_version():
    import transformers
    return tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])


def make_tiny(out, kv_heads=2, tied=False, dtype="float32", old_config=False,
              new_config=False, plain_norms=False, init_std=0.02, quiet=False):
    transformers = _quiet_transformers()
    from transformers import LlamaConfig, LlamaForCausalLM

    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        rope_kw = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    else:  # transformers 4.x
        rope_kw = {"rope_theta": 10000.0}
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        initializer_range=init_std,
        **rope_kw,
        tie_word_embeddings=tied,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.eval()
    # explicit init (do not rely on version-dependent _init_weights details)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                if plain_norms:
                    p.fill_(1.0)
                else:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(init_std * torch.randn(p.shape, generator=gen))
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model = model.to(DTYPES[dtype])
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        cj = json.load(f)
    if old_config and new_config:
        raise SystemExit("--old-config and --new-config are exclusive")
    if old_config:  # transformers 4.x style
        rp = cj.pop("rope_parameters", None) or {}
        cj["rope_theta"] = float(rp.get("rope_theta", cj.get("rope_theta", 10000.0)))
        cj["rope_scaling"] = None
        d = cj.pop("dtype", None) or cj.get("torch_dtype") or dtype
        cj["torch_dtype"] = d
    if new_config:  # transformers 5 style
        theta = float(cj.pop("rope_theta", None) or
                      (cj.get("rope_parameters") or {}).get("rope_theta", 10000.0))
        cj.pop("rope_scaling", None)
        cj["rope_parameters"] = {"rope_theta": theta, "rope_type": "default"}
        d = cj.pop("torch_dtype", None) or cj.get("dtype") or dtype
        cj["dtype"] = d
    if old_config or new_config:
        with open(cfg_path, "w") as f:
            json.dump(cj, f, indent=2, sort_keys=True)
            f.write("\n")
    style = {k: cj.get(k) for k in ("rope_parameters", "rope_theta", "rope_scaling",
                                     "dtype", "torch_dtype", "tie_word_embeddings",
                                     "num_key_value_heads") if k in cj}
    if not quiet:
        from safetensors import safe_open
        with safe_open(os.path.join(out, "model.safetensors"), "pt") as sf:
            keys = list(sf.keys())
            dts = sorted({str(sf.get_tensor(k).dtype) for k in keys})
        size = sum(os.path.getsize(os.path.join(out, fn)) for fn in os.listdir(out))
        print(json.dumps({"out": out, "transformers": transformers.__version__,
                          "config_style": style, "n_tensors": len(keys),
                          "tensor_dtypes": dts, "lm_head_in_file": "lm_head.weight" in keys,
                          "dir_bytes": size}))
    return cj


def score(model_dir, tokens):
    _quiet_transformers()
    from transformers import LlamaForCausalLM

    kwargs = dict(attn_implementation="eager", output_loading_info=True)
    # transformers >= 4.56 renamed torch_dtype= to dtype= (torch_dtype deprecated)
    dkey = "dtype" if _tf_version() >= (4, 56) else "torch_dtype"
    kwargs[dkey] = torch.float32
    model, info = LlamaForCausalLM.from_pretrained(model_dir, **kwargs)
    model.eval()
    for p in model.parameters():
        assert p.dtype == torch.float32, p.dtype
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(info.get("unexpected_keys", []))
    mismatched = [list(map(str, m)) for m in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        print(json.dumps({"error": "bad checkpoint", "missing": missing,
                          "unexpected": unexpected, "mismatched": mismatched}), file=sys.stderr)
        sys.exit(2)
    ids = torch.tensor([tokens], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    loss = float(out.loss)
    logits = out.logits[0].float()
    # cross-check: mean over t=1..S-1 of -log p(tok_t | tok_<t), in float64
    lp = torch.log_softmax(logits.double(), dim=-1)
    manual = float(-lp[torch.arange(len(tokens) - 1), ids[0, 1:]].mean())
    assert abs(manual - loss) < 1e-5 * max(1.0, abs(loss)), (manual, loss)
    return {"loss": loss, "logits_first": [float(x) for x in logits[0, :8]],
            "missing": missing, "unexpected": unexpected,
            "_logits_last": [float(x) for x in logits[-1, :8]]}


def _public(r):
    return {k: v for k, v in r.items() if not k.startswith("_")}


def parse_tokens(s):
    toks = [int(t) for t in s.replace(" ", "").split(",") if t != ""]
    if len(toks) < 2:
        raise SystemExit("need at least 2 tokens")
    return toks


def compare(model_dir, tokens, ire_json):
    if ire_json == "-":
        ire_json = sys.stdin.read()
    elif ire_json.startswith("@"):
        with open(ire_json[1:]) as f:
            ire_json = f.read()
    # accept the last JSON object line if ire printed more than one line
    lines = [l for l in ire_json.strip().splitlines() if l.strip().startswith("{")]
    ire = json.loads(lines[-1])
    hf = score(model_dir, tokens)
    dloss = abs(hf["loss"] - float(ire["loss"]))
    ire_first = ire.get("logits_first") or []
    n = min(len(ire_first), len(hf["logits_first"]))
    dlog = max((abs(a - b) for a, b in zip(hf["logits_first"][:n], ire_first[:n])), default=None)
    ok = dloss < 1e-4
    print(json.dumps({"hf_loss": hf["loss"], "ire_loss": float(ire["loss"]),
                      "abs_dloss": dloss, "max_abs_dlogits_first": dlog,
                      "n_logits_compared": n, "ok": ok}))
    if not ok:
        sys.exit(1)


def fixtures():
    specs = [
        ("hf_tiny_gqa", dict(kv_heads=2, tied=False, dtype="float32", new_config=True)),
        ("hf_tiny_tied_bf16", dict(kv_heads=2, tied=True, dtype="bfloat16", old_config=True)),
    ]
    for name, kw in specs:
        d = os.path.join(FIXTURE_DIR, name)
        make_tiny(d, **kw)
        gc = os.path.join(d, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)  # not needed by ire; keep the fixture minimal
        r = score(d, FIXTURE_TOKENS)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"tokens": FIXTURE_TOKENS, "loss": r["loss"],
                       "logits_first": r["logits_first"],
                       "logits_last": r["_logits_last"]}, f, indent=1)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
        print(json.dumps({"fixture": name, "files": sorted(os.listdir(d)), "bytes": size,
                          "loss": r["loss"]}))


TOKENIZER_TEXT = "The state of the Union is strong.\n\nWe shall meet again."


def check_tokenizer(model_dir):
    """AutoTokenizer loads `model_dir` and knows eos/bos/pad with ire's ids; one JSON line."""
    _quiet_transformers()
    import tokenizers
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    eot = cfg.get("eos_token_id")
    expected = {"eos": eot, "bos": cfg.get("bos_token_id"), "pad": eot}
    got = {k: getattr(tok, f"{k}_token_id") for k in expected}
    names = {k: getattr(tok, f"{k}_token") for k in expected}
    ids = tok(TOKENIZER_TEXT)["input_ids"]
    raw = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    raw_ids = raw.encode(TOKENIZER_TEXT, add_special_tokens=False).ids
    checks = {
        "special_tokens_set": all(v is not None for v in names.values()),
        "ids_match_ire": got == expected,
        "no_special_added": eot not in ids,
        "same_ids_as_tokenizer_json": ids == raw_ids,
        "decodes_back": tok.decode(ids) == TOKENIZER_TEXT,
    }
    import transformers
    print(json.dumps({"transformers": transformers.__version__, "class": type(tok).__name__,
                      "tokens": names, "ids": got, "expected": expected,
                      "model_max_length": tok.model_max_length, "checks": checks}))
    if not all(checks.values()):
        print("MISMATCH: " + ", ".join(k for k, v in checks.items() if not v))
        sys.exit(1)
    print("tokenizer ok")


def main():
    ap = argparse.ArgumentParser(description="transformers reference for ire-llama")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-tiny", help="write a tiny random LlamaForCausalLM")
    p.add_argument("--out", required=True)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--tied", action="store_true")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32")
    p.add_argument("--old-config", action="store_true",
                   help="top-level rope_theta/torch_dtype instead of rope_parameters/dtype")
    p.add_argument("--new-config", action="store_true",
                   help="transformers-5 style rope_parameters/dtype (default of transformers 5)")
    p.add_argument("--plain-norms", action="store_true", help="RMSNorm weights all ones")
    p.add_argument("--init-std", type=float, default=0.02, help="std of the linear/embedding weights")
    p = sub.add_parser("score", help="loss + first logits by transformers (f32, eager)")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True, help="comma-separated ids, e.g. 1,2,3")
    p = sub.add_parser("compare", help="score and diff against `ire score` JSON")
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--ire-json", required=True, help="JSON line, @file, or - for stdin")
    sub.add_parser("fixtures", help="regenerate crates/ire-llama/tests/fixtures/hf_tiny_*")
    p = sub.add_parser("tokenizer", help="AutoTokenizer loads an export with eos/bos/pad set")
    p.add_argument("--model", required=True)
    a = ap.parse_args()
    if a.cmd != "tokenizer" and torch is None:
        sys.exit(f"hf_reference.py {a.cmd}: needs torch (pip install torch)")
    if a.cmd == "make-tiny":
        make_tiny(a.out, a.kv_heads, a.tied, a.dtype, a.old_config, a.new_config,
                  a.plain_norms, a.init_std)
    elif a.cmd == "score":
        print(json.dumps(_public(score(a.model, parse_tokens(a.tokens)))))
    elif a.cmd == "compare":
        compare(a.model, parse_tokens(a.tokens), a.ire_json)
    elif a.cmd == "fixtures":
        fixtures()
    elif a.cmd == "tokenizer":
        check_tokenizer(a.model)


if __name__ == "__main__":
    main()
