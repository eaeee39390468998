"""Any callable named by an import path, and (only when asked by name) pickled objects."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BundleError
from ..bundle._integrity import confined_file
from ._base import (
    ModelOutput,
    Task,
    import_object,
    import_trusted,
    labels_from_proba,
    object_path,
)


class CallablePredictor:
    """A function ``f(X) -> array`` found by its import path ``"package.module:name"``.

    Only the path is stored in the bundle; the code must be importable where
    the bundle is loaded. For a classifier, a 2-D result is read as
    probabilities over ``classes`` and a 1-D result as labels.
    """

    framework = "callable"

    def __init__(self, path_or_fn: Any, *, task: Task, classes: tuple[Any, ...] | None = None):
        if isinstance(path_or_fn, str):
            self.path = path_or_fn
            self.fn = import_object(path_or_fn)
        else:
            path = object_path(path_or_fn)
            if path is None:
                raise BundleError(
                    "a callable model must be importable by path (a module-level function, "
                    f"not a lambda, closure or something defined in __main__); got {path_or_fn!r}."
                )
            self.path, self.fn = path, path_or_fn
        if not callable(self.fn):
            raise BundleError(f"{self.path!r} must name a callable; got {type(self.fn).__name__}.")
        self.task = task
        self._classes = np.asarray(classes) if classes is not None else None

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return None if self._classes is None else tuple(self._classes.tolist())

    def infer(self, X: np.ndarray) -> ModelOutput:
        out = np.asarray(self.fn(X))
        if self.task == "classification" and out.ndim == 2:
            proba = out.astype(np.float64)
            if self._classes is None:
                self._classes = np.arange(proba.shape[1])
            return ModelOutput(labels_from_proba(proba, self._classes), proba)
        return ModelOutput(out.reshape(len(X)))

    def save(self, directory: Path) -> dict[str, Any]:
        return {"framework": "callable", "format": "import-path", "path": self.path}

    @classmethod
    def load(
        cls, directory: Path, meta: dict[str, Any], trusted: tuple[str, ...] = ()
    ) -> CallablePredictor:
        """The callable the manifest names, imported only when ``trusted`` names it."""
        fn = import_trusted(meta.get("path"), trusted, part=directory.name, field="path")
        classes = tuple(meta["classes"]) if meta.get("classes") is not None else None
        predictor = cls(fn, task=meta["task"], classes=classes)
        predictor.path = meta["path"]
        return predictor


class PicklePredictor:
    """Any object with ``predict`` (and ``predict_proba``), stored with pickle.

    Loading runs whatever code the file names, so a bundle holding one loads
    only with ``sidecar.load(path, allow_pickle=True)``.
    """

    framework = "pickle"
    _FILE = "model.pkl"

    def __init__(self, obj: Any, *, task: Task) -> None:
        self.obj = obj
        self.task = task
        self._proba = task == "classification" and hasattr(obj, "predict_proba")
        self._classes = np.asarray(obj.classes_) if hasattr(obj, "classes_") else None

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return None if self._classes is None else tuple(self._classes.tolist())

    def infer(self, X: np.ndarray) -> ModelOutput:
        if self._proba and self._classes is not None:
            proba = np.asarray(self.obj.predict_proba(X), dtype=np.float64)
            return ModelOutput(labels_from_proba(proba, self._classes), proba)
        return ModelOutput(np.asarray(self.obj.predict(X)))

    def save(self, directory: Path) -> dict[str, Any]:
        with open(directory / self._FILE, "wb") as fh:
            pickle.dump(self.obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return {"framework": "pickle", "format": "pickle", "file": self._FILE}

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any], allow_pickle: bool) -> PicklePredictor:
        check_pickle_allowed(directory, allow_pickle)
        path = confined_file(directory, meta.get("file"), part=directory.name, field="file")
        with open(path, "rb") as fh:
            return cls(pickle.load(fh), task=meta["task"])


def check_pickle_allowed(directory: Path, allow_pickle: bool) -> None:
    """Refuse a pickled part unless the loader allowed pickle by name."""
    if not allow_pickle:
        raise BundleError(
            f"{directory} holds a pickled model, and unpickling can run any code. Load it "
            "only if you trust its source, with sidecar.load(..., allow_pickle=True) "
            "(SIDECAR_ALLOW_PICKLE=1 for `sidecar serve` and the other commands)."
        )
