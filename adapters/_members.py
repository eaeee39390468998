"""Replace members: drop an ensemble's worst members on recent data, train new ones there.

The data-drift and concept-drift path for ensembles. Each member is scored on
the validation part of the recent data (Brier score of its class
probabilities for a classifier, the plan's loss for a regressor); the worst
``k`` are dropped and ``k`` new members trained on the train part take their
place while ``k`` is chosen on the validation part with the plan's primary
metric among 10%, 25%, 50%, 75%, 90% and all of the members (or given); then
the new members are trained again on train and validation together -- the
most recent rows before the holdout -- unless ``final_fit=False``. The report lists
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
    train part (and again on train and validation once ``k`` is chosen); at most
    ``max_new`` distinct new members are trained (by
    default ``max(min(n, 24), n // 8)``), and when ``k`` is larger each new
    member fills several slots in turn, so its vote counts several times --
    a plain average weighs members only by repetition. The forest keeps its
    size: ``len(estimators_) == n_estimators``. The new members are trained
    once on the train part and reused for every ``k`` (nested prefixes), so
    choosing ``k`` costs at most ``max_new`` member fits, and the final fit
    ``min(k, max_new)`` more.
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
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if

import sidecar
from sidecar import AdapterError

from ._base import (
    Progress,
    RetrainResult,
    TrainingData,
    finish,
    prepare,
    progress_of,
    selection_metric,
    sklearn_estimator,
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


# --------------------------------------------------------------------------- the adapter


def replace_members(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    k: int | None = None,
    max_new: int | None = None,
    final_fit: bool = True,
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
    final_fit
        Train the chosen new members (boosting: stages) again on train and
        validation, the most recent rows before the holdout (default); False
        keeps those trained on the train part to choose ``k`` (cheaper).
    progress
        Called as ``progress(step, fraction)``.
    seed
        Seeds the new members.
    """
    from ._members_replacing import replace
    from ._members_stages import replace_stages

    started = time.perf_counter()
    step = progress_of(progress)
    estimator = sklearn_estimator(bundle, STRATEGY, SUPPORTED)
    head, final, family = _parts(bundle, estimator)
    is_gb = family is None
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
    if family is None:
        fit = (
            (np.concatenate([X_train, X_val]), data.y_fit) if final_fit else (X_train, data.y_train)
        )
        done = replace_stages(final, data, X_train, X_val, fit, ks, metric, step, seed, notes)
    else:
        done = replace(
            family, bundle, data, X_train, X_val, ks, metric, max_new, step, seed, notes, final_fit
        )
    new_final, summary, changes, search = done
    train_time = time.perf_counter() - fit_started
    model = new_final
    if head is not None:
        model = copy.copy(estimator)
        model.steps = [*estimator.steps[:-1], (estimator.steps[-1][0], new_final)]
        summary += f" (the final step {estimator.steps[-1][0]!r} of the pipeline)"
    return finish(
        bundle, data, model, strategy=STRATEGY, started=started, train_time_s=train_time,
        summary=summary, changes=changes, search=search, notes=notes, progress=step,
    )  # fmt: skip


def _parts(bundle: sidecar.Bundle, estimator: Any) -> tuple[Any, Any, Any]:
    """A pipeline's head (or None), the ensemble, and its family (None for boosting)."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    from ._members_families import family_of

    head: Any = None
    final = estimator
    if isinstance(estimator, Pipeline):
        head, final = estimator[:-1], estimator.steps[-1][1]
    if isinstance(final, GradientBoostingClassifier | GradientBoostingRegressor):
        return head, final, None
    n_classes = len(bundle.advanced.classes or ()) if bundle.task == "classification" else 0
    return head, final, family_of(final, n_classes)


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
