"""What every retraining adapter shares: checks, progress, warnings and the one ``finish``.

The data side (the time-ordered split, :func:`prepare`, scoring) lives in
:mod:`adapters._data`, the results in :mod:`adapters._report`; both are
re-exported here. Every adapter ends in :func:`finish`, which builds the
candidate -- its advanced model, its baseline refitted on the same window, and
its reference from the holdout -- and reports champion against candidate.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

import sidecar
from sidecar import AdapterError

from ._data import (
    HOLDOUT,
    MIN_ROWS,
    VALIDATION,
    TrainingData,
    evaluate,
    higher_is_better,
    prepare,
    score,
    selection_metric,
    time_split,
)
from ._report import RetrainResult, TrainingReport

__all__ = [
    "HOLDOUT",
    "MIN_ROWS",
    "VALIDATION",
    "Progress",
    "RetrainResult",
    "TrainingData",
    "TrainingReport",
    "check_task",
    "evaluate",
    "finish",
    "fit_warnings",
    "higher_is_better",
    "prepare",
    "progress_of",
    "refit_baseline",
    "score",
    "selection_metric",
    "sklearn_estimator",
    "time_split",
    "unsupported",
]

#: A progress callback: ``progress(step, fraction)`` with ``fraction`` in [0, 1].
Progress = Callable[[str, float], None]


# --------------------------------------------------------------------------- checks


def sklearn_estimator(bundle: sidecar.Bundle, strategy: str, supported: Sequence[str]) -> Any:
    """The bundle's scikit-learn estimator, its task checked; AdapterError otherwise."""
    advanced = bundle.advanced
    estimator = getattr(advanced, "estimator", None)
    if advanced.framework != "sklearn" or estimator is None:
        raise AdapterError(
            f"{strategy} supports scikit-learn models ({', '.join(supported)}); this bundle's "
            f"advanced model is a {advanced.framework} model."
        )
    check_task(bundle, estimator)
    return estimator


def check_task(bundle: sidecar.Bundle, estimator: Any) -> None:
    """Refuse a bundle whose task does not match what its estimator is."""
    from sklearn.base import is_classifier, is_regressor

    kind = getattr(estimator, "task", None)
    if not isinstance(kind, str):
        kind = (
            "classification"
            if is_classifier(estimator)
            else "regression"
            if is_regressor(estimator)
            else None
        )
    if kind is not None and kind != bundle.task:
        raise AdapterError(
            f"task mismatch: the bundle's task is {bundle.task!r} but its advanced model "
            f"{type(estimator).__name__} is a {kind} model. Re-wrap it with task={kind!r}."
        )


def unsupported(strategy: str, model: Any, supported: Sequence[str]) -> AdapterError:
    """The error for a model family a strategy does not know."""
    return AdapterError(
        f"{strategy} does not support {type(model).__name__}; it supports {', '.join(supported)}."
    )


# --------------------------------------------------------------------------- progress, warnings


def progress_of(progress: Progress | None) -> Progress:
    """A callback that is never None and never sees a fraction outside [0, 1]."""

    def report(step: str, fraction: float) -> None:
        if progress is not None:
            progress(step, min(1.0, max(0.0, float(fraction))))

    return report


