"""Start the pipeline's real processes (``pulse sink|worker|collector``) for a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.settings import Settings
from tests.conftest import settings_env


class PipelineProcs:
    def __init__(self, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", name], stdout=log, stderr=subprocess.STDOUT,
                                env={**self.env, **extra_env})
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_http(self, name: str, url: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"{name} did not answer {url} in {timeout_s}s:\n{self.log(name)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


@contextmanager
def running_pipeline(settings: Settings, log_dir: Path, names: tuple[str, ...] = ("sink", "worker", "collector")
                     ) -> Iterator[PipelineProcs]:
    procs = PipelineProcs(settings, log_dir)
    try:
        for name in names:
            procs.start(name)
        if "sink" in names:
            procs.wait_http("sink", f"http://127.0.0.1:{settings.sink.port}/ping")
        if "collector" in names:
            procs.wait_http("collector", f"http://127.0.0.1:{settings.collector.port}/health")
        yield procs
    finally:
        procs.stop_all()
