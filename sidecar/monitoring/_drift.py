"""Input drift of one feature between the reference and a window, and its materiality.

Numeric features get the two-sample Kolmogorov-Smirnov test (:func:`ks_drift`);
categorical ones the chi-square test of homogeneity (:func:`chi2_homogeneity`);
the feature-target relation gets :func:`relation_change`. Each returns a
:class:`DriftResult` whose ``effect`` is scale-free, so that one threshold from
the plan (``min_drift_effect``) can judge it. Whether a shift *matters* is a
separate decision (:func:`is_material`): a million rows make every negligible
shift significant, and significance alone must never raise an alarm.

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
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from .._errors import InputError
from ._results import DriftResult, TestResult

try:  # The exact small-sample p-value of scipy.stats.ks_2samp, reused so both agree.
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - a SciPy that moved its internals
    _attempt_exact_2kssamp = None

__all__ = [
    "chi2_homogeneity",
    "is_material",
    "ks_2samp_sorted",
    "ks_drift",
    "psi",
    "relation_change",
    "sort_reference",
]

_MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: exact p-values while both samples are this small
_PSI_FLOOR = 1e-4  # bin proportions are floored here so an empty bin does not make PSI infinite
_MIN_EXPECTED = 5.0  # the classic rule for the chi-square approximation
OTHER = "__other__"


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- KS


Steps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _ks_statistic(ref: np.ndarray, cur: np.ndarray, steps: Steps | None = None) -> float:
    """max |F_ref - F_cur| over the pooled values, as scipy computes it, in O(m log n).

    Both ECDFs are right-continuous steps, so between two consecutive current
    values ``F_ref - F_cur`` only grows: its maximum sits just before a current
    value (or at the reference maximum), its minimum at a current value. Those
    are the candidates; each is the difference at some pooled value, built from
    the same integer counts scipy divides, so the result is bit-for-bit scipy's.
    """
    n1, n2 = ref.size, cur.size
    if n2 > n1:
        return _ks_at_reference(ref, cur, steps)
    # The current sample is sorted: its ECDF at each distinct value comes from
    # the run boundaries in one linear pass, not from a search per element.
    starts = np.flatnonzero(np.concatenate(([True], cur[1:] != cur[:-1])))
    ends = np.append(starts[1:], n2)
    values = cur[starts]
    at = np.concatenate(
        [np.searchsorted(ref, values, "right"), np.searchsorted(ref, values, "left"), [n1]]
    )
    cur_at = np.concatenate([ends, starts, np.searchsorted(cur, ref[-1:], "right")])
    diffs = at / n1 - cur_at / n2
    max_s = float(diffs.max())
    min_s = float(np.clip(-diffs.min(), 0, 1))
    return min_s if min_s > max_s else max_s


def _reference_steps(ref: np.ndarray, cur: np.ndarray) -> Steps:
    """Both sorted samples' counts at the reference's distinct values.

    ``(u, ref_lt, ref_le, cur_lt, cur_le)``: the distinct reference values and,
    at each, how many values of each sample lie below it and at or below it --
    two binary searches per *reference* value, so a window ten times the
    reference's size costs little more than the reference.
    """
    starts = np.flatnonzero(np.concatenate(([True], ref[1:] != ref[:-1])))
    u = ref[starts]
    ref_le = np.append(starts[1:], ref.size)
    return (
        u,
        starts,
        ref_le,
        np.searchsorted(cur, u, "left"),
        np.searchsorted(cur, u, "right"),
    )


def _ks_at_reference(ref: np.ndarray, cur: np.ndarray, steps: Steps | None = None) -> float:
    """The KS statistic when the window is the larger sample, from the reference's steps.

    Between two distinct reference values the reference ECDF is flat and the
    window's only rises, so the largest gap sits at a reference value or just
    before one; there each ECDF is the ratio of integer counts scipy divides
    at the nearest pooled value, so the result is scipy's.
    """
    _, ref_lt, ref_le, cur_lt, cur_le = steps or _reference_steps(ref, cur)
    n1, n2 = ref.size, cur.size
    gaps = np.concatenate([ref_le / n1 - cur_le / n2, ref_lt / n1 - cur_lt / n2])
    max_s = float(gaps.max())
    min_s = float(np.clip(-gaps.min(), 0, 1))
    return min_s if min_s > max_s else max_s


def _wasserstein_steps(ref: np.ndarray, cur: np.ndarray, steps: Steps | None = None) -> float:
    """W1 for a window much larger than the reference, from the reference's steps.

    Outside the reference's range the integral is exact (sums of the window's
    values there); between two distinct reference values the window's ECDF is
    taken as linear. With the thousands of reference values a monitored
    feature has, the error is far below any drift threshold.
    """
    u, _, ref_le, cur_lt, cur_le = steps or _reference_steps(ref, cur)
    n1, n2 = ref.size, cur.size
    lo, hi = int(cur_lt[0]), int(cur_le[-1])
    total = (lo * u[0] - float(cur[:lo].sum())) / n2
    total += (float(cur[hi:].sum()) - (n2 - hi) * u[-1]) / n2
    if u.size > 1:
        width = np.diff(u)
        a = ref_le[:-1] / n1  # the reference ECDF on [u_j, u_j+1)
        d0 = a - cur_le[:-1] / n2  # the gap at the left end
        d1 = a - cur_lt[1:] / n2  # the gap just before the right end
        s0, s1 = np.abs(d0), np.abs(d1)
        crossing = (d0**2 + d1**2) / (2 * np.maximum(s0 + s1, 1e-300))
        total += float(np.sum(width * np.where(d0 * d1 >= 0, (s0 + s1) / 2, crossing)))
    return float(total)


#: a window at least this many times the reference's size takes the step formulas
_STEPS_FACTOR = 4


def _ks_pvalue(n1: int, n2: int, d: float) -> tuple[float, float, str]:
    """scipy.stats.ks_2samp's two-sided p-value for method="auto": (statistic, p, method)."""
    method = "exact" if max(n1, n2) <= _MAX_EXACT_N else "asymptotic"
    prob = math.nan
    if method == "exact":
        g = math.gcd(n1, n2)
        if _attempt_exact_2kssamp is None:  # pragma: no cover - see the import
            success, prob = False, math.nan
            lcm = (n1 // g) * n2
            d = round(d * lcm) / lcm
        else:
            success, d, prob = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
        if not success:  # scipy warns and falls back; so do we, quietly
            method = "asymptotic"
    if method == "asymptotic":
        m, n = sorted([float(n1), float(n2)], reverse=True)
        prob = _kstwo_sf(d, int(np.round(m * n / (m + n))))
    return float(d), float(np.clip(prob, 0.0, 1.0)), method


#: Where scipy's ``kstwo.sf`` takes twice the exact one-sided tail (its
#: ``_kolmogn`` for n > 140 and 2.2 <= n d^2 < 370), the sum is evaluated
#: vectorised: scipy's C loop costs ~130 ms at n = 90,909 (a 1,000,000-row
#: window against 100,000 reference rows), this ~8 ms, for the same value to
#: about 1e-10 relatively. Past this n the log-gamma terms lose digits.
_FAST_SMIRNOV_MAX_N = 1_000_000


def _kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``, with the costly branch of scipy's algorithm vectorised."""
    if 140 < n <= _FAST_SMIRNOV_MAX_N and 0 < d < 0.5 and 1 < n * d < n - 1:
        nx2 = n * d * d
        if nx2 >= 370.0:
            return 0.0
        if nx2 >= 2.2:
            return min(1.0, 2.0 * _smirnov(n, d))
    return float(stats.kstwo.sf(d, n))


def _smirnov(n: int, d: float) -> float:
    """The exact one-sided KS tail ``P(D+_n >= d)`` (Birnbaum-Tingey), as ``scipy.special.smirnov``.

    ``d * sum_j C(n, j) (d + j/n)^(j-1) (1 - d - j/n)^(n-j)`` for ``j <= n(1 - d)``,
    summed in log space so that no term under- or overflows on its own.

    >>> from scipy import special
    >>> bool(abs(_smirnov(90_909, 0.008) / special.smirnov(90_909, 0.008) - 1) < 1e-9)
    True
    """
    j = np.arange(0, math.floor(n * (1 - d)) + 1, dtype=np.float64)
    x = d + j / n
    log_c = special.gammaln(n + 1) - special.gammaln(j + 1) - special.gammaln(n - j + 1)
    left = n - j
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where(left > 0, left * np.log1p(-np.minimum(x, 1.0)), 0.0)
    terms = log_c + (j - 1) * np.log(x) + tail
    top = float(terms.max())
    return float(d * math.exp(top) * np.sum(np.exp(terms - top)))


def _ks(
    ref: np.ndarray, cur_sorted: np.ndarray, steps: Steps | None = None
) -> tuple[float, float, str]:
    return _ks_pvalue(ref.size, cur_sorted.size, _ks_statistic(ref, cur_sorted, steps))


def ks_2samp_sorted(ref_sorted: Any, cur: Any) -> tuple[float, float]:
    """Two-sample KS test against a reference that was sorted once: ``(statistic, p_value)``.

    Equals ``scipy.stats.ks_2samp(ref, cur)`` (two-sided, ``method="auto"``),
    ties included: the statistic is computed with ``np.searchsorted`` on the
    pooled values; the p-value is exact while both samples have at most 10,000
    values and from the ``kstwo`` distribution beyond, as scipy does. Where
    scipy would warn that the exact computation failed and fall back to the
    asymptotic one, this falls back without the warning.

    >>> import numpy as np
    >>> from scipy import stats
    >>> rng = np.random.default_rng(1)
    >>> ref, cur = rng.poisson(3, 400).astype(float), rng.poisson(3, 250).astype(float)
    >>> ks_2samp_sorted(np.sort(ref), cur) == tuple(stats.ks_2samp(ref, cur))[:2]
    True
    """
    ref = _check_sorted(ref_sorted)
    cur_arr = _numeric("cur", cur)
    if cur_arr.size == 0 or np.isnan(cur_arr).any():
        raise InputError(
            f"`cur` must be a non-empty array without NaN; got {cur_arr.size} values "
            f"with {int(np.isnan(cur_arr).sum())} NaN (drop missing values first)."
        )
    d, p, _ = _ks(ref, np.sort(cur_arr))
    return d, p


def _wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """W1 = integral of |F_u - F_v| for two sorted samples, in linear time after one search.

    ``v`` is merged into ``u``; where the merged values step up, every element
    before the step has been counted, so running counts of each sample's
    elements are the ECDFs there (ties contribute zero width).
    """
    n, m = u.size, v.size
    at = np.searchsorted(u, v, "right") + np.arange(m)
    from_u = np.ones(n + m, dtype=bool)
    from_u[at] = False
    pooled = np.empty(n + m)
    pooled[from_u], pooled[at] = u, v
    count_u = np.cumsum(from_u)[:-1]
    count_v = np.arange(1, n + m) - count_u
    return float(np.sum(np.abs(count_u / n - count_v / m) * np.diff(pooled)))


def _sorted_quantiles(ref: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles of a sorted array (NumPy's default linear method) without a partition pass."""
    pos = probs * (ref.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, ref.size - 1)
    out: np.ndarray = ref[lo] + (ref[hi] - ref[lo]) * (pos - lo)
    return out


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


# --------------------------------------------------------------------------- relation


def _pairs(name: str, x: Any, t: Any, categorical: bool) -> tuple[np.ndarray, np.ndarray]:
    tt = _numeric(f"t_{name}", t)
    xx = np.asarray(x, dtype=object) if categorical else _numeric(f"x_{name}", x)
    if xx.ndim != 1 or xx.shape != tt.shape:
        raise InputError(
            f"`x_{name}` and `t_{name}` must be 1-D arrays of the same length; "
            f"got shapes {xx.shape} and {tt.shape}."
        )
    if categorical:
        keep = np.array([v is not None and v == v for v in xx], dtype=bool) & ~np.isnan(tt)
        return xx[keep].astype(str), tt[keep]
    keep = ~np.isnan(xx) & ~np.isnan(tt)
    return xx[keep], tt[keep]


def _spearman(x: np.ndarray, t: np.ndarray) -> float:
    if x.size < 4 or np.ptp(x) == 0 or np.ptp(t) == 0:
        return math.nan
    return float(stats.spearmanr(x, t).statistic)


def _eta(codes: np.ndarray, t: np.ndarray, k: int) -> float:
    """Correlation ratio: sqrt(between-category sum of squares / total sum of squares)."""
    total = float(((t - t.mean()) ** 2).sum())
    if total == 0:
        return math.nan
    n = np.bincount(codes, minlength=k)
    s = np.bincount(codes, weights=t, minlength=k)
    nz = n > 0
    between = float((s[nz] ** 2 / n[nz]).sum() - t.sum() ** 2 / t.size)
    return math.sqrt(max(0.0, min(1.0, between / total)))


def _interaction_f(
    codes: list[np.ndarray], ts: list[np.ndarray], k: int
) -> tuple[float, float, int, int]:
    """F test of the window x category interaction in a two-way layout.

    Full model: one mean per (window, category) cell. Additive model: window
    effect plus category effect (the same category differences in both
    windows). Its least-squares fit for two windows has a closed form: with
    ``delta`` the window effect, ``b_k = (S_k - n_cur,k * delta) / n_k`` and
    ``delta = sum(T_cur,k - n_cur,k S_k / n_k) / sum(n_cur,k - n_cur,k^2 / n_k)``.
    """
    n = np.array([np.bincount(c, minlength=k) for c in codes], dtype=float)
    s = np.array([np.bincount(c, weights=t, minlength=k) for c, t in zip(codes, ts, strict=True)])
    ss = np.array(
        [np.bincount(c, weights=t * t, minlength=k) for c, t in zip(codes, ts, strict=True)]
    )
    nk, sk = n.sum(axis=0), s.sum(axis=0)
    both = (n > 0).all(axis=0)
    cells = int((n > 0).sum())
    df_within = int(n.sum()) - cells
    df_inter = int(both.sum()) - 1
    if df_inter < 1 or df_within < 1:
        return math.nan, math.nan, max(df_inter, 0), max(df_within, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0)
        ss_within = float((ss - np.where(n > 0, s * s / np.where(n > 0, n, 1), 0.0)).sum())
        w = nk > 0
        den = float((n[1, w] - n[1, w] ** 2 / nk[w]).sum())
        num = float((s[1, w] - n[1, w] * sk[w] / nk[w]).sum())
    delta = num / den if den > 0 else 0.0
    b = np.where(w, (sk - n[1] * delta) / np.where(w, nk, 1), 0.0)
    fitted = np.vstack([b, b + delta])
    ss_inter = float((n * (means - fitted) ** 2).sum())
    if ss_within <= 0:
        return math.nan, math.nan, df_inter, df_within
    f = (ss_inter / df_inter) / (ss_within / df_within)
    return float(f), float(stats.f.sf(f, df_inter, df_within)), df_inter, df_within


def relation_change(
    x_ref: Any,
    t_ref: Any,
    x_cur: Any,
    t_cur: Any,
    *,
    feature: str = "",
    kind: Literal["numeric", "categorical"] | None = None,
    space: Literal["raw", "preprocessed"] = "raw",
) -> DriftResult:
    """Did the relation between a feature ``x`` and a target ``t`` change between windows?

    ``t`` is the target or, more useful for a model, its per-example loss.
    Pairs with a missing ``x`` or ``t`` are dropped. ``kind`` defaults to
    ``"categorical"`` for string/object ``x`` and ``"numeric"`` otherwise.

    Numeric ``x``: Spearman's rho in each window and the Fisher z test of the
    difference, ``z = (atanh(rho_cur) - atanh(rho_ref)) / sqrt(1.06/(n_ref-3)
    + 1.06/(n_cur-3))``. The 1.06 is Fieller, Hartley and Pearson's (1957)
    variance of the transformed Spearman coefficient; the normal approximation
    is good from a few dozen pairs and for |rho| not close to 1. Effect:
    ``|rho_cur - rho_ref|``. A window where ``x`` or ``t`` is constant has no
    rho: the result is NaN throughout (never material).

    Categorical ``x``: the correlation ratio eta (how much of the variance of
    ``t`` the categories explain) in each window, and the F test of the
    window x category interaction in a two-way layout: do the category means
    of ``t`` differ *differently* in the two windows, beyond one overall
    shift? It assumes roughly equal within-category variances (an ANOVA), and
    only categories seen in both windows inform it. Effect: ``|eta_cur -
    eta_ref|``.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x_ref, x_cur = rng.normal(size=800), rng.normal(size=800)
    >>> r = relation_change(x_ref, x_ref + rng.normal(size=800), x_cur, rng.normal(size=800))
    >>> r.p_value < 1e-6, round(r.effect, 1)
    (True, 0.7)
    """
    if kind is None:
        dtype = np.asarray(x_ref).dtype
        kind = "categorical" if dtype.kind in "OUS" else "numeric"
    if kind not in ("numeric", "categorical"):
        raise InputError(f"`kind` must be 'numeric', 'categorical' or None; got {kind!r}.")
    categorical = kind == "categorical"
    xr, tr = _pairs("ref", x_ref, t_ref, categorical)
    xc, tc = _pairs("cur", x_cur, t_cur, categorical)
    for name, size in (("ref", xr.size), ("cur", xc.size)):
        if size < 4:
            raise InputError(
                f"`x_{name}`/`t_{name}` must hold at least 4 complete pairs; got {size}."
            )
    if not categorical:
        rho_ref, rho_cur = _spearman(xr, tr), _spearman(xc, tc)
        se = math.sqrt(1.06 / (xr.size - 3) + 1.06 / (xc.size - 3))
        clip = 1 - 1e-12
        z = (
            (
                math.atanh(max(-clip, min(clip, rho_cur)))
                - math.atanh(max(-clip, min(clip, rho_ref)))
            )
            / se
            if not (math.isnan(rho_ref) or math.isnan(rho_cur))
            else math.nan
        )
        p = 2.0 * float(special.ndtr(-abs(z))) if not math.isnan(z) else math.nan
        return DriftResult(
            feature=feature,
            kind="numeric",
            space=space,
            test="spearman_fisher_z",
            statistic=z,
            p_value=p,
            effect_name="spearman_difference",
            effect=abs(rho_cur - rho_ref),
            n_reference=int(xr.size),
            n_current=int(xc.size),
            detail={"rho_reference": rho_ref, "rho_current": rho_cur},
        )
    labels, codes = np.unique(np.concatenate([xr, xc]), return_inverse=True)
    k = labels.size
    cr, cc = codes[: xr.size], codes[xr.size :]
    eta_ref, eta_cur = _eta(cr, tr, k), _eta(cc, tc, k)
    f, p, df1, df2 = _interaction_f([cr, cc], [tr, tc], k)
    return DriftResult(
        feature=feature,
        kind="categorical",
        space=space,
        test="interaction_f",
        statistic=f,
        p_value=p,
        effect_name="eta_difference",
        effect=abs(eta_cur - eta_ref),
        n_reference=int(xr.size),
        n_current=int(xc.size),
        detail={"eta_reference": eta_ref, "eta_current": eta_cur, "df": [df1, df2]},
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
