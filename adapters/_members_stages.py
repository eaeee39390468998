"""Gradient boosting in ``replace-members``: cut the tail stages, grow new ones on recent data.

Stages are sequential: each one corrects the sum of those before it, so only
the tail can be cut. The last ``k`` stages are dropped and ``k`` new ones
fitted, with scikit-learn's ``warm_start``, to the residuals the first
``n - k`` stages (and the original prior, ``init_``) leave on recent data.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from sidecar import AdapterError

from ._base import Progress, TrainingData, fit_warnings, higher_is_better, score
from ._members_families import FloatArray, check_classes
from ._members_replacing import better

__all__ = ["cut_and_grow", "replace_stages"]


def replace_stages(
    gb: Any,
    data: TrainingData,
    X_train: FloatArray,
    X_val: FloatArray,
    fit: tuple[FloatArray, np.ndarray],
    ks: list[int],
    metric: str,
    step: Progress,
    seed: int,
    notes: list[str],
) -> tuple[Any, str, dict[str, Any], list[dict[str, Any]]]:
    n = int(gb.n_estimators_)
    higher = higher_is_better(metric)
    classify = data.task == "classification"

    def val_score(model: Any) -> float:
        if classify:
            proba = model.predict_proba(X_val)
            return score(metric, data, data.c_val, np.argmax(proba, axis=1), proba)
        return score(metric, data, data.c_val, model.predict(X_val), None)

    own = val_score(gb)
    search: list[dict[str, Any]] = [{"k": 0, "score": own, "current": True, "chosen": False}]
    best: tuple[float, int] | None = None
    for i, k in enumerate(ks):
        step(f"fitting {k} new stages", 0.1 + 0.6 * i / len(ks))
        value = val_score(cut_and_grow(gb, n - k, X_train, data.y_train, seed, notes))
        search.append({"k": k, "score": value, "chosen": False})
        if best is None or better(value, best[0], higher):
            best = (value, k)
    assert best is not None
    k = best[1]
    next(s for s in search if s["k"] == k and not s.get("current"))["chosen"] = True
    step("refitting the chosen stages on train and validation", 0.75)
    X_fit, y_fit = fit
    new = cut_and_grow(gb, n - k, X_fit, y_fit, seed, notes)
    if classify:
        check_classes(gb, new)
    changes = {
        "replaced_stages": k,
        "kept_stages": n - k,
        "n_estimators": int(new.n_estimators_),
        "new_stages_fitted_on": len(X_fit),
        "oob_improvement": "dropped (it described the old stages)",
    }
    summary = (
        f"cut the last {k} of {n} stages of the {type(gb).__name__} and fitted {k} new stages "
        f"to the residuals its first {n - k} stages leave on {len(X_fit)} recent rows "
        f"(warm start). Chosen on validation {metric}: {best[0]:.4g} (champion {own:.4g})."
    )
    return new, summary, changes, search


def cut_and_grow(
    gb: Any, keep: int, X: FloatArray, y: np.ndarray, seed: int, notes: list[str]
) -> Any:
    """A copy of ``gb`` with its first ``keep`` stages and new ones fitted on ``(X, y)``."""
    new = copy.copy(gb)
    total = int(gb.n_estimators_)
    new.estimators_ = np.array(gb.estimators_[:keep], dtype=object, copy=True)
    new.train_score_ = np.array(gb.train_score_[:keep], copy=True)
    for attr in ("oob_improvement_", "oob_scores_", "oob_score_"):
        new.__dict__.pop(attr, None)
    # the champion's random generator must not advance: the copy gets its own
    new._rng = np.random.RandomState(seed)
    new.set_params(n_estimators=total, warm_start=True)
    try:
        with fit_warnings(notes):
            new.fit(X, y)
    except ValueError as exc:
        raise AdapterError(f"fitting new stages on the recent data failed: {exc}") from exc
    new.set_params(warm_start=gb.warm_start)
    for attr in ("oob_improvement_", "oob_scores_", "oob_score_"):
        new.__dict__.pop(attr, None)
    return new
