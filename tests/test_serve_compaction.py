"""Small segments are merged off the recorder's writer; a crash mid-merge loses nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sidecar.recording import Recorder, open_store
from sidecar.recording._records import encode_records
from sidecar.recording._sql import SQLStore

ROOT = Path(__file__).resolve().parents[1]


def batch(prefix: str, n: int, *, ts0: float = 1_000.0) -> pa.Table:
    """``n`` served records of a two-class model (one numeric input, one categorical)."""
    rng = np.random.default_rng(n)
    p = rng.random(n)
    return encode_records(
        [{"x": float(rng.normal()), "color": str(rng.choice(["r", "g"]))} for _ in range(n)],
        request_ids=[f"{prefix}-{i:06d}" for i in range(n)],
        ts=ts0 + np.arange(n, dtype=np.float64),
        versions={"bundle_version": "b1", "preprocessing_version": "p1"},
        features=rng.normal(size=(n, 2)),
        outputs={"advanced": (np.where(p > 0.5, "cat", "dog"), np.column_stack([p, 1 - p]))},
        latencies={"advanced_latency_ms": 1.5},
        error=None,
    )


def _segments(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        n, rows = conn.execute("SELECT COUNT(*), SUM(n_rows) FROM sidecar_segments").fetchone()
    return int(n), int(rows or 0)


def test_the_writer_never_merges_inside_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    merged_on: list[str] = []
    original = SQLStore._compact

    def spy(self: SQLStore, cur: object) -> None:
        merged_on.append(threading.current_thread().name)
        original(self, cur)

    monkeypatch.setattr(SQLStore, "_compact", spy)
    db = tmp_path / "records.db"
    store = open_store(f"sqlite:///{db}")
    recorder = Recorder(store, linger=0.001, compact_idle=0.3, compact_every=60.0)
    try:
        for i in range(300):  # light traffic: one small segment per commit
            recorder.enqueue(batch(f"s{i:03d}", 5, ts0=1_000.0 + 10 * i))
            assert recorder.flush(10.0)
        assert _segments(db) == (300, 1_500)  # no commit merged anything
        deadline = time.monotonic() + 30
        while recorder._compactor is not None and not recorder._compactor.runs:
            assert time.monotonic() < deadline, "the idle writer's segments were never merged"
            time.sleep(0.05)
        n_segments, n_rows = _segments(db)
        assert n_rows == 1_500 and n_segments < 300 // 4
        assert store.read_window().num_rows == 1_500
    finally:
        recorder.close()
        store.close()
    assert merged_on and set(merged_on) == {"sidecar-compactor"}


def test_steady_traffic_is_merged_at_the_latest_every_seconds(tmp_path: Path) -> None:
    db = tmp_path / "records.db"
    store = open_store(f"sqlite:///{db}")
    recorder = Recorder(store, linger=0.001, compact_idle=3600.0, compact_every=0.5)
    try:
        for i in range(300):
            recorder.enqueue(batch(f"s{i:03d}", 5, ts0=1_000.0 + 10 * i))
            assert recorder.flush(10.0)
        deadline = time.monotonic() + 30
        while _segments(db)[0] >= 300 // 4:
            assert time.monotonic() < deadline, "a never-idle writer's segments were never merged"
            recorder.enqueue(batch(f"t{time.monotonic_ns()}", 1))
            time.sleep(0.05)
    finally:
        recorder.close()
        store.close()


_CHILD = """
import os, sys, time
from pathlib import Path
from sidecar.recording import open_store
from sidecar.recording._sql import SQLStore
sys.path.insert(0, {root!r})
from tests.test_serve_compaction import batch

db, marker = Path(sys.argv[1]), Path(sys.argv[2])
store = open_store(f"sqlite:///{{db}}")
for i in range(300):
    store.write_batch(batch(f"s{{i:03d}}", 5, ts0=1_000.0 + 10 * i), None, compact=False)
original = SQLStore._compact

def stalled(self, cur):
    original(self, cur)  # the small segments deleted, the merged one inserted: not committed
    marker.write_text("merging")
    time.sleep(60)

SQLStore._compact = stalled
store.compact()
"""


def test_kill_9_in_the_middle_of_a_merge_loses_nothing(tmp_path: Path) -> None:
    db, marker = tmp_path / "records.db", tmp_path / "merging"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(ROOT)))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the child died before merging"
            assert time.monotonic() < deadline, "the child never started merging"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert _segments(db) == (300, 1_500)  # the merge rolled back; every record is there
    store = open_store(f"sqlite:///{db}")
    try:
        ids = store.read_window().column("request_id").to_pylist()
        assert len(ids) == len(set(ids)) == 1_500
        store.compact()  # and the next merge goes through
        n_segments, n_rows = _segments(db)
        assert n_rows == 1_500 and n_segments < 300 // 4
        assert sorted(store.read_window().column("request_id").to_pylist()) == sorted(ids)
    finally:
        store.close()
