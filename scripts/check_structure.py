"""Structure checks for src/coalqa (issue 19): long functions, cross-package private imports, single homes.

    python scripts/check_structure.py [--max_lines 80]

Prints the longest functions (lines from ``def`` to the end of the body, decorators excluded), every import of a
``_private`` name from another package (or a test importing one), and where each shared step is implemented; exits 1
when a function is over the limit or a private name crosses a package.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "coalqa"
# one implementation each: a pattern that only the implementation's own definition matches
SINGLE_HOMES = {
    "model start-up (base + adapter + index, checks, notes)": r"^def start_model\(|(?<![.\w])load_model\(",
    "think splitting": r"split\(THINK_CLOSE",
    "grounded answer rendering (console)": r"\[cyan\]\\\\\[",
    "YAML settings loading": r"yaml\.safe_load\(",
}


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def _private(name: str) -> bool:
    """``_name`` is private; a dunder such as ``__version__`` is public by convention."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max_lines", type=int, default=80)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    failed = False

    lengths = []
    private = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in functions(tree):
            lengths.append((fn.end_lineno - fn.lineno + 1, f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coalqa"):
                parts = node.module.split(".")
                target_pkg = parts[1] if len(parts) > 1 else "coalqa"
                for alias in node.names:
                    if _private(alias.name) and target_pkg != package_of(path):
                        private.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {alias.name}")
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coalqa"):
                private += [f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {a.name}"
                            for a in node.names if _private(a.name)]

    lengths.sort(reverse=True)
    print(f"longest functions in src/ (limit {args.max_lines} lines):")
    for n, where in lengths[: args.top]:
        print(f"  {n:4d}  {where}")
    over = [x for x in lengths if x[0] > args.max_lines]
    failed |= bool(over)
    print(f"  {len(over)} over the limit")
    print("cross-package imports of _private names:")
    for line in private or ["  none"]:
        print(f"  {line}" if line != "  none" else line)
    failed |= bool(private)
    print("implementations (grep over src/coalqa):")
    for what, pattern in SINGLE_HOMES.items():
        hits = []
        for path in sorted(SRC.rglob("*.py")):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(pattern, line.strip()):
                    hits.append(f"{path.relative_to(ROOT)}:{i}")
        print(f"  {what}: {len(hits)} → {', '.join(hits)}")
    demo = SRC / "demo" / "run.py"  # the demo's orchestration (its steps: demo/steps.py, its settings: demo/config.py)
    n = len(demo.read_text(encoding="utf-8").splitlines())
    print(f"{demo.relative_to(ROOT)} (orchestration): {n} lines (limit 350)")
    failed |= n > 350
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
