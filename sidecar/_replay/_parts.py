"""A replayed chunk's predictions and its records as one Arrow table (see ``_table``).

:func:`predict_chunk` runs the preprocessing on a slice of the table and each
model on the batches the row path would give it (so their answers are the
same to the bit); a batch on which the baseline or the candidate fails, or
answers with non-finite numbers, is recorded without that model's answer and
with the reason, as the shadow stage records it. :func:`build_table` turns a
chunk into the table ``recording._records.encode_records`` builds for served
records, with the raw inputs taken from the table's own columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from ..recording._records import VERSION_COLUMNS, encode_records

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import RecordPolicy
    from ..runtimes import ModelOutput

__all__ = ["Part", "build_table", "features", "predict_chunk"]

_RAW = "raw:"
_NOT_FINITE = "the baseline's output is not finite for these inputs"


@dataclass
class Part:
    """Consecutive rows of a chunk whose shadow models fared alike."""

    lo: int
    hi: int
    outputs: dict[str, tuple[np.ndarray, np.ndarray | None] | None]
    latencies: dict[str, np.ndarray]
    error: str | None


def features(bundle: Bundle, sub: pa.Table, start: int, *, count: bool = True) -> np.ndarray:
    """The chunk's feature matrix; bad values raise naming the row (numbered from ``start``)."""
    pre = bundle.preprocessing
    transform_table = getattr(pre, "transform_table", None)
    if transform_table is not None:
        X, report = transform_table(sub, start=start)
    else:  # a preprocessing without a column path: its own record path
        try:
            X, report = pre.transform_with_report(sub.to_pylist())
        except InputError as exc:
            raise InputError(f"records {start}..{start + sub.num_rows - 1}: {exc}") from exc
    if count:
        unknown = {k: v for k, v in report.unknown.items() if v}
        bundle.stats.count(report.n_records, unknown, report.missing)
    return np.asarray(X, dtype=np.float64)


def predict_chunk(
    bundle: Bundle,
    sub: pa.Table,
    start: int,
    batch_size: int,
    done: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[Part]]:
    """Features and each model's answers for a chunk, batch by batch (``done(rows)`` after each)."""
    t0 = time.perf_counter()
    X = features(bundle, sub, start)
    pre_ms = (time.perf_counter() - t0) * 1000.0
    n = len(X)
    candidate = bundle.candidate
    parts: list[Part] = []
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        xb = X[lo:hi]
        t = time.perf_counter()
        adv = bundle.advanced.infer(xb)
        adv_ms = (time.perf_counter() - t) * 1000.0 + pre_ms * (hi - lo) / n
        base, base_ms, error = _shadow(bundle.baseline, xb, finite=True)
        cand = None
        cand_ms = None
        if candidate is not None:
            cand, cand_ms, cand_error = _shadow(candidate.advanced, xb, finite=False)
            if cand_error is not None:
                error = "; ".join(e for e in (error, f"candidate: {cand_error}") if e)
        _compare(bundle, adv, base)
        part = Part(
            lo,
            hi,
            {"advanced": _pair(adv), "baseline": _pair(base), "candidate": _pair(cand)},
            {
                "advanced_latency_ms": np.full(hi - lo, adv_ms),
                "baseline_latency_ms": np.full(hi - lo, base_ms),
                "candidate_latency_ms": np.full(hi - lo, np.nan if cand_ms is None else cand_ms),
            },
            error,
        )
        if parts and _joinable(parts[-1], part):
            parts[-1] = _join(parts[-1], part)
        else:
            parts.append(part)
        if done is not None:
            done(hi)
    return X, parts


def _shadow(model: Any, X: np.ndarray, *, finite: bool) -> tuple[Any, float, str | None]:
    """A shadow model's answer, its time, and why there is none (it never raises)."""
    t = time.perf_counter()
    try:
        out = model.infer(X)
    except Exception as exc:  # counted and recorded, as the shadow stage does
        return None, (time.perf_counter() - t) * 1000.0, f"{type(exc).__name__}: {exc}"
    ms = (time.perf_counter() - t) * 1000.0
    if finite:
        values = out.probabilities if out.probabilities is not None else out.predictions
        if values.dtype.kind in "fc" and not bool(np.isfinite(values).all()):
            return None, ms, _NOT_FINITE
    return out, ms, None


