"""The one torch training loop of the adapters: mini-batch epochs over tensors in memory.

Fine-tuning (:mod:`adapters._finetune_tune`: Adam on a head or on unfrozen
blocks) and regularize's torch path (:mod:`adapters._regularize_torch`: AdamW
on a fresh module) both train with :func:`train_epochs`, score with
:func:`validate` and take their loss from :func:`loss_function`. Every
optimizer step of the adapters -- those of :func:`train_epochs` and the
full-batch L-BFGS solve of a linear head (:mod:`adapters._finetune_solver`) --
is one :func:`step`: zero the gradients, evaluate the objective, back-propagate,
step (an optimizer such as L-BFGS evaluates the objective several times per step).

Each epoch visits the rows in an order drawn from ``generator`` (so the order
is reproducible without touching torch's global random state), in batches of
``batch_size``; the ``trainable`` modules are in train mode during the epoch.
A batch of a single row is skipped when a trainable module holds BatchNorm,
which cannot normalise one row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Loss", "loss_function", "step", "tensor", "train_epochs", "validate"]

#: A loss: ``loss(model_output, target) -> scalar tensor``.
Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def tensor(values: np.ndarray, dtype: Any) -> torch.Tensor:
    """``values`` as a contiguous CPU tensor of the NumPy ``dtype``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))


def loss_function(output: str, task: str = "classification") -> Loss:
    """The training loss for a model's ``output`` (``"logits"`` or ``"probabilities"``).

    Classification: cross-entropy on logits, the negative log-likelihood of
    probabilities (clamped away from 0). Regression: the mean squared error of
    the output's first column.
    """
    import torch.nn.functional as F

    if task == "regression":
        return lambda out, y: F.mse_loss(out.reshape(len(y), -1)[:, 0], y)
    if output == "probabilities":
        return lambda out, y: F.nll_loss(out.clamp_min(1e-12).log(), y)
    return F.cross_entropy


def step(optimizer: torch.optim.Optimizer, objective: Callable[[], torch.Tensor]) -> None:
    """One ``optimizer`` step on ``objective()``, a scalar of the optimizer's parameters.

    The closure handed to the optimizer zeroes the gradients, evaluates
    ``objective`` and back-propagates it; Adam calls it once, L-BFGS as often
    as its line search needs.
    """
    import torch

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = objective()
        torch.autograd.backward(value)
        return value

    # torch's optimizers run the closure with gradients on, whatever the caller's mode
    optimizer.step(closure)  # type: ignore[arg-type]  # torch types it float; it is the loss tensor


def train_epochs(
    forward: nn.Module,
    trainable: Sequence[nn.Module],
    optimizer: torch.optim.Optimizer,
    train: tuple[torch.Tensor, torch.Tensor],
    loss: Loss,
    *,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    epochs: int = 1,
) -> None:
    """``epochs`` passes over ``train`` in random orders, stepping ``optimizer`` per batch."""
    import torch

    x, y = train
    bn_training = any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for t in trainable for m in t.modules()
    )
    for _ in range(epochs):
        for module in trainable:
            module.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            if bn_training and len(idx) < 2:
                continue  # BatchNorm cannot train on one row
            batch = (x[idx].to(device), y[idx].to(device))
            step(optimizer, partial(_batch_loss, forward, loss, batch))


def _batch_loss(
    forward: nn.Module, loss: Loss, batch: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    return loss(forward(batch[0]), batch[1])


def validate(
    forward: nn.Module,
    val: tuple[torch.Tensor, torch.Tensor],
    loss: Loss,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``forward`` (in its current mode) on ``val``, no gradients."""
    import torch

    x, y = val
    total, correct = 0.0, 0
    step = max(batch_size, 256)
    with torch.no_grad():
        for start in range(0, len(x), step):
            out = forward(x[start : start + step].to(device))
            target = y[start : start + len(out)].to(device)
            total += float(loss(out, target)) * len(out)
            correct += int((out.argmax(dim=1) == target).sum())
    n = max(1, len(x))
    return total / n, correct / n
