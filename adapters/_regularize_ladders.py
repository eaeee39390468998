"""The strength ladders of :func:`adapters.regularize`: settings stronger than a model's own.

Each supported family has a short ladder of settings, each stronger than the
model's own (smaller ``C``, larger ``alpha``, shallower trees with bigger
leaves, ...), mild to strong. :func:`ladder` returns it with the model's own
setting; :func:`resolve` fills the values that depend on the number of
training rows, and :func:`distinct` drops repeats and the model's own.

>>> from sklearn.linear_model import Ridge
>>> steps, own = ladder(Ridge(alpha=1.0))
>>> own, steps[0], len(steps)
({'alpha': 1.0}, {'alpha': 3.0}, 5)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar import AdapterError

__all__ = [
    "STRATEGY",
    "SUPPORTED",
    "Setting",
    "at_least",
    "distinct",
    "final_step",
    "ladder",
    "resolve",
]

STRATEGY = "regularize"

#: The model families :func:`regularize` knows, by class name.
SUPPORTED = (
    "LogisticRegression",
    "LinearSVC",
    "SVC",
    "Ridge",
    "RidgeClassifier",
    "Lasso",
    "ElasticNet",
    "LinearSVR",
    "SVR",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "MLPClassifier",
    "MLPRegressor",
    "Pipeline (of any of these as its final step)",
    "torch.nn.Module with a factory (AdamW weight decay, dropout)",
)

Setting = dict[str, Any]


def at_least(value: float, best: float, higher: bool) -> bool:
    """``value`` is as good as ``best`` or better; NaN is worst (ties go to the later setting)."""
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value >= best if higher else value <= best


def final_step(estimator: Any) -> tuple[str, Any]:
    """``("step__", final)`` for a Pipeline, ``("", estimator)`` otherwise."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        name, final = estimator.steps[-1]
        if isinstance(final, Pipeline):
            inner, last = final_step(final)
            return f"{name}__{inner}", last
        return f"{name}__", final
    return "", estimator


@dataclass(frozen=True)
class _Lazy:
    """A parameter value that depends on the number of training rows (a leaf fraction)."""

    make: Callable[[int], Any]


def resolve(setting: Setting, n_rows: int) -> Setting:
    """``setting`` with the values that depend on the number of training rows filled in."""
    return {k: (v.make(n_rows) if isinstance(v, _Lazy) else v) for k, v in setting.items()}


def distinct(settings: list[Setting], current: Setting) -> list[Setting]:
    """The ladder without repeats and without the current setting, in order."""
    out: list[Setting] = []
    for s in settings:
        if s != current and s not in out:
            out.append(s)
    return out


def ladder(model: Any) -> tuple[list[Setting], Setting]:
    """Settings stronger than ``model``'s own, mild to strong, and its own setting."""
    name = type(model).__name__
    for family, build in _LADDERS:
        if name in family:
            return build(model)
    raise AdapterError(f"{STRATEGY} does not support {name}; it supports {', '.join(SUPPORTED)}.")


def _c_ladder(model: Any) -> tuple[list[Setting], Setting]:
    params = model.get_params(deep=False)
    c0 = float(params["C"])
    fixes: Setting = {}
    penalty = params.get("penalty", "deprecated")
    if type(model).__name__ == "LogisticRegression" and penalty != "deprecated":
        # scikit-learn >= 1.8 deprecates `penalty`: say the same with l1_ratio / C
        fixes = {"penalty": "deprecated"}
        if penalty is None:
            c0 = math.inf
            fixes["l1_ratio"] = 0.0
        elif penalty in ("l1", "l2"):
            fixes["l1_ratio"] = 1.0 if penalty == "l1" else 0.0
    if type(model).__name__ == "LogisticRegression" and params.get("l1_ratio", 0.0) is None:
        fixes["l1_ratio"] = 0.0
    # the current setting in today's spelling: refitting it must mean the same model
    current = {**fixes, "C": c0}
    if math.isinf(c0):
        values = [100.0, 10.0, 1.0, 0.1, 0.01]
    else:
        values = [c0 / f for f in (3.0, 10.0, 30.0, 100.0, 1000.0)]
    return [{**fixes, "C": v} for v in values], current


def _alpha_ladder(factors: tuple[float, ...], floor: float) -> Callable[[Any], Any]:
    def build(model: Any) -> tuple[list[Setting], Setting]:
        a0 = float(model.get_params(deep=False)["alpha"])
        base = a0 if a0 > 0 else floor
        return [{"alpha": base * f} for f in factors], {"alpha": a0}

    return build


def _fitted_depth(model: Any) -> int:
    trees = getattr(model, "estimators_", None)
    if trees is not None:
        return max(int(t.get_depth()) for t in trees)
    return int(model.get_depth())


