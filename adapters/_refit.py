"""Refit: the same estimator, the same hyper-parameters, fitted again on recent data.

The cheap drift path for models that have no members to replace and no head
to fine-tune -- gradient boosting above all (``HistGradientBoosting*``), where
``regularize`` would search a ladder of settings at several times the cost.
The estimator is rebuilt with :func:`sklearn.base.clone` (never a copy of
trained weights) and fitted once on the train and validation parts of the
recent data together (the most recent rows before the holdout); the holdout
reports champion against candidate. A ``Pipeline`` is refitted whole.

Why not warm-started extra stages? scikit-learn's ``HistGradientBoosting*``
re-bins the features on every ``fit``, and with ``warm_start`` the old trees'
binned thresholds would be read against the new data's bins while the new
stages are fitted: the residuals they learn would be wrong. A plain refit on
the window costs one fit and is exact.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import sidecar
from sidecar import AdapterError

from ._base import (
    Progress,
    RetrainResult,
    finish,
    fit_warnings,
    prepare,
    progress_of,
    sklearn_estimator,
)

__all__ = ["SUPPORTED", "refit"]

STRATEGY = "refit"
SUPPORTED = ("any scikit-learn estimator (HistGradientBoosting* first of all)",)


def refit(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    progress: Progress | None = None,
    seed: int = 0,
) -> RetrainResult:
    """Fit a clone of the bundle's estimator, same hyper-parameters, on ``recent``.

    Parameters
    ----------
    bundle
        The champion, whose advanced model is a scikit-learn estimator; never changed.
    recent
        Labelled recent records, oldest first (``sidecar.recent_data``).
    progress
        Called as ``progress(step, fraction)``.
    seed
        Unused: the estimator keeps its own ``random_state`` (the same hyper-parameters).
    """
    from sklearn.base import clone

    started = time.perf_counter()
    step = progress_of(progress)
    estimator = sklearn_estimator(bundle, STRATEGY, SUPPORTED)
    step("checking the recent data", 0.0)
    data = prepare(bundle, recent, strategy=STRATEGY)
    fit_started = time.perf_counter()
    notes: list[str] = []
    step("refitting on recent data", 0.1)
    model = clone(estimator)
    try:
        with fit_warnings(notes):
            model.fit(data.X_fit, data.y_fit)
    except ValueError as exc:
        raise AdapterError(f"refitting on the recent data failed: {exc}") from exc
    train_time = time.perf_counter() - fit_started
    name = type(estimator).__name__
    summary = (
        f"refitted the {name} with its own hyper-parameters on the {len(data.X_fit)} most "
        "recent rows before the holdout"
    )
    changes: dict[str, Any] = {"refitted_on": len(data.X_fit), "estimator": name}
    if hasattr(model, "n_iter_"):
        changes["n_iter"] = int(np.max(model.n_iter_))  # an array for LogisticRegression
    return finish(
        bundle, data, model, strategy=STRATEGY, started=started, train_time_s=train_time,
        summary=summary, changes=changes, notes=notes, progress=step,
    )  # fmt: skip
