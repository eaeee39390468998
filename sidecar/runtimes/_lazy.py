"""A saved model checked when its bundle loads and read only when it is first used.

The analysis commands (``diagnose``, ``report``, ``plan check``, ``info``) read
what the store recorded -- predictions and probabilities -- and the manifest's
framework and classes; most never run a model. Loading with
``sidecar.load(..., lazy_models=True)`` checks each model part as an eager load
would refuse it (its files and hash, the skops types, a trusted import path by
name, ``allow_pickle``) and leaves the deserialising, and the framework's import
(PyTorch's takes seconds), to the first use. That use reads the part's files into
memory once, hashes those bytes against the manifest again, and deserialises
exactly them (from a private copy), so a file changed after the load is refused,
never loaded.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BundleError
from ..bundle._integrity import confined_file, read_part
from ._base import ModelOutput, Predictor, Task, check_trusted
from ._callable import check_pickle_allowed

__all__ = ["LAZY_FRAMEWORKS", "LazyPredictor"]

#: Frameworks whose parts load lazily (a callable is its import path: nothing to defer).
LAZY_FRAMEWORKS = ("sklearn", "torch", "onnx", "pickle")


class LazyPredictor:
    """A model part's :class:`Predictor`, deserialised on first use (``infer``, ``save``
    or any attribute of the framework's runtime, e.g. ``estimator``)."""

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        trusted: tuple[str, ...],
        allow_pickle: bool,
        framed: bool,
    ) -> None:
        check_part(directory, meta, trusted=trusted, allow_pickle=allow_pickle)
        self.framework: str = meta["framework"]
        self.task: Task = meta["task"]
        self._directory, self._meta = directory, meta
        self._trusted, self._allow_pickle, self._framed = trusted, allow_pickle, framed
        self._lock = threading.Lock()
        self._loaded: Predictor | None = None

    @property
    def classes(self) -> tuple[Any, ...] | None:
        if "classes" not in self._meta:  # a manifest that does not say: the model does
            return self.loaded().classes
        classes = self._meta["classes"]
        return None if classes is None else tuple(np.asarray(classes).tolist())

    def loaded(self) -> Predictor:
        """The deserialised predictor (read, re-hashed and loaded on the first call)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def infer(self, X: np.ndarray) -> ModelOutput:
        return self.loaded().infer(X)

    def save(self, directory: Path) -> dict[str, Any]:
        return self.loaded().save(directory)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private and special names are this object's own
            raise AttributeError(name)
        return getattr(self.loaded(), name)

    def _load(self) -> Predictor:
        from . import load_predictor

        part = self._directory.name
        sha256, files = read_part(self._directory, part, framed=self._framed)
        if sha256 != self._meta["sha256"]:
            raise BundleError(
                f"{self._directory.parent}: part {part!r} changed after the bundle was loaded "
                f"(field `parts.{part}.sha256` is {self._meta['sha256'][:16]}..., its files now "
                f"hash to {sha256[:16]}...); it is not loaded."
            )
        with tempfile.TemporaryDirectory(prefix="sidecar-part-") as tmp:  # private (0700)
            copy = Path(tmp) / part
            for rel, data in files.items():
                target = copy / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return load_predictor(
                copy, self._meta, trusted=self._trusted, allow_pickle=self._allow_pickle
            )

    def __repr__(self) -> str:
        state = "loaded" if self._loaded is not None else "not loaded yet"
        return f"LazyPredictor({self.framework!r}, {self._directory.name!r}, {state})"


def check_part(
    directory: Path, meta: dict[str, Any], *, trusted: tuple[str, ...], allow_pickle: bool
) -> None:
    """Refuse, without deserialising, what loading the part would refuse for its trust."""
    part, framework = directory.name, meta.get("framework")
    if framework == "sklearn":
        from ..bundle._safe import skops_untrusted

        path = confined_file(directory, meta.get("file"), part=part, field="file")
        skops_untrusted(path, trusted)
    elif framework == "torch":
        from ._torch import torch_format

        if torch_format(meta, part) == "state_dict":
            check_trusted(meta.get("factory"), trusted, part=part, field="factory")
    elif framework == "pickle":
        check_pickle_allowed(directory, allow_pickle)
