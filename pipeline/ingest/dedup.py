"""Drop events already seen, by event_id, within a bounded memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RecentIds:
    """The last ``capacity`` ids seen, oldest evicted first.

    SDKs retry flushes, so the same event_id arrives twice within seconds or minutes; a bounded
    recent set catches those without unbounded memory. Replays after a worker crash are caught
    downstream by the sink's per-source offset marks, not here.

    >>> ids = RecentIds(capacity=2)
    >>> ids.first_time("a"), ids.first_time("a"), ids.first_time("b")
    (True, False, True)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()

    def first_time(self, event_id: Hashable) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)
