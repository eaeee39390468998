"""Export recorded predictions (with their labels) to Parquet, streaming in chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._optional import import_optional
from .recording import COLUMNS, Store

__all__ = ["export_parquet"]

_FLOATS = frozenset(
    {"ts", "advanced_latency_ms", "baseline_latency_ms", "candidate_latency_ms", "label_ts"}
)


def export_parquet(
    store: Store, path: str | Path, *, since: float | None = None, until: float | None = None
) -> int:
    """Write the joined records to ``path`` one chunk at a time; return how many.

    JSON cells (raw input, predictions, probabilities, labels) stay JSON text,
    which DuckDB (``json_extract``) and Spark (``from_json``) read directly.
    """
    pa = import_optional("pyarrow", extra="parquet", needed_by="export")
    pq = import_optional("pyarrow.parquet", extra="parquet", needed_by="export", package="pyarrow")
    names = [*COLUMNS, "label", "label_ts"]
    schema = pa.schema([(n, pa.float64() if n in _FLOATS else pa.string()) for n in names])
    total = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for chunk in store.iter_joined(since=since, until=until):
            columns: dict[str, list[Any]] = {n: [row[n] for row in chunk] for n in names}
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            total += len(chunk)
    return total
