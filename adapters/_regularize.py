"""Regularize: refit the same model family with stronger regularization, chosen on recent data.

The overfitting path. Each supported family has a short ladder of settings,
each stronger than the model's own (:mod:`adapters._regularize_ladders`).
Every setting is fitted on the train part of the recent data and scored with
the plan's primary metric on the validation part (both by time, see
:mod:`adapters._base`); the best is refitted on train and validation together.
The model's own setting, refitted the same way, is scored too and shown in the
report, but never chosen: this adapter's answer is always a more regularized
model, and the report says whether it is better.

scikit-learn models are rebuilt with :func:`sklearn.base.clone` and
``set_params`` -- trained weights are never copied. For a ``Pipeline`` the
final step is regularized and the whole pipeline refitted, the other steps
keeping their parameters. A PyTorch module saved with a factory is retrained
from a fresh module with AdamW weight decay (and a higher dropout when the
factory takes a ``dropout`` argument) chosen the same way
(:mod:`adapters._regularize_torch`).

Settings are shown in the report as JSON values (:func:`sidecar._json.to_jsonable`):
an infinite ``C`` (no penalty) reads ``None``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import sidecar
from sidecar import AdapterError
from sidecar._json import to_jsonable

from ._base import (
    Progress,
    RetrainResult,
    TrainingData,
    check_task,
    finish,
    fit_warnings,
    higher_is_better,
    prepare,
    progress_of,
    score,
    selection_metric,
)
from ._regularize_ladders import (
    STRATEGY,
    SUPPORTED,
    Setting,
    at_least,
    distinct,
    final_step,
    ladder,
    resolve,
)
from ._regularize_torch import regularize_torch

__all__ = ["SUPPORTED", "regularize"]


def regularize(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    progress: Progress | None = None,
    seed: int = 0,
) -> RetrainResult:
    """Refit ``bundle``'s advanced model with stronger regularization chosen on ``recent``.

    Parameters
    ----------
    bundle
        The champion; it is never changed.
    recent
        Labelled recent records, e.g. ``sidecar.recent_data(bundle, store)``.
    progress
        Called as ``progress(step, fraction)`` while settings are fitted.
    seed
        Seeds what the refit draws at random (an estimator's ``random_state``
        when it has none, torch's initialisation and batches).

    Returns
    -------
    RetrainResult
        The candidate bundle (parent: ``bundle``) and its training report.
    """
    started = time.perf_counter()
    step = progress_of(progress)
    if bundle.advanced.framework == "torch":
        return regularize_torch(bundle, recent, step, seed, started)
    estimator = getattr(bundle.advanced, "estimator", None)
    if bundle.advanced.framework != "sklearn" or estimator is None:
        raise AdapterError(
            f"{STRATEGY} does not support {bundle.advanced.framework} models; it supports "
            f"{', '.join(SUPPORTED)}."
        )
    check_task(bundle, estimator)
    prefix, final = final_step(estimator)
    settings, current = ladder(final)
    step("checking the recent data", 0.0)
    data = prepare(bundle, recent, strategy=STRATEGY)
    fit_started = time.perf_counter()
    n_rows = len(data.X_train)
    current = resolve(current, n_rows)
    settings = distinct([resolve(s, n_rows) for s in settings], current)
    if not settings:
        raise AdapterError(
            f"{STRATEGY} found no setting of this {type(final).__name__} stronger than its own "
            f"({_shown(current)})."
        )
    base_params: Setting = {}
    if "random_state" in final.get_params(deep=False) and final.random_state is None:
        base_params["random_state"] = seed
    refit = _Refit(estimator, prefix, base_params)
    metric = selection_metric(bundle, has_proba=hasattr(estimator, "predict_proba"))
    search, at = _search(refit, current, settings, data, metric, step)
    chosen = settings[at]
    step("refitting the chosen setting", (len(settings) + 1) / (len(settings) + 2))
    model = refit(chosen, data.X_fit, data.y_fit)
    train_time = time.perf_counter() - fit_started
    pairs = {
        prefix + k: (current.get(k), v)
        for k, v in {**base_params, **chosen}.items()
        if current.get(k) != v
    }
    scores = (search[at + 1]["score"], search[0]["score"])
    summary = _summary(estimator, prefix, len(data.X_fit), metric, pairs, scores)
    return finish(
        bundle,
        data,
        model,
        strategy=STRATEGY,
        started=started,
        train_time_s=train_time,
        summary=summary,
        changes={k: {"from": to_jsonable(a), "to": to_jsonable(b)} for k, (a, b) in pairs.items()},
        search=search,
        notes=refit.notes,
        progress=step,
    )


@dataclass
class _Refit:
    """Fits a fresh clone of ``estimator`` with a setting of its (final step's) parameters."""

    estimator: Any
    prefix: str
    base_params: Setting
    notes: list[str] = field(default_factory=list)

    def __call__(self, setting: Setting, X: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.base import clone

        model = clone(self.estimator)
        params = {**self.base_params, **setting}
        model.set_params(**{self.prefix + k: v for k, v in params.items()})
        with fit_warnings(self.notes):
            model.fit(X, y)
        return model


def _search(
    refit: Callable[[Setting, np.ndarray, np.ndarray], Any],
    current: Setting,
    settings: list[Setting],
    data: TrainingData,
    metric: str,
    step: Progress,
) -> tuple[list[dict[str, Any]], int]:
    """Every setting's validation score, the current one first, and the best one's index.

    Ties go to the later -- stronger -- setting; the current one is never chosen.
    """
    higher = higher_is_better(metric)
    total = len(settings) + 2
    step("refitting the current setting", 1 / total)
    own = _val_score(refit(current, data.X_train, data.y_train), data, metric)
    search = [{"setting": _shown(current), "score": own, "current": True, "chosen": False}]
    best: tuple[float, int] | None = None
    for i, setting in enumerate(settings):
        step(f"fitting setting {i + 1}/{len(settings)}", (i + 2) / total)
        value = _val_score(refit(setting, data.X_train, data.y_train), data, metric)
        search.append({"setting": _shown(setting), "score": value, "chosen": False})
        if best is None or at_least(value, best[0], higher):
            best = (value, i)
    assert best is not None
    search[best[1] + 1]["chosen"] = True
    return search, best[1]


def _summary(
    estimator: Any,
    prefix: str,
    n_fit: int,
    metric: str,
    pairs: dict[str, tuple[Any, Any]],
    scores: tuple[float, float],
) -> str:
    """What changed, from what to what, and the chosen and the current setting's scores."""
    where = f" of the pipeline's final step {prefix[:-2]!r}" if prefix else ""
    return (
        f"refitted {type(estimator).__name__}{where} on {n_fit} recent rows with "
        "stronger regularization: "
        + ", ".join(f"{k} {_text(a)} -> {_text(b)}" for k, (a, b) in pairs.items())
        + f" (chosen on validation {metric}: {scores[0]:.4g} vs {scores[1]:.4g} for the "
        "current setting)"
    )


def _text(value: Any) -> str:
    """A setting's value in the summary: ``inf`` for an infinite ``C``, NumPy scalars plain."""
    return str(value.item() if isinstance(value, np.generic) else value)


def _val_score(model: Any, data: TrainingData, metric: str) -> float:
    if data.task == "classification":
        proba = model.predict_proba(data.X_val) if hasattr(model, "predict_proba") else None
        if proba is not None:
            pred = np.argmax(proba, axis=1)
        else:
            pred = _codes(model.predict(data.X_val), data)
        return score(metric, data, data.c_val, pred, proba)
    return score(metric, data, data.c_val, np.asarray(model.predict(data.X_val)), None)


def _codes(labels: np.ndarray, data: TrainingData) -> np.ndarray:
    assert data.classes is not None
    order = np.argsort(data.classes)
    return np.asarray(order[np.searchsorted(data.classes[order], labels)], dtype=np.intp)


def _shown(setting: Setting) -> dict[str, Any]:
    return {k: to_jsonable(v) for k, v in setting.items()}
