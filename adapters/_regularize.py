"""Regularize: refit the same model family with stronger regularization, chosen on recent data.

The overfitting path. Each supported family has a short ladder of settings,
each stronger than the model's own (smaller ``C``, larger ``alpha``, shallower
trees with bigger leaves, ...). Every setting is fitted on the train part of
the recent data and scored with the plan's primary metric on the validation
part (both by time, see :mod:`adapters._base`); the best is refitted on train
and validation together. The model's own setting, refitted the same way, is
scored too and shown in the report, but never chosen: this adapter's answer is
always a more regularized model, and the report says whether it is better.

scikit-learn models are rebuilt with :func:`sklearn.base.clone` and
``set_params`` -- trained weights are never copied. For a ``Pipeline`` the
final step is regularized and the whole pipeline refitted, the other steps
keeping their parameters. A PyTorch module saved with a factory is retrained
from a fresh module with AdamW weight decay (and a higher dropout when the
factory takes a ``dropout`` argument) chosen the same way.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import sidecar
from sidecar import AdapterError

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

__all__ = ["SUPPORTED", "regularize"]

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
        return _regularize_torch(bundle, recent, step, seed, started)
    estimator = getattr(bundle.advanced, "estimator", None)
    if bundle.advanced.framework != "sklearn" or estimator is None:
        raise AdapterError(
            f"{STRATEGY} does not support {bundle.advanced.framework} models; it supports "
            f"{', '.join(SUPPORTED)}."
        )
    check_task(bundle, estimator)
    prefix, final = _final_step(estimator)
    ladder, current = _ladder(final)
    step("checking the recent data", 0.0)
    data = prepare(bundle, recent, strategy=STRATEGY)
    fit_started = time.perf_counter()
    n_rows = len(data.X_train)
    current = _resolve(current, n_rows)
    ladder = _distinct([_resolve(s, n_rows) for s in ladder], current)
    if not ladder:
        raise AdapterError(
            f"{STRATEGY} found no setting of this {type(final).__name__} stronger than its own "
            f"({_shown(current)})."
        )
    base_params: Setting = {}
    if "random_state" in final.get_params(deep=False) and final.random_state is None:
        base_params["random_state"] = seed
    metric = selection_metric(bundle, has_proba=hasattr(estimator, "predict_proba"))
    higher = higher_is_better(metric)
    notes: list[str] = []
    search: list[dict[str, Any]] = []
    total = len(ladder) + 2

    def fitted(setting: Setting, X: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.base import clone

        model = clone(estimator)
        params = {**base_params, **setting}
        model.set_params(**{prefix + k: v for k, v in params.items()})
        with fit_warnings(notes):
            model.fit(X, y)
        return model

    step("refitting the current setting", 1 / total)
    own = _val_score(fitted(current, data.X_train, data.y_train), data, metric)
    search.append({"setting": _shown(current), "score": own, "current": True, "chosen": False})
    best: tuple[float, int] | None = None
    for i, setting in enumerate(ladder):
        step(f"fitting setting {i + 1}/{len(ladder)}", (i + 2) / total)
        value = _val_score(fitted(setting, data.X_train, data.y_train), data, metric)
        search.append({"setting": _shown(setting), "score": value, "chosen": False})
        # ties go to the later -- stronger -- setting
        if best is None or _at_least(value, best[0], higher):
            best = (value, i)
    assert best is not None
    chosen = ladder[best[1]]
    search[best[1] + 1]["chosen"] = True
    step("refitting the chosen setting", (total - 1) / total)
    model = fitted(chosen, data.X_fit, data.y_fit)
    train_time = time.perf_counter() - fit_started
    changes = {
        (prefix + k): {"from": _jsonable(current.get(k)), "to": _jsonable(v)}
        for k, v in {**base_params, **chosen}.items()
        if current.get(k) != v
    }
    where = f" of the pipeline's final step {prefix[:-2]!r}" if prefix else ""
    summary = (
        f"refitted {type(estimator).__name__}{where} on {len(data.X_fit)} recent rows with "
        f"stronger regularization: "
        + ", ".join(f"{k} {c['from']} -> {c['to']}" for k, c in changes.items())
        + f" (chosen on validation {metric}: {best[0]:.4g} vs {own:.4g} for the current setting)"
    )
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


def _at_least(value: float, best: float, higher: bool) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value >= best if higher else value <= best


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
    return {k: _jsonable(v) for k, v in setting.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


# --------------------------------------------------------------------------- ladders


def _final_step(estimator: Any) -> tuple[str, Any]:
    """``("step__", final)`` for a Pipeline, ``("", estimator)`` otherwise."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        name, final = estimator.steps[-1]
        if isinstance(final, Pipeline):
            inner, last = _final_step(final)
            return f"{name}__{inner}", last
        return f"{name}__", final
    return "", estimator


@dataclass(frozen=True)
class _Lazy:
    """A parameter value that depends on the number of training rows (a leaf fraction)."""

    make: Callable[[int], Any]


def _resolve(setting: Setting, n_rows: int) -> Setting:
    return {k: (v.make(n_rows) if isinstance(v, _Lazy) else v) for k, v in setting.items()}


def _distinct(ladder: list[Setting], current: Setting) -> list[Setting]:
    """The ladder without repeats and without the current setting, in order."""
    out: list[Setting] = []
    for s in ladder:
        if s != current and s not in out:
            out.append(s)
    return out


def _ladder(model: Any) -> tuple[list[Setting], Setting]:
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


# --------------------------------------------------------------------------- torch

#: AdamW weight decays tried (the module's own training is unknown, so all are "stronger"
#: than none); each with the module's dropout and, when the factory takes one, a higher one.
WEIGHT_DECAYS = (1e-2, 1e-1, 1.0)


