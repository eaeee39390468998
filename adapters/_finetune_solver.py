"""A linear head on cached features, solved as the convex problem it is.

Multinomial logistic regression on fixed features: :func:`solve_head` runs
L-BFGS (full-batch steps of the adapters' one loop, :func:`adapters._torch_loop.step`)
from the champion's weights along the L2 penalties of
:data:`HEAD_L2_GRID` (strong to weak, each warm-starting the next) and keeps
the penalty with the lowest validation loss. :func:`standardize` rescales a
linear head so it trains on standardized features with an unchanged output,
and :func:`unstandardize` folds the scaling back into its weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._torch_loop import step

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["HEAD_L2_GRID", "HeadSolution", "lbfgs", "solve_head", "standardize", "unstandardize"]

#: L2 penalties tried for a linear head on cached (standardized) features,
#: strong to weak: each solution warm-starts the next, the first starts from
#: the champion's head.
HEAD_L2_GRID = (1e-2, 1e-3, 1e-4)
#: L-BFGS iterations per penalty, and the gradient size at which it stops.
HEAD_LBFGS_MAX_ITER = 50
HEAD_LBFGS_TOLERANCE = 1e-4


@dataclass
class HeadSolution:
    """What :func:`solve_head` chose: the penalty, its validation loss, the work done."""

    l2: float = 0.0
    val_loss: float = 0.0
    #: loss evaluations of every L-BFGS run, the refit's included
    evaluations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    #: the chosen penalty was refitted on train and validation
    refitted: bool = False


def standardize(
    head: nn.Linear, train_x: torch.Tensor, val_x: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Train a linear head on standardized features: rescale it so its output is unchanged.

    Adam then takes steps of the same size along every feature, however
    differently the features are scaled -- the head converges in far fewer
    epochs. :func:`unstandardize` folds the scaling back into the weights.
    """
    import torch

    mean = train_x.mean(dim=0) if head.bias is not None else torch.zeros_like(train_x[0])
    std = train_x.std(dim=0) if len(train_x) > 1 else torch.ones_like(train_x[0])
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    with torch.no_grad():
        if head.bias is not None:
            head.bias.add_(head.weight @ mean)
        head.weight.mul_(std)
    return (mean, std), ((train_x - mean) / std, (val_x - mean) / std)


def unstandardize(head: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold the feature scaling of :func:`standardize` back into the head's weights."""
    import torch

    with torch.no_grad():
        head.weight.div_(std)
        if head.bias is not None:
            head.bias.sub_(head.weight @ mean)


def solve_head(
    head: nn.Linear,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    refit: bool,
    progress: Callable[[str, float], None] | None,
) -> HeadSolution:
    """Fit a linear head on cached features by L-BFGS, its L2 penalty chosen on validation.

    The loss is the mean cross-entropy plus ``l2 * ||weight||^2`` (the bias is
    not penalised), on standardized features; each penalty of
    :data:`HEAD_L2_GRID` starts from the previous one's solution, the first
    from the champion's head. With ``refit`` the chosen penalty is then fitted
    on train and validation together. The head is updated in place.
    """
    import torch

    (x, y), (xv, yv) = train, val
    weight = head.weight.detach().clone()
    bias: torch.Tensor | None = head.bias.detach().clone() if head.bias is not None else None
    solution = HeadSolution()
    best: tuple[float, float, torch.Tensor, torch.Tensor | None] | None = None
    for i, l2 in enumerate(HEAD_L2_GRID, 1):
        weight, bias, evaluations = lbfgs(weight, bias, x, y, l2)
        solution.evaluations += evaluations
        val_loss, row = _scored(weight, bias, (x, y) if not len(xv) else (xv, yv))
        solution.history.append({"l2": l2, "evaluations": evaluations, **row})
        if best is None or val_loss < best[0]:
            best = (val_loss, l2, weight, bias)
        if progress is not None:
            progress(f"L2 penalty {l2:g} ({i}/{len(HEAD_L2_GRID)})", i / len(HEAD_L2_GRID))
    assert best is not None
    solution.val_loss, solution.l2, weight, bias = best
    if refit and len(xv):
        weight, bias, evaluations = lbfgs(
            weight, bias, torch.cat([x, xv]), torch.cat([y, yv]), solution.l2
        )
        solution.evaluations += evaluations
        solution.refitted = True
    with torch.no_grad():
        head.weight.copy_(weight)
        if head.bias is not None and bias is not None:
            head.bias.copy_(bias)
    return solution


def _scored(
    weight: torch.Tensor, bias: torch.Tensor | None, part: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, dict[str, float]]:
    """The linear head's cross-entropy on ``part``, and its history row (rounded)."""
    import torch
    import torch.nn.functional as F

    x, target = part
    with torch.no_grad():
        out = F.linear(x, weight, bias)
        val_loss = float(F.cross_entropy(out, target))
        val_acc = float((out.argmax(dim=1) == target).float().mean())
    return val_loss, {"val_loss": round(val_loss, 6), "val_accuracy": round(val_acc, 6)}


def lbfgs(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    x: torch.Tensor,
    y: torch.Tensor,
    l2: float,
    *,
    max_iter: int = HEAD_LBFGS_MAX_ITER,
    tolerance: float = HEAD_LBFGS_TOLERANCE,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Minimise mean cross-entropy + ``l2 * ||weight||^2`` from ``(weight, bias)``; evaluations."""
    import torch
    import torch.nn.functional as F

    w = weight.detach().clone().requires_grad_(True)
    b = bias.detach().clone().requires_grad_(True) if bias is not None else None
    params = [w] if b is None else [w, b]
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=tolerance,
        tolerance_change=min(1e-9, tolerance),
        line_search_fn="strong_wolfe",
    )
    evaluations = 0

    def objective() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        return F.cross_entropy(F.linear(x, w, b), y) + l2 * w.pow(2).sum()

    step(optimizer, objective)
    return w.detach(), (b.detach() if b is not None else None), evaluations
