"""Recording: the store contract (memory, SQLite, PostgreSQL), concurrent writers, the
batching recorder and its failure modes, and the bundle's recording and feedback path.

PostgreSQL is required (see ``tests/stores.py``); each test gets its own schema.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import multiprocessing
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge

import sidecar
from sidecar.recording import (
    Label,
    Recorder,
    RecordPolicy,
    Store,
    WriterStats,
    open_store,
)
from sidecar.recording._memory import MemoryStore
from sidecar.recording._postgres import PostgresStore
from sidecar.recording._records import COLUMNS, dumps
from sidecar.recording._schema import LATEST
from sidecar.recording._sqlite import SQLiteStore
from tests import models
from tests.stores import (
    KINDS,
    connections_of,
    fresh_store,
    make_row,
    make_rows,
    migrate_worker,
    pg_admin,
    pg_schema,
    pg_url,
    store_url,
    terminate_connections,
    write_worker,
)

LABELS = ("cat", "dog", "fox")
Row = tuple[Any, ...]


# -- helpers -------------------------------------------------------------------------------


def joined(store: Store, **kw: Any) -> list[dict[str, Any]]:
    """Every joined row, all chunks concatenated."""
    return [row for chunk in store.iter_joined(**kw) for row in chunk]


def by_id(store: Store) -> dict[str, dict[str, Any]]:
    return {row["request_id"]: row for row in joined(store)}


def as_row(record: dict[str, Any]) -> Row:
    """A joined row back in COLUMNS order, without the label."""
    return tuple(record[c] for c in COLUMNS)


def meta_rows(store: Store) -> list[tuple[str, str]] | None:
    """``sidecar_meta`` read with a separate connection (``None`` for the memory store)."""
    if isinstance(store, SQLiteStore):
        import sqlite3

        conn = sqlite3.connect(store.path)
        try:
            return [tuple(r) for r in conn.execute("SELECT key, value FROM sidecar_meta")]
        finally:
            conn.close()
    if isinstance(store, PostgresStore):
        with psycopg.connect(store.url) as conn:
            return [tuple(r) for r in conn.execute("SELECT key, value FROM sidecar_meta")]
    return None


def pg_count(schema: str) -> int:
    """Rows in a schema's prediction table, read over a connection of its own."""
    with pg_admin() as admin:
        row = admin.execute(f'SELECT COUNT(*) FROM "{schema}".sidecar_records').fetchone()
    return int(row[0])


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)


def enqueue_timed(recorder: Recorder, rows: Sequence[Row]) -> tuple[list[bool], float]:
    """Enqueue one row per call; what each call returned and the slowest call (seconds)."""
    results: list[bool] = []
    slowest = 0.0
    for row in rows:
        t0 = time.perf_counter()
        results.append(recorder.enqueue([row]))
        slowest = max(slowest, time.perf_counter() - t0)
    return results, slowest


def run_processes(target: Callable[..., None], args: Sequence[tuple[Any, ...]]) -> None:
    """Run ``target(*a, barrier)`` in a spawned process per ``a``, all at once; all must exit 0."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    procs = [ctx.Process(target=target, args=(*a, barrier)) for a in args]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(90)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    assert [p.exitcode for p in procs] == [0] * len(procs)


class CountingStore(MemoryStore):
    """A memory store that records the size of each batch written."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def write_batch(self, batch: pa.Table, writer: WriterStats | None) -> int:
        n = super().write_batch(batch, writer)
        self.batches.append(batch.num_rows)
        return n


