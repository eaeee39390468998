"""Input drift of one feature between the reference and a window, and its materiality.

Numeric features get the two-sample Kolmogorov-Smirnov test (:func:`ks_drift`);
categorical ones the chi-square test of homogeneity (:func:`chi2_homogeneity`);
the feature-target relation gets :func:`relation_change`. Each returns a
:class:`DriftResult` whose ``effect`` is scale-free, so that one threshold from
the plan (``min_drift_effect``) can judge it. Whether a shift *matters* is a
separate decision (:func:`is_material`): a million rows make every negligible
shift significant, and significance alone must never raise an alarm.

The KS statistic and p-value on sorted samples live in :mod:`._ks`, the
relation tests in :mod:`._relation`; this module holds the tests a plan names
for one feature, PSI, and the materiality decision.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = sort_reference(rng.normal(size=2000))  # sorted once, reused for every window
>>> r = ks_drift("age", ref, rng.normal(0.5, 1.0, size=500))
>>> r.p_value < 1e-6, is_material(r, min_effect=0.1)
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from .._errors import InputError
from ._ks import (
    _STEPS_FACTOR,
    _ks,
    _reference_steps,
    _sorted_quantiles,
    _wasserstein_sorted,
    _wasserstein_steps,
    ks_2samp_sorted,
)
from ._relation import relation_change
from ._results import DriftResult, TestResult
from ._samples import _check_sorted, _numeric, _present, sort_reference

__all__ = [
    "chi2_homogeneity",
    "is_material",
    "ks_2samp_sorted",
    "ks_drift",
    "psi",
    "relation_change",
    "sort_reference",
]

_PSI_FLOOR = 1e-4  # bin proportions are floored here so an empty bin does not make PSI infinite
_MIN_EXPECTED = 5.0  # the classic rule for the chi-square approximation
OTHER = "__other__"


# --------------------------------------------------------------------------- KS


def _scale(ref: np.ndarray) -> tuple[float, str]:
    """The reference's spread that makes a Wasserstein distance scale-free.

    The interquartile range (robust to the outliers a drift check must not be
    driven by); the standard deviation when the IQR is zero (a feature mostly
    at one value); 1 (raw units) for a constant reference.
    """
    q1, q3 = _sorted_quantiles(ref, np.array([0.25, 0.75]))
    if q3 > q1:
        return float(q3 - q1), "iqr"
    sd = float(ref.std())
    if sd > 0:
        return sd, "std"
    return 1.0, "unit"


def _psi_proportions(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin proportions of two *sorted* samples over the reference's quantile bins."""
    inner = np.unique(_sorted_quantiles(ref, np.linspace(0.0, 1.0, bins + 1))[1:-1])
    # Bin i holds inner[i-1] <= x < inner[i]: counts from the sorted samples directly.
    p = np.diff(np.concatenate([[0], np.searchsorted(ref, inner, "left"), [ref.size]]))
    q = np.diff(np.concatenate([[0], np.searchsorted(cur, inner, "left"), [cur.size]]))
    return p / ref.size, q / cur.size


