"""Every loss is visible: a store that cannot take the counts (full) keeps them in memory,
says so at close at ERROR with the number, and gets them with the next commit that works.

The store here is a real SQLite file whose connection is capped with ``PRAGMA
max_page_count``: SQLite then fails exactly as on a full disk (SQLITE_FULL, "database or
disk is full"). The same on a real full file system, through a real server, is in
test_faults.py.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.recording import Recorder
from sidecar.recording._sqlite import SQLiteStore
from tests.stores import make_row


class CappedStore(SQLiteStore):
    """A SQLite store whose file may not grow past ``cap`` pages while ``cap`` is set."""

    cap: int | None = None

    def _connect(self) -> Any:
        conn = super()._connect()
        if self.cap is not None:
            conn.execute(f"PRAGMA max_page_count = {int(self.cap)}")
        return conn

    def set_cap(self, cap: int | None) -> None:
        self.cap = cap
        self.close()  # every connection is reopened with the new cap


def _pages(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])


def _wait(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def _big_row(i: int) -> tuple[Any, ...]:
    return make_row(f"r-{i:06d}", 1000.0 + i, raw='{"pad": "' + "x" * 2000 + '"}')


def test_a_full_store_keeps_the_drop_count_and_gets_it_with_the_next_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "records.db"
    store = CappedStore(f"sqlite:///{db}")
    store.migrate()
    recorder = Recorder(store, max_queue=30, batch_size=10, linger=0.0, max_backoff=0.05)
    acked = 0
    for i in range(5):
        acked += recorder.enqueue([_big_row(i)])
    assert recorder.flush(5.0)
    store.set_cap(_pages(db))  # full: not one page more
    for i in range(5, 105):
        acked += recorder.enqueue([_big_row(i)])
    assert _wait(lambda: recorder.counters.failed_commits >= 2)
    dropped = recorder.counters.dropped
    assert dropped >= 70 and acked == 5 + (100 - dropped)
    # The store holds no trace of them ...
    assert [w.dropped for w in store.writers()] == [0]
    # ... the recorder does, as drops the store has not taken.
    assert recorder.unstored_dropped() == dropped
    assert not recorder.flush(5.0, fail_fast=True)

    store.set_cap(None)  # room again: the queued rows and the count go in together
    assert recorder.flush(10.0)
    [writer] = store.writers()
    assert writer.dropped == dropped and recorder.unstored_dropped() == 0
    assert store.count()["predictions"] == writer.written == acked
    assert 100 + 5 - store.count()["predictions"] == writer.dropped  # acknowledged - stored

    # Full again at shutdown: the rows left and the count are lost to the store, not to the log.
    store.set_cap(_pages(db))
    for i in range(105, 125):
        recorder.enqueue([_big_row(i)])
    with caplog.at_level(logging.ERROR, logger="sidecar.recording"):
        assert not recorder.close(timeout=10.0)
    total = recorder.counters.dropped
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    found = [re.search(r"lost (\d+) records in all.*count of (\d+)", m) for m in messages]
    [match] = [m for m in found if m]
    assert int(match[1]) == total
    assert int(match[2]) == total - dropped == recorder.unstored_dropped()
    store.set_cap(None)
    stored = store.count()["predictions"]
    [writer] = store.writers()
    # What the store says plus what the log said is every record that did not get in.
    assert 125 - stored == writer.dropped + int(match[2])
    store.close()
