"""Replace members: drop an ensemble's worst members on recent data, train new ones there.

The data-drift and concept-drift path for ensembles. Each member is scored on
the validation part of the recent data (Brier score of its class
probabilities for a classifier, the plan's loss for a regressor); the worst
``k`` are dropped and ``k`` new members trained on the train part take their
place; ``k`` is chosen on the validation part with the plan's primary metric
among 10%, 25%, 50%, 75%, 90% and all of the members (or given). The report lists
every ``k`` tried, and the champion's own validation score beside them.
Members are scored and ``k`` is chosen on the latest :data:`SCORE_ROWS` rows
before the holdout at most (the earlier validation rows join the train part):
scoring every member is the cost of this adapter that grows with the
ensemble, and a few hundred rows rank members and tell a handful of ``k``
apart.

How each family is handled
--------------------------
Forests (``RandomForest*``, ``ExtraTrees*``) and bagging (``Bagging*``)
    Their members are exchangeable and their vote is a plain average, so after
    a concept change the new members must hold more than half of the vote
    where the old and the new concept disagree. The ``k`` freed slots are
    filled with new members trained by a fresh copy of the same ensemble
    (same parameters, ``n_estimators`` = the number of new members) on the
    train part; at most ``max_new`` distinct new members are trained (by
    default ``max(min(n, 24), n // 8)``), and when ``k`` is larger each new
    member fills several slots in turn, so its vote counts several times --
    a plain average weighs members only by repetition. The forest keeps its
    size: ``len(estimators_) == n_estimators``. The new members are trained
    once, on the train part, and reused for every ``k`` (nested prefixes), so
    the whole adapter costs at most ``max_new`` member fits.
Voting (``VotingClassifier`` soft and hard, ``VotingRegressor``) and :class:`WeightedEnsemble`
    Members differ, so a dropped member is replaced by a clone of itself
    refitted on recent data (on the train part to choose ``k``, then on train
    and validation); names and weights stay.
Gradient boosting (``GradientBoosting*``)
    Stages are sequential: each one corrects the sum of those before it, so
    only the tail can be cut. The last ``k`` stages are dropped and ``k`` new
    ones fitted, with scikit-learn's ``warm_start``, to the residuals that the
    first ``n - k`` stages (and the original prior, ``init_``) leave on the
    recent data -- the same loss, learning rate and tree shape. The chosen
    ``k`` is refitted on train and validation.
A ``Pipeline`` whose final step is one of these
    The other steps are kept as fitted; the final step is replaced.

Traps guarded
-------------
- Classes: forests, bagging and voting classifiers keep their members on
  class *indices*, so new members must see exactly the champion's classes. A
  class missing from the recent data's train part is an :class:`AdapterError`
  naming it (before anything is fitted), a label the model does not know is
  one too, and every new ensemble is checked to have the champion's
  ``classes_``.
- Out-of-bag results (``oob_score_``, ``oob_decision_function_``,
  ``oob_prediction_``, boosting's ``oob_improvement_``/``oob_scores_``)
  described the old members on the old data: they are dropped, and
  ``oob_score`` is set to False. ``estimators_samples_`` would index
  different data sets for old and new members, so the candidate has none.
- ``n_estimators`` always equals ``len(estimators_)`` (and, for bagging,
  ``len(estimators_features_)``).
- The champion is never modified: the candidate is a shallow copy that
  shares the kept (read-only) members and owns its own lists.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if

import sidecar
from sidecar import AdapterError
from sidecar.monitoring import per_example_loss

from ._base import (
    Progress,
    RetrainResult,
    TrainingData,
    finish,
    fit_warnings,
    higher_is_better,
    prepare,
    progress_of,
    score,
    selection_metric,
    sklearn_estimator,
    unsupported,
)

__all__ = ["FRACTIONS", "SUPPORTED", "WeightedEnsemble", "replace_members"]

STRATEGY = "replace-members"

#: The shares of the members tried as ``k`` when ``k`` is not given.
FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
#: Members are scored, and ``k`` chosen, on at most this many of the latest rows before the
#: holdout (earlier validation rows join the train part): enough to rank members and pick
#: among a few ``k``; scoring every member is the cost that grows with the ensemble.
SCORE_ROWS = 500

SUPPORTED = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "BaggingClassifier",
    "BaggingRegressor",
    "VotingClassifier",
    "VotingRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "adapters.WeightedEnsemble",
    "Pipeline (with one of these as its final step)",
)

_OOB = ("oob_score_", "oob_decision_function_", "oob_prediction_")


# --------------------------------------------------------------------------- the container


def _is_classifier(ensemble: WeightedEnsemble) -> bool:
    return ensemble.task == "classification"


class WeightedEnsemble(BaseEstimator):  # type: ignore[misc]
    """A weighted ensemble of fitted models: the project's own container.

    A classifier averages its members' class probabilities with ``weights``
    (a member without ``predict_proba`` votes with its label), matching each
    member's ``classes_`` to ``classes`` by label, so members may even know
    the classes in another order; a regressor averages their predictions.

    Parameters
    ----------
    members
        Fitted estimators with ``predict`` (and ``predict_proba``).
    weights
        One non-negative weight per member (equal weights when None).
    task
        ``"classification"`` or ``"regression"``.
    classes
        The class labels, in the order of the probability columns
        (classification only).

    The members are fitted already, so -- like ``sklearn.frozen.FrozenEstimator``
    -- ``fit`` does nothing and cloning returns the ensemble itself.
    Saved with skops, a bundle holding one must be loaded with
    ``sidecar.load(path, trusted=["adapters._members.WeightedEnsemble"])``.

    >>> from sklearn.dummy import DummyClassifier
    >>> X, y = [[0.0], [1.0], [2.0]], ["a", "b", "b"]
    >>> m = DummyClassifier(strategy="prior").fit(X, y)
    >>> WeightedEnsemble([m, m], [1.0, 3.0], classes=["a", "b"]).predict_proba([[0.0]]).round(3)
    array([[0.333, 0.667]])
    """

    def __init__(
        self,
        members: Sequence[Any] = (),
        weights: Sequence[float] | None = None,
        task: str = "classification",
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.members = members
        self.weights = weights
        self.task = task
        self.classes = classes

    # -- sklearn protocol ------------------------------------------------------------

    def fit(self, X: Any = None, y: Any = None, **fit_params: Any) -> WeightedEnsemble:
        """Check the ensemble and return it: its members are fitted already."""
        self._validated()
        return self

    def __sklearn_clone__(self) -> WeightedEnsemble:
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if self.task == "classification" else "regressor"
        return tags

    @property
    def estimators_(self) -> list[Any]:
        """The members (the name scikit-learn's ensembles give theirs)."""
        return list(self.members)

    @property
    def classes_(self) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("a regression WeightedEnsemble has no classes_")
        return np.asarray(self.classes)

    # -- prediction --------------------------------------------------------------------

    @available_if(_is_classifier)  # type: ignore[untyped-decorator]
    def predict_proba(self, X: Any) -> np.ndarray:
        """Weighted mean of the members' class probabilities, columns in ``classes`` order."""
        weights, classes = self._validated()
        assert classes is not None
        outs = [member_output(m, X, classes) for m in self.members]
        return np.asarray(np.average(np.stack(outs), axis=0, weights=weights))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class (classification) or the weighted mean prediction."""
        weights, classes = self._validated()
        if classes is not None:
            return np.asarray(classes[np.argmax(self.predict_proba(X), axis=1)])
        outs = [np.asarray(m.predict(X), dtype=np.float64) for m in self.members]
        return np.asarray(np.average(np.stack(outs), axis=0, weights=weights))

    def _validated(self) -> tuple[np.ndarray, np.ndarray | None]:
        members = list(self.members)
        if not members:
            raise AdapterError("`members` must hold at least one fitted model; got none.")
        if self.task not in ("classification", "regression"):
            raise AdapterError(
                f"`task` must be 'classification' or 'regression'; got {self.task!r}."
            )
        weights = np.ones(len(members)) if self.weights is None else np.asarray(self.weights)
        if (
            weights.shape != (len(members),)
            or not np.isfinite(weights).all()
            or (weights < 0).any()
            or weights.sum() <= 0
        ):
            raise AdapterError(
                f"`weights` must be {len(members)} finite non-negative numbers, not all zero; "
                f"got {self.weights!r}."
            )
        classes = None
        if self.task == "classification":
            classes = np.asarray(self.classes) if self.classes is not None else None
            if classes is None or classes.ndim != 1 or len(set(classes.tolist())) < 2:
                raise AdapterError(
                    "`classes` must name at least 2 distinct class labels for a classification "
                    f"WeightedEnsemble; got {self.classes!r}."
                )
        return weights.astype(np.float64), classes


def member_output(member: Any, X: Any, classes: np.ndarray) -> np.ndarray:
    """A member's class probabilities as columns of ``classes``, matched by label.

    A member without ``predict_proba`` gives a one-hot row for its label.
    """
    member_classes = np.asarray(member.classes_)
    position = {c: i for i, c in enumerate(classes.tolist())}
    cols = []
    for c in member_classes.tolist():
        if c not in position:
            raise AdapterError(
                f"a member of the ensemble knows class {c!r}, which is not one of the "
                f"ensemble's classes {classes.tolist()}."
            )
        cols.append(position[c])
    n = len(X)
    out = np.zeros((n, len(classes)))
    if hasattr(member, "predict_proba"):
        out[:, cols] = member.predict_proba(X)
    else:
        labels = np.asarray(member.predict(X)).tolist()
        out[np.arange(n), [position[v] for v in labels]] = 1.0
    return out


# --------------------------------------------------------------------------- families


FloatArray = npt.NDArray[np.float64]


def _onehot(codes: np.ndarray, k: int) -> FloatArray:
    out = np.zeros((len(codes), k))
    out[np.arange(len(codes)), np.asarray(codes, dtype=np.intp)] = 1.0
    return out


def _aligned(proba: np.ndarray, member_classes: np.ndarray, k: int) -> FloatArray:
    """Probabilities over class indices ``member_classes`` as ``k`` columns."""
    if proba.shape[1] == k:
        return np.asarray(proba, dtype=np.float64)
    out = np.zeros((len(proba), k))
    out[:, np.asarray(member_classes, dtype=np.intp)] = proba
    return out


@dataclass
class _Family:
    """How one ensemble family is read, scored, refilled and rebuilt.

    ``members`` are the slots; ``output(i_or_member, X)`` gives a member's
    class-index probabilities (or values); ``combine`` averages outputs the way
    the ensemble does; ``pool`` says whether new members come from a fresh
    ensemble (forests, bagging) or from refitting the dropped member itself.
    """

    estimator: Any
    members: list[Any]
    n_classes: int
    pool: bool
    weights: FloatArray | None = None
    soft: bool = True
    features: list[Any] | None = None

    @property
    def n(self) -> int:
        return len(self.members)

    def combine(self, outputs: Sequence[FloatArray]) -> FloatArray:
        stack = np.stack(outputs)
        if self.weights is None:
            return np.asarray(stack.mean(axis=0))
        return np.asarray(np.average(stack, axis=0, weights=self.weights))

    def output(self, member: Any, features: Any, X: FloatArray, X32: Any) -> FloatArray:
        from sklearn.tree import BaseDecisionTree

        if features is not None:
            X = X[:, features]
            X32 = None
        if self.n_classes == 0:
            if isinstance(member, BaseDecisionTree) and X32 is not None:
                return np.asarray(member.predict(X32, check_input=False), dtype=np.float64)
            return np.asarray(member.predict(X), dtype=np.float64)
        if isinstance(self.estimator, WeightedEnsemble):
            return member_output(member, X, np.asarray(self.estimator.classes))
        if not self.soft or not hasattr(member, "predict_proba"):
            return _onehot(np.asarray(member.predict(X)), self.n_classes)
        if isinstance(member, BaseDecisionTree) and X32 is not None:
            proba = member.predict_proba(X32, check_input=False)
        else:
            proba = member.predict_proba(X)
        return _aligned(np.asarray(proba), member.classes_, self.n_classes)

    def outputs(self, X: FloatArray) -> list[FloatArray]:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        feats = self.features or [None] * self.n
        return [self.output(m, f, X, X32) for m, f in zip(self.members, feats, strict=True)]


def _family(estimator: Any, n_classes: int) -> _Family:
    from sklearn.ensemble import (
        BaggingClassifier,
        BaggingRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
        VotingClassifier,
        VotingRegressor,
    )

    if isinstance(
        estimator,
        RandomForestClassifier | RandomForestRegressor | ExtraTreesClassifier | ExtraTreesRegressor,
    ):
        if getattr(estimator, "n_outputs_", 1) != 1:
            raise AdapterError(
                f"{STRATEGY} supports single-output forests; this {type(estimator).__name__} "
                f"has {estimator.n_outputs_} outputs."
            )
        return _Family(estimator, list(estimator.estimators_), n_classes, pool=True)
    if isinstance(estimator, BaggingClassifier | BaggingRegressor):
        return _Family(
            estimator,
            list(estimator.estimators_),
            n_classes,
            pool=True,
            features=list(estimator.estimators_features_),
        )
    if isinstance(estimator, VotingClassifier | VotingRegressor):
        weights = None
        if estimator.weights is not None:
            kept = [
                w
                for (_, est), w in zip(estimator.estimators, estimator.weights, strict=True)
                if est != "drop"
            ]
            weights = np.asarray(kept, dtype=np.float64)
        soft = not isinstance(estimator, VotingClassifier) or estimator.voting == "soft"
        return _Family(
            estimator,
            list(estimator.estimators_),
            n_classes,
            pool=False,
            weights=weights,
            soft=soft,
        )
    if isinstance(estimator, WeightedEnsemble):
        weights, _ = estimator._validated()
        return _Family(estimator, list(estimator.members), n_classes, pool=False, weights=weights)
    raise unsupported(STRATEGY, estimator, SUPPORTED)


# --------------------------------------------------------------------------- the adapter


def replace_members(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    k: int | None = None,
    max_new: int | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> RetrainResult:
    """Drop the ensemble's worst ``k`` members on ``recent`` and train ``k`` new ones there.

    Parameters
    ----------
    bundle
        The champion, whose advanced model is a supported ensemble; never changed.
    recent
        Labelled recent records, oldest first (``sidecar.recent_data``).
    k
        How many members (boosting: tail stages) to replace; chosen on the
        validation part among :data:`FRACTIONS` of the members when None.
    max_new
        Forests and bagging only: the most distinct new members trained
        (see the module docstring); ``max(min(n, 24), n // 8)`` when None.
    progress
        Called as ``progress(step, fraction)``.
    seed
        Seeds the new members.
    """
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    started = time.perf_counter()
    step = progress_of(progress)
    estimator = sklearn_estimator(bundle, STRATEGY, SUPPORTED)
    head: Any = None
    final = estimator
    if isinstance(estimator, Pipeline):
        head, final = estimator[:-1], estimator.steps[-1][1]
    is_gb = isinstance(final, GradientBoostingClassifier | GradientBoostingRegressor)
    n_classes = len(bundle.advanced.classes or ()) if bundle.task == "classification" else 0
    family = None if is_gb else _family(final, n_classes)
    n = int(final.n_estimators_) if family is None else family.n
    if n < 2:
        raise AdapterError(f"{STRATEGY} needs an ensemble of at least 2 members; this has {n}.")
    ks = _ks(n, k)
    step("checking the recent data", 0.0)
    data = prepare(bundle, recent, strategy=STRATEGY)
    fit_started = time.perf_counter()
    if not is_gb:
        data = _score_on_latest(data, SCORE_ROWS)
    X_train, X_val = data.X_train, data.X_val
    if head is not None:
        X_train, X_val = head.transform(X_train), head.transform(X_val)
    metric = selection_metric(bundle, has_proba=hasattr(estimator, "predict_proba"))
    notes: list[str] = []
    if is_gb:
        X_fit = np.concatenate([X_train, X_val])
        new_final, summary, changes, search = _replace_stages(
            final, data, X_train, X_val, X_fit, ks, metric, step, seed, notes
        )
    else:
        assert family is not None
        new_final, summary, changes, search = _replace(
            family, bundle, data, X_train, X_val, ks, metric, max_new, step, seed, notes
        )
    train_time = time.perf_counter() - fit_started
    model = new_final
    if head is not None:
        model = copy.copy(estimator)
        model.steps = [*estimator.steps[:-1], (estimator.steps[-1][0], new_final)]
        summary += f" (the final step {estimator.steps[-1][0]!r} of the pipeline)"
    return finish(
        bundle,
        data,
        model,
        strategy=STRATEGY,
        started=started,
        train_time_s=train_time,
        summary=summary,
        changes=changes,
        search=search,
        notes=notes,
        progress=step,
    )


def _score_on_latest(data: TrainingData, rows: int) -> TrainingData:
    """Score on the latest ``rows`` validation rows; the earlier ones join the train part."""
    cut = len(data.X_val) - rows
    if cut <= 0:
        return data
    return dataclasses.replace(
        data,
        X_train=np.concatenate([data.X_train, data.X_val[:cut]]),
        y_train=np.concatenate([data.y_train, data.y_val[:cut]]),
        c_train=np.concatenate([data.c_train, data.c_val[:cut]]),
        X_val=data.X_val[cut:],
        y_val=data.y_val[cut:],
        c_val=data.c_val[cut:],
    )


def _ks(n: int, k: int | None) -> list[int]:
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n:
            raise AdapterError(f"`k` must be an integer in [1, {n}] (the members); got {k!r}.")
        return [int(k)]
    return sorted({min(n, max(1, round(f * n))) for f in FRACTIONS})


def _member_losses(outputs: Sequence[FloatArray], data: TrainingData, loss: str) -> FloatArray:
    """Each member's mean loss on the validation part (higher: worse)."""
    if data.task == "classification":
        truth = _onehot(data.c_val, data.n_classes)
        return np.asarray([float(np.mean(np.sum((o - truth) ** 2, axis=1))) for o in outputs])
    return np.asarray([float(np.mean(per_example_loss(loss, data.c_val, o))) for o in outputs])


def _score_outputs(combined: FloatArray, data: TrainingData, metric: str, soft: bool) -> float:
    if data.task == "regression":
        return score(metric, data, data.c_val, combined, None)
    pred = np.argmax(combined, axis=1)
    return score(metric, data, data.c_val, pred, combined if soft else None)


def _better(value: float, best: float, higher: bool) -> bool:
    """Strictly better (ties keep the smaller, cheaper ``k``)."""
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if higher else value < best


def _replace(
    family: _Family,
    bundle: sidecar.Bundle,
    data: TrainingData,
    X_train: FloatArray,
    X_val: FloatArray,
    ks: list[int],
    metric: str,
    max_new: int | None,
    step: Progress,
    seed: int,
    notes: list[str],
) -> tuple[Any, str, dict[str, Any], list[dict[str, Any]]]:
    step("data members on recent data", 0.05)
    old = family.outputs(X_val)
    losses = _member_losses(old, data, bundle.plan.loss)
    worst = [int(i) for i in np.argsort(-losses, kind="stable")]
    soft = family.soft
    higher = higher_is_better(metric)
    own = _score_outputs(family.combine(old), data, metric, soft)
    search: list[dict[str, Any]] = [{"k": 0, "score": own, "current": True, "chosen": False}]
    n, k_max = family.n, max(ks)
    m = 0
    new_members: list[Any] = []
    new_features: list[Any] = []
    new_outs: list[FloatArray] = []
    refit_outs: dict[int, FloatArray] = {}
    # new members: for pools, m distinct ones trained once; for slots, a refit per slot
    step("training new members", 0.15)
    if family.pool:
        m = _max_new(n, max_new, k_max)
        fresh = _fresh_pool(family.estimator, X_train, data.y_train, m, seed, notes)
        new_members = list(fresh.estimators_)
        new_features = list(getattr(fresh, "estimators_features_", [None] * m))
        X32 = np.ascontiguousarray(X_val, dtype=np.float32)
        new_outs = [
            family.output(mem, f, X_val, X32)
            for mem, f in zip(new_members, new_features, strict=True)
        ]
    else:
        refits = {
            slot: _refit(family, slot, X_train, data.c_train, data.y_train, notes)
            for slot in worst[:k_max]
        }
        refit_outs = {slot: family.output(mem, None, X_val, None) for slot, mem in refits.items()}
    step("choosing k on the validation part", 0.6)
    best: tuple[float, int] | None = None
    for k in ks:
        outs = list(old)
        for j, slot in enumerate(worst[:k]):
            if family.pool:
                outs[slot] = new_outs[j % min(k, m)]
            else:
                outs[slot] = refit_outs[slot]
        value = _score_outputs(family.combine(outs), data, metric, soft)
        entry: dict[str, Any] = {"k": k, "score": value, "chosen": False}
        if family.pool:
            entry["new_members"] = min(k, m)
        search.append(entry)
        if best is None or _better(value, best[0], higher):
            best = (value, k)
    assert best is not None
    k = best[1]
    next(s for s in search if s["k"] == k and not s.get("current"))["chosen"] = True
    dropped = sorted(worst[:k])
    step("building the candidate", 0.85)
    name = type(family.estimator).__name__
    if family.pool:
        m_k = min(k, m)
        slots_members = list(family.members)
        slots_features = list(family.features) if family.features is not None else None
        for j, slot in enumerate(worst[:k]):
            slots_members[slot] = new_members[j % m_k]
            if slots_features is not None:
                slots_features[slot] = new_features[j % m_k]
        new = _pool_candidate(family.estimator, slots_members, slots_features)
        per = [k // m_k + (1 if j < k % m_k else 0) for j in range(m_k)]
        changes: dict[str, Any] = {
            "replaced": k,
            "n_estimators": n,
            "dropped_slots": dropped,
            "new_members": m_k,
            "slots_per_new_member": {"min": min(per), "max": max(per)},
            "new_members_trained_on": len(X_train),
        }
        if any(hasattr(family.estimator, a) for a in _OOB):
            changes["oob_score"] = "dropped (it described the old members on the old data)"
        summary = (
            f"dropped the {k} of {n} members of the {name} that scored worst on recent data "
            f"and filled their slots with {m_k} new members trained on the {len(X_train)} "
            f"earliest recent rows"
            + (f" (each holding {min(per)}-{max(per)} slots)" if m_k < k else "")
            + f"; the new members carry {k / n:.0%} of the vote. Chosen on validation "
            f"{metric}: {best[0]:.4g} (champion {own:.4g})."
        )
    else:
        step("refitting the chosen members on train and validation", 0.75)
        members = list(family.members)
        X_fit = np.concatenate([X_train, X_val])
        for slot in worst[:k]:
            members[slot] = _refit(family, slot, X_fit, data.c_fit, data.y_fit, notes)
        new = _slot_candidate(family.estimator, members)
        names = _member_names(family.estimator)
        changes = {
            "replaced": k,
            "members": n,
            "refitted": [names[s] for s in dropped],
            "refitted_on": len(X_fit),
        }
        summary = (
            f"refitted the {k} of {n} members of the {name} that scored worst on recent data "
            f"({', '.join(names[s] for s in dropped)}) on {len(X_fit)} recent rows; the other "
            f"members and the weights are unchanged. Chosen on validation {metric}: "
            f"{best[0]:.4g} (champion {own:.4g})."
        )
    if bundle.task == "classification":
        _check_classes(family.estimator, new)
    return new, summary, changes, search


def _max_new(n: int, max_new: int | None, k_max: int) -> int:
    if max_new is None:
        max_new = max(min(n, 24), n // 8)
    if isinstance(max_new, bool) or not isinstance(max_new, int | np.integer) or max_new < 1:
        raise AdapterError(f"`max_new` must be a positive integer; got {max_new!r}.")
    return int(min(max_new, k_max))


def _fresh_pool(
    estimator: Any, X: FloatArray, y: np.ndarray, m: int, seed: int, notes: list[str]
) -> Any:
    """A fresh ensemble of ``m`` members with the champion's parameters, fitted on ``X``."""
    from sklearn.base import clone

    fresh = clone(estimator)
    params = fresh.get_params(deep=False)
    update: dict[str, Any] = {"n_estimators": m, "warm_start": False}
    if "oob_score" in params:
        update["oob_score"] = False
    update["random_state"] = np.random.RandomState(seed).randint(2**31 - 1)
    fresh.set_params(**update)
    try:
        with fit_warnings(notes):
            fresh.fit(X, y)
    except ValueError as exc:
        raise AdapterError(f"training new members on the recent data failed: {exc}") from exc
    if hasattr(estimator, "classes_"):
        _check_classes(estimator, fresh)
    return fresh


def _refit(
    family: _Family,
    slot: int,
    X: FloatArray,
    codes: np.ndarray,
    labels: np.ndarray,
    notes: list[str],
) -> Any:
    """A clone of the member in ``slot`` fitted on recent rows (voting: on class indices)."""
    from sklearn.base import clone
    from sklearn.ensemble import VotingClassifier

    member = family.members[slot]
    # VotingClassifier fits its members on label-encoded targets (le_), i.e. class indices
    target = codes if isinstance(family.estimator, VotingClassifier) else labels
    try:
        with fit_warnings(notes):
            return clone(member).fit(X, target)
    except ValueError as exc:
        raise AdapterError(
            f"refitting member {_member_names(family.estimator)[slot]!r} "
            f"({type(member).__name__}) on the recent data failed: {exc}"
        ) from exc


def _member_names(estimator: Any) -> list[str]:
    named = getattr(estimator, "estimators", None)
    if isinstance(named, list) and named and isinstance(named[0], tuple):
        return [name for name, est in named if est != "drop"]
    members = estimator.members if isinstance(estimator, WeightedEnsemble) else []
    return [f"members[{i}]" for i in range(len(members))]


def _drop_stale(new: Any) -> None:
    for attr in _OOB:
        new.__dict__.pop(attr, None)
    if new.get_params(deep=False).get("oob_score"):
        new.oob_score = False


def _pool_candidate(estimator: Any, members: list[Any], features: list[Any] | None) -> Any:
    """A shallow copy of the forest/bagging ensemble with new member lists."""
    new = copy.copy(estimator)
    new.estimators_ = list(members)
    new.n_estimators = len(members)
    if features is not None:
        new.estimators_features_ = list(features)
        # estimators_samples_ is drawn again from these seeds over the *original* data
        new.__dict__.pop("_seeds", None)
    else:
        # a forest's estimators_samples_ replays each tree's seed over `_n_samples` rows
        new.__dict__.pop("_n_samples", None)
    _drop_stale(new)
    return new


def _slot_candidate(estimator: Any, members: list[Any]) -> Any:
    from sklearn.utils import Bunch

    if isinstance(estimator, WeightedEnsemble):
        return WeightedEnsemble(
            members=members,
            weights=None if estimator.weights is None else list(estimator.weights),
            task=estimator.task,
            classes=estimator.classes,
        )
    new = copy.copy(estimator)
    new.estimators_ = list(members)
    new.named_estimators_ = Bunch(**dict(zip(_member_names(estimator), members, strict=True)))
    return new


def _check_classes(champion: Any, new: Any) -> None:
    old = np.asarray(champion.classes_)
    got = np.asarray(new.classes_)
    if old.shape != got.shape or not np.array_equal(old, got):
        raise AdapterError(
            f"the new members know the classes {got.tolist()}, not the champion's "
            f"{old.tolist()}; refusing a candidate whose classes_ would be misaligned."
        )


# --------------------------------------------------------------------------- boosting


def _replace_stages(
    gb: Any,
    data: TrainingData,
    X_train: FloatArray,
    X_val: FloatArray,
    X_fit: FloatArray,
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
        value = val_score(_cut_and_grow(gb, n - k, X_train, data.y_train, seed, notes))
        search.append({"k": k, "score": value, "chosen": False})
        if best is None or _better(value, best[0], higher):
            best = (value, k)
    assert best is not None
    k = best[1]
    next(s for s in search if s["k"] == k and not s.get("current"))["chosen"] = True
    step("refitting the chosen stages on train and validation", 0.75)
    new = _cut_and_grow(gb, n - k, X_fit, data.y_fit, seed, notes)
    if classify:
        _check_classes(gb, new)
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


def _cut_and_grow(
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
