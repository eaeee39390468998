"""Retraining adapters for model-sidecar bundles: regularize, replace members, refit, fine-tune.

They use ``sidecar``'s public API, and two of its private policies on purpose:
the one JSON coercion (``sidecar._json``) and the strategy names
(``sidecar._types.STRATEGIES``); ``sidecar`` never imports them at module level.
Each takes a bundle and :class:`sidecar.RecentData` and returns a
:class:`RetrainResult`: a candidate bundle (a new version whose parent is the
champion) and its :class:`TrainingReport`. Nothing is saved; the champion is
never changed.
"""

from ._base import RetrainResult, TrainingReport, time_split
from ._family import adapter_for, model_family, strategy_for
from ._finetune import fine_tune_head
from ._members import WeightedEnsemble, replace_members
from ._refit import refit
from ._regularize import regularize
from ._retrain import retrain

__all__ = [
    "RetrainResult",
    "TrainingReport",
    "WeightedEnsemble",
    "adapter_for",
    "fine_tune_head",
    "model_family",
    "refit",
    "regularize",
    "replace_members",
    "retrain",
    "strategy_for",
    "time_split",
]

# fine-tune-head: see _finetune.py