def _compare(bundle: Bundle, adv: ModelOutput, base: ModelOutput | None) -> None:
    if base is None or bundle.task != "classification":
        return
    bundle.stats.shadow_compared += len(adv.predictions)
    bundle.stats.shadow_disagreements += int(np.count_nonzero(base.predictions != adv.predictions))


def _pair(out: ModelOutput | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    return None if out is None else (np.asarray(out.predictions), out.probabilities)


def _joinable(a: Part, b: Part) -> bool:
    return a.error == b.error and all(
        (a.outputs[m] is None) == (b.outputs[m] is None) for m in a.outputs
    )


def _join(a: Part, b: Part) -> Part:
    outputs: dict[str, tuple[np.ndarray, np.ndarray | None] | None] = {}
    for model, first in a.outputs.items():
        second = b.outputs[model]
        if first is None or second is None:
            outputs[model] = None
            continue
        proba = None if first[1] is None or second[1] is None else np.vstack([first[1], second[1]])
        outputs[model] = (np.concatenate([first[0], second[0]]), proba)
    latencies = {k: np.concatenate([v, b.latencies[k]]) for k, v in a.latencies.items()}
    return Part(a.lo, b.hi, outputs, latencies, a.error)


def build_table(
    bundle: Bundle,
    sub: pa.Table,
    X: np.ndarray,
    parts: list[Part],
    ts: np.ndarray | None,
    policy: RecordPolicy | None,
) -> pa.Table:
    """The chunk's records as the store keeps them: ids, versions, raw inputs, answers."""
    from ..bundle._bundle import _batch_id

    n = sub.num_rows
    manifest = bundle.manifest
    cand = bundle.candidate
    versions = {
        "bundle_version": manifest["version"],
        "preprocessing_version": manifest["parts"]["preprocessing"]["version"],
        "advanced_version": manifest["parts"]["advanced"]["version"],
        "baseline_version": manifest["parts"]["baseline"]["version"],
        "candidate_version": None if cand is None else cand.version,
    }
    ids = pc.binary_join_element_wise(
        f"{_batch_id()}-", pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), ""
    )
    stamps = np.full(n, time.time()) if ts is None else ts
    tables = [
        encode_records(
            [],
            request_ids=ids.slice(p.lo, p.hi - p.lo),
            ts=stamps[p.lo : p.hi],
            versions=versions,
            features=X[p.lo : p.hi],
            outputs=p.outputs,
            latencies=p.latencies,  # type: ignore[arg-type]
            error=p.error,
        )
        for p in parts
    ]
    table = (
        tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    )
    at = table.column_names.index(VERSION_COLUMNS[-1]) + 1
    for name, column in _raw_columns(sub, policy).items():
        table = table.add_column(at, name, column)
        at += 1
    return table


def _raw_columns(sub: pa.Table, policy: RecordPolicy | None) -> dict[str, pa.Array]:
    """``raw:<field>`` columns as the row path types them, after the privacy rule."""
    out: dict[str, pa.Array] = {}
    for name in sub.column_names:
        if policy is not None and name in policy.exclude:
            continue
        col = sub.column(name)  # one chunk (a slice of the file) is used in place, not copied
        arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        if policy is not None and name in policy.hash and policy.active:
            arr = _hashed(arr, name, policy)
        typed = _typed(arr)
        if typed is None:  # nested or unusual values: the row path's own encoding
            from ..recording._records import _raw_columns as row_raw_columns

            rows = sub.to_pylist()
            return row_raw_columns([policy.apply(r) for r in rows] if policy else rows)
        out[_RAW + name] = typed
    return out


def _typed(arr: pa.Array) -> pa.Array | None:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if arr.null_count == len(arr):
        return pa.nulls(len(arr))
    if pa.types.is_floating(t):
        return arr.cast(pa.float64())
    if pa.types.is_integer(t):
        try:
            return arr.cast(pa.int64())
        except pa.ArrowInvalid:  # past int64: as Python ints would go
            return arr
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.string())
    if pa.types.is_boolean(t):
        return arr
    return None


def _hashed(arr: pa.Array, name: str, policy: RecordPolicy) -> pa.Array:
    """The column as the privacy rule stores it; each distinct value hashed once."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    enc = pc.dictionary_encode(arr)
    words = [policy.apply({name: v})[name] for v in enc.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(
        enc.indices, pa.array(words, pa.string())
    ).dictionary_decode()
