"""Bundles: an advanced model, its preprocessing, a baseline and a reference, versioned together.

- :class:`Bundle` (``_bundle``): identity, prediction, the shadow
  stage, feedback, and the derived versions (``with_preprocessing``,
  ``with_models``, ``with_plan``);
- :func:`wrap` (``_wrap``): make one from a fitted model, with a baseline
  fitted for free (``_baseline``);
- :func:`load` (``_load``): read one safely, every file and hash checked first;
- :func:`predict`, :func:`feedback` (``_calls``): the per-request calls on a
  bundle object or directory;
- :func:`read_model`, :func:`framework_of` (``_model_file``): a fitted model
  read from a file by its framework's safe loader;
- ``_derive``: what a derived version's new preprocessing or models must satisfy;
- ``_prediction``: what ``predict`` returns, and a served bundle's counts;
- ``_persist``: write the parts, seal the manifest, save atomically, hash a part.

- ``_manifest``: the canonical manifest and its seal; ``_integrity``: hashes,
  confined paths and part-size limits, checked before anything is loaded;
- ``_reference``: what "normal" looked like (sketches, held-out predictions);
- ``_signing``: Sigstore / key signatures of a bundle directory;
- ``_checks``: the whole-bundle checks (``sidecar check``), run before loading;
- ``_safe``: skops loading and saving, trusted types only (``ALLOWED_TYPES``).

- ``_registry``: the version registry (``versions/``, the ``ACTIVE`` pointer);
- ``_promotion``: ``promote`` on a paired test, and ``rollback``.

The names are imported on first use, so that ``_bundle`` and the other
modules here can import each other's parts without a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bundle import Bundle
    from ._calls import feedback, predict
    from ._load import load
    from ._model_file import framework_of, read_model
    from ._persist import hash_directory
    from ._prediction import Prediction, ShadowPrediction
    from ._wrap import wrap

__all__ = [
    "Bundle",
    "Prediction",
    "ShadowPrediction",
    "feedback",
    "framework_of",
    "hash_directory",
    "load",
    "predict",
    "read_model",
    "wrap",
]

_WHERE = {
    "Bundle": "sidecar.bundle._bundle",
    "Prediction": "sidecar.bundle._prediction",
    "ShadowPrediction": "sidecar.bundle._prediction",
    "hash_directory": "sidecar.bundle._persist",
    "load": "sidecar.bundle._load",
    "feedback": "sidecar.bundle._calls",
    "predict": "sidecar.bundle._calls",
    "framework_of": "sidecar.bundle._model_file",
    "read_model": "sidecar.bundle._model_file",
    "wrap": "sidecar.bundle._wrap",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
