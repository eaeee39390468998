"""One :class:`Predictor` protocol over scikit-learn, PyTorch, onnxruntime and callables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .._errors import BundleError
from ._base import ModelOutput, Predictor, Task, check_task, import_object
from ._callable import CallablePredictor, PicklePredictor
from ._onnx import OnnxPredictor
from ._sklearn import SklearnPredictor
from ._torch import TorchPredictor

__all__ = [
    "CallablePredictor",
    "ModelOutput",
    "OnnxPredictor",
    "PicklePredictor",
    "Predictor",
    "SklearnPredictor",
    "Task",
    "TorchPredictor",
    "as_predictor",
    "load_predictor",
]

FRAMEWORKS = ("sklearn", "torch", "onnx", "callable", "pickle")


def as_predictor(
    model: Any,
    *,
    task: str,
    framework: str | None = None,
    classes: tuple[Any, ...] | None = None,
    **options: Any,
) -> Predictor:
    """Wrap ``model`` in the runtime of its framework (guessed when not given).

    Guessing: a :class:`Predictor` is used as is; a ``torch.nn.Module`` goes to
    torch; an ``onnx.ModelProto``, an ``InferenceSession`` or ``.onnx`` path to
    onnx; a scikit-learn estimator to sklearn; a string ``"module:name"`` or an
    importable function to callable. ``framework="pickle"`` must be asked for.
    """
    checked = check_task(task)
    if framework is None:
        framework = _guess_framework(model)
    if framework == "sklearn":
        return SklearnPredictor(model, task=checked)
    if framework == "torch":
        return TorchPredictor(model, task=checked, classes=classes, **options)
    if framework == "onnx":
        return OnnxPredictor(model, task=checked, classes=classes)
    if framework == "callable":
        return CallablePredictor(model, task=checked, classes=classes)
    if framework == "pickle":
        return PicklePredictor(model, task=checked)
    if framework == "predictor":
        return model  # type: ignore[no-any-return]
    raise BundleError(f"`framework` must be one of {list(FRAMEWORKS)}; got {framework!r}.")


def _guess_framework(model: Any) -> str:
    if isinstance(model, Predictor) and not hasattr(model, "fit"):
        return "predictor"
    module = type(model).__module__.split(".")[0]
    torch = sys.modules.get("torch")  # a user's nn.Module lives in the user's module
    if module == "torch" or (torch is not None and isinstance(model, torch.nn.Module)):
        return "torch"
    if module in ("onnx", "onnxruntime") or (
        isinstance(model, str | Path) and str(model).endswith(".onnx")
    ):
        return "onnx"
    if hasattr(model, "fit") and hasattr(model, "get_params"):
        return "sklearn"
    if isinstance(model, str) or callable(model):
        return "callable"
    raise BundleError(
        f"cannot tell which framework made a {type(model).__name__}; pass "
        f"`framework=` (one of {list(FRAMEWORKS)})."
    )


def load_predictor(
    directory: Path,
    meta: dict[str, Any],
    *,
    trusted: tuple[str, ...] = (),
    allow_pickle: bool = False,
) -> Predictor:
    """Load the model described by its manifest entry ``meta`` from ``directory``.

    ``trusted`` names the import paths and extra skops types the caller lets
    run; ``allow_pickle`` lets a pickle load. Nothing else runs code.
    """
    framework = meta.get("framework")
    if framework == "sklearn":
        return SklearnPredictor.load(directory, meta, trusted)
    if framework == "torch":
        return TorchPredictor.load(directory, meta, trusted)
    if framework == "onnx":
        return OnnxPredictor.load(directory, meta)
    if framework == "callable":
        return CallablePredictor.load(directory, meta, trusted)
    if framework == "pickle":
        return PicklePredictor.load(directory, meta, allow_pickle)
    raise BundleError(
        f"part {directory.name!r} field `framework` must be one of {list(FRAMEWORKS)}; got "
        f"{framework!r}."
    )


__all__ += ["import_object"]
