"""Print the module import graph of rise_data + rise_agent (read with ``ast``, nothing is imported).

Exits 1 if the graph has a cycle or if any rise_data module imports rise_agent (the data side must
never depend on the agent). Every import counts, also those inside functions: a lazy import still
ties the two modules together. Usage: ``python tools/import_graph.py [--quiet]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rise_data", "rise_agent")


def modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``target`` is or lies in (``a.b.c`` may be the name ``c`` of ``a.b``)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the packages that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # ``from pkg import mod`` depends on pkg.mod; ``from pkg import name`` on pkg (its __init__)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            hit = _resolve(t, known)
            if hit and hit != name:
                found.add(hit)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    if "--quiet" not in argv:
        for name in sorted(graph):
            print(f"{name} -> {', '.join(sorted(graph[name])) or '-'}")
    bad = [
        f"{a} imports {b}"
        for a in sorted(graph)
        if a.startswith("rise_data")
        for b in sorted(graph[a])
        if b.startswith("rise_agent")
    ]
    loops = cycles(graph)
    for line in bad:
        print(f"error: {line} (rise_data must never import rise_agent)", file=sys.stderr)
    for comp in loops:
        print(f"error: import cycle among {', '.join(comp)}", file=sys.stderr)
    print(
        f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(loops)} cycles, {len(bad)} rise_data -> rise_agent imports"
    )
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
