"""Network surgery for fine-tuning: rebuild the champion's module, find its head and blocks.

The candidate is rebuilt from the champion's factory (a state dict plus an
importable ``"module:function"``): the champion's module is never touched.

The head is found, in this order:

1. named by the user -- ``head="classifier.1"``, a dotted path to a submodule;
2. timm's interface -- ``model.get_classifier()`` (``reset_classifier(n)``
   gives a head for ``n`` classes);
3. torchvision's -- an ``nn.Linear`` attribute ``model.fc``.

A residual block is a module whose class name ends with ``Block`` or
``Bottleneck`` (:data:`BLOCK_SUFFIXES`); :func:`last_blocks` takes the last
ones in definition order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sidecar
from sidecar import AdapterError
from sidecar.runtimes import import_object

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "BLOCK_SUFFIXES",
    "Head",
    "device_of",
    "find_head",
    "import_factory",
    "last_blocks",
    "path_of",
    "rebuild",
]

#: A residual block is a module whose class name ends with one of these.
BLOCK_SUFFIXES = ("Block", "Bottleneck")


def import_factory(path: str) -> Callable[..., Any]:
    """The callable that ``path`` (``"package.module:function"``) names; AdapterError if none."""
    try:
        factory: Callable[..., Any] = import_object(path)
    except sidecar.BundleError as exc:
        raise AdapterError(f"cannot import the network's factory {path!r}: {exc}") from exc
    if not callable(factory):
        raise AdapterError(f"the network's factory {path!r} must be callable; got {factory!r}.")
    return factory


def rebuild(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], path: str, state: Mapping[str, Any]
) -> nn.Module:
    """A fresh module from ``factory(**kwargs)`` loaded with ``state`` (the champion's weights).

    ``path`` names the factory in errors; the champion's own module is untouched.
    """
    from torch import nn

    module = factory(**kwargs)
    if not isinstance(module, nn.Module):
        raise AdapterError(
            f"the factory {path!r} must return an nn.Module; got {type(module).__name__}."
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise AdapterError(
            f"the factory {path!r} with {dict(kwargs)} does not rebuild the champion's "
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
        path = path_of(model, module)
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


def path_of(model: nn.Module, target: Any) -> str | None:
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


def device_of(device: str | None) -> torch.device:
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
