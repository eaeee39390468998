"""Type names shared across the package."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["STRATEGIES", "Strategy", "Task"]

#: What a model predicts: class labels (with probabilities) or numbers.
Task = Literal["classification", "regression"]

#: How ``retrain`` repairs a model: ``auto`` follows the diagnosis (the verdict and the
#: model's family, see ``adapters._family``); the others name one adapter.
Strategy = Literal["auto", "regularize", "replace-members", "refit", "fine-tune-head"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
