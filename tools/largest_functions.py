"""The longest functions of rise_data and rise_agent (the house rule is under ~60 lines).

Usage: python tools/largest_functions.py [--top 10] [--limit 60]   (exit 1 if any is over --limit with --strict)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def functions(package: Path) -> list[tuple[int, str]]:
    """(lines, 'path:line name') of every function and method under ``package``."""
    out = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                out.append((n, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--strict", action="store_true", help="exit 1 if a function is over --limit lines")
    a = ap.parse_args()
    found = sorted(functions(ROOT / "rise_data") + functions(ROOT / "rise_agent"), reverse=True)
    for n, where in found[: a.top]:
        print(f"{n:4d}  {where}")
    over = [f for f in found if f[0] > a.limit]
    print(f"{len(found)} functions, {len(over)} over {a.limit} lines")
    return 1 if a.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
