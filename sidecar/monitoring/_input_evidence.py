"""The diagnosis's evidence from the inputs alone: pipeline health, drift, histograms.

None of it needs a label: each raw column is sorted (numeric) or counted
(categorical) once, then the preprocessing-health checks and the drift tests
read those, and the most drifted numeric features are summarised as
per-window histograms for the report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._battery import correct
from ._drift import chi2_homogeneity, is_material, ks_drift, ks_drift_sorted, sort_reference
from ._health import CurrentColumns, check_health
from ._inputs import ReferenceInputs, WindowData
from ._plan import MonitoringPlan
from ._results import DriftResult, HealthFinding
from ._windows import window_keys


@dataclass(frozen=True)
class Columns:
    """The window's raw columns prepared once for the health checks and the drift tests.

    ``current[f]``: field ``f``'s non-missing values, sorted (``missing[f]``
    of them were NaN); ``reference[f]``: the same for the reference; and
    ``counts[f]``: how often each raw value of a categorical field occurs.
    """

    current: dict[str, np.ndarray]
    missing: dict[str, int]
    reference: dict[str, np.ndarray]
    counts: dict[str, Counter[Any]]

    @staticmethod
    def submit(
        pool: ThreadPoolExecutor, reference: ReferenceInputs, window: WindowData
    ) -> Callable[[], Columns]:
        """Queue one sort per numeric column and one count per categorical one on ``pool``;
        the returned function waits for them and gathers the results."""
        current = {k: pool.submit(_present_sorted, v) for k, v in window.raw_numeric.items()}
        ref = {
            k: pool.submit(_present_sorted, reference.raw_numeric[k])
            for k in window.raw_numeric
            if k in reference.raw_numeric
        }
        coded = window.categorical_codes
        counts = {
            k: pool.submit(count_values, v, coded.get(k)) for k, v in window.raw_categorical.items()
        }

        def collect() -> Columns:
            cur = {k: job.result() for k, job in current.items()}
            return Columns(
                current={k: v for k, (v, _) in cur.items()},
                missing={k: m for k, (_, m) in cur.items()},
                reference={k: job.result()[0] for k, job in ref.items()},
                counts={k: job.result() for k, job in counts.items()},
            )

        return collect


def input_evidence(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    collect: Callable[[], Columns],
) -> tuple[tuple[HealthFinding, ...], list[DriftResult], list[dict[str, Any]]]:
    """The health findings, the drift tests and the most drifted features' histograms."""
    columns = collect()
    health = tuple(_health(plan, reference, window, columns))
    drift = _drift(plan, reference, window, columns)
    return health, drift, _distributions(plan, reference, window, drift)


def count_values(values: Any, coded: tuple[np.ndarray, np.ndarray] | None = None) -> Counter[Any]:
    """``Counter(values)`` -- the same keys, counts and key order -- from ``coded``
    (``(codes, table)``, ``values == table[codes]``) when given: a bincount, not a
    Python loop over a million objects."""
    if coded is None:
        return Counter(values)
    codes, table = coded
    counts = np.bincount(codes, minlength=len(table))
    out: Counter[Any] = Counter()
    for code in _first_seen(codes, int(np.count_nonzero(counts))):
        out[table[code]] += int(counts[code])  # equal values of several codes merge, as in Counter
    return out


def _first_seen(codes: np.ndarray, n_distinct: int) -> np.ndarray:
    """The distinct codes in the order they first occur, from the shortest prefix holding all."""
    m = 4096
    while True:
        seen, first = np.unique(codes[:m], return_index=True)
        if seen.size == n_distinct or m >= codes.size:
            return np.asarray(seen[np.argsort(first)])
        m *= 8


def _present_sorted(values: Any) -> tuple[np.ndarray, int]:
    arr = np.asarray(values, dtype=np.float64)
    missing = np.isnan(arr)
    n_missing = int(np.count_nonzero(missing))
    return np.sort(arr[~missing] if n_missing else arr), n_missing


def _health(
    plan: MonitoringPlan, reference: ReferenceInputs, window: WindowData, columns: Columns
) -> list[HealthFinding]:
    if window.n == 0:
        return []
    current = CurrentColumns(
        numeric={k: np.asarray(v, dtype=np.float64) for k, v in window.raw_numeric.items()},
        categorical=dict(window.raw_categorical),
        unknown=dict(window.unknown),
        sorted_present=columns.current,
        counts=columns.counts,
    )
    return check_health(
        reference.sketches,
        current,
        alpha=plan.alpha,
        units=reference.units,
        correction=plan.tests.correction,
    )