def _leaf_share(low: int) -> Callable[[int], int]:
    """Leaves of at least 2% of the train rows (and 3x the model's own minimum)."""

    def make(n_rows: int) -> int:
        return max(3 * low, round(0.02 * n_rows))

    return make


def _tree_ladder(model: Any) -> tuple[list[Setting], Setting]:
    params = model.get_params(deep=False)
    d_set = params["max_depth"]
    d0 = int(d_set) if d_set is not None else _fitted_depth(model)
    leaf0 = params["min_samples_leaf"]
    depths = sorted({max(1, round(d0 * f)) for f in (1.0, 0.66, 0.5, 0.33)}, reverse=True)
    if isinstance(leaf0, float):
        leaves: list[Any] = [leaf0, min(0.5, leaf0 * 3), min(0.5, leaf0 * 10)]
    else:
        leaf_int = int(leaf0)
        # as a row count (at least 2, 5, 10 rows) and as a share of the train part
        leaves = [leaf_int, max(leaf_int * 3, 3), max(leaf_int * 10, 10)]
        leaves.append(_Lazy(_leaf_share(leaf_int)))
    current: Setting = {"max_depth": d_set, "min_samples_leaf": leaf0}
    ladder = [
        {"max_depth": d, "min_samples_leaf": leaf}
        for leaf, d in itertools.product(leaves, depths)
        if not (d == d0 and not isinstance(leaf, _Lazy) and leaf == leaf0)
    ]
    return ladder, current


def _hgb_ladder(model: Any) -> tuple[list[Setting], Setting]:
    params = model.get_params(deep=False)
    l2, leaves, lr = params["l2_regularization"], params["max_leaf_nodes"], params["learning_rate"]
    l2s = [1.0, 10.0] if l2 == 0 else [l2 * 10, l2 * 100]
    base_leaves = leaves if leaves is not None else 31
    fewer = [max(2, base_leaves // 2), max(2, base_leaves // 4)]
    ladder = [
        {"l2_regularization": l2s[0], "max_leaf_nodes": leaves, "learning_rate": lr},
        {"l2_regularization": l2, "max_leaf_nodes": fewer[0], "learning_rate": lr},
        {"l2_regularization": l2s[0], "max_leaf_nodes": fewer[0], "learning_rate": lr},
        {"l2_regularization": l2s[1], "max_leaf_nodes": fewer[0], "learning_rate": lr},
        {"l2_regularization": l2s[1], "max_leaf_nodes": fewer[1], "learning_rate": lr},
        {"l2_regularization": l2s[0], "max_leaf_nodes": fewer[0], "learning_rate": lr / 2},
        {"l2_regularization": l2s[1], "max_leaf_nodes": fewer[1], "learning_rate": lr / 2},
    ]
    current = {"l2_regularization": l2, "max_leaf_nodes": leaves, "learning_rate": lr}
    return ladder, current


def _gb_ladder(model: Any) -> tuple[list[Setting], Setting]:
    params = model.get_params(deep=False)
    d, sub, lr = params["max_depth"], params["subsample"], params["learning_rate"]
    depth = int(d) if d is not None else 8
    d1, d2 = max(1, depth - 1), max(1, depth - 2)
    s1, s2 = min(sub, 0.8), min(sub, 0.5)
    ladder = [
        {"max_depth": d1, "subsample": sub, "learning_rate": lr},
        {"max_depth": d, "subsample": s1, "learning_rate": lr},
        {"max_depth": d1, "subsample": s1, "learning_rate": lr},
        {"max_depth": d, "subsample": sub, "learning_rate": lr / 2},
        {"max_depth": d1, "subsample": s1, "learning_rate": lr / 2},
        {"max_depth": d2, "subsample": s2, "learning_rate": lr / 2},
    ]
    return ladder, {"max_depth": d, "subsample": sub, "learning_rate": lr}


_LADDERS: tuple[tuple[frozenset[str], Callable[[Any], tuple[list[Setting], Setting]]], ...] = (
    (frozenset({"LogisticRegression", "LinearSVC", "SVC", "LinearSVR", "SVR"}), _c_ladder),
    (
        frozenset({"Ridge", "RidgeClassifier", "Lasso", "ElasticNet"}),
        _alpha_ladder((3.0, 10.0, 30.0, 100.0, 300.0), 1e-3),
    ),
    (frozenset({"MLPClassifier", "MLPRegressor"}), _alpha_ladder((10.0, 100.0, 1e3, 1e4), 1e-4)),
    (
        frozenset(
            {
                "DecisionTreeClassifier",
                "DecisionTreeRegressor",
                "RandomForestClassifier",
                "RandomForestRegressor",
                "ExtraTreesClassifier",
                "ExtraTreesRegressor",
            }
        ),
        _tree_ladder,
    ),
    (
        frozenset({"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}),
        _hgb_ladder,
    ),
    (frozenset({"GradientBoostingClassifier", "GradientBoostingRegressor"}), _gb_ladder),
)
