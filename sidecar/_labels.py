"""Checking ground-truth labels at the door, as the metrics will read them.

One rule, used by ``POST /feedback``, :meth:`Bundle.feedback` and the
``sidecar feedback`` / ``sidecar replay`` commands (labels from a CSV file
arrive as text): a label is coerced to the type of the model's classes, then
must be one of them.

- boolean classes: ``true``/``false`` in any case (``"True"``, ``"FALSE"``),
  ``1``/``0`` and ``"1"``/``"0"``;
- integer classes: integers, integral floats (``1.0``) and their text
  (``"1"``, ``" 2 "``); never a boolean;
- float classes: finite numbers and their text;
- string classes: strings, and integers by their decimal text;
- a regressor: a finite number, or its text.

A label outside the class set is refused, naming the set: the metrics could
not score it, and one such label would otherwise fail every later analysis.

>>> check_labels([{"request_id": "a", "label": "True"}], task="classification",
...              classes=(False, True))[0].label
True
>>> check_labels([{"request_id": "a", "label": "2"}], task="classification", classes=(1, 2))
[Label(request_id='a', label=2, ts=None)]
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._errors import FieldProblem, InputError, short_repr
from .recording import Label

__all__ = ["check_labels", "check_request_id", "coerce_label", "label_rule"]

_KEYS = frozenset({"request_id", "label", "ts"})
#: Longest request id accepted (the service issues 38-character ids).
MAX_REQUEST_ID = 256
#: Largest time accepted, in epoch seconds either way (the year 5138).
MAX_EPOCH = 1e11
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER = re.compile(r"[+-]?\d{1,30}")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


class _Missing:
    """What a coercion returns when the value has no reading in the class type."""


MISSING: Any = _Missing()


def label_rule(
    task: str, classes: Sequence[Any] | None
) -> tuple[Callable[[Any], Any], str, frozenset[Any] | None]:
    """``(coerce, expected, allowed)`` for a task and its classes: the one label rule.

    ``coerce(value)`` returns the label in the class type, or :data:`MISSING`;
    ``allowed`` is the class set a coerced label must belong to (``None``: any).
    """
    if task == "regression":
        return _to_float, "a finite number", None
    sample = [_plain(c) for c in classes or ()]
    shown = sample[:20]
    more = f" and {len(sample) - 20} more" if len(sample) > 20 else ""
    if not sample:
        return _to_any, "a class label (a string or a finite number)", None
    allowed = frozenset(sample)
    if all(isinstance(c, bool) for c in sample):
        return _to_bool, f"one of the classes {shown}{more} (true/false)", allowed
    if all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in sample):
        return _to_int, f"one of the integer classes {shown}{more}", allowed
    if all(isinstance(c, numbers.Real) and not isinstance(c, bool) for c in sample):
        return _to_float, f"one of the classes {shown}{more}", allowed
    if all(isinstance(c, str) for c in sample):
        return _to_str, f"one of the classes {shown}{more}", allowed
    return _to_any, f"one of the classes {shown}{more}", allowed


def coerce_label(value: Any, task: str, classes: Sequence[Any] | None) -> Any:
    """``value`` as the metrics read it, or raise :class:`InputError` naming the rule."""
    coerce, expected, allowed = label_rule(task, classes)
    got = coerce(value)
    if got is MISSING or (allowed is not None and got not in allowed):
        raise InputError([FieldProblem("label", expected, short_repr(value))])
    return got


def check_request_id(rid: Any) -> str | None:
    """Why ``rid`` cannot be a request id (``None`` when it can)."""
    if not isinstance(rid, str) or not rid:
        return "a non-empty string"
    if len(rid) > MAX_REQUEST_ID:
        return f"at most {MAX_REQUEST_ID} characters"
    if _CONTROL.search(rid):
        return "a string without control characters (NUL, newline, ...)"
    return None


def check_labels(
    items: Sequence[Mapping[str, Any]] | Any, *, task: str, classes: Sequence[Any] | None
) -> list[Label]:
    """Turn ``[{"request_id", "label"[, "ts"]}]`` into labels, or raise naming each bad one.

    ``items`` may also be a pandas, polars or Arrow table with those columns. Nothing is
    returned (so nothing is stored) unless every item is good.
    """
    if type(items).__module__.split(".", 1)[0] in ("pandas", "polars", "pyarrow"):
        from ._frames import as_records

        items = as_records(items)  # a table of labels: one row per label
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise InputError(
            [FieldProblem("labels", "a non-empty list of {request_id, label}", short_repr(items))]
        )
    coerce, expected, allowed = label_rule(task, classes)
    problems: list[FieldProblem] = []
    out: list[Label] = []
    for i, item in enumerate(items):
        where = f"labels[{i}]"
        if not isinstance(item, Mapping):
            problems.append(FieldProblem(where, "an object {request_id, label}", short_repr(item)))
            continue
        for key in sorted(str(k) for k in item if k not in _KEYS):
            problems.append(
                FieldProblem(
                    f"{where}.{key}",
                    "absent (the fields are request_id, label and an optional ts)",
                    "an undeclared field",
                )
            )
        rid = item.get("request_id")
        why = check_request_id(rid)
        if why is not None:
            got = short_repr(rid) if "request_id" in item else "nothing"
            problems.append(FieldProblem(f"{where}.request_id", why, got))
        if "label" not in item:
            missing = "nothing (the field is missing)"
            problems.append(FieldProblem(f"{where}.label", expected, missing))
            continue
        label = coerce(item["label"])
        if label is MISSING or (allowed is not None and label not in allowed):
            problems.append(FieldProblem(f"{where}.label", expected, short_repr(item["label"])))
        ts = item.get("ts")
        if ts is not None and (_to_float(ts) is MISSING or abs(_to_float(ts)) > MAX_EPOCH):
            problems.append(
                FieldProblem(f"{where}.ts", "epoch seconds (a finite number)", short_repr(ts))
            )
        if len(problems) >= 20:
            break
        if not problems:
            out.append(Label(str(rid), label, None if ts is None else float(_to_float(ts))))
    if problems:
        raise InputError(problems)
    return out


# -- coercions: the value in the class type, or MISSING ---------------------------------


def _plain(v: Any) -> Any:
    item = getattr(v, "item", None)
    return item() if item is not None and not isinstance(v, str | bytes) else v


def _to_float(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return MISSING
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return MISSING
    try:
        f = float(v)
    except OverflowError:
        return MISSING
    return f if math.isfinite(f) else MISSING


def _to_int(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, bool):
        return MISSING
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, str) and _INTEGER.fullmatch(v.strip()):
        return int(v.strip())
    f = _to_float(v)
    if f is MISSING or not float(f).is_integer():
        return MISSING
    return int(f)


def _to_bool(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, numbers.Real) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        text = v.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        number = _to_float(text)  # "1.0" as the number 1.0 is: one rule for text and numbers
        if number is not MISSING and number in (0.0, 1.0):
            return bool(number)
    return MISSING


def _to_str(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, str):
        return v
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    return MISSING


def _to_any(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, str):
        return v
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    return _to_float(v)
