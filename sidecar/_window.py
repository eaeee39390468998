"""From the store's columns to the arrays the (pure) monitoring code reads.

One scan (``Store.read_window``) hands back a time window as an Arrow table:
raw inputs per field, the features the model saw, predictions,
probabilities and labels, all typed. This module turns that table into a
:class:`WindowData` (diagnosis), :class:`RecentData` (retraining) or the
paired arrays of a promotion, with NumPy and Arrow compute: no per-record
Python, no JSON, and no preprocessing run again (except for records stored
without their features: written by model-sidecar before 0.2, or by hand).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import InputError
from ._window_labels import checked_labels
from .monitoring._inputs import WindowData
from .recording import Store
from .recording._assemble import ordinary_pages

if TYPE_CHECKING:
    import pyarrow as pa

    from .bundle._bundle import Bundle

__all__ = [
    "RecentData",
    "checked_labels",
    "load_window",
    "memory_limit",
    "recent_data",
    "window_table",
]

_RAW = "raw:"
#: Peak memory of an analysis per stored byte of its window (decoded columns and copies).
PEAK_PER_STORED_BYTE = 2.5


def memory_limit() -> int:
    """Bytes an analysis may use: ``SIDECAR_MEMORY_LIMIT``, else 60 % of this machine's memory."""
    from ._settings import settings_from_env

    declared = settings_from_env().memory_limit
    if declared:
        return declared
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover - not a POSIX system
        return 1 << 62
    return int(0.6 * total)


def window_table(
    store: Store,
    *,
    since: float | None,
    until: float | None,
    columns: Sequence[str] | None = None,
    bundle_version: str | None = None,
) -> pa.Table:
    """The window as the store hands it, refused up front if it would not fit in memory."""
    budget = int(memory_limit() / PEAK_PER_STORED_BYTE)
    return store.read_window(
        since=since, until=until, columns=columns, bundle_version=bundle_version, max_bytes=budget
    )


def load_window(
    bundle: Bundle,
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    all_versions: bool = False,
) -> WindowData:
    """Read the bundle's records in ``[since, until)`` (all its versions' if asked)."""
    with ordinary_pages():  # arrays filled once: a huge page may cost more than it saves
        return _load_window(bundle, store, since, until, all_versions)


def _load_window(
    bundle: Bundle, store: Store, since: float | None, until: float | None, all_versions: bool
) -> WindowData:
    import pyarrow.compute as pc

    wanted = ["raw", "features", "bundle_version", *_MODEL_COLUMNS]
    table = window_table(store, since=since, until=until, columns=wanted)
    notes: list[str] = []
    if not all_versions and table.num_rows and "bundle_version" in table.column_names:
        mine = pc.fill_null(pc.equal(table.column("bundle_version"), bundle.version), False)
        skipped = table.num_rows - int(pc.sum(mine).as_py() or 0)
        if skipped:
            table = table.filter(mine)
            notes.append(f"{skipped} records of other bundle versions were left out")
    pre = bundle.preprocessing
    fields = list(pre.input_fields)
    categorical = set(pre.categorical_fields)
    raw = _RawColumns(table)
    raw_numeric = {
        f: _canonical_numbers(pre, f, raw.numbers(f)) for f in fields if f not in categorical
    }
    raw_categorical: dict[str, Any] = {}
    coded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    flags: dict[str, np.ndarray] = {}
    for f in fields:
        if f in categorical:
            raw_categorical[f], flag, coded[f] = _categories(pre, f, raw.categories(f))
            if flag is not None:
                flags[f] = flag
    features, unknown = _features(bundle, table, raw, notes)
    if flags:
        unknown = {f: int(v.sum()) for f, v in flags.items()}
    labels = checked_labels(table, bundle, notes)
    return WindowData(
        ts=table.column("ts").to_numpy(),
        raw_numeric=raw_numeric,
        raw_categorical=raw_categorical,
        features=features,
        unknown=unknown,
        advanced=predictions(table, "advanced_prediction"),
        advanced_proba=probabilities(table, "advanced_proba"),
        baseline=predictions(table, "baseline_prediction"),
        baseline_proba=probabilities(table, "baseline_proba"),
        labels=labels,
        labelled=np.asarray(labels != None, dtype=bool),  # noqa: E711 - elementwise
        notes=notes,
        unknown_flags=flags,
        categorical_codes=coded,
    )


_MODEL_COLUMNS = (
    "advanced_prediction",
    "advanced_proba",
    "baseline_prediction",
    "baseline_proba",
)


