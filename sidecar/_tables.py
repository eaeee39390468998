"""Reading CSV and Parquet files into records, for the CLI."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._optional import import_optional

__all__ = ["parse_timestamp", "pop_column", "read_table"]


def read_table(path: str | Path, *, text_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read ``path`` (``.csv`` or ``.parquet``) as a list of records.

    CSV cells that parse as numbers become numbers, except in ``text_columns``
    (categorical codes such as ``"250.00"`` or ``"02134"`` stay text), and empty
    cells become missing (``None``); Parquet keeps its types and needs pyarrow
    (``pip install 'model-sidecar[parquet]'``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file {path} must exist; got no such file.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            text = frozenset(text_columns)
            return [
                {k: (v if v != "" else None) if k in text else _cell(v) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]
    if suffix in (".parquet", ".pq"):
        pq = import_optional(
            "pyarrow.parquet", extra="parquet", needed_by="reading Parquet", package="pyarrow"
        )
        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    raise InputError(f"data file {path} must end in .csv or .parquet; got {suffix or 'none'!r}.")


def _cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def pop_column(records: list[dict[str, Any]], column: str, *, flag: str, source: str) -> list[Any]:
    """Take ``column`` out of every record; an absent column is a clear error naming ``flag``."""
    if records and column not in records[0]:
        raise InputError(
            f"{flag} must name a column of {source}; got {column!r}, the columns are "
            f"{list(records[0])}."
        )
    return [r.pop(column, None) for r in records]


def parse_timestamp(value: Any, *, where: str) -> float:
    """Epoch seconds from a number or an ISO 8601 string (UTC when no zone is given)."""
    from datetime import UTC, datetime

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InputError(
                f"`{where}` must be epoch seconds or an ISO 8601 time such as "
                f"2026-11-26T12:00:00Z; got {value!r}."
            ) from exc
    else:
        raise InputError(f"`{where}` must be epoch seconds or an ISO 8601 time; got {value!r}.")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
