"""model-sidecar: wrap a model with its preprocessing and a tiny baseline, serve both
behind one endpoint, and tell whether -- and why -- performance fell.

The loop, each step one call (the README walks it with real models):
:func:`wrap` and :meth:`Bundle.save`; serve (``sidecar serve``) or
:func:`predict` (:meth:`Bundle.predict`) with a recorder; :func:`feedback` for labels;
:func:`diagnose` and :func:`report`; :func:`retrain` for a candidate;
:meth:`Bundle.attach_candidate` (``SIDECAR_CANDIDATE``) to run it in shadow;
:func:`promote` on a paired test; :func:`rollback`; :class:`Registry` for the
versions. :mod:`sidecar.monitoring` holds the pure statistics, and
:mod:`sidecar.recording` the stores.

Where things live (each package's docstring says more):

- ``bundle/`` -- the bundle: wrap, save/load with hash checks, manifest,
  reference, registry, promotion and rollback;
- ``preprocessing/`` -- the separable, versioned preprocessing;
- ``runtimes/`` -- one ``Predictor`` per framework (scikit-learn, torch, ONNX, callables);
- ``shadow/`` -- what runs after a response: baseline, candidate, hand-over to the recorder;
- ``recording/`` -- the stores (memory, SQLite, PostgreSQL) and the batching recorder;
- ``monitoring/`` -- pure statistics over arrays: metrics, tests, drift, health, verdicts;
- ``serving/`` -- the BentoML service; ``cli/`` -- the ``sidecar`` command;
- the top-level modules behind the loop's calls: ``_window`` (a store window as
  arrays), ``_analysis`` (diagnose), ``_reporting`` (report), ``_retraining``
  (retrain), ``_replay/`` (replay), ``_export`` (export); and the policies every
  room shares, one module each: ``_errors``, ``_settings``, ``_json``,
  ``_optional``, ``_labels``, ``_redact``, ``_types``.
- ``adapters`` (a package beside this one) retrains: regularize, refit, replace
  members, fine-tune.

>>> import sidecar
>>> sorted(sidecar.__all__)[:4]
['AdapterError', 'Bundle', 'BundleError', 'CategoricalColumn']
>>> [name for name in ("promote", "rollback", "Registry", "report", "retrain")
...  if name in sidecar.__all__]
['promote', 'rollback', 'Registry', 'report', 'retrain']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    AdapterError,
    BundleError,
    FieldProblem,
    InputError,
    PlanError,
    SidecarError,
    StoreError,
)

if TYPE_CHECKING:
    from ._analysis import diagnose
    from ._export import export_parquet
    from ._replay import ReplayResult, replay
    from ._reporting import report
    from ._retraining import retrain
    from ._window import RecentData, recent_data
    from .bundle._bundle import Bundle, Prediction, ShadowPrediction, load, wrap
    from .bundle._calls import feedback, predict
    from .bundle._promotion import promote, rollback
    from .bundle._registry import Registry
    from .preprocessing import (
        CategoricalColumn,
        NumericColumn,
        SklearnPreprocessor,
        TabularPreprocessor,
        read_spec,
    )
    from .runtimes import ModelOutput, Predictor

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that `import sidecar` -- and with it every
# `sidecar ...` command's start-up -- pays for NumPy, SciPy and scikit-learn only
# when a command needs them.
_LAZY = {
    "Bundle": ".bundle._bundle",
    "Prediction": ".bundle._bundle",
    "ShadowPrediction": ".bundle._bundle",
    "load": ".bundle._bundle",
    "wrap": ".bundle._bundle",
    "predict": ".bundle._calls",
    "feedback": ".bundle._calls",
    "export_parquet": "._export",
    "RecentData": "._window",
    "diagnose": "._analysis",
    "recent_data": "._window",
    "ReplayResult": "._replay",
    "replay": "._replay",
    "Registry": ".bundle._registry",
    "promote": ".bundle._promotion",
    "rollback": ".bundle._promotion",
    "report": "._reporting",
    "retrain": "._retraining",
    "CategoricalColumn": ".preprocessing",
    "NumericColumn": ".preprocessing",
    "SklearnPreprocessor": ".preprocessing",
    "TabularPreprocessor": ".preprocessing",
    "read_spec": ".preprocessing",
    "ModelOutput": ".runtimes",
    "Predictor": ".runtimes",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sidecar' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AdapterError",
    "Bundle",
    "BundleError",
    "CategoricalColumn",
    "FieldProblem",
    "InputError",
    "ModelOutput",
    "NumericColumn",
    "PlanError",
    "Prediction",
    "Predictor",
    "RecentData",
    "Registry",
    "ReplayResult",
    "ShadowPrediction",
    "SidecarError",
    "SklearnPreprocessor",
    "StoreError",
    "TabularPreprocessor",
    "diagnose",
    "export_parquet",
    "feedback",
    "load",
    "predict",
    "promote",
    "read_spec",
    "recent_data",
    "replay",
    "report",
    "retrain",
    "rollback",
    "wrap",
]
