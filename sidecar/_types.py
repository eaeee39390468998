"""Type names shared across the package."""

from __future__ import annotations

from typing import Literal

__all__ = ["Task"]

#: What a model predicts: class labels (with probabilities) or numbers.
Task = Literal["classification", "regression"]
