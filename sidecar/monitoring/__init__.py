"""Monitoring: pure computation over arrays -- metrics, tests, drift, health, plan, diagnosis.

Nothing here does I/O, reads a clock or touches a database; the store hands
records over as arrays (see ``sidecar._monitor``) and frozen dataclasses come
back.
"""

from ._plan import Bounds, MonitoringPlan, PlanTests, default_plan, parse_window, read_plan
from ._results import DriftResult, HealthFinding, MetricValue, OutlierInfluence, TestResult

__all__ = [
    "Bounds",
    "DriftResult",
    "HealthFinding",
    "MetricValue",
    "MonitoringPlan",
    "OutlierInfluence",
    "PlanTests",
    "TestResult",
    "default_plan",
    "parse_window",
    "read_plan",
]
