"""The columnar analysis path: typed windows, migration, merging, the memory limit, export.

Every test runs over memory, SQLite and PostgreSQL where a store is involved; the
migration runs on stores written with the version-1 schema (one JSON row per record).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from sklearn.ensemble import RandomForestClassifier

import sidecar
from sidecar.recording import Label, Store, open_store
from sidecar.recording._records import COLUMNS, dumps, encode_records
from sidecar.recording._schema import LATEST, migrations
from sidecar.recording._sql import SEGMENT_ROWS, SQLStore
from tests import models
from tests.stores import (
    KINDS,
    VERSIONS,
    fresh_store,
    make_row,
    pg_admin,
    pg_schema,
    pg_url,
    store_url,
)


def batch(prefix: str, n: int, *, ts0: float = 1_000.0, version: str = "b1") -> pa.Table:
    """``n`` served records (2 numeric inputs, 1 categorical), with features and probabilities."""
    rng = np.random.default_rng(len(prefix) + n)
    records = [
        {"x": float(rng.normal()), "k": int(rng.integers(9)), "color": str(rng.choice(["r", "g"]))}
        for _ in range(n)
    ]
    p = rng.random(n)
    return encode_records(
        records,
        request_ids=[f"{prefix}-{i:06d}" for i in range(n)],
        ts=ts0 + np.arange(n, dtype=np.float64),
        versions={**VERSIONS, "bundle_version": version},
        features=rng.normal(size=(n, 3)),
        outputs={
            "advanced": (np.where(p > 0.5, "cat", "dog"), np.column_stack([p, 1 - p])),
            "baseline": (np.where(p > 0.4, "cat", "dog"), np.column_stack([p, 1 - p])),
            "candidate": None,
        },
        latencies={"advanced_latency_ms": 1.5, "baseline_latency_ms": 0.5},
        error=None,
    )


# -- the window as typed columns ------------------------------------------------------------


def test_a_window_comes_back_as_typed_columns_with_its_labels(store: Store) -> None:
    first, second = batch("a", 300), batch("b", 200, ts0=2_000.0)
    store.write_batch(first, None)
    store.write_batch(second, None)
    result = store.upsert_labels([Label("a-000007", "cat", 5.0), Label("b-000003", 2.5, 6.0)])
    assert result.accepted == 2
    table = store.read_window(since=1_100.0, until=2_100.0)
    assert table.num_rows == 200 + 100
    assert table.column("raw:x").type == pa.float64()
    assert table.column("raw:k").type == pa.int64()
    assert table.column("raw:color").type == pa.string()
    assert table.column("features").type == pa.list_(pa.float64(), 3)
    assert table.column("advanced_proba").type == pa.list_(pa.float64(), 2)
    ts = table.column("ts").to_numpy()
    assert np.all(np.diff(ts) >= 0) and ts.min() >= 1_100.0 and ts.max() < 2_100.0
    np.testing.assert_array_equal(
        table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, 3),
        np.vstack(
            [
                first.column("features").combine_chunks().flatten().to_numpy().reshape(-1, 3)[100:],
                second.column("features")
                .combine_chunks()
                .flatten()
                .to_numpy()
                .reshape(-1, 3)[:100],
            ]
        ),
    )
    kind = table.column("label_kind").to_numpy()
    ids = table.column("request_id").to_pylist()
    assert [ids[i] for i in np.flatnonzero(kind >= 0)] == ["b-000003"]
    assert table.column("label_num").to_pylist()[ids.index("b-000003")] == 2.5
    everything = store.read_window()
    assert everything.num_rows == 500
    texts = everything.column("label_text").to_pylist()
    assert texts[everything.column("request_id").to_pylist().index("a-000007")] == "cat"
    only = store.read_window(bundle_version="other", columns=["raw"])
    assert only.num_rows == 0


def test_a_retried_batch_and_a_repeated_id_keep_the_first_record(store: Store) -> None:
    rows = batch("r", 50)
    store.write_batch(rows, None)
    store.write_batch(rows, None)  # a retry after a lost acknowledgement
    twice = pa.concat_tables([batch("t", 3), batch("t", 3, ts0=5.0)])
    store.write_batch(twice, None)
    table = store.read_window()
    assert table.num_rows == 53
    ts = dict(
        zip(table.column("request_id").to_pylist(), table.column("ts").to_pylist(), strict=True)
    )
    assert [ts[f"t-{i:06d}"] for i in range(3)] == [1_000.0, 1_001.0, 1_002.0]
    assert store.count() == {"predictions": 53, "labels": 0}


def test_small_commits_are_merged_and_labels_still_find_their_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = open_store(url)
    try:
        for i in range(40):  # light traffic: a few records per commit
            store.write_batch(batch(f"s{i:02d}", 5, ts0=1_000.0 + 10 * i), None)
        store.upsert_labels([Label(f"s{i:02d}-000001", "dog") for i in range(40)])
        for i in range(40, 300):
            store.write_batch(batch(f"s{i:03d}", 5, ts0=1_000.0 + 10 * i), None)
        with sqlite3.connect(tmp_path / "records.db") as conn:
            n_segments, n_rows = conn.execute(
                "SELECT COUNT(*), SUM(n_rows) FROM sidecar_segments"
            ).fetchone()
        assert n_rows == 1_500
        assert n_segments < 300 // 4, "small segments were not merged"
        table = store.read_window()
        assert table.num_rows == 1_500
        labelled = table.filter(pa.array(table.column("label_kind").to_numpy() >= 0))
        assert sorted(labelled.column("request_id").to_pylist()) == [
            f"s{i:02d}-000001" for i in range(40)
        ]
        assert set(labelled.column("label_text").to_pylist()) == {"dog"}
    finally:
        store.close()
    assert SEGMENT_ROWS >= 50_000  # the merge target the docs promise


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_only_neighbouring_segments_merge_so_ranges_never_overlap(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small segment left behind by a large one stays apart from the small ones after it.

    (Merging every small segment at once once gave a segment whose range
    spanned the large one: rows then came back out of order and a scan by
    sequence number read the large one's range twice.)
    """
    monkeypatch.setattr("sidecar.recording._segments.SEGMENT_ROWS", 20)
    with fresh_store(kind, tmp_path) as store:
        assert isinstance(store, SQLStore)
        sizes = [5, 30, *([5] * 9), 3, 40, 5, 5]
        ts0 = 1_000.0
        for i, n in enumerate(sizes):
            store.write_batch(batch(f"n{i:02d}", n, ts0=ts0), None)
            ts0 += n

        def segments(cur: Any) -> list[tuple[int, int, int]]:
            cur.execute("SELECT seq_lo, seq_hi, n_rows FROM sidecar_segments ORDER BY seq_lo")
            return [tuple(map(int, r)) for r in cur.fetchall()]

        found = store._run(segments)
        for before, after in itertools.pairwise(found):
            assert before[1] <= after[0], f"overlapping segments {before} and {after}"
        assert sum(s[2] for s in found) == sum(sizes)
        assert (0, 5, 5) in found, "the first small segment must not merge across the large one"
        assert any(s[2] >= 20 and s[1] - s[0] == s[2] for s in found[2:]), "no run was merged"
        table = store.read_window()
        ts = table.column("ts").to_numpy()
        assert table.num_rows == sum(sizes) and np.all(np.diff(ts) > 0)
        pieces = list(store.iter_batches(rows=25))
        assert sum(p.num_rows for p in pieces) == sum(sizes)


