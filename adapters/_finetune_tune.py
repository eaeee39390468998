"""Train some submodules of a network in place, the rest frozen: :func:`tune`.

Frozen modules stay in eval mode (their BatchNorm statistics do not move);
the ``trainable`` ones train. When the head is all that trains, its input is
caught with a forward pre-hook and computed once, in one pass over the train
and validation parts, and every epoch trains the head alone on those cached
features. A forward pass checks first that the model's output is the head's
output on those features (nothing transforms it afterwards); if not, training
runs through the whole model, backbone still frozen.

A cached ``nn.Linear`` head over logits is a convex problem, solved by
L-BFGS (:mod:`adapters._finetune_solver`) when ``solver="auto"``. Otherwise
Adam runs epochs of the adapters' one loop (:func:`adapters._torch_loop.train_epochs`),
mini-batches shuffled within the train part, early stopping on the
validation loss, the best epoch's weights restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._finetune_config import HEAD_LR
from ._finetune_solver import solve_head, standardize, unstandardize
from ._torch_loop import loss_function, tensor, train_epochs, validate

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Fit", "TuneConfig", "tune"]


@dataclass(frozen=True)
class TuneConfig:
    """How :func:`tune` trains: the loss, Adam's budget, the device, the seed.

    ``output`` is what the model emits (``"logits"`` or ``"probabilities"``);
    ``epochs``, ``lr``, ``patience`` drive Adam; ``batch_size`` is also the
    batch of the feature pass; ``refit`` refits the chosen setting on train and
    validation when features are cached; ``solver`` is ``"auto"`` (L-BFGS for
    a cached linear head over logits) or ``"adam"``. ``device`` defaults to the CPU.
    """

    output: str = "logits"
    epochs: int = 30
    lr: float = HEAD_LR
    batch_size: int = 128
    patience: int = 4
    device: torch.device | None = None
    seed: int = 0
    refit: bool = False
    solver: str = "auto"


@dataclass
class Fit:
    """What :func:`tune` did: epochs, the best one, and whether features were cached."""

    cached: bool
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    #: forward passes of the whole network over training or validation rows
    backbone_passes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the chosen setting was refitted on train and validation
    refitted: bool = False
    #: ``"adam"`` (epochs) or ``"lbfgs"`` (a linear head on cached features)
    solver: str = "adam"
    #: the L2 penalty chosen for an L-BFGS head, and its loss evaluations in all
    l2: float | None = None
    evaluations: int = 0


@dataclass(frozen=True)
class _Trainee:
    """What Adam steps: the network, what it runs forward, the modules and parameters trained."""

    model: nn.Module
    forward: nn.Module
    trainable: Sequence[nn.Module]
    params: list[torch.nn.Parameter]
    device: torch.device


def tune(
    model: nn.Module,
    trainable: Sequence[nn.Module],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    head: nn.Module | None,
    config: TuneConfig | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Fit:
    """Train the ``trainable`` submodules of ``model`` in place; everything else stays frozen.

    When ``head`` is given and is all that trains, its input is cached in one
    pass and the training runs on the head alone. With ``config.refit`` and
    cached features, the chosen setting (penalty, or number of epochs) is then
    refitted on train and validation together -- the way the other adapters
    refit a chosen setting -- which costs a few passes over cached features
    and uses every labelled row. The model ends on the CPU in eval mode, with
    its ``requires_grad`` flags as before. ``y_*`` are class indices into the
    model's outputs.
    """
    import torch

    config = config if config is not None else TuneConfig()
    dev = config.device if config.device is not None else torch.device("cpu")
    grads = {id(p): p.requires_grad for p in model.parameters()}
    params: list[torch.nn.Parameter] = []
    for p in model.parameters():
        p.requires_grad_(False)
    for module in trainable:
        for p in module.parameters():
            if not p.requires_grad:
                p.requires_grad_(True)
                params.append(p)
    train = (tensor(X_train, np.float32), tensor(y_train, np.int64))
    val = (tensor(X_val, np.float32), tensor(y_val, np.int64))
    fit = Fit(cached=False)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(config.seed)
            model.to(dev)
            model.eval()
            trainee = _Trainee(model, model, trainable, params, dev)
            _train(fit, trainee, train, val, head, config, progress)
    finally:
        model.eval()
        model.to("cpu")
        for p in model.parameters():
            p.requires_grad_(grads.get(id(p), True))
    return fit


def _train(
    fit: Fit,
    trainee: _Trainee,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    head: nn.Module | None,
    config: TuneConfig,
    progress: Callable[[str, float], None] | None,
) -> None:
    """Cache the head's input when it alone trains, then solve it or run Adam epochs."""
    import torch

    cached = None
    if head is not None and list(trainee.trainable) == [head]:
        cached, reason = _features(
            trainee.model, head, (train[0], val[0]), config.batch_size, trainee.device
        )
        fit.backbone_passes = 1
        if cached is None:
            fit.notes.append(f"backbone features not cached: {reason}")
    fit.cached = cached is not None
    if head is None or cached is None:
        _adam(fit, trainee, train, val, config, progress, refit=False)
        return
    train_x, val_x = cached
    trainee = _Trainee(trainee.model, head, trainee.trainable, trainee.params, trainee.device)
    if not isinstance(head, torch.nn.Linear):
        _adam(fit, trainee, (train_x, train[1]), (val_x, val[1]), config, progress, config.refit)
        return
    (mean, std), (train_x, val_x) = standardize(head, train_x, val_x)
    if config.solver == "auto" and config.output == "logits":
        solution = solve_head(
            head, (train_x, train[1]), (val_x, val[1]), refit=config.refit, progress=progress
        )
        fit.solver, fit.l2, fit.best_val_loss = "lbfgs", solution.l2, solution.val_loss
        fit.evaluations, fit.refitted = solution.evaluations, solution.refitted
        fit.history.extend(solution.history)
    else:
        _adam(fit, trainee, (train_x, train[1]), (val_x, val[1]), config, progress, config.refit)
    unstandardize(head, mean, std)


