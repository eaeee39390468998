"""A window read segment by segment through one reused buffer holds exactly what was written.

Stores read each segment into one buffer they reuse, and the window's columns
are copied out of it into arrays of the whole window (numbers and fixed-size
lists) or Arrow copies of their own (text, nulls, other types); these tests
pin that nothing of one segment leaks into another, whatever the segments'
sizes, schemas and storage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sidecar.recording import Store
from sidecar.recording._columnar import SegmentInfo
from sidecar.recording._records import encode_records
from tests.stores import VERSIONS, fresh_store


def batch(prefix: str, n: int, ts0: float, *, extra: bool = False, holes: bool = False) -> pa.Table:
    """``n`` records; ``extra`` adds an input (another schema), ``holes`` leaves some ``x`` out."""
    rng = np.random.default_rng(n + len(prefix))
    records: list[dict[str, Any]] = [
        {"x": float(rng.normal()), "k": int(rng.integers(9)), "color": str(rng.choice(["r", "g"]))}
        for _ in range(n)
    ]
    if extra:
        for r in records:
            r["y"] = float(rng.normal())
    if holes:
        for r in records[::7]:
            r["x"] = None
    p = rng.random(n)
    return encode_records(
        records,
        request_ids=[f"{prefix}-{i:06d}" for i in range(n)],
        ts=ts0 + np.arange(n, dtype=np.float64),
        versions=VERSIONS,
        features=rng.normal(size=(n, 3)),
        outputs={
            "advanced": (p, np.column_stack([p, 1 - p])),
            "baseline": (np.where(p > 0.4, "cat", "dog"), np.column_stack([p, 1 - p])),
            "candidate": None,
        },
        latencies={"advanced_latency_ms": 1.5, "baseline_latency_ms": 0.5},
        error=None,
    )


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read segments in pieces of 1,000 bytes: slices end mid-value, and segments differ."""
    from sidecar.recording import _postgres, _sqlite

    monkeypatch.setattr(_sqlite, "_PIECE", 1_000)
    monkeypatch.setattr(_postgres, "_PIECE", 1_000)


