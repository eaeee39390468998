"""Records as columns: how a batch of served records becomes one Arrow table, and back.

The unit the recorder queues and a store writes is a :class:`pyarrow.Table`
with one row per served record and typed columns (see :data:`CORE`): the raw
input one column per field (``raw:<field>``, numbers as float64 or int64,
categories as strings), the features the model saw (``features``, a
fixed-size list of float64), each model's prediction (typed) and
probabilities (a fixed-size list), the latencies and the shadow error.
Nothing is turned into JSON on the way in, and nothing is parsed on the way
out: analysis reads the columns as they are.

A batch whose raw inputs do not fit typed columns (a field holding numbers
in one record and text in the next, nested values, fields present in some
records only) keeps them as JSON text in one ``raw_json`` column instead:
exact, but slower to analyse. Serving validated records never need it.

``rows_to_table`` and ``table_to_rows`` translate from and to the row form of
schema version 1 (JSON text cells in :data:`COLUMNS` order), which
``Store.write_predictions`` and ``Store.iter_joined`` still speak, and the
migration reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "COLUMNS",
    "VERSION_COLUMNS",
    "ServedBatch",
    "dumps",
    "encode_records",
    "encode_served",
    "rows_to_table",
    "table_to_rows",
]

#: Column order of a prediction row of schema version 1 (the row form).
COLUMNS = (
    "request_id",
    "ts",
    "bundle_version",
    "preprocessing_version",
    "advanced_version",
    "baseline_version",
    "candidate_version",
    "raw",
    "advanced_prediction",
    "advanced_proba",
    "baseline_prediction",
    "baseline_proba",
    "candidate_prediction",
    "candidate_proba",
    "advanced_latency_ms",
    "baseline_latency_ms",
    "candidate_latency_ms",
    "shadow_error",
)

VERSION_COLUMNS = (
    "bundle_version",
    "preprocessing_version",
    "advanced_version",
    "baseline_version",
    "candidate_version",
)
_MODELS = ("advanced", "baseline", "candidate")
_LATENCIES = ("advanced_latency_ms", "baseline_latency_ms", "candidate_latency_ms")
_RAW = "raw:"


def dumps(value: Any) -> str:
    """Compact JSON for a cell of the row form (NumPy scalars become Python numbers).

    A broken model's NaN is written as the ``NaN`` literal Python's ``json``
    reads back, rather than losing the record.
    """
    return _ENCODER.encode(value)


def _default(obj: Any) -> Any:
    item = getattr(obj, "item", None)
    if item is not None:
        return item()
    raise TypeError(f"a {type(obj).__name__} cannot be stored as JSON")


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default)


# -- building a batch ---------------------------------------------------------------


def encode_records(
    records: Sequence[Mapping[str, Any]],
    *,
    request_ids: Sequence[str],
    ts: float | Sequence[float] | np.ndarray,
    versions: Mapping[str, str | None],
    features: np.ndarray | None,
    outputs: Mapping[str, tuple[np.ndarray, np.ndarray | None] | None],
    latencies: Mapping[str, float | np.ndarray | None],
    error: str | Sequence[str | None] | None,
    apply: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> pa.Table:
    """One Arrow table for a served batch (``apply``: the privacy rule for raw records).

    ``outputs`` maps ``advanced`` / ``baseline`` / ``candidate`` to
    ``(predictions, probabilities)`` or ``None`` when that model gave no answer;
    a latency (``nan``: none) and the error are one for all records or one each.
    """
    n = len(request_ids)
    if apply is not None:
        records = [apply(r) for r in records]
    cols: dict[str, pa.Array] = {
        "request_id": pa.array(request_ids, pa.string()),
        "ts": pa.array(np.broadcast_to(np.asarray(ts, dtype=np.float64), (n,))),
    }
    for name in VERSION_COLUMNS:
        cols[name] = _repeat(versions.get(name), n)
    cols.update(_raw_columns(records))
    if features is not None and features.ndim == 2 and features.shape[0] == n:
        cols["features"] = _matrix(np.asarray(features, dtype=np.float64))
    for model in _MODELS:
        out = outputs.get(model)
        pred, proba = (None, None) if out is None else out
        cols[f"{model}_prediction"] = _values(pred, n)
        cols[f"{model}_proba"] = (
            pa.nulls(n, pa.list_(pa.float64())) if proba is None else _matrix(proba)
        )
    for name in _LATENCIES:
        value = latencies.get(name)
        value = np.nan if value is None else np.asarray(value, dtype=np.float64)
        cols[name] = pa.array(np.broadcast_to(value, (n,)))
    if error is None or isinstance(error, str):
        cols["shadow_error"] = _repeat(error, n)
    else:
        cols["shadow_error"] = pa.array(list(error), pa.string())
    return pa.table(cols)


@dataclass(frozen=True)
class ServedBatch:
    """What serving hands the recorder: :func:`encode_records`'s arguments, not yet encoded.

    The shadow stage hands one per micro-batch (a run of requests answered by
    the same versions), with the times and latencies one per record. Encoding
    waits for the writer, which encodes everything queued in one go
    (:func:`encode_served`): the per-column cost of building Arrow arrays is
    paid once a commit, not once a request.
    """

    records: Sequence[Mapping[str, Any]]
    request_ids: Sequence[str]
    ts: float | Sequence[float] | np.ndarray
    versions: Mapping[str, str | None]
    features: np.ndarray | None
    outputs: Mapping[str, tuple[np.ndarray, np.ndarray | None] | None]
    latencies: Mapping[str, float | np.ndarray | None]
    error: str | None
    apply: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.request_ids)

    def signature(self) -> tuple[Any, ...]:
        """Batches with equal signatures encode into one table together."""
        shapes: list[tuple[str, int | None] | None] = []
        for model in _MODELS:
            out = self.outputs.get(model)
            if out is None:
                shapes.append(None)
            else:
                pred, proba = out
                width = None if proba is None else proba.shape[1]
                shapes.append((np.asarray(pred).dtype.kind, width))
        width = None if self.features is None else self.features.shape[1:]
        return (tuple(sorted(self.versions.items(), key=str)), width, tuple(shapes), self.apply)


def encode_served(batches: Sequence[ServedBatch]) -> list[pa.Table]:
    """One table per run of batches with the same signature (usually one in all)."""
    runs: list[list[ServedBatch]] = []
    for b in batches:
        if runs and runs[-1][0].signature() == b.signature():
            runs[-1].append(b)
        else:
            runs.append([b])
    return [_encode_run(run) for run in runs]


def _encode_run(run: list[ServedBatch]) -> pa.Table:
    first = run[0]
    if len(run) == 1:
        b = first
        return encode_records(
            b.records, request_ids=b.request_ids, ts=b.ts, versions=b.versions,
            features=b.features, outputs=b.outputs, latencies=b.latencies, error=b.error,
            apply=b.apply,
        )  # fmt: skip
    sizes = [len(b) for b in run]
    outputs: dict[str, tuple[np.ndarray, np.ndarray | None] | None] = {}
    for model in _MODELS:
        parts = [b.outputs.get(model) for b in run]
        if parts[0] is None:
            outputs[model] = None
            continue
        preds = np.concatenate([np.asarray(p[0]) for p in parts if p is not None])
        probas = [p[1] for p in parts if p is not None]
        proba = None if probas[0] is None else np.vstack([m for m in probas if m is not None])
        outputs[model] = (preds, proba)
    latencies = {
        name: np.concatenate(
            [_per_record(b.latencies.get(name), n) for b, n in zip(run, sizes, strict=True)]
        )
        for name in _LATENCIES
    }
    return encode_records(
        [r for b in run for r in b.records],
        request_ids=[rid for b in run for rid in b.request_ids],
        ts=np.concatenate([_per_record(b.ts, n) for b, n in zip(run, sizes, strict=True)]),
        versions=first.versions,
        features=None if first.features is None else np.vstack([b.features for b in run]),  # type: ignore[misc]
        outputs=outputs,
        latencies=latencies,  # type: ignore[arg-type]
        error=[b.error for b, n in zip(run, sizes, strict=True) for _ in range(n)],
        apply=first.apply,
    )


def _per_record(value: float | Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    """One float64 per record: a value for all (``None``: NaN) or one each."""
    return np.broadcast_to(np.asarray(np.nan if value is None else value, dtype=np.float64), (n,))


def _repeat(value: str | None, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, pa.string())
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
    ).dictionary_decode()


def _matrix(m: np.ndarray) -> pa.Array:
    m = np.ascontiguousarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a probability or feature matrix must be 2-D; got shape {m.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])


def _values(pred: np.ndarray | None, n: int) -> pa.Array:
    if pred is None:
        return pa.nulls(n)
    arr = np.asarray(pred)
    if arr.dtype.kind in "biuf":
        return pa.array(arr)
    if arr.dtype.kind == "U":
        return pa.array(arr.tolist(), pa.string())
    return _column(arr.tolist())


def _column(values: list[Any]) -> pa.Array:
    """A typed column for Python values, or a JSON-text column when none fits."""
    try:
        arr = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        arr = None
    if arr is not None and (
        pa.types.is_null(arr.type)
        or pa.types.is_boolean(arr.type)
        or pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_string(arr.type)
    ):
        return arr
    return pa.array([None if v is None else dumps(v) for v in values], pa.large_string())


def _raw_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, pa.Array]:
    """``raw:<field>`` columns, or one ``raw_json`` column when the records are irregular."""
    if not records:
        return {}
    keys = tuple(records[0])
    if all(len(r) == len(keys) for r in records) and all(tuple(r) == keys for r in records):
        cols: dict[str, pa.Array] = {}
        for key in keys:
            arr = _column([r[key] for r in records])
            if pa.types.is_large_string(arr.type):  # nested or mixed: keep the records exact
                break
            cols[_RAW + key] = arr
        else:
            return cols
    return {"raw_json": pa.array([dumps(dict(r)) for r in records], pa.large_string())}


# -- the row form of schema version 1 -------------------------------------------------


def rows_to_table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """A batch from rows in :data:`COLUMNS` order with JSON text cells (schema version 1)."""
    if not rows:
        return pa.table({"request_id": pa.array([], pa.string())})
    by_name = list(zip(*rows, strict=True))
    cells = dict(zip(COLUMNS, by_name, strict=True))
    loads = json.loads
    cols: dict[str, pa.Array] = {
        "request_id": pa.array(cells["request_id"], pa.string()),
        "ts": pa.array(cells["ts"], pa.float64()),
    }
    for name in VERSION_COLUMNS:
        cols[name] = pa.array(cells[name], pa.string())
    records = [loads(text) for text in cells["raw"]]
    if not all(isinstance(r, dict) for r in records):
        raise ValueError("the raw input of a record must be a JSON object")
    cols.update(_raw_columns(records))
    for model in _MODELS:
        cols[f"{model}_prediction"] = _column(
            [None if c is None else loads(c) for c in cells[f"{model}_prediction"]]
        )
        probas = [None if c is None else loads(c) for c in cells[f"{model}_proba"]]
        cols[f"{model}_proba"] = pa.array(probas, pa.list_(pa.float64()))
    for name in _LATENCIES:
        cols[name] = pa.array(cells[name], pa.float64())
    cols["shadow_error"] = pa.array(cells["shadow_error"], pa.string())
    return pa.table(cols)


def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` in the row form (JSON text cells), as dictionaries.

    For reading records one at a time (``Store.iter_joined``); analysis reads
    the columns instead.
    """
    n = table.num_rows
    names = table.column_names
    out: dict[str, list[Any]] = {}
    for name in ("request_id", "ts", *VERSION_COLUMNS, *_LATENCIES, "shadow_error"):
        out[name] = table.column(name).to_pylist() if name in names else [None] * n
    out["raw"] = _raw_texts(table)
    for model in _MODELS:
        for suffix in ("_prediction", "_proba"):
            name = model + suffix
            if name not in names:
                out[name] = [None] * n
                continue
            column = table.column(name)
            values = column.to_pylist()
            if pa.types.is_large_string(column.type):  # kept as JSON text already
                out[name] = values
            else:
                out[name] = [None if v is None else dumps(v) for v in values]
    for name in _LATENCIES:
        out[name] = [None if v is None or v != v else v for v in out[name]]
    extra = [c for c in ("label", "label_ts") if c in names]
    for name in extra:
        out[name] = table.column(name).to_pylist()
    keys = [*COLUMNS, *extra]
    return [
        dict(zip(keys, values, strict=True)) for values in zip(*(out[k] for k in keys), strict=True)
    ]


def _raw_texts(table: pa.Table) -> list[str]:
    if "raw_json" in table.column_names:
        return [str(v) for v in table.column("raw_json").to_pylist()]
    fields = [c for c in table.column_names if c.startswith(_RAW)]
    values = [table.column(f).to_pylist() for f in fields]
    keys = [f.removeprefix(_RAW) for f in fields]
    return [dumps(dict(zip(keys, rec, strict=True))) for rec in zip(*values, strict=True)] or [
        "{}"
    ] * table.num_rows
