"""Drop events already seen, by event_id, within a bounded memory."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from uuid import UUID

import orjson


class RecentIds:
    """Remembers at least the last ``capacity`` ids seen and at most the last ``2 * capacity``.

    SDKs retry flushes, so the same event_id arrives twice within seconds or minutes; a bounded
    recent set catches those without unbounded memory. Replays after a worker crash are caught
    downstream by the sink's per-source offset marks, not here.

    Two generations of plain sets: when the current one holds ``capacity`` ids it becomes the
    previous one and the oldest generation is dropped whole. A UUID is kept as its 128-bit int, not
    as the UUID object validation made: ~90 bytes an id instead of ~250 with an ordered dict of
    UUIDs (the worker's memory per open session, issue 14).

    >>> ids = RecentIds(capacity=2)
    >>> ids.first_time("a"), ids.first_time("a"), ids.first_time("b")
    (True, False, True)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._current: set[Hashable] = set()
        self._previous: set[Hashable] = set()

    def first_time(self, event_id: Hashable) -> bool:
        key = event_id.int if type(event_id) is UUID else event_id
        if key in self._current or key in self._previous:
            return False
        self._add(key)
        return True

    def _add(self, key: Hashable) -> None:
        current = self._current
        current.add(key)
        if len(current) >= self.capacity:
            self._previous, self._current = current, set()

    def remember(self, raw_values: Iterable[bytes]) -> int:
        """Mark the event ids of raw messages (one event or an array) as seen, without judging them:
        what a worker taking over a partition reads back from before its committed offset. Messages
        that are not JSON, and ids that are not UUIDs, are passed over (validation rejected them then
        too). Returns how many ids were new."""
        new = 0
        for value in raw_values:
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            for event in doc if isinstance(doc, list) else (doc,):
                event_id = event.get("event_id") if isinstance(event, dict) else None
                if not isinstance(event_id, str):
                    continue
                try:
                    key = UUID(event_id)
                except ValueError:
                    continue
                new += RecentIds.first_time(self, key)
        return new

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


class StagedIds(RecentIds):
    """``RecentIds`` for a runner that may redo a batch: the ids a batch sees for the first time are
    held apart (still caught as duplicates within the batch) until ``keep()``, once the batch is
    committed; ``drop()`` forgets them, so a batch redone after a failure is not taken for its own
    duplicate. Same cost per id as ``RecentIds.first_time``; ``keep`` is one set union per batch.

    >>> ids = StagedIds(capacity=10)
    >>> ids.first_time("a"), ids.first_time("a")
    (True, False)
    >>> ids.drop(); ids.first_time("a")
    True
    >>> ids.keep(); ids.drop(); ids.first_time("a")
    False
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._staged: dict[Hashable, None] = {}  # in arrival order, for the rotation in ``keep``

    def first_time(self, event_id: Hashable) -> bool:
        key = event_id.int if type(event_id) is UUID else event_id
        if key in self._current or key in self._previous or key in self._staged:
            return False
        self._staged[key] = None
        return True

    def keep(self) -> None:
        """The staged ids become remembered ones (the generations rotate as with ``first_time``)."""
        staged, self._staged = self._staged, {}
        if len(self._current) + len(staged) < self.capacity:
            self._current.update(staged)
            return
        for key in staged:
            if key not in self._current and key not in self._previous:
                self._add(key)

    def drop(self) -> None:
        self._staged = {}
