#!/usr/bin/env python3
"""check_structure: structural lint for the crates of this workspace (standard library only).

Run from anywhere (CI runs `python3 tools/check_structure.py` from the repository root);
it exits 1, with one clear message per problem, when

 1. the files of a crate import each other in a cycle. Each `crates/*/src/**.rs` file is a
    module (src/lib.rs, src/main.rs = the crate root, src/a.rs and src/a/mod.rs = `a`,
    src/a/b.rs = `a::b`). File A depends on module M when its code names a path
    `crate::m…`, `super::…` or `self::…` (in `use` trees, grouped and multi-line forms
    included, or inline like `crate::m::f()`); a path resolves to its longest prefix that is
    a module file (`crate::hub::types::X` is `hub::types` when that file exists, else `hub`).
    Edges to the file itself and to the crate root are ignored, and the root files are kept
    out of the graph (their re-exports are not dependencies of the re-exported modules).
    Comments, string/char literals, `#[cfg(test)]` items (e.g. `mod tests { … }`) and
    `mod x;` declarations never make edges. Each strongly connected component of more than
    one file is reported with one concrete cycle and the references that form it;
 2. a non-test `fn` in src/ spans more than 80 lines, from the line of `fn` to its closing
    brace. Put `// check_structure: allow-long-fn (reason)` directly above the fn, or above
    its attributes and doc comments, to allow one; allowed fns are counted in the summary.
    Functions inside `macro_rules!` bodies and `#[cfg(test)]` items are not checked.

Options: --crate NAME (one crate), --graph (print each crate's module edges), -q (print
problems only), -v (also list allowed long fns), --root DIR (the repository to check,
default: this script's parent folder), --max-fn-lines N (default 80), --bare-child-paths
(also count `child::…` paths naming a child declared with `mod child;` in that file, e.g.
a mod.rs calling `reference::linear(..)`; off by default). `#[path]` attributes are not
supported: the check warns when it meets one.
"""

import argparse
import os
import re
import sys

DEFAULT_MAX_FN_LINES = 80
ALLOW_RE = re.compile(r"//\s*check_structure:\s*allow-long-fn\b\s*(.*)$")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


# ----------------------------------------------------------------------------------------------
# Lexing: blank out comments and literals, keeping offsets and newlines.


def _blank(chars, start, end):
    for k in range(start, end):
        if chars[k] != "\n":
            chars[k] = " "


def strip_code(src):
    """`src` with comments, string/byte/raw-string literals and char literals replaced by
    spaces (newlines kept, so offsets and line numbers stay valid). Lifetimes and labels
    (`'a`, `'outer:`) are left alone."""
    chars = list(src)
    n = len(src)
    i = 0
    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            _blank(chars, i, j)
            i = j
            continue
        if c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            _blank(chars, i, j)
            i = j
            continue
        prev_ident = i > 0 and src[i - 1] in IDENT_CHARS
        if c in "brc" and not prev_ident:
            m = re.compile(r'(?:b|c)?r(#*)"').match(src, i)
            if m:  # raw string: ends at `"` followed by the same number of `#`
                close = '"' + m.group(1)
                j = src.find(close, m.end())
                j = n if j < 0 else j + len(close)
                _blank(chars, i, j)
                i = j
                continue
            if c in "bc" and nxt == '"':
                i += 1
                c = '"'
            elif c == "b" and nxt == "'":
                i += 1
                c = "'"
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            _blank(chars, i, j)
            i = j
            continue
        if c == "'":
            if nxt == "\\":  # escaped char literal: '\n', '\'', '\u{1F600}'
                j = i + 2
                while j < n and src[j] != "'" and src[j] != "\n":
                    j += 2 if src[j] == "\\" else 1
                if j < n and src[j] == "'":
                    _blank(chars, i, j + 1)
                    i = j + 1
                    continue
            elif i + 2 < n and src[i + 2] == "'" and nxt != "\n":  # 'x'
                _blank(chars, i, i + 3)
                i += 3
                continue
            i += 1  # a lifetime or label
            continue
        i += 1
    return "".join(chars)