def _psi_from(p: np.ndarray, q: np.ndarray) -> float:
    p = np.maximum(p, _PSI_FLOOR)
    q = np.maximum(q, _PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(ref: Any, cur: Any, *, bins: int = 10) -> float:
    """Population stability index of ``cur`` against ``ref``.

    Bins are the reference's quantiles (``bins`` equal-frequency bins, fewer
    where ties merge edges; the outer bins are open), so each holds about
    ``1/bins`` of the reference. ``PSI = sum((q - p) * ln(q / p))`` with both
    proportions floored at 1e-4 so an empty bin stays finite. Missing values
    are ignored. Rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=5000)
    >>> round(psi(ref, rng.normal(size=5000)), 3), round(psi(ref, rng.normal(1, 1, 5000)), 2)
    (0.005, 0.95)
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise InputError(f"`bins` must be an integer >= 2; got {bins!r}.")
    p, q = _psi_proportions(np.sort(_present("ref", ref)), np.sort(_present("cur", cur)), bins)
    return _psi_from(p, q)


def ks_drift(
    feature: str,
    ref_sorted: Any,
    cur: Any,
    *,
    space: Literal["raw", "preprocessed"] = "raw",
    bins: int = 10,
) -> DriftResult:
    """KS drift of a numeric feature, with a scale-free effect.

    ``ref_sorted`` comes from :func:`sort_reference`; missing values (NaN) in
    ``cur`` are dropped and counted in ``detail["n_missing"]``.

    The effect is the Wasserstein-1 distance between the two samples (exact;
    for a window at least four times a reference of 1,000 values or more, the
    window's ECDF is taken as linear between reference values, which is close
    to exact and much faster -- see ``_wasserstein_steps``) divided
    by the reference's interquartile range (``detail["scale"]`` says when the
    standard deviation, or nothing, had to stand in): "the distributions moved
    by 0.3 IQRs" reads the same for grams and for years. ``detail`` also holds
    the raw distance, the PSI over ``bins`` reference-quantile bins and the
    p-value method (``"exact"`` or ``"asymptotic"``).
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise InputError(f"`bins` must be an integer >= 2; got {bins!r}.")
    ref = _check_sorted(ref_sorted)
    raw = _numeric("cur", cur)
    missing = np.isnan(raw)
    cur_sorted = np.sort(raw[~missing])
    if cur_sorted.size == 0:
        raise InputError(
            f"`cur` for feature {feature!r} must hold at least one non-missing value; "
            f"got {raw.size} values, all missing."
        )
    return ks_drift_sorted(
        feature, ref, cur_sorted, n_missing=int(missing.sum()), space=space, bins=bins
    )


def ks_drift_sorted(
    feature: str,
    ref_sorted: np.ndarray,
    cur_sorted: np.ndarray,
    *,
    n_missing: int = 0,
    space: Literal["raw", "preprocessed"] = "raw",
    bins: int = 10,
) -> DriftResult:
    """:func:`ks_drift` for two columns already sorted, without missing values (not checked).

    The diagnosis sorts each window column once and shares it with the health
    checks; ``n_missing`` is how many missing values were dropped first.
    """
    by_steps = cur_sorted.size >= _STEPS_FACTOR * ref_sorted.size and ref_sorted.size >= 1000
    # a window much larger than the reference: both come from the reference's steps
    steps = _reference_steps(ref_sorted, cur_sorted) if by_steps else None
    d, p, method = _ks(ref_sorted, cur_sorted, steps)
    if by_steps:
        distance = _wasserstein_steps(ref_sorted, cur_sorted, steps)
    else:
        distance = _wasserstein_sorted(ref_sorted, cur_sorted)
    scale, scale_name = _scale(ref_sorted)
    return DriftResult(
        feature=feature,
        kind="numeric",
        space=space,
        test="ks",
        statistic=d,
        p_value=p,
        effect_name="wasserstein",
        effect=distance / scale,
        n_reference=int(ref_sorted.size),
        n_current=int(cur_sorted.size),
        detail={
            "method": method,
            "wasserstein_raw": distance,
            "scale": scale_name,
            "scale_value": scale,
            "psi": _psi_from(*_psi_proportions(ref_sorted, cur_sorted, bins)),
            "n_missing": int(n_missing),
        },
    )


# --------------------------------------------------------------------------- categorical


