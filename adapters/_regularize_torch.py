"""Regularize a PyTorch module: retrain a fresh one with AdamW weight decay (and dropout).

The module's own training is unknown, so every weight decay of
:data:`WEIGHT_DECAYS` counts as stronger than none; each is tried with the
module's dropout and, when the factory takes a ``dropout`` argument, a higher
one. Every setting trains a fresh module from the factory on the train part,
with the adapters' one loop (:func:`adapters._torch_loop.train_epochs`), and
is scored on the validation part; the best is retrained on train and
validation together.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

import sidecar
from sidecar import AdapterError

from ._base import (
    Progress,
    RetrainResult,
    TrainingData,
    finish,
    higher_is_better,
    prepare,
    score,
    selection_metric,
)
from ._finetune_network import import_factory
from ._regularize_ladders import STRATEGY, at_least
from ._torch_loop import loss_function, tensor, train_epochs

if TYPE_CHECKING:
    from torch import nn

__all__ = ["WEIGHT_DECAYS", "regularize_torch"]

#: AdamW weight decays tried (the module's own training is unknown, so all are "stronger"
#: than none); each with the module's dropout and, when the factory takes one, a higher one.
WEIGHT_DECAYS = (1e-2, 1e-1, 1.0)
#: Training budget of a torch setting: small modules on tabular rows, CPU-fast.
EPOCHS = 40
BATCH = 128
LR = 5e-3

#: A torch setting: (weight decay, dropout or None when the factory takes none).
TorchSetting = tuple[float, float | None]


def regularize_torch(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    step: Progress,
    seed: int,
    started: float,
) -> RetrainResult:
    """:func:`adapters.regularize` for a PyTorch module saved with a factory."""
    advanced: Any = bundle.advanced
    factory_path = getattr(advanced, "factory", None)
    if not factory_path:
        raise AdapterError(
            f"{STRATEGY} retrains a PyTorch module from its factory; this one is TorchScript "
            "(no factory to build a fresh module from). Wrap the module with "
            "model_options={'factory': 'package.module:function', 'factory_kwargs': {...}}."
        )
    factory = import_factory(factory_path)
    kwargs: dict[str, Any] = dict(getattr(advanced, "factory_kwargs", {}) or {})
    output = getattr(advanced, "output", "logits")
    step("checking the recent data", 0.0)
    data = prepare(bundle, recent, strategy=STRATEGY)
    fit_started = time.perf_counter()
    d0 = _own_dropout(factory, kwargs)
    dropouts: list[float | None] = [None]
    if d0 is not None:
        dropouts = [d0, round(min(0.5, max(d0 + 0.2, 0.3)), 3)]
    ladder = [(wd, dr) for dr in dropouts for wd in WEIGHT_DECAYS]
    metric = selection_metric(bundle, has_proba=bundle.task == "classification")

    def train(setting: TorchSetting, X: np.ndarray, target: np.ndarray) -> nn.Module:
        wd, dr = setting
        return _train(factory, kwargs, dr, wd, (X, target), data.task, output, seed)

    def scored(setting: TorchSetting) -> float:
        return _score(train(setting, data.X_train, data.c_train), data, metric, output)

    chosen, value, search = _choose(ladder, scored, higher_is_better(metric), step)
    wd, dr = chosen
    step("retraining the chosen setting", (len(ladder) + 1) / (len(ladder) + 2))
    module = train(chosen, data.X_fit, data.c_fit)
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
        + f" (chosen on validation {metric}: {value:.4g})"
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


def _own_dropout(factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> float | None:
    """The module's dropout when the factory takes a ``dropout`` argument, else None."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if "dropout" not in signature.parameters:
        return None
    default = signature.parameters["dropout"].default
    return float(kwargs.get("dropout", 0.0 if default is inspect.Parameter.empty else default))


def _choose(
    ladder: list[TorchSetting],
    scored: Callable[[TorchSetting], float],
    higher: bool,
    step: Progress,
) -> tuple[TorchSetting, float, list[dict[str, Any]]]:
    """The best setting of ``ladder`` on validation (ties to the later), its score, the search."""
    search: list[dict[str, Any]] = []
    best: tuple[float, int] | None = None
    total = len(ladder) + 1
    for i, (wd, dr) in enumerate(ladder):
        step(f"training setting {i + 1}/{len(ladder)}", (i + 1) / total)
        value = scored((wd, dr))
        search.append(
            {"setting": {"weight_decay": wd, "dropout": dr}, "score": value, "chosen": False}
        )
        if best is None or at_least(value, best[0], higher):
            best = (value, i)
    assert best is not None
    search[best[1]]["chosen"] = True
    return ladder[best[1]], best[0], search


def _train(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    dropout: float | None,
    weight_decay: float,
    train: tuple[np.ndarray, np.ndarray],
    task: str,
    output: str,
    seed: int,
) -> nn.Module:
    """A fresh module from the factory, trained by AdamW for :data:`EPOCHS` epochs."""
    import torch

    torch.manual_seed(seed)
    build = dict(kwargs)
    if dropout is not None:
        build["dropout"] = dropout
    module: nn.Module = factory(**build)
    optimizer = torch.optim.AdamW(module.parameters(), lr=LR, weight_decay=weight_decay)
    X, target = train
    xs = tensor(X, np.float32)
    ys = tensor(target, np.int64 if task == "classification" else np.float32)
    train_epochs(
        module,
        [module],
        optimizer,
        (xs, ys),
        loss_function(output, task),
        batch_size=BATCH,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        epochs=EPOCHS,
    )
    return module.eval()


def _score(module: Any, data: TrainingData, metric: str, output: str) -> float:
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