class _RawColumns:
    """The raw inputs of a window: typed ``raw:<field>`` columns, or decoded ``raw_json``."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.n = table.num_rows
        self._json: list[dict[str, Any] | None] | None = None
        if "raw_json" in table.column_names:  # irregular batches: decode those records only
            texts = table.column("raw_json").to_pylist()
            self._json = [None if t is None else json.loads(t) for t in texts]

    def column(self, name: str) -> pa.ChunkedArray | None:
        key = _RAW + name
        return self.table.column(key) if key in self.table.column_names else None

    def values(self, name: str) -> list[Any]:
        """Python values of field ``name`` (slow; for irregular records and recomputing)."""
        col = self.column(name)
        out = col.to_pylist() if col is not None else [None] * self.n
        if self._json is not None:
            for i, rec in enumerate(self._json):
                if rec is not None:
                    out[i] = rec.get(name)
        return out

    def numbers(self, name: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        col = self.column(name)
        if self._json is None and col is not None:
            try:
                return np.asarray(
                    pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        return np.array([_number(v) for v in self.values(name)], dtype=np.float64)

    def categories(self, name: str) -> tuple[np.ndarray, list[Any]]:
        """``(codes, values)``: each record's index into ``values`` (``len(values)``: missing;
        Arrow's int32 indices as they come, not a widened copy)."""
        import pyarrow.compute as pc

        col = self.column(name)
        if self._json is None and col is not None:
            encoded = pc.dictionary_encode(col).combine_chunks()
            values = encoded.dictionary.to_pylist()
            codes = encoded.indices.fill_null(len(values)).to_numpy(zero_copy_only=False)
            return codes, values
        found = self.values(name)
        uniq: dict[Any, int] = {}
        codes = np.array(
            [-1 if v is None else uniq.setdefault(v, len(uniq)) for v in found], dtype=np.int64
        )
        codes[codes < 0] = len(uniq)
        return codes, list(uniq)


def _number(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def _canonical_numbers(pre: Any, name: str, x: np.ndarray) -> np.ndarray:
    """Numbers in the model's unit (an affine map, read off the preprocessor at 0 and 1)."""
    from .preprocessing import TabularPreprocessor

    if not isinstance(pre, TabularPreprocessor):
        return x
    at0, at1 = (float(v) for v in pre.canonical_values(name, [0.0, 1.0]))
    if at0 == 0.0 and at1 == 1.0:
        return x
    return at0 + (at1 - at0) * x


def _categories(
    pre: Any, name: str, coded: tuple[np.ndarray, list[Any]]
) -> tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray]]:
    """Canonical categories (an object array), which encoded to the unknown code, and
    the ``(codes, table)`` they were taken from (the diagnosis counts values on those)."""
    from .preprocessing import TabularPreprocessor

    pick, values = coded  # len(values): missing, the tables' last entry
    if not isinstance(pre, TabularPreprocessor):
        table = np.array([*values, None], dtype=object)
        return table[pick], None, (pick, table)
    canon = np.array([*pre.canonical_values(name, values), None], dtype=object)
    unknown = np.append(pre.unknown_mask(name, values), False)
    return canon[pick], unknown[pick], (pick, canon)


def _features(
    bundle: Bundle, table: pa.Table, raw: _RawColumns, notes: list[str]
) -> tuple[np.ndarray | None, dict[str, int]]:
    """The features the model saw (stored), or the raw inputs preprocessed again."""
    n = table.num_rows
    if n == 0:
        return None, {}
    if "features" in table.column_names:
        col = table.column("features")
        if col.null_count == 0:
            return _matrix(col, col.type.list_size), {}
    fields = list(bundle.preprocessing.input_fields)
    columns = [raw.values(f) for f in fields]
    records = [dict(zip(fields, vals, strict=True)) for vals in zip(*columns, strict=True)]
    try:
        # Stored records passed validation when served; a failure here means a
        # privacy rule removed a field, or the preprocessing changed since.
        X, report = bundle.preprocessing.transform_with_report(records)
    except InputError as exc:
        notes.append(f"the stored inputs could not be preprocessed again: {exc}")
        return None, {}
    return X, dict(report.unknown)


