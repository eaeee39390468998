"""How each ensemble family of ``replace-members`` is read, scored, refilled and rebuilt.

A :class:`Family` holds an ensemble's members as slots and knows how to get
each member's output on recent rows (class-index probabilities or values),
how the ensemble combines them, and whether new members come from a fresh
copy of the ensemble (forests, bagging: a *pool*) or from refitting the
dropped member itself (voting, :class:`WeightedEnsemble`: *slots*). The
helpers below build the candidate from new member lists without touching the
champion.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar import AdapterError

from ._base import fit_warnings, unsupported
from ._members import STRATEGY, SUPPORTED, WeightedEnsemble, member_output

__all__ = [
    "OOB",
    "Family",
    "FloatArray",
    "check_classes",
    "family_of",
    "fresh_pool",
    "member_names",
    "onehot",
    "pool_candidate",
    "refit",
    "slot_candidate",
]

OOB = ("oob_score_", "oob_decision_function_", "oob_prediction_")

FloatArray = npt.NDArray[np.float64]


def onehot(codes: np.ndarray, k: int) -> FloatArray:
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
class Family:
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
            return onehot(np.asarray(member.predict(X)), self.n_classes)
        if isinstance(member, BaseDecisionTree) and X32 is not None:
            proba = member.predict_proba(X32, check_input=False)
        else:
            proba = member.predict_proba(X)
        return _aligned(np.asarray(proba), member.classes_, self.n_classes)

    def outputs(self, X: FloatArray) -> list[FloatArray]:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        feats = self.features or [None] * self.n
        return [self.output(m, f, X, X32) for m, f in zip(self.members, feats, strict=True)]


def family_of(estimator: Any, n_classes: int) -> Family:
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
        return Family(estimator, list(estimator.estimators_), n_classes, pool=True)
    if isinstance(estimator, BaggingClassifier | BaggingRegressor):
        return Family(
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
        return Family(
            estimator,
            list(estimator.estimators_),
            n_classes,
            pool=False,
            weights=weights,
            soft=soft,
        )
    if isinstance(estimator, WeightedEnsemble):
        weights, _ = estimator._validated()
        return Family(estimator, list(estimator.members), n_classes, pool=False, weights=weights)
    raise unsupported(STRATEGY, estimator, SUPPORTED)


def fresh_pool(
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
        check_classes(estimator, fresh)
    return fresh


def refit(
    family: Family,
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
            f"refitting member {member_names(family.estimator)[slot]!r} "
            f"({type(member).__name__}) on the recent data failed: {exc}"
        ) from exc


def member_names(estimator: Any) -> list[str]:
    named = getattr(estimator, "estimators", None)
    if isinstance(named, list) and named and isinstance(named[0], tuple):
        return [name for name, est in named if est != "drop"]
    members = estimator.members if isinstance(estimator, WeightedEnsemble) else []
    return [f"members[{i}]" for i in range(len(members))]


def _drop_stale(new: Any) -> None:
    for attr in OOB:
        new.__dict__.pop(attr, None)
    if new.get_params(deep=False).get("oob_score"):
        new.oob_score = False


def pool_candidate(estimator: Any, members: list[Any], features: list[Any] | None) -> Any:
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


def slot_candidate(estimator: Any, members: list[Any]) -> Any:
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
    new.named_estimators_ = Bunch(**dict(zip(member_names(estimator), members, strict=True)))
    return new


def check_classes(champion: Any, new: Any) -> None:
    old = np.asarray(champion.classes_)
    got = np.asarray(new.classes_)
    if old.shape != got.shape or not np.array_equal(old, got):
        raise AdapterError(
            f"the new members know the classes {got.tolist()}, not the champion's "
            f"{old.tolist()}; refusing a candidate whose classes_ would be misaligned."
        )