def expected(batches: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(batches, promote_options="permissive")
    return table.take(pc.sort_indices(table, [("ts", "ascending")]))


#: What analysis reads: copied out of one reused buffer (every column: segments kept as read).
ANALYSIS = ["raw", "features", "bundle_version", "advanced_prediction", "advanced_proba"]


def window(store: Store, want: pa.Table, **kwargs: Any) -> None:
    """The window, whole and as analysis reads it, equals ``want``."""
    same(store.read_window(**kwargs), want)
    some = store.read_window(columns=ANALYSIS, **kwargs)
    assert "request_id" not in some.column_names and "baseline_proba" not in some.column_names
    same(some, want, [c for c in some.column_names if not c.startswith(("seq", "label"))])


def same(got: pa.Table, want: pa.Table, names: list[str] | None = None) -> None:
    assert got.num_rows == want.num_rows
    for name in names if names is not None else want.column_names:
        # as JSON text: NaN (a latency not taken) equals NaN
        assert json.dumps(got.column(name).to_pylist()) == json.dumps(
            want.column(name).to_pylist()
        ), name


def test_segments_of_many_sizes_come_back_exactly(store: Store) -> None:
    batches = [batch(f"s{i}", n, 10_000.0 * i) for i, n in enumerate([300, 1_000, 57, 2_000, 1])]
    for b in batches:
        store.write_batch(b, None)
    window(store, expected(batches))
    pieces = list(store.iter_batches(rows=1_100))
    assert sum(p.num_rows for p in pieces) == 3_358
    same(pa.concat_tables(pieces), expected(batches))
    want = expected(batches)
    ts = want.column("ts").to_numpy()
    inside = want.filter(pa.array((ts >= 10_100.0) & (ts < 30_030.0)))
    window(store, inside, since=10_100.0, until=30_030.0)


def test_nulls_and_other_schemas_between_segments_come_back_exactly(store: Store) -> None:
    batches = [
        batch("a", 400, 0.0),
        batch("b", 300, 1_000.0, holes=True),  # raw:x with nulls: copied by Arrow, not as numbers
        batch("c", 200, 2_000.0, extra=True),  # one input more: another schema
        batch("d", 100, 3_000.0),
    ]
    for b in batches:
        store.write_batch(b, None)
    window(store, expected(batches))
    got = store.read_window(columns=["raw"])
    assert got.column("raw:x").null_count == len(range(0, 300, 7))
    assert got.column("raw:y").null_count == 800


def test_a_window_longer_than_its_size_when_taken_is_read_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit landing between sizing the window and reading it: the arrays grow."""
    batches = [batch(f"g{i}", n, 1_000.0 * i) for i, n in enumerate([500, 700, 900])]
    for b in batches:
        store.write_batch(b, None)
    real = store._segment_infos  # type: ignore[attr-defined]

    def fewer(since: float, until: float) -> list[SegmentInfo]:
        return [SegmentInfo(i.seq_lo, i.seq_hi, 1, i.nbytes) for i in real(since, until)]

    monkeypatch.setattr(store, "_segment_infos", fewer)
    window(store, expected(batches))


def write_compressed_segment(store: Store, n: int = 3_000) -> pa.Table:
    """Write ``n`` records into a PostgreSQL segment stored compressed, as before version 3.

    The features are all zeros, so pglz compresses the value (it gives up on noise).
    """
    store._run(  # type: ignore[attr-defined]
        lambda cur: cur.execute(
            "ALTER TABLE sidecar_segments ALTER COLUMN data SET STORAGE EXTENDED"
        ),
        write=True,
    )
    rows = batch("z", n, 0.0)
    zeros = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(3 * n)), 3)
    rows = rows.set_column(rows.column_names.index("features"), "features", zeros)
    store.write_batch(rows, None)
    compressed = store._run(  # type: ignore[attr-defined]
        lambda cur: cur.execute(
            "SELECT pg_column_compression(data) FROM sidecar_segments"
        ).fetchall()
    )
    assert compressed == [("pglz",)]
    return rows


def test_a_compressed_postgresql_segment_is_read_whole(tmp_path: Path) -> None:
    """Segments stored before version 3 may be compressed: read whole, not in slices."""
    with fresh_store("postgresql", tmp_path) as store:
        window(store, expected([write_compressed_segment(store)]))


def test_labels_find_their_records_when_time_and_write_order_differ(store: Store) -> None:
    """Records written late but served early: the window (in time order) is out of seq order."""
    from sidecar.recording import Label

    store.write_batch(batch("late", 300, 10_000.0), None)
    store.write_batch(batch("early", 200, 0.0), None)
    store.upsert_labels([Label("late-000005", 1.0, 1.0), Label("early-000007", 0.0, 2.0)])
    store.upsert_labels([Label("late-000005", 2.0, 3.0)])  # relabelled: the newest wins
    table = store.read_window(columns=["raw", "request_id"])
    ids = table.column("request_id").to_pylist()
    assert ids[0] == "early-000000" and ids[-1] == "late-000299"
    num = table.column("label_num").to_pylist()
    labelled = {ids[i]: num[i] for i in np.flatnonzero(table.column("label_kind").to_numpy() >= 0)}
    assert labelled == {"late-000005": 2.0, "early-000007": 0.0}


def test_a_postgresql_server_before_14_reads_segments_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.recording._postgres import PostgresStore

    monkeypatch.setattr(PostgresStore, "_sliced", lambda self, cur: False)
    with fresh_store("postgresql", tmp_path) as store:
        batches = [batch("w", 700, 0.0), batch("v", 300, 1_000.0)]
        for b in batches:
            store.write_batch(b, None)
        window(store, expected(batches))
