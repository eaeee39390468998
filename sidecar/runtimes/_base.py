"""The one Predictor protocol that every framework runtime implements."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._errors import BundleError, InputError
from .._types import Task

__all__ = [
    "ModelOutput",
    "Predictor",
    "Task",
    "import_object",
    "import_trusted",
    "labels_from_proba",
]


@dataclass(frozen=True)
class ModelOutput:
    """What a model said about a batch.

    ``predictions`` holds class labels for a classifier and values for a
    regressor; ``probabilities`` is ``(n, n_classes)`` in the order of the
    predictor's ``classes``, or ``None`` for a regressor.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None = None


@runtime_checkable
class Predictor(Protocol):
    """A model behind one interface, whatever framework made it.

    ``infer`` takes the preprocessed float matrix and returns labels *and*
    probabilities from one pass; ``save`` writes the model in its safe native
    format and returns its manifest entry (``framework``, ``format`` and
    whatever the loader needs).
    """

    framework: str
    task: Task

    @property
    def classes(self) -> tuple[Any, ...] | None: ...

    def infer(self, X: np.ndarray) -> ModelOutput: ...

    def save(self, directory: Path) -> dict[str, Any]: ...


def labels_from_proba(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels of the most probable class, ties to the first (as scikit-learn does)."""
    return np.asarray(classes.take(proba.argmax(axis=1)))


def check_task(task: str) -> Task:
    if task not in ("classification", "regression"):
        raise InputError(f"`task` must be 'classification' or 'regression'; got {task!r}.")
    return task  # type: ignore[return-value]


def import_object(path: str) -> Any:
    """Import ``"package.module:attribute"`` (or ``"package.module.attribute"``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise BundleError(f"an import path must look like 'package.module:name'; got {path!r}.")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise BundleError(f"cannot import {path!r}: {exc}") from exc
    return obj


def import_trusted(path: Any, trusted: tuple[str, ...], *, part: str, field: str) -> Any:
    """Import a bundle's import path, only when the loader trusted it by its exact name.

    Importing runs the module's code and calling the object runs more, so a
    name read from a bundle is code, and loads only as ``pickle`` does: when
    asked for by name (``sidecar.load(..., trusted=[path])``; ``SIDECAR_TRUSTED``
    for a served bundle). A prefix is never trust.
    """
    return import_object(check_trusted(path, trusted, part=part, field=field))


def check_trusted(path: Any, trusted: tuple[str, ...], *, part: str, field: str) -> str:
    """``path`` when the loader trusted it by its exact name; else the refusal. Imports nothing."""
    if not isinstance(path, str) or not path:
        raise BundleError(
            f"part {part!r} field `{field}` must be an import path 'package.module:name'; "
            f"got {path!r}."
        )
    if path not in trusted:
        raise BundleError(
            f"part {part!r} field `{field}` is the import path {path!r}: loading it runs code. "
            f"If you trust this bundle, name it: sidecar.load(..., trusted=[{path!r}]) "
            "(SIDECAR_TRUSTED for `sidecar serve` and the other commands)."
        )
    return path


def object_path(obj: Any) -> str | None:
    """The ``module:qualname`` import path of a module-level function or class, if it has one."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"
