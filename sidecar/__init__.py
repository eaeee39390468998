"""model-sidecar: wrap a model with its preprocessing and a tiny baseline, serve both
behind one endpoint, and tell whether -- and why -- performance fell.

>>> import sidecar
>>> sorted(sidecar.__all__)[:4]
['AdapterError', 'Bundle', 'BundleError', 'CategoricalColumn']
"""

from ._bundle import Bundle, Prediction, ShadowPrediction, load, wrap
from ._errors import (
    AdapterError,
    BundleError,
    FieldProblem,
    InputError,
    PlanError,
    SidecarError,
    StoreError,
)
from ._export import export_parquet
from ._monitor import RecentData, diagnose, recent_data
from ._replay import ReplayResult, replay
from .preprocessing import (
    CategoricalColumn,
    NumericColumn,
    SklearnPreprocessor,
    TabularPreprocessor,
    read_spec,
)
from .runtimes import ModelOutput, Predictor

__version__ = "0.1.0"

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
    "ReplayResult",
    "ShadowPrediction",
    "SidecarError",
    "SklearnPreprocessor",
    "StoreError",
    "TabularPreprocessor",
    "diagnose",
    "export_parquet",
    "load",
    "read_spec",
    "recent_data",
    "replay",
    "wrap",
]
