"""Fine-tune the head: retrain a ResNet-style network's classifier on recent data.

The data-drift path for neural networks: the backbone learned features that
still hold; what the shifted inputs need is a new mapping from those features
to classes. The backbone is frozen, with its BatchNorm layers kept in eval
mode (their running statistics do not move), and only the head is trained --
or the head and the last ``unfreeze_blocks`` residual blocks.

The head is found, in this order:

1. named by the user -- ``head="classifier.1"``, a dotted path to a submodule;
2. timm's interface -- ``model.get_classifier()`` (``reset_classifier(n)``
   gives a head for ``n`` classes);
3. torchvision's -- an ``nn.Linear`` attribute ``model.fc``.

When the whole backbone is frozen, its features -- the head's input, caught
with a forward pre-hook -- are computed once, in one pass over the train and
validation parts, and each epoch trains the head on the cached features: an
epoch costs only the head. A forward pass checks first that the model's output
is the head's output on those features (nothing transforms it afterwards);
if not, training runs through the whole model, backbone still frozen.

Training is Adam on the cross-entropy, mini-batches shuffled within the train
part (the parts themselves are cut by time, see :mod:`adapters._base`), early
stopping on the validation loss, and the best epoch's weights restored. It
runs on CUDA when available, and the candidate's module is on the CPU.

The candidate is rebuilt from the champion's factory (a state dict plus an
importable ``"module:function"``): the champion's module is never touched.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

import sidecar
from sidecar import AdapterError
from sidecar.runtimes import import_object

from ._base import (
    Progress,
    RetrainResult,
    TrainingData,
    TrainingReport,
    evaluate,
    finish,
    fit_warnings,
    prepare,
    progress_of,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["fine_tune_head"]

STRATEGY = "fine-tune-head"
#: Adam's step when only the head trains: a linear layer on fixed features
#: needs large steps to move within a few dozen epochs.
HEAD_LR = 1e-2
#: Adam's step when blocks are unfrozen too: pretrained convolutions need a gentle one.
BLOCK_LR = 1e-3
#: L2 penalties tried for a linear head on cached (standardized) features,
#: strong to weak: each solution warm-starts the next, the first starts from
#: the champion's head.
HEAD_L2_GRID = (1e-2, 1e-3, 1e-4)
SOLVERS = ("auto", "adam")
#: L-BFGS iterations per penalty, and the gradient size at which it stops.
HEAD_LBFGS_MAX_ITER = 50
HEAD_LBFGS_TOLERANCE = 1e-4
#: Factory arguments that set the number of classes, for ``new_classes``.
CLASS_KWARGS = ("n_classes", "num_classes")
#: A residual block is a module whose class name ends with one of these.
BLOCK_SUFFIXES = ("Block", "Bottleneck")


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
    solver
        ``"auto"``: when only a linear head trains on cached features, fit it
        as the convex problem it is -- multinomial logistic regression by
        L-BFGS from the champion's weights, its L2 penalty chosen on the
        validation part (:data:`HEAD_L2_GRID`); Adam epochs otherwise.
        ``"adam"``: Adam epochs always.
    epochs, patience
        Adam only: at most ``epochs`` passes over the train part; stop when the
        validation loss has not improved for ``patience`` epochs, keeping the
        best epoch.
    refit
        When the features are cached (only the head trains), start the head
        again from the champion's and train it for the chosen number of epochs
        on train and validation together, as the other adapters refit a chosen
        setting: every labelled row counts on small recent data, and the refit
        costs a few passes over cached features. Ignored when blocks train
        (a refit would cost as much as the training again).
    lr
        Adam's learning rate (Adam only); by default 1e-2 when only the head trains and
        1e-3 when blocks are unfrozen.
    batch_size
        Rows per training step (and per forward pass when caching features).
    device
        ``"cuda"``, ``"cpu"``, ...; CUDA when it is available by default.
    progress
        Called as ``progress(step, fraction)`` as the epochs go by.
    seed
        Seeds the new head's initialisation and the batches' order; torch's
        global random state is restored afterwards.

    Returns
    -------
    RetrainResult
        The candidate bundle (parent: ``bundle``) and its training report.
    """
    started = time.perf_counter()
    step = progress_of(progress)
    _check_options(unfreeze_blocks, epochs, lr, batch_size, patience, head)
    if not isinstance(refit, bool):
        raise AdapterError(f"`refit` must be True or False; got {refit!r}.")
    if solver not in SOLVERS:
        raise AdapterError(f"`solver` must be one of {list(SOLVERS)}; got {solver!r}.")
    advanced = _torch_model(bundle)
    old_classes = tuple(advanced.classes or ())
    classes = old_classes if new_classes is None else _sorted_classes(new_classes)
    step("checking the recent data", 0.0)
    if classes == old_classes:
        data = prepare(bundle, recent, strategy=STRATEGY)
    else:
        _check_labels_known(recent, classes)
        data = prepare(_relabelled(bundle, classes), recent, strategy=STRATEGY)
    fit_started = time.perf_counter()

    factory = _import_factory(advanced.factory)
    kwargs = dict(advanced.factory_kwargs)
    model = _rebuild(factory, kwargs, advanced)
    found = find_head(model, head)
    changes: dict[str, Any] = {"head": found.name, "head_found_by": found.kind}
    if new_classes is not None:
        kwargs = _new_class_kwargs(factory, kwargs, advanced.factory, len(classes))
        found = _replace_head(model, found, old_classes, classes, seed)
        changes["classes"] = {"from": list(old_classes), "to": list(classes)}
        changes["factory_kwargs"] = {"from": dict(advanced.factory_kwargs), "to": dict(kwargs)}
    blocks = last_blocks(model, unfreeze_blocks)
    trainable = [found.module, *(m for _, m in blocks)]
    dev = _device(device)
    rate = lr if lr is not None else (HEAD_LR if not blocks else BLOCK_LR)

    fit = tune(
        model,
        trainable,
        data.X_train,
        data.c_train,
        data.X_val,
        data.c_val,
        head=found.module if not blocks else None,
        output=advanced.output,
        epochs=epochs,
        lr=rate,
        batch_size=batch_size,
        patience=patience,
        device=dev,
        seed=seed,
        progress=lambda label, done: step(label, 0.05 + 0.85 * done),
        refit=refit,
        solver=solver,
    )
    if new_classes is not None:
        _check_factory_rebuilds(factory, kwargs, advanced.factory, model)
    train_time = time.perf_counter() - fit_started

    changes.update(
        trainable=[found.name, *(n for n, _ in blocks)],
        feature_cache=fit.cached,
        backbone_passes=fit.backbone_passes,
        solver=fit.solver,
        refitted_on_validation=fit.refitted,
        device=str(dev),
    )
    if fit.solver == "lbfgs":
        changes.update(l2=fit.l2, evaluations=fit.evaluations)
    else:
        changes.update(epochs_run=fit.epochs_run, best_epoch=fit.best_epoch, lr=rate)
    notes = list(fit.notes)
    summary = _summary(model, found, blocks, fit, len(data.X_train), str(dev))
    if classes != old_classes:
        summary += f"; classes changed from {list(old_classes)} to {list(classes)}"
    key, chosen = ("l2", fit.l2) if fit.solver == "lbfgs" else ("epoch", fit.best_epoch)
    search = [{**row, "chosen": row[key] == chosen} for row in fit.history]
    options = {"factory": advanced.factory, "factory_kwargs": kwargs, "output": advanced.output}
    if classes == old_classes:
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
            framework="torch",
            model_options=options,
            progress=step,
        )
    return _finish_new_classes(
        bundle,
        data,
        model,
        classes,
        options,
        started=started,
        train_time_s=train_time,
        summary=summary,
        changes=changes,
        search=search,
        notes=notes,
        progress=step,
    )


