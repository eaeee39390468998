"""Replay from columns stores what the record-by-record replay stores, on every store.

The same records, labels and times go through ``replay`` twice: as a list
of records (the serving path, one batch at a time) and as an Arrow table
(the column path ``sidecar replay`` takes). The stores then hold the same
raw inputs, features, predictions, probabilities, versions and labels;
only the request ids and the latencies differ. Bad input records nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

import sidecar
import sidecar._replay._table as replay_table_module
from sidecar import InputError
from sidecar.recording import Store, open_store
from tests import models
from tests.stores import KINDS, fresh_store, store_url

N = 700
BATCH = 64
DAY0 = 1_767_225_600.0
COMPARED = (
    "ts",
    "bundle_version",
    "preprocessing_version",
    "advanced_version",
    "baseline_version",
    "candidate_version",
    "features",
    "advanced_prediction",
    "advanced_proba",
    "baseline_prediction",
    "baseline_proba",
    "shadow_error",
    "label_kind",
    "label_num",
    "label_text",
    "label_ts",
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> sidecar.Bundle:
    """A logistic regression over converted units (lb -> kg) and a one-hot category."""
    train, y_train, ref, y_ref = models.make_classification_data(n_train=300, n_ref=150, seed=3)
    columns = models.preprocessing_columns(
        weight={"unit": "kg", "input_unit": "lb"}, temp={"allow_missing": True}
    )
    columns[-1] = sidecar.CategoricalColumn(name="color", top_n=3, encoding="onehot")
    pre = sidecar.TabularPreprocessor(columns=columns)
    X = pre.fit(train).transform(train)
    wrapped = sidecar.wrap(
        LogisticRegression(max_iter=20_000, tol=1e-3).fit(X, y_train),
        task="classification",
        preprocessing=sidecar.TabularPreprocessor(columns=columns),
        train=(train, y_train),
        reference=(ref, y_ref),
    )
    return sidecar.load(wrapped.save(tmp_path_factory.mktemp("replay") / "bundle"))


def _data(seed: int = 5) -> tuple[list[dict[str, Any]], list[Any], list[float], list[Any]]:
    """Records (missing temps, unknown colours), labels (some never came), times."""
    _, _, records, y = models.make_classification_data(n_train=1, n_ref=N, seed=seed)
    rng = np.random.default_rng(seed)
    for i, rec in enumerate(records):
        if i % 7 == 0:
            rec["temp"] = None
        if i % 11 == 0:
            rec["color"] = "purple"
    labels: list[Any] = [None if i % 5 == 0 else int(v) for i, v in enumerate(y)]
    stamps = (DAY0 + np.sort(rng.uniform(0, 86_400, N))).tolist()
    label_stamps: list[Any] = [None if i % 9 == 0 else t + 3600.0 for i, t in enumerate(stamps)]
    return records, labels, stamps, label_stamps


def _stored(store: Store) -> pa.Table:
    return store.read_window().sort_by("ts")


def _assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows == N
    raw = sorted(c for c in want.column_names if c.startswith("raw:"))
    assert sorted(c for c in got.column_names if c.startswith("raw:")) == raw
    for name in (*COMPARED, *raw):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert len(set(got.column("request_id").to_pylist())) == N


@pytest.mark.parametrize("kind", KINDS)
def test_a_table_is_stored_as_the_records_are(
    bundle: sidecar.Bundle, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_table_module, "CHUNK_ROWS", 200)  # several chunks, a short last
    records, labels, stamps, label_stamps = _data()
    table = pa.Table.from_pylist(records)
    results = []
    stored = []
    for data in (records, table):
        with fresh_store(kind, tmp_path / type(data).__name__) as store:
            done = sidecar.replay(
                bundle, data, store=store, labels=labels, timestamps=stamps,
                label_timestamps=label_stamps, batch_size=BATCH,
            )  # fmt: skip
            results.append(done)
            stored.append(_stored(store))
            assert store.count() == {"predictions": N, "labels": results[-1].labels_accepted}
    old, new = results
    assert (new.records, new.labels_accepted, new.labels_unknown, new.dropped) == (
        old.records, old.labels_accepted, old.labels_unknown, old.dropped,
    )  # fmt: skip
    assert new.labels_accepted == sum(
        1 for y, t in zip(labels, label_stamps, strict=True) if y is not None and t is not None
    )
    _assert_same(stored[1], stored[0])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_cli_replays_parquet_and_csv_as_the_records_are(
    bundle: sidecar.Bundle, kind: str, tmp_path: Path
) -> None:
    records, labels, stamps, label_stamps = _data(seed=8)
    rows = [
        {**r, "y": y, "ts": t, "seen": s}
        for r, y, t, s in zip(records, labels, stamps, label_stamps, strict=True)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    with open(tmp_path / "data.csv", "w") as fh:  # repr: every float's digits, as Python reads them
        fh.write(",".join(rows[0]) + "\n")
        for r in rows:
            fh.write(",".join("" if v is None else repr(v).strip("'") for v in r.values()) + "\n")
    with store_url(kind, tmp_path / "want") as url:
        store = open_store(url)
        sidecar.replay(
            bundle, records, store=store, labels=[None if y is None else str(y) for y in labels],
            timestamps=stamps, label_timestamps=label_stamps, batch_size=BATCH,
        )  # fmt: skip
        want = _stored(store)
        store.close()
    for name in ("data.parquet", "data.csv"):
        with store_url(kind, tmp_path / f"store-{name}") as url:
            done = _cli(bundle, tmp_path / name, url)
            assert done["records"] == N
            store = open_store(url)
            _assert_same(_stored(store), want)
            store.close()


def _cli(bundle: sidecar.Bundle, data: Path, url: str) -> dict[str, Any]:
    assert bundle.path is not None
    done = subprocess.run(
        [
            sys.executable, "-m", "sidecar", "replay", str(bundle.path), "--data", str(data),
            "--store", url, "--label-column", "y", "--timestamp-column", "ts",
            "--label-timestamp-column", "seen", "--batch-size", str(BATCH), "--json",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_bad_value_or_label_records_nothing_and_names_its_row(
    bundle: sidecar.Bundle, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_table_module, "CHUNK_ROWS", 100)
    records, labels, stamps, _ = _data()
    bad = [dict(r) for r in records]
    bad[650]["weight"] = float("inf")
    with fresh_store(kind, tmp_path) as store:
        with pytest.raises(InputError, match=r"`records\[650\]\.weight` must be a finite number"):
            sidecar.replay(bundle, pa.Table.from_pylist(bad), store=store, batch_size=BATCH)
        wrong = list(labels)
        wrong[640] = 7
        with pytest.raises(InputError, match=r"`labels\[640\]` must be one of the integer classes"):
            sidecar.replay(bundle, pa.Table.from_pylist(records), store=store, labels=wrong)
        late = list(stamps)
        late[699] = float("nan")
        with pytest.raises(InputError, match=r"`timestamps\[699\]` must be finite epoch seconds"):
            sidecar.replay(bundle, pa.Table.from_pylist(records), store=store, timestamps=late)
        assert store.count() == {"predictions": 0, "labels": 0}


def test_a_store_that_fails_midway_keeps_whole_chunks_and_says_how_many(
    bundle: sidecar.Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_table_module, "CHUNK_ROWS", 200)
    records, labels, stamps, _ = _data()
    with fresh_store("sqlite", tmp_path) as store:
        calls = []
        real = replay_table_module.append

        def flaky(*args: Any) -> Any:
            calls.append(1)
            if len(calls) == 3:
                raise sidecar.StoreError("the store sqlite:///x failed: disk I/O error")
            return real(*args)

        monkeypatch.setattr(replay_table_module, "append", flaky)
        with pytest.raises(sidecar.StoreError, match=r"512 of 700 records were recorded"):
            sidecar.replay(
                bundle, pa.Table.from_pylist(records), store=store, labels=labels,
                timestamps=stamps, batch_size=BATCH,
            )  # fmt: skip
        window = store.read_window()
        assert window.num_rows == 512  # two chunks of 256 (whole batches of 64)
        kinds = window.column("label_kind").to_numpy()
        assert int((kinds >= 0).sum()) == sum(y is not None for y in labels[:512])


def test_a_dataframe_takes_the_column_path_and_a_mixed_one_the_record_path(
    bundle: sidecar.Bundle, tmp_path: Path
) -> None:
    import pandas as pd

    records, labels, stamps, _ = _data()
    frame = pd.DataFrame(records)  # a missing temp is NaN here: a missing value, as in a record
    mixed = frame.astype({"color": object})
    mixed.loc[3, "color"] = 7  # an integer code among words: Arrow cannot hold the column
    stored = []
    for data in (records, frame, mixed):
        with fresh_store("sqlite", tmp_path / str(len(stored))) as store:
            done = sidecar.replay(
                bundle, data, store=store, labels=labels, timestamps=stamps, batch_size=BATCH
            )
            assert done.records == N
            stored.append(_stored(store))
    _assert_same(stored[1], stored[0])
    assert "raw_json" in stored[2].column_names  # the record path keeps mixed inputs as JSON


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_cli_names_a_bad_cell_and_exits_2(
    bundle: sidecar.Bundle, suffix: str, tmp_path: Path
) -> None:
    records, labels, stamps, _ = _data(seed=8)
    rows = [{**r, "y": y, "ts": t} for r, y, t in zip(records, labels, stamps, strict=True)]
    data = tmp_path / f"data{suffix}"
    if suffix == ".csv":  # a word in a numeric column: read record by record, as before
        rows[300]["age"] = "n/a"
        with open(data, "w") as fh:
            fh.write(",".join(rows[0]) + "\n")
            for r in rows:
                fh.write(",".join("" if v is None else str(v) for v in r.values()) + "\n")
        want = r"`records\[44\]\.age` must be a finite number; got 'n/a' \(str\)"
    else:
        rows[300]["age"] = -(2**62)
        rows[300]["weight"] = float("nan")
        pq.write_table(pa.Table.from_pylist(rows), data)
        want = r"`records\[300\]\.weight` must be a finite number; got nan \(float\)"
    assert bundle.path is not None
    url = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "replay", str(bundle.path), "--data", str(data),
         "--store", url, "--label-column", "y", "--timestamp-column", "ts",
         "--batch-size", str(BATCH)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert __import__("re").search(want, done.stderr), done.stderr
    if suffix == ".parquet":  # the column path checks every cell before it writes
        store = open_store(url)
        assert store.count() == {"predictions": 0, "labels": 0}
        store.close()


def test_a_regressor_with_a_candidate_in_shadow_is_stored_as_its_records_are() -> None:
    from sklearn.linear_model import Ridge

    train, y, ref, y_ref = models.make_regression_data(n_train=200, n_ref=300, seed=1)
    X = sidecar.TabularPreprocessor(columns=models.preprocessing_columns()).fit(train)
    X_train = X.transform(train)
    champion = sidecar.wrap(
        Ridge().fit(X_train, y),
        task="regression",
        preprocessing=sidecar.TabularPreprocessor(columns=models.preprocessing_columns()),
        train=(train, y),
        reference=(ref[:100], y_ref[:100]),
    )
    champion.attach_candidate(champion.with_models(advanced=Ridge(alpha=5.0).fit(X_train, y)))
    stored = []
    for data in (ref, pa.Table.from_pylist(ref)):
        store = open_store("memory://")
        sidecar.replay(
            champion, data, store=store, labels=list(y_ref), timestamps=list(range(300)),
            batch_size=50,
        )  # fmt: skip
        stored.append(store.read_window().sort_by("ts"))
    want, got = stored
    assert got.column("candidate_version")[0].as_py() == champion.candidate.version  # type: ignore[union-attr]
    for name in want.column_names:
        if name not in ("request_id", "seq") and not name.endswith("_latency_ms"):
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_replay_leaves_the_bundles_own_recorder_and_policy_as_they_were(
    bundle: sidecar.Bundle, tmp_path: Path
) -> None:
    """Replay records through a shadow stage of its own: the bundle's is not rewired."""
    from sidecar.recording import Recorder, RecordPolicy

    records, labels, stamps, _ = _data()
    served = open_store(f"sqlite:///{tmp_path / 'served.db'}")
    replayed = open_store(f"sqlite:///{tmp_path / 'replayed.db'}")
    recorder = Recorder(served)
    policy = RecordPolicy(exclude=["color"])
    bundle.attach_recorder(recorder, policy=policy)
    try:
        stage = bundle.shadow
        sidecar.replay(bundle, records[:100], store=replayed, labels=labels[:100],
                       timestamps=stamps[:100], batch_size=BATCH)  # fmt: skip
        assert bundle.recorder is recorder and bundle.shadow is stage
        bundle.predict(records[:3])  # served afterwards: still recorded, still without color
        assert bundle.shadow.drain(10) and recorder.flush(timeout=10)
        kept = served.read_window()
        assert kept.num_rows == 3 and "raw:color" not in kept.column_names
        assert replayed.read_window().num_rows == 100
    finally:
        bundle.attach_recorder(None)
        recorder.close()
        served.close()
        replayed.close()