class GatedStore(MemoryStore):
    """A memory store whose writes wait for ``release``, then fail."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_batch(self, batch: pa.Table, writer: WriterStats | None) -> int:
        self.entered.set()
        self.release.wait(10)
        raise RuntimeError("the write never made it")


@pytest.fixture
def quiet_recorder_log(caplog: pytest.LogCaptureFixture) -> None:
    """Failing stores log a warning per retry; keep them out of the report."""
    caplog.set_level("CRITICAL", logger="sidecar.recording")


# == 1. the store contract =======================================================================


class TestStoreContract:
    def test_migrate_is_idempotent(self, store: Store, tmp_path: Path) -> None:
        assert store.migrate() == LATEST
        store.write_predictions([make_row("kept", 1.0)], None)
        assert store.migrate() == LATEST
        assert store.migrate() == LATEST
        assert store.count() == {"predictions": 1, "labels": 0}
        meta = meta_rows(store)
        if meta is not None:  # the SQL stores keep their version in sidecar_meta
            assert meta == [("schema_version", str(LATEST))]
            again = open_store(store.url)  # another opener (migrates) sees the same store
            try:
                assert again.migrate() == LATEST
                assert again.count() == {"predictions": 1, "labels": 0}
            finally:
                again.close()
            assert meta_rows(store) == [("schema_version", str(LATEST))]

    def test_write_predictions_and_count(self, store: Store) -> None:
        rows = make_rows("r", 10)
        # Cells that must survive every store byte for byte: control characters and quotes
        # in the raw JSON, NaN, a candidate model's slots and a shadow error.
        rows[3] = make_row(
            "r-000003",
            1003.0,
            raw=dumps(
                {"note": "tab\there\nnew line \\ back 'single' \"double\" \u00fc \U0001f600"}
            ),
            advanced_prediction=dumps(float("nan")),
            advanced_proba=None,
            baseline_prediction=None,
            baseline_proba=None,
            candidate_version="cand-1",
            candidate_prediction=dumps(2.5),
            candidate_latency_ms=3.0,
            baseline_latency_ms=None,
            shadow_error="timeout: no answer within 0.2 s",
        )
        assert store.write_predictions(rows, None) == 10
        assert store.count() == {"predictions": 10, "labels": 0}
        out = joined(store)
        assert [as_row(r) for r in out] == rows
        assert all(r["label"] is None and r["label_ts"] is None for r in out)
        assert math.isnan(json.loads(out[3]["advanced_prediction"]))
        assert store.write_predictions([], None) == 0
        assert store.count() == {"predictions": 10, "labels": 0}

    def test_duplicate_request_id_first_wins(self, store: Store) -> None:
        first = make_row("dup", 5.0, advanced_prediction=dumps("first"))
        store.write_predictions([first], None)
        store.write_predictions(
            [make_row("dup", 6.0, advanced_prediction=dumps("second")), make_row("other", 7.0)],
            None,
        )
        # ... and within one (small) batch, the first row for an id is the one kept.
        store.write_predictions(
            [
                make_row("twice", 8.0, advanced_prediction=dumps("a")),
                make_row("twice", 9.0, advanced_prediction=dumps("b")),
            ],
            None,
        )
        assert store.count() == {"predictions": 3, "labels": 0}
        rows = by_id(store)
        assert as_row(rows["dup"]) == first
        assert rows["twice"]["ts"] == 8.0
        assert json.loads(rows["twice"]["advanced_prediction"]) == "a"

    def test_upsert_labels(self, store: Store) -> None:
        ids = [f"r-{i:06d}" for i in range(6)]
        store.write_predictions(make_rows("r", 6), None)

        result = store.upsert_labels(
            [Label(ids[0], "cat", ts=10.0), Label("nope", "dog"), Label(ids[2], 7, ts=11.0)]
        )
        assert result.accepted == 2
        assert result.unknown_request_ids == ("nope",)
        assert result.to_dict() == {"accepted": 2, "unknown_request_ids": ["nope"]}
        assert store.count() == {"predictions": 6, "labels": 2}
        assert "nope" not in by_id(store)

        # A later label for the same id replaces the earlier one.
        assert store.upsert_labels([Label(ids[0], "dog", ts=12.0)]).accepted == 1
        rows = by_id(store)
        assert (json.loads(rows[ids[0]]["label"]), rows[ids[0]]["label_ts"]) == ("dog", 12.0)
        assert (json.loads(rows[ids[2]]["label"]), rows[ids[2]]["label_ts"]) == (7, 11.0)

        # Idempotent: the same labels again leave the same state.
        batch = [Label(ids[1], 2.5, ts=13.0), Label(ids[3], "fox", ts=14.0)]
        store.upsert_labels(batch)
        before = joined(store)
        again = store.upsert_labels(batch)
        assert (again.accepted, again.unknown_request_ids) == (2, ())
        assert joined(store) == before
        assert store.count() == {"predictions": 6, "labels": 4}

        # Any order: ids out of time order, and a label before its prediction is recorded
        # (reported unknown, then accepted once the prediction is there).
        early = Label("late-row", "cat", ts=15.0)
        assert store.upsert_labels([early]).unknown_request_ids == ("late-row",)
        store.write_predictions([make_row("late-row", 0.5)], None)
        result = store.upsert_labels([Label(ids[5], "cat", ts=16.0), early, Label(ids[4], "dog")])
        assert (result.accepted, result.unknown_request_ids) == (3, ())

        # Within one batch the last label for an id wins (not the newest ts); unknown ids
        # are reported once.
        t0 = time.time()
        result = store.upsert_labels(
            [
                Label(ids[1], "a", ts=21.0),
                Label("ghost", "x"),
                Label(ids[1], "b", ts=22.0),
                Label("ghost", "y"),
                Label(ids[1], "c", ts=19.0),
            ]
        )
        assert (result.accepted, result.unknown_request_ids) == (1, ("ghost",))
        rows = by_id(store)
        assert (json.loads(rows[ids[1]]["label"]), rows[ids[1]]["label_ts"]) == ("c", 19.0)
        # A label without ts is stamped with the time it arrived.
        assert t0 - 1.0 <= rows[ids[4]]["label_ts"] <= time.time() + 1.0
        assert rows["late-row"]["label_ts"] == 15.0
        assert store.count() == {"predictions": 7, "labels": 7}

        assert store.upsert_labels([]).to_dict() == {"accepted": 0, "unknown_request_ids": []}

    def test_iter_joined_order_and_window(self, store: Store) -> None:
        rows = [make_row(f"id-{i:03d}", 100.0 + (i * 5) % 7) for i in range(30)]
        random.Random(7).shuffle(rows)
        for start in range(0, 30, 8):  # several batches, in no particular order
            store.write_predictions(rows[start : start + 8], None)
        labelled = {r[0]: ("cat", 50.0 + k) for k, r in enumerate(rows[::3])}
        store.upsert_labels([Label(rid, lab, ts=ts) for rid, (lab, ts) in labelled.items()])

        out = joined(store)
        keys = [(r["ts"], r["request_id"]) for r in out]
        assert keys == sorted((r[1], r[0]) for r in rows)
        for r in out:
            if r["request_id"] in labelled:
                lab, ts = labelled[r["request_id"]]
                assert (json.loads(r["label"]), r["label_ts"]) == (lab, ts)
            else:
                assert (r["label"], r["label_ts"]) == (None, None)

        window = joined(store, since=102.0, until=105.0)  # since inclusive, until exclusive
        assert [(r["ts"], r["request_id"]) for r in window] == [
            k for k in keys if 102.0 <= k[0] < 105.0
        ]
        assert {r["ts"] for r in window} == {102.0, 103.0, 104.0}
        assert [r["ts"] for r in joined(store, since=106.0)] == [106.0] * 4
        assert {r["ts"] for r in joined(store, until=101.0)} == {100.0}
        assert list(store.iter_joined(since=103.0, until=103.0)) == []
        assert list(store.iter_joined(since=200.0)) == []

    def test_iter_joined_pages_through_ties(self, store: Store) -> None:
        tied = [make_row(f"t-{i:02d}", 500.0) for i in range(50)]
        random.Random(1).shuffle(tied)
        store.write_predictions(tied, None)
        store.write_predictions([make_row("before", 499.0), make_row("after", 501.0)], None)
        ids = sorted(r[0] for r in tied)

        chunks = list(store.iter_joined(chunk_size=7))
        assert [len(c) for c in chunks] == [7] * 7 + [3]
        assert [r["request_id"] for c in chunks for r in c] == ["before", *ids, "after"]

        chunks = list(store.iter_joined(since=500.0, until=501.0, chunk_size=7))
        assert [len(c) for c in chunks] == [7] * 7 + [1]
        assert [r["request_id"] for c in chunks for r in c] == ids

        chunks = list(store.iter_joined(since=500.0, until=501.0, chunk_size=10))
        assert [len(c) for c in chunks] == [10] * 5
        assert [r["request_id"] for c in chunks for r in c] == ids

    def test_writer_stats_round_trip(self, store: Store) -> None:
        assert store.writers() == []
        w = WriterStats("host-a:11:aaaa", "host-a", 11, 100.5, 101.5, 10, 8, 1, 2)
        store.write_predictions(make_rows("w", 3), w)
        assert store.writers() == [w]
        # The same writer later: its totals are replaced, even with no rows in the batch.
        w2 = WriterStats("host-a:11:aaaa", "host-a", 11, 100.5, 102.5, 20, 18, 1, 3)
        assert store.write_predictions([], w2) == 0
        assert store.writers() == [w2]
        # Another writer, started earlier: writers() is in start order.
        w3 = WriterStats("host-b:22:bbbb", "host-b", 22, 50.0, 103.0, 5, 5, 0, 0)
        store.write_predictions([make_row("w3", 1.0)], w3)
        assert store.writers() == [w3, w2]
        assert store.count()["predictions"] == 4

    def test_big_batch_uses_copy_and_never_duplicates(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        copies: list[str] = []
        original = psycopg.Cursor.copy

        def spy(self: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
            copies.append(str(statement))
            return original(self, statement, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "copy", spy)
        rows = make_rows("big", 5_000, ts0=10_000.0, step=0.25)
        rows[17] = make_row(
            rows[17][0],
            rows[17][1],
            raw=dumps({"s": "a\tb\nc\\N\\d \u00e9", "n": None}),
            advanced_proba=None,
            shadow_error="ValueError: bad\tinput\n",
        )
        assert store.write_predictions(rows, None) == 5_000
        assert store.write_predictions(rows, None) == 5_000  # a retried batch
        assert store.count() == {"predictions": 5_000, "labels": 0}
        assert [as_row(r) for r in joined(store, chunk_size=1_200)] == rows

        # Below 64 rows a batch takes the plain INSERT path, at 64 and above COPY.
        store.write_predictions(make_rows("small", 63, ts0=1.0), None)
        store.write_predictions(make_rows("edge", 64, ts0=2.0), None)
        assert store.count()["predictions"] == 5_127
        writes = [c for c in copies if "FROM STDIN" in c]  # reads COPY segments TO STDOUT
        if isinstance(store, PostgresStore):
            assert len(writes) == 3
            assert all(c.startswith("COPY sidecar_stage") for c in writes)
        else:
            assert copies == []

        # Labels for many ids (the id lookup goes in slices of 500).
        labels = [Label(r[0], i % 3, ts=1.0) for i, r in enumerate(rows[:1_234])]
        result = store.upsert_labels([*labels, Label("missing", 1)])
        assert (result.accepted, result.unknown_request_ids) == (1_234, ("missing",))
        assert store.count() == {"predictions": 5_127, "labels": 1_234}


# == 2. several processes at once ===============================================================


def empty_wal_database(url: str) -> None:
    """Create the (empty, schema-less) SQLite file of ``url`` already in WAL mode.

    Several processes opening a brand-new file at once race to switch it to WAL, and the
    loser fails at once (the bug in ``test_sqlite_open_waits_for_a_writer_on_a_new_file``);
    the concurrency tests below start from an empty WAL file so that they test what they
    name -- migrating and writing at once -- and not that race.
    """
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(SQLiteStore(url).path)
        try:
            assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
        finally:
            conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_writers_each_row_lands_once(kind: str, tmp_path: Path) -> None:
    n_procs, n_rows, batch, shared = 4, 2_500, 100, 20
    with store_url(kind, tmp_path) as url:
        empty_wal_database(url)
        # Every worker migrates the fresh store (open_store) and writes at the same moment.
        run_processes(write_worker, [(url, f"w{i}", n_rows, batch, shared) for i in range(n_procs)])
        store = open_store(url, migrate=False)
        try:
            assert meta_rows(store) == [("schema_version", str(LATEST))]
            assert store.count() == {"predictions": n_procs * n_rows + shared, "labels": 0}
            ids = [r["request_id"] for r in joined(store, chunk_size=4_000)]
            expected = {f"w{p}-{i:06d}" for p in range(n_procs) for i in range(n_rows)}
            expected |= {f"shared-{i:06d}" for i in range(shared)}
            assert len(ids) == len(expected)
            assert set(ids) == expected
        finally:
            store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_migration_of_a_fresh_store(kind: str, tmp_path: Path) -> None:
    with store_url(kind, tmp_path) as url:
        empty_wal_database(url)
        run_processes(migrate_worker, [(url,)] * 6)
        store = open_store(url, migrate=False)
        try:
            assert meta_rows(store) == [("schema_version", str(LATEST))]
            assert store.count() == {"predictions": 0, "labels": 0}
            assert store.migrate() == LATEST
        finally:
            store.close()


def test_sqlite_open_waits_for_a_writer_on_a_new_file(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "records.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other_tool (x)")  # a new file, still in rollback-journal mode
    other.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
    timer = threading.Timer(0.3, other.rollback)
    timer.start()
    try:
        t0 = time.monotonic()
        store = open_store(f"sqlite:///{path}")  # should wait for the 0.3 s write, as
        try:  # every other statement of the store does (busy_timeout)
            assert store.count() == {"predictions": 0, "labels": 0}
            assert time.monotonic() - t0 >= 0.25
        finally:
            store.close()
    finally:
        timer.join()
        other.close()


# == 3. the recorder ============================================================================


class TestRecorder:
    def test_everything_enqueued_is_written_after_flush(self) -> None:
        store = MemoryStore()
        rec = Recorder(store, linger=0.01)
        rows = make_rows("r", 1_000)
        for start in range(0, 1_000, 10):
            assert rec.enqueue(rows[start : start + 10]) is True
        assert rec.flush(10) is True
        assert rec.pending() == 0
        assert store.count() == {"predictions": 1_000, "labels": 0}
        assert [as_row(r) for r in joined(store)] == rows
        c = rec.counters
        assert (c.enqueued, c.written, c.dropped, c.failed_commits) == (1_000, 1_000, 0, 0)
        assert rec.close() is True

    def test_drops_counted_after_the_last_commit_reach_the_store_on_close(self) -> None:
        # A serving worker reports the records it dropped (a full queue, a shadow
        # process restarting) to its recorder, which may have nothing left to write.
        store = MemoryStore()
        rec = Recorder(store, linger=0.0)
        assert rec.enqueue(make_rows("d", 5)) and rec.flush(10)
        [stats] = store.writers()
        assert (stats.written, stats.dropped) == (5, 0)
        rec.add_dropped(3)
        assert rec.close() is True
        [stats] = store.writers()
        assert (stats.written, stats.dropped) == (5, 3)

        idle = Recorder(store)  # never wrote a row
        idle.add_dropped(2)
        assert idle.close() is True
        assert sorted(w.dropped for w in store.writers()) == [2, 3]

    def test_rows_commit_in_batches(self) -> None:
        store = CountingStore()
        rec = Recorder(store, linger=0.05)
        for row in make_rows("a", 2_000):  # one row per request, quickly
            rec.enqueue([row])
        assert rec.flush(10)
        assert rec.counters.written == 2_000
        assert 1 <= rec.counters.batches <= 20
        assert rec.counters.batches == len(store.batches)

        # No batch is bigger than batch_size.
        store = CountingStore()
        rec2 = Recorder(store, batch_size=100, linger=0.05)
        assert rec2.enqueue(make_rows("b", 1_000))
        assert rec2.flush(10)
        assert store.batches == [100] * 10
        assert rec.close() and rec2.close()

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_full_queue_drops_counts_and_never_blocks(self) -> None:
        store = MemoryStore()
        store.fail_with = Exception("store is down")
        rec = Recorder(store, max_queue=100, linger=0.0, max_backoff=0.05)
        events: list[tuple[str, int]] = []
        rec.on_event = lambda event, n: events.append((event, n))

        t0 = time.perf_counter()
        results, slowest = enqueue_timed(rec, make_rows("q", 1_000))
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.5, f"1000 enqueue calls took {elapsed:.3f} s"
        assert slowest < 0.1

        accepted = sum(results)
        assert 100 <= accepted < 1_000
        assert rec.counters.enqueued == accepted
        assert rec.counters.dropped == 1_000 - accepted
        assert sum(n for e, n in events if e == "dropped") == 1_000 - accepted
        # The rows refused are the ones past the bound, not the first ones.
        assert all(results[:100])

        wait_until(lambda: rec.counters.failed_commits >= 1)
        store.fail_with = None
        assert rec.flush(10)
        assert store.count()["predictions"] == accepted == rec.counters.written
        assert rec.counters.failed_commits > 0
        assert rec.close() is True

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_failing_store_is_retried_with_backoff(self) -> None:
        store = MemoryStore()
        store.fail_with = Exception("store is down")
        rec = Recorder(store, linger=0.0, max_backoff=0.2)
        assert rec.enqueue(make_rows("f", 50))
        time.sleep(0.6)
        failures = rec.counters.failed_commits
        # 0.05, 0.1, 0.2, 0.2 ... s apart: a handful of tries, not a busy loop.
        assert 2 <= failures <= 10
        assert rec.counters.written == 0
        assert "store is down" in (rec.counters.last_error or "")
        assert rec.flush(0.1) is False

        store.fail_with = None
        assert rec.flush(10) is True
        assert store.count()["predictions"] == 50
        assert rec.counters.written == 50
        assert rec.counters.failed_commits >= failures
        assert rec.close() is True

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_backoff_holds_under_traffic(self) -> None:
        store = MemoryStore()
        store.fail_with = Exception("store is down")
        rec = Recorder(store, batch_size=10, linger=0.01, max_backoff=1.0)
        try:
            for row in make_rows("t", 400):  # steady traffic while the store is down
                rec.enqueue([row])
                time.sleep(0.001)
            # Backoff of 0.05, 0.1, 0.2, 0.4 ... s allows a handful of tries in ~0.5 s.
            assert rec.counters.failed_commits <= 10
        finally:
            store.fail_with = None
            rec.close()

    def test_close_writes_what_is_queued(self) -> None:
        store = MemoryStore()
        rec = Recorder(store, linger=10.0)  # would linger for 10 s: close must not wait
        assert rec.enqueue(make_rows("c", 300))
        t0 = time.monotonic()
        assert rec.close() is True
        assert time.monotonic() - t0 < 2.0
        assert store.count()["predictions"] == 300
        # A closed recorder takes nothing more, and counts what it refused.
        assert rec.enqueue(make_rows("late", 5)) is False
        assert rec.counters.dropped == 5
        assert rec.counters.written == 300

    def test_flush_cuts_the_linger_short_and_the_writer_lingers_again_after(self) -> None:
        store = MemoryStore()
        rec = Recorder(store, linger=10.0)
        try:
            assert rec.enqueue(make_rows("f", 40))
            t0 = time.monotonic()
            assert rec.flush(timeout=5.0) is True
            assert time.monotonic() - t0 < 2.0  # not the 10 s linger
            assert store.count()["predictions"] == 40
            assert rec.enqueue(make_rows("g", 3))
            time.sleep(0.3)  # no flush asked for: these wait for the linger
            assert store.count()["predictions"] == 40
        finally:
            rec.close()
        assert store.count()["predictions"] == 43

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_close_with_a_store_that_stays_down(self) -> None:
        store = MemoryStore()
        store.fail_with = Exception("store is down")
        rec = Recorder(store, linger=0.0, max_backoff=0.05)
        events: list[tuple[str, int]] = []
        rec.on_event = lambda event, n: events.append((event, n))
        assert rec.enqueue(make_rows("d", 20))
        wait_until(lambda: rec.counters.failed_commits >= 1)
        t0 = time.monotonic()
        assert rec.close(timeout=10) is False
        assert time.monotonic() - t0 < 5.0
        assert rec.counters.dropped == 20
        assert rec.counters.written == 0
        assert ("dropped", 20) in events
        store.fail_with = None
        assert store.count() == {"predictions": 0, "labels": 0}

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_close_with_a_batch_still_in_flight_is_not_all_written(self) -> None:
        store = GatedStore()
        rec = Recorder(store, linger=0.0)
        try:
            assert rec.enqueue(make_rows("g", 5))
            assert store.entered.wait(5)  # the writer holds the batch, mid-write
            assert rec.close(timeout=0.2) is False
        finally:
            store.release.set()

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_on_event_reports_written_dropped_and_failed(self) -> None:
        store = MemoryStore()
        rec = Recorder(store, max_queue=10, linger=0.0, max_backoff=0.05)
        events: list[tuple[str, int]] = []
        rec.on_event = lambda event, n: events.append((event, n))
        assert rec.enqueue(make_rows("ok", 4))
        assert rec.flush(5)
        store.fail_with = Exception("store is down")
        assert rec.enqueue(make_rows("e", 5))
        wait_until(lambda: any(e == "failed" for e, _ in events))
        assert rec.enqueue(make_rows("x", 20)) is False  # more than max_queue at once
        store.fail_with = None
        assert rec.flush(5)
        assert rec.close()
        totals = {e: sum(n for ev, n in events if ev == e) for e in ("written", "dropped")}
        assert totals == {"written": 9, "dropped": 20}
        failed = [n for e, n in events if e == "failed"]
        assert failed and set(failed) == {1}
        assert len(failed) == rec.counters.failed_commits
        assert {e for e, _ in events} == {"written", "dropped", "failed"}

    def test_a_broken_event_hook_does_not_stop_recording(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = MemoryStore()
        rec = Recorder(store, linger=0.0)

        def hook(event: str, n: int) -> None:
            raise RuntimeError("hook broke")

        rec.on_event = hook
        with caplog.at_level("CRITICAL", logger="sidecar.recording"):
            assert rec.enqueue(make_rows("h", 3))
            assert rec.flush(5)
        assert store.count()["predictions"] == 3
        assert rec.close()

    @pytest.mark.parametrize("kind", KINDS)
    def test_writer_stats_land_in_the_store(self, kind: str, tmp_path: Path) -> None:
        with fresh_store(kind, tmp_path) as store:
            rec = Recorder(store, linger=0.01)
            rows = make_rows("s", 120)
            for start in range(0, 120, 12):
                rec.enqueue(rows[start : start + 12])
            assert rec.flush(10)
            (stats,) = store.writers()
            mine = rec.stats()
            assert stats.writer_id == mine.writer_id
            assert (stats.host, stats.pid) == (socket.gethostname(), os.getpid())
            assert stats.started_at == rec.counters.started_at
            assert (stats.enqueued, stats.written, stats.dropped, stats.failed_commits) == (
                120,
                120,
                0,
                0,
            )
            assert stats.updated_at <= time.time()
            assert rec.close()

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_sqlite_turning_read_only_mid_traffic(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Root ignores file permissions, so the database is made read-only the way SQLite
        # itself sees it: each transaction of the store sets PRAGMA query_only, and SQLite
        # answers writes with its own "attempt to write a readonly database".
        readonly = threading.Event()
        begin = SQLiteStore._begin

        def begin_maybe_readonly(self: SQLiteStore, cur: Any, write: bool) -> None:
            cur.execute(f"PRAGMA query_only = {'ON' if readonly.is_set() else 'OFF'}")
            begin(self, cur, write)

        monkeypatch.setattr(SQLiteStore, "_begin", begin_maybe_readonly)
        with fresh_store("sqlite", tmp_path) as store:
            rec = Recorder(store, linger=0.005, max_backoff=0.05)
            rows = make_rows("ro", 300)
            assert rec.enqueue(rows[:100]) and rec.flush(5)

            readonly.set()
            results, slowest = enqueue_timed(rec, rows[100:])
            assert all(results)  # serving goes on: nothing refused, nothing blocked
            assert slowest < 0.1
            wait_until(lambda: rec.counters.failed_commits >= 2)
            assert "readonly" in (rec.counters.last_error or "")
            assert store.count()["predictions"] == 100

            readonly.clear()
            assert rec.flush(10)
            assert store.count()["predictions"] == 300
            assert [as_row(r) for r in joined(store)] == rows
            (stats,) = store.writers()
            assert stats.written == 300
            assert stats.failed_commits >= 2
            assert rec.close()

    @pytest.mark.usefixtures("quiet_recorder_log")
    def test_postgresql_connection_lost_and_server_unreachable(self) -> None:
        with pg_schema() as schema:
            url = pg_url(schema)
            store = open_store(url)
            rec = Recorder(store, linger=0.005, max_backoff=0.05)
            try:
                rows = make_rows("pg", 400)
                assert rec.enqueue(rows[:100]) and rec.flush(10)
                assert store.count()["predictions"] == 100

                # 1. The server drops the recorder's connection: the next commit fails,
                #    the store reconnects, and nothing is lost or doubled.
                assert connections_of(schema)
                assert terminate_connections(schema) >= 1
                assert rec.enqueue(rows[100:200])
                assert rec.flush(10)
                assert rec.counters.failed_commits >= 1
                assert pg_count(schema) == 200

                # 2. The server cannot be reached for a while (a closed port).
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    closed_port = s.getsockname()[1]
                terminate_connections(schema)
                failed_before = rec.counters.failed_commits
                store.url = url.replace(":5432/", f":{closed_port}/")
                results, slowest = enqueue_timed(rec, rows[200:])
                assert all(results)
                assert slowest < 0.1
                wait_until(lambda: rec.counters.failed_commits >= failed_before + 2)
                assert pg_count(schema) == 200

                store.url = url
                assert rec.flush(10)
                assert pg_count(schema) == 400
                # This thread's connection was dropped too: it is reopened after one failure.
                store.close()
                assert store.count() == {"predictions": 400, "labels": 0}
                assert [as_row(r) for r in joined(store)] == rows
            finally:
                rec.close()
                store.close()


# == 4. the bundle records what it serves ========================================================


@pytest.fixture(scope="module")
def cls_data() -> tuple[list[dict[str, Any]], np.ndarray, list[dict[str, Any]], np.ndarray]:
    return models.make_classification_data(n_train=150, n_ref=60, seed=5, labels=LABELS)


@pytest.fixture(scope="module")
def cls_bundle(cls_data: tuple[Any, ...]) -> sidecar.Bundle:
    train, y_train, ref, y_ref = cls_data
    pre = sidecar.TabularPreprocessor(columns=models.preprocessing_columns())
    X = pre.fit(train).transform(train)
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y_train)
    bundle = sidecar.wrap(
        forest,
        task="classification",
        preprocessing=sidecar.TabularPreprocessor(columns=models.preprocessing_columns()),
        train=(train, y_train),
        reference=(ref, y_ref),
    )
    bundle.manifest  # noqa: B018 - serialise the parts once for the whole module
    return bundle


@pytest.fixture(params=["memory", "sqlite"])
def recorded(
    request: pytest.FixtureRequest, cls_bundle: sidecar.Bundle, tmp_path: Path
) -> Iterator[tuple[sidecar.Bundle, Recorder, Store]]:
    """The bundle with a fresh recorder (on a fresh store) attached; detached afterwards."""
    with fresh_store(request.param, tmp_path) as store:
        rec = Recorder(store, linger=0.005)
        cls_bundle.attach_recorder(rec)
        try:
            yield cls_bundle, rec, store
        finally:
            cls_bundle.attach_recorder(None)
            rec.close()


def settle(bundle: sidecar.Bundle, rec: Recorder) -> None:
    assert bundle.shadow.drain(10)
    assert rec.flush(10)


def records_of(cls_data: tuple[Any, ...], n: int = 12) -> list[dict[str, Any]]:
    return [dict(r) for r in cls_data[2][:n]]


class TestBundleRecording:
    def test_one_row_per_record(
        self, recorded: tuple[sidecar.Bundle, Recorder, Store], cls_data: tuple[Any, ...]
    ) -> None:
        bundle, rec, store = recorded
        records = records_of(cls_data)
        pred = bundle.predict(records)
        settle(bundle, rec)

        rows = by_id(store)
        assert len(rows) == len(records) == len(pred)
        assert set(rows) == set(pred.request_ids)
        base = bundle.baseline.infer(bundle.preprocessing.transform(records))
        parts = bundle.manifest["parts"]
        for i, rid in enumerate(pred.request_ids):
            row = rows[rid]
            assert row["bundle_version"] == bundle.version == pred.bundle_version
            assert row["preprocessing_version"] == bundle.preprocessing_version
            assert row["advanced_version"] == parts["advanced"]["version"]
            assert row["baseline_version"] == parts["baseline"]["version"]
            assert json.loads(row["raw"]) == records[i]
            assert json.loads(row["advanced_prediction"]) == pred.predictions.tolist()[i]
            assert pred.probabilities is not None
            assert json.loads(row["advanced_proba"]) == pred.probabilities[i].tolist()
            assert json.loads(row["baseline_prediction"]) == base.predictions.tolist()[i]
            assert base.probabilities is not None
            assert json.loads(row["baseline_proba"]) == pytest.approx(
                base.probabilities[i].tolist()
            )
            assert row["ts"] == pred.ts
            assert row["advanced_latency_ms"] == pred.latency_ms
            assert row["baseline_latency_ms"] is not None and row["baseline_latency_ms"] > 0
            assert row["shadow_error"] is None
            for slot in ("candidate_version", "candidate_prediction", "candidate_proba"):
                assert row[slot] is None
            assert row["candidate_latency_ms"] is None
            assert (row["label"], row["label_ts"]) == (None, None)
        assert rec.counters.written == len(records)

    def test_shadow_false_records_nothing(
        self, recorded: tuple[sidecar.Bundle, Recorder, Store], cls_data: tuple[Any, ...]
    ) -> None:
        bundle, rec, store = recorded
        bundle.predict(records_of(cls_data), shadow=False)
        settle(bundle, rec)
        assert store.count()["predictions"] == 0

    def test_timestamps_are_stored(
        self, recorded: tuple[sidecar.Bundle, Recorder, Store], cls_data: tuple[Any, ...]
    ) -> None:
        bundle, rec, store = recorded
        records = records_of(cls_data, 5)
        stamps = [1_600_000_000.0 + 60 * i for i in range(5)]
        pred = bundle.predict(records, timestamps=stamps)
        with pytest.raises(sidecar.InputError, match="one entry per record"):
            bundle.predict(records, timestamps=stamps[:4])
        settle(bundle, rec)
        rows = by_id(store)
        assert len(rows) == 5
        assert [rows[rid]["ts"] for rid in pred.request_ids] == stamps
        assert [r["request_id"] for r in joined(store)] == list(pred.request_ids)

    def test_a_baseline_that_raises(
        self,
        recorded: tuple[sidecar.Bundle, Recorder, Store],
        cls_data: tuple[Any, ...],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        bundle, rec, store = recorded

        def boom(X: np.ndarray) -> Any:
            raise RuntimeError("baseline broke")

        monkeypatch.setattr(bundle.baseline, "infer", boom)
        errors = bundle.shadow.counters.errors
        records = records_of(cls_data, 6)
        pred = bundle.predict(records)
        assert len(pred.predictions) == 6
        settle(bundle, rec)
        rows = by_id(store)
        assert set(rows) == set(pred.request_ids)
        for i, rid in enumerate(pred.request_ids):
            row = rows[rid]
            assert row["shadow_error"] == "RuntimeError: baseline broke"
            assert (row["baseline_prediction"], row["baseline_proba"]) == (None, None)
            assert json.loads(row["advanced_prediction"]) == pred.predictions.tolist()[i]
            assert json.loads(row["raw"]) == records[i]
        assert bundle.shadow.counters.errors == errors + 1

    def test_a_baseline_that_hangs(
        self,
        recorded: tuple[sidecar.Bundle, Recorder, Store],
        cls_data: tuple[Any, ...],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        bundle, rec, store = recorded
        release = threading.Event()
        real = bundle.baseline.infer

        def hang(X: np.ndarray) -> Any:
            release.wait(2.0)
            return real(X)

        monkeypatch.setattr(bundle.baseline, "infer", hang)
        monkeypatch.setattr(bundle.shadow, "timeout", 0.2)
        timeouts = bundle.shadow.counters.timeouts
        try:
            t0 = time.perf_counter()
            pred = bundle.predict(records_of(cls_data, 4))
            assert time.perf_counter() - t0 < 0.5  # the 2 s baseline is off the request path
            settle(bundle, rec)
            rows = by_id(store)
            assert set(rows) == set(pred.request_ids)
            for row in rows.values():
                assert row["shadow_error"].startswith("timeout")
                assert row["baseline_prediction"] is None
                assert row["advanced_prediction"] is not None
            assert bundle.shadow.counters.timeouts == timeouts + 1
        finally:
            release.set()  # let the abandoned model thread finish

    def test_record_policy_excludes_and_hashes(
        self, recorded: tuple[sidecar.Bundle, Recorder, Store], cls_data: tuple[Any, ...]
    ) -> None:
        bundle, rec, store = recorded
        key = b"test-secret"
        bundle.attach_recorder(rec, policy=RecordPolicy(exclude=["temp"], hash=["color"], key=key))
        records = records_of(cls_data, 8)
        pred = bundle.predict(records)
        settle(bundle, rec)
        unrecorded = bundle.predict(records, shadow=False)
        assert pred.predictions.tolist() == unrecorded.predictions.tolist()  # model saw all
        rows = by_id(store)
        for i, rid in enumerate(pred.request_ids):
            raw = json.loads(rows[rid]["raw"])
            digest = hmac.new(key, records[i]["color"].encode(), hashlib.sha256).hexdigest()
            expected = {k: v for k, v in records[i].items() if k != "temp"}
            expected["color"] = digest
            assert raw == expected
            assert records[i]["color"] not in rows[rid]["raw"]

    def test_record_policy_needs_a_key_to_hash(self) -> None:
        with pytest.raises(sidecar.InputError, match="secret key"):
            RecordPolicy(hash=["color"])
        with pytest.raises(sidecar.InputError, match="secret key"):
            RecordPolicy(hash=["color"], key=b"")
        with pytest.raises(sidecar.InputError, match="not both"):
            RecordPolicy(exclude=["color"], hash=["color"], key=b"k")
        assert RecordPolicy(exclude=["color"]).apply({"color": "red", "a": 1}) == {"a": 1}

    def test_raw_is_stored_as_served_even_if_the_caller_reuses_the_dict(
        self,
        recorded: tuple[sidecar.Bundle, Recorder, Store],
        cls_data: tuple[Any, ...],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        bundle, rec, store = recorded
        gate = threading.Event()
        handler = bundle.shadow.handler
        assert handler is not None

        def gated(batch: list[Any]) -> object:
            gate.wait(5)  # the shadow thread gets to this batch a moment later
            return handler(batch)

        monkeypatch.setattr(bundle.shadow, "handler", gated)
        records = records_of(cls_data, 2)
        served = [dict(r) for r in records]
        pred = bundle.predict(records)
        records[0]["weight"] = -1.0  # the caller reuses its dict for the next request
        gate.set()
        settle(bundle, rec)
        rows = by_id(store)
        assert set(rows) == set(pred.request_ids)
        assert json.loads(rows[pred.request_ids[0]]["raw"]) == served[0]


class TestFeedback:
    def test_labels_are_joined(
        self, recorded: tuple[sidecar.Bundle, Recorder, Store], cls_data: tuple[Any, ...]
    ) -> None:
        bundle, rec, store = recorded
        pred = bundle.predict(records_of(cls_data, 10))
        settle(bundle, rec)
        ids = pred.request_ids
        labels = [{"request_id": rid, "label": "dog"} for rid in ids[:5]]
        labels.append({"request_id": ids[5], "label": "fox", "ts": 1_700_000_000.0})
        labels.append({"request_id": "nope", "label": "cat"})
        result = bundle.feedback(labels)
        assert result.accepted == 6
        assert result.unknown_request_ids == ("nope",)
        rows = by_id(store)
        assert [json.loads(rows[rid]["label"]) for rid in ids[:5]] == ["dog"] * 5
        assert rows[ids[5]]["label_ts"] == 1_700_000_000.0
        assert all(rows[rid]["label"] is None for rid in ids[6:])
        assert store.count() == {"predictions": 10, "labels": 6}

        # A later label replaces the earlier one; the same labels twice leave the same state.
        again = [{"request_id": ids[0], "label": "cat", "ts": 1_700_000_100.0}]
        assert bundle.feedback(again).accepted == 1
        state = joined(store)
        assert bundle.feedback(again).accepted == 1
        assert joined(store) == state
        assert json.loads(by_id(store)[ids[0]]["label"]) == "cat"
        # A label the model's classes do not hold could never be scored: refused, naming them.
        with pytest.raises(sidecar.InputError, match=r"one of the classes \['cat', 'dog', 'fox'\]"):
            bundle.feedback([{"request_id": ids[9], "label": "wolf"}])
        assert by_id(store)[ids[9]]["label"] is None

    def test_wrong_label_type_writes_nothing(
        self, recorded: tuple[sidecar.Bundle, Recorder, Store], cls_data: tuple[Any, ...]
    ) -> None:
        bundle, rec, store = recorded
        pred = bundle.predict(records_of(cls_data, 3))
        settle(bundle, rec)
        ids = pred.request_ids
        bad = [
            {"request_id": ids[0], "label": "cat"},
            {"request_id": ids[1], "label": 3},
            {"request_id": ids[2], "label": "dog", "extra": 1},
        ]
        with pytest.raises(sidecar.InputError, match=r"labels\[1\]\.label") as info:
            bundle.feedback(bad)
        assert [p.field for p in info.value.problems] == ["labels[1].label", "labels[2].extra"]
        assert store.count()["labels"] == 0
        for labels in ([], "cat", [{"request_id": "", "label": "cat"}], [{"request_id": ids[0]}]):
            with pytest.raises(sidecar.InputError):
                bundle.feedback(labels)
        assert store.count()["labels"] == 0

    def test_feedback_needs_a_store(self, cls_bundle: sidecar.Bundle) -> None:
        assert cls_bundle.recorder is None
        with pytest.raises(sidecar.InputError, match="feedback needs a store"):
            cls_bundle.feedback([{"request_id": "a", "label": "cat"}])

    def test_regression_label_must_be_finite(self) -> None:
        train, y_train, ref, y_ref = models.make_regression_data(n_train=80, n_ref=30, seed=2)
        pre = sidecar.TabularPreprocessor(columns=models.preprocessing_columns())
        X = pre.fit(train).transform(train)
        bundle = sidecar.wrap(
            Ridge(alpha=1.0).fit(X, y_train),
            task="regression",
            preprocessing=sidecar.TabularPreprocessor(columns=models.preprocessing_columns()),
            train=(train, y_train),
            reference=(ref, y_ref),
        )
        store = MemoryStore()
        store.write_predictions([make_row("r1", 1.0), make_row("r2", 2.0)], None)
        for bad in (float("nan"), float("inf"), "nan", "1e400", 10**400, "3.5 kg", True, None):
            with pytest.raises(sidecar.InputError, match=r"labels\[1\]\.label"):
                bundle.feedback(
                    [{"request_id": "r1", "label": 1.0}, {"request_id": "r2", "label": bad}],
                    store=store,
                )
        assert store.count()["labels"] == 0
        result = bundle.feedback(
            [
                {"request_id": "r1", "label": " 3.5"},  # a number's text, as a CSV cell holds it
                {"request_id": "r2", "label": np.int64(4)},
                {"request_id": "r3", "label": 1.0},
            ],
            store=store,
        )
        assert (result.accepted, result.unknown_request_ids) == (2, ("r3",))
        rows = by_id(store)
        assert (json.loads(rows["r1"]["label"]), json.loads(rows["r2"]["label"])) == (3.5, 4.0)

    def test_feedback_right_after_predict_finds_the_requests(
        self,
        recorded: tuple[sidecar.Bundle, Recorder, Store],
        cls_data: tuple[Any, ...],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        bundle, _, store = recorded
        real = bundle.baseline.infer

        def slow(X: np.ndarray) -> Any:
            time.sleep(0.4)  # a slow baseline, well within its timeout
            return real(X)

        monkeypatch.setattr(bundle.baseline, "infer", slow)
        monkeypatch.setattr(bundle.shadow, "timeout", 5.0)
        pred = bundle.predict(records_of(cls_data, 3))
        # No drain, no flush: feedback itself waits for the shadow work that builds the rows.
        result = bundle.feedback([{"request_id": rid, "label": "cat"} for rid in pred.request_ids])
        assert result.unknown_request_ids == ()
        assert result.accepted == 3
        assert store.count() == {"predictions": 3, "labels": 3}
