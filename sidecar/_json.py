"""The one JSON policy for what model-sidecar writes outside the record store.

:func:`to_jsonable` turns a value into plain JSON values:

- NumPy scalars become Python scalars and NumPy arrays lists;
- tuples become lists and mapping keys strings;
- an object with a ``to_dict()`` method becomes that dict;
- **NaN, +inf and -inf become** ``None``: JSON has no such numbers, and strict
  readers (JavaScript's ``JSON.parse``, PostgreSQL's ``jsonb``, ``jq``) reject
  Python's ``NaN``/``Infinity`` tokens. A ``null`` where a number is expected
  reads as "no value", which is what a NaN statistic means here (a test that
  could not run, a metric undefined on the window).

:func:`dumps` writes the result with ``allow_nan=False``, so a number that
slipped past the policy fails loudly instead of producing invalid JSON.

The record store encodes its rows itself (``sidecar.recording``), with a
policy of its own that its schema documents.

>>> import math
>>> import numpy as np
>>> to_jsonable({"n": np.int64(3), "p": math.nan, "ci": (0.1, np.float32(math.inf))})
{'n': 3, 'p': None, 'ci': [0.1, None]}
>>> dumps({"values": np.array([1.5, np.nan])})
'{"values": [1.5, null]}'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON values, by the policy of this module."""
    if getattr(value, "ndim", 0) and hasattr(value, "tolist"):  # an array, even of one element
        value = value.tolist()
    else:
        item = getattr(value, "item", None)
        if item is not None and not isinstance(value, str | bytes):
            try:
                value = item()
            except (TypeError, ValueError):
                value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`to_jsonable` ``(value)``, refusing NaN and infinities."""
    return json.dumps(to_jsonable(value), allow_nan=False, **kwargs)
