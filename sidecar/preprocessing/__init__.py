"""Separable, versioned preprocessing: raw records in, feature matrix out."""

from ._base import Preprocessor
from ._io import load_preprocessing, read_spec, save_preprocessing
from ._sklearn import SklearnPreprocessor
from ._tabular import (
    CategoricalColumn,
    EncodingReport,
    NumericColumn,
    TabularPreprocessor,
    TabularSpec,
)
from ._units import UNITS, affine

__all__ = [
    "UNITS",
    "CategoricalColumn",
    "EncodingReport",
    "NumericColumn",
    "Preprocessor",
    "SklearnPreprocessor",
    "TabularPreprocessor",
    "TabularSpec",
    "affine",
    "load_preprocessing",
    "read_spec",
    "save_preprocessing",
]
