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
    rows_per_piece: int = 500_000,
) -> int:
    """Write the records in ``[since, until)`` under the directory ``path``; return how many.

    The store is read a piece at a time (whole segments, about
    ``rows_per_piece`` records), so memory stays flat however large the store.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise InputError("export needs pyarrow; install it with `pip install pyarrow`.") from exc
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out must be a directory for the Parquet dataset; got a file {out}.")
    if not out.exists() and not out.parent.is_dir():
        raise InputError(
            f"--out {out}: No such file or directory {out.parent}; the dataset directory is "
            "created, its parent must exist."
        )
    run = uuid.uuid4().hex[:8]  # a second export beside this one never overwrites its files
    partitioning = ds.partitioning(
        pa.schema([("bundle_version", pa.string()), ("hour", pa.string())]), flavor="hive"
    )
    total = 0
    for n, piece in enumerate(store.iter_batches(since=since, until=until, rows=rows_per_piece)):
        table = _typed(piece, pa, pc)
        ds.write_dataset(
            table,
            out,
            format="parquet",
            partitioning=partitioning,
            file_options=_write_options(table, pa, ds),
            basename_template=f"part-{run}-{n}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            max_rows_per_group=1 << 20,
        )
        total += table.num_rows
    return total


def _write_options(table: Any, pa: Any, ds: Any) -> Any:
    """Dictionary pages for the text columns only; Snappy everywhere.

    Parquet's default tries a dictionary on every column: on floats (features,
    probabilities, raw numbers -- nearly all distinct) it builds one, gives up
    and writes plain pages, which cost five times the write itself. Request
    ids are distinct too; versions, categories and class names repeat.
    """
    text = [
        f.name
        for f in table.schema
        if f.name != "request_id"
        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    return ds.ParquetFileFormat().make_write_options(use_dictionary=text, compression="snappy")


def _typed(piece: Any, pa: Any, pc: Any) -> Any:
    """The piece as exported: an ``hour`` partition key, labels as ``label`` / ``label_text``."""
    hour = np.floor(piece.column("ts").to_numpy() / 3600.0).astype(np.int64)
    uniq, where = np.unique(hour, return_inverse=True)
    names = [datetime.fromtimestamp(h * 3600, UTC).strftime("%Y-%m-%dT%H") for h in uniq.tolist()]
    hours = pa.DictionaryArray.from_arrays(
        pa.array(where.astype(np.int32)), pa.array(names, pa.string())
    ).dictionary_decode()
    kind = piece.column("label_kind").to_numpy(zero_copy_only=False)
    numeric = (kind >= 0) & (kind <= 2)
    table = piece.drop_columns(["label_kind", "label_num"])
    table = table.append_column(
        "label", pa.array(piece.column("label_num").to_numpy(zero_copy_only=False), mask=~numeric)
    )
    table = table.append_column("hour", hours)
    if "bundle_version" in table.column_names:
        table = table.set_column(
            table.column_names.index("bundle_version"),
            "bundle_version",
            pc.fill_null(table.column("bundle_version"), "unknown"),
        )
    return table
