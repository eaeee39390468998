"""Records grouped into the plan's time windows.

The report's series (:func:`loss_series`, :func:`unknown_series`) start their
windows at multiples of ``plan.window_seconds``, so two diagnoses of
overlapping periods share boundaries; the across-windows test battery
(:func:`split_by_window`) counts windows from the first labelled record.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._inputs import WindowData
from ._plan import MonitoringPlan


def window_keys(ts: np.ndarray, width: float) -> tuple[float, np.ndarray]:
    """The first window's start and each timestamp's window number."""
    start = math.floor(float(ts.min()) / width) * width
    return start, np.floor((ts - start) / width).astype(np.int64)


def unknown_series(plan: MonitoringPlan, window: WindowData) -> list[dict[str, Any]]:
    """Per window: the share of each categorical field's values that were unknown."""
    if window.n == 0 or not window.unknown_flags:
        return []
    start, keys = window_keys(window.ts, plan.window_seconds)
    series = []
    for k in np.unique(keys):
        sel = keys == k
        row: dict[str, Any] = {"start": start + int(k) * plan.window_seconds, "n": int(sel.sum())}
        row["rates"] = {f: float(flags[sel].mean()) for f, flags in window.unknown_flags.items()}
        series.append(row)
    return series


def split_by_window(values: np.ndarray, ts: np.ndarray, width: float) -> list[np.ndarray]:
    """``values`` grouped by window; windows with fewer than two values are dropped."""
    if len(ts) == 0:
        return []
    keys = np.floor((ts - ts.min()) / width).astype(np.int64)
    return [values[keys == k] for k in np.unique(keys) if np.count_nonzero(keys == k) >= 2]


def loss_series(
    plan: MonitoringPlan, ts: np.ndarray, now_adv: np.ndarray, now_base: np.ndarray
) -> list[dict[str, Any]]:
    """Per window: both models' mean loss with a normal-approximation CI, for the report."""
    if len(ts) == 0:
        return []
    width = plan.window_seconds
    start, keys = window_keys(ts, width)
    series = []
    for k in np.unique(keys):
        sel = keys == k
        row: dict[str, Any] = {"start": start + int(k) * width, "n": int(sel.sum())}
        for who, loss in (("advanced", now_adv), ("baseline", now_base)):
            v = loss[sel]
            mean = float(v.mean())
            half = 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.nan
            value = 1.0 - mean if plan.loss == "zero_one" else mean
            row[who] = {"value": value, "ci_low": value - half, "ci_high": value + half}
        series.append(row)
    return series
