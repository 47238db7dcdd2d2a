"""Pure logic stays pure: the contract, the ingest steps, sessions and the simulator never import
Kafka, Faust or ClickHouse clients (they are I/O, and live at the edges: agents/, collector,
producer, storage). Checked on the source, so a stray import fails here before it couples layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pipeline"
PURE = [*sorted((ROOT / "contract").glob("*.py")), *sorted((ROOT / "sessions").glob("*.py")),
        *sorted((ROOT / "grouping").glob("*.py")), *sorted((ROOT / "rollups").glob("*.py")),
        *sorted((ROOT / "issues").glob("*.py")), *sorted((ROOT / "alerts").glob("*.py")),
        *(ROOT / "notify" / name for name in ("__init__.py", "config.py", "engine.py", "matchers.py", "payloads.py")),
        *(p for p in sorted((ROOT / "ingest").glob("*.py")) if p.name != "producer.py"),
        *(p for p in sorted((ROOT / "report").glob("*.py")) if p.name != "build.py"),  # build.py runs the queries
        ROOT / "storage" / "batching.py", ROOT / "storage" / "sql_policy.py", ROOT / "storage" / "http_compression.py", ROOT / "simulate.py", ROOT / "simulate_sessions.py", ROOT / "settings.py", ROOT / "common.py"]
IO_PACKAGES = {"faust", "aiokafka", "clickhouse_connect", "chdb", "aiohttp", "mode"}
PROJECT_PACKAGES = {"pipeline", "agents", "tests", "bench"}
# Leaves: shared by the collector, the worker, sessions and rollups, so they import nothing of the project.
LEAVES = [ROOT / "common.py"]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            roots.add(".")  # a relative import is the project's too
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io_library(path: Path) -> None:
    assert imported_roots(path) & IO_PACKAGES == set()


def test_the_check_sees_imports() -> None:
    # guard against a vacuous pass: the sink does import aiokafka and clickhouse_connect
    assert {"aiokafka", "clickhouse_connect"} <= imported_roots(ROOT / "storage" / "sink.py")


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: str(p.relative_to(ROOT)))
def test_leaf_module_imports_nothing_of_the_project(path: Path) -> None:
    assert imported_roots(path) & (PROJECT_PACKAGES | {"."}) == set()


def test_the_leaf_check_sees_project_imports() -> None:
    # guard against a vacuous pass: the ingest step imports the leaf and the contract
    assert "pipeline" in imported_roots(ROOT / "ingest" / "process.py")
