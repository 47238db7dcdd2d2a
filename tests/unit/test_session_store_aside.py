"""``SessionStore.set_aside`` / ``put_back``: revoked partitions leave the store (no clock steps for
partitions this worker may no longer own) and come back as the very same objects."""

from __future__ import annotations

from agents.sessions import SessionStore
from pipeline.settings import Settings


def test_set_aside_takes_partitions_out_and_put_back_returns_them() -> None:
    store = SessionStore(Settings())
    for p in (0, 1, 2):
        store.restore(p, [])
    originals = dict(store.parts)
    aside = store.set_aside([1, 2, 7])  # 7 is not held: ignored
    assert set(aside) == {1, 2} and set(store.parts) == {0} and set(store.last_input) == {0}
    store.put_back({1: aside[1]})
    assert set(store.parts) == {0, 1} and store.parts[1] is originals[1] and 1 in store.last_input
