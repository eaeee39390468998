"""Fine-tune the head: retrain a ResNet-style network's classifier on recent data.

The data-drift path for neural networks: the backbone learned features that
still hold; what the shifted inputs need is a new mapping from those features
to classes. The backbone is frozen, with its BatchNorm layers kept in eval
mode (their running statistics do not move), and only the head is trained --
or the head and the last ``unfreeze_blocks`` residual blocks.

The rooms of this adapter:

- :mod:`adapters._finetune_config` -- the options, checked once (:class:`FineTuneConfig`);
- :mod:`adapters._finetune_network` -- rebuilding the champion's network from
  its factory, finding its head (named, timm's ``get_classifier()``,
  torchvision's ``fc``) and its residual blocks;
- :mod:`adapters._finetune_tune` -- the training: features cached when only
  the head trains, then L-BFGS (:mod:`adapters._finetune_solver`) or Adam
  epochs of the adapters' one loop (:mod:`adapters._torch_loop`);
- :mod:`adapters._finetune_classes` -- ``new_classes``: a new head, a new
  baseline, both models scored on the union of their classes.

The parts of the recent data are cut by time (see :mod:`adapters._base`).
Training runs on CUDA when available, and the candidate's module is on the
CPU. The candidate is rebuilt from the champion's factory (a state dict plus
an importable ``"module:function"``): the champion's module is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import sidecar
from sidecar import AdapterError

from ._base import Progress, RetrainResult, TrainingData, finish, prepare, progress_of
from ._finetune_classes import (
    Outcome,
    check_factory_rebuilds,
    check_labels_known,
    finish_new_classes,
    new_class_kwargs,
    replace_head,
    sorted_classes,
)
from ._finetune_config import FineTuneConfig
from ._finetune_network import (
    Head,
    device_of,
    find_head,
    import_factory,
    last_blocks,
    rebuild,
)
from ._finetune_tune import Fit, TuneConfig, tune

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["FineTuneConfig", "fine_tune", "fine_tune_head"]

STRATEGY = "fine-tune-head"


def fine_tune_head(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    *,
    head: str | None = None,
    unfreeze_blocks: int = 0,
    new_classes: Sequence[Any] | None = None,
    epochs: int = 30,
    lr: float | None = None,
    batch_size: int = 128,
    patience: int = 4,
    refit: bool = True,
    solver: str = "auto",
    device: str | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> RetrainResult:
    """Retrain the head of ``bundle``'s PyTorch network on ``recent``, backbone frozen.

    Parameters
    ----------
    bundle
        The champion: a classifier whose advanced model is a PyTorch module
        saved as a state dict with a factory. It is never changed.
    recent
        Labelled recent records, e.g. ``sidecar.recent_data(bundle, store)``;
        cut by time into train (60%), validation (20%) and holdout (20%).
    head, unfreeze_blocks, new_classes, epochs, lr, batch_size, patience, refit
        What trains, and how: see :class:`FineTuneConfig`, which checks them.
        By default only the head trains, as a convex problem solved by L-BFGS
        on backbone features cached in one pass.
    solver, device, seed
        The head's solver, where it trains, the seed: see :class:`FineTuneConfig`.
    progress
        Called as ``progress(step, fraction)`` as the training goes.

    Returns
    -------
    RetrainResult
        The candidate bundle (parent: ``bundle``) and its training report.
    """
    config = FineTuneConfig(
        head=head,
        unfreeze_blocks=unfreeze_blocks,
        new_classes=new_classes,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        patience=patience,
        refit=refit,
        solver=solver,
        device=device,
        seed=seed,
    )
    return fine_tune(bundle, recent, config, progress=progress)


@dataclass(frozen=True)
class _Network:
    """The candidate's network before training: what trains, and how it was made."""

    model: nn.Module
    head: Head
    blocks: list[tuple[str, nn.Module]]
    factory: Any
    kwargs: dict[str, Any]
    changes: dict[str, Any]

    @property
    def trainable(self) -> list[nn.Module]:
        return [self.head.module, *(m for _, m in self.blocks)]


def fine_tune(
    bundle: sidecar.Bundle,
    recent: sidecar.RecentData,
    config: FineTuneConfig,
    *,
    progress: Progress | None = None,
) -> RetrainResult:
    """:func:`fine_tune_head` with its options as one :class:`FineTuneConfig`."""
    started = time.perf_counter()
    step = progress_of(progress)
    advanced = _torch_model(bundle)
    old = tuple(advanced.classes or ())
    classes = old if config.new_classes is None else sorted_classes(config.new_classes)
    step("checking the recent data", 0.0)
    if classes == old:
        data = prepare(bundle, recent, strategy=STRATEGY)
    else:
        check_labels_known(recent, classes)
        data = prepare(bundle, recent, strategy=STRATEGY, classes=classes)
    fit_started = time.perf_counter()
    net = _network(advanced, config, old, classes)
    dev = device_of(config.device)
    rate = config.rate(blocks=bool(net.blocks))
    fit = tune(
        net.model,
        net.trainable,
        data.X_train,
        data.c_train,
        data.X_val,
        data.c_val,
        head=net.head.module if not net.blocks else None,
        config=TuneConfig(
            output=advanced.output,
            epochs=config.epochs,
            lr=rate,
            batch_size=config.batch_size,
            patience=config.patience,
            device=dev,
            seed=config.seed,
            refit=config.refit,
            solver=config.solver,
        ),
        progress=lambda label, done: step(label, 0.05 + 0.85 * done),
    )
    if config.new_classes is not None:
        check_factory_rebuilds(net.factory, net.kwargs, advanced.factory, net.model)
    train_time = time.perf_counter() - fit_started
    outcome = _outcome(net, fit, data, dev, rate, started, train_time)
    if classes != old:
        summary = f"{outcome.summary}; classes changed from {list(old)} to {list(classes)}"
        outcome = replace(outcome, summary=summary)
    options = {"factory": advanced.factory, "factory_kwargs": net.kwargs, "output": advanced.output}
    if classes != old:
        return finish_new_classes(bundle, data, net.model, classes, options, outcome, step)
    return finish(
        bundle,
        data,
        net.model,
        strategy=STRATEGY,
        started=started,
        train_time_s=train_time,
        summary=outcome.summary,
        changes=outcome.changes,
        search=outcome.search,
        notes=outcome.notes,
        framework="torch",
        model_options=options,
        progress=step,
    )


