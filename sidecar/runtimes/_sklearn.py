"""scikit-learn estimators, saved with skops (trusted types only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BundleError
from ..bundle._integrity import confined_file
from ..bundle._safe import skops_dump, skops_load
from ._base import ModelOutput, Task, labels_from_proba
from ._compiled import compile_estimator

_FILE = "model.skops"


class SklearnPredictor:
    """A fitted scikit-learn estimator (or pipeline).

    A classifier with ``predict_proba`` is asked once for probabilities and
    its labels are the most probable classes, so labels and probabilities
    always agree and the model runs one pass, not two. Small linear models and
    shallow trees are evaluated with NumPy directly (see ``_compiled``), which
    skips scikit-learn's per-call validation; the result is the same.
    """

    framework = "sklearn"

    def __init__(self, estimator: Any, *, task: Task) -> None:
        self.estimator = estimator
        self.task = task
        self._proba = task == "classification" and hasattr(estimator, "predict_proba")
        self._classes = np.asarray(estimator.classes_) if task == "classification" else None
        self._fast = compile_estimator(estimator, task)

    @property
    def bounded(self) -> bool:
        """Whether ``infer`` is plain NumPy arithmetic on fixed parameters (a compiled
        fast path): it ends in time proportional to the rows, so the shadow stage
        runs it inline rather than on a timed model thread. An ``infer`` replaced on
        the instance (a wrapper, a test double) is not known to be bounded."""
        return self._fast is not None and "infer" not in self.__dict__

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return None if self._classes is None else tuple(self._classes.tolist())

    def infer(self, X: np.ndarray) -> ModelOutput:
        fast = self._fast
        if fast is not None:
            if self._classes is not None:
                proba = fast(X)
                return ModelOutput(labels_from_proba(proba, self._classes), proba)
            return ModelOutput(fast(X))
        if self._proba:
            proba = self.estimator.predict_proba(X)
            assert self._classes is not None
            return ModelOutput(labels_from_proba(proba, self._classes), proba)
        return ModelOutput(np.asarray(self.estimator.predict(X)))

    def save(self, directory: Path) -> dict[str, Any]:
        skops_dump(self.estimator, directory / _FILE)
        return {"framework": "sklearn", "format": "skops", "file": _FILE}

    @classmethod
    def load(
        cls, directory: Path, meta: dict[str, Any], trusted: tuple[str, ...]
    ) -> SklearnPredictor:
        path = confined_file(directory, meta.get("file"), part=directory.name, field="file")
        estimator = skops_load(path, trusted)
        needs = ("predict", "classes_") if meta["task"] == "classification" else ("predict",)
        if not all(hasattr(estimator, name) for name in needs):
            raise BundleError(
                f"part {directory.name!r} file {path.name!r} must hold a fitted scikit-learn "
                f"estimator with {' and '.join(needs)}; got {type(estimator).__name__}."
            )
        return cls(estimator, task=meta["task"])
