"""Monitoring: pure computation over arrays -- metrics, tests, drift, health, plan, diagnosis.

Nothing here does I/O, reads a clock or touches a database; the store hands
records over as arrays (see ``sidecar._window``) and frozen dataclasses come
back.
"""

from ._battery import (
    CORRECTIONS,
    DRIFT,
    EQUIVALENCE,
    PAIRED,
    REFERENCE,
    RELATIONS,
    WINDOWS,
    adjust,
    correct,
)
from ._diagnosis import VERDICTS, Diagnosis, Recommendation
from ._estimate import PerformanceEstimate, estimate_performance
from ._metrics import METRICS, per_example_loss
from ._plan import Bounds, MonitoringPlan, PlanTests, default_plan, parse_window, read_plan
from ._promotion import PromotionDecision, PromotionVerdict
from ._report import render_report
from ._results import (
    BoundsCheck,
    DriftResult,
    HealthFinding,
    MetricValue,
    OutlierInfluence,
    TestResult,
    Verdict,
)

__all__ = [
    "CORRECTIONS",
    "DRIFT",
    "EQUIVALENCE",
    "METRICS",
    "PAIRED",
    "REFERENCE",
    "RELATIONS",
    "VERDICTS",
    "WINDOWS",
    "Bounds",
    "BoundsCheck",
    "Diagnosis",
    "DriftResult",
    "HealthFinding",
    "MetricValue",
    "MonitoringPlan",
    "OutlierInfluence",
    "PerformanceEstimate",
    "PlanTests",
    "PromotionDecision",
    "PromotionVerdict",
    "Recommendation",
    "TestResult",
    "Verdict",
    "adjust",
    "correct",
    "default_plan",
    "estimate_performance",
    "parse_window",
    "per_example_loss",
    "read_plan",
    "render_report",
]