@contextmanager
def fit_warnings(notes: list[str]) -> Iterator[None]:
    """Turn scikit-learn's ConvergenceWarning during a fit into a report note.

    A fit that stopped at its iteration limit is worth telling the operator,
    once, in the report -- not a warning per setting tried. Other warnings pass.
    """
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            text = f"a fit did not converge: {str(w.message).splitlines()[0]}"
            if text not in notes:
                notes.append(text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# --------------------------------------------------------------------------- the candidate


def refit_baseline(
    bundle: sidecar.Bundle,
    data: TrainingData,
    notes: list[str],
    *,
    fallback: Callable[[], Any] | None = None,
) -> Any:
    """A clone of the champion's baseline fitted on train + validation; None keeps the old one.

    A baseline that cannot be refitted (not scikit-learn, or its fit fails) is
    kept, and ``notes`` say why. With ``fallback`` -- the classes changed, so the
    old baseline cannot be kept -- one that is not scikit-learn is replaced by
    ``fallback()`` fitted on the same rows, and a failing fit is an error.
    """
    from sklearn.base import clone

    baseline = bundle.baseline
    estimator = getattr(baseline, "estimator", None)  # only the sklearn runtime has one
    if estimator is None and fallback is None:
        notes.append(
            f"the baseline was kept: a {baseline.framework} baseline cannot be refitted here"
        )
        return None
    replaced = estimator is None
    if estimator is None:
        assert fallback is not None
        estimator = fallback()
    try:
        with fit_warnings(notes):
            fitted = clone(estimator).fit(data.X_fit, data.y_fit)
    except ValueError as exc:
        if fallback is not None:
            raise
        notes.append(f"the baseline was kept: refitting it on the window failed ({exc})")
        return None
    name, n = _estimator_name(estimator), len(data.X_fit)
    notes.append(
        f"the classes changed and a {baseline.framework} baseline cannot be refitted here, so "
        f"it was replaced by a {name} fitted on the {n} recent train and validation rows"
        if replaced
        else f"the classes changed, so the baseline ({name}) was refitted on the {n} recent "
        "train and validation rows"
        if fallback is not None
        else f"the baseline ({name}) was refitted on the same {n} rows as the model; "
        f"the reference is the {len(data.X_hold)}-row holdout"
    )
    return fitted


def _estimator_name(estimator: Any) -> str:
    """``LogisticRegression``; a pipeline by its steps: ``StandardScaler + LogisticRegression``."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return " + ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


def finish(
    bundle: sidecar.Bundle,
    data: TrainingData,
    model: Any,
    *,
    strategy: str,
    started: float,
    train_time_s: float,
    summary: str,
    changes: Mapping[str, Any],
    search: Sequence[Mapping[str, Any]] = (),
    notes: Sequence[str] = (),
    framework: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    candidate_of: Callable[[list[str]], sidecar.Bundle] | None = None,
    classes: tuple[Any, ...] | None = None,
) -> RetrainResult:
    """Make the candidate bundle from ``model`` and report champion vs candidate on the holdout.

    The one way every adapter makes its candidate: ``bundle.with_models(
    advanced=model, baseline=..., reference=holdout)`` -- a new version whose
    parent is the champion, with the same preprocessing and plan, whose baseline
    is a clone of the champion's refitted on the same rows as the model (train
    and validation: the window the adapter learnt from), and whose reference is
    computed from the holdout of that window. A baseline that cannot be
    refitted (not scikit-learn) is kept, and the report says so. Nothing of the
    champion is changed or written.

    A candidate with other classes than the champion (fine-tuning with
    ``new_classes``) cannot come from ``with_models``, which keeps the
    champion's classes: ``candidate_of(notes)`` builds it instead, and both
    models are scored on ``classes`` (the union of theirs), each giving
    probability 0 to the classes it does not know.
    """
    import time

    report = progress_of(progress)
    report("building the candidate", 0.95)
    all_notes = [*data.notes, *notes]
    if candidate_of is None:
        candidate = bundle.with_models(
            advanced=model,
            baseline=refit_baseline(bundle, data, all_notes),
            reference=(data.holdout_records, data.holdout_labels),
            framework=framework,
            model_options=model_options,
        )
    else:
        candidate = candidate_of(all_notes)
    champion_metrics, candidate_metrics = _holdout_scores(
        bundle, candidate, data, classes, all_notes
    )
    plan = bundle.plan
    result = RetrainResult(
        candidate=candidate,
        report=TrainingReport(
            strategy=strategy,
            wall_time_s=time.perf_counter() - started,
            train_time_s=train_time_s,
            summary=summary,
            changes=dict(changes),
            n_train=len(data.X_train),
            n_validation=len(data.X_val),
            n_holdout=len(data.X_hold),
            primary_metric=plan.primary_metric,
            higher_is_better=plan.higher_is_better,
            min_effect=float(plan.min_effect),
            champion=champion_metrics,
            candidate=candidate_metrics,
            search=tuple(search),
            notes=tuple(all_notes),
            parent_version=bundle.version,
        ),
    )
    report("done", 1.0)
    return result


def _holdout_scores(
    bundle: sidecar.Bundle,
    candidate: sidecar.Bundle,
    data: TrainingData,
    classes: tuple[Any, ...] | None,
    notes: list[str],
) -> tuple[dict[str, float], dict[str, float]]:
    """Champion's and candidate's metrics on the holdout (on ``classes`` when given)."""
    X, y = data.X_hold, data.y_hold
    if classes is None:
        champion, notes_a = evaluate(bundle, bundle.advanced, X, y)
        candidate_, notes_b = evaluate(bundle, candidate.advanced, X, y)
    else:
        notes.append(
            f"champion and candidate are scored on the union of their classes {list(classes)}, "
            "each giving probability 0 to the classes it does not know"
        )
        champion, notes_a = evaluate(
            bundle, Padded(bundle.advanced, classes), X, y, classes=classes
        )
        candidate_, notes_b = evaluate(
            bundle, Padded(candidate.advanced, classes), X, y, classes=classes
        )
    notes += dict.fromkeys(notes_a + notes_b)
    return champion, candidate_


class Padded:
    """A predictor's output with its probability columns placed among ``union``'s classes."""

    def __init__(self, predictor: Any, union: tuple[Any, ...]) -> None:
        self.predictor = predictor
        self.columns = [union.index(c) for c in predictor.classes]
        self.width = len(union)

    def infer(self, X: np.ndarray) -> sidecar.ModelOutput:
        out = self.predictor.infer(X)
        proba = out.probabilities
        if proba is not None:
            padded = np.zeros((len(proba), self.width))
            padded[:, self.columns] = proba
            proba = padded
        return sidecar.ModelOutput(out.predictions, proba)
