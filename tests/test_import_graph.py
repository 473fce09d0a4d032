"""tools/import_graph.py: the module graph read with ast, its cycles, and the data side never importing the agent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).parents[1] / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cycles_found_in_a_synthetic_graph():
    g = _tool()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set(), "f": {"f"}}
    assert g.cycles(graph) == [["a", "b", "c"]]  # a self-import is not a cycle between modules
    assert g.cycles({"a": {"b"}, "b": set()}) == []


def test_the_agent_side_has_no_cycle_and_the_data_side_never_imports_it():
    g = _tool()
    known = g.modules()
    graph = {name: g.imports(name, path, known) for name, path in known.items()}
    assert "rise_agent.training.session" in graph["rise_agent.training.online"]  # edges are read
    assert not [c for c in g.cycles(graph) if any(m.startswith("rise_agent") for m in c)]
    assert not [
        (a, b) for a in graph if a.startswith("rise_data") for b in graph[a] if b.startswith("rise_agent")
    ]
    assert (
        not {"rise_agent.training.online", "rise_agent.training.offline"}
        & graph["rise_agent.training.session"]
    )
    out = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=120)
    assert "rise_agent.training.train -> " in out.stdout and out.returncode == (1 if g.cycles(graph) else 0)
