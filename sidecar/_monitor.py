"""Transitional: the names ``sidecar.cli`` imports until it moves to ``_analysis`` / ``_window``."""

from ._analysis import diagnose, model_family, plan_summary, promotion_decision, reference_inputs
from ._window import RecentData, load_window, recent_data

__all__ = [
    "RecentData",
    "diagnose",
    "load_window",
    "model_family",
    "plan_summary",
    "promotion_decision",
    "recent_data",
    "reference_inputs",
]
