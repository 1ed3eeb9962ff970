#!/usr/bin/env python3
"""Self-test of tools/check_structure.py: fake crates in a temporary folder (run with
`python3 tools/check_structure_test.py`; standard library only)."""

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "check_structure.py")
sys.path.insert(0, HERE)
import check_structure  # noqa: E402


def body_lines(n):
    """`n` statement lines for a fn body."""
    return "".join("    let _v%d = %d;\n" % (k, k) for k in range(n))


def long_fn_file():
    # 1: header; long_one spans lines 3..87 (85 lines); exactly_80 is 80 lines; allowed is 90.lines.
    parts = ["//! Long functions.\n", "\n"]
    parts.append("pub fn long_one<'a>(s: &'a str) -> &'a str {\n")  # line 3
    parts.append('    let _brace = "{ not a brace";\n')
    parts.append("    let _q = '\"';\n")
    parts.append("    let _open = '{';\n")
    parts.append(body_lines(79))
    parts.append("    s\n")
    parts.append("}\n")  # 3 + 1 + 1 + 1 + 79 + 1 = line 87
    parts.append("\n")
    parts.append("fn exactly_80() {\n")  # line 89
    parts.append(body_lines(78))
    parts.append("}\n")
    parts.append("\n")
    parts.append("// check_structure: allow-long-fn (a table, clearer in one piece)\n")
    parts.append("/// Documented.\n")
    parts.append("#[allow(\n    clippy::too_many_lines\n)]\n")
    parts.append("#[inline]\n")
    parts.append("pub(crate) fn allowed() {\n")
    parts.append(body_lines(88))
    parts.append("}\n")
    parts.append("\nmacro_rules! gen {\n    () => {\n        fn in_macro() {\n")
    parts.append(body_lines(90))
    parts.append("        }\n    };\n}\n")
    parts.append("\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn long_test() {\n")
    parts.append(body_lines(100))
    parts.append("    }\n}\n")
    return "".join(parts)


FILES = {
    "crates/fake-a/src/lib.rs": """
        //! Root: its re-exports are not edges.
        pub mod config;
        pub mod hub;
        pub mod long;
        pub mod loader;
        pub mod util;
        pub use crate::config::Config;
        use crate::loader::Loader;
        pub struct Error;
    """,
    "crates/fake-a/src/config.rs": """
        use std::collections::{
            HashMap,
        };
        use crate::{
            Error,
            loader::{
                Loader as L,
                self,
            },
        };
        pub struct Config;
    """,
    "crates/fake-a/src/loader.rs": """
        use crate::util::helper;
        pub struct Loader;
        pub fn f() -> u32 {
            crate::config::make() + helper()
        }
    """,
    "crates/fake-a/src/hub/mod.rs": """
        pub mod download;
        pub mod fetch;
        pub mod types;
        pub struct Hub;
    """,
    "crates/fake-a/src/hub/types.rs": """
        pub struct T;
    """,
    "crates/fake-a/src/hub/download.rs": """
        use super::types::T;
        pub(super) fn d(_: T) {}
    """,
    "crates/fake-a/src/hub/fetch.rs": """
        pub(in crate::hub) fn g() -> super::Hub { super::Hub }
    """,
    "crates/fake-a/src/util.rs": r'''
        //! Mentions crate::config in a doc comment.
        /* block comment: crate::loader::x /* nested crate::hub */ still comment crate::config */
        pub fn helper() -> u32 {
            let _s = "crate::config::x";
            let _r = r#"crate::loader "quoted" crate::hub"#;
            let _b = b"crate::hub";
            let _c = '"'; let _d = "crate::config";
            0
        }
        #[cfg(test)]
        mod tests {
            use crate::loader::Loader;
            #[test]
            fn t() { let _ = crate::config::Config; }
        }
    ''',
    "crates/fake-b/src/main.rs": """
        mod a;
        mod b;
        fn main() { a::run(); }
    """,
    "crates/fake-b/src/a.rs": """
        pub fn run() { crate::b::go(); }
    """,
    "crates/fake-b/src/b.rs": """
        pub fn go() {}
    """,
}


class CheckStructureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        files = dict((k, textwrap.dedent(v).lstrip("\n")) for k, v in FILES.items())
        files["crates/fake-a/src/long.rs"] = long_fn_file()
        for rel, text in files.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        cls.root = root

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_script(self, *args):
        p = subprocess.run(
            [sys.executable, SCRIPT, "--root", self.root] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        )
        return p.returncode, p.stdout, p.stderr

    def edges(self, crate):
        rc, out, _ = self.run_script("--crate", crate, "--graph")
        edges = set()
        for line in out.splitlines():
            if line.startswith("    ") and " -> " in line and "crates/" not in line:
                a, b = line.strip().split(" -> ")
                edges.add((a, b))
        return edges

    def test_cycle_is_reported_and_fails(self):
        rc, out, err = self.run_script()
        self.assertEqual(rc, 1, out + err)
        self.assertIn("crates/fake-a: cycle: src/config.rs -> src/loader.rs -> src/config.rs", out)
        self.assertIn("strongly connected files (2): src/config.rs, src/loader.rs", out)
        self.assertIn("crates/fake-a/src/loader.rs:4 uses crate::config::make (module config)", out)
        self.assertEqual(out.count(": cycle: "), 1, out)

    def test_edges(self):
        edges = self.edges("fake-a")
        # grouped multi-line use, `self` in a group, `as` renames
        self.assertIn(("config", "loader"), edges)
        # inline path
        self.assertIn(("loader", "config"), edges)
        self.assertIn(("loader", "util"), edges)
        # nested folder: super::types is hub::types, not hub
        self.assertIn(("hub::download", "hub::types"), edges)
        self.assertNotIn(("hub::download", "hub"), edges)
        # super::Hub is the parent module itself; `pub(in crate::hub)` is no edge
        self.assertIn(("hub::fetch", "hub"), edges)
        # strings, comments, test modules, `mod x;` and the root make no edges
        self.assertFalse([e for e in edges if e[0] == "util"], edges)
        self.assertFalse([e for e in edges if e[0] == "" or e[1] == ""], edges)
        self.assertFalse([e for e in edges if e[0] == "hub"], edges)
        self.assertEqual(len(edges), 5, edges)

    def test_long_functions(self):
        rc, out, _ = self.run_script("--crate", "fake-a")
        self.assertEqual(rc, 1)
        self.assertIn("crates/fake-a/src/long.rs:3: fn long_one is 85 lines (limit 80)", out)
        self.assertNotIn("exactly_80", out)
        self.assertNotIn("fn allowed", out)
        self.assertNotIn("in_macro", out)
        self.assertNotIn("long_test", out)
        self.assertIn("1 long fns, 1 long fns allowed", out)
        rc, out, _ = self.run_script("--crate", "fake-a", "-v")
        self.assertIn("fn allowed is 90 lines, allowed: a table, clearer in one piece", out)
        rc, out, _ = self.run_script("--crate", "fake-a", "--max-fn-lines", "79")
        self.assertIn("fn exactly_80 is 80 lines (limit 79)", out)

    def test_allow_needs_reason(self):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "crates/c/src/lib.rs")
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as f:
                f.write("// check_structure: allow-long-fn\nfn f() {\n" + body_lines(85) + "}\n")
            p = subprocess.run([sys.executable, SCRIPT, "--root", root],
                               stdout=subprocess.PIPE, universal_newlines=True)
            self.assertEqual(p.returncode, 1)
            self.assertIn("src/lib.rs:2: fn f is 87 lines (limit 80); its allow-long-fn comment "
                          "needs a (reason)", p.stdout)

    def test_clean_crate_exits_zero(self):
        rc, out, _ = self.run_script("--crate", "fake-b")
        self.assertEqual(rc, 0, out)
        self.assertEqual(
            out.strip(),
            "crates/fake-b: ok: 3 files, 1 module edges, 0 cycles, 0 long fns, "
            "0 long fns allowed",
        )
        rc, out, _ = self.run_script("--crate", "fake-b", "-q")
        self.assertEqual((rc, out), (0, ""))

    def test_unknown_crate(self):
        rc, _, err = self.run_script("--crate", "nope")
        self.assertEqual(rc, 2)
        self.assertIn("no crate 'nope'", err)

    def test_strip_code(self):
        src = 'let a = r#"x " y"# ; let b = \'"\'; let c: &\'a str = "q\\"z"; // c\nfn f<\'b>() {}'
        out = check_structure.strip_code(src)
        self.assertEqual(len(out), len(src))
        self.assertNotIn('"', out)
        self.assertIn("&'a str", out)
        self.assertIn("fn f<'b>() {}", out)
        self.assertNotIn("// c", out)

    def test_bare_child_paths_option(self):
        with tempfile.TemporaryDirectory() as root:
            for rel, text in {
                "crates/c/src/lib.rs": "pub mod ops;\n",
                "crates/c/src/ops/mod.rs": "mod reference;\npub trait Ops {}\n"
                                           "pub fn f() { reference::g() }\n",
                "crates/c/src/ops/reference.rs": "use super::Ops;\npub fn g() {}\n",
            }.items():
                path = os.path.join(root, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
            run = lambda *a: subprocess.run(  # noqa: E731
                [sys.executable, SCRIPT, "--root", root] + list(a),
                stdout=subprocess.PIPE, universal_newlines=True)
            self.assertEqual(run().returncode, 0)
            p = run("--bare-child-paths")
            self.assertEqual(p.returncode, 1)
            self.assertIn("cycle: src/ops/mod.rs -> src/ops/reference.rs -> src/ops/mod.rs",
                          p.stdout)


if __name__ == "__main__":
    unittest.main()
