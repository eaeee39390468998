"""pandas, polars and Arrow tables wherever records are accepted."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import sidecar
from sidecar import InputError
from sidecar._frames import as_records


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "weight": rng.normal(70, 12, size=n),
            "age": rng.integers(18, 90, size=n),  # int64: NumPy scalars per cell
            "color": pd.Categorical(rng.choice(["red", "green", "blue"], size=n)),
        }
    )
    df.loc[::7, "weight"] = np.nan  # missing values
    y = pd.Series((df["age"] > 50).astype(int), name="label")
    return df, y


def _pre() -> sidecar.TabularPreprocessor:
    return sidecar.TabularPreprocessor(
        columns=[
            sidecar.NumericColumn(name="weight", allow_missing=True),
            sidecar.NumericColumn(name="age"),
            sidecar.CategoricalColumn(name="color"),
        ]
    )


def _wrapped() -> sidecar.Bundle:
    """A logistic regression wrapped from pandas frames (train and reference as tables)."""
    train, y_train = _frame(400, seed=2)
    ref, y_ref = _frame(150, seed=3)
    pre = _pre().fit(train)
    model = LogisticRegression(max_iter=500).fit(pre.transform(train), y_train)
    return sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="frames",
    )


def test_pandas_frame_fits_and_transforms_like_its_records() -> None:
    df, _ = _frame(200, seed=0)
    records = as_records(df)
    assert records[0]["age"] == int(df["age"].iloc[0]) and type(records[0]["age"]) is int
    assert records[0]["weight"] is None  # NaN -> missing
    assert type(records[1]["color"]) is str
    from_frame = _pre().fit(df)
    from_list = _pre().fit(records)
    np.testing.assert_array_equal(from_frame.transform(df), from_list.transform(records))


@pytest.mark.parametrize(
    "convert",
    [pa.Table.from_pandas, lambda df: pa.RecordBatch.from_pandas(df), pl.from_pandas],
    ids=["arrow-table", "arrow-batch", "polars"],
)
def test_arrow_and_polars_tables_give_the_same_records(convert: Any) -> None:
    df, _ = _frame(50, seed=1)
    df = df.assign(color=df["color"].astype(str))
    assert as_records(convert(df)) == as_records(df)


def test_wrap_predict_and_feedback_take_tables(tmp_path: Any) -> None:
    bundle = _wrapped()
    now, _ = _frame(20, seed=4)
    from_frame = bundle.predict(now)
    from_list = bundle.predict(as_records(now))
    np.testing.assert_array_equal(from_frame.predictions, from_list.predictions)
    polars = bundle.predict(pl.from_pandas(now.assign(color=now["color"].astype(str))))
    np.testing.assert_array_equal(polars.predictions, from_list.predictions)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"x": 1}, "got a single object"),
        ("text", "a pandas, polars or Arrow table; got str"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "column names must be unique"),
    ],
    ids=["mapping", "string", "duplicate-columns"],
)
def test_what_is_not_records_is_named(data: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        as_records(data)


def test_an_undeclared_field_names_the_setting_that_drops_it() -> None:
    df, _ = _frame(30, seed=5)
    pre = _pre().fit(df)
    with pytest.raises(InputError, match="extra_fields='ignore'"):
        pre.transform(df.assign(extra=1))
    ignoring = sidecar.TabularPreprocessor(columns=pre.columns, extra_fields="ignore").fit(df)
    assert ignoring.transform(df.assign(extra=1)).shape == pre.transform(df).shape


@pytest.mark.parametrize(
    "convert",
    [
        lambda df, y: (df, y),
        lambda df, y: (pa.Table.from_pandas(df), pa.array(y.to_numpy())),
        lambda df, y: (pl.from_pandas(df.assign(color=df["color"].astype(str))), pl.Series(y)),
    ],
    ids=["pandas", "arrow", "polars"],
)
def test_retrain_takes_a_table_and_a_label_column(convert: Any) -> None:
    """``sidecar.retrain(data=(table, labels))`` learns what it learns from the records; the
    ``refit`` strategy on a LogisticRegression (whose ``n_iter_`` is an array) included."""
    bundle = _wrapped()
    recent, y_recent = _frame(600, seed=5)
    y_recent = y_recent.set_axis(range(1000, 1600))  # positions count, not a Series' index
    records = [{k: None if v != v else v for k, v in r.items()} for r in as_records(recent)]
    expected = sidecar.retrain(bundle, data=(records, y_recent.tolist()), strategy="refit")
    got = sidecar.retrain(bundle, data=convert(recent, y_recent), strategy="refit")
    assert got.report.changes["n_iter"] == expected.report.changes["n_iter"] >= 1
    now, _ = _frame(50, seed=6)
    np.testing.assert_array_equal(
        got.candidate.predict(now).predictions, expected.candidate.predict(now).predictions
    )


@pytest.mark.parametrize(
    "convert",
    [lambda df: df, pa.Table.from_pandas, pl.from_pandas],
    ids=["pandas", "arrow", "polars"],
)
def test_feedback_takes_a_table_of_labels(convert: Any, tmp_path: Any) -> None:
    """Labels usually arrive as a table (an export of the ground truth): one row per label."""
    from sidecar.recording import open_store

    bundle = _wrapped()
    store = open_store(f"sqlite:///{tmp_path / 'records.db'}")
    now, y_now = _frame(30, seed=4)
    served = sidecar.replay(bundle, now, store=store)
    assert served.records == 30
    ids = [r["request_id"] for chunk in store.iter_joined() for r in chunk]
    labels = pd.DataFrame({"request_id": ids, "label": y_now.to_numpy()})
    result = bundle.feedback(convert(labels.iloc[:20]), store=store)
    assert (result.accepted, list(result.unknown_request_ids)) == (20, [])
    # the row form keeps each label as JSON text
    got = {r["request_id"]: r["label"] for chunk in store.iter_joined() for r in chunk}
    assert [json.loads(got[i]) for i in ids[:20]] == y_now.tolist()[:20]
    assert all(got[i] is None for i in ids[20:])
    with pytest.raises(InputError, match=r"labels\[0\]\.label"):
        bundle.feedback(convert(labels.assign(label=["maybe"] * 30)), store=store)
    store.close()
