"""The preprocessing-health tests of one numeric field.

The missing rate; values that wrapped around an integer modulus, turned
negative, or lie far beyond the reference range like a placeholder; broken
integers; and a unit change: a whole-field conversion (``_unit_factor``, a
finding at once that ends the field's tests) or a partial switch (``_mixture``,
a candidate like the others).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._health_candidates import Candidate, Thresholds, examples, rate_candidate, share_candidate
from ._mixture import MixtureFit, fit_unit_mixture
from ._results import HealthFinding
from ._unit_factor import unit_factor

_WRAP_MODULI = (2.0**31, 2.0**32, 2.0**63, 2.0**64)
_WRAP_NEAR = 2.0**20


def _mixture_candidate(feature: str, fit: MixtureFit, min_share: float) -> Candidate:
    """A partial unit switch (see ``_mixture``) as a test: its p-value, its share, its fit."""
    offset = f" {'+' if fit.offset > 0 else '-'} {abs(fit.offset):.6g}" if fit.offset else ""
    return Candidate(
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


def numeric_checks(
    feature: str,
    sketch: Mapping[str, Any],
    values: np.ndarray,
    limits: Thresholds,
    *,
    declared: str | None,
    present_sorted: np.ndarray | None = None,
) -> tuple[list[Candidate], list[HealthFinding]]:
    """The tests of one numeric field, and its unit-factor finding (which ends them)."""
    tests: list[Candidate] = []
    n = int(values.size)
    n_ref = int(sketch["count"])
    if n == 0 or n_ref == 0:
        return tests, []
    missing = np.isnan(values)
    tests.append(
        rate_candidate(
            feature,
            "missing_rate",
            "missing",
            int(sketch["missing"]),
            n_ref,
            int(missing.sum()),
            n,
            limits.min_rate_increase,
        )
    )
    present = values[~missing]
    if present.size == 0 or "quantiles" not in sketch:
        return tests, []
    wrapped, rest, negative = _wrap_and_sign(feature, sketch, present, limits)
    tests += wrapped
    if present_sorted is not None and rest.size != present_sorted.size:
        present_sorted = None  # wrapped values left out: the sorted copy no longer matches
    unit = unit_factor(
        feature,
        sketch,
        rest,
        tolerance=limits.unit_tolerance,
        min_count=limits.min_count,
        declared=declared,
        present_sorted=present_sorted,
    )
    if unit is not None:  # a unit change explains a new range and broken integers
        return tests, [unit]
    if rest.size >= limits.min_count:
        ordered = np.sort(rest) if present_sorted is None else present_sorted
        fit = fit_unit_mixture(sketch, ordered, declared=declared)
        if fit is not None:
            tests.append(_mixture_candidate(feature, fit, limits.min_mixture_share))
    tests.append(_range_candidate(feature, sketch, present.size, rest, negative, limits))
    if sketch.get("integer"):
        tests.append(_integer_candidate(feature, sketch, present, limits))
    return tests, []


def _wrap_and_sign(
    feature: str, sketch: Mapping[str, Any], present: np.ndarray, limits: Thresholds
) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
    """The wrap-around and sign tests; the values not wrapped, and which of them are
    negative where the reference had none (so the range test does not count them again)."""
    tests: list[Candidate] = []
    m = int(present.size)
    m_ref = int(sketch["count"]) - int(sketch["missing"])
    lo, hi = float(sketch["min"]), float(sketch["max"])
    ref_range = {"reference_min": lo, "reference_max": hi}
    wrap = _wrap_mask(present, lo, hi, float(sketch["max_abs"]))
    k = int(wrap.sum())
    tests.append(
        share_candidate(
            feature,
            "wraparound",
            f"{feature}: {k} of {m} values sit near 2^31/2^32/2^63/2^64 or are a reference "
            "value shifted by one of them: an integer overflowed or changed signedness.",
            0,
            m_ref,
            k,
            m,
            limits.min_share,
            {"examples": examples(present[wrap]), **ref_range},
        )
    )
    rest = present[~wrap]
    negative = rest < 0
    if int(sketch["n_negative"]) == 0:
        k = int(negative.sum())
        tests.append(
            share_candidate(
                feature,
                "sign",
                f"{feature}: {k} of {m} values are negative; the reference had none.",
                0,
                m_ref,
                k,
                m,
                limits.min_share,
                {"examples": examples(rest[negative]), **ref_range},
            )
        )
    else:
        negative[:] = False
    return tests, rest, negative


def _range_candidate(
    feature: str,
    sketch: Mapping[str, Any],
    m: int,
    rest: np.ndarray,
    negative: np.ndarray,
    limits: Thresholds,
) -> Candidate:
    """Values far beyond the reference range that look like placeholders or a broken feed."""
    lo, hi = float(sketch["min"]), float(sketch["max"])
    m_ref = int(sketch["count"]) - int(sketch["missing"])
    range_margin = limits.range_margin
    margin = range_margin * ((hi - lo) if hi > lo else max(abs(hi), 1.0))
    beyond = ((rest < lo - margin) | (rest > hi + margin)) & ~negative
    k = int(beyond.sum())
    if k and not _sentinel_like(rest[beyond], lo, hi):
        # Out of range, but spread over many values close to it: a world that
        # moved (data drift, tested elsewhere), not a placeholder or a broken feed.
        k = 0
        beyond[:] = False
    return share_candidate(
        feature,
        "range",
        f"{feature}: {k} of {m} values lie beyond the reference range "
        f"[{lo:.6g}, {hi:.6g}] by more than {range_margin:g} times its width.",
        0,
        m_ref,
        k,
        m,
        limits.min_share,
        {
            "examples": examples(rest[beyond]),
            "margin": margin,
            "reference_min": lo,
            "reference_max": hi,
        },
    )


def _integer_candidate(
    feature: str, sketch: Mapping[str, Any], present: np.ndarray, limits: Thresholds
) -> Candidate:
    """Non-integers in a field whose reference was all integers."""
    m = int(present.size)
    m_ref = int(sketch["count"]) - int(sketch["missing"])
    fractional = present != np.round(present)
    k = int(fractional.sum())
    return share_candidate(
        feature,
        "format",
        f"{feature}: {k} of {m} values are not whole numbers; the reference was all integers.",
        0,
        m_ref,
        k,
        m,
        limits.min_format_share,
        {"fact": "integer", "examples": examples(present[fractional])},
    )
