"""A read of some columns fetches only their bytes out of each segment, and gets them exactly.

Stores that read parts of a value (SQLite's blob I/O, PostgreSQL's ``substring``)
fetch a segment's head, find where each column lies in the Arrow IPC body
(``recording._ipc``) and fetch only the columns analysis reads; pyarrow reads
the stream with ``included_fields`` and must never look at the bytes left
unread. These tests poison those bytes, cut the head short, split the COPY
stream at every size, and fall back to a whole read wherever the layout is
not one plain record batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from sidecar.recording import Store, _ipc
from sidecar.recording._columnar import to_ipc
from tests.stores import fresh_store
from tests.test_store_window_copy import (
    ANALYSIS,
    batch,
    expected,
    window,
    write_compressed_segment,
)


def every_type(n: int = 50) -> pa.Table:
    """A table with a column of each layout ``_ipc`` lays out, nulls in some."""
    rng = np.random.default_rng(n)
    ints = pa.array([None if i % 7 == 0 else i for i in range(n)], pa.int64())
    return pa.table(
        {
            "f": rng.normal(size=n),
            "i": ints,
            "b": pa.array([i % 3 == 0 for i in range(n)]),
            "s": pa.array([None if i % 5 == 0 else f"text-{i}" * (i % 4) for i in range(n)]),
            "ls": pa.array([f"long-{i}" for i in range(n)], pa.large_string()),
            "bin": pa.array([bytes([i % 256]) * (i % 3) for i in range(n)], pa.binary()),
            "fsl": pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=3 * n)), 3),
            "lst": pa.array([list(range(i % 4)) for i in range(n)], pa.list_(pa.int64())),
            "st": pa.array([{"a": i, "b": f"s{i}"} for i in range(n)]),
            "m": pa.array([[("k", i)] for i in range(n)], pa.map_(pa.string(), pa.int64())),
            "when": pa.array(np.arange(n).astype("datetime64[ms]")),
            "dec": pa.array([i for i in range(n)], pa.decimal128(10, 2)),
            "nil": pa.nulls(n),
            "fsb": pa.array([bytes(4)] * n, pa.binary(4)),
        }
    )


def poisoned(data: bytes, keep: list[tuple[int, int]]) -> np.ndarray:
    """``data`` with every byte outside the ranges ``keep`` overwritten."""
    out = np.full(len(data), 0xFF, dtype=np.uint8)
    src = np.frombuffer(data, dtype=np.uint8)
    for a, b in keep:
        out[a:b] = src[a:b]
    return out


def head_of(data: np.ndarray) -> int:
    """How many bytes of a segment a store reads before it knows the layout (from 64 on)."""
    done = 64
    while True:
        try:
            _ipc.layout(data[:done], len(data))
            return done
        except _ipc.Incomplete as more:
            assert more.need > done
            done = more.need


@pytest.mark.parametrize("pick", [[0], [3, 6], [7, 8, 9], [2, 4, 10, 11, 12, 13], list(range(14))])
def test_the_fields_read_from_their_ranges_alone_equal_the_table(
    pick: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ipc, "GAP", 0)  # no neighbours joined: the ranges are the columns'
    table = every_type()
    data = to_ipc(table)
    head = head_of(np.frombuffer(data, dtype=np.uint8))
    plan = _ipc.layout(np.frombuffer(data, dtype=np.uint8)[:head], len(data))
    assert plan is not None and plan.schema.equals(table.schema)
    spans = _ipc.ranges(plan, pick, len(data), head)
    got = _ipc.read_fields(poisoned(data, [(0, head), *spans]), pick)
    assert got.equals(table.select(pick))
    if len(pick) < 5:  # the other columns' bytes were not needed
        assert head + sum(b - a for a, b in spans) < 0.8 * len(data)


def test_a_short_head_asks_for_what_the_metadata_needs() -> None:
    data = np.frombuffer(to_ipc(every_type()), dtype=np.uint8)
    with pytest.raises(_ipc.Incomplete) as short:
        _ipc.layout(data[:100], len(data))
    assert 100 < short.value.need < len(data)
    head = head_of(data)
    assert _ipc.layout(data[:head], len(data)) is not None
    with pytest.raises(_ipc.Incomplete):
        _ipc.layout(data[: head - 1], len(data))


@pytest.mark.parametrize(
    "odd",
    [
        "two batches",
        "dictionary",
        "compressed",
        "string view",
        "wrong size",
        "garbage",
    ],
)
def test_segments_not_of_one_plain_batch_have_no_layout(odd: str) -> None:
    table = every_type()
    options = None
    if odd == "two batches":
        table = pa.concat_tables([table, table])
    elif odd == "dictionary":
        table = table.append_column("d", pa.array(["x", "y"] * 25).dictionary_encode())
    elif odd == "compressed":
        options = pa.ipc.IpcWriteOptions(compression="zstd")
    elif odd == "string view":
        table = table.append_column("v", pa.array(["x"] * 50, pa.string_view()))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    data = np.frombuffer(sink.getvalue(), dtype=np.uint8)
    size = len(data) + (8 if odd == "wrong size" else 0)
    if odd == "garbage":
        data = np.frombuffer(b"\xff\xff\xff\xff\x10\x00\x00\x00" + bytes(200), dtype=np.uint8)
        size = len(data)
    assert _ipc.layout(data, size) is None


@pytest.fixture
def poisoned_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scratch buffer a store reads into starts as garbage (as after another segment)."""
    from sidecar.recording import _assemble

    real = _assemble.Scratch.get

    def get(self: _assemble.Scratch, nbytes: int) -> np.ndarray:
        out = real(self, nbytes)
        out[:] = 0xA5
        return out

    monkeypatch.setattr(_assemble.Scratch, "get", get)


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """The byte ranges SQLite and PostgreSQL stores fetch in parts, and a short head."""
    from sidecar.recording._postgres import PostgresStore
    from sidecar.recording._sqlite import SQLiteStore

    monkeypatch.setattr(_ipc, "HEAD", 256)
    seen: list[tuple[int, int]] = []
    for kind in (PostgresStore, SQLiteStore):
        real = kind._segment_ranges

        def spy(self: Any, cur: Any, seq_lo: int, spans: Any, out: Any, real: Any = real) -> bool:
            seen.extend(spans)
            return bool(real(self, cur, seq_lo, spans, out))

        monkeypatch.setattr(kind, "_segment_ranges", spy)
    yield seen