def _import(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise AdapterError(f"cannot import the module factory {path!r}: {exc}") from exc
    return obj


def _regularize_torch(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    step: Progress,
    seed: int,
    started: float,
) -> RetrainResult:
    advanced: Any = bundle.advanced
    factory_path = getattr(advanced, "factory", None)
    if not factory_path:
        raise AdapterError(
            f"{STRATEGY} retrains a PyTorch module from its factory; this one is TorchScript "
            "(no factory to build a fresh module from). Wrap the module with "
            "model_options={'factory': 'package.module:function', 'factory_kwargs': {...}}."
        )
    factory = _import(factory_path)
    kwargs: dict[str, Any] = dict(getattr(advanced, "factory_kwargs", {}) or {})
    output = getattr(advanced, "output", "logits")
    step("checking the recent data", 0.0)
    data = prepare(bundle, recent, strategy=STRATEGY)
    fit_started = time.perf_counter()
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    takes_dropout = signature is not None and "dropout" in signature.parameters
    d0: float | None = None
    if takes_dropout:
        assert signature is not None
        default = signature.parameters["dropout"].default
        d0 = float(kwargs.get("dropout", 0.0 if default is inspect.Parameter.empty else default))
    dropouts: list[float | None] = [None]
    if d0 is not None:
        dropouts = [d0, round(min(0.5, max(d0 + 0.2, 0.3)), 3)]
    ladder = [(wd, dr) for dr in dropouts for wd in WEIGHT_DECAYS]
    metric = selection_metric(bundle, has_proba=bundle.task == "classification")
    higher = higher_is_better(metric)
    search: list[dict[str, Any]] = []
    best: tuple[float, int] | None = None
    total = len(ladder) + 1
    for i, (wd, dr) in enumerate(ladder):
        step(f"training setting {i + 1}/{len(ladder)}", (i + 1) / total)
        module = _train_torch(
            factory, kwargs, dr, wd, data.X_train, data.c_train, data, output, seed
        )
        value = _torch_score(module, data, metric, output)
        search.append(
            {"setting": {"weight_decay": wd, "dropout": dr}, "score": value, "chosen": False}
        )
        if best is None or _at_least(value, best[0], higher):
            best = (value, i)
    assert best is not None
    wd, dr = ladder[best[1]]
    search[best[1]]["chosen"] = True
    step("retraining the chosen setting", total / (total + 1))
    module = _train_torch(factory, kwargs, dr, wd, data.X_fit, data.c_fit, data, output, seed)
    train_time = time.perf_counter() - fit_started
    new_kwargs = dict(kwargs)
    changes: dict[str, Any] = {"weight_decay": {"from": None, "to": wd}}
    if dr is not None:
        new_kwargs["dropout"] = dr
        if dr != d0:
            changes["dropout"] = {"from": d0, "to": dr}
    summary = (
        f"retrained a fresh {type(module).__name__} from {factory_path} on {len(data.X_fit)} "
        f"recent rows with AdamW weight decay {wd:g}"
        + (f" and dropout {dr:g}" if dr is not None else "")
        + f" (chosen on validation {metric}: {best[0]:.4g})"
    )
    return finish(
        bundle,
        data,
        module,
        strategy=STRATEGY,
        started=started,
        train_time_s=train_time,
        summary=summary,
        changes=changes,
        search=search,
        framework="torch",
        model_options={"factory": factory_path, "factory_kwargs": new_kwargs, "output": output},
        progress=step,
    )


#: Training budget of a torch setting: small modules on tabular rows, CPU-fast.
EPOCHS = 40
BATCH = 128
LR = 5e-3


def _train_torch(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    dropout: float | None,
    weight_decay: float,
    X: np.ndarray,
    target: np.ndarray,
    data: TrainingData,
    output: str,
    seed: int,
) -> Any:
    import torch

    torch.manual_seed(seed)
    build = dict(kwargs)
    if dropout is not None:
        build["dropout"] = dropout
    module = factory(**build)
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=LR, weight_decay=weight_decay)
    xs = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if data.task == "classification":
        ys = torch.from_numpy(np.asarray(target, dtype=np.int64))
    else:
        ys = torch.from_numpy(np.asarray(target, dtype=np.float32))
    generator = torch.Generator().manual_seed(seed)
    n = len(xs)
    for _ in range(EPOCHS):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, BATCH):
            idx = order[start : start + BATCH]
            out = module(xs[idx])
            loss = _torch_loss(torch, out, ys[idx], data.task, output)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return module.eval()


def _torch_loss(torch: Any, out: Any, y: Any, task: str, output: str) -> Any:
    if task == "regression":
        return torch.nn.functional.mse_loss(out.reshape(len(y), -1)[:, 0], y)
    if output == "probabilities":
        return torch.nn.functional.nll_loss(torch.log(out.clamp_min(1e-12)), y)
    return torch.nn.functional.cross_entropy(out, y)


def _torch_score(module: Any, data: TrainingData, metric: str, output: str) -> float:
    import torch

    with torch.inference_mode():
        out = module(torch.from_numpy(np.ascontiguousarray(data.X_val, dtype=np.float32)))
    values = out.detach().cpu().numpy().astype(np.float64)
    if data.task == "regression":
        return score(metric, data, data.c_val, values.reshape(len(values), -1)[:, 0], None)
    if output == "logits":
        values = values - values.max(axis=1, keepdims=True)
        values = np.exp(values)
        values /= values.sum(axis=1, keepdims=True)
    return score(metric, data, data.c_val, np.argmax(values, axis=1), values)
