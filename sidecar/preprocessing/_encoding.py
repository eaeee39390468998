"""The tabular preprocessor's hot path: raw records to a float matrix.

:func:`encode_row` encodes one record and names every bad field;
:func:`encode_columns` encodes a whole clean batch with column operations and
gives up (``None``) at the first value that needs the row path. Both read the
preprocessor's compiled plan: one :data:`PlanEntry` per column, so the hot
path does no look-ups.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import FieldProblem, short_repr

#: One compiled column: (name, kind (0 numeric, 1 categorical), a, b, vocabulary
#: index, recode map, one-hot width (0: ordinal), allow_missing, fill value).
PlanEntry = tuple[Any, ...]
MISSING = object()


def encode_row(
    plan: Sequence[PlanEntry],
    rec: Mapping[str, Any],
    i: int,
    problems: list[FieldProblem],
    unknown: list[int],
    missing: list[int],
) -> tuple[list[float], int]:
    """Record ``i``'s features, and how many of its keys are declared fields.

    Each bad field is appended to ``problems``; unknown and missing values are
    counted per column in ``unknown`` and ``missing``.
    """
    row: list[float] = []
    seen = 0
    for j, (name, kind, a, b, index, recode, width, allow_missing, fill) in enumerate(plan):
        v = rec.get(name, MISSING)
        if v is MISSING or v is None:
            if v is None:
                seen += 1
            if not allow_missing:
                what = "present" if v is MISSING else "not null"
                problems.append(
                    FieldProblem(
                        f"records[{i}].{name}",
                        f"{what} ({'a finite number' if kind == 0 else 'a string'})",
                        "nothing (the field is missing)" if v is MISSING else "null",
                    )
                )
                continue
            missing[j] += 1
            if kind == 0:
                row.append(fill)
            elif width:
                row.extend(_onehot(0, width))
            else:
                row.append(0.0)
            continue
        seen += 1
        t = type(v)
        if kind == 0:
            x = _finite_float(v) if t is float or t is int else finite_number(v)
            if x is not None:
                row.append(a * x + b)
            else:
                problems.append(
                    FieldProblem(f"records[{i}].{name}", "a finite number", short_repr(v))
                )
        else:
            if t is not str:
                # a str subclass (numpy.str_) or an integer code is taken as text
                if isinstance(v, str) or (isinstance(v, numbers.Integral) and t is not bool):
                    v = str(v)
                else:
                    problems.append(FieldProblem(f"records[{i}].{name}", "a string", short_repr(v)))
                    continue
            if recode:
                v = recode.get(v, v)
            code = index.get(v, 0)
            if code == 0:
                unknown[j] += 1
            if width:
                row.extend(_onehot(code, width))
            else:
                row.append(float(code))
    return row, seen


def encode_columns(
    plan: Sequence[PlanEntry], records: Sequence[Mapping[str, Any]], *, forbid: bool
) -> tuple[np.ndarray, list[int]] | None:
    """The feature matrix and the unknown count per column of a clean batch, encoded
    column-wise; ``None`` when any value needs the row path (which names every problem).
    """
    n_fields = len(plan)
    try:
        if forbid and any(len(r) != n_fields for r in records):
            return None
        blocks: list[np.ndarray] = []
        unknown = [0] * n_fields
        for j, (name, kind, a, b, index, recode, width, _allow, _fill) in enumerate(plan):
            values = [r[name] for r in records]
            types = set(map(type, values))
            if kind == 0:
                if not types <= _NUMBER_TYPES:
                    return None
                col = np.asarray(values, dtype=np.float64)
                if not np.isfinite(col).all():
                    return None
                if a != 1.0 or b != 0.0:
                    col = col * a + b
                blocks.append(col[:, None])
            else:
                if types != _STR_TYPE:
                    return None
                if recode:
                    values = [recode.get(v, v) for v in values]
                codes = np.fromiter(
                    (index.get(v, 0) for v in values), dtype=np.int64, count=len(values)
                )
                unknown[j] = int(len(values) - np.count_nonzero(codes))
                if width:
                    blocks.append(np.eye(width, dtype=np.float64)[codes])
                else:
                    blocks.append(codes.astype(np.float64)[:, None])
    except (KeyError, TypeError, AttributeError, OverflowError):
        return None
    X = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
    return X, unknown


_NUMBER_TYPES = frozenset({int, float})
_STR_TYPE = frozenset({str})


def _finite_float(v: float) -> float | None:
    """``v`` as a float if it is finite (an int too large for a float is not)."""
    try:
        x = float(v)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def finite_number(v: Any) -> float | None:
    """A real number that is not a bool (NumPy's too), as a finite float; else None."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
        return None
    return _finite_float(v)  # type: ignore[arg-type]


def _onehot(code: int, width: int) -> list[float]:
    row = [0.0] * width
    row[code] = 1.0
    return row