def test_analysis_reads_fetch_only_their_columns_exactly(
    store: Store, poisoned_scratch: None, fetched: list[tuple[int, int]]
) -> None:
    batches = [batch(f"r{i}", n, 10_000.0 * i) for i, n in enumerate([300, 1_000, 57, 2_000])]
    batches.append(pa.concat_tables([batch("two", 40, 50_000.0), batch("tw2", 30, 50_040.0)]))
    batches.append(batch("h", 100, 60_000.0, holes=True))
    for b in batches:
        store.write_batch(b, None)
    fetched.clear()
    window(store, expected(batches))  # the whole window, and the analysis columns of it
    window(store, expected(batches[1:3]), since=10_000.0, until=30_000.0)
    if store.url.startswith("memory"):
        return
    _, stored = store.window_size()
    fetched.clear()
    some = store.read_window(columns=ANALYSIS)
    assert some.num_rows == sum(b.num_rows for b in batches)
    assert 0 < sum(b - a for a, b in fetched) < 0.85 * stored


def test_a_version_filter_reads_the_versions_column_it_filters_on(store: Store) -> None:
    from tests.stores import VERSIONS

    mine = batch("mine", 200, 0.0)
    other = batch("other", 100, 1_000.0)
    other = other.set_column(
        other.column_names.index("bundle_version"), "bundle_version", pa.array(["b2"] * 100)
    )
    for b in (mine, other):
        store.write_batch(b, None)
    got = store.read_window(columns=["raw"], bundle_version=VERSIONS["bundle_version"])
    assert got.num_rows == 200 and "bundle_version" not in got.column_names


# -- PostgreSQL's binary COPY, parsed by hand ------------------------------------------


class FakeCopy:
    """A COPY TO stream handed out in chunks of the given sizes (cycled)."""

    def __init__(self, stream: bytes, sizes: list[int]) -> None:
        self.stream, self.sizes, self.at, self.turn = stream, sizes, 0, 0

    def read(self) -> memoryview:
        size = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        chunk = self.stream[self.at : self.at + size]
        self.at += len(chunk)
        return memoryview(chunk)


