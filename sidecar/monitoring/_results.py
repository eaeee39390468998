"""The frozen, typed results every monitoring computation returns.

Each has ``to_dict()`` for JSON: plain Python numbers and strings, NaN as
``None``, no nested placeholders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DriftResult",
    "HealthFinding",
    "MetricValue",
    "OutlierInfluence",
    "TestResult",
    "jsonable",
]


def jsonable(value: Any) -> Any:
    """Plain JSON values: NumPy scalars to Python, NaN and inf to None, tuples to lists."""
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, str | bytes):
        try:
            value = item()
        except (TypeError, ValueError):
            value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


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
