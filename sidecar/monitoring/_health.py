"""Preprocessing health: input anomalies that point at the pipeline, not at the world.

The world drifts smoothly; a pipeline breaks in recognisable ways. Weights
that arrive in pounds are the reference times 2.2046; ICD-10 codes where
ICD-9 codes were expected are mostly "unknown" and have another shape
("E11.9" against "250.00"); a counter that overflowed a signed 32-bit integer
is suddenly near -2^31. :func:`check_health` compares one window
(:class:`CurrentColumns`) with the bundle's reference sketches and returns a
:class:`HealthFinding` for each such fault, naming the feature.

Rates (missing, unknown code) are compared with the two-proportion z-test;
counts of values that break a reference fact (sign, range, wrap-around,
shape, integers) with a one-sided Fisher exact test against the reference's
count. All tests of one call are corrected together (Benjamini-Hochberg); a
finding needs an adjusted p-value at most ``alpha`` *and* a material size (a
rate that *rose* by ``min_rate_increase``, a share of fact-breaking values of
at least ``min_share``), so a million rows do not turn one odd value into a
fault. The unit-factor check is a fit, not a test (see ``_unit_factor``); a
unit switch in only part of the records (``unit_mixture``: one source of three
sends pounds) is a likelihood-ratio test of a mixture, corrected with the others
(see ``_mixture``).

>>> import numpy as np
>>> from sidecar._reference import _numeric_sketch  # what a bundle's reference stores
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(70, 12, 5000)  # body weight in kg
>>> sketch = {"weight": _numeric_sketch(ref)}
>>> now = CurrentColumns(numeric={"weight": ref[:1000] * 2.20462})  # now in lb
>>> [(f.check, f.evidence["units"][0]) for f in check_health(sketch, now, alpha=0.05)]
[('unit_factor', 'kg->lb')]
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .._errors import InputError
from ..preprocessing._units import UNITS, affine
from ._battery import adjust
from ._drift import _sorted_quantiles
from ._mixture import MixtureFit, fit_unit_mixture
from ._results import HealthFinding
from ._stats import two_proportions

__all__ = ["CurrentColumns", "check_health", "value_shape"]

_WRAP_MODULI = (2.0**31, 2.0**32, 2.0**63, 2.0**64)
_WRAP_NEAR = 2.0**20
_LEVELS = np.round(np.arange(0.10, 0.9001, 0.05), 2)  # quantile levels the unit check compares
_MAX_Z = 4.0  # a conversion fits when no compared quantile is further off (standard errors)
_MAX_EXAMPLES = 5
_DRIFT_FACTORS = (0.25, 4.0)  # factors an ordinary change of the world might also produce


@dataclass(frozen=True, eq=False)
class CurrentColumns:
    """The raw input fields of one window, as the store hands them over.

    ``numeric`` maps a field to its float values (NaN = missing);
    ``categorical`` maps a field to its values (``None`` = missing);
    ``unknown`` maps a categorical field to how many of its values the
    preprocessing encoded to the unknown/default code. (Compared by identity:
    it holds arrays.)

    Two optional shortcuts, for a caller that has them anyway (the diagnosis
    sorts each column once for the drift tests too): ``sorted_present`` maps
    a numeric field to its non-missing values sorted ascending, which spares
    a quantile pass; ``counts`` maps a categorical field to how often each
    raw value occurs (``collections.Counter(values)``), which spares a count.
    They must describe the same values as ``numeric`` / ``categorical``.
    """

    numeric: Mapping[str, Any] = field(default_factory=dict)
    categorical: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    unknown: Mapping[str, int] = field(default_factory=dict)
    sorted_present: Mapping[str, np.ndarray] = field(default_factory=dict)
    counts: Mapping[str, Mapping[Any, int]] = field(default_factory=dict)


_SHAPE = str.maketrans(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "9" * 10 + "A" * 52,
)


def value_shape(value: str) -> str:
    """A value's shape: digits become ``9``, letters ``A``, everything else stays.

    >>> value_shape("250.00"), value_shape("E11.9")
    ('999.99', 'A99.9')
    """
    shape = value.translate(_SHAPE)
    if not shape.isascii():
        shape = "".join("A" if c.isalpha() else "9" if c.isdigit() else c for c in shape)
    return shape


# --------------------------------------------------------------------------- tests


def _more_than_reference(k_ref: int, n_ref: int, k_cur: int, n_cur: int) -> float:
    """One-sided Fisher exact p-value that the window holds more such values than the reference.

    With ``k_ref == 0`` it is the chance that, of ``k_cur`` fact-breaking
    values among the pooled rows, all fell into the window.
    """
    if k_cur == 0:
        return 1.0
    return float(stats.hypergeom.sf(k_cur - 1, n_ref + n_cur, k_ref + k_cur, n_cur))


@dataclass(frozen=True)
class _Candidate:
    feature: str
    check: str
    message: str
    p_value: float
    material: bool
    evidence: dict[str, Any]


def _examples(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.unique(values)[:_MAX_EXAMPLES]]


def _rate_candidate(
    feature: str,
    check: str,
    what: str,
    k_ref: int,
    n_ref: int,
    k_cur: int,
    n_cur: int,
    min_rise: float,
) -> _Candidate:
    test = two_proportions(k_ref, n_ref, k_cur, n_cur)
    ref_rate, cur_rate = k_ref / n_ref, k_cur / n_cur
    return _Candidate(
        feature,
        check,
        f"{feature}: the {what} rate rose from {ref_rate:.1%} to {cur_rate:.1%} "
        f"({k_cur} of {n_cur} values).",
        test.p_value,
        cur_rate - ref_rate >= min_rise,
        {
            "reference_rate": ref_rate,
            "current_rate": cur_rate,
            "count": k_cur,
            "n": n_cur,
            "n_reference": n_ref,
            "z": test.statistic,
        },
    )


def _share_candidate(
    feature: str,
    check: str,
    message: str,
    k_ref: int,
    n_ref: int,
    k_cur: int,
    n_cur: int,
    min_share: float,
    evidence: dict[str, Any],
) -> _Candidate:
    share = k_cur / n_cur
    return _Candidate(
        feature,
        check,
        message,
        _more_than_reference(k_ref, n_ref, k_cur, n_cur),
        k_cur > 0 and share >= min_share,
        {"count": k_cur, "share": share, "n": n_cur, "n_reference": n_ref, **evidence},
    )


# --------------------------------------------------------------------------- unit factors


@functools.cache
def _unit_candidates(declared: str | None) -> tuple[tuple[float, float, tuple[str, ...]], ...]:
    """Every same-dimension conversion ``cur = a * ref + b`` in UNITS, grouped by (a, b)."""
    groups: dict[tuple[float, float], list[str]] = {}
    for source, (dim_s, _, _) in UNITS.items():
        if declared is not None and source != declared:
            continue
        for target, (dim_t, _, _) in UNITS.items():
            if source == target or dim_s != dim_t:
                continue
            a, b = affine(source, target)
            key = (float(f"{a:.9g}"), round(b, 6))
            groups.setdefault(key, []).append(f"{source}->{target}")
    return tuple((a, b, tuple(names)) for (a, b), names in groups.items())


def _unit_factor(
    feature: str,
    sketch: Mapping[str, Any],
    present: np.ndarray,
    *,
    tolerance: float,
    min_count: int,
    declared: str | None,
    present_sorted: np.ndarray | None = None,
) -> HealthFinding | None:
    """Does a known unit conversion map the reference quantiles onto the current ones?

    ``present_sorted``, when given, is ``present`` sorted: the quantiles are
    read off it instead of partitioning ``present`` again.

    The 10th to 90th percentiles (steps of 5) of the window are compared with
    ``a * q_ref + b`` for every conversion ``(a, b)`` between units of one
    dimension in ``UNITS``. Each difference is measured in standard errors of
    a quantile difference (``sqrt(p(1-p)(1/n + 1/n_ref)) / density``, the
    density read off the reference percentiles, plus a floor of 1% of the
    10-90% spread -- and half a unit for integer data -- for sketch
    interpolation and ties). A conversion *fits* when no level is more than
    4 standard errors off; nothing fires when the identity already fits.

    The mean must fit too (``|mean - (a * mean_ref + b)|`` within 4 standard
    errors), which pins discrete data that quantiles cannot.

    A factor between 1/4 and 4 could also be an ordinary change of the world,
    so such a conversion must also be *pinned*: the factor estimated from the
    data -- from the means (``mean / mean_ref``) or from the standard
    deviations -- must lie within ``tolerance`` of ``a`` with two standard
    errors to spare (the spread's allowing for the window's kurtosis). Pure
    factors need this everywhere: a price that doubled is not a kg->lb
    conversion (2 vs 2.2046), however few rows cannot tell them apart. Affine
    maps need it only where the feature is centred near the map's fixed point
    ``b / (1 - a)`` (within 8 standard errors of where the map would move its
    median), since only there can a plain variance change look like them. On
    a skewed or zero-centred feature a factor such as 2.2046 is then only
    named from a few thousand values on; 100 or 1000 is named at once.
    """
    if present.size < min_count:
        return None
    q = np.asarray(sketch["quantiles"], dtype=np.float64)
    idx = np.round(_LEVELS * 100).astype(int)
    ref_q = q[idx]
    spread = float(ref_q[-1] - ref_q[0])
    _, ties = np.unique(ref_q, return_counts=True)
    if not spread > 0 or ties.size < 5 or ties.max() > ref_q.size // 2:
        return None  # mostly one value (a zero-inflated feature): a factor cannot be pinned
    n_ref = int(sketch["count"]) - int(sketch["missing"])
    inv_density = (q[idx + 1] - q[idx - 1]) / 0.02
    se = np.sqrt(
        _LEVELS * (1 - _LEVELS) * (1 / present.size + 1 / n_ref) * inv_density**2
        + (0.01 * spread) ** 2
        + (0.5 if sketch.get("integer") else 0.0) ** 2
    )
    cur_q = (
        np.quantile(present, _LEVELS)
        if present_sorted is None
        else _sorted_quantiles(present_sorted, _LEVELS)
    )
    identity_z = float(np.max(np.abs(cur_q - ref_q) / se))
    if identity_z <= _MAX_Z:
        return None
    slope, intercept = (float(v) for v in np.polyfit(ref_q, cur_q, 1))
    n, mean, sd = present.size, float(present.mean()), float(present.std())
    mean_ref, sd_ref = float(sketch["mean"]), float(sketch["std"])
    kurtosis = float(np.mean((present - mean) ** 4) / sd**4) if sd > 0 else 3.0
    ratio_se = math.sqrt(max(kurtosis - 1, 0.5) / 4 * (1 / n + 1 / n_ref))
    centre, centre_se = float(ref_q[len(ref_q) // 2]), float(se[len(se) // 2])
    best: tuple[float, float, float, tuple[str, ...]] | None = None
    for a, b, names in _unit_candidates(declared):
        z = float(np.max(np.abs(cur_q - (a * ref_q + b)) / (abs(a) * se)))
        mean_se = math.sqrt(sd**2 / n + (a * sd_ref) ** 2 / n_ref)
        if z > _MAX_Z or abs(mean - (a * mean_ref + b)) > _MAX_Z * mean_se:
            continue
        # How far (in standard errors of the median) the conversion moves the centre.
        moved = abs((1 - a) * centre - b) / (abs(a) * centre_se)
        by_spread = abs(sd / (abs(a) * sd_ref) - 1) + 2 * ratio_se if sd_ref > 0 else math.inf
        if not _DRIFT_FACTORS[0] <= abs(a) <= _DRIFT_FACTORS[1]:
            pass  # no ordinary change multiplies a whole feature by 1000: the fit suffices
        elif moved < 2 * _MAX_Z and by_spread > tolerance:
            continue
        elif b == 0:  # a pure factor: its estimate from the means or from the spreads
            by_centre = (
                abs(mean / (a * mean_ref) - 1) + 2 * mean_se / abs(a * mean_ref)
                if mean_ref != 0
                else math.inf
            )
            if min(by_centre, by_spread) > tolerance:
                continue
        if best is None or z < best[0]:
            best = (z, a, b, names)
    if best is None:
        return None
    z, a, b, names = best
    shown = slice(0, None, 2)  # 10th, 20th, ..., 90th percentile
    offset = f" {'+' if b > 0 else '-'} {abs(b):.6g}" if b else ""
    return HealthFinding(
        feature=feature,
        check="unit_factor",
        message=(
            f"{feature}: current values are the reference times {a:.6g}{offset} "
            f"(likely {', '.join(names)}); convert in preprocessing, do not retrain."
        ),
        evidence={
            "factor": a,
            "offset": b,
            "units": list(names),
            "slope": slope,
            "intercept": intercept,
            "max_z": z,
            "identity_max_z": identity_z,
            "levels": _LEVELS[shown].tolist(),
            "reference_quantiles": ref_q[shown].tolist(),
            "current_quantiles": cur_q[shown].tolist(),
            "n": int(present.size),
        },
    )


def _mixture_candidate(feature: str, fit: MixtureFit, min_share: float) -> _Candidate:
    """A partial unit switch (see ``_mixture``) as a test: its p-value, its share, its fit."""
    offset = f" {'+' if fit.offset > 0 else '-'} {abs(fit.offset):.6g}" if fit.offset else ""
    return _Candidate(
        feature,
        "unit_mixture",
        f"{feature}: about {fit.share:.0%} of the values (95% CI {fit.share_low:.0%} to "
        f"{fit.share_high:.0%}) are the reference times {fit.factor:.6g}{offset} (likely "
        f"{', '.join(fit.units)}), the rest unchanged: one source sends another unit; "
        "convert its records in preprocessing, do not retrain.",
        fit.p_value,
        fit.explains(min_share=min_share),
        fit.evidence(),
    )


# --------------------------------------------------------------------------- per field


def _sentinel_like(values: np.ndarray, lo: float, hi: float) -> bool:
    """Out-of-range values that look like a pipeline's doing rather than the world's.

    Either one repeated value (a placeholder such as -999 or 99999) holds most
    of them, or they lie an order of magnitude beyond the reference's scale.
    """
    _, counts = np.unique(values, return_counts=True)
    if counts.max() >= 0.8 * values.size:
        return True
    scale = max(abs(lo), abs(hi), hi - lo) if hi > lo else max(abs(lo), 1.0)
    return bool(np.median(np.abs(values)) > 10 * scale)


def _wrap_mask(present: np.ndarray, lo: float, hi: float, max_abs: float) -> np.ndarray:
    """Values outside the reference range that look like an integer wrap-around.

    For each modulus M in 2^31, 2^32, 2^63, 2^64 larger than four times the
    reference's largest magnitude: a value within 2^20 of +-M, or one that
    lands in the reference range (give or take half its width) when M is added
    (negative values) or subtracted (positive ones): ``-5`` stored unsigned is
    ``2^32 - 5``; ``r - 2^32`` is a typical value ``r`` read back as signed.
    """
    mask = (present < lo) | (present > hi)
    at = np.flatnonzero(mask)  # only values outside the range can be wrapped: test just those
    out = present[at]
    wrapped = np.zeros(out.shape, dtype=bool)
    slack = 0.5 * (hi - lo)
    for m in _WRAP_MODULI:
        if m <= 4 * max_abs:
            continue
        tol = max(slack, 4 * float(np.spacing(m)))
        near = np.abs(np.abs(out) - m) <= _WRAP_NEAR
        back = out - np.sign(out) * m
        wrapped |= near | ((back >= lo - tol) & (back <= hi + tol))
    mask[at] = wrapped
    return mask


def _numeric_checks(
    feature: str,
    sketch: Mapping[str, Any],
    values: np.ndarray,
    *,
    min_rate_increase: float,
    min_share: float,
    min_format_share: float,
    range_margin: float,
    unit_tolerance: float,
    min_mixture_share: float,
    min_count: int,
    declared: str | None,
    present_sorted: np.ndarray | None = None,
) -> tuple[list[_Candidate], list[HealthFinding]]:
    tests: list[_Candidate] = []
    n = int(values.size)
    n_ref = int(sketch["count"])
    if n == 0 or n_ref == 0:
        return tests, []
    missing = np.isnan(values)
    tests.append(
        _rate_candidate(
            feature,
            "missing_rate",
            "missing",
            int(sketch["missing"]),
            n_ref,
            int(missing.sum()),
            n,
            min_rate_increase,
        )
    )
    present = values[~missing]
    if present.size == 0 or "quantiles" not in sketch:
        return tests, []
    m = int(present.size)
    m_ref = n_ref - int(sketch["missing"])
    lo, hi = float(sketch["min"]), float(sketch["max"])
    ref_range = {"reference_min": lo, "reference_max": hi}

    wrap = _wrap_mask(present, lo, hi, float(sketch["max_abs"]))
    k = int(wrap.sum())
    tests.append(
        _share_candidate(
            feature,
            "wraparound",
            f"{feature}: {k} of {m} values sit near 2^31/2^32/2^63/2^64 or are a reference "
            "value shifted by one of them: an integer overflowed or changed signedness.",
            0,
            m_ref,
            k,
            m,
            min_share,
            {"examples": _examples(present[wrap]), **ref_range},
        )
    )
    rest = present[~wrap]

    negative = rest < 0
    if int(sketch["n_negative"]) == 0:
        k = int(negative.sum())
        tests.append(
            _share_candidate(
                feature,
                "sign",
                f"{feature}: {k} of {m} values are negative; the reference had none.",
                0,
                m_ref,
                k,
                m,
                min_share,
                {"examples": _examples(rest[negative]), **ref_range},
            )
        )
    else:
        negative[:] = False

    if present_sorted is not None and rest.size != present_sorted.size:
        present_sorted = None  # wrapped values left out: the sorted copy no longer matches
    unit = _unit_factor(
        feature,
        sketch,
        rest,
        tolerance=unit_tolerance,
        min_count=min_count,
        declared=declared,
        present_sorted=present_sorted,
    )
    if unit is not None:  # a unit change explains a new range and broken integers
        return tests, [unit]
    if rest.size >= min_count:
        ordered = np.sort(rest) if present_sorted is None else present_sorted
        fit = fit_unit_mixture(sketch, ordered, declared=declared)
        if fit is not None:
            tests.append(_mixture_candidate(feature, fit, min_mixture_share))

    margin = range_margin * ((hi - lo) if hi > lo else max(abs(hi), 1.0))
    beyond = ((rest < lo - margin) | (rest > hi + margin)) & ~negative
    k = int(beyond.sum())
    if k and not _sentinel_like(rest[beyond], lo, hi):
        # Out of range, but spread over many values close to it: a world that
        # moved (data drift, tested elsewhere), not a placeholder or a broken feed.
        k = 0
        beyond[:] = False
    tests.append(
        _share_candidate(
            feature,
            "range",
            f"{feature}: {k} of {m} values lie beyond the reference range "
            f"[{lo:.6g}, {hi:.6g}] by more than {range_margin:g} times its width.",
            0,
            m_ref,
            k,
            m,
            min_share,
            {"examples": _examples(rest[beyond]), "margin": margin, **ref_range},
        )
    )

    if sketch.get("integer"):
        fractional = present != np.round(present)
        k = int(fractional.sum())
        tests.append(
            _share_candidate(
                feature,
                "format",
                f"{feature}: {k} of {m} values are not whole numbers; the reference was "
                "all integers.",
                0,
                m_ref,
                k,
                m,
                min_format_share,
                {"fact": "integer", "examples": _examples(present[fractional])},
            )
        )
    return tests, []


def _unexplained(findings: list[HealthFinding]) -> list[HealthFinding]:
    """Findings less the ``range`` and ``format`` ones of a field with a partial unit switch."""
    mixed = {f.feature for f in findings if f.check == "unit_mixture"}
    return [f for f in findings if f.feature not in mixed or f.check not in ("range", "format")]


def _sorted_present(name: str, given: Any, values: np.ndarray) -> np.ndarray | None:
    """``CurrentColumns.sorted_present[name]``, checked against the column it stands for."""
    if given is None:
        return None
    arr = np.asarray(given, dtype=np.float64)
    n_present = int(values.size - np.count_nonzero(np.isnan(values)))
    if arr.ndim != 1 or arr.size != n_present or (arr.size and arr[0] > arr[-1]):
        raise InputError(
            f"`current.sorted_present[{name!r}]` must be the field's {n_present} non-missing "
            f"values sorted ascending; got an array of shape {arr.shape}."
        )
    return arr


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _categorical_checks(
    feature: str,
    sketch: Mapping[str, Any],
    values: Sequence[Any],
    unknown: int | None,
    *,
    min_rate_increase: float,
    min_format_share: float,
    counted: Mapping[Any, int] | None = None,
) -> list[_Candidate]:
    tests: list[_Candidate] = []
    n = len(values)
    n_ref = int(sketch["count"])
    if n == 0 or n_ref == 0:
        return tests
    # Count the values once (hashing in C), then fold the few distinct keys.
    counts: Counter[str] = Counter()
    for value, c in (Counter(values) if counted is None else counted).items():
        if not _is_missing(value):
            counts[str(value)] += c
    n_missing = n - sum(counts.values())
    tests.append(
        _rate_candidate(
            feature,
            "missing_rate",
            "missing",
            int(sketch["missing"]),
            n_ref,
            n_missing,
            n,
            min_rate_increase,
        )
    )
    if unknown is not None:
        k_ref = round(float(sketch["unknown_rate"]) * n_ref)
        tests.append(
            _rate_candidate(
                feature, "unknown_rate", "unknown-code", k_ref, n_ref, unknown, n, min_rate_increase
            )
        )
    m = n - n_missing
    if m == 0:
        return tests
    seen = {value_shape(str(k)) for k in sketch["counts"]}
    new_shapes: Counter[str] = Counter()
    for value, c in counts.items():
        shape = value_shape(value)
        if shape not in seen:
            new_shapes[shape] += c
    k = sum(new_shapes.values())
    m_ref = n_ref - int(sketch["missing"])
    tests.append(
        _share_candidate(
            feature,
            "format",
            f"{feature}: {k} of {m} values have a shape the reference never had "
            f"(e.g. {', '.join(repr(s) for s, _ in new_shapes.most_common(3))}; reference: "
            f"{', '.join(repr(s) for s in sorted(seen)[:3])}).",
            # The shapes of the reference's rarest values (its ``other``) are not
            # known: count them as possibly new, which keeps the test conservative.
            int(sketch.get("other", 0)),
            m_ref,
            k,
            m,
            min_format_share,
            {
                "new_shapes": dict(new_shapes.most_common(_MAX_EXAMPLES)),
                "reference_shapes": sorted(seen)[:_MAX_EXAMPLES],
            },
        )
    )
    return tests


# --------------------------------------------------------------------------- entry point


def _fraction(name: str, value: float, *, open_low: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (0 < value < 1 if open_low else 0 <= value <= 1)
    if not ok:
        interval = "(0, 1)" if open_low else "[0, 1]"
        raise InputError(f"`{name}` must be a number in {interval}; got {value!r}.")
    return float(value)


def check_health(
    reference_summary: Mapping[str, Mapping[str, Any]],
    current: CurrentColumns,
    *,
    alpha: float,
    min_rate_increase: float = 0.05,
    min_share: float = 0.01,
    min_format_share: float = 0.1,
    range_margin: float = 1.0,
    unit_tolerance: float = 0.05,
    min_mixture_share: float = 0.1,
    min_count: int = 100,
    units: Mapping[str, str] | None = None,
    correction: str = "benjamini_hochberg",
) -> list[HealthFinding]:
    """Every preprocessing fault visible in one window, one finding per (feature, check).

    Parameters
    ----------
    reference_summary
        The raw-field sketches, ``Reference.summary["sketches"]["raw"]``.
    current
        The window's raw fields; fields the reference lacks are skipped.
    alpha
        The false-discovery rate for this window's health tests together
        (Benjamini-Hochberg); ``evidence["p_adjusted"]`` holds the adjusted value.
    min_rate_increase
        ``missing_rate`` / ``unknown_rate``: the smallest absolute rise that matters.
    min_share
        ``sign`` / ``range`` / ``wraparound``: the smallest share of values
        breaking the reference's fact that matters.
    min_format_share
        ``format``: the smallest share of values with a never-seen shape, or of
        non-integers where the reference was all integers.
    range_margin
        ``range``: a value is out of range when it lies beyond the reference's
        min/max by more than this many reference widths (max - min); wide,
        because ordinary drift legitimately extends the range a little.
    unit_tolerance
        ``unit_factor``: how far (relatively) the fitted slope may be from a
        conversion factor. Needs ``min_count`` present values.
    min_mixture_share
        ``unit_mixture``: the smallest share of values arriving in another
        unit (the rest unchanged) that matters; see ``_mixture``. Needs
        ``min_count`` present values.
    units
        Optional declared unit of a raw field (a key of ``UNITS``): then only
        conversions from that unit are considered.

    Values classed as ``wraparound`` are not counted again under ``sign`` or
    ``range``; negative values are not counted again under ``range``; a
    ``unit_factor`` finding suppresses ``range`` and the integer ``format``
    check of its field, which a unit change explains, and so does a
    ``unit_mixture`` finding (a partial switch), once it is significant.
    """
    alpha = _fraction("alpha", alpha, open_low=True)
    min_rate_increase = _fraction("min_rate_increase", min_rate_increase)
    min_share = _fraction("min_share", min_share)
    min_format_share = _fraction("min_format_share", min_format_share)
    unit_tolerance = _fraction("unit_tolerance", unit_tolerance, open_low=True)
    min_mixture_share = _fraction("min_mixture_share", min_mixture_share)
    if (
        not isinstance(range_margin, int | float)
        or isinstance(range_margin, bool)
        or range_margin < 0
    ):
        raise InputError(f"`range_margin` must be a non-negative number; got {range_margin!r}.")
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 2:
        raise InputError(f"`min_count` must be an integer >= 2; got {min_count!r}.")
    if not isinstance(reference_summary, Mapping):
        raise InputError(
            "`reference_summary` must be a mapping field -> sketch "
            f"(Reference.summary['sketches']['raw']); got {type(reference_summary).__name__}."
        )
    if not isinstance(current, CurrentColumns):
        raise InputError(f"`current` must be a CurrentColumns; got {type(current).__name__}.")
    declared = dict(units or {})
    for name, unit in declared.items():
        if unit not in UNITS:
            raise InputError(f"`units[{name!r}]` must be one of {sorted(UNITS)}; got {unit!r}.")
    for name in current.unknown:
        if name not in current.categorical:
            raise InputError(
                f"`current.unknown[{name!r}]` needs the field's values in `current.categorical`; "
                "got an unknown count without values."
            )

    tests: list[_Candidate] = []
    findings: list[HealthFinding] = []
    for name, raw in current.numeric.items():
        sketch = reference_summary.get(name)
        if sketch is None:
            continue
        if "counts" in sketch:
            raise InputError(
                f"`current.numeric[{name!r}]` is categorical in the reference; "
                "pass it in `current.categorical`."
            )
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            values = np.empty((0, 0))
        if values.ndim != 1:
            raise InputError(
                f"`current.numeric[{name!r}]` must be a 1-D array of numbers (NaN = missing); "
                f"got {type(raw).__name__} of shape {np.shape(raw)}."
            )
        more, found = _numeric_checks(
            name,
            sketch,
            values,
            min_rate_increase=min_rate_increase,
            min_share=min_share,
            min_format_share=min_format_share,
            range_margin=float(range_margin),
            unit_tolerance=unit_tolerance,
            min_mixture_share=min_mixture_share,
            min_count=min_count,
            declared=declared.get(name),
            present_sorted=_sorted_present(name, current.sorted_present.get(name), values),
        )
        tests += more
        findings += found
    for name, column in current.categorical.items():
        sketch = reference_summary.get(name)
        if sketch is None:
            continue
        if "counts" not in sketch:
            raise InputError(
                f"`current.categorical[{name!r}]` is numeric in the reference; "
                "pass it in `current.numeric`."
            )
        unknown = current.unknown.get(name)
        if unknown is not None and (
            isinstance(unknown, bool)
            or not isinstance(unknown, int)
            or not 0 <= unknown <= len(column)
        ):
            raise InputError(
                f"`current.unknown[{name!r}]` must be an integer in [0, {len(column)}] (the "
                f"number of values); got {unknown!r}."
            )
        tests += _categorical_checks(
            name,
            sketch,
            column,
            unknown,
            counted=current.counts.get(name),
            min_rate_increase=min_rate_increase,
            min_format_share=min_format_share,
        )

    adjusted = adjust([t.p_value for t in tests], correction)  # the plan's one correction step
    for test, p_adj in zip(tests, adjusted.tolist(), strict=True):
        if p_adj <= alpha and test.material:
            findings.append(
                HealthFinding(
                    feature=test.feature,
                    check=test.check,
                    message=test.message,
                    p_value=test.p_value,
                    evidence={**test.evidence, "p_adjusted": p_adj},
                )
            )
    return sorted(_unexplained(findings), key=lambda f: (f.feature, f.check))
