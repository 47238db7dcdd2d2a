"""What the worker's /health reports, updated by the runner and the agents after each batch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class WorkerState:
    started_at: float = field(default_factory=time.time)
    last_batch_at: float | None = None
    batches: int = 0
    messages: int = 0
    last_error: str | None = None
    issue_batches: int = 0
    last_issue_batch_at: float | None = None
