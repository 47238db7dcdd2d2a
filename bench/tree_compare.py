"""What the three identity checks (``ingest_identity``, ``ingest_sends_identity``, ``session_identity``)
share: export a git revision with ``git archive``, run the same script's ``--dump`` once in that tree
and once in this checkout (each importing its own ``pipeline``), and hand back both pickled results.
Each check keeps its own traffic and its own summary line per scenario; ``run_check`` is the whole
check around them."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent

Dump = Callable[[str, int, int], None]  # (pickle path, events, sessions)
Summary = Callable[[str, list[dict[str, bytes]]], str]  # (scenario, its polls or steps) -> one line


def this_generator() -> ModuleType:
    """``pipeline/simulate_load.py`` of the checkout running the check, whichever tree's ``pipeline`` the
    dump imports: both sides get the same traffic, so a change of the generator is not reported as a
    difference of the code under test (its helpers, ``pipeline.simulate``, still come from that tree)."""
    name = "_simulate_load_of_the_check"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "pipeline" / "simulate_load.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_check(doc: str | None, script: str, dump: Dump, prefix: str, unit: str, summarize: Summary,
              env: dict[str, str] | None = None) -> int:
    """A check's ``main``: in the ``--dump`` child write this tree's results (0); otherwise compare
    the base revision's results with this checkout's and print the first difference (1), or one
    ``summarize`` line per scenario and ``IDENTICAL`` with a digest (0)."""
    got = dumps_to_compare(doc, script, dump, prefix, env)
    if got is None:
        return 0
    args, base, this = got
    difference, digest = first_difference(base, this, unit)
    if difference:
        print(difference)
        return 1
    for scenario, items in base.items():
        print(summarize(scenario, items))
    print(f"IDENTICAL against {args.base}: {len(base)} scenarios, sha256 {digest}")
    return 0


def dumps_to_compare(doc: str | None, script: str, dump: Dump, prefix: str,
                     env: dict[str, str] | None = None) -> tuple[argparse.Namespace, Any, Any] | None:
    """Parse the check's arguments. In the ``--dump`` child: write this tree's results and return
    None. Otherwise: (arguments, the base revision's results, this checkout's results)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    parser.add_argument("--events", type=int, default=20_000, help="simulated events per shape")
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--dump", help=argparse.SUPPRESS)  # internal: write this tree's outputs here
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        sys.path.insert(0, args.root)
        dump(args.dump, args.events, args.sessions)
        return None
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        base_tree = Path(tmp) / "base"
        base_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive.stdout, check=True)
        results = {}
        for label, root in (("base", base_tree), ("this", REPO)):
            target = Path(tmp) / f"{label}.pickle"
            subprocess.run([sys.executable, script, "--dump", str(target), "--root", str(root),
                            "--events", str(args.events), "--sessions", str(args.sessions)], check=True, cwd=root,
                           env={**os.environ, **(env or {})})
            with open(target, "rb") as f:
                results[label] = pickle.load(f)
    return args, results["base"], results["this"]


def first_difference(base: dict[str, list[dict[str, bytes]]], this: dict[str, list[dict[str, bytes]]],
                     unit: str) -> tuple[str | None, str]:
    """Compare two dumps ({scenario: [{field: bytes} per poll or step]}): a description of the first
    difference (None when identical) with the bytes around it, and a sha256 prefix of all of ``base``."""
    if base.keys() != this.keys():
        return f"DIFFERENT: scenarios {sorted(base)} vs {sorted(this)}", ""
    total = hashlib.sha256()
    for scenario, items in base.items():
        if len(items) != len(this[scenario]):
            return f"DIFFERENT: {scenario}: {len(items)} vs {len(this[scenario])} {unit}s", ""
        for i, (a, b) in enumerate(zip(items, this[scenario])):
            if a.keys() != b.keys():
                return f"DIFFERENT: {scenario} {unit} {i}: fields {sorted(a)} vs {sorted(b)}", ""
            for name, x in a.items():
                y = b[name]
                if x != y:
                    at = next((j for j, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
                    return (f"DIFFERENT: {scenario} {unit} {i} field {name} at byte {at}:\n"
                            f"  base ...{x[max(0, at - 150):at + 150]!r}\n  this ...{y[max(0, at - 150):at + 150]!r}"), ""
                total.update(x)
    return None, total.hexdigest()[:16]
