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
>>> from sidecar.bundle._reference import _numeric_sketch  # what a bundle's reference stores
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(70, 12, 5000)  # body weight in kg
>>> sketch = {"weight": _numeric_sketch(ref)}
>>> now = CurrentColumns(numeric={"weight": ref[:1000] * 2.20462})  # now in lb
>>> [(f.check, f.evidence["units"][0]) for f in check_health(sketch, now, alpha=0.05)]
[('unit_factor', 'kg->lb')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import InputError
from ..preprocessing._units import UNITS
from ._battery import adjust
from ._categorical_health import categorical_checks, value_shape
from ._health_candidates import Candidate, Thresholds
from ._numeric_health import numeric_checks
from ._results import HealthFinding

__all__ = ["CurrentColumns", "check_health", "value_shape"]


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
    limits = _thresholds(
        min_rate_increase=min_rate_increase,
        min_share=min_share,
        min_format_share=min_format_share,
        range_margin=range_margin,
        unit_tolerance=unit_tolerance,
        min_mixture_share=min_mixture_share,
        min_count=min_count,
    )
    declared = _check_arguments(reference_summary, current, units)
    tests, findings = _field_tests(reference_summary, current, limits, declared)
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


def _thresholds(
    *,
    min_rate_increase: float,
    min_share: float,
    min_format_share: float,
    range_margin: float,
    unit_tolerance: float,
    min_mixture_share: float,
    min_count: int,
) -> Thresholds:
    """``check_health``'s thresholds, each checked."""
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
    return Thresholds(
        min_rate_increase=min_rate_increase,
        min_share=min_share,
        min_format_share=min_format_share,
        range_margin=float(range_margin),
        unit_tolerance=unit_tolerance,
        min_mixture_share=min_mixture_share,
        min_count=min_count,
    )


def _check_arguments(
    reference_summary: Any, current: Any, units: Mapping[str, str] | None
) -> dict[str, str]:
    """``check_health``'s inputs checked; the declared units."""
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
    return declared


def _field_tests(
    reference_summary: Mapping[str, Mapping[str, Any]],
    current: CurrentColumns,
    limits: Thresholds,
    declared: Mapping[str, str],
) -> tuple[list[Candidate], list[HealthFinding]]:
    """Every field's candidate tests, and the unit-factor findings that need no correction."""
    tests: list[Candidate] = []
    findings: list[HealthFinding] = []
    for name, raw in current.numeric.items():
        sketch = reference_summary.get(name)
        if sketch is None:
            continue
        values = _numeric_column(name, raw, sketch)
        more, found = numeric_checks(
            name,
            sketch,
            values,
            limits,
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
        tests += categorical_checks(
            name, sketch, column, unknown, limits, counted=current.counts.get(name)
        )
    return tests, findings


def _numeric_column(name: str, raw: Any, sketch: Mapping[str, Any]) -> np.ndarray:
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
    return values
