"""The frozen, typed results every monitoring computation returns.

Each has ``to_dict()`` for JSON: plain Python numbers and strings, NaN as
``None``, no nested placeholders (the package's one policy, ``sidecar._json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from .._json import to_jsonable as jsonable

__all__ = [
    "VERDICTS",
    "BoundsCheck",
    "DriftResult",
    "HealthFinding",
    "MetricValue",
    "OutlierInfluence",
    "TestResult",
    "Verdict",
    "jsonable",
]

#: the fixed vocabulary of ``sidecar diagnose``
Verdict = Literal[
    "healthy",
    "insufficient_data",
    "preprocessing_fault",
    "overfitting",
    "data_drift",
    "concept_drift",
]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class TestResult(_ToDict):
    """One hypothesis test.

    ``effect`` is the estimated effect in the test's natural unit (a mean loss
    difference, a metric difference, a difference in error rates), signed so
    that positive means "the first argument is worse" (has the larger loss);
    ``ci_low``/``ci_high`` bound it (NaN when the test gives no interval).
    ``p_adjusted`` is filled in by multiple-testing correction.
    """

    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    p_value: float
    effect: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    alternative: str = "two-sided"
    p_adjusted: float = math.nan
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricValue(_ToDict):
    """A metric on one window, with a (bootstrap or analytic) confidence interval."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool


@dataclass(frozen=True)
class OutlierInfluence(_ToDict):
    """How much the ``k`` largest per-example errors move a metric."""

    metric: str
    value: float
    value_without_top_k: float
    k: int
    relative_change: float
    top_indices: tuple[int, ...]
    top_errors: tuple[float, ...]


@dataclass(frozen=True)
class DriftResult(_ToDict):
    """Drift of one feature between the reference and a window."""

    feature: str
    kind: str  # "numeric" | "categorical"
    space: str  # "raw" | "preprocessed"
    test: str  # "ks" | "chi2_homogeneity"
    statistic: float
    p_value: float
    effect_name: str  # "wasserstein" | "psi" | "jensen_shannon"
    effect: float
    n_reference: int
    n_current: int
    p_adjusted: float = math.nan
    material: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: significant after the plan's correction at its alpha AND material
    alarm: bool = False


@dataclass(frozen=True)
class HealthFinding(_ToDict):
    """A preprocessing-health finding that points at the pipeline, naming the feature."""

    feature: str
    #: "unit_factor", "unit_mixture", "unknown_rate", "sign", "range", "wraparound", "format"
    #: or "missing_rate"
    check: str
    message: str
    p_value: float = math.nan
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BoundsCheck(_ToDict):
    """The primary metric against the plan's bounds, and the evidence on a material decline.

    ``value`` is the advanced model's primary metric now; ``decayed_out_of_bounds``
    says it lies on the bad side of a bound, ``suspiciously_good`` that its whole
    interval lies beyond the good side. ``decline`` is the advanced model's mean
    (winsorised, for a robust primary) loss now minus its reference, with the
    ``1 - 2 alpha`` interval ``decline_ci_low``..``decline_ci_high`` and the
    equivalence test's p-value ``equivalence_p``: ``no_material_decline`` when the
    interval's upper end is below the plan's ``min_effect``.
    ``required_n_for_power``: labels at which an unchanged model is shown to be
    within ``min_effect`` with the plan's power (``None``: the reference is too
    small for any number); ``labels_to_settle``: about how many labels in all
    would settle an open question at the variance observed now.
    """

    lower: float | None
    upper: float | None
    value: float = math.nan
    decayed_out_of_bounds: bool = False
    suspiciously_good: bool = False
    required_n_for_power: int | None = None
    winsorised_at: float | None = None
    decline: float = math.nan
    decline_ci_low: float = math.nan
    decline_ci_high: float = math.nan
    equivalence_p: float = math.nan
    no_material_decline: bool = False
    labels_to_settle: int | None = None
