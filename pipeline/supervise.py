"""Child processes of the pipeline (``pulse <name>``), for the demo and the integration tests.

Each child logs to ``<log_dir>/<name>.log`` and runs in its own session, so a Ctrl-C in the
terminal reaches only the parent, which then stops the children in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux ``/proc``; empty once it is gone): the
    collector's forked processes, for the benches and tests that measure or stop them."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


class ChildProcesses:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        """``env``: the children's whole environment (default: this process's)."""
        self.log_dir = log_dir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start ``pulse <name>`` (again, if it ran before: same log file, appended)."""
        env = {**(self.env if self.env is not None else os.environ), **extra_env}
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", name], stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str, chars: int = 4000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check_alive(self) -> None:
        """Raise RuntimeError, with the end of its log, if a child has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; last log lines:\n{self.log(name)}")

    def wait_http(self, url: str, timeout_s: float = 90.0) -> None:
        """Until ``url`` answers 2xx; fails early (RuntimeError) when a child dies meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")

    def wait_ready(self, worker_port: int, timeout_s: float = 90.0) -> dict[str, Any]:
        """Until the worker's /health says ready (tables restored, streams running); its health doc."""
        health = poll_json(f"http://127.0.0.1:{worker_port}/health", lambda h: bool(h.get("ready")), timeout_s,
                           self.check_alive)
        if health is None:
            raise TimeoutError(f"the worker was not ready within {timeout_s:.0f}s\n{self.log('worker')}")
        return health

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        """Signal one child and wait (SIGKILL after ``timeout_s``); returns its exit code."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        return self._wait(proc, timeout_s)

    def stop_all(self, timeout_s: float = 20.0, on_stopped: Callable[[str, int], None] | None = None) -> None:
        """SIGTERM every child at once (newest first), then wait for each."""
        children = list(reversed(self.procs.items()))
        for _, proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in children:
            code = self._wait(proc, timeout_s)
            if on_stopped:
                on_stopped(name, code)

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def poll_json(url: str, until: Callable[[dict[str, Any]], bool], timeout_s: float,
              check: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """GET ``url`` (JSON) until ``until(doc)`` holds: that doc, or None at the deadline. ``check`` runs
    before each try (e.g. ``check_alive``: fail early when a child died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                doc = json.loads(resp.read())
            if isinstance(doc, dict) and until(doc):
                return doc
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    return None