def test_a_window_over_the_memory_limit_is_refused_naming_it(store: Store) -> None:
    store.write_batch(batch("m", 2_000), None)
    n, nbytes = store.window_size()
    assert n == 2_000 and nbytes > 0
    with pytest.raises(sidecar.InputError, match=r"over the memory limit .*SIDECAR_MEMORY_LIMIT"):
        store.read_window(max_bytes=nbytes // 2)
    assert store.read_window(max_bytes=nbytes).num_rows == 2_000


# -- labels as an append-only log of segments ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_newest_label_wins_across_many_small_feedback_batches(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sidecar.recording._label_log.SEGMENT_ROWS", 12)
    with fresh_store(kind, tmp_path) as store:
        store.write_batch(batch("L", 40), None)
        expected: dict[str, Any] = {}
        rng = np.random.default_rng(2)
        values: list[Any] = ["cat", 2, 2.5, True, {"a": [1]}]
        for step in range(60):  # light feedback traffic: a few labels a call, some relabelled
            ids = [f"L-{i:06d}" for i in rng.choice(40, size=3, replace=False)]
            value = values[step % len(values)]
            assert (
                store.upsert_labels([Label(rid, value, float(step)) for rid in ids]).accepted == 3
            )
            expected.update(dict.fromkeys(ids, (value, float(step))))
        assert store.count() == {"predictions": 40, "labels": len(expected)}
        got = {r["request_id"]: r for chunk in store.iter_joined() for r in chunk}
        for rid, (value, ts) in expected.items():
            assert json.loads(got[rid]["label"]) == value and got[rid]["label_ts"] == ts, rid
        assert all(got[r]["label"] is None for r in got if r not in expected)
        if isinstance(store, SQLStore):

            def n_segments(cur: Any) -> int:
                cur.execute("SELECT COUNT(*) FROM sidecar_label_segments")
                return int(cur.fetchone()[0])

            assert store._run(n_segments) < 60 // 3, "small label segments were not merged"


def test_labels_are_counted_once_per_record_from_segment_ranges(store: Store) -> None:
    from sidecar.recording._label_log import overlapping_groups

    assert overlapping_groups([(1, 0, 9, 10), (3, 5, 25, 2), (2, 20, 29, 10), (4, 40, 44, 5)]) == [
        [(1, 0, 9, 10), (3, 5, 25, 2), (2, 20, 29, 10)],
        [(4, 40, 44, 5)],
    ]
    store.write_batch(batch("C", 50), None)

    def label(rows: range | list[int], value: Any) -> None:
        store.upsert_labels([Label(f"C-{i:06d}", value, 1.0) for i in rows])

    label(range(10), 1)
    label(range(20, 30), 0)
    assert store.count()["labels"] == 20  # disjoint segments: counted from their ranges
    label([5, 25, 5], 2)  # spans both: its records are counted once
    label(range(40, 45), 1)
    assert store.count() == {"predictions": 50, "labels": 25}
    labels = store.read_window().column("label_kind").to_numpy()
    assert int((labels >= 0).sum()) == 25


def _write_v2(store: SQLStore, labels: dict[str, tuple[int, float | None, str | None]]) -> None:
    """A store as model-sidecar left it at schema version 2: labels as rows of a table."""

    def work(cur: Any) -> None:
        cur.execute("CREATE TABLE sidecar_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        steps = migrations(store.dialect, lambda cur: None)
        for step in [*steps[1], *steps[2]]:
            cur.execute(step) if isinstance(step, str) else step(cur)
        store._write_table(cur, batch("v2", 70), compact=False)
        m = store.marker
        for rid, (k, num, text) in labels.items():
            cur.execute(
                "INSERT INTO sidecar_labels (seq, kind, num, text, ts) SELECT seq, "
                f"{m}, {m}, {m}, {m} FROM sidecar_records WHERE request_id = {m}",
                (k, num, text, 9.0, rid),
            )
        cur.execute(
            f"INSERT INTO sidecar_meta (key, value) VALUES ({m}, {m})", ("schema_version", "2")
        )

    store._run(work, write=True, migrating=True)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_version_2_store_moves_its_labels_into_segments_on_open(
    kind: str, tmp_path: Path
) -> None:
    labels = {
        "v2-000001": (3, None, "cat"),
        "v2-000002": (1, 2.0, None),
        "v2-000004": (2, 1.0, None),
        "v2-000005": (0, 1.5, None),
        "v2-000069": (4, None, '{"a": 1}'),
    }
    with store_url(kind, tmp_path) as url:
        old = open_store(url, migrate=False)
        assert isinstance(old, SQLStore)
        _write_v2(old, labels)
        old.close()
        store = open_store(url)  # migrates
        try:
            assert isinstance(store, SQLStore)
            assert store.count() == {"predictions": 70, "labels": 5}
            got = {r["request_id"]: r for chunk in store.iter_joined() for r in chunk}
            assert {k: json.loads(got[k]["label"]) for k in labels} == {
                "v2-000001": "cat",
                "v2-000002": 2,
                "v2-000004": True,
                "v2-000005": 1.5,
                "v2-000069": {"a": 1},
            }
            assert {got[k]["label_ts"] for k in labels} == {9.0}

            def tables(cur: Any) -> set[str]:
                cur.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    if kind == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
                return {r[0] for r in cur.fetchall()}

            assert "sidecar_labels" not in store._run(tables)
            store.upsert_labels([Label("v2-000001", "dog")])  # the log goes on after the move
            table = store.read_window()
            texts = dict(
                zip(
                    table.column("request_id").to_pylist(),
                    table.column("label_text").to_pylist(),
                    strict=True,
                )
            )
            assert texts["v2-000001"] == "dog"
            assert store.migrate() == LATEST
        finally:
            store.close()


# -- migration from schema version 1 ------------------------------------------------------


def _write_v1(store: SQLStore, rows: list[tuple[Any, ...]], labels: dict[str, str]) -> None:
    """A store as model-sidecar 0.1 left it: the version-1 tables, JSON rows and labels."""

    def work(cur: Any) -> None:
        cur.execute("CREATE TABLE sidecar_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for step in migrations(store.dialect, lambda cur: None)[1]:
            assert isinstance(step, str)
            cur.execute(step)
        m = store.marker
        marks = ", ".join([m] * len(COLUMNS))
        for row in rows:
            cur.execute(
                f"INSERT INTO sidecar_predictions ({', '.join(COLUMNS)}) VALUES ({marks})", row
            )
        for rid, label in labels.items():
            cur.execute(
                f"INSERT INTO sidecar_labels (request_id, label, ts) VALUES ({m}, {m}, {m})",
                (rid, label, 7.0),
            )
        cur.execute(
            f"INSERT INTO sidecar_meta (key, value) VALUES ({m}, {m})", ("schema_version", "1")
        )

    store._run(work, write=True, migrating=True)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_version_1_store_is_migrated_to_segments_on_open(kind: str, tmp_path: Path) -> None:
    rows = [make_row(f"v1-{i:04d}", 100.0 + i) for i in range(120)]
    rows[3] = make_row("v1-0003", 103.0, raw=dumps({"id": "odd", "x": [1, 2]}))
    labels = {"v1-0001": '"cat"', "v1-0002": "2", "v1-0004": "true", "v1-0005": "1.5"}
    with store_url(kind, tmp_path) as url:
        old = open_store(url, migrate=False)
        assert isinstance(old, SQLStore)
        _write_v1(old, rows, labels)
        old.close()
        store = open_store(url)  # migrates
        try:
            got = {r["request_id"]: r for chunk in store.iter_joined() for r in chunk}
            assert store.count() == {"predictions": 120, "labels": 4}
            for row in rows:
                record = got[row[0]]
                assert tuple(record[c] for c in COLUMNS) == row
            assert {k: got[k]["label"] for k in labels} == labels
            table = store.read_window()
            assert table.num_rows == 120 and "raw_json" in table.column_names
            again = open_store(url)  # idempotent: a second opener finds version 2
            assert again.migrate() == LATEST
            again.close()
        finally:
            store.close()


# -- diagnosis, retraining data and export read the same columns -------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> sidecar.Bundle:
    train, y_train, ref, y_ref = models.make_classification_data(n_train=300, n_ref=200, seed=5)
    pre = sidecar.TabularPreprocessor(columns=models.preprocessing_columns())
    X = pre.fit(train).transform(train)
    wrapped = sidecar.wrap(
        RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y_train),
        task="classification",
        preprocessing=sidecar.TabularPreprocessor(columns=models.preprocessing_columns()),
        train=(train, y_train),
        reference=(ref, y_ref),
    )
    return sidecar.load(wrapped.save(tmp_path_factory.mktemp("columns") / "bundle"))


def test_the_window_holds_what_was_served_without_preprocessing_again(
    bundle: sidecar.Bundle, store: Store
) -> None:
    from sidecar._window import load_window

    _, _, records, y = models.make_classification_data(n_train=10, n_ref=400, seed=9)
    sidecar.replay(bundle, records, store=store, labels=list(y), timestamps=list(range(400)))
    window = load_window(bundle, store)
    X, report = bundle.preprocessing.transform_with_report(records)
    assert window.n == 400 and window.labelled.all()
    np.testing.assert_array_equal(window.features, X)
    np.testing.assert_array_equal(
        window.advanced, bundle.predict(records, shadow=False).predictions
    )
    np.testing.assert_allclose(window.raw_numeric["age"], [r["age"] for r in records])
    assert list(window.raw_categorical["color"]) == [r["color"] for r in records]
    codes, table = window.categorical_codes["color"]  # what the diagnosis counts
    assert list(table[codes]) == [r["color"] for r in records]
    assert window.unknown == {f: n for f, n in report.unknown.items() if f == "color"}
    assert window.labels.tolist() == list(y)
    recent = sidecar.recent_data(bundle, store)
    assert recent.records == [{f: r[f] for f in bundle.preprocessing.input_fields} for r in records]


def test_export_is_a_typed_dataset_partitioned_by_version_and_hour(
    bundle: sidecar.Bundle, store: Store, tmp_path: Path
) -> None:
    import duckdb

    _, _, records, y = models.make_classification_data(n_train=10, n_ref=300, seed=11)
    stamps = [1_767_225_600.0 + 60.0 * i for i in range(300)]  # 5 hours from 2026-01-01 00:00
    sidecar.replay(bundle, records, store=store, labels=list(y), timestamps=stamps)
    out = tmp_path / "export"
    assert sidecar.export_parquet(store, out, rows_per_piece=100) == 300
    hours = sorted(p.name for p in (out / f"bundle_version={bundle.version}").iterdir())
    assert hours == [f"hour=2026-01-01T0{h}" for h in range(5)]
    data = ds.dataset(out, partitioning="hive").to_table()
    assert data.num_rows == 300
    assert data.schema.field("raw:age").type == pa.int64()
    assert data.schema.field("raw:color").type == pa.string()
    assert data.schema.field("label").type == pa.float64()
    got = duckdb.sql(
        f"SELECT hour, COUNT(*), SUM(label) FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning = true) GROUP BY hour ORDER BY hour"
    ).fetchall()
    assert [r[1] for r in got] == [60] * 5
    assert sum(r[2] for r in got) == pytest.approx(float(np.sum(y)))
    assert data.schema.field("features").type.value_type == pa.float64()
    # dictionary pages for repeating text only: numbers and request ids are written plain
    import pyarrow.parquet as pq

    first = next(out.rglob("*.parquet"))
    meta = pq.ParquetFile(first).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["raw:color"]
    for plain in ("raw:age", "request_id", "ts"):
        assert "RLE_DICTIONARY" not in encodings[plain], plain
    compression = {
        meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)
    }
    assert compression["raw:color"] == "SNAPPY" and compression["raw:age"] == "UNCOMPRESSED"


# -- past one machine: replicas write one PostgreSQL store, one diagnosis reads it ----------


def _replica(url: str, bundle_dir: str, part: int, barrier: Any) -> None:
    from tests import models as m

    served = sidecar.load(bundle_dir)
    _, _, records, y = m.make_classification_data(n_train=10, n_ref=600, seed=20 + part)
    barrier.wait(timeout=60)
    store = open_store(url)
    try:
        sidecar.replay(served, records, store=store, labels=list(y), batch_size=50)
    finally:
        store.close()


def test_two_replicas_write_one_postgresql_store_and_one_diagnosis_reads_all(
    bundle: sidecar.Bundle, tmp_path: Path
) -> None:
    path = bundle.save(tmp_path / "served")
    with pg_schema() as schema:
        url = pg_url(schema)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_replica, args=(url, str(path), i, barrier)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        assert [p.exitcode for p in procs] == [0, 0]
        result = sidecar.diagnose(bundle, url)
        assert result.n_records == 1_200 and result.n_labelled == 1_200
        with pg_admin() as admin:
            (n,) = admin.execute(f'SELECT SUM(n_rows) FROM "{schema}".sidecar_segments').fetchone()
        assert n == 1_200


# -- the label rule, once per distinct stored label ----------------------------------------


def _checked_one_by_one(table: pa.Table, bundle: sidecar.Bundle) -> list[Any]:
    """The label rule applied record by record: what ``checked_labels`` must equal."""
    from sidecar._labels import MISSING, label_rule
    from sidecar.recording._columnar import decode_labels

    coerce, _, allowed = label_rule(bundle.task, bundle.advanced.classes)
    kind = table.column("label_kind").to_numpy()
    labels = decode_labels(
        kind,
        table.column("label_num").to_numpy(zero_copy_only=False),
        table.column("label_text").to_pylist(),
    )
    out: list[Any] = []
    for k, v in zip(kind.tolist(), labels.tolist(), strict=True):
        got = MISSING if k < 0 else coerce(v)
        out.append(None if got is MISSING or (allowed and got not in allowed) else got)
    return out


def test_checked_labels_equal_the_rule_applied_record_by_record(
    bundle: sidecar.Bundle, store: Store
) -> None:
    from sidecar._window import checked_labels

    store.write_batch(batch("c", 400), None)
    rng = np.random.default_rng(8)
    classes = list(bundle.advanced.classes)
    pool: list[Any] = [*classes, str(classes[0]), 1.0, True, "Benign", 7, -2.5, {"a": 1}]
    chosen = rng.choice(400, size=300, replace=False)
    store.upsert_labels(
        [Label(f"c-{i:06d}", pool[int(rng.integers(len(pool)))]) for i in chosen.tolist()]
    )
    table = store.read_window()
    notes: list[str] = []
    got = checked_labels(table, bundle, notes)
    expected = _checked_one_by_one(table, bundle)
    assert got.tolist() == expected
    assert [type(v) for v in got.tolist()] == [type(v) for v in expected]
    left_out = sum(1 for k, v in zip(table.column("label_kind").to_numpy(), expected, strict=True)
                   if k >= 0 and v is None)  # fmt: skip
    assert left_out > 0 and notes and notes[0].startswith(f"{left_out} stored labels were left out")


def test_export_partitions_interleaved_versions_and_hours(store: Store, tmp_path: Path) -> None:
    import duckdb

    # two versions served side by side, each commit spanning two hours, out of time order
    for i, (version, ts0) in enumerate([("b1", 7_000.0), ("b2", 3_500.0), ("b1", 100.0)]):
        piece = batch(f"e{i}", 60, ts0=ts0, version=version)
        order = np.random.default_rng(i).permutation(60)
        store.write_batch(piece.take(pa.array(order)), None)
    out = tmp_path / "export"
    assert sidecar.export_parquet(store, out) == 180
    got = duckdb.sql(
        f"SELECT bundle_version, hour, COUNT(*) FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    hours: dict[tuple[str, str], int] = {}
    for version, ts0 in [("b1", 7_000.0), ("b2", 3_500.0), ("b1", 100.0)]:
        for t in ts0 + np.arange(60):
            key = (
                version,
                datetime.fromtimestamp(int(t // 3600) * 3600, UTC).strftime("%Y-%m-%dT%H"),
            )
            hours[key] = hours.get(key, 0) + 1
    assert [(v, h, n) for v, h, n in got] == sorted((v, h, n) for (v, h), n in hours.items())
    files = list(out.rglob("*.parquet"))
    assert len(files) == len(hours)  # one file per partition and piece: nothing written twice