# --------------------------------------------------------------------------- checks


def _check_options(
    unfreeze_blocks: int,
    epochs: int,
    lr: float | None,
    batch_size: int,
    patience: int,
    head: str | None,
) -> None:
    for name, value, low in (
        ("unfreeze_blocks", unfreeze_blocks, 0),
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("patience", patience, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise AdapterError(f"`{name}` must be an integer >= {low}; got {value!r}.")
    if lr is not None and (
        isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf
    ):
        raise AdapterError(f"`lr` must be a positive float (or None for the default); got {lr!r}.")
    if head is not None and (not isinstance(head, str) or not head):
        raise AdapterError(
            f"`head` must be a submodule's dotted path such as 'classifier.1'; got {head!r}."
        )


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


def _sorted_classes(new_classes: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(new_classes, str | bytes) or not isinstance(new_classes, Sequence):
        raise AdapterError(
            f"`new_classes` must be a list of class labels; got {type(new_classes).__name__}."
        )
    values = [v.item() if isinstance(v, np.generic) else v for v in new_classes]
    if len(values) < 2 or len(set(values)) != len(values):
        raise AdapterError(
            f"`new_classes` must hold at least 2 distinct class labels; got {values!r}."
        )
    try:
        return tuple(sorted(values))
    except TypeError as exc:
        raise AdapterError(
            f"`new_classes` must be labels of one sortable type (all int or all str); got "
            f"{values!r}."
        ) from exc


def _check_labels_known(recent: sidecar.RecentData, classes: tuple[Any, ...]) -> None:
    labels = getattr(recent, "labels", None)
    if labels is None:
        return  # prepare() names the problem
    known = set(classes)
    extra = sorted({_key(v) for v in np.asarray(labels).tolist()} - known, key=repr)
    if extra:
        raise AdapterError(
            f"`recent.labels` hold class(es) {extra[:10]} that are not in `new_classes` "
            f"{list(classes)}; add them to new_classes (or drop those rows)."
        )


def _key(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _Classes:
    def __init__(self, classes: tuple[Any, ...]) -> None:
        self.classes = classes


class _Relabelled:
    """The bundle as ``prepare``/``evaluate`` read it, with other class labels.

    Both read only ``task``, ``plan``, ``preprocessing`` and
    ``advanced.classes``; with ``new_classes`` the labels are checked and
    encoded against the candidate's classes instead of the champion's.
    """

    def __init__(self, bundle: sidecar.Bundle, classes: tuple[Any, ...]) -> None:
        self.task = bundle.task
        self.plan = bundle.plan
        self.preprocessing = bundle.preprocessing
        self.advanced = _Classes(classes)


def _relabelled(bundle: sidecar.Bundle, classes: tuple[Any, ...]) -> sidecar.Bundle:
    return cast("sidecar.Bundle", _Relabelled(bundle, classes))


# --------------------------------------------------------------------------- the network


def _import_factory(path: str) -> Callable[..., Any]:
    try:
        factory = import_object(path)
    except sidecar.BundleError as exc:
        raise AdapterError(f"cannot import the network's factory {path!r}: {exc}") from exc
    if not callable(factory):
        raise AdapterError(f"the network's factory {path!r} must be callable; got {factory!r}.")
    return cast("Callable[..., Any]", factory)


def _rebuild(factory: Callable[..., Any], kwargs: dict[str, Any], advanced: Any) -> nn.Module:
    """A fresh module from the factory, with the champion's weights (the champion is untouched)."""
    from torch import nn

    module = factory(**kwargs)
    if not isinstance(module, nn.Module):
        raise AdapterError(
            f"the factory {advanced.factory!r} must return an nn.Module; got "
            f"{type(module).__name__}."
        )
    try:
        module.load_state_dict(advanced.module.state_dict())
    except RuntimeError as exc:
        raise AdapterError(
            f"the factory {advanced.factory!r} with {kwargs} does not rebuild the champion's "
            f"architecture: {exc}"
        ) from exc
    return module


@dataclass(frozen=True)
class Head:
    """The module that maps features to class scores, and how it was found."""

    name: str
    module: nn.Module
    kind: str  # "named", "timm get_classifier()", "torchvision fc"


def find_head(model: nn.Module, name: str | None = None) -> Head:
    """The head of ``model``: the submodule ``name``, timm's classifier, or torchvision's ``fc``.

    Raises AdapterError naming what it looked for when there is none.
    """
    from torch import nn

    if name is not None:
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise AdapterError(
                f"`head` must name a submodule of {type(model).__name__}; got {name!r} ({exc}). "
                f"Its top-level children are {_children(model)}."
            ) from exc
        if not any(p.numel() for p in module.parameters()):
            raise AdapterError(
                f"`head` must name a submodule with weights to train; {name!r} is a "
                f"{type(module).__name__} without parameters."
            )
        return Head(name, module, "named")
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        module = get_classifier()
        path = _path_of(model, module)
        if isinstance(module, nn.Module) and path and any(p.numel() for p in module.parameters()):
            return Head(path, module, "timm get_classifier()")
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        return Head("fc", fc, "torchvision fc")
    raise AdapterError(
        f"cannot find the head of {type(model).__name__}: looked for a timm-style "
        "`get_classifier()` returning a submodule with weights, and a torchvision-style `fc` "
        f"(an nn.Linear attribute). Name it with head='dotted.path' (e.g. head='classifier.1'); "
        f"the model's top-level children are {_children(model)}."
    )


def _children(model: nn.Module) -> list[str]:
    return [f"{n} ({type(m).__name__})" for n, m in model.named_children()]


def _path_of(model: nn.Module, target: Any) -> str | None:
    for path, module in model.named_modules():
        if module is target and path:
            return str(path)
    return None


def last_blocks(model: nn.Module, n: int) -> list[tuple[str, nn.Module]]:
    """The last ``n`` residual blocks: outermost modules of a class ``*Block``/``*Bottleneck``."""
    if n == 0:
        return []
    blocks: list[tuple[str, nn.Module]] = []
    for path, module in model.named_modules():
        inside = any(path.startswith(p + ".") for p, _ in blocks)
        if path and not inside and type(module).__name__.endswith(BLOCK_SUFFIXES):
            blocks.append((path, module))
    if n > len(blocks):
        shown = [f"{p} ({type(m).__name__})" for p, m in blocks[-6:]]
        raise AdapterError(
            f"`unfreeze_blocks` must be at most the number of residual blocks of "
            f"{type(model).__name__} ({len(blocks)}: modules whose class name ends with "
            f"{' or '.join(BLOCK_SUFFIXES)}{', the last: ' + str(shown) if shown else ''}); "
            f"got {n}."
        )
    return blocks[len(blocks) - n :]


def _new_class_kwargs(
    factory: Callable[..., Any], kwargs: dict[str, Any], path: str, n: int
) -> dict[str, Any]:
    """The factory arguments for ``n`` classes; AdapterError when the factory takes none."""
    key = next((k for k in CLASS_KWARGS if k in kwargs), None)
    if key is None:
        try:
            params = list(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            params = []
        key = next((k for k in CLASS_KWARGS if k in params), None)
    if key is None:
        raise AdapterError(
            f"`new_classes` needs a factory that takes the number of classes as "
            f"{' or '.join(CLASS_KWARGS)}, so the candidate can be rebuilt; {path!r} takes "
            f"neither (factory_kwargs {kwargs}). Add such an argument to the factory."
        )
    return {**kwargs, key: n}


def _replace_head(
    model: nn.Module,
    found: Head,
    old: tuple[Any, ...],
    new: tuple[Any, ...],
    seed: int,
) -> Head:
    """A fresh linear head with one output per class of ``new``; kept classes keep their rows."""
    import torch
    from torch import nn

    old_head = found.module
    if not isinstance(old_head, nn.Linear):
        raise AdapterError(
            f"`new_classes` replaces the head with a new nn.Linear, but the head {found.name!r} "
            f"is a {type(old_head).__name__}; name its final nn.Linear with head='...'."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if found.kind.startswith("timm"):
            model.reset_classifier(len(new))  # type: ignore[operator]
            fresh = model.get_classifier()  # type: ignore[operator]
            if not isinstance(fresh, nn.Linear) or fresh.out_features != len(new):
                raise AdapterError(
                    f"{type(model).__name__}.reset_classifier({len(new)}) must make an "
                    f"nn.Linear with {len(new)} outputs; got {fresh!r}."
                )
        else:
            fresh = nn.Linear(old_head.in_features, len(new), bias=old_head.bias is not None)
            parent_path, _, attr = found.name.rpartition(".")
            setattr(model.get_submodule(parent_path), attr, fresh)
    with torch.no_grad():
        for i, label in enumerate(new):
            if label in old:
                j = old.index(label)
                fresh.weight[i] = old_head.weight[j]
                if fresh.bias is not None and old_head.bias is not None:
                    fresh.bias[i] = old_head.bias[j]
    name = _path_of(model, fresh) or found.name
    return Head(name, fresh, found.kind)


def _check_factory_rebuilds(
    factory: Callable[..., Any], kwargs: dict[str, Any], path: str, model: nn.Module
) -> None:
    try:
        factory(**kwargs).load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise AdapterError(
            f"the factory {path!r} with {kwargs} does not rebuild the network with its new head, "
            f"so the candidate could not be loaded: {exc}"
        ) from exc


def _device(device: str | None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise AdapterError(
            f"`device` must be a torch device such as 'cpu' or 'cuda'; got {device!r}."
        ) from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise AdapterError(
            f"`device` is {device!r} but CUDA is not available here; leave device=None to use "
            "the CPU."
        )
    return chosen


# --------------------------------------------------------------------------- training


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


def tune(
    model: nn.Module,
    trainable: Sequence[nn.Module],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    head: nn.Module | None,
    output: str = "logits",
    epochs: int = 30,
    lr: float = HEAD_LR,
    batch_size: int = 128,
    patience: int = 4,
    device: torch.device | None = None,
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
    refit: bool = False,
    solver: str = "auto",
) -> Fit:
    """Train the ``trainable`` submodules of ``model`` in place; everything else stays frozen.

    Frozen modules stay in eval mode (BatchNorm statistics do not move);
    ``trainable`` ones train. When ``head`` is given and is all that trains,
    its input is cached in one pass and the training runs on the head alone.

    A cached ``nn.Linear`` head over logits is a convex problem -- multinomial
    logistic regression on fixed features -- and with ``solver="auto"`` it is
    solved as one: L-BFGS from the champion's weights, along the L2 penalties
    of :data:`HEAD_L2_GRID` (strong to weak, each warm-starting the next), the
    penalty with the lowest validation loss kept. Otherwise (or with
    ``solver="adam"``) Adam runs epochs and early stopping on the validation
    loss restores the best epoch. With ``refit`` and cached features, the
    chosen setting (penalty, or number of epochs) is then refitted on train
    and validation together -- the way the other adapters refit a chosen
    setting -- which costs a few passes over cached features and uses every
    labelled row. The model ends on the CPU in eval mode, with its
    ``requires_grad`` flags as before. ``y_*`` are class indices into the
    model's outputs.
    """
    import torch

    dev = device if device is not None else torch.device("cpu")
    grads = {id(p): p.requires_grad for p in model.parameters()}
    params: list[torch.nn.Parameter] = []
    for p in model.parameters():
        p.requires_grad_(False)
    for module in trainable:
        for p in module.parameters():
            if not p.requires_grad:
                p.requires_grad_(True)
                params.append(p)
    xt, yt = _tensor(X_train, np.float32), _tensor(y_train, np.int64)
    xv, yv = _tensor(X_val, np.float32), _tensor(y_val, np.int64)
    loss_fn = _loss(output)
    fit = Fit(cached=False)
    try:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            model.to(dev)
            model.eval()
            cached = None
            if head is not None and list(trainable) == [head]:
                cached, reason = _features(model, head, (xt, xv), batch_size, dev)
                fit.backbone_passes = 1
                if cached is None:
                    fit.notes.append(f"backbone features not cached: {reason}")
            fit.cached = cached is not None
            forward: nn.Module = head if cached is not None else model  # type: ignore[assignment]
            train_x, val_x = cached if cached is not None else (xt, xv)
            linear = head if cached is not None and isinstance(head, torch.nn.Linear) else None
            if linear is not None:
                (mean, std), (train_x, val_x) = _standardize(linear, train_x, val_x)
            if linear is not None and solver == "auto" and output == "logits":
                _solve_head(fit, linear, (train_x, yt), (val_x, yv), refit=refit, progress=progress)
            else:
                _adam(
                    fit, model, forward, trainable, params, (train_x, yt), (val_x, yv),
                    loss_fn=loss_fn, lr=lr, epochs=epochs, batch_size=batch_size,
                    patience=patience, device=dev, seed=seed, progress=progress,
                    refit=refit and cached is not None,
                )  # fmt: skip
            if linear is not None:
                _unstandardize(linear, mean, std)
    finally:
        model.eval()
        model.to("cpu")
        for p in model.parameters():
            p.requires_grad_(grads.get(id(p), True))
    return fit


def _tensor(values: np.ndarray, dtype: Any) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))


def _loss(output: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torch.nn.functional as F

    if output == "probabilities":
        return lambda out, y: F.nll_loss(out.clamp_min(1e-12).log(), y)
    return F.cross_entropy


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


def _standardize(
    head: nn.Linear, train_x: torch.Tensor, val_x: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Train a linear head on standardized features: rescale it so its output is unchanged.

    Adam then takes steps of the same size along every feature, however
    differently the features are scaled -- the head converges in far fewer
    epochs. :func:`_unstandardize` folds the scaling back into the weights.
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


def _unstandardize(head: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold the feature scaling of :func:`_standardize` back into the head's weights."""
    import torch

    with torch.no_grad():
        head.weight.div_(std)
        if head.bias is not None:
            head.bias.sub_(head.weight @ mean)


def _same(a: Any, b: Any) -> bool:
    import torch

    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    )


def _adam(
    fit: Fit,
    model: nn.Module,
    forward: nn.Module,
    trainable: Sequence[nn.Module],
    params: list[torch.nn.Parameter],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    lr: float,
    epochs: int,
    batch_size: int,
    patience: int,
    device: torch.device,
    seed: int,
    progress: Callable[[str, float], None] | None,
    refit: bool,
) -> None:
    """Adam epochs, early stopping on the validation loss; with ``refit``, again on both."""
    import torch

    optimizer = torch.optim.Adam(params, lr=lr)
    order_rng = torch.Generator().manual_seed(seed)
    start = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in trainable]
    best: list[dict[str, torch.Tensor]] = []
    since_best = 0
    for epoch in range(1, epochs + 1):
        _one_epoch(forward, trainable, optimizer, train, loss_fn, batch_size, device, order_rng)
        model.eval()
        if forward is model:
            fit.backbone_passes += 1
        val_loss, val_acc = _validate(forward, val, loss_fn, batch_size, device)
        fit.epochs_run = epoch
        fit.history.append(
            {"epoch": epoch, "val_loss": round(val_loss, 6), "val_accuracy": round(val_acc, 6)}
        )
        if val_loss < fit.best_val_loss or not best:
            fit.best_val_loss, fit.best_epoch, since_best = val_loss, epoch, 0
            best = [
                {k: v.detach().clone() for k, v in module.state_dict().items()}
                for module in trainable
            ]
        else:
            since_best += 1
        if progress is not None:
            progress(f"epoch {epoch}/{epochs}", epoch / epochs)
        if since_best >= patience:
            break
    if refit and len(val[0]):
        for module, state in zip(trainable, start, strict=True):
            module.load_state_dict(state)
        both = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))
        optimizer = torch.optim.Adam(params, lr=lr)
        order_rng = torch.Generator().manual_seed(seed)
        for _ in range(fit.best_epoch):
            _one_epoch(forward, trainable, optimizer, both, loss_fn, batch_size, device, order_rng)
        fit.refitted = True
        return
    for module, state in zip(trainable, best, strict=True):
        module.load_state_dict(state)


def _solve_head(
    fit: Fit,
    head: nn.Linear,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    refit: bool,
    progress: Callable[[str, float], None] | None,
) -> None:
    """Fit a linear head on cached features by L-BFGS, its L2 penalty chosen on validation.

    The loss is the mean cross-entropy plus ``l2 * ||weight||^2`` (the bias is
    not penalised), on standardized features; each penalty of
    :data:`HEAD_L2_GRID` starts from the previous one's solution, the first
    from the champion's head.
    """
    import torch
    import torch.nn.functional as F

    (x, y), (xv, yv) = train, val
    weight = head.weight.detach().clone()
    bias: torch.Tensor | None = head.bias.detach().clone() if head.bias is not None else None
    fit.solver = "lbfgs"
    best: tuple[float, float, torch.Tensor, torch.Tensor | None] | None = None
    for i, l2 in enumerate(HEAD_L2_GRID, 1):
        weight, bias, evaluations = _lbfgs(weight, bias, x, y, l2)
        fit.evaluations += evaluations
        with torch.no_grad():
            out = F.linear(xv, weight, bias) if len(xv) else F.linear(x, weight, bias)
            target = yv if len(xv) else y
            val_loss = float(F.cross_entropy(out, target))
            val_acc = float((out.argmax(dim=1) == target).float().mean())
        fit.history.append(
            {
                "l2": l2,
                "evaluations": evaluations,
                "val_loss": round(val_loss, 6),
                "val_accuracy": round(val_acc, 6),
            }
        )
        if best is None or val_loss < best[0]:
            best = (val_loss, l2, weight, bias)
        if progress is not None:
            progress(f"L2 penalty {l2:g} ({i}/{len(HEAD_L2_GRID)})", i / len(HEAD_L2_GRID))
    assert best is not None
    fit.best_val_loss, fit.l2, weight, bias = best
    if refit and len(xv):
        weight, bias, evaluations = _lbfgs(
            weight, bias, torch.cat([x, xv]), torch.cat([y, yv]), fit.l2
        )
        fit.evaluations += evaluations
        fit.refitted = True
    with torch.no_grad():
        head.weight.copy_(weight)
        if head.bias is not None and bias is not None:
            head.bias.copy_(bias)


def _lbfgs(
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

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(F.linear(x, w, b), y) + l2 * w.pow(2).sum()
        torch.autograd.backward(loss)
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    return w.detach(), (b.detach() if b is not None else None), evaluations


def _one_epoch(
    forward: nn.Module,
    trainable: Sequence[nn.Module],
    optimizer: torch.optim.Optimizer,
    train: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
    order_rng: torch.Generator,
) -> None:
    """One pass over ``train`` in a random order, ``trainable`` in train mode."""
    import torch

    x, y = train
    bn_training = any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for t in trainable for m in t.modules()
    )
    for module in trainable:
        module.train()
    order = torch.randperm(len(x), generator=order_rng)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        if bn_training and len(idx) < 2:
            continue  # BatchNorm cannot train on one row
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x[idx].to(device)), y[idx].to(device))
        torch.autograd.backward(loss)
        optimizer.step()


def _validate(
    forward: nn.Module,
    val: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
) -> tuple[float, float]:
    import torch

    x, y = val
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), max(batch_size, 256)):
            out = forward(x[start : start + max(batch_size, 256)].to(device))
            target = y[start : start + len(out)].to(device)
            total += float(loss_fn(out, target)) * len(out)
            correct += int((out.argmax(dim=1) == target).sum())
    n = max(1, len(x))
    return total / n, correct / n