def match_close(code, open_pos):
    """Offset just past the bracket closing the one at `open_pos` (len(code) if unbalanced)."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack = [pairs[code[open_pos]]]
    j = open_pos + 1
    n = len(code)
    while j < n and stack:
        ch = code[j]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")]}":
            stack.pop()  # tolerate mismatches: stripped code is balanced in practice
        j += 1
    return j


def item_end(code, pos):
    """End offset of the item starting at `pos`: its first top-level `;`, or the brace block
    it opens at top level (parentheses and brackets are skipped, so `[u8; 4]` is fine)."""
    n = len(code)
    j = pos
    while j < n:
        ch = code[j]
        if ch in "([":
            j = match_close(code, j)
            continue
        if ch == ";":
            return j + 1
        if ch == "{":
            return match_close(code, j)
        j += 1
    return n


CFG_TEST_RE = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
ATTR_START_RE = re.compile(r"#\s*!?\s*\[")
MOD_DECL_RE = re.compile(r"\A\s*(?:pub\s*(?:\([^)]*\))?\s*)?mod\s+(?:r#)?(" + IDENT + r")\s*;")


def remove_test_items(code):
    """`code` with every `#[cfg(test)]` item blanked out, and the names of `#[cfg(test)] mod x;`
    declarations (their files are test-only)."""
    chars = list(code)
    test_mods = set()
    for m in CFG_TEST_RE.finditer(code):
        j = m.end()
        while True:  # further attributes on the same item
            a = ATTR_START_RE.match(code, j + (len(code[j:]) - len(code[j:].lstrip())))
            if not a:
                break
            j = match_close(code, a.end() - 1)
        d = MOD_DECL_RE.match(code, j)
        if d:
            test_mods.add(d.group(1))
        _blank(chars, m.start(), item_end(code, j))
    return "".join(chars), test_mods


MACRO_RULES_RE = re.compile(r"\bmacro_rules\s*!\s*" + IDENT + r"\s*([{(\[])")


def remove_macro_rules(code):
    chars = list(code)
    for m in MACRO_RULES_RE.finditer(code):
        _blank(chars, m.start(), match_close(code, m.start(1)))
    return "".join(chars)


def line_starts(text):
    starts = [0]
    for k, ch in enumerate(text):
        if ch == "\n":
            starts.append(k + 1)
    return starts


def line_of(starts, pos):
    """1-based line number of offset `pos`."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= pos:
            lo = mid
        else:
            hi = mid - 1
    return lo + 1


# ----------------------------------------------------------------------------------------------
# Paths: `crate::…`, `super::…`, `self::…`, with use trees expanded.


class _PathParser:
    def __init__(self, code):
        self.code = code
        self.n = len(code)

    def ws(self, j):
        while j < self.n and self.code[j].isspace():
            j += 1
        return j

    def ident(self, j):
        m = re.compile(IDENT).match(self.code, j)
        return (m.group(0), m.end()) if m else (None, j)

    def tree(self, j, prefix):
        """Parse a use tree (or plain path) at `j`; return ([segment lists], end)."""
        segs = list(prefix)
        while True:
            j = self.ws(j)
            if j < self.n and self.code[j] == "{":
                return self.group(j, segs)
            if j < self.n and self.code[j] == "*":
                return [segs], j + 1
            name, k = self.ident(j)
            if name is None:
                return [segs], j
            if name == "self" and segs:  # `a::{self, b}` names `a`
                name = None
            else:
                segs.append(name)
            j = k
            k = self.ws(j)
            if self.code.startswith("::", k):
                j = k + 2
                continue
            # `as alias`
            alias, k2 = self.ident(k)
            if alias == "as":
                _, j = self.ident(self.ws(k2))
            return [segs], j

    def group(self, j, prefix):
        out = []
        j += 1
        while True:
            j = self.ws(j)
            if j >= self.n:
                return out, j
            if self.code[j] == "}":
                return out, j + 1
            if self.code[j] == ",":
                j += 1
                continue
            paths, k = self.tree(j, prefix)
            out.extend(paths)
            if k == j:  # unexpected token: skip it
                k = j + 1
            j = k


PATH_START_RE = re.compile(r"(?<![A-Za-z0-9_$])(crate|super|self)\s*::")


