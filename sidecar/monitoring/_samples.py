"""Numeric samples for the drift tests, checked: 1-D floats, their present values,
and a reference sorted once so every window's test reuses it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._errors import InputError

_MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: exact p-values while both samples are this small
_PSI_FLOOR = 1e-4  # bin proportions are floored here so an empty bin does not make PSI infinite
_MIN_EXPECTED = 5.0  # the classic rule for the chi-square approximation
OTHER = "__other__"


def _numeric(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"`{name}` must be a 1-D array of numbers; got {type(values).__name__} ({exc})."
        ) from None
    if arr.ndim != 1:
        raise InputError(f"`{name}` must be a 1-D array of numbers; got shape {arr.shape}.")
    return arr


def _present(name: str, values: Any) -> np.ndarray:
    """The non-missing values of a numeric column; at least one must be there."""
    arr = _numeric(name, values)
    present: np.ndarray = arr[~np.isnan(arr)]
    if present.size == 0:
        raise InputError(f"`{name}` must hold at least one non-missing value; got none.")
    return present


def sort_reference(values: Any) -> np.ndarray:
    """The reference column ready for :func:`ks_2samp_sorted`: missing values dropped, sorted.

    Do this once per feature; every window then reuses it.
    """
    return np.sort(_present("values", values))


def _check_sorted(ref_sorted: Any) -> np.ndarray:
    ref = _numeric("ref_sorted", ref_sorted)
    if ref.size == 0:
        raise InputError("`ref_sorted` must hold at least one value; got an empty array.")
    # NaN fails every comparison, so this also rejects missing values.
    ok = bool(np.all(ref[:-1] <= ref[1:])) and not math.isnan(ref[0])
    if not ok:
        raise InputError(
            "`ref_sorted` must be sorted ascending without NaN; got an unsorted array or one "
            "with missing values (prepare it once with sort_reference(values))."
        )
    return ref
