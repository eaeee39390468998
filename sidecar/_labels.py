"""Checking ground-truth labels before they are joined to recorded predictions."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import FieldProblem, InputError, short_repr
from .recording import Label

__all__ = ["check_labels"]

_KEYS = frozenset({"request_id", "label", "ts"})


def check_labels(
    items: Sequence[Mapping[str, Any]] | Any, *, task: str, classes: Sequence[Any] | None
) -> list[Label]:
    """Turn ``[{"request_id", "label"[, "ts"]}]`` into labels, or raise naming each bad one.

    A classifier's label must have the type of its classes (a string label for
    string classes, an integer for integer classes); a label of the right type
    that the model never saw is accepted -- a new class is evidence, not an
    error. A regressor's label must be a finite number.
    """
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise InputError(
            [FieldProblem("labels", "a non-empty list of {request_id, label}", short_repr(items))]
        )
    want = _label_kind(task, classes)
    problems: list[FieldProblem] = []
    out: list[Label] = []
    for i, item in enumerate(items):
        where = f"labels[{i}]"
        if not isinstance(item, Mapping):
            problems.append(FieldProblem(where, "an object {request_id, label}", short_repr(item)))
            continue
        extra = sorted(str(k) for k in item if k not in _KEYS)
        for key in extra:
            problems.append(
                FieldProblem(
                    f"{where}.{key}",
                    "absent (the fields are request_id, label and an optional ts)",
                    "an undeclared field",
                )
            )
        rid = item.get("request_id")
        if not isinstance(rid, str) or not rid:
            problems.append(
                FieldProblem(
                    f"{where}.request_id",
                    "a non-empty string",
                    short_repr(rid) if "request_id" in item else "nothing",
                )
            )
        if "label" not in item:
            problems.append(
                FieldProblem(f"{where}.label", want[1], "nothing (the field is missing)")
            )
            continue
        label = item["label"]
        if not want[0](label):
            problems.append(FieldProblem(f"{where}.label", want[1], short_repr(label)))
        ts = item.get("ts")
        if ts is not None and not _finite(ts):
            problems.append(
                FieldProblem(f"{where}.ts", "epoch seconds (a finite number)", short_repr(ts))
            )
        if len(problems) >= 20:
            break
        if not problems:
            out.append(Label(str(rid), _plain(label), None if ts is None else float(ts)))
    if problems:
        raise InputError(problems)
    return out


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _label_kind(task: str, classes: Sequence[Any] | None) -> tuple[Any, str]:
    if task == "regression":
        return _finite, "a finite number"
    sample = list(classes or [])
    if sample and all(isinstance(c, str) for c in sample):
        return (lambda v: isinstance(v, str)), f"a class label string (one of {sample[:10]})"
    if sample and all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in sample):
        return (
            lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
            f"an integer class label (one of {sample[:10]})",
        )
    return (
        lambda v: (
            isinstance(v, str | int | float)
            and not isinstance(v, bool)
            and (not isinstance(v, float) or math.isfinite(v))
        )
    ), "a class label"


def _plain(v: Any) -> Any:
    item = getattr(v, "item", None)
    return item() if item is not None else v
