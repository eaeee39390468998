"""Making a bundle: :func:`wrap` a fitted model with its preprocessing, a baseline and a
reference, and the pieces a derived version shares with it (the reference, the
default plan)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._errors import InputError
from .._frames import as_records
from ..monitoring._plan import MonitoringPlan, default_plan
from ..preprocessing import Preprocessor, SklearnPreprocessor, TabularPreprocessor, read_spec
from ..runtimes import Predictor, as_predictor
from ._reference import Reference

if TYPE_CHECKING:
    import numpy.typing as npt

    from ._bundle import Bundle

__all__ = ["compute_reference", "default_plan_for", "wrap"]

Records = Sequence[Mapping[str, Any]]


def wrap(
    model: Any,
    *,
    task: str,
    preprocessing: Preprocessor | Any,
    reference: tuple[Records | Any, npt.ArrayLike],
    train: tuple[Records | Any, npt.ArrayLike] | None = None,
    baseline: str | Any = "auto",
    name: str = "model",
    framework: str | None = None,
    classes: Sequence[Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    plan: MonitoringPlan | str | os.PathLike[str] | None = None,
) -> Bundle:
    """Wrap a fitted ``model`` with its preprocessing, a baseline and a reference.

    Parameters
    ----------
    model
        The advanced model: a scikit-learn estimator, a ``torch.nn.Module``, an
        ONNX model, or a callable (or its import path). See
        :func:`sidecar.runtimes.as_predictor`.
    task
        ``"classification"`` or ``"regression"``.
    preprocessing
        A :class:`~sidecar.preprocessing.TabularPreprocessor` (fitted on
        ``train`` if it is not yet), a spec file path, or a fitted
        scikit-learn transformer.
    reference
        ``(records, labels)`` held out from training: what "normal" looks like.
    train
        ``(records, labels)`` the model was trained on; needed to fit the
        preprocessing and an automatic baseline.
    baseline
        ``"auto"`` / ``"linear"`` / ``"tree"`` to fit one on ``train``, or a fitted
        scikit-learn model taking the preprocessed features.
    plan
        The monitoring plan (a :class:`~sidecar.monitoring.MonitoringPlan` or a
        plan file); the task's default plan when left out.
    framework, classes, model_options
        Passed to the runtime: the framework when it cannot be guessed, the
        class labels of a non-scikit-learn classifier (the sorted training
        labels by default), and options such as torch's ``factory``.
    """
    from ..runtimes._base import check_task
    from ._bundle import Bundle  # the class imports this module

    checked_task = check_task(task)
    ref_records, y_ref = _labelled("reference", reference)
    if len(ref_records) < 2:
        raise InputError(f"`reference` must hold at least 2 records; got {len(ref_records)}.")
    train_records, y_train = _labelled("train", train) if train is not None else (None, None)
    pre = _as_preprocessor(preprocessing, train_records, ref_records)
    if classes is None and checked_task == "classification":
        labels = y_train if y_train is not None else y_ref
        classes = tuple(np.unique(labels).tolist())
    advanced = as_predictor(
        model,
        task=checked_task,
        framework=framework,
        classes=tuple(classes) if classes is not None else None,
        **dict(model_options or {}),
    )
    base = _baseline(baseline, pre, train_records, y_train, checked_task)
    if checked_task == "classification":
        _check_classes(advanced, base)
    ref = compute_reference(pre, checked_task, ref_records, y_ref, advanced, base)
    return Bundle(
        name=name,
        task=checked_task,
        preprocessing=pre,
        advanced=advanced,
        baseline=base,
        reference=ref,
        plan=_plan(plan, checked_task),
    )


def compute_reference(
    pre: Preprocessor,
    task: str,
    records: Records,
    y: np.ndarray,
    advanced: Predictor,
    baseline: Predictor,
) -> Reference:
    """What "normal" looks like: the held-out ``records`` and labels ``y`` through
    ``pre`` and both models."""
    X, report = pre.transform_with_report(records)
    return Reference.compute(
        task=task,
        records=records,
        input_fields=pre.input_fields,
        features=X,
        feature_names=pre.feature_names_out or [f"x{j}" for j in range(X.shape[1])],
        categorical_fields=pre.categorical_fields,
        unknown=report.unknown,
        y=y,
        outputs={"advanced": advanced.infer(X), "baseline": baseline.infer(X)},
        classes=advanced.classes,
        canonical=pre.canonical_values if isinstance(pre, TabularPreprocessor) else None,
    )


def default_plan_for(task: str, reference: Reference) -> MonitoringPlan:
    """The task's default plan, its bounds set around the advanced model's reference value."""
    error = reference.arrays.get("advanced:error")
    value = None
    if error is not None and len(error):
        # accuracy for a classifier; the median absolute error for a regressor
        value = float(1.0 - error.mean()) if task == "classification" else float(np.median(error))
    return default_plan(task, reference_metric=value)


def _labelled(name: str, pair: tuple[Records | Any, npt.ArrayLike]) -> tuple[Records, np.ndarray]:
    """``(records, labels)`` as records and an array, one label per record."""
    records, y = as_records(pair[0]), np.asarray(pair[1])
    if len(records) != len(y):
        raise InputError(
            f"`{name}` labels must have one entry per record ({len(records)}); got {len(y)}."
        )
    return records, y


def _baseline(
    baseline: str | Any,
    pre: Preprocessor,
    train: Records | None,
    y_train: np.ndarray | None,
    task: str,
) -> Predictor:
    """A baseline fitted on ``train`` (``baseline`` names its kind), or the one given."""
    from ._baseline import BaselineKind, fit_baseline

    if not isinstance(baseline, str):
        return as_predictor(baseline, task=task)
    if train is None or y_train is None:
        raise InputError(
            f"`train` must be given to fit baseline={baseline!r}; got train=None "
            "(or pass a fitted baseline model)."
        )
    fitted = fit_baseline(
        pre.transform(train), y_train, task=task, kind=cast(BaselineKind, baseline)
    )
    return as_predictor(fitted, task=task, framework="sklearn")


def _check_classes(advanced: Predictor, base: Predictor) -> None:
    if (
        advanced.classes is not None
        and base.classes is not None
        and list(base.classes) != list(advanced.classes)
    ):
        raise InputError(
            f"the baseline must know the classes of the advanced model {list(advanced.classes)}; "
            f"got {list(base.classes)}."
        )


def _plan(plan: MonitoringPlan | str | os.PathLike[str] | None, task: str) -> MonitoringPlan | None:
    if plan is not None and not isinstance(plan, MonitoringPlan):
        from ..monitoring._plan import read_plan

        plan = read_plan(plan)
    if plan is not None and plan.task != task:
        raise InputError(f"the plan's task must be {task!r}; got {plan.task!r}.")
    return plan


def _as_preprocessor(preprocessing: Any, train: Records | None, ref: Records) -> Preprocessor:
    if isinstance(preprocessing, str | os.PathLike):
        preprocessing = read_spec(preprocessing)
    if isinstance(preprocessing, TabularPreprocessor):
        if not hasattr(preprocessing, "vocabularies_"):
            if train is None:
                raise InputError(
                    "`train` must be given to fit the preprocessing (it is not fitted yet); "
                    "got train=None."
                )
            preprocessing.fit(train)
        return preprocessing
    if isinstance(preprocessing, SklearnPreprocessor):
        return preprocessing
    if hasattr(preprocessing, "transform") and hasattr(preprocessing, "fit"):
        names = getattr(preprocessing, "feature_names_in_", None)
        fields = None if names is not None else list((train or ref)[0].keys())
        return SklearnPreprocessor(preprocessing, input_fields=fields)
    if isinstance(preprocessing, Preprocessor):
        return preprocessing
    raise InputError(
        "`preprocessing` must be a TabularPreprocessor, a spec file path or a fitted "
        f"scikit-learn transformer; got {type(preprocessing).__name__}."
    )
