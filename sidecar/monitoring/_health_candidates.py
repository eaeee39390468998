"""The preprocessing-health tests as candidates for one correction.

Each check of one field yields a :class:`Candidate`: a p-value and whether
the effect is material. ``check_health`` corrects every candidate of a window
together and keeps the significant, material ones as findings. Rates (missing,
unknown code) use the two-proportion z-test; counts of values that break a
reference fact use a one-sided Fisher exact test against the reference's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._stats import two_proportions

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Thresholds:
    """``check_health``'s validated thresholds (see its parameters)."""

    min_rate_increase: float
    min_share: float
    min_format_share: float
    range_margin: float
    unit_tolerance: float
    min_mixture_share: float
    min_count: int


def _more_than_reference(k_ref: int, n_ref: int, k_cur: int, n_cur: int) -> float:
    """One-sided Fisher exact p-value that the window holds more such values than the reference.

    With ``k_ref == 0`` it is the chance that, of ``k_cur`` fact-breaking
    values among the pooled rows, all fell into the window.
    """
    if k_cur == 0:
        return 1.0
    return float(stats.hypergeom.sf(k_cur - 1, n_ref + n_cur, k_ref + k_cur, n_cur))


@dataclass(frozen=True)
class Candidate:
    feature: str
    check: str
    message: str
    p_value: float
    material: bool
    evidence: dict[str, Any]


def examples(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.unique(values)[:MAX_EXAMPLES]]


def rate_candidate(
    feature: str,
    check: str,
    what: str,
    k_ref: int,
    n_ref: int,
    k_cur: int,
    n_cur: int,
    min_rise: float,
) -> Candidate:
    test = two_proportions(k_ref, n_ref, k_cur, n_cur)
    ref_rate, cur_rate = k_ref / n_ref, k_cur / n_cur
    return Candidate(
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


def share_candidate(
    feature: str,
    check: str,
    message: str,
    k_ref: int,
    n_ref: int,
    k_cur: int,
    n_cur: int,
    min_share: float,
    evidence: dict[str, Any],
) -> Candidate:
    share = k_cur / n_cur
    return Candidate(
        feature,
        check,
        message,
        _more_than_reference(k_ref, n_ref, k_cur, n_cur),
        k_cur > 0 and share >= min_share,
        {"count": k_cur, "share": share, "n": n_cur, "n_reference": n_ref, **evidence},
    )
