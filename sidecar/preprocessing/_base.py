"""The Preprocessor protocol every preprocessing module follows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._tabular import EncodingReport

__all__ = ["Preprocessor"]


@runtime_checkable
class Preprocessor(Protocol):
    """Turns raw records into the feature matrix the models were trained on.

    ``transform_with_report`` raises :class:`sidecar.InputError` naming each bad
    field, and counts what it could not encode (unknown categories, missing
    values) in the returned :class:`EncodingReport`.
    """

    kind: str
    version: str | None

    @property
    def input_fields(self) -> tuple[str, ...]: ...

    @property
    def categorical_fields(self) -> tuple[str, ...]: ...

    @property
    def feature_names_out(self) -> tuple[str, ...]: ...

    def transform(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray: ...

    def transform_with_report(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, EncodingReport]: ...