def copy_stream(rows: list[tuple[int, bytes]], extension: bytes = b"") -> bytes:
    out = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, len(extension)) + extension
    for offset, data in rows:
        out += struct.pack(">hiii", 2, 4, offset, len(data)) + data
    return out + b"\xff\xff"


@pytest.mark.parametrize("sizes", [[1], [3, 7], [19, 14], [1000], [1 << 20], [2, 31, 5]])
def test_the_copy_stream_is_parsed_into_place_however_it_is_split(sizes: list[int]) -> None:
    from sidecar.recording._postgres import _copy_into

    rng = np.random.default_rng(len(sizes))
    data = rng.integers(0, 256, 5_000, dtype=np.uint8).tobytes()
    rows = [(a, data[a : a + 700]) for a in (4_200, 0, 700, 2_100, 1_400, 3_500, 2_800)]
    rows.append((4_900, data[4_900:]))
    out = np.zeros(5_000, dtype=np.uint8)
    got = _copy_into(FakeCopy(copy_stream(rows, b"ext"), sizes), out)
    assert got == 5_000 and out.tobytes() == data


def test_a_slice_outside_the_buffer_is_not_written() -> None:
    from sidecar.recording._postgres import _copy_into

    out = np.zeros(100, dtype=np.uint8)
    stream = copy_stream([(0, b"\x01" * 100), (90, b"\x02" * 20)])
    assert _copy_into(FakeCopy(stream, [64]), out) == -1
    assert out.tobytes() == b"\x01" * 100


def test_a_stream_of_another_shape_is_an_error() -> None:
    from sidecar import StoreError
    from sidecar.recording._postgres import _copy_into

    out = np.zeros(10, dtype=np.uint8)
    with pytest.raises(StoreError):
        _copy_into(FakeCopy(b"NOTCOPY\n\xff\r\n" + bytes(30), [100]), out)
    rows = copy_stream([]).removesuffix(b"\xff\xff")
    with pytest.raises(StoreError):  # a row of one field
        _copy_into(FakeCopy(rows + struct.pack(">hiii", 1, 4, 0, 2) + b"ab", [100]), out)
    with pytest.raises(StoreError):  # a stream that ends inside a row
        _copy_into(FakeCopy(rows + struct.pack(">hiii", 2, 4, 0, 5) + b"ab", [100]), out)


def test_ranges_of_a_compressed_postgresql_segment_are_refused(tmp_path: Any) -> None:
    """A value stored compressed gives no slices (the caller reads it whole)."""
    with fresh_store("postgresql", tmp_path) as store:
        write_compressed_segment(store)
        out = np.zeros(1 << 16, dtype=np.uint8)

        def ranged(cur: Any) -> bool:
            return bool(store._segment_ranges(cur, 0, [(0, 100)], out))  # type: ignore[attr-defined]

        assert store._run(ranged) is False  # type: ignore[attr-defined]
        assert store.read_window(columns=ANALYSIS).num_rows == 3_000


# -- memory: pieces of an export in the last piece's buffers; labels as read ---------------