def _network(
    advanced: Any, config: FineTuneConfig, old: tuple[Any, ...], classes: tuple[Any, ...]
) -> _Network:
    """The champion's network rebuilt from its factory, its head (new, for new classes) found."""
    factory = import_factory(advanced.factory)
    kwargs = dict(advanced.factory_kwargs)
    model = rebuild(factory, kwargs, advanced.factory, advanced.module.state_dict())
    found = find_head(model, config.head)
    changes: dict[str, Any] = {"head": found.name, "head_found_by": found.kind}
    if config.new_classes is not None:
        kwargs = new_class_kwargs(factory, kwargs, advanced.factory, len(classes))
        found = replace_head(model, found, old, classes, config.seed)
        changes["classes"] = {"from": list(old), "to": list(classes)}
        changes["factory_kwargs"] = {"from": dict(advanced.factory_kwargs), "to": dict(kwargs)}
    blocks = last_blocks(model, config.unfreeze_blocks)
    return _Network(model, found, blocks, factory, kwargs, changes)


def _outcome(
    net: _Network,
    fit: Fit,
    data: TrainingData,
    device: torch.device,
    rate: float,
    started: float,
    train_time_s: float,
) -> Outcome:
    """The report's changes, summary and search of a training that did ``fit``."""
    changes = dict(net.changes)
    changes.update(
        trainable=[net.head.name, *(n for n, _ in net.blocks)],
        feature_cache=fit.cached,
        backbone_passes=fit.backbone_passes,
        solver=fit.solver,
        refitted_on_validation=fit.refitted,
        device=str(device),
    )
    if fit.solver == "lbfgs":
        changes.update(l2=fit.l2, evaluations=fit.evaluations)
    else:
        changes.update(epochs_run=fit.epochs_run, best_epoch=fit.best_epoch, lr=rate)
    summary = _summary(net, fit, len(data.X_train), str(device))
    key, chosen = ("l2", fit.l2) if fit.solver == "lbfgs" else ("epoch", fit.best_epoch)
    search = [{**row, "chosen": row[key] == chosen} for row in fit.history]
    return Outcome(STRATEGY, started, train_time_s, summary, changes, search, list(fit.notes))


def _torch_model(bundle: sidecar.Bundle) -> Any:
    """The champion's TorchPredictor, checked: a classifier saved with a factory.

    A bundle with a torch model loaded, so torch is installed from here on.
    """
    advanced: Any = bundle.advanced
    if advanced.framework != "torch":
        raise AdapterError(
            f"{STRATEGY} supports PyTorch networks (a torchvision-style `fc`, a timm-style "
            f"`get_classifier()`, or a head named with head=...); this bundle's advanced model "
            f"is a {advanced.framework} model. Use strategy 'regularize' or 'replace-members'."
        )
    if bundle.task != "classification":
        raise AdapterError(
            f"{STRATEGY} retrains a classifier's head; this bundle's task is {bundle.task!r}."
        )
    if not getattr(advanced, "factory", None):
        raise AdapterError(
            f"{STRATEGY} rebuilds the network from its factory, and this one is TorchScript (no "
            "factory). Wrap the nn.Module with model_options={'factory': "
            "'package.module:function', 'factory_kwargs': {...}}."
        )
    return advanced


def _summary(net: _Network, fit: Fit, n_train: int, device: str) -> str:
    model, found, blocks = net.model, net.head, net.blocks
    trained = f"the head {found.name!r} ({type(found.module).__name__})"
    if blocks:
        trained += f" and the last {len(blocks)} block(s) {[n for n, _ in blocks]}"
    frozen = "the rest frozen" if blocks else "the backbone frozen"
    how = "on backbone features cached in one pass" if fit.cached else "through the whole network"
    if fit.solver == "lbfgs":
        trained_how = (
            f"by L-BFGS on {device}, L2 penalty {fit.l2:g} chosen on validation "
            f"(validation loss {fit.best_val_loss:.4g})"
        )
        refitted = "; then refitted with that penalty on train and validation"
    else:
        trained_how = (
            f"{fit.epochs_run} epoch(s) of Adam on {device}, best at epoch {fit.best_epoch} "
            f"(validation loss {fit.best_val_loss:.4g})"
        )
        refitted = f"; then refitted for {fit.best_epoch} epoch(s) on train and validation"
    return (
        f"fine-tuned {trained} of {type(model).__name__} on {n_train} recent rows {how}, "
        f"{frozen} with its BatchNorm in eval mode; {trained_how}"
        + (refitted if fit.refitted else "")
    )