def test_a_refused_replay_leaves_no_new_store_and_keeps_an_old_one(
    bundle: sidecar.Bundle, tmp_path: Path
) -> None:
    """Input the bundle cannot take, or a file that is not Parquet, is a usage error (exit 2)
    that names the problem; the SQLite file the replay would have made is not left behind,
    and a store that was there before keeps what it held."""
    assert bundle.path is not None
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    kept = tmp_path / "kept.db"
    old = open_store(f"sqlite:///{kept}")
    records, *_ = _data(seed=9)
    sidecar.replay(bundle, records[:20], store=old)
    old.close()
    for data, says in (("wrong.csv", "must be present"), ("broken.parquet", "must be a Parquet")):
        for db in ("new.db", "kept.db"):
            done = subprocess.run(
                [
                    sys.executable, "-m", "sidecar", "replay", str(bundle.path),
                    "--data", str(tmp_path / data), "--store", f"sqlite:///{tmp_path / db}",
                ],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list(tmp_path.glob("new.db*"))
    store = open_store(f"sqlite:///{kept}", create=False)
    assert store.count()["predictions"] == 20
    store.close()


def test_cleaning_up_after_a_failed_replay_never_hides_why_it_failed(tmp_path: Path) -> None:
    """If the store fails too (here its file is no longer a database), the clean-up
    keeps the file and raises nothing: the replay's own error is the one reported."""
    from sidecar.cli._store_cmds import _drop_if_empty

    made = tmp_path / "made.db"
    store = open_store(f"sqlite:///{made}")
    store.close()
    made.write_bytes(b"not a database any more" * 100)
    broken = open_store(f"sqlite:///{made}", migrate=False)
    with pytest.raises(Exception, match="database"):
        broken.count()  # the failure the clean-up meets
    _drop_if_empty(broken, made)  # raises nothing
    assert made.exists()  # and, not knowing what it holds, removes nothing