def _drift(
    plan: MonitoringPlan, reference: ReferenceInputs, window: WindowData, columns: Columns
) -> list[DriftResult]:
    if window.n == 0:
        return []
    results: list[DriftResult] = []
    if "ks" in plan.tests.drift:
        for name in window.raw_numeric:
            ref_sorted = columns.reference.get(name)
            if ref_sorted is None:
                continue
            cur_sorted = columns.current[name]
            if len(ref_sorted) < 2 or len(cur_sorted) < 2:
                continue
            results.append(
                ks_drift_sorted(
                    name, ref_sorted, cur_sorted, n_missing=columns.missing[name], space="raw"
                )
            )
    if "chi2_homogeneity" in plan.tests.drift:
        for name in window.raw_categorical:
            sketch = reference.sketches.get(name, {})
            ref_counts = dict(sketch.get("counts", {}))
            if sketch.get("other"):
                ref_counts["<other>"] = int(sketch["other"])
            cur_counts: dict[str, int] = {}
            for v, c in columns.counts[name].items():  # counted once, fold the few keys
                if v is not None:
                    key = str(v)
                    cur_counts[key] = cur_counts.get(key, 0) + c
            if not ref_counts or not cur_counts:
                continue
            results.append(chi2_homogeneity(ref_counts, cur_counts, feature=name, space="raw"))
    # Preprocessed features: a feature that is a monotone map of one numeric raw
    # field has exactly that field's KS statistic and p-value, so it is not
    # tested twice; the others are.
    categorical = set(reference.categorical_fields)
    if window.features is not None and "ks" in plan.tests.drift:
        for j, name in enumerate(reference.feature_names):
            if name in reference.monotone_of or j >= window.features.shape[1]:
                continue
            if name in categorical or name.split("=", 1)[0] in categorical:
                continue  # an encoded category: the chi-square test on the raw field covers it
            ref = reference.features[:, j]
            cur = window.features[:, j]
            if len(np.unique(ref)) <= 2:  # one-hot / binary: covered by the categorical test
                continue
            results.append(ks_drift(name, sort_reference(ref), cur, space="preprocessed"))
    if not results:
        return []
    return judged(plan, results)


def judged(plan: MonitoringPlan, results: Sequence[DriftResult]) -> list[DriftResult]:
    """Drift or relation results corrected as one family by the plan's correction, each
    marked material (``min_drift_effect``) and an alarm (also significant at ``alpha``)."""
    out = []
    for r in correct(results, plan.tests.correction):
        material = is_material(r, min_effect=plan.min_drift_effect)
        p = r.p_value if math.isnan(r.p_adjusted) else r.p_adjusted
        out.append(
            replace(
                r,
                material=material,
                alarm=material and p <= plan.alpha,
                detail={**r.detail, "alpha": plan.alpha},  # for the report's colours
            )
        )
    return out


def _distributions(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    drift: Sequence[DriftResult],
    top: int = 3,
    max_windows: int = 6,
) -> list[dict[str, Any]]:
    """Reference and per-window histograms of the most drifted numeric raw features."""
    if window.n == 0:
        return []
    numeric = [d for d in drift if d.kind == "numeric" and d.space == "raw"]
    numeric.sort(key=lambda d: (not d.material, -d.effect))
    start, keys = window_keys(window.ts, plan.window_seconds)
    shown = np.unique(keys)[-max_windows:]
    out = []
    for d in numeric[:top]:
        ref = reference.raw_numeric[d.feature]
        ref = ref[~np.isnan(ref)]
        cur = np.asarray(window.raw_numeric[d.feature], dtype=np.float64)
        lo = float(min(ref.min(), np.nanmin(cur)))
        hi = float(max(ref.max(), np.nanmax(cur)))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        ref_hist = np.histogram(ref, bins=edges)[0] / max(len(ref), 1)
        windows = []
        for k in shown:
            values = cur[(keys == k) & ~np.isnan(cur)]
            if len(values) == 0:
                continue
            windows.append(
                {
                    "start": start + int(k) * plan.window_seconds,
                    "share": (np.histogram(values, bins=edges)[0] / len(values)).tolist(),
                }
            )
        out.append(
            {
                "feature": d.feature,
                "effect": d.effect,
                "edges": edges.tolist(),
                "reference": ref_hist.tolist(),
                "windows": windows,
            }
        )
    return out