def find_paths(code, child_names=()):
    """[(offset, segments)] for every path in `code` starting with crate/super/self (or with a
    name in `child_names`). Segments keep their leading keyword."""
    parser = _PathParser(code)
    out = []
    if child_names:
        start_re = re.compile(
            r"(?<![A-Za-z0-9_$])(crate|super|self|"
            + "|".join(re.escape(c) for c in sorted(child_names))
            + r")\s*::"
        )
    else:
        start_re = PATH_START_RE
    pos = 0
    while True:
        m = start_re.search(code, pos)
        if not m:
            break
        before = code[: m.start()].rstrip()
        if before.endswith("::") or re.search(r"\bin$", before):  # mid-path, or `pub(in crate::x)`
            pos = m.end()
            continue
        paths, end = parser.tree(m.start(), [])
        for segs in paths:
            out.append((m.start(), segs))
        pos = max(end, m.end())
    return out


def resolve(segs, cur, modules):
    """The module (tuple) that `segs` (starting with crate/super/self/child) resolves to,
    relative to module `cur`: its longest prefix in `modules`; () for the crate root, None when
    the path cannot be resolved."""
    segs = list(segs)
    if segs[0] == "crate":
        base, rest = [], segs[1:]
    else:
        base = list(cur)
        rest = segs
        if rest and rest[0] == "self":
            rest = rest[1:]
        while rest and rest[0] == "super":
            if not base:
                return None
            base.pop()
            rest = rest[1:]
    full = base + rest
    for k in range(len(full), 0, -1):
        if tuple(full[:k]) in modules:
            return tuple(full[:k])
    return ()


INLINE_MOD_RE = re.compile(r"\bmod\s+(?:r#)?(" + IDENT + r")\s*\{")


def inline_mods(code):
    """[(start, end, name)] of the inline `mod name { … }` blocks in `code`."""
    out = []
    for m in INLINE_MOD_RE.finditer(code):
        out.append((m.start(), match_close(code, m.end() - 1), m.group(1)))
    return out


def module_at(pos, file_mod, mods):
    path = list(file_mod)
    for start, end, name in mods:  # sorted by start: outer blocks come first
        if start <= pos < end:
            path.append(name)
    return tuple(path)


# ----------------------------------------------------------------------------------------------
# Long functions.

FN_RE = re.compile(r"\bfn\s+(?:r#)?(" + IDENT + r")")


def attribute_lines(code, starts):
    lines = set()
    for m in ATTR_START_RE.finditer(code):
        end = match_close(code, m.end() - 1)
        for ln in range(line_of(starts, m.start()), line_of(starts, max(end - 1, m.start())) + 1):
            lines.add(ln)
    return lines


def long_fns(code, orig_lines, max_lines):
    """[(line, name, n_lines, allow)] for fns longer than `max_lines`; `allow` is None, or the
    reason given by an allow-long-fn comment ('' when it gave none)."""
    starts = line_starts(code)
    attrs = attribute_lines(code, starts)
    out = []
    n = len(code)
    for m in FN_RE.finditer(code):
        j = m.end()
        body = None
        while j < n:
            ch = code[j]
            if ch in "([":
                j = match_close(code, j)
                continue
            if ch == ";" or ch == "}":
                break
            if ch == "{":
                body = j
                break
            j += 1
        if body is None:
            continue
        end = match_close(code, body)
        first = line_of(starts, m.start())
        last = line_of(starts, end - 1)
        length = last - first + 1
        if length <= max_lines:
            continue
        allow = None
        ln = first - 1
        while ln >= 1:  # the block of attributes, doc comments and comments above the fn
            text = orig_lines[ln - 1].strip() if ln - 1 < len(orig_lines) else ""
            if ln not in attrs and not text.startswith("//"):
                break
            a = ALLOW_RE.search(text)
            if a:
                reason = a.group(1).strip()
                if reason.startswith("(") and reason.endswith(")"):
                    reason = reason[1:-1].strip()
                allow = reason
            ln -= 1
        out.append((first, m.group(1), length, allow))
    return out


# ----------------------------------------------------------------------------------------------
# Crates.


