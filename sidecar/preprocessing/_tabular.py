"""The built-in declarative tabular preprocessor.

Raw records (JSON objects) go in, a float matrix comes out. Numeric columns are
checked (finite numbers, no booleans, no strings) and optionally converted
between units; categorical columns are encoded from a top-n vocabulary with the
default code 0 for anything unknown -- the ``encoding.get(word, 0)`` pattern --
and every unknown value is *counted*, because a jump in that count is how a
spelling or code-system change shows itself.

>>> pre = TabularPreprocessor(columns=[
...     NumericColumn(name="weight", unit="kg"),
...     CategoricalColumn(name="code", top_n=2),
... ])
>>> pre = pre.fit([{"weight": 70.0, "code": "a"}, {"weight": 80, "code": "b"},
...                {"weight": 75.5, "code": "a"}])
>>> pre.vocabularies_["code"]
('a', 'b')
>>> X, report = pre.transform_with_report([{"weight": 72.5, "code": "zz"}])
>>> X.tolist(), report.unknown
([[72.5, 0.0]], {'code': 1})
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._errors import FieldProblem, InputError, short_repr
from .._frames import as_records
from .._json import to_jsonable
from ._encoding import PlanEntry, encode_columns, encode_row, finite_number
from ._tabular_spec import (
    CategoricalColumn,
    EncodingReport,
    NumericColumn,
    TabularSpec,
    conversion,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CategoricalColumn",
    "EncodingReport",
    "NumericColumn",
    "TabularPreprocessor",
    "TabularSpec",
]

_MAX_PROBLEMS = 20
# Batches at least this long take the column-wise fast path.
_COLUMNAR_MIN = 8


class TabularPreprocessor:
    """Declarative tabular preprocessing; see the module docstring.

    Parameters
    ----------
    columns
        The raw fields, in the order their features are emitted.
    version
        A version string for this preprocessing; derived from its content
        hash when the bundle is saved if left out.
    extra_fields
        ``"forbid"`` rejects records with fields that are not declared;
        ``"ignore"`` drops them.
    """

    kind = "tabular"

    def __init__(
        self,
        *,
        columns: Sequence[NumericColumn | CategoricalColumn],
        version: str | None = None,
        extra_fields: Literal["forbid", "ignore"] = "forbid",
    ) -> None:
        self.columns = tuple(columns)
        self.version = version
        self.extra_fields = extra_fields

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: TabularSpec | Mapping[str, Any]) -> TabularPreprocessor:
        """Build from a :class:`TabularSpec` or a mapping of the same form."""
        if not isinstance(spec, TabularSpec):
            spec = TabularSpec.model_validate(dict(spec))
        return cls(columns=spec.columns, version=spec.version, extra_fields=spec.extra_fields)

    def to_spec(self) -> TabularSpec:
        return TabularSpec(
            version=self.version, extra_fields=self.extra_fields, columns=self.columns
        )

    def fit(self, records: Sequence[Mapping[str, Any]]) -> TabularPreprocessor:
        """Learn the vocabularies and fill values from training records."""
        if not self.columns:
            raise InputError("`columns` must list at least one column; got none.")
        names = [c.name for c in self.columns]
        dupes = sorted(n for n, k in Counter(names).items() if k > 1)
        if dupes:
            raise InputError(f"`columns` must have unique names; got duplicates {dupes}.")
        records = as_records(records)
        if len(records) == 0:
            raise InputError("`records` must hold at least one training record; got none.")
        vocabularies: dict[str, tuple[str, ...]] = {}
        fills: dict[str, float] = {}
        for col in self.columns:
            values: list[Any] = [r.get(col.name) for r in records]
            if isinstance(col, CategoricalColumn):
                if col.vocabulary is not None:
                    vocabularies[col.name] = tuple(col.vocabulary)
                    continue
                counts = Counter(col.recode.get(str(v), str(v)) for v in values if v is not None)
                ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                vocabularies[col.name] = tuple(
                    w for w, k in ranked[: col.top_n] if k >= col.min_count
                )
            elif col.fill == "median":
                nums = [x for x in map(finite_number, values) if x is not None]
                # Learned from raw values; emitted in the model's unit like every value.
                a, b = conversion(col)
                fills[col.name] = a * float(np.median(nums)) + b if nums else 0.0
            elif col.fill == "nan":
                fills[col.name] = math.nan
            else:
                fills[col.name] = float(col.fill)
        self.vocabularies_ = vocabularies
        self.fills_ = fills
        self._compile()
        return self

    def with_state_of(self, other: TabularPreprocessor) -> TabularPreprocessor:
        """Take the learned state of ``other`` for every column both declare.

        This is how a preprocessing swap keeps the feature layout the models
        were trained on: a column keeps its vocabulary and fill value unless
        the new declaration gives its own vocabulary.
        """
        vocabularies = {}
        fills = {}
        for col in self.columns:
            if isinstance(col, CategoricalColumn):
                if col.vocabulary is not None:
                    vocabularies[col.name] = tuple(col.vocabulary)
                elif col.name in other.vocabularies_:
                    vocabularies[col.name] = other.vocabularies_[col.name]
                else:
                    raise InputError(
                        f"column `{col.name}` must declare a `vocabulary` (it is new, so "
                        "there is none to keep); got no vocabulary."
                    )
            elif col.name in other.fills_ and col.fill == "median":
                fills[col.name] = other.fills_[col.name]
            else:
                fills[col.name] = (
                    math.nan
                    if col.fill == "nan"
                    else float(col.fill)
                    if col.fill != "median"
                    else 0.0
                )
        self.vocabularies_ = vocabularies
        self.fills_ = fills
        self._compile()
        return self

    def set_state(
        self, vocabularies: Mapping[str, Sequence[str]], fills: Mapping[str, float]
    ) -> None:
        """Restore learned state (used when loading a bundle)."""
        self.vocabularies_ = {k: tuple(v) for k, v in vocabularies.items()}
        self.fills_ = {k: float(v) for k, v in fills.items()}
        self._compile()

    def state(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "vocabularies": {k: list(v) for k, v in self.vocabularies_.items()},
            "fills": to_jsonable(self.fills_),  # a "nan" fill is stored as null
        }

    # -- description ------------------------------------------------------------

    @property
    def input_fields(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def categorical_fields(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if isinstance(c, CategoricalColumn))

    @property
    def feature_names_out(self) -> tuple[str, ...]:
        self._check_fitted()
        out: list[str] = []
        for col in self.columns:
            if isinstance(col, CategoricalColumn) and col.encoding == "onehot":
                words = ("<unknown>", *self.vocabularies_[col.name])
                out.extend(f"{col.name}={w}" for w in words)
            else:
                out.append(col.name)
        return tuple(out)

    def canonical_values(self, name: str, values: Sequence[Any]) -> list[Any]:
        """Raw values of column ``name`` in the model's terms: numbers converted from the
        declared ``input_unit`` to the ``unit``, categories recoded; ``None`` stays ``None``.

        Monitoring compares these, so after a fix such as "weights now arrive in
        pounds" the pounds are not mistaken for a fault any more.
        """
        self._check_fitted()
        _, kind, a, b, _, recode, _, _, _ = self._plan[self._names.index(name)]
        if kind == 0:
            if a == 1.0 and b == 0.0:
                return list(values)
            return [None if v is None else a * float(v) + b for v in values]
        if not recode:
            return list(values)
        return [None if v is None else recode.get(str(v), str(v)) for v in values]

    def unknown_mask(self, name: str, values: Sequence[Any]) -> np.ndarray:
        """Which of ``values`` (raw values of categorical column ``name``) encode to code 0."""
        self._check_fitted()
        j = self._names.index(name)
        _, kind, _, _, index, recode, _, _, _ = self._plan[j]
        if kind != 1:
            raise InputError(f"`{name}` must be a categorical column; it is numeric.")
        out = np.zeros(len(values), dtype=bool)
        for i, v in enumerate(values):
            if v is None:
                continue
            word = str(v)
            out[i] = index.get(recode.get(word, word), 0) == 0
        return out

    # -- the hot path -------------------------------------------------------------

    def transform(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validate and encode ``records``; raise :class:`InputError` naming each bad field."""
        return self.transform_with_report(records)[0]

    def transform_with_report(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, EncodingReport]:
        """Like :meth:`transform`, and also count unknown and missing values per column."""
        self._check_fitted()
        records = as_records(records)
        n = len(records)
        if n == 0:
            raise InputError([FieldProblem("records", "a non-empty list of records", "[]")])
        if n >= _COLUMNAR_MIN:
            fast = self._transform_columnar(records)
            if fast is not None:
                return fast
        return self._transform_rows(enumerate(records), n)

    def transform_table(
        self, table: pa.Table, *, start: int = 0
    ) -> tuple[np.ndarray, EncodingReport]:
        """:meth:`transform_with_report` for the records of an Arrow table, column-wise.

        The result is the row path's for ``table.to_pylist()``, and so is the
        error for bad values, except that records are numbered from ``start``.
        """
        import pyarrow as pa

        from ._columns import encode_table

        self._check_fitted()
        n = table.num_rows
        if n == 0:
            raise InputError([FieldProblem("records", "a non-empty list of records", "[]")])
        done = encode_table(self._plan, table, forbid=self.extra_fields == "forbid")
        if done is None:  # a column type only the row path knows
            records = table.to_pylist()
            return self._transform_rows(zip(range(start, start + n), records, strict=True), n)
        if done.X is None:  # name every problem the row path would, from the bad rows alone
            rows = done.bad_rows[:_MAX_PROBLEMS]
            bad = table.take(pa.array(rows)).to_pylist()
            self._transform_rows(zip((start + rows).tolist(), bad, strict=True), len(rows))
            raise AssertionError("the row path found no problem in a bad row")  # pragma: no cover
        return done.X, self._report(n, done.unknown, done.missing, len(self._plan))

    def _transform_rows(
        self, records: Iterable[tuple[int, Mapping[str, Any]]], n: int
    ) -> tuple[np.ndarray, EncodingReport]:
        problems: list[FieldProblem] = []
        unknown = [0] * len(self._plan)
        missing = [0] * len(self._plan)
        rows: list[list[float]] = []
        n_fields = len(self._plan)
        forbid = self.extra_fields == "forbid"
        for i, rec in records:
            if type(rec) is not dict and not isinstance(rec, Mapping):
                problems.append(FieldProblem(f"records[{i}]", "an object", short_repr(rec)))
                continue
            row, seen = encode_row(self._plan, rec, i, problems, unknown, missing)
            if len(rec) > seen and forbid:
                for key in sorted(str(k) for k in rec if k not in self._field_set):
                    problems.append(
                        FieldProblem(f"records[{i}].{key}", self._declared, "an undeclared field")
                    )
            if len(problems) >= _MAX_PROBLEMS:
                break
            rows.append(row)
        if problems:
            raise InputError(problems)
        X = np.array(rows, dtype=np.float64)
        if X.ndim != 2:  # pragma: no cover - every row has the same width by construction
            X = X.reshape(len(rows), -1)
        return X, self._report(n, unknown, missing, n_fields)

    def _transform_columnar(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, EncodingReport] | None:
        """Column-wise encoding for clean batches; ``None`` sends the batch to the row path.

        The row path finds and names every problem; this path only has to be
        sure there are none, which it checks with whole-column operations.
        """
        n_fields = len(self._plan)
        done = encode_columns(self._plan, records, forbid=self.extra_fields == "forbid")
        if done is None:
            return None
        X, unknown = done
        return X, self._report(len(records), unknown, [0] * n_fields, n_fields)

    def _report(
        self, n: int, unknown: list[int], missing: list[int], n_fields: int
    ) -> EncodingReport:
        names = self._names
        return EncodingReport(
            n_records=n,
            unknown={names[j]: unknown[j] for j in self._cat_idx},
            missing={names[j]: missing[j] for j in range(n_fields) if missing[j]},
        )

    # -- internals ----------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocabularies_"):
            raise InputError(
                "this TabularPreprocessor must be fitted before use; call `.fit(records)` "
                "(or pass `train=` to `sidecar.wrap`)."
            )

    def _compile(self) -> None:
        """Precompute one tuple per column so the hot path does no look-ups."""
        plan: list[PlanEntry] = []
        for col in self.columns:
            if isinstance(col, NumericColumn):
                a, b = conversion(col)
                plan.append(
                    (col.name, 0, a, b, None, None, 0, col.allow_missing, self.fills_[col.name])
                )
            else:
                vocab = self.vocabularies_[col.name]
                index = {w: k + 1 for k, w in enumerate(vocab)}
                width = len(vocab) + 1 if col.encoding == "onehot" else 0
                plan.append(
                    (col.name, 1, 1.0, 0.0, index, dict(col.recode), width, col.allow_missing, 0.0)
                )
        self._plan = plan
        self._names = [c.name for c in self.columns]
        self._field_set = frozenset(self._names)
        shown = ", ".join(self._names[:8]) + (", ..." if len(self._names) > 8 else "")
        self._declared = (
            f"absent: the declared fields are {len(self._names)} ({shown}); "
            "to drop undeclared fields instead, set extra_fields='ignore' in the preprocessing"
        )
        self._cat_idx = [j for j, c in enumerate(self.columns) if isinstance(c, CategoricalColumn)]

    def __repr__(self) -> str:
        return f"TabularPreprocessor(columns={len(self.columns)}, version={self.version!r})"