def _adam(
    fit: Fit,
    trainee: _Trainee,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    config: TuneConfig,
    progress: Callable[[str, float], None] | None,
    refit: bool,
) -> None:
    """Adam epochs, early stopping on the validation loss; with ``refit``, again on both."""
    import torch

    loss = loss_function(config.output)
    optimizer = torch.optim.Adam(trainee.params, lr=config.lr)
    order_rng = torch.Generator().manual_seed(config.seed)
    start = _snapshot(trainee.trainable)
    best: list[dict[str, torch.Tensor]] = []
    since_best = 0
    for epoch in range(1, config.epochs + 1):
        train_epochs(
            trainee.forward, trainee.trainable, optimizer, train, loss,
            batch_size=config.batch_size, device=trainee.device, generator=order_rng,
        )  # fmt: skip
        trainee.model.eval()
        if trainee.forward is trainee.model:
            fit.backbone_passes += 1
        val_loss, val_acc = validate(trainee.forward, val, loss, config.batch_size, trainee.device)
        fit.epochs_run = epoch
        fit.history.append(
            {"epoch": epoch, "val_loss": round(val_loss, 6), "val_accuracy": round(val_acc, 6)}
        )
        if val_loss < fit.best_val_loss or not best:
            fit.best_val_loss, fit.best_epoch, since_best = val_loss, epoch, 0
            best = _snapshot(trainee.trainable)
        else:
            since_best += 1
        if progress is not None:
            progress(f"epoch {epoch}/{config.epochs}", epoch / config.epochs)
        if since_best >= config.patience:
            break
    if refit and len(val[0]):
        _load(trainee.trainable, start)
        both = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))
        train_epochs(
            trainee.forward, trainee.trainable, torch.optim.Adam(trainee.params, lr=config.lr),
            both, loss, batch_size=config.batch_size, device=trainee.device,
            generator=torch.Generator().manual_seed(config.seed), epochs=fit.best_epoch,
        )  # fmt: skip
        fit.refitted = True
        return
    _load(trainee.trainable, best)


def _snapshot(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def _load(modules: Sequence[nn.Module], states: list[dict[str, torch.Tensor]]) -> None:
    for module, state in zip(modules, states, strict=True):
        module.load_state_dict(state)


def _features(
    model: nn.Module,
    head: nn.Module,
    parts: tuple[torch.Tensor, ...],
    batch_size: int,
    device: torch.device,
) -> tuple[tuple[torch.Tensor, ...] | None, str]:
    """The head's input for every row of ``parts``, from one forward pass over them.

    Returns ``(None, reason)`` when caching would change what is trained: the
    head does not run exactly once per forward, or its output is not the model's.
    """
    import torch

    seen: list[Any] = []

    def catch(module: nn.Module, args: tuple[Any, ...]) -> None:
        seen.append(args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None)

    handle = head.register_forward_pre_hook(catch)
    out: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for part in parts:
                chunks: list[torch.Tensor] = []
                for start in range(0, len(part), batch_size):
                    seen.clear()
                    result = model(part[start : start + batch_size].to(device))
                    if len(seen) != 1 or seen[0] is None:
                        return None, (
                            f"the head runs {len(seen)} times per forward pass (or on more than "
                            "one tensor)"
                        )
                    if not chunks and not _same(head(seen[0]), result):
                        return None, "the model transforms the head's output after the head"
                    chunks.append(seen[0].detach())
                out.append(torch.cat(chunks) if chunks else torch.empty(0, device=device))
    finally:
        handle.remove()
    return tuple(out), ""


def _same(a: Any, b: Any) -> bool:
    import torch

    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    )
