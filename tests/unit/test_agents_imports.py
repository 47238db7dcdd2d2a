"""The worker's modules import each other without a cycle: the wiring module (``agents/app.py``)
imports the stages, never the other way round (issue 14: ``WorkerState`` lived in the wiring module,
so every stage imported it and it imported every stage). Checked on the source, every import
statement counted (also those inside functions, which hide a cycle rather than end it), and by
importing each module alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parents[2] / "agents"
MODULES = sorted(f"agents.{p.stem}" for p in AGENTS.glob("*.py") if p.stem != "__init__")


def agents_imports(path: Path) -> set[str]:
    """The ``agents.*`` modules that ``path`` imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("agents.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "agents":
                found |= {f"agents.{alias.name}" for alias in node.names}
            elif node.module.startswith("agents."):
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add(f"agents.{node.module}" if node.module else "agents")
    return found & set(MODULES)


def graph() -> dict[str, set[str]]:
    return {m: agents_imports(AGENTS / f"{m.split('.')[1]}.py") for m in MODULES}


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_agents_import_graph_has_no_cycle() -> None:
    assert cycle_in(graph()) is None


def test_only_the_entry_points_import_the_wiring_module() -> None:
    importers = {m for m, deps in graph().items() if "agents.app" in deps}
    assert importers == {"agents.worker"}


def test_the_cycle_check_sees_a_cycle() -> None:
    # guard against a vacuous pass: the graph is read from the source, and a cycle is reported
    edges = graph()
    assert "agents.stage" in edges["agents.ingest"] and "agents.state" in edges["agents.app"]
    edges["agents.state"] = {"agents.app"}
    found = cycle_in(edges)
    assert found is not None and found[0] == found[-1] and {"agents.app", "agents.state"} <= set(found)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120,
                          cwd=AGENTS.parent)
    assert done.returncode == 0, done.stderr[-2000:]
