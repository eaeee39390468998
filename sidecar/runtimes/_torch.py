"""PyTorch modules: TorchScript, or a state dict plus an importable factory.

torch is imported only here, and only when a torch model is used; without it
the error names the extra to install.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._errors import BundleError
from .._optional import import_optional
from ..bundle._integrity import confined_file
from ._base import ModelOutput, Task, import_trusted, labels_from_proba

_STATE = "state_dict.pt"
_SCRIPT = "model.torchscript.pt"


def require_torch() -> Any:
    return import_optional(
        "torch", extra="torch", needed_by="this model", package="PyTorch", error=BundleError
    )


def torch_format(meta: dict[str, Any], part: str) -> str:
    """A torch part's field ``format``: ``torchscript`` or ``state_dict``, anything else refused.

    Read before torch is imported, by a load and by the lazy check (``_lazy``).
    """
    fmt = meta.get("format")
    if fmt not in ("torchscript", "state_dict"):
        raise BundleError(
            f"part {part!r} field `format` must be 'torchscript' or 'state_dict'; got {fmt!r}."
        )
    return str(fmt)


class TorchPredictor:
    """An ``nn.Module`` in inference mode on the CPU.

    For a classifier the module's output is ``logits`` (softmax is applied) or
    ``probabilities``; ``classes`` names the columns (``0..k-1`` by default).
    A regressor's output is flattened to one value per row.

    Saved as TorchScript when the module is a ``ScriptModule``; otherwise as a
    state dict with ``factory`` -- an importable ``"module:function"`` that
    builds the architecture from ``factory_kwargs`` -- and loaded with
    ``torch.load(weights_only=True)``, so a bundle never unpickles code.
    """

    framework = "torch"

    def __init__(
        self,
        module: Any,
        *,
        task: Task,
        classes: tuple[Any, ...] | None = None,
        output: Literal["logits", "probabilities"] = "logits",
        factory: str | None = None,
        factory_kwargs: dict[str, Any] | None = None,
    ) -> None:
        torch = require_torch()
        self.module = module.eval()
        self.task = task
        self.output = output
        self.factory = factory
        self.factory_kwargs = dict(factory_kwargs or {})
        self._scripted = isinstance(module, torch.jit.ScriptModule)
        if not self._scripted and factory is None:
            raise BundleError(
                "a PyTorch module must be a TorchScript `ScriptModule` or come with "
                "`factory='package.module:function'` that rebuilds it (its weights are then "
                "saved as a state dict); got a plain nn.Module and no factory."
            )
        self._classes = np.asarray(classes) if classes is not None else None
        self._torch = torch

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return None if self._classes is None else tuple(self._classes.tolist())

    def infer(self, X: np.ndarray) -> ModelOutput:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        values = out.detach().cpu().numpy().astype(np.float64)
        if self.task == "regression":
            return ModelOutput(values.reshape(len(X), -1)[:, 0])
        if self.output == "logits":
            values = values - values.max(axis=1, keepdims=True)
            np.exp(values, out=values)
            values /= values.sum(axis=1, keepdims=True)
        if self._classes is None:
            self._classes = np.arange(values.shape[1])
        return ModelOutput(labels_from_proba(values, self._classes), values)

    def save(self, directory: Path) -> dict[str, Any]:
        torch = self._torch
        meta: dict[str, Any] = {"framework": "torch", "output": self.output}
        if self._scripted:
            with warnings.catch_warnings():
                # TorchScript is deprecated upstream but still the format users hand us.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(self.module, str(directory / _SCRIPT))
            meta.update(format="torchscript", file=_SCRIPT)
        else:
            torch.save(self.module.state_dict(), directory / _STATE)
            meta.update(
                format="state_dict",
                file=_STATE,
                factory=self.factory,
                factory_kwargs=json.loads(json.dumps(self.factory_kwargs)),
            )
        return meta

    @classmethod
    def load(
        cls, directory: Path, meta: dict[str, Any], trusted: tuple[str, ...] = ()
    ) -> TorchPredictor:
        """Load the module; a state dict's ``factory`` is imported only if ``trusted`` names it."""
        part = directory.name
        path = confined_file(directory, meta.get("file"), part=part, field="file")
        factory: Any = None
        kwargs: dict[str, Any] = {}
        if torch_format(meta, part) == "state_dict":
            factory = import_trusted(meta.get("factory"), trusted, part=part, field="factory")
            kwargs = meta.get("factory_kwargs") or {}
            if not isinstance(kwargs, dict):
                raise BundleError(
                    f"part {part!r} field `factory_kwargs` must be an object; got "
                    f"{type(kwargs).__name__}."
                )
        torch = require_torch()
        if meta["format"] == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        else:
            module = factory(**kwargs)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                module.load_state_dict(state)
            except Exception as exc:
                raise BundleError(f"cannot load the state dict {path}: {exc}") from exc
        classes = tuple(meta["classes"]) if meta.get("classes") is not None else None
        return cls(
            module,
            task=meta["task"],
            classes=classes,
            output=meta.get("output", "logits"),
            factory=meta.get("factory") if factory is not None else None,
            factory_kwargs=meta.get("factory_kwargs"),
        )