def module_of(rel):
    """Module path (tuple) of a file path relative to src/; () for the crate roots, None for
    files that are not modules of the library/binary (src/bin/**)."""
    parts = rel.replace(os.sep, "/").split("/")
    if parts[0] == "bin":
        return None
    if len(parts) == 1 and parts[0] in ("lib.rs", "main.rs"):
        return ()
    stem = parts[-1][:-3]
    if stem == "mod":
        return tuple(parts[:-1])
    return tuple(parts[:-1] + [stem])


class CrateReport:
    def __init__(self, name):
        self.name = name
        self.files = 0
        self.edges = {}  # (src module, dst module) -> (line, path text)
        self.cycles = []  # lines of text
        self.long = []  # (relpath, line, name, n)
        self.allowed = []  # (relpath, line, name, n, reason)
        self.unreasoned = []  # (relpath, line, name, n)
        self.warnings = []
        self.mod_file = {}


def check_crate(crate_dir, name, args):
    rep = CrateReport(name)
    src_dir = os.path.join(crate_dir, "src")
    files = []
    for dirpath, dirnames, filenames in os.walk(src_dir):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(".rs"):
                full = os.path.join(dirpath, fn)
                files.append(os.path.relpath(full, src_dir).replace(os.sep, "/"))
    rep.files = len(files)

    parsed = {}
    test_only = set()  # modules declared `#[cfg(test)] mod x;`
    for rel in files:
        with open(os.path.join(src_dir, rel), encoding="utf-8") as f:
            orig = f.read()
        stripped = strip_code(orig)
        if re.search(r"#\s*\[\s*path\s*=", stripped):
            rep.warnings.append(
                "crates/%s/src/%s: #[path] attribute found; check_structure does not follow it"
                % (name, rel)
            )
        code, test_mods = remove_test_items(stripped)
        mod = module_of(rel)
        if mod is not None:
            for t in test_mods:
                test_only.add(mod + (t,))
        parsed[rel] = (orig, code, mod)

    def is_test_only(mod):
        return any(mod[: len(t)] == t for t in test_only)

    modules = {}
    for rel, (_, _, mod) in parsed.items():
        if mod is None or is_test_only(mod):
            continue
        if mod in modules and mod != ():
            rep.warnings.append(
                "crates/%s/src: both %s and %s are module %s"
                % (name, modules[mod], rel, "::".join(mod))
            )
        modules.setdefault(mod, rel)
    rep.mod_file = modules

    for rel in files:
        orig, code, mod = parsed[rel]
        if mod is not None and is_test_only(mod):
            continue
        # 2. long functions
        fn_code = remove_macro_rules(code)
        for line, fname, length, allow in long_fns(fn_code, orig.split("\n"), args.max_fn_lines):
            if allow:
                rep.allowed.append((rel, line, fname, length, allow))
            elif allow is not None:
                rep.unreasoned.append((rel, line, fname, length))
            else:
                rep.long.append((rel, line, fname, length))
        # 1. edges (roots and src/bin files are outside the graph)
        if not mod:
            continue
        children = ()
        if args.bare_child_paths:
            children = {
                c for c in re.findall(r"\bmod\s+(?:r#)?(" + IDENT + r")\s*;", code)
                if mod + (c,) in modules
            }
        mods = inline_mods(code)
        starts = line_starts(code)
        for pos, segs in find_paths(code, children):
            cur = module_at(pos, mod, mods)
            if segs[0] in children and cur != mod:
                continue  # a bare name inside an inline mod is not our child
            shown = "::".join(segs)
            if segs[0] in children:
                segs = ["self"] + segs
            dst = resolve(segs, cur, modules)
            if not dst or dst == mod:
                continue
            key = (mod, dst)
            if key not in rep.edges:
                rep.edges[key] = (line_of(starts, pos), shown)

    find_cycles(rep)
    return rep


