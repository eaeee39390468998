"""What a retraining returns: the candidate and its training report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sidecar
from sidecar._json import to_jsonable

__all__ = ["RetrainResult", "TrainingReport"]


@dataclass(frozen=True)
class TrainingReport:
    """What a retraining did, and how champion and candidate score on held-out recent data.

    ``champion`` and ``candidate`` hold the plan's primary and secondary
    metrics on the holdout -- the last 20% of the recent data by time, which
    no adapter trains or chooses on. ``search`` lists every setting tried with
    its validation score (``chosen`` marks the winner); ``changes`` says what
    changed, parameter by parameter. ``wall_time_s`` is the whole call;
    ``train_time_s`` the part spent scoring, choosing and training (without
    checking and preprocessing the data, or building and evaluating the
    candidate bundle).
    """

    strategy: str
    wall_time_s: float
    train_time_s: float
    summary: str
    changes: Mapping[str, Any]
    n_train: int
    n_validation: int
    n_holdout: int
    primary_metric: str
    higher_is_better: bool
    min_effect: float
    champion: Mapping[str, float]
    candidate: Mapping[str, float]
    search: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    parent_version: str | None = None
    #: which recent rows were learnt from, and why (set by ``sidecar.retrain``)
    window: Mapping[str, Any] = field(default_factory=dict)

    @property
    def improvement(self) -> float:
        """How much better the candidate's primary metric is on the holdout (negative: worse)."""
        delta = self.candidate[self.primary_metric] - self.champion[self.primary_metric]
        return float(delta if self.higher_is_better else -delta)

    @property
    def improved(self) -> bool:
        """The candidate scores better than the champion on the holdout, by any margin."""
        return self.improvement > 0.0

    @property
    def materially_better(self) -> bool:
        """The candidate is better by at least the plan's smallest effect that matters.

        A point estimate on the holdout, not a test: promotion runs the plan's
        paired test on shadow-recorded requests.
        """
        return self.improvement >= self.min_effect

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``sidecar retrain --json`` prints).

        By the package's one JSON policy (:func:`sidecar._json.to_jsonable`):
        NumPy values become Python ones, NaN and infinities become ``None``.
        """
        payload = {
            "strategy": self.strategy,
            "wall_time_s": round(self.wall_time_s, 4),
            "train_time_s": round(self.train_time_s, 4),
            "parent_version": self.parent_version,
            "what_changed": {"summary": self.summary, "parameters": self.changes},
            "n_train": self.n_train,
            "n_validation": self.n_validation,
            "n_holdout": self.n_holdout,
            "holdout": {
                "slice": "the last 20% of the recent data by time (never trained or chosen on)",
                "primary_metric": self.primary_metric,
                "higher_is_better": self.higher_is_better,
                "champion": dict(self.champion),
                "candidate": dict(self.candidate),
                "improvement": self.improvement,
                "improved": self.improved,
                "min_effect": self.min_effect,
                "materially_better": self.materially_better,
            },
            "search": [dict(s) for s in self.search],
            "notes": list(self.notes),
            "window": dict(self.window),
        }
        jsonable: dict[str, Any] = to_jsonable(payload)
        return jsonable


@dataclass(frozen=True)
class RetrainResult:
    """A candidate bundle (a new version whose parent is the champion) and its report."""

    candidate: sidecar.Bundle
    report: TrainingReport
