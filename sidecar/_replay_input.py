"""A data file as Arrow columns for ``sidecar replay``, typed as the record reader types it.

``_tables.read_table`` reads a file into one dict a record; replay reads it
into columns instead (:func:`read_columns`). Parquet keeps its types either
way. A CSV file is read by Arrow with every column as text, then each column
that is not declared text becomes int64 if every cell is an integer, else
float64 if every cell is a number -- what ``read_table`` makes of each cell.
A file Arrow reads otherwise (a column mixing numbers and words, ragged rows,
repeated names) answers ``None``, and the caller reads it record by record.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._errors import InputError

__all__ = ["label_times", "pop", "read_columns", "times"]


def read_columns(path: str | Path, *, text_columns: Iterable[str] = ()) -> pa.Table | None:
    """``path`` (.csv or .parquet) as a table, or ``None`` to read it record by record."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".parquet", ".pq"):
        return None  # the record reader names the problem
    if suffix != ".csv":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    import csv

    from pyarrow import csv as pacsv

    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), None)
    if not header or len(set(header)) != len(header):
        return None
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.column_names != header:
        return None
    text = frozenset(text_columns)
    for i, name in enumerate(header):
        if name in text:
            continue
        typed = _numbers(table.column(i))
        if typed is None:
            return None
        table = table.set_column(i, name, typed)
    return table


def _numbers(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A text column as int64 (all integers) or float64 (all numbers); ``None`` otherwise."""
    if col.null_count == len(col):
        return pa.chunked_array([pa.nulls(len(col))])
    for typ in (pa.int64(), pa.float64()):
        try:
            return pc.cast(col, typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def pop(table: pa.Table, column: str, *, flag: str, source: str) -> tuple[pa.Table, pa.Array]:
    """Take ``column`` out of ``table``; an absent column is a clear error naming ``flag``."""
    if column not in table.column_names:
        raise InputError(
            f"{flag} must name a column of {source}; got {column!r}, the columns are "
            f"{table.column_names}."
        )
    arr = table.column(column).combine_chunks()
    return table.drop_columns([column]), arr


def times(arr: pa.Array, column: str) -> np.ndarray:
    """Each cell as epoch seconds (numbers or ISO 8601 text), checked as ``moment`` does."""
    fast = _epoch_seconds(arr)
    if fast is not None:
        return fast
    from .cli._common import moment

    return np.array([moment(v, f"{column}[{i}]") for i, v in enumerate(arr.to_pylist())])


def label_times(arr: pa.Array, column: str) -> np.ndarray:
    """Like :func:`times`, with ``nan`` for an empty cell (that label never arrived)."""
    if arr.null_count == 0:
        return times(arr, column)
    from .cli._common import moment

    values: list[Any] = arr.to_pylist()
    return np.array(
        [np.nan if v is None else moment(v, f"{column}[{i}]") for i, v in enumerate(values)]
    )


def _epoch_seconds(arr: pa.Array) -> np.ndarray | None:
    t = arr.type
    if arr.null_count or not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return None
    values = np.asarray(
        pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64
    )
    if not bool(np.all(np.isfinite(values) & (np.abs(values) <= 1e11))):
        return None
    return values
