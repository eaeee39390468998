"""Monitoring: pure computation over arrays -- metrics, tests, drift, health, plan, diagnosis.

Nothing here does I/O, reads a clock or touches a database; the store hands
records over as arrays (see ``sidecar._monitor``) and frozen dataclasses come
back.
"""

from ._diagnosis import VERDICTS, Diagnosis, Recommendation
from ._estimate import PerformanceEstimate, estimate_performance
from ._metrics import METRICS, per_example_loss
from ._plan import Bounds, MonitoringPlan, PlanTests, default_plan, parse_window, read_plan
from ._results import DriftResult, HealthFinding, MetricValue, OutlierInfluence, TestResult

__all__ = [
    "METRICS",
    "VERDICTS",
    "Bounds",
    "Diagnosis",
    "DriftResult",
    "HealthFinding",
    "MetricValue",
    "MonitoringPlan",
    "OutlierInfluence",
    "PerformanceEstimate",
    "PlanTests",
    "Recommendation",
    "TestResult",
    "default_plan",
    "estimate_performance",
    "parse_window",
    "per_example_loss",
    "read_plan",
]
