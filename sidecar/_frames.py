"""Tables in, records out: pandas, Arrow and polars tables wherever records are accepted.

The sidecar's unit of input is a *record*, a mapping from field name to value, as
it arrives in a JSON request. Users in notebooks and pipelines hold tables instead.
:func:`as_records` turns each kind of table into records once, at the edge, with
the values a JSON request would carry: NumPy scalars become Python numbers, a
missing value (``NaN`` in an object or string column, ``None``, ``pd.NA``,
``NaT``) becomes ``None``. No table library is imported here: a table is
recognised by the methods it has.

>>> as_records([{"x": 1.0}])
[{'x': 1.0}]
>>> import pandas as pd
>>> as_records(pd.DataFrame({"x": [1.5, None], "c": ["a", None]}))
[{'x': 1.5, 'c': 'a'}, {'x': None, 'c': None}]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import InputError

__all__ = ["as_records"]

Records = Sequence[Mapping[str, Any]]


def _plain(value: Any) -> Any:
    """A JSON-like Python value: NumPy/pandas scalars unwrapped, missing values as None."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    item = getattr(value, "item", None)  # NumPy scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return _plain(item())
    if type(value).__name__ in ("NAType", "NaTType"):  # pd.NA, pd.NaT
        return None
    return value


def _pandas_records(frame: Any) -> list[dict[str, Any]]:
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise InputError(f"a table's column names must be unique; got {columns}.")
    data = [[_plain(v) for v in frame[c].tolist()] for c in frame.columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*data, strict=True)]


def as_records(data: Any) -> Records:
    """Records from a list of mappings, a pandas/polars DataFrame or an Arrow table/batch.

    A single mapping is refused (wrap it in a list); so is anything that is not a
    sequence of records.
    """
    if type(data) is list:  # the serving path: skip the checks below
        return data
    module = type(data).__module__.split(".", 1)[0]
    if module == "pandas" and hasattr(data, "columns"):
        return _pandas_records(data)
    if module == "pyarrow" and hasattr(data, "to_pylist"):  # Table, RecordBatch
        return [{k: _plain(v) for k, v in row.items()} for row in data.to_pylist()]
    if module == "polars" and hasattr(data, "to_dicts"):
        return [{k: _plain(v) for k, v in row.items()} for row in data.to_dicts()]
    if isinstance(data, Mapping):
        raise InputError(
            "records must be a list of objects (one per example); got a single object. "
            "Wrap it in a list: [record]."
        )
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise InputError(
            "records must be a list of objects, or a pandas, polars or Arrow table; "
            f"got {type(data).__name__}."
        )
    return data
