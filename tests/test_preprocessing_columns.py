"""The column-wise tabular path (``transform_table``) gives exactly what the record path gives.

A property test over Arrow tables of many column types, with missing values,
nulls, non-finite numbers, unknown and recoded categories, integer codes,
unit conversions, absent and undeclared columns: features, counts and the
error message are the record path's for ``table.to_pylist()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import InputError
from sidecar.preprocessing import CategoricalColumn, NumericColumn, TabularPreprocessor

WORDS = ["a", "b", "c", "007", "250.00", "A", "zz", ""]
TRAIN = [
    {"w": 70.0, "t": 20.0, "n": 1, "c": "a", "d": "b", "k": "007"},
    {"w": 80.5, "t": -3.0, "n": 2, "c": "b", "d": "c", "k": "250.00"},
    {"w": 60.0, "t": 37.5, "n": 3, "c": "a", "d": "b", "k": "7"},
]


def _pre(allow: bool, onehot: bool, extra: str) -> TabularPreprocessor:
    return TabularPreprocessor(
        columns=[
            NumericColumn(name="w", unit="kg", input_unit="lb", allow_missing=allow),
            NumericColumn(
                name="t", unit="degC", input_unit="degF", allow_missing=allow, fill="nan"
            ),
            NumericColumn(name="n", allow_missing=True, fill=-1.0),
            CategoricalColumn(name="c", recode={"A": "a"}, allow_missing=allow),
            CategoricalColumn(name="d", encoding="onehot" if onehot else "ordinal"),
            CategoricalColumn(name="k", top_n=2, allow_missing=True),
        ],
        extra_fields=extra,  # type: ignore[arg-type]
    ).fit(TRAIN)


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**63), 2**63 - 1).map(float),
    st.sampled_from([0.0, -0.0, 1e308, -1.7e308, 5e-324]),
)


@st.composite
def _column(draw: Any, n: int, name: str) -> pa.Array | None:
    kind = draw(
        st.sampled_from(
            ["float64", "float32", "int64", "uint8", "string", "dict", "bool", "null", "absent"]
        )
    )
    nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if kind == "absent":
        return None
    if kind == "null":
        return pa.nulls(n)
    if kind in ("float64", "float32"):
        if kind == "float64":
            values = draw(st.lists(_numbers, min_size=n, max_size=n))
            return pa.array(values, pa.float64(), mask=np.array(nulls))
        values = draw(st.lists(st.floats(width=32), min_size=n, max_size=n))
        return pa.array(values, pa.float32(), mask=np.array(nulls))
    if kind in ("int64", "uint8"):
        bound = (-(2**62), 2**62) if kind == "int64" else (0, 255)
        values = draw(st.lists(st.integers(*bound), min_size=n, max_size=n))
        typ = pa.int64() if kind == "int64" else pa.uint8()
        return pa.array(values, typ, mask=np.array(nulls))
    if kind == "bool":
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return pa.array(values, pa.bool_(), mask=np.array(nulls))
    values = draw(st.lists(st.sampled_from(WORDS), min_size=n, max_size=n))
    arr = pa.array(values, pa.string(), mask=np.array(nulls))
    return arr.dictionary_encode() if kind == "dict" else arr


@st.composite
def _tables(draw: Any) -> pa.Table:
    n = draw(st.integers(1, 30))
    cols: dict[str, pa.Array] = {}
    for name in ("w", "t", "n", "c", "d", "k"):
        arr = draw(_column(n, name))
        if arr is not None:
            cols[name] = arr
    if draw(st.booleans()) and draw(st.booleans()):
        cols["extra"] = pa.array(range(n))
    if not cols:
        cols["w"] = pa.array([1.0] * n)
    names = list(cols)
    order = draw(st.permutations(names))
    return pa.table({k: cols[k] for k in order})


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        X, report = fn()
    except InputError as exc:
        return "error", str(exc)
    return "ok", (X, report)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=_tables(),
    allow=st.booleans(),
    onehot=st.booleans(),
    extra=st.sampled_from(["forbid", "ignore"]),
)
def test_transform_table_matches_the_record_path(
    table: pa.Table, allow: bool, onehot: bool, extra: str
) -> None:
    pre = _pre(allow, onehot, extra)
    want = _outcome(lambda: pre.transform_with_report(table.to_pylist()))
    got = _outcome(lambda: pre.transform_table(table))
    assert got[0] == want[0], (got, want)
    if want[0] == "error":
        assert got[1] == want[1]
        return
    (X, report), (X_want, report_want) = got[1], want[1]
    assert X.shape == X_want.shape
    assert np.array_equal(X, X_want, equal_nan=True)
    assert report == report_want


def test_bad_rows_are_named_from_start() -> None:
    pre = _pre(False, False, "forbid")
    rows = [{"w": 1.0, "t": 2.0, "n": 3, "c": "a", "d": "b", "k": "x"} for _ in range(50)]
    rows[40]["w"] = float("inf")
    rows[41]["c"] = None
    table = pa.Table.from_pylist(rows)
    with pytest.raises(
        InputError, match=r"`records\[1040\].w` must be a finite number; got inf"
    ) as e:
        pre.transform_table(table, start=1000)
    assert "`records[1041].c` must be not null (a string); got null." in str(e.value)


def test_an_unknown_column_type_takes_the_record_path() -> None:
    pre = _pre(True, False, "ignore")
    table = pa.table(
        {
            "w": pa.array([1, 2], pa.decimal128(5, 1)),
            "t": [1.0, 2.0], "n": [1, 2], "c": ["a", "A"], "d": ["b", "q"], "k": ["007", None],
        }
    )  # fmt: skip
    with pytest.raises(InputError, match=r"`records\[0\].w` must be a finite number") as e:
        pre.transform_table(table)
    assert str(e.value) == _outcome(lambda: pre.transform_with_report(table.to_pylist()))[1]
    X, report = pre.transform_table(table.drop(["w"]))
    assert report.unknown == {"c": 0, "d": 1, "k": 0}
    assert report.missing == {"w": 2, "k": 1}
    assert X[:, 0].tolist() == [pre.fills_["w"]] * 2
