"""The options of :func:`adapters.fine_tune_head`, checked once, as one frozen value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar import AdapterError

__all__ = ["BLOCK_LR", "HEAD_LR", "SOLVERS", "FineTuneConfig"]

#: Adam's step when only the head trains: a linear layer on fixed features
#: needs large steps to move within a few dozen epochs.
HEAD_LR = 1e-2
#: Adam's step when blocks are unfrozen too: pretrained convolutions need a gentle one.
BLOCK_LR = 1e-3
#: ``"auto"``: L-BFGS for a linear head on cached features, Adam otherwise; ``"adam"``: Adam.
SOLVERS = ("auto", "adam")


@dataclass(frozen=True)
class FineTuneConfig:
    """How to fine-tune: what trains, for how long, on which device.

    Attributes
    ----------
    head
        The head's dotted path (``"classifier.1"``); found automatically when
        left out (timm's ``get_classifier()``, then torchvision's ``fc``).
    unfreeze_blocks
        Also train the last this many residual blocks (modules whose class name
        ends with ``Block`` or ``Bottleneck``, in definition order), their
        BatchNorm layers included. Features are then not cached.
    new_classes
        The candidate's class labels, when they differ from the champion's: the
        head is replaced by a fresh ``nn.Linear`` with one output per class
        (classes the champion knew start from its weights), and the factory's
        ``n_classes``/``num_classes`` argument is set to match. The candidate's
        classes are ``sorted(new_classes)``, and its baseline is refitted on the
        recent data (the champion's knows the old classes only).
    epochs, patience
        Adam only: at most ``epochs`` passes over the train part; stop when the
        validation loss has not improved for ``patience`` epochs, keeping the
        best epoch.
    lr
        Adam's learning rate (Adam only); by default :data:`HEAD_LR` when only
        the head trains and :data:`BLOCK_LR` when blocks are unfrozen.
    batch_size
        Rows per training step (and per forward pass when caching features).
    refit
        When the features are cached (only the head trains), start the head
        again from the champion's and train it with the chosen setting on train
        and validation together, as the other adapters refit a chosen setting:
        every labelled row counts on small recent data, and the refit costs a
        few passes over cached features. Ignored when blocks train (a refit
        would cost as much as the training again).
    solver
        ``"auto"``: when only a linear head trains on cached features, fit it
        as the convex problem it is -- multinomial logistic regression by
        L-BFGS from the champion's weights, its L2 penalty chosen on the
        validation part (``adapters._finetune_solver.HEAD_L2_GRID``); Adam
        epochs otherwise. ``"adam"``: Adam epochs always.
    device
        ``"cuda"``, ``"cpu"``, ...; CUDA when it is available by default.
    seed
        Seeds the new head's initialisation and the batches' order; torch's
        global random state is restored afterwards.

    >>> FineTuneConfig(epochs=0)
    Traceback (most recent call last):
    ...
    sidecar._errors.AdapterError: `epochs` must be an integer >= 1; got 0.
    """

    head: str | None = None
    unfreeze_blocks: int = 0
    new_classes: Sequence[Any] | None = None
    epochs: int = 30
    lr: float | None = None
    batch_size: int = 128
    patience: int = 4
    refit: bool = True
    solver: str = "auto"
    device: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, low in (
            ("unfreeze_blocks", self.unfreeze_blocks, 0),
            ("epochs", self.epochs, 1),
            ("batch_size", self.batch_size, 1),
            ("patience", self.patience, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise AdapterError(f"`{name}` must be an integer >= {low}; got {value!r}.")
        lr = self.lr
        if lr is not None and (
            isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf
        ):
            raise AdapterError(
                f"`lr` must be a positive float (or None for the default); got {lr!r}."
            )
        if self.head is not None and (not isinstance(self.head, str) or not self.head):
            raise AdapterError(
                "`head` must be a submodule's dotted path such as 'classifier.1'; got "
                f"{self.head!r}."
            )
        if not isinstance(self.refit, bool):
            raise AdapterError(f"`refit` must be True or False; got {self.refit!r}.")
        if self.solver not in SOLVERS:
            raise AdapterError(f"`solver` must be one of {list(SOLVERS)}; got {self.solver!r}.")

    def rate(self, *, blocks: bool) -> float:
        """Adam's learning rate: ``lr``, or the default for a head alone or with blocks."""
        if self.lr is not None:
            return self.lr
        return BLOCK_LR if blocks else HEAD_LR