def predictions(table: pa.Table, name: str) -> np.ndarray:
    """A prediction column: float64 when every value is a number, else Python values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in table.column_names:
        return np.full(table.num_rows, None, dtype=object)
    col = table.column(name)
    kind = col.type
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and col.null_count == 0:
        return np.concatenate([np.zeros(0), *(c.to_numpy() for c in col.chunks)])  # float64
    if pa.types.is_string(kind) or pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        encoded = pc.dictionary_encode(col).combine_chunks()
        values = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
        codes = encoded.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)
        return np.asarray(values[codes])
    values_list = col.to_pylist()
    if pa.types.is_large_string(kind):  # JSON text: mixed types
        values_list = [None if v is None else json.loads(v) for v in values_list]
    arr = np.array(values_list, dtype=object)
    if arr.size and all(isinstance(v, int | float) and not isinstance(v, bool) for v in arr):
        return arr.astype(np.float64)
    return arr


def probabilities(table: pa.Table, name: str) -> np.ndarray | None:
    """A probability column as an ``(n, k)`` matrix, or ``None`` unless every record has one."""
    import pyarrow.compute as pc

    if name not in table.column_names or not table.num_rows:
        return None
    import pyarrow as pa

    col = table.column(name)
    if col.null_count:
        return None
    if pa.types.is_fixed_size_list(col.type) and col.type.list_size:
        return _matrix(col, col.type.list_size)
    flat = col.combine_chunks()
    lengths = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        return None
    return np.asarray(pc.list_flatten(flat).to_numpy(zero_copy_only=False)).reshape(
        len(flat), int(lengths[0])
    )


def _matrix(col: pa.ChunkedArray, width: int) -> np.ndarray:
    """A fixed-size-list column without nulls as an ``(n, width)`` float64 matrix.

    Each chunk is viewed in place and copied once, into memory NumPy allocates
    (in huge pages where the system allows: fewer page faults than the Arrow
    pool's fresh pages for hundreds of megabytes).
    """
    parts = [c.flatten().to_numpy(zero_copy_only=False).reshape(-1, width) for c in col.chunks]
    return _concat(parts, np.float64) if parts else np.zeros((0, width))


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """``parts`` end to end as ``dtype``; one part is converted (or kept) without joining."""
    if len(parts) == 1:
        return np.asarray(parts[0], dtype=dtype)
    if not parts:
        return np.zeros(0, dtype=dtype)
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=dtype)
    start = 0
    for part in parts:
        out[start : start + len(part)] = part
        start += len(part)
    return out


@dataclass(frozen=True)
class RecentData:
    """Labelled records from the store, oldest first: what a retraining adapter learns from."""

    records: list[dict[str, Any]]
    labels: np.ndarray
    ts: np.ndarray
    #: what was left out, and why (e.g. stored labels outside the classes)
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.records)


def recent_data(
    bundle: Bundle,
    store: Store | str,
    *,
    since: float | None = None,
    until: float | None = None,
    all_versions: bool = True,
) -> RecentData:
    """The labelled raw records the store holds in ``[since, until)``, in time order.

    Every version of the bundle counts by default (the world, not the model,
    is what the records describe); records whose raw fields were removed by a
    privacy rule are skipped, since no model can learn from them.
    """
    from .recording import open_store

    opened = open_store(store, create=False) if isinstance(store, str) else store
    try:
        table = window_table(
            opened,
            since=since,
            until=until,
            columns=["raw"],
            bundle_version=None if all_versions else bundle.version,
        )
    finally:
        if isinstance(store, str):
            opened.close()
    table = table.filter(table.column("label_kind").to_numpy(zero_copy_only=False) >= 0)
    notes: list[str] = []
    labels = checked_labels(table, bundle, notes)
    fields = list(bundle.preprocessing.input_fields)
    raw = _RawColumns(table)
    keep = np.array([v is not None for v in labels], dtype=bool)
    if raw._json is not None:
        keep &= np.array([r is None or all(f in r for f in fields) for r in raw._json], bool)
    elif not all(raw.column(f) is not None for f in fields):
        keep[:] = False
    columns = [np.asarray(raw.values(f), dtype=object)[keep].tolist() for f in fields]
    records = [dict(zip(fields, vals, strict=True)) for vals in zip(*columns, strict=True)]
    kept = labels[keep].tolist()
    y = np.array(kept, dtype=object)
    if y.size and all(isinstance(v, int | float) and not isinstance(v, bool) for v in kept):
        y = y.astype(np.float64 if bundle.task == "regression" else np.int64)
    elif y.size and all(isinstance(v, str) for v in kept):
        y = y.astype(str)
    ts = table.column("ts").to_numpy()[keep]
    return RecentData(records=records, labels=y, ts=ts, notes=tuple(notes))