def tarjan(nodes, succ):
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def visit(v):  # iterative version of Tarjan's recursion
        work = [(v, iter(succ.get(v, ())))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                sccs.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return sccs


def shortest_cycle(start, members, succ):
    """Shortest cycle through `start` inside `members` (list of nodes, start first and last)."""
    prev = {start: None}
    queue = [start]
    for v in queue:
        for w in succ.get(v, ()):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return None


def find_cycles(rep):
    succ = {}
    for a, b in sorted(rep.edges):
        succ.setdefault(a, []).append(b)
    nodes = sorted(set(succ) | {b for targets in succ.values() for b in targets})
    for comp in tarjan(nodes, succ):
        if len(comp) < 2:
            continue
        members = set(comp)
        comp = sorted(comp, key=lambda m: rep.mod_file[m])
        cycle = shortest_cycle(comp[0], members, succ)
        files = [rep.mod_file[m] for m in cycle]
        lines = [
            "crates/%s: cycle: %s" % (rep.name, " -> ".join("src/" + f for f in files)),
            "    strongly connected files (%d): %s"
            % (len(comp), ", ".join("src/" + rep.mod_file[m] for m in comp)),
        ]
        for a, b in zip(cycle, cycle[1:]):
            line, text = rep.edges[(a, b)]
            lines.append(
                "    crates/%s/src/%s:%d uses %s (module %s)"
                % (rep.name, rep.mod_file[a], line, text, "::".join(b))
            )
        rep.cycles.append(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Import cycles between a crate's files, and over-long functions."
    )
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="repository root holding crates/ (default: this script's parent folder)")
    ap.add_argument("--crate", dest="crate", help="check only this crate (e.g. ire-data)")
    ap.add_argument("--graph", action="store_true", help="print each crate's module dependency edges")
    ap.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    ap.add_argument("-v", "--verbose", action="store_true", help="also list the allowed long fns")
    ap.add_argument("--max-fn-lines", type=int, default=DEFAULT_MAX_FN_LINES,
                    help="longest fn allowed, in lines (default %d)" % DEFAULT_MAX_FN_LINES)
    ap.add_argument("--bare-child-paths", action="store_true",
                    help="also count `child::…` paths to children declared with `mod child;`")
    args = ap.parse_args(argv)

    crates_dir = os.path.join(args.root, "crates")
    if not os.path.isdir(crates_dir):
        print("check_structure: no crates/ folder under %s" % args.root, file=sys.stderr)
        return 2
    names = sorted(
        d for d in os.listdir(crates_dir) if os.path.isdir(os.path.join(crates_dir, d, "src"))
    )
    if args.crate:
        if args.crate not in names:
            print("check_structure: no crate %r (have: %s)" % (args.crate, ", ".join(names)),
                  file=sys.stderr)
            return 2
        names = [args.crate]

    failed = False
    totals = [0, 0, 0]
    for name in names:
        rep = check_crate(os.path.join(crates_dir, name), name, args)
        for w in rep.warnings:
            print("warning: " + w, file=sys.stderr)
        if args.graph:
            print("crates/%s: module dependency edges (%d):" % (name, len(rep.edges)))
            for a, b in sorted(rep.edges):
                print("    %s -> %s" % ("::".join(a), "::".join(b)))
        for lines in rep.cycles:
            print("\n".join(lines))
        for rel, line, fname, length in rep.long:
            print("crates/%s/src/%s:%d: fn %s is %d lines (limit %d)"
                  % (name, rel, line, fname, length, args.max_fn_lines))
        for rel, line, fname, length in rep.unreasoned:
            print("crates/%s/src/%s:%d: fn %s is %d lines (limit %d); its allow-long-fn comment "
                  "needs a (reason)" % (name, rel, line, fname, length, args.max_fn_lines))
        if args.verbose:
            for rel, line, fname, length, reason in rep.allowed:
                print("crates/%s/src/%s:%d: fn %s is %d lines, allowed: %s"
                      % (name, rel, line, fname, length, reason))
        bad = len(rep.cycles) + len(rep.long) + len(rep.unreasoned)
        failed = failed or bad > 0
        totals[0] += len(rep.cycles)
        totals[1] += len(rep.long) + len(rep.unreasoned)
        totals[2] += len(rep.allowed)
        if not args.quiet or bad:
            print("crates/%s: %s: %d files, %d module edges, %d cycles, %d long fns, "
                  "%d long fns allowed"
                  % (name, "FAIL" if bad else "ok", rep.files, len(rep.edges), len(rep.cycles),
                     len(rep.long) + len(rep.unreasoned), len(rep.allowed)))
    if failed:
        print("check_structure: FAILED: %d cycles, %d long fns (limit %d lines; %d allowed)"
              % (totals[0], totals[1], args.max_fn_lines, totals[2]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
