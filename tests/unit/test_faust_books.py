"""agents/skips.py reads faust-streaming's private consumer books: the installed faust must have
them (else the worker stops at start-up with a clear error instead of running unguarded)."""

from __future__ import annotations

from types import SimpleNamespace

import faust
import pytest

from agents.skips import FaustBooks


@pytest.fixture
def app() -> faust.App:
    # Building the app and its consumer opens no connection.
    return faust.App("books-probe", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)


def test_the_installed_faust_has_the_private_books(app: faust.App) -> None:
    books = FaustBooks(app)
    books.check()
    from faust.types import TP

    tp = TP("t", 0)
    assert books.committed_offset(tp) is None
    app.consumer._committed_offset[tp] = 42
    assert books.committed_offset(tp) == 42
    assert books.unacked() == []


def test_a_faust_without_them_stops_the_worker_with_a_clear_error() -> None:
    renamed = SimpleNamespace(consumer=SimpleNamespace(_committed_offsets={}, _unacked=set()))
    with pytest.raises(RuntimeError, match=r"_committed_offset is NoneType.*_unacked_messages is NoneType.*"
                                           r"consumer_generation_id is missing"):
        FaustBooks(renamed).check()  # type: ignore[arg-type]
