#!/usr/bin/env python3
"""Python `tokenizers` encode_batch throughput (MB/s), the baseline for ire-data's tokenizer.

Encodes the same text as `cargo run --release -p ire-data --example bench_data` (by default
the embedded State of the Union corpus, 10.8 MB, with the GPT-2 tokenizer from the test
fixtures) with `Tokenizer.encode_batch` on RAYON_RS_NUM_THREADS threads (default 2).

    python3 -m venv .venv && .venv/bin/pip install tokenizers==0.21.4
    .venv/bin/python tools/bench_tokenize.py [--tokenizer tokenizer.json] [--text docs.txt]

--text is UTF-8 with documents separated by U+001E. The last line, `MBPS <float>`, is what
bench_data parses.
"""

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_RS_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import tokenizers  # noqa: E402  (after the thread settings)
from tokenizers import Tokenizer  # noqa: E402

CRATE = Path(__file__).resolve().parent.parent / "crates" / "ire-data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", help="tokenizer.json (default: the GPT-2 test fixture)")
    ap.add_argument("--text", help="documents separated by U+001E (default: embedded SOTU corpus)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    args = ap.parse_args()

    if args.tokenizer:
        tok = Tokenizer.from_file(args.tokenizer)
    else:
        tok = Tokenizer.from_str(gzip.decompress((CRATE / "tests/fixtures/gpt2-tokenizer.json.gz").read_bytes()).decode())
    if args.text:
        text = Path(args.text).read_text(encoding="utf-8")
    else:
        text = gzip.decompress((CRATE / "corpus/sotu.txt.gz").read_bytes()).decode("utf-8")
    docs = text.split("\x1e")
    # Same as the Rust side: no added special tokens, "<|endoftext|>" inside text stays text.
    tok.encode_special_tokens = True
    nbytes = sum(len(d.encode("utf-8")) for d in docs)

    tok.encode_batch(docs[:16], add_special_tokens=False)  # warm-up
    best = float("inf")
    ntok = 0
    for _ in range(args.repeat):
        t = time.perf_counter()
        enc = tok.encode_batch(docs, add_special_tokens=False)
        best = min(best, time.perf_counter() - t)
        ntok = sum(len(e.ids) for e in enc)
    mbps = nbytes / 1e6 / best
    print(
        f"python tokenizers {tokenizers.__version__} encode_batch: {mbps:.2f} MB/s "
        f"({len(docs)} documents, {nbytes} bytes -> {ntok} tokens, best of {args.repeat}, "
        f"RAYON_RS_NUM_THREADS={os.environ['RAYON_RS_NUM_THREADS']})"
    )
    print(f"MBPS {mbps:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
