"""An already-fitted scikit-learn transformer as the preprocessing module."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import FieldProblem, InputError, short_repr
from .._optional import import_optional
from ._tabular import EncodingReport

__all__ = ["SklearnPreprocessor"]


class SklearnPreprocessor:
    """Wrap a fitted scikit-learn transformer (a ``ColumnTransformer``, a ``Pipeline``...).

    Records are checked for exactly ``input_fields``; numbers must be finite
    unless ``allow_nan`` is set. When the transformer was fitted on a pandas
    DataFrame (it has ``feature_names_in_``) the records are handed over as a
    DataFrame, which needs pandas (``pip install 'model-sidecar[parquet]'``).
    Unknown categories cannot be counted through an arbitrary transformer, so
    the report counts only missing values.
    """

    kind = "sklearn"

    def __init__(
        self,
        transformer: Any,
        *,
        input_fields: Sequence[str] | None = None,
        categorical_fields: Sequence[str] = (),
        version: str | None = None,
        allow_nan: bool = False,
    ) -> None:
        self.transformer = transformer
        names = getattr(transformer, "feature_names_in_", None)
        if input_fields is None:
            if names is None:
                raise InputError(
                    "`input_fields` must name the raw fields in the order the transformer "
                    "expects (it was not fitted on a DataFrame); got None."
                )
            input_fields = [str(n) for n in names]
        self._input_fields = tuple(input_fields)
        self._categorical = tuple(categorical_fields)
        self._as_frame = names is not None
        self.version = version
        self.allow_nan = allow_nan

    @property
    def input_fields(self) -> tuple[str, ...]:
        return self._input_fields

    @property
    def categorical_fields(self) -> tuple[str, ...]:
        return self._categorical

    @property
    def feature_names_out(self) -> tuple[str, ...]:
        try:
            return tuple(str(n) for n in self.transformer.get_feature_names_out())
        except (AttributeError, ValueError):
            return ()

    def transform(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.transform_with_report(records)[0]

    def transform_with_report(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, EncodingReport]:
        if len(records) == 0:
            raise InputError([FieldProblem("records", "a non-empty list of records", "[]")])
        fields = self._input_fields
        cats = set(self._categorical)
        problems: list[FieldProblem] = []
        missing = dict.fromkeys(fields, 0)
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                problems.append(FieldProblem(f"records[{i}]", "an object", short_repr(rec)))
                continue
            extra = sorted(str(k) for k in rec if k not in missing)
            if extra:
                problems.append(
                    FieldProblem(
                        f"records[{i}]",
                        f"only the fields {list(fields)}",
                        f"unexpected fields {extra}",
                    )
                )
            for name in fields:
                v = rec.get(name)
                if v is None:
                    if name not in rec:
                        problems.append(
                            FieldProblem(
                                f"records[{i}].{name}", "present", "nothing (the field is missing)"
                            )
                        )
                    elif name not in cats and not self.allow_nan:
                        problems.append(
                            FieldProblem(f"records[{i}].{name}", "a finite number", "null")
                        )
                    missing[name] += 1
                elif name in cats:
                    if not isinstance(v, str | int) or isinstance(v, bool):
                        problems.append(
                            FieldProblem(f"records[{i}].{name}", "a string", short_repr(v))
                        )
                elif not _number_ok(v, self.allow_nan):
                    problems.append(
                        FieldProblem(f"records[{i}].{name}", "a finite number", short_repr(v))
                    )
        if problems:
            raise InputError(problems)
        if self._as_frame:
            pd = import_optional("pandas", extra="parquet", needed_by="this preprocessing")
            data: Any = pd.DataFrame.from_records(list(records), columns=list(fields))
        else:
            data = np.array(
                [[r[f] for f in fields] for r in records], dtype=object if cats else np.float64
            )
        try:
            X = self.transformer.transform(data)
        except ValueError as exc:
            raise InputError(f"the preprocessing transformer rejected the records: {exc}") from exc
        if hasattr(X, "toarray"):
            X = X.toarray()
        X = np.asarray(X, dtype=np.float64)
        return X, EncodingReport(
            n_records=len(records),
            unknown={},
            missing={k: v for k, v in missing.items() if v},
        )

    def __repr__(self) -> str:
        return f"SklearnPreprocessor({type(self.transformer).__name__}, version={self.version!r})"


def _number_ok(v: Any, allow_nan: bool) -> bool:
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
        return False
    try:
        return allow_nan or math.isfinite(v)
    except OverflowError:
        return False
