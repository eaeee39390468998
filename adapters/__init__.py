"""Retraining adapters for model-sidecar bundles (regularize, replace members, fine-tune head).

They use only ``sidecar``'s public API; ``sidecar`` never imports them at module level.
Each takes a bundle and :class:`sidecar.RecentData` and returns a
:class:`RetrainResult`: a candidate bundle (a new version whose parent is the
champion) and its :class:`TrainingReport`. Nothing is saved; the champion is
never changed.
"""

from ._base import RetrainResult, TrainingReport, time_split
from ._finetune import fine_tune_head
from ._members import WeightedEnsemble, replace_members
from ._regularize import regularize
from ._retrain import retrain

__all__ = [
    "RetrainResult",
    "TrainingReport",
    "WeightedEnsemble",
    "fine_tune_head",
    "regularize",
    "replace_members",
    "retrain",
    "time_split",
]

# fine-tune-head: see _finetune.py