def _summary(
    model: nn.Module,
    found: Head,
    blocks: list[tuple[str, nn.Module]],
    fit: Fit,
    n_train: int,
    device: str,
) -> str:
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


# --------------------------------------------------------------------------- new classes


def _finish_new_classes(
    bundle: sidecar.Bundle,
    data: TrainingData,
    model: nn.Module,
    classes: tuple[Any, ...],
    options: dict[str, Any],
    *,
    started: float,
    train_time_s: float,
    summary: str,
    changes: dict[str, Any],
    search: list[dict[str, Any]],
    notes: list[str],
    progress: Progress,
) -> RetrainResult:
    """The candidate with other classes than the champion's, and the report.

    ``Bundle.with_models`` keeps the champion's classes, so the candidate is
    made with :func:`sidecar.wrap` and given the champion as its parent; its
    baseline -- the champion's family -- is refitted on the train and
    validation parts. Both models are scored on the union of the old and new
    classes, each giving probability 0 to the classes it does not know.
    """
    from sklearn.base import clone

    progress("building the candidate", 0.95)
    estimator = getattr(bundle.baseline, "estimator", None)
    if estimator is None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with fit_warnings(notes):
        baseline = clone(estimator).fit(data.X_fit, data.y_fit)
    notes.append(
        f"the classes changed, so the baseline ({type(estimator).__name__}) was refitted on the "
        f"{len(data.X_fit)} recent train and validation rows"
    )
    made = sidecar.wrap(
        model,
        task=bundle.task,
        preprocessing=bundle.preprocessing,
        reference=(data.holdout_records, data.holdout_labels),
        baseline=baseline,
        name=bundle.name,
        framework="torch",
        classes=list(classes),
        model_options=options,
        plan=bundle.plan,
    )
    candidate = sidecar.Bundle(
        name=made.name,
        task=made.task,
        preprocessing=made.preprocessing,
        advanced=made.advanced,
        baseline=made.baseline,
        reference=made.reference,
        plan=made.plan,
        parent=bundle.version,
        shadow_timeout=bundle.shadow.timeout,
    )
    old = tuple(bundle.advanced.classes or ())
    union = old + tuple(c for c in classes if c not in old)
    scored = _relabelled(bundle, union)
    champion, notes_a = evaluate(scored, _Padded(bundle.advanced, union), data.X_hold, data.y_hold)
    cand, notes_b = evaluate(scored, _Padded(candidate.advanced, union), data.X_hold, data.y_hold)
    notes.append(
        f"champion and candidate are scored on the union of their classes {list(union)}, each "
        "giving probability 0 to the classes it does not know"
    )
    plan = bundle.plan
    report = TrainingReport(
        strategy=STRATEGY,
        wall_time_s=time.perf_counter() - started,
        train_time_s=train_time_s,
        summary=summary,
        changes=changes,
        n_train=len(data.X_train),
        n_validation=len(data.X_val),
        n_holdout=len(data.X_hold),
        primary_metric=plan.primary_metric,
        higher_is_better=plan.higher_is_better,
        min_effect=float(plan.min_effect),
        champion=champion,
        candidate=cand,
        search=tuple(search),
        notes=tuple([*data.notes, *notes, *dict.fromkeys(notes_a + notes_b)]),
        parent_version=bundle.version,
    )
    progress("done", 1.0)
    return RetrainResult(candidate=candidate, report=report)


class _Padded:
    """A predictor's output with its probability columns placed among ``union``'s classes."""

    def __init__(self, predictor: Any, union: tuple[Any, ...]) -> None:
        self.predictor = predictor
        self.columns = [union.index(c) for c in predictor.classes]
        self.width = len(union)

    def infer(self, X: np.ndarray) -> sidecar.ModelOutput:
        out = self.predictor.infer(X)
        proba = out.probabilities
        if proba is not None:
            padded = np.zeros((len(proba), self.width))
            padded[:, self.columns] = proba
            proba = padded
        return sidecar.ModelOutput(out.predictions, proba)
