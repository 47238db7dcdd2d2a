"""One /metrics for all collector processes (``PULSE_COLLECTOR_PROCESSES`` > 1).

Each process counts what it served. Without help, a scrape shows the counters of whichever process
the kernel handed the connection to, so Prometheus would see totals jump between processes' values.
prometheus-client's multiprocess mode fixes that: every process writes its values to its own
mmapped files (``<type>_<pid>.db``) in one directory, and any process answers a scrape by merging
all of them (``MultiProcessCollector``): counters and histograms summed, gauges as each gauge's
``multiprocess_mode`` says (see ``pipeline/metrics.py``).

Import order matters. prometheus-client chooses its value class (a float in memory, or an mmap
file per process) once, when ``prometheus_client.values`` is first imported, from the environment
variable ``PROMETHEUS_MULTIPROC_DIR``; ``pipeline.metrics`` creates the metrics at import, and the
collector app imports it. So ``enable`` must run before anything imports prometheus_client: the
entry points (``pulse collector``, ``python -m pipeline.collector``) call it right after reading
the settings and import the app only afterwards, and this module imports prometheus_client only
inside functions. ``enable`` raises when prometheus_client came first, and ``run_collector``
refuses to start several processes unless ``active()``: better no start than wrong counters.

The directory is per run: ``<PULSE_COLLECTOR_METRICS_DIR>/pulse-collector-metrics-<pid of the first
process>``, emptied at start (a reused pid must not add an old run's counts), removed at a clean
exit; directories of runs whose first process is gone (killed) are removed at the next start.
The environment variable is the one piece of global state, and prometheus-client requires it.
With one process nothing here runs and /metrics serves the default registry, as before.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.settings import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
RUN_DIR_PREFIX = "pulse-collector-metrics-"
_RUN_DIR = re.compile(re.escape(RUN_DIR_PREFIX) + r"(\d+)")


def stale_run_dirs(names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """The run directories (by name) whose first collector process is no longer running."""
    out = []
    for name in names:
        m = _RUN_DIR.fullmatch(name)
        if m and not alive(int(m.group(1))):
            out.append(name)
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not our directory to remove
        return True
    return True


def prepare_run_dir(base: Path, pid: int, alive: Callable[[int], bool] = pid_alive) -> Path:
    """A fresh, empty directory for this run's metric files; dead runs' directories removed."""
    base.mkdir(parents=True, exist_ok=True)
    for name in stale_run_dirs((p.name for p in base.iterdir()), alive):
        if name != f"{RUN_DIR_PREFIX}{pid}":
            shutil.rmtree(base / name, ignore_errors=True)
    run_dir = base / f"{RUN_DIR_PREFIX}{pid}"
    shutil.rmtree(run_dir, ignore_errors=True)  # the same pid in an earlier run: its counts must not add up
    run_dir.mkdir(mode=0o700)
    return run_dir


def enable(settings: Settings) -> Path | None:
    """With several collector processes: make this run's directory and switch prometheus-client to
    multiprocess mode. Call before anything imports prometheus_client (see the module docstring).
    The directory, or None with one process (nothing changes then)."""
    if settings.collector.processes <= 1:
        return None
    if "prometheus_client" in sys.modules and not os.environ.get(ENV):
        raise RuntimeError("prometheus_client was imported before the collector's shared metrics were enabled: "
                           "call pipeline.collector.shared_metrics.enable(settings) before importing "
                           "pipeline.collector.app or pipeline.metrics")
    run_dir = prepare_run_dir(settings.collector.metrics_dir, os.getpid())
    os.environ[ENV] = str(run_dir)
    if not active():
        raise RuntimeError(f"prometheus_client did not switch to multiprocess mode ({ENV}={run_dir})")
    return run_dir


def active() -> bool:
    """True when metric values live in per-process files that a scrape merges."""
    if not os.environ.get(ENV):
        return False
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def scrape_registry() -> Any:
    """What /metrics serves: every process's values merged when ``active()``, else the default registry."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if not active():
        return REGISTRY
    registry = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(registry)
    root = first_pid()
    if root is not None:
        registry.register(EveryProcess(root))
    return registry


def first_pid() -> int | None:
    """The pid of this run's first collector process (the run directory is named after it)."""
    m = _RUN_DIR.fullmatch(Path(os.environ.get(ENV, "")).name)
    return int(m.group(1)) if m else None


class EveryProcess:
    """``process_*`` series (CPU seconds, resident and virtual memory, open and max fds, start time)
    of every collector process, each labelled ``pid``, read from ``/proc`` at scrape time.

    prometheus-client's ``ProcessCollector`` describes the process that answers the scrape, which
    in multiprocess mode would be whichever one the kernel picked; its multiprocess docs leave
    process metrics out. The processes are the first one and its children (``/proc``), so any of
    them answers for all.
    """

    def __init__(self, root_pid: int, children: Callable[[int], list[int]] | None = None) -> None:
        from pipeline.supervise import child_pids

        self.root_pid = root_pid
        self.children = children or child_pids

    def collect(self) -> Iterable[Any]:
        from prometheus_client import ProcessCollector
        from prometheus_client.metrics_core import Metric

        families: dict[str, Any] = {}
        for pid in [self.root_pid, *self.children(self.root_pid)]:
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                            family.unit)
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(families.values())


def process_exited(pid: int) -> None:
    """A collector process is gone: drop its files of ``live*`` gauges (its counters still count)."""
    if active():
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid)


def remove_run_dir() -> None:
    """At the end of a run (every process stopped): the directory goes."""
    run_dir = os.environ.get(ENV)
    if run_dir and _RUN_DIR.fullmatch(Path(run_dir).name):
        shutil.rmtree(run_dir, ignore_errors=True)