def test_an_export_reads_each_piece_into_the_memory_of_the_last(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.recording import _assemble

    batches = [batch(f"p{i}", n, 1_000.0 * i) for i, n in enumerate([400, 300, 500, 200])]
    for b in batches:
        store.write_batch(b, None)
    fresh: list[int] = []
    real = _assemble._bytes
    monkeypatch.setattr(_assemble, "_bytes", lambda n: fresh.append(n) or real(n))
    seen = []
    for piece in store.iter_batches(rows=450, reuse=True):
        seen.append(piece.to_pylist())  # read before the next piece overwrites it
    if not store.url.startswith("memory"):  # 2 and 4 fit in the buffer of 1, 3 does not
        assert len(fresh) == 2
    want = pa.concat_tables(list(store.iter_batches(rows=450))).to_pylist()
    assert json_of([r for p in seen for r in p]) == json_of(want) and len(seen) == 4


def test_labels_of_every_record_in_order_come_as_a_join_gives_them(store: Store) -> None:
    from sidecar.recording import Label
    from sidecar.recording._columnar import _joined

    store.write_batch(batch("all", 300, 0.0), None)
    values: list[Any] = [1.5, 2, True, "cat", {"k": [1]}]
    store.upsert_labels([Label(f"all-{i:06d}", values[i % 5], float(i)) for i in range(300)])
    table = store.read_window()
    seq = table.column("seq").to_numpy()
    labels = store._label_columns(0, int(seq.max()) + 1)  # type: ignore[attr-defined]
    kind, num, ts, text = _joined(seq, labels)
    assert table.column("label_kind").to_pylist() == kind.tolist()
    assert json_of(table.column("label_num").to_pylist()) == json_of(num.tolist())
    assert table.column("label_ts").to_pylist() == ts.tolist()
    assert table.column("label_text").to_pylist() == text


def json_of(values: list[Any]) -> str:
    import json

    return json.dumps(values)  # NaN equals NaN as text


# -- numbers read straight into the window's arrays ------------------------------------


def test_writes_across_moved_ranges_land_where_each_byte_belongs() -> None:
    data = np.arange(100, dtype=np.uint8)
    out = np.zeros(100, dtype=np.uint8)
    a, b = np.zeros(10, dtype=np.uint8), np.zeros(5, dtype=np.uint8)
    targets = _ipc.Targets(out, [(60, 65, b), (20, 30, a)])
    assert len(targets) == 100
    for start, stop in [(0, 25), (25, 62), (62, 63), (63, 100)]:  # straddling both ranges
        targets[start:stop] = data[start:stop]
    assert a.tolist() == list(range(20, 30)) and b.tolist() == list(range(60, 65))
    moved = set(range(20, 30)) | set(range(60, 65))
    assert all(out[i] == (0 if i in moved else i) for i in range(100))


def test_numbers_are_read_straight_into_the_window(
    store: Store, poisoned_scratch: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _ipc._placed
    moved: list[str] = []

    def spy(plan: Any, indices: Any, place: Any, done: int) -> Any:
        out = real(plan, indices, place, done)
        moved.extend(plan.schema.field(i).name for i in out)
        return out

    monkeypatch.setattr(_ipc, "_placed", spy)
    monkeypatch.setattr(_ipc, "HEAD", 256)
    batches = [batch(f"m{i}", n, 10_000.0 * i) for i, n in enumerate([3_000, 2_000, 1_000])]
    batches.append(batch("h", 500, 40_000.0, holes=True))
    for b in batches:
        store.write_batch(b, None)
    window(store, expected(batches))
    want = expected(batches)
    ts = want.column("ts").to_numpy()  # cut inside the first segment and before the last
    window(
        store,
        want.filter(pa.array((ts >= 1_000.0) & (ts < 40_000.0))),
        since=1_000.0,
        until=40_000.0,
    )
    if not store.url.startswith("memory"):
        assert {"ts", "seq", "features", "raw:x", "advanced_proba"} <= set(moved)
        assert "raw:color" not in moved  # text: read into the scratch buffer, then copied


def test_numpy_is_kept_out_of_huge_pages_while_a_window_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sidecar.recording import _assemble

    switch = _assemble._hugepage_switch()
    assert switch is not None
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    before = switch(True)
    try:
        with _assemble.ordinary_pages():
            with _assemble.ordinary_pages():  # nested (another thread reading too)
                assert switch(False) is False
            assert switch(False) is False  # the outer block still holds it off
        assert switch(True) is True  # and gives it back as it was
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")  # the user chose: left alone
        with _assemble.ordinary_pages():
            assert switch(True) is True
    finally:
        switch(before)


def test_a_missing_category_reads_as_none_and_is_not_unknown() -> None:
    import sidecar
    from sidecar._window import _categories

    codes = np.array([0, 3, 1, 3, 2], dtype=np.int32)  # 3 = len(values): missing
    got, flag, (pick, table) = _categories(object(), "c", (codes, ["a", "b", "z"]))
    assert got.tolist() == ["a", None, "b", None, "z"] and flag is None
    assert table[pick].tolist() == got.tolist()
    pre = sidecar.TabularPreprocessor(columns=[sidecar.CategoricalColumn(name="c")]).fit(
        [{"c": "a"}, {"c": "b"}]
    )
    got, flag, _ = _categories(pre, "c", (codes, ["a", "b", "z"]))
    assert got.tolist()[:2] == ["a", None] and got[3] is None
    assert flag is not None and flag.tolist() == [False, False, False, False, True]
