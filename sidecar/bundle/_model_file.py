"""Reading a fitted model from a file, in the way its framework requires.

What ``sidecar wrap --model FILE`` does, as a library: the framework follows
from the file's extension unless named; each is loaded by its safe loader
(skops with an allow-list, ONNX as bytes, TorchScript or a state dict with
``weights_only=True``), and a pickle only when the caller asks for it by name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import InputError

__all__ = ["framework_of", "read_model"]

_BY_SUFFIX = {
    ".skops": "sklearn",
    ".onnx": "onnx",
    ".pt": "torch",
    ".pth": "torch",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


def framework_of(source: str | os.PathLike[str]) -> str:
    """The framework a model file's extension names; ``"callable"`` for anything else.

    >>> framework_of("model.skops"), framework_of("net.PT"), framework_of("pkg.mod:make")
    ('sklearn', 'torch', 'callable')
    """
    return _BY_SUFFIX.get(Path(source).suffix.lower(), "callable")


def read_model(
    source: str | os.PathLike[str],
    *,
    framework: str | None = None,
    trusted: Sequence[str] = (),
    factory: str | None = None,
    allow_pickle: bool = False,
    name: str = "model",
) -> tuple[Any, str, dict[str, Any]]:
    """``(model, framework, model_options)`` for :func:`sidecar.wrap`, read from ``source``.

    ``framework`` defaults to :func:`framework_of` ``(source)``; ``"callable"``
    passes ``source`` through (an import path). ``trusted`` extends skops'
    allow-list; ``factory`` (``"pkg.module:make"``) builds the module a torch
    state dict is loaded into; ``name`` is how errors call the argument (the
    CLI says ``--model``).
    """
    path = Path(source)
    framework = framework_of(source) if framework is None else framework
    if framework != "callable" and not path.is_file():
        raise InputError(f"{name} must be an existing model file; got {str(source)!r}.")
    if framework == "sklearn":
        from ._safe import skops_load

        return skops_load(path, list(trusted)), "sklearn", {}
    if framework == "onnx":
        return path.read_bytes(), "onnx", {}
    if framework == "torch":
        return _read_torch(path, factory)
    if framework == "pickle":
        if not allow_pickle:
            raise InputError(
                f"{name} is a pickle file, and unpickling can run any code; pass "
                "--allow-pickle (allow_pickle=True) if you trust it."
            )
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh), "pickle", {}
    return str(source), "callable", {}


def _read_torch(path: Path, factory: str | None) -> tuple[Any, str, dict[str, Any]]:
    from ..runtimes import import_object
    from ..runtimes._torch import require_torch

    torch = require_torch()
    if factory:
        module = import_object(factory)()
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return module, "torch", {"factory": factory}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu"), "torch", {}
