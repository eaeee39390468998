"""The tabular preprocessor on Arrow columns: a whole table encoded without one dict a row.

:func:`encode_table` reads the compiled plan (see ``_encoding``) and encodes
each column with whole-column operations: numbers are cast to float64 once,
categories are dictionary-encoded and only their distinct words are looked
up. It gives exactly what the row path gives for ``table.to_pylist()``; where
it cannot be sure of that (a column type it does not know) it answers
``None`` and the caller takes the row path. Bad values are not described
here: it returns the rows that hold them, and the caller runs the row path
on those rows alone, so the error names each row and field in the row path's
words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._encoding import PlanEntry

__all__ = ["Encoded", "encode_table"]


@dataclass(frozen=True)
class Encoded:
    """A clean table's features and counts, or the rows that hold bad values."""

    X: np.ndarray | None
    unknown: list[int]
    missing: list[int]
    bad_rows: np.ndarray


def encode_table(plan: Sequence[PlanEntry], table: pa.Table, *, forbid: bool) -> Encoded | None:
    """Encode ``table`` column-wise; ``None`` when a column's type needs the row path."""
    n = table.num_rows
    names = set(table.column_names)
    declared = {entry[0] for entry in plan}
    bad = np.zeros(n, dtype=bool)
    if forbid and names - declared:
        bad[:] = True  # every record carries the undeclared fields
    width = sum(_width(entry) for entry in plan)
    X = np.empty((n, width), dtype=np.float64)
    unknown = [0] * len(plan)
    missing = [0] * len(plan)
    at = 0
    for j, entry in enumerate(plan):
        name, kind, *_ = entry
        col = _plain(table.column(name)) if name in names else None
        done = _numeric(entry, col, n) if kind == 0 else _categorical(entry, col, n)
        if done is None:
            return None
        block, col_bad, nulls, unknown[j] = done
        bad |= col_bad
        missing[j] = nulls
        X[:, at : at + block.shape[1]] = block
        at += block.shape[1]
    if bad.any():
        return Encoded(None, unknown, missing, np.flatnonzero(bad))
    return Encoded(X, unknown, missing, np.zeros(0, dtype=np.int64))


def _width(entry: PlanEntry) -> int:
    kind, width = entry[1], entry[6]
    return 1 if kind == 0 or not width else int(width)


def _plain(col: pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


_Column = tuple[np.ndarray, np.ndarray, int, int]  # block, bad rows, missing count, unknown count


def _nulls(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.ones(n, dtype=bool)
    if arr.null_count == 0:
        return np.zeros(n, dtype=bool)
    return np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _numeric(entry: PlanEntry, arr: pa.Array | None, n: int) -> _Column | None:
    _, _, a, b, _, _, _, allow_missing, fill = entry
    null = _nulls(arr, n)
    t = None if arr is None else arr.type
    if t is None or pa.types.is_null(t):
        values = np.zeros(n)
        bad = np.zeros(n, dtype=bool)
    elif pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t):
        values = np.asarray(
            pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) & ~null
        if a != 1.0 or b != 0.0:
            values = values * a + b
    elif pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        values = np.zeros(n)
        bad = ~null  # a bool or a text is never a number
    else:
        return None
    count = int(null.sum())
    if count:
        if allow_missing:
            values = np.where(null, fill, values)
        else:
            bad = bad | null
    return values[:, None], bad, count if allow_missing else 0, 0


def _categorical(entry: PlanEntry, arr: pa.Array | None, n: int) -> _Column | None:
    _, _, _, _, index, recode, width, allow_missing, _ = entry
    null = _nulls(arr, n)
    t = None if arr is None else arr.type
    codes = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if t is None or pa.types.is_null(t):
        pass
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t):
        enc = pc.dictionary_encode(arr)
        words = enc.dictionary.to_pylist()
        if not pa.types.is_string(t) and not pa.types.is_large_string(t):
            words = [str(w) for w in words]  # an integer code is taken as text
        if recode:
            words = [recode.get(w, w) for w in words]
        lut = np.fromiter((index.get(w, 0) for w in words), dtype=np.int64, count=len(words))
        idx = enc.indices.fill_null(0).to_numpy(zero_copy_only=False)
        codes = lut[idx] if len(lut) else codes
        codes[null] = 0
    elif pa.types.is_boolean(t) or pa.types.is_floating(t):
        bad = ~null  # a bool or a float is not a category
    else:
        return None
    count = int(null.sum())
    if count and not allow_missing:
        bad = bad | null
    unknown = int(np.count_nonzero((codes == 0) & ~null & ~bad))
    block = np.eye(width, dtype=np.float64)[codes] if width else codes.astype(np.float64)[:, None]
    return block, bad, count if allow_missing else 0, unknown
