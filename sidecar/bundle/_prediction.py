"""What a bundle's ``predict`` returns, and the running counts a served bundle keeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..runtimes import ModelOutput

__all__ = ["BundleStats", "Prediction", "ShadowPrediction"]


@dataclass(frozen=True)
class Prediction:
    """The advanced model's answer for a batch of raw records.

    ``request_ids`` holds one id per record (a per-batch random prefix and the
    record's index), the key under which labels are joined later.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: tuple[Any, ...] | None
    bundle_version: str
    preprocessing_version: str
    batch_id: str
    latency_ms: float
    ts: float = 0.0
    #: values per categorical field this batch encoded to the unknown code (non-zero only)
    unknown: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def request_ids(self) -> tuple[str, ...]:
        prefix = self.batch_id
        return tuple(f"{prefix}-{i}" for i in range(len(self.predictions)))

    def __len__(self) -> int:
        return len(self.predictions)


@dataclass(frozen=True)
class ShadowPrediction:
    """Both models' predictions for the same records (the shadow pair)."""

    advanced: Prediction
    baseline: ModelOutput | None
    baseline_error: str | None
    baseline_latency_ms: float | None


@dataclass
class BundleStats:
    """Running counts a served bundle keeps (exposed by ``info`` and, later, as gauges)."""

    requests: int = 0
    records: int = 0
    unknown: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    shadow_disagreements: int = 0
    shadow_compared: int = 0

    def count(
        self, n_records: int, unknown: Mapping[str, int], missing: Mapping[str, int] | None = None
    ) -> None:
        """Count one request of ``n_records`` and its unknown (and missing) values per field."""
        self.requests += 1
        self.records += n_records
        if unknown:
            self.unknown.update(unknown)
        if missing:
            self.missing.update(missing)