def _counts(name: str, counts: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise InputError(
            f"`{name}` must be a mapping category -> count; got {type(counts).__name__}."
        )
    out: dict[str, int] = {}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise InputError(
                f"`{name}[{key!r}]` must be a non-negative integer count; got {value!r}."
            )
        out[str(key)] = out.get(str(key), 0) + int(value)
    if sum(out.values()) == 0:
        raise InputError(f"`{name}` must hold at least one counted value; got a total of 0.")
    return out


def _merge_sparse(table: np.ndarray, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Merge categories whose expected count is below 5 in either row into one bucket.

    The sparse columns are pooled into ``__other__``; while that bucket itself
    is still too sparse (and more than one other column is left), the smallest
    remaining category joins it.
    """
    total = table.sum()
    expected_min = np.outer(table.sum(axis=1), table.sum(axis=0)).min(axis=0) / total
    sparse = expected_min < _MIN_EXPECTED
    if not sparse.any():
        return table, labels
    keep = table[:, ~sparse]
    kept = [lab for lab, s in zip(labels, sparse, strict=True) if not s]
    other = table[:, sparse].sum(axis=1)
    row = table.sum(axis=1)
    while keep.shape[1] > 0 and (np.outer(row, other.sum()) / total).min() < _MIN_EXPECTED:
        j = int(np.argmin(keep.sum(axis=0)))
        other = other + keep[:, j]
        keep = np.delete(keep, j, axis=1)
        kept.pop(j)
    return np.column_stack([keep, other]), [*kept, OTHER]


def chi2_homogeneity(
    ref_counts: Mapping[str, int],
    cur_counts: Mapping[str, int],
    *,
    feature: str = "",
    space: Literal["raw", "preprocessed"] = "raw",
) -> DriftResult:
    """Chi-square test of homogeneity: do reference and window share one category distribution?

    The 2 x K contingency table (reference row, current row) is tested with
    ``scipy.stats.chi2_contingency(correction=False)``. Both rows are samples:
    a goodness-of-fit test of the window against the reference *proportions*
    treats those as exact and is inflated by about ``1 + n_cur / n_ref`` when
    nothing changed -- false alarms galore with a small reference. Categories
    whose expected count is below 5 in either row are merged into one
    ``__other__`` bucket first (``detail["merged"]`` lists them), so that the
    chi-square approximation holds; a table left with one column is no
    evidence of change (statistic 0, p 1).

    Effect: the Jensen-Shannon distance (base 2, in [0, 1]) between the two
    category distributions before merging. ``detail`` holds the new-category
    rate (share of current values in categories the reference never saw), the
    PSI over categories, the degrees of freedom and what was merged. A
    reference sketch's ``other`` count may be passed as a category of its own.

    >>> r = chi2_homogeneity({"a": 500, "b": 300, "c": 200}, {"a": 40, "b": 30, "c": 30, "d": 3})
    >>> round(r.p_value, 3), round(r.detail["new_category_rate"], 3)
    (0.012, 0.029)
    """
    ref = _counts("ref_counts", ref_counts)
    cur = _counts("cur_counts", cur_counts)
    labels = sorted(set(ref) | set(cur))
    table = np.array([[ref.get(k, 0) for k in labels], [cur.get(k, 0) for k in labels]], float)
    table = table[:, table.sum(axis=0) > 0]
    labels = [k for k in labels if ref.get(k, 0) + cur.get(k, 0) > 0]
    n_ref, n_cur = int(table[0].sum()), int(table[1].sum())
    p_ref, p_cur = table[0] / n_ref, table[1] / n_cur
    merged_table, merged_labels = _merge_sparse(table, labels)
    if merged_table.shape[1] < 2:
        statistic, p_value, dof = 0.0, 1.0, 0
    else:
        res = stats.chi2_contingency(merged_table, correction=False)
        statistic, p_value, dof = float(res.statistic), float(res.pvalue), int(res.dof)
    new = sum(c for k, c in cur.items() if ref.get(k, 0) == 0)
    return DriftResult(
        feature=feature,
        kind="categorical",
        space=space,
        test="chi2_homogeneity",
        statistic=statistic,
        p_value=p_value,
        effect_name="jensen_shannon",
        effect=float(jensenshannon(p_ref, p_cur, base=2.0)),
        n_reference=n_ref,
        n_current=n_cur,
        detail={
            "dof": dof,
            "categories": len(labels),
            "merged": [k for k in labels if k not in merged_labels],
            "new_category_rate": new / n_cur,
            "psi": _psi_from(p_ref, p_cur),
        },
    )


# --------------------------------------------------------------------------- materiality


def is_material(result: DriftResult | TestResult, *, min_effect: float) -> bool:
    """Whether ``result``'s effect reaches ``min_effect`` (by magnitude); NaN never does.

    Separate from significance on purpose: an alarm needs both.

    >>> r = chi2_homogeneity({"a": 50_000, "b": 50_000}, {"a": 50_600, "b": 49_400})
    >>> r.p_value < 0.01, is_material(r, min_effect=0.05)
    (True, False)
    """
    if isinstance(min_effect, bool) or not isinstance(min_effect, int | float) or min_effect < 0:
        raise InputError(f"`min_effect` must be a non-negative number; got {min_effect!r}.")
    effect = float(result.effect)
    return not math.isnan(effect) and abs(effect) >= min_effect
