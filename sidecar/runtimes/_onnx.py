"""ONNX models run with onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BundleError
from .._optional import import_optional
from ..bundle._integrity import confined_file
from ._base import ModelOutput, Task, labels_from_proba

_FILE = "model.onnx"


def _require_ort() -> Any:
    return import_optional("onnxruntime", extra="onnx", needed_by="this model", error=BundleError)


def model_bytes(model: Any) -> bytes:
    """The serialized bytes of an ONNX model given as bytes, a path, a ModelProto or a session."""
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    if isinstance(model, str | os.PathLike):
        return Path(model).read_bytes()
    if hasattr(model, "SerializeToString"):  # onnx.ModelProto
        return bytes(model.SerializeToString())
    # An InferenceSession keeps where it came from in one of these.
    for attr in ("_model_bytes", "_model_path"):
        source = getattr(model, attr, None)
        if source:
            return model_bytes(source)
    raise BundleError(
        "an ONNX model must be bytes, a path to a .onnx file, an onnx.ModelProto or an "
        f"onnxruntime.InferenceSession made from one of those; got {type(model).__name__}."
    )


class OnnxPredictor:
    """An ONNX graph with one float input of shape ``(n, n_features)``.

    For a classifier, a 2-D float output is read as probabilities (the
    ``probabilities`` output of skl2onnx converters, or softmax-ed values) and
    an integer/string 1-D output as labels; a list of dicts (ZipMap) is read as
    probabilities too. For a regressor the first output is flattened.
    """

    framework = "onnx"

    def __init__(
        self,
        model: Any,
        *,
        task: Task,
        classes: tuple[Any, ...] | None = None,
        threads: int | None = None,
    ) -> None:
        ort = _require_ort()
        self._bytes = model_bytes(model)
        self.task = task
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                self._bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise BundleError(f"onnxruntime cannot load this model: {exc}") from exc
        self._input = self.session.get_inputs()[0].name
        self._classes = np.asarray(classes) if classes is not None else None

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return None if self._classes is None else tuple(self._classes.tolist())

    def infer(self, X: np.ndarray) -> ModelOutput:
        outputs = self.session.run(None, {self._input: np.asarray(X, dtype=np.float32)})
        if self.task == "regression":
            return ModelOutput(np.asarray(outputs[0], dtype=np.float64).reshape(len(X), -1)[:, 0])
        proba = None
        for out in outputs:
            if isinstance(out, list) and out and isinstance(out[0], dict):  # ZipMap
                keys = list(out[0])
                proba = np.array([[row[k] for k in keys] for row in out], dtype=np.float64)
                if self._classes is None:
                    self._classes = np.asarray(keys)
            elif isinstance(out, np.ndarray) and out.ndim == 2 and out.dtype.kind == "f":
                proba = out.astype(np.float64)
        if proba is None:
            raise BundleError(
                "an ONNX classifier must have a 2-D float output of class probabilities; "
                f"got outputs {[getattr(o, 'shape', type(o).__name__) for o in outputs]}."
            )
        if self._classes is None:
            self._classes = np.arange(proba.shape[1])
        return ModelOutput(labels_from_proba(proba, self._classes), proba)

    def save(self, directory: Path) -> dict[str, Any]:
        (directory / _FILE).write_bytes(self._bytes)
        return {"framework": "onnx", "format": "onnx", "file": _FILE}

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> OnnxPredictor:
        classes = tuple(meta["classes"]) if meta.get("classes") is not None else None
        path = confined_file(directory, meta.get("file"), part=directory.name, field="file")
        return cls(path.read_bytes(), task=meta["task"], classes=classes)
