"""Export recorded records with their labels to a Parquet dataset, typed and partitioned.

The dataset is Hive-partitioned by bundle version and hour
(``<out>/bundle_version=<v>/hour=<YYYY-MM-DDTHH>/part-<n>-<i>.parquet``), so
DuckDB (``read_parquet('<out>/**/*.parquet', hive_partitioning = true)``),
Spark or ``pyarrow.dataset`` read one version or one day without touching
the rest, and several replicas' exports (or one export per day) land in the
same dataset side by side. Columns are typed as the store keeps them: each
raw field (``raw:<field>``), ``features`` and the probabilities as lists of
float64, predictions as numbers or strings; the label as ``label`` (a
number) or ``label_text`` (a class name), with ``label_ts``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ._errors import InputError
from .recording import Store

__all__ = ["export_parquet"]


def export_parquet(
    store: Store,
    path: str | Path,
    *,
    since: float | None = None,
    until: float | None = None,
    rows_per_piece: int = 200_000,
) -> int:
    """Write the records in ``[since, until)`` under the directory ``path``; return how many.

    The store is read a piece at a time (whole segments, about
    ``rows_per_piece`` records), each into the memory of the piece before, so
    memory stays flat however large the store, and only the first piece's
    pages are fresh (the kernel's faults on them cost more than the copies).
    """
    import pyarrow as pa  # a dependency: the store keeps its records as Arrow columns
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out must be a directory for the Parquet dataset; got a file {out}.")
    if not out.exists() and not out.parent.is_dir():
        raise InputError(
            f"--out {out}: No such file or directory {out.parent}; the dataset directory is "
            "created, its parent must exist."
        )
    run = uuid.uuid4().hex[:8]  # a second export beside this one never overwrites its files
    total = 0
    # Each piece is written before the next is read into its memory (reuse).
    pieces = store.iter_batches(since=since, until=until, rows=rows_per_piece, reuse=True)
    for n, piece in enumerate(pieces):
        table, parts = _partitions(_typed(piece, pa, pc), pa, pc)
        text = _text_columns(table, pa)
        for i, (version, hour, start, stop) in enumerate(parts):
            where = out / f"bundle_version={quote(version, safe='')}" / f"hour={hour}"
            where.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                table.slice(start, stop - start),
                where / f"part-{run}-{n}-{i}.parquet",
                compression=dict.fromkeys(text, "snappy") or "none",
                use_dictionary=text,
                row_group_size=1 << 20,
            )
        total += table.num_rows
    return total


def _partitions(table: Any, pa: Any, pc: Any) -> tuple[Any, list[tuple[str, str, int, int]]]:
    """The table without its partition keys, ordered by them, and each partition's rows.

    Records are stored in arrival order, so a piece is already grouped by
    version and hour almost always: each partition is then a zero-copy slice.
    (Pyarrow's ``write_dataset`` copies every row into its partition first.)
    """
    version = pc.dictionary_encode(table.column("bundle_version")).combine_chunks()
    names = version.dictionary.to_pylist()
    hour = np.floor(table.column("ts").to_numpy() / 3600.0).astype(np.int64)
    key = version.indices.to_numpy(zero_copy_only=False).astype(np.int64) * (1 << 40) + hour
    if len(key) > 1 and not bool(np.all(key[1:] >= key[:-1])):
        order = np.argsort(key, kind="stable")
        table, key, hour = table.take(pa.array(order)), key[order], hour[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, int)
    stops = np.r_[starts[1:], len(key)]
    parts = [
        (
            names[int(key[a] >> 40)],
            datetime.fromtimestamp(int(hour[a]) * 3600, UTC).strftime("%Y-%m-%dT%H"),
            int(a),
            int(b),
        )
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
    ]
    return table.drop_columns(["bundle_version"]), parts


def _text_columns(table: Any, pa: Any) -> list[str]:
    """The columns given dictionary pages and Snappy: text that repeats (not request ids).

    Parquet's default tries a dictionary on every column: on floats (features,
    probabilities, raw numbers -- nearly all distinct) it builds one, gives up
    and writes plain pages, which cost five times the write itself; Snappy on
    those floats saves a fifth of their bytes for a quarter of the write time.
    """
    return [
        f.name
        for f in table.schema
        if f.name != "request_id"
        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]


def _typed(piece: Any, pa: Any, pc: Any) -> Any:
    """The piece as exported: labels as ``label`` (numbers) and ``label_text``."""
    kind = piece.column("label_kind").to_numpy(zero_copy_only=False)
    numeric = (kind >= 0) & (kind <= 2)
    table = piece.drop_columns(["label_kind", "label_num"])
    table = table.append_column(
        "label", pa.array(piece.column("label_num").to_numpy(zero_copy_only=False), mask=~numeric)
    )
    if "bundle_version" not in table.column_names:
        table = table.append_column("bundle_version", pa.nulls(table.num_rows, pa.string()))
    return table.set_column(
        table.column_names.index("bundle_version"),
        "bundle_version",
        pc.fill_null(table.column("bundle_version"), "unknown"),
    )
