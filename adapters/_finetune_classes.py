"""Fine-tuning to other classes than the champion's: ``new_classes``.

The head is replaced by a fresh ``nn.Linear`` with one output per class
(classes the champion knew start from its rows), the factory's
``n_classes``/``num_classes`` argument is set to match, and the candidate is
made with :func:`sidecar.wrap` -- ``Bundle.with_models`` keeps the champion's
classes -- with a baseline refitted on the recent data. Champion and candidate
are scored on the union of their classes (:func:`adapters._base.finish`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import sidecar
from sidecar import AdapterError

from ._base import Progress, RetrainResult, TrainingData, finish, refit_baseline
from ._finetune_network import Head, path_of

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "CLASS_KWARGS",
    "Outcome",
    "check_factory_rebuilds",
    "check_labels_known",
    "finish_new_classes",
    "new_class_kwargs",
    "replace_head",
    "sorted_classes",
]

#: Factory arguments that set the number of classes, for ``new_classes``.
CLASS_KWARGS = ("n_classes", "num_classes")


@dataclass(frozen=True)
class Outcome:
    """What the training did, for the report: its clock, summary, changes, search and notes."""

    strategy: str
    started: float
    train_time_s: float
    summary: str
    changes: dict[str, Any]
    search: list[dict[str, Any]]
    notes: list[str]


def sorted_classes(new_classes: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(new_classes, str | bytes) or not isinstance(new_classes, Sequence):
        raise AdapterError(
            f"`new_classes` must be a list of class labels; got {type(new_classes).__name__}."
        )
    values = [v.item() if isinstance(v, np.generic) else v for v in new_classes]
    if len(values) < 2 or len(set(values)) != len(values):
        raise AdapterError(
            f"`new_classes` must hold at least 2 distinct class labels; got {values!r}."
        )
    try:
        return tuple(sorted(values))
    except TypeError as exc:
        raise AdapterError(
            f"`new_classes` must be labels of one sortable type (all int or all str); got "
            f"{values!r}."
        ) from exc


def check_labels_known(recent: sidecar.RecentData, classes: tuple[Any, ...]) -> None:
    labels = getattr(recent, "labels", None)
    if labels is None:
        return  # prepare() names the problem
    known = set(classes)
    extra = sorted({_key(v) for v in np.asarray(labels).tolist()} - known, key=repr)
    if extra:
        raise AdapterError(
            f"`recent.labels` hold class(es) {extra[:10]} that are not in `new_classes` "
            f"{list(classes)}; add them to new_classes (or drop those rows)."
        )


def _key(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def new_class_kwargs(
    factory: Callable[..., Any], kwargs: dict[str, Any], path: str, n: int
) -> dict[str, Any]:
    """The factory arguments for ``n`` classes; AdapterError when the factory takes none."""
    key = next((k for k in CLASS_KWARGS if k in kwargs), None)
    if key is None:
        try:
            params = list(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            params = []
        key = next((k for k in CLASS_KWARGS if k in params), None)
    if key is None:
        raise AdapterError(
            f"`new_classes` needs a factory that takes the number of classes as "
            f"{' or '.join(CLASS_KWARGS)}, so the candidate can be rebuilt; {path!r} takes "
            f"neither (factory_kwargs {kwargs}). Add such an argument to the factory."
        )
    return {**kwargs, key: n}


def replace_head(
    model: nn.Module,
    found: Head,
    old: tuple[Any, ...],
    new: tuple[Any, ...],
    seed: int,
) -> Head:
    """A fresh linear head with one output per class of ``new``; kept classes keep their rows."""
    import torch
    from torch import nn

    old_head = found.module
    if not isinstance(old_head, nn.Linear):
        raise AdapterError(
            f"`new_classes` replaces the head with a new nn.Linear, but the head {found.name!r} "
            f"is a {type(old_head).__name__}; name its final nn.Linear with head='...'."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if found.kind.startswith("timm"):
            model.reset_classifier(len(new))  # type: ignore[operator]
            fresh = model.get_classifier()  # type: ignore[operator]
            if not isinstance(fresh, nn.Linear) or fresh.out_features != len(new):
                raise AdapterError(
                    f"{type(model).__name__}.reset_classifier({len(new)}) must make an "
                    f"nn.Linear with {len(new)} outputs; got {fresh!r}."
                )
        else:
            fresh = nn.Linear(old_head.in_features, len(new), bias=old_head.bias is not None)
            parent_path, _, attr = found.name.rpartition(".")
            setattr(model.get_submodule(parent_path), attr, fresh)
    with torch.no_grad():
        for i, label in enumerate(new):
            if label in old:
                j = old.index(label)
                fresh.weight[i] = old_head.weight[j]
                if fresh.bias is not None and old_head.bias is not None:
                    fresh.bias[i] = old_head.bias[j]
    name = path_of(model, fresh) or found.name
    return Head(name, fresh, found.kind)


def check_factory_rebuilds(
    factory: Callable[..., Any], kwargs: dict[str, Any], path: str, model: nn.Module
) -> None:
    """AdapterError unless ``factory(**kwargs)`` loads ``model``'s weights (its new head too)."""
    try:
        factory(**kwargs).load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise AdapterError(
            f"the factory {path!r} with {kwargs} does not rebuild the network with its new head, "
            f"so the candidate could not be loaded: {exc}"
        ) from exc


def finish_new_classes(
    bundle: sidecar.Bundle,
    data: TrainingData,
    model: nn.Module,
    classes: tuple[Any, ...],
    options: dict[str, Any],
    outcome: Outcome,
    progress: Progress,
) -> RetrainResult:
    """The candidate with other classes than the champion's, and the report, by :func:`finish`.

    ``Bundle.with_models`` keeps the champion's classes, so the candidate is
    made with :func:`sidecar.wrap` and given the champion as its parent; its
    baseline -- the champion's family -- is refitted on the train and
    validation parts. Both models are scored on the union of the old and new
    classes, each giving probability 0 to the classes it does not know.
    """
    old = tuple(bundle.advanced.classes or ())
    return finish(
        bundle,
        data,
        model,
        strategy=outcome.strategy,
        started=outcome.started,
        train_time_s=outcome.train_time_s,
        summary=outcome.summary,
        changes=outcome.changes,
        search=outcome.search,
        notes=outcome.notes,
        progress=progress,
        candidate_of=lambda notes: _candidate(bundle, data, model, classes, options, notes),
        classes=old + tuple(c for c in classes if c not in old),
    )


def _candidate(
    bundle: sidecar.Bundle,
    data: TrainingData,
    model: nn.Module,
    classes: tuple[Any, ...],
    options: dict[str, Any],
    notes: list[str],
) -> sidecar.Bundle:
    """``model`` wrapped with ``classes`` and a refitted baseline; parent: ``bundle``."""
    baseline = refit_baseline(bundle, data, notes, fallback=_logistic)
    made = sidecar.wrap(
        model,
        task=bundle.task,
        preprocessing=bundle.preprocessing,
        reference=(data.holdout_records, data.holdout_labels),
        baseline=baseline,
        name=bundle.name,
        framework="torch",
        classes=list(classes),
        model_options=options,
        plan=bundle.plan,
    )
    return sidecar.Bundle(
        name=made.name,
        task=made.task,
        preprocessing=made.preprocessing,
        advanced=made.advanced,
        baseline=made.baseline,
        reference=made.reference,
        plan=made.plan,
        parent=bundle.version,
        shadow_timeout=bundle.shadow.timeout,
    )


def _logistic() -> Any:
    """The baseline of a champion whose own cannot be refitted: scaled logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
