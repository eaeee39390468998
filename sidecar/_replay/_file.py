"""A data file read for ``sidecar replay``: its records, labels and times (:func:`read_replay`).

``_tables.read_table`` reads a file into one dict a record; replay reads it
into columns instead (:func:`read_columns`). Parquet keeps its types either
way. A CSV file is read by Arrow with every column as text, then each column
that is not declared text becomes int64 if every cell is an integer, else
float64 if every cell is a number -- what ``read_table`` makes of each cell.
A file Arrow reads otherwise (a column mixing numbers and words, ragged rows,
repeated names) is read record by record instead.

Either way the label, timestamp and label-timestamp columns are taken out of
the records by the same steps (:func:`read_replay`), each cell of a time
column checked by :func:`moment`, and the result is one :class:`FileReplay`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from .._tables import parse_timestamp, pop_column, read_table

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import Store
    from ._records import ReplayResult

__all__ = [
    "FileReplay",
    "label_times",
    "moment",
    "pop",
    "read_columns",
    "read_replay",
    "record_label_times",
    "record_times",
    "times",
]


@dataclass(frozen=True)
class FileReplay:
    """A data file ready to replay: its records and the columns taken out of them.

    ``records`` is an Arrow table (the column path) or a list of dicts (the
    row path); ``labels``, ``timestamps`` and ``label_timestamps`` are in the
    form that path takes (``None`` where no column was named).
    """

    records: pa.Table | list[dict[str, Any]]
    labels: Any = None
    timestamps: Any = None
    label_timestamps: Any = None
    label_name: str = "labels"

    def run(
        self,
        bundle: Bundle,
        store: Store,
        *,
        batch_size: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplayResult:
        """Replay the records into ``store``: :func:`replay_table` or :func:`replay`."""
        if isinstance(self.records, pa.Table):
            from ._table import replay_table

            return replay_table(
                bundle, self.records, store=store, labels=self.labels,
                timestamps=self.timestamps, label_timestamps=self.label_timestamps,
                batch_size=batch_size, progress=progress, label_name=self.label_name,
            )  # fmt: skip
        from ._records import replay

        return replay(
            bundle, self.records, store=store, labels=self.labels, timestamps=self.timestamps,
            label_timestamps=self.label_timestamps, batch_size=batch_size, progress=progress,
        )  # fmt: skip


def read_replay(
    path: str | Path,
    *,
    text_columns: Iterable[str] = (),
    label_column: str | None = None,
    timestamp_column: str | None = None,
    label_timestamp_column: str | None = None,
) -> FileReplay:
    """``path`` read for replay, the named columns taken out; a missing one is an error.

    ``text_columns`` stay text (the categorical fields, and the label column:
    the one label rule coerces it). An empty cell of the label-timestamp
    column is a label that never arrived.
    """
    text = list(text_columns)
    source = str(path)
    table = read_columns(path, text_columns=text)
    rows = read_table(path, text_columns=text) if table is None else None

    def take(column: str, flag: str) -> Any:
        nonlocal table
        if rows is not None:
            return pop_column(rows, column, flag=flag, source=source)
        assert table is not None
        table, arr = pop(table, column, flag=flag, source=source)
        return arr

    by_row = rows is not None
    labels = stamps = label_stamps = None
    if label_column:
        labels = take(label_column, "--label-column")
    if timestamp_column:
        raw = take(timestamp_column, "--timestamp-column")
        stamps = (record_times if by_row else times)(raw, timestamp_column)
    if label_timestamp_column:
        raw = take(label_timestamp_column, "--label-timestamp-column")
        label_stamps = (record_label_times if by_row else label_times)(raw, label_timestamp_column)
    records = rows if rows is not None else table
    assert records is not None
    return FileReplay(records, labels, stamps, label_stamps, label_column or "labels")


def moment(value: Any, where: str) -> float:
    """A finite time (epoch seconds or ISO 8601) from a data file's cell."""
    t = parse_timestamp(value, where=where)
    if not math.isfinite(t) or abs(t) > 1e11:
        raise InputError(f"`{where}` must be finite epoch seconds (within +-1e11); got {value!r}.")
    return t


def read_columns(path: str | Path, *, text_columns: Iterable[str] = ()) -> pa.Table | None:
    """``path`` (.csv or .parquet) as a table, or ``None`` to read it record by record."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".parquet", ".pq"):
        return None  # the record reader names the problem
    if suffix != ".csv":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path} must be a Parquet file; it could not be read: {exc}") from exc
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
    return np.array([moment(v, f"{column}[{i}]") for i, v in enumerate(arr.to_pylist())])


def label_times(arr: pa.Array, column: str) -> np.ndarray:
    """Like :func:`times`, with ``nan`` for an empty cell (that label never arrived)."""
    if arr.null_count == 0:
        return times(arr, column)
    values: list[Any] = arr.to_pylist()
    return np.array(
        [np.nan if v is None else moment(v, f"{column}[{i}]") for i, v in enumerate(values)]
    )


def record_times(values: list[Any], column: str) -> list[float]:
    """:func:`times` for the cells of a record-by-record read; plain numbers are checked at once."""
    if all(type(v) is float or type(v) is int for v in values):
        arr = np.asarray(values, dtype=np.float64)
        if bool(np.all(np.isfinite(arr) & (np.abs(arr) <= 1e11))):
            return arr.tolist()  # type: ignore[no-any-return]
    return [moment(v, f"{column}[{i}]") for i, v in enumerate(values)]


def record_label_times(values: list[Any], column: str) -> list[float | None]:
    """:func:`label_times` for a record-by-record read: ``None`` for an empty cell."""
    return [None if v is None else moment(v, f"{column}[{i}]") for i, v in enumerate(values)]


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
