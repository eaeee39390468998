"""The unit-factor check: does a known unit conversion map the reference onto the window?

A fit, not a test: the window's 10th to 90th percentiles are compared with
``a * q_ref + b`` for every conversion between units of one dimension in
``UNITS`` (see :func:`unit_factor`). A partial switch, where only some
records arrive in another unit, is the mixture fit of ``_mixture``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..preprocessing._units import UNITS, affine
from ._ks import _sorted_quantiles
from ._results import HealthFinding

_LEVELS = np.round(np.arange(0.10, 0.9001, 0.05), 2)  # quantile levels the unit check compares
_MAX_Z = 4.0  # a conversion fits when no compared quantile is further off (standard errors)
_DRIFT_FACTORS = (0.25, 4.0)  # factors an ordinary change of the world might also produce


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


@dataclass(frozen=True)
class _Quantiles:
    """The compared percentiles of the reference and the window, and each level's
    standard error of their difference."""

    ref: np.ndarray
    cur: np.ndarray
    se: np.ndarray
    n_ref: int


def _quantiles(
    sketch: Mapping[str, Any], present: np.ndarray, present_sorted: np.ndarray | None
) -> _Quantiles | None:
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
    return _Quantiles(ref=ref_q, cur=cur_q, se=se, n_ref=n_ref)


def unit_factor(
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
    q = _quantiles(sketch, present, present_sorted)
    if q is None:
        return None
    identity_z = float(np.max(np.abs(q.cur - q.ref) / q.se))
    if identity_z <= _MAX_Z:
        return None
    best = _best_conversion(q, sketch, present, tolerance=tolerance, declared=declared)
    if best is None:
        return None
    return _finding(feature, q, best, identity_z, int(present.size))


def _best_conversion(
    q: _Quantiles,
    sketch: Mapping[str, Any],
    present: np.ndarray,
    *,
    tolerance: float,
    declared: str | None,
) -> tuple[float, float, float, tuple[str, ...]] | None:
    """The fitting (and, where needed, pinned) conversion with the smallest worst z."""
    n, n_ref = present.size, q.n_ref
    mean, sd, kurtosis = _moments(present)
    mean_ref, sd_ref = float(sketch["mean"]), float(sketch["std"])
    ratio_se = math.sqrt(max(kurtosis - 1, 0.5) / 4 * (1 / n + 1 / n_ref))
    centre, centre_se = float(q.ref[len(q.ref) // 2]), float(q.se[len(q.se) // 2])
    best: tuple[float, float, float, tuple[str, ...]] | None = None
    for a, b, names in _unit_candidates(declared):
        z = float(np.max(np.abs(q.cur - (a * q.ref + b)) / (abs(a) * q.se)))
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
    return best


def _moments(x: np.ndarray) -> tuple[float, float, float]:
    """Mean, standard deviation (``x.std()``, the same bits) and kurtosis of ``x``.

    One pass of squared deviations serves both: ``d**4`` as ``(d*d)**2`` is a
    multiplication, where ``d ** 4`` calls ``pow`` per element (20x slower on a
    million rows; the two differ at most in the last bits).
    """
    mean = float(x.mean())
    squared = np.square(x - mean)
    sd = math.sqrt(float(squared.mean()))
    kurtosis = float(np.square(squared).mean() / sd**4) if sd > 0 else 3.0
    return mean, sd, kurtosis


def _finding(
    feature: str,
    q: _Quantiles,
    best: tuple[float, float, float, tuple[str, ...]],
    identity_z: float,
    n: int,
) -> HealthFinding:
    z, a, b, names = best
    slope, intercept = (float(v) for v in np.polyfit(q.ref, q.cur, 1))
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
            "reference_quantiles": q.ref[shown].tolist(),
            "current_quantiles": q.cur[shown].tolist(),
            "n": n,
        },
    )
