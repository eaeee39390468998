"""The preprocessing module: the declarative TabularPreprocessor, spec files, and
SklearnPreprocessor, with their save/load round trip."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import sidecar
from sidecar import FieldProblem, InputError
from sidecar.preprocessing import (
    CategoricalColumn,
    EncodingReport,
    NumericColumn,
    Preprocessor,
    SklearnPreprocessor,
    TabularPreprocessor,
    TabularSpec,
    load_preprocessing,
    save_preprocessing,
)

# Batches at least this long take the column-wise fast path (``_COLUMNAR_MIN``).
FAST = 8


def fitted(columns: list[Any], records: list[dict[str, Any]], **kw: Any) -> TabularPreprocessor:
    return TabularPreprocessor(columns=columns, **kw).fit(records)


def problems_of(exc: pytest.ExceptionInfo[InputError]) -> dict[str, FieldProblem]:
    return {p.field: p for p in exc.value.problems}


# -- vocabulary -------------------------------------------------------------------------


CODES = ["b", "a", "b", "c", "d", "a", "b", "c"]  # b:3, a:2, c:2, d:1


def test_fit_learns_top_n_by_frequency_with_ties_broken_by_name() -> None:
    records = [{"c": v} for v in CODES]
    assert fitted([CategoricalColumn(name="c", top_n=3)], records).vocabularies_["c"] == (
        "b",
        "a",
        "c",
    )
    assert fitted([CategoricalColumn(name="c", top_n=2)], records).vocabularies_["c"] == ("b", "a")
    assert fitted([CategoricalColumn(name="c")], records).vocabularies_["c"] == (
        "b",
        "a",
        "c",
        "d",
    )


def test_fit_drops_words_below_min_count() -> None:
    records = [{"c": v} for v in CODES]
    pre = fitted([CategoricalColumn(name="c", min_count=2)], records)
    assert pre.vocabularies_["c"] == ("b", "a", "c")
    pre = fitted([CategoricalColumn(name="c", min_count=3)], records)
    assert pre.vocabularies_["c"] == ("b",)


def test_fit_keeps_a_given_vocabulary() -> None:
    records = [{"c": v} for v in CODES]
    pre = fitted([CategoricalColumn(name="c", vocabulary=("z", "a"))], records)
    assert pre.vocabularies_["c"] == ("z", "a")
    X, report = pre.transform_with_report([{"c": "z"}, {"c": "a"}, {"c": "b"}])
    assert X.tolist() == [[1.0], [2.0], [0.0]]
    assert report.unknown == {"c": 1}


def test_ordinal_codes_are_one_to_n_with_zero_for_unknown() -> None:
    pre = fitted(
        [NumericColumn(name="n"), CategoricalColumn(name="c", top_n=3)],
        [{"n": 1.0, "c": v} for v in CODES],
    )
    assert pre.feature_names_out == ("n", "c")
    X, report = pre.transform_with_report(
        [
            {"n": 0.5, "c": "b"},
            {"n": 1, "c": "a"},
            {"n": 2.0, "c": "c"},
            {"n": 3, "c": "d"},
            {"n": 4.0, "c": "never-seen"},
        ]
    )
    assert X.dtype == np.float64
    assert X.tolist() == [[0.5, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 0.0], [4.0, 0.0]]
    assert report == EncodingReport(n_records=5, unknown={"c": 2}, missing={})


def test_onehot_layout_puts_unknown_first() -> None:
    pre = fitted(
        [
            NumericColumn(name="n"),
            CategoricalColumn(name="c", top_n=3, encoding="onehot"),
            NumericColumn(name="m"),
        ],
        [{"n": 1.0, "c": v, "m": 0.0} for v in CODES],
    )
    assert pre.feature_names_out == ("n", "c=<unknown>", "c=b", "c=a", "c=c", "m")
    X, report = pre.transform_with_report(
        [{"n": 7.0, "c": "a", "m": -1.0}, {"n": 8.0, "c": "zzz", "m": 2.0}]
    )
    assert X.tolist() == [
        [7.0, 0.0, 0.0, 1.0, 0.0, -1.0],
        [8.0, 1.0, 0.0, 0.0, 0.0, 2.0],
    ]
    assert report.unknown == {"c": 1}


def test_int_category_values_are_read_as_their_text() -> None:
    pre = fitted([CategoricalColumn(name="zip")], [{"zip": "10115"}, {"zip": "80331"}])
    assert pre.transform([{"zip": 80331}, {"zip": "10115"}]).tolist() == [[2.0], [1.0]]


def test_recode_maps_words_before_the_lookup() -> None:
    # The model learned ICD-9 codes; requests now arrive as ICD-10.
    col = CategoricalColumn(name="dx", recode={"I10": "401.9", "E11.9": "250.00"})
    pre = fitted([col], [{"dx": "401.9"}, {"dx": "401.9"}, {"dx": "250.00"}])
    assert pre.vocabularies_["dx"] == ("401.9", "250.00")
    X, report = pre.transform_with_report(
        [{"dx": "I10"}, {"dx": "E11.9"}, {"dx": "401.9"}, {"dx": "J45.909"}]
    )
    assert X.ravel().tolist() == [1.0, 2.0, 1.0, 0.0]
    assert report.unknown == {"dx": 1}
    # The fast path recodes the same way.
    X8, report8 = pre.transform_with_report([{"dx": "I10"}] * 6 + [{"dx": "J45.909"}] * 2)
    assert X8.ravel().tolist() == [1.0] * 6 + [0.0] * 2
    assert report8.unknown == {"dx": 2}


def test_recode_also_applies_while_fitting() -> None:
    col = CategoricalColumn(name="dx", recode={"I10": "401.9"})
    pre = fitted([col], [{"dx": "I10"}, {"dx": "I10"}, {"dx": "250.00"}])
    assert pre.vocabularies_["dx"] == ("401.9", "250.00")


@pytest.mark.parametrize("n", [3, FAST + 4], ids=["rows", "columnar"])
def test_unknown_values_are_counted_on_both_paths(n: int) -> None:
    pre = fitted(
        [
            CategoricalColumn(name="a"),
            CategoricalColumn(name="b", encoding="onehot"),
            NumericColumn(name="x"),
        ],
        [{"a": "p", "b": "q", "x": 1.0}],
    )
    records = [
        {"a": "p" if i % 3 else "new", "b": "q" if i else "new", "x": float(i)} for i in range(n)
    ]
    X, report = pre.transform_with_report(records)
    assert report.n_records == n
    assert report.unknown == {"a": len(range(0, n, 3)), "b": 1}
    assert report.missing == {}
    assert X.shape == (n, 1 + 2 + 1)


# -- the row path and the columnar fast path agree ----------------------------------------

EQUIV_COLUMNS = [
    NumericColumn(name="w", unit="kg", input_unit="lb"),
    NumericColumn(name="t", unit="degC", input_unit="degF"),
    NumericColumn(name="x"),
    NumericColumn(name="m", allow_missing=True, fill=-1.0),
    CategoricalColumn(name="c", top_n=3),
    CategoricalColumn(name="d", encoding="onehot", recode={"A10": "a", "B20": "b"}),
    CategoricalColumn(name="e", vocabulary=("p", "q"), encoding="onehot", allow_missing=True),
]
C_WORDS = ["r", "g", "b", "k", "y", "r", "r", "g"]
D_WORDS = ["a", "b", "c", "A10", "B20", "zz", "a"]
E_WORDS = ["p", "q", "other"]


def _clean_record(rng: random.Random, extra: bool) -> dict[str, Any]:
    def number(lo: float, hi: float) -> float | int:
        return rng.randint(int(lo), int(hi)) if rng.random() < 0.3 else rng.uniform(lo, hi)

    rec: dict[str, Any] = {
        "w": number(80, 300),
        "t": number(-40, 110),
        "x": number(-1e6, 1e6),
        "m": number(0, 1),
        "c": rng.choice(C_WORDS),
        "d": rng.choice(D_WORDS),
        "e": rng.choice(E_WORDS),
    }
    if extra and rng.random() < 0.5:
        rec["note"] = rng.choice(["free text", 3, None])
    items = list(rec.items())
    rng.shuffle(items)  # key order must not matter
    return dict(items)


def _equiv_preprocessor(extra_fields: str) -> TabularPreprocessor:
    rng = random.Random(12345)
    train = [_clean_record(rng, extra=extra_fields == "ignore") for _ in range(50)]
    return fitted(list(EQUIV_COLUMNS), train, extra_fields=extra_fields)


@pytest.fixture(scope="module", params=["forbid", "ignore"])
def equiv_pre(request: pytest.FixtureRequest) -> TabularPreprocessor:
    return _equiv_preprocessor(request.param)


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_equals_row_path_on_clean_batches(
    equiv_pre: TabularPreprocessor, seed: int
) -> None:
    rng = random.Random(seed)
    n = rng.randint(FAST, 60)
    batch = [_clean_record(rng, extra=equiv_pre.extra_fields == "ignore") for _ in range(n)]

    assert equiv_pre._transform_columnar(batch) is not None, "the fast path must take it"
    X_fast, rep_fast = equiv_pre.transform_with_report(batch)
    X_rows, rep_rows = equiv_pre._transform_rows(enumerate(batch), len(batch))
    assert X_fast.dtype == X_rows.dtype == np.float64
    assert X_fast.shape == X_rows.shape == (n, len(equiv_pre.feature_names_out))
    np.testing.assert_array_equal(X_fast, X_rows)
    assert rep_fast == rep_rows
    # The public API on single records (the row path) agrees as well.
    singles = [equiv_pre.transform_with_report([r]) for r in batch]
    np.testing.assert_array_equal(np.vstack([x for x, _ in singles]), X_fast)
    for col in equiv_pre.categorical_fields:
        assert rep_fast.unknown[col] == sum(rep.unknown[col] for _, rep in singles)
    assert rep_fast.missing == {}


_MISSING = object()
# (field, bad value, expected text) -- every one is invalid for EQUIV_COLUMNS.
BAD_VALUES: list[tuple[str, Any, str]] = [
    ("w", "12.5", "a finite number"),
    ("x", True, "a finite number"),
    ("t", float("nan"), "a finite number"),
    ("w", float("inf"), "a finite number"),
    ("x", float("-inf"), "a finite number"),
    ("x", None, "not null (a finite number)"),
    ("w", _MISSING, "present (a finite number)"),
    ("x", [1.0], "a finite number"),
    ("c", 3.5, "a string"),
    ("c", None, "not null (a string)"),
    ("d", _MISSING, "present (a string)"),
    ("e", ["p"], "a string"),
    ("d", False, "a string"),
]


@pytest.mark.parametrize("seed", range(30))
def test_a_bad_value_anywhere_falls_back_and_is_named(
    equiv_pre: TabularPreprocessor, seed: int
) -> None:
    rng = random.Random(1000 + seed)
    n = rng.randint(FAST, 40)
    batch = [_clean_record(rng, extra=equiv_pre.extra_fields == "ignore") for _ in range(n)]
    i = rng.randrange(n)
    choices = list(BAD_VALUES)
    if equiv_pre.extra_fields == "forbid":
        choices.append(("undeclared", 1.0, "absent"))
    field, value, expected = choices[seed % len(choices)]
    bad = [dict(r) for r in batch]
    if value is _MISSING:
        del bad[i][field]
    else:
        bad[i][field] = value

    assert equiv_pre._transform_columnar(bad) is None, "a bad batch must leave the fast path"
    with pytest.raises(InputError) as exc:
        equiv_pre.transform_with_report(bad)
    assert [p.field for p in exc.value.problems] == [f"records[{i}].{field}"]
    assert exc.value.problems[0].expected.startswith(expected)
    assert f"records[{i}].{field}" in str(exc.value)


def test_an_allowed_missing_value_falls_back_and_is_counted(
    equiv_pre: TabularPreprocessor,
) -> None:
    rng = random.Random(7)
    batch = [_clean_record(rng, extra=False) for _ in range(12)]
    holes = [dict(r) for r in batch]
    holes[3]["m"] = None
    del holes[5]["m"]
    holes[9]["e"] = None
    X, report = equiv_pre.transform_with_report(holes)
    assert report.missing == {"m": 2, "e": 1}
    filled = [dict(r) for r in batch]
    filled[3]["m"] = filled[5]["m"] = -1.0  # fill=-1.0
    X_ref = equiv_pre.transform(filled)
    names = equiv_pre.feature_names_out
    e_cols = [k for k, name in enumerate(names) if name.startswith("e=")]
    X_ref[9, e_cols] = [1.0, 0.0, 0.0]  # a missing category takes the unknown code
    np.testing.assert_array_equal(X, X_ref)


# -- numeric validation -----------------------------------------------------------------


@pytest.fixture(scope="module")
def numeric_pre() -> TabularPreprocessor:
    return fitted(
        [NumericColumn(name="w"), CategoricalColumn(name="c")],
        [{"w": 1.0, "c": "a"}, {"w": 2.0, "c": "b"}],
    )


@pytest.mark.parametrize("n", [1, FAST + 2], ids=["rows", "columnar"])
@pytest.mark.parametrize(
    ("value", "expected", "got"),
    [
        ("7.5", "a finite number", "'7.5' (str)"),
        (True, "a finite number", "True (bool)"),
        (False, "a finite number", "False (bool)"),
        (None, "not null (a finite number)", "null"),
        (float("nan"), "a finite number", "nan (float)"),
        (float("inf"), "a finite number", "inf (float)"),
        (float("-inf"), "a finite number", "-inf (float)"),
        (np.float64("nan"), "a finite number", "np.float64(nan) (float64)"),
        ({"kg": 1}, "a finite number", "{'kg': 1} (dict)"),
    ],
)
def test_bad_numbers_are_named(
    numeric_pre: TabularPreprocessor, n: int, value: Any, expected: str, got: str
) -> None:
    records = [{"w": float(k), "c": "a"} for k in range(n)]
    i = n - 1
    records[i]["w"] = value
    with pytest.raises(InputError) as exc:
        numeric_pre.transform(records)
    assert exc.value.problems == [FieldProblem(f"records[{i}].w", expected, got)]
    assert exc.value.http_status == 400


@pytest.mark.parametrize("n", [2, FAST + 2], ids=["rows", "columnar"])
def test_missing_and_extra_keys_are_named(numeric_pre: TabularPreprocessor, n: int) -> None:
    records: list[dict[str, Any]] = [{"w": 1.0, "c": "a"} for _ in range(n)]
    records[0] = {"c": "a"}
    records[-1] = {"w": 1.0, "c": "a", "colour": "red"}
    with pytest.raises(InputError) as exc:
        numeric_pre.transform(records)
    found = problems_of(exc)
    assert found["records[0].w"] == FieldProblem(
        "records[0].w", "present (a finite number)", "nothing (the field is missing)"
    )
    extra = found[f"records[{n - 1}].colour"]
    assert extra.got == "an undeclared field"
    assert "w, c" in extra.expected
    assert len(found) == 2


def test_several_problems_are_all_named(numeric_pre: TabularPreprocessor) -> None:
    with pytest.raises(InputError) as exc:
        numeric_pre.transform([{"w": "x", "c": 1.5}, {"w": 2.0, "c": "a"}, {"c": None}])
    assert set(problems_of(exc)) == {
        "records[0].w",
        "records[0].c",
        "records[2].w",
        "records[2].c",
    }


@pytest.mark.parametrize("n", [1, FAST + 2], ids=["rows", "columnar"])
def test_numpy_float64_and_ints_are_accepted(numeric_pre: TabularPreprocessor, n: int) -> None:
    values: list[Any] = [np.float64(2.5), 3, -4, 2**53, 0.25]
    records = [{"w": values[k % len(values)], "c": "a"} for k in range(n)]
    X = numeric_pre.transform(records)
    assert X[:, 0].tolist() == [float(values[k % len(values)]) for k in range(n)]


@pytest.mark.parametrize("n", [1, FAST + 2], ids=["rows", "columnar"])
def test_an_int_too_large_for_a_float_is_an_input_error(
    numeric_pre: TabularPreprocessor, n: int
) -> None:
    records = [{"w": 1.0, "c": "a"} for _ in range(n)]
    records[0]["w"] = 10**400
    with pytest.raises(InputError) as exc:
        numeric_pre.transform(records)
    assert [p.field for p in exc.value.problems] == ["records[0].w"]


@pytest.mark.parametrize(
    "record",
    [{"w": np.int64(3), "c": "a"}, {"w": np.float32(3.0), "c": "a"}, {"w": 3.0, "c": np.str_("a")}],
    ids=["int64", "float32", "str_"],
)
def test_other_numpy_scalars_are_accepted(
    numeric_pre: TabularPreprocessor, record: dict[str, Any]
) -> None:
    assert numeric_pre.transform([record]).tolist() == [[3.0, 1.0]]


def test_non_mapping_records_and_empty_batches_are_rejected(
    numeric_pre: TabularPreprocessor,
) -> None:
    with pytest.raises(InputError) as exc:
        numeric_pre.transform([{"w": 1.0, "c": "a"}, [1.0, "a"]])  # type: ignore[list-item]
    assert exc.value.problems == [FieldProblem("records[1]", "an object", "[1.0, 'a'] (list)")]
    with pytest.raises(InputError) as exc:
        numeric_pre.transform([])
    assert [p.field for p in exc.value.problems] == ["records"]


# -- missing values ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, FAST + 2], ids=["rows", "columnar"])
@pytest.mark.parametrize(("fill", "value"), [("median", 2.5), (0.5, 0.5), ("nan", math.nan)])
def test_allow_missing_fills_and_counts(n: int, fill: Any, value: float) -> None:
    train = [{"w": 1.0}, {"w": 2.0}, {"w": 3.0}, {"w": 10.0}, {"w": None}, {"w": math.nan}]
    pre = fitted([NumericColumn(name="w", allow_missing=True, fill=fill)], train)
    records: list[dict[str, Any]] = [{"w": 4.0} for _ in range(n)]
    records[0] = {"w": None}
    records[1] = {}
    X, report = pre.transform_with_report(records)
    np.testing.assert_array_equal(X[:2, 0], [value, value])
    assert X[2:, 0].tolist() == [4.0] * (n - 2)
    assert report.missing == {"w": 2}


def test_missing_category_takes_the_unknown_code_when_allowed() -> None:
    pre = fitted(
        [CategoricalColumn(name="c", allow_missing=True, encoding="onehot")],
        [{"c": "a"}, {"c": None}],
    )
    assert pre.vocabularies_["c"] == ("a",)
    X, report = pre.transform_with_report([{"c": None}, {}, {"c": "a"}])
    assert X.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    assert report.missing == {"c": 2}
    assert report.unknown == {"c": 0}


def test_median_fill_is_in_the_model_unit() -> None:
    col = NumericColumn(name="w", unit="kg", input_unit="lb", allow_missing=True)
    pre = fitted([col], [{"w": 220.46226218}, {"w": 220.46226218}])
    (filled,), (given,) = pre.transform([{"w": None}, {"w": 220.46226218}])
    assert filled == pytest.approx(given) == pytest.approx(100.0)


# -- units --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, FAST], ids=["rows", "columnar"])
@pytest.mark.parametrize(
    ("unit", "input_unit", "raw", "converted"),
    [
        ("kg", "lb", 2.20462, 1.0),
        ("kg", "lb", 0, 0.0),
        ("degC", "degF", 212, 100.0),
        ("degC", "degF", 32.0, 0.0),
        ("K", "degC", -273.15, 0.0),
        ("m", "cm", 150, 1.5),
        ("h", "min", 90, 1.5),
        ("kg", "kg", 3.0, 3.0),
    ],
)
def test_units_are_converted(
    n: int, unit: str, input_unit: str, raw: float, converted: float
) -> None:
    pre = fitted([NumericColumn(name="v", unit=unit, input_unit=input_unit)], [{"v": 1.0}])
    X = pre.transform([{"v": raw}] * n)
    assert X[:, 0] == pytest.approx([converted] * n, abs=1e-5)


@pytest.mark.parametrize(
    ("column", "words"),
    [
        (NumericColumn(name="v", unit="m", input_unit="kg"), ["'kg' (mass)", "'m' (length)"]),
        (NumericColumn(name="v", unit="stone"), ["unit must be one of", "'stone'"]),
        (NumericColumn(name="v", unit="kg", input_unit="stone"), ["'stone'"]),
        (NumericColumn(name="v", input_unit="lb"), ["`v`", "must declare `unit`"]),
    ],
    ids=["mismatched-dimensions", "unknown-unit", "unknown-input-unit", "input-unit-alone"],
)
def test_bad_units_are_input_errors(column: NumericColumn, words: list[str]) -> None:
    with pytest.raises(InputError) as exc:
        fitted([column], [{"v": 1.0}])
    for word in words:
        assert word in str(exc.value)


def test_affine_is_exposed() -> None:
    from sidecar.preprocessing import UNITS, affine

    assert affine("lb", "kg") == (0.45359237, 0.0)
    assert {"kg", "lb", "degC", "degF", "m", "cm"} <= set(UNITS)


# -- state, construction and declaration errors -------------------------------------------


def test_with_state_of_keeps_an_old_preprocessors_vocabularies_and_fills() -> None:
    train = [{"w": 50.0 + k, "c": w} for k, w in enumerate(CODES)]
    old = fitted(
        [
            NumericColumn(name="w", unit="kg", allow_missing=True),
            CategoricalColumn(name="c", top_n=3),
        ],
        train,
    )
    new = TabularPreprocessor(
        columns=[
            NumericColumn(name="w", unit="kg", input_unit="lb", allow_missing=True),
            CategoricalColumn(name="c", top_n=1),  # would learn less if it were fitted again
        ]
    ).with_state_of(old)
    assert new.vocabularies_ == old.vocabularies_ == {"c": ("b", "a", "c")}
    assert new.fills_ == old.fills_
    assert new.feature_names_out == old.feature_names_out
    X_old = old.transform([{"w": 100.0, "c": "a"}, {"w": None, "c": "zz"}])
    X_new = new.transform([{"w": 220.46226218, "c": "a"}, {"w": None, "c": "zz"}])
    np.testing.assert_allclose(X_new, X_old, atol=1e-6)


def test_with_state_of_prefers_a_declared_vocabulary_and_needs_one_for_new_columns() -> None:
    old = fitted([CategoricalColumn(name="c")], [{"c": "a"}, {"c": "b"}])
    new = TabularPreprocessor(
        columns=[CategoricalColumn(name="c", vocabulary=("b", "a", "x"))]
    ).with_state_of(old)
    assert new.vocabularies_["c"] == ("b", "a", "x")
    with pytest.raises(InputError, match="`brand_new` must declare a `vocabulary`"):
        TabularPreprocessor(columns=[CategoricalColumn(name="brand_new")]).with_state_of(old)


def test_unfitted_preprocessor_says_to_fit() -> None:
    pre = TabularPreprocessor(columns=[NumericColumn(name="w")])
    with pytest.raises(InputError, match=r"fit"):
        pre.transform([{"w": 1.0}])
    with pytest.raises(InputError, match=r"fit"):
        _ = pre.feature_names_out
    assert pre.input_fields == ("w",)


def test_duplicate_column_names_are_rejected() -> None:
    pre = TabularPreprocessor(columns=[NumericColumn(name="w"), CategoricalColumn(name="w")])
    with pytest.raises(InputError, match=r"unique names.*\['w'\]"):
        pre.fit([{"w": 1.0}])


def test_fit_needs_records_and_columns() -> None:
    with pytest.raises(InputError, match="at least one training record"):
        TabularPreprocessor(columns=[NumericColumn(name="w")]).fit([])
    with pytest.raises(InputError, match="at least one column"):
        TabularPreprocessor(columns=[]).fit([{"w": 1.0}])


@pytest.mark.parametrize("n", [1, FAST + 1], ids=["rows", "columnar"])
def test_extra_fields_ignore_drops_extra_fields(n: int) -> None:
    cols = [NumericColumn(name="w"), CategoricalColumn(name="c")]
    lenient = fitted(cols, [{"w": 1.0, "c": "a"}], extra_fields="ignore")
    strict = fitted(cols, [{"w": 1.0, "c": "a"}])
    plain = [{"w": float(k), "c": "a" if k % 2 else "b"} for k in range(n)]
    noisy = [dict(r, comment="hi", score=None) for r in plain]
    np.testing.assert_array_equal(lenient.transform(noisy), strict.transform(plain))
    with pytest.raises(InputError, match="undeclared"):
        strict.transform(noisy)


def test_spec_round_trip_through_from_spec() -> None:
    pre = TabularPreprocessor(
        columns=[NumericColumn(name="w", unit="kg"), CategoricalColumn(name="c", top_n=4)],
        version="v7",
        extra_fields="ignore",
    )
    again = TabularPreprocessor.from_spec(pre.to_spec().model_dump())
    assert again.to_spec() == pre.to_spec()
    assert again.version == "v7"
    assert pre.categorical_fields == ("c",)
    assert isinstance(pre.fit([{"w": 1.0, "c": "a"}]), Preprocessor)


# -- spec files ---------------------------------------------------------------------------

SPEC: dict[str, Any] = {
    "version": "2024-06",
    "extra_fields": "ignore",
    "columns": [
        {
            "type": "numeric",
            "name": "weight",
            "unit": "kg",
            "input_unit": "lb",
            "allow_missing": True,
            "fill": "median",
        },
        {"type": "numeric", "name": "age", "allow_missing": True, "fill": 40.5},
        {
            "type": "categorical",
            "name": "dx",
            "top_n": 10,
            "min_count": 2,
            "recode": {"I10": "401.9", "E11.9": "250.00"},
            "encoding": "onehot",
        },
        {"type": "categorical", "name": "sex", "vocabulary": ["f", "m"]},
    ],
}

SPEC_TOML = """\
version = "2024-06"
extra_fields = "ignore"

[[columns]]
type = "numeric"
name = "weight"
unit = "kg"
input_unit = "lb"
allow_missing = true
fill = "median"

[[columns]]
type = "numeric"
name = "age"
allow_missing = true
fill = 40.5

[[columns]]
type = "categorical"
name = "dx"
top_n = 10
min_count = 2
encoding = "onehot"
recode = { "I10" = "401.9", "E11.9" = "250.00" }

[[columns]]
type = "categorical"
name = "sex"
vocabulary = ["f", "m"]
"""


def test_the_same_spec_in_json_toml_and_yaml_reads_the_same(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text(json.dumps(SPEC, indent=2))
    (tmp_path / "spec.toml").write_text(SPEC_TOML)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    (tmp_path / "spec.yml").write_text(yaml.safe_dump(SPEC, default_flow_style=True))
    specs = [
        sidecar.read_spec(tmp_path / f"spec.{ext}").to_spec()
        for ext in ("json", "toml", "yaml", "yml")
    ]
    assert specs[0] == TabularSpec.model_validate(SPEC)
    assert all(s == specs[0] for s in specs)
    pre = sidecar.read_spec(str(tmp_path / "spec.yaml"))
    assert isinstance(pre, TabularPreprocessor)
    assert not hasattr(pre, "vocabularies_")  # read unfitted
    assert pre.version == "2024-06"
    assert pre.columns[2] == CategoricalColumn(
        name="dx",
        top_n=10,
        min_count=2,
        recode={"I10": "401.9", "E11.9": "250.00"},
        encoding="onehot",
    )


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        (
            "unknown.yaml",
            "columns:\n  - {type: numeric, name: w, colour: red}\n",
            ["colour", "spec"],
        ),
        (
            "unknown-top.json",
            json.dumps({"columns": [{"name": "w", "type": "numeric"}], "encodings": {}}),
            ["encodings"],
        ),
        (
            "bad-type.toml",
            '[[columns]]\ntype = "numeric"\nname = "w"\nallow_missing = "maybe"\n',
            ["allow_missing"],
        ),
        ("spec.txt", "{}", [".json, .toml, .yaml or .yml", "'.txt'"]),
        ("spec", "{}", ["no suffix"]),
        ("broken.yaml", "columns: [\n  - a\n", ["not valid yaml"]),
        ("broken.json", '{"columns": [', ["not valid json"]),
        ("broken.toml", "columns = [", ["not valid toml"]),
        ("list.json", "[1, 2]", ["must hold a mapping", "list"]),
        ("empty.yaml", "", ["must hold a mapping", "NoneType"]),
    ],
)
def test_bad_spec_files_are_input_errors(
    tmp_path: Path, name: str, text: str, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        sidecar.read_spec(path)
    assert str(path) in str(exc.value)
    for word in words:
        assert word in str(exc.value)


def test_an_absent_spec_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        sidecar.read_spec(tmp_path / "nope.yaml")


# -- SklearnPreprocessor --------------------------------------------------------------------


def _frame_records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "a": float(rng.normal(5, 2)),
            "b": int(rng.integers(0, 100)),
            "c": str(rng.choice(["x", "y", "z"])),
        }
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def frame_transformer() -> Any:
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame.from_records(_frame_records(40, 0))
    return ColumnTransformer(
        [
            ("num", StandardScaler(), ["a", "b"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["c"]),
        ]
    ).fit(frame)


def test_sklearn_preprocessor_on_a_dataframe_fitted_transformer(frame_transformer: Any) -> None:
    import pandas as pd

    pre = SklearnPreprocessor(frame_transformer, categorical_fields=["c"], version="ct-1")
    assert isinstance(pre, Preprocessor)
    assert pre.input_fields == ("a", "b", "c")
    assert pre.categorical_fields == ("c",)
    assert pre.feature_names_out == ("num__a", "num__b", "cat__c_x", "cat__c_y", "cat__c_z")
    records = [*_frame_records(12, 1), {"a": np.float64(1.5), "b": 3, "c": "never-seen"}]
    X, report = pre.transform_with_report(records)
    expected = frame_transformer.transform(pd.DataFrame.from_records(records))
    np.testing.assert_array_equal(X, expected)
    assert X.dtype == np.float64
    assert X[-1, 2:].tolist() == [0.0, 0.0, 0.0]  # unknown category: all zeros
    assert report == EncodingReport(n_records=13, unknown={}, missing={})


def test_sklearn_preprocessor_names_bad_fields(frame_transformer: Any) -> None:
    pre = SklearnPreprocessor(frame_transformer, categorical_fields=["c"])
    records: list[Any] = [
        {"a": "1.5", "b": 3, "c": "x"},
        {"a": 1.0, "b": True, "c": "x"},
        {"a": 1.0, "b": float("nan"), "c": "x"},
        {"a": 1.0, "b": 3, "c": 2.5},
        {"a": 1.0, "c": "x"},
        {"a": 1.0, "b": 3, "c": "x", "zz": 1},
        "not a record",
    ]
    with pytest.raises(InputError) as exc:
        pre.transform(records)
    found = problems_of(exc)
    assert found["records[0].a"] == FieldProblem("records[0].a", "a finite number", "'1.5' (str)")
    assert found["records[1].b"].got == "True (bool)"
    assert found["records[2].b"].got == "nan (float)"
    assert found["records[3].c"] == FieldProblem("records[3].c", "a string", "2.5 (float)")
    assert found["records[4].b"].got == "nothing (the field is missing)"
    assert found["records[5]"].got == "unexpected fields ['zz']"
    assert found["records[6]"].expected == "an object"
    assert len(found) == 7
    with pytest.raises(InputError):
        pre.transform([])


def test_sklearn_preprocessor_counts_missing_when_nan_is_allowed(frame_transformer: Any) -> None:
    pre = SklearnPreprocessor(frame_transformer, categorical_fields=["c"], allow_nan=True)
    X, report = pre.transform_with_report(
        [
            {"a": None, "b": 3, "c": None},
            {"a": float("nan"), "b": 4, "c": "y"},
        ]
    )
    assert math.isnan(X[0, 0]) and math.isnan(X[1, 0])
    assert report.missing == {"a": 1, "c": 1}


def test_sklearn_preprocessor_rejects_null_numbers_unless_nan_is_allowed(
    frame_transformer: Any,
) -> None:
    pre = SklearnPreprocessor(frame_transformer, categorical_fields=["c"])
    with pytest.raises(InputError) as exc:
        pre.transform([{"a": None, "b": 3, "c": "x"}])
    assert [p.field for p in exc.value.problems] == ["records[0].a"]


def test_sklearn_preprocessor_rejects_an_int_too_large_for_a_float(
    frame_transformer: Any,
) -> None:
    pre = SklearnPreprocessor(frame_transformer, categorical_fields=["c"])
    with pytest.raises(InputError) as exc:
        pre.transform([{"a": 10**400, "b": 3, "c": "x"}])
    assert [p.field for p in exc.value.problems] == ["records[0].a"]


@pytest.fixture(scope="module")
def array_transformer() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rows = [[r["a"], r["b"], r["c"]] for r in _frame_records(40, 2)]
    return ColumnTransformer(
        [
            ("num", StandardScaler(), [0, 1]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [2]),
        ]
    ).fit(np.array(rows, dtype=object))


def test_sklearn_preprocessor_on_an_array_fitted_transformer(array_transformer: Any) -> None:
    with pytest.raises(InputError, match="`input_fields`"):
        SklearnPreprocessor(array_transformer)
    pre = SklearnPreprocessor(
        array_transformer, input_fields=["a", "b", "c"], categorical_fields=["c"]
    )
    records = _frame_records(9, 3)
    X = pre.transform(records)
    rows = np.array([[r["a"], r["b"], r["c"]] for r in records], dtype=object)
    np.testing.assert_array_equal(X, array_transformer.transform(rows))
    with pytest.raises(InputError) as exc:
        pre.transform([{"a": 1.0, "b": "3", "c": "x"}])
    assert [p.field for p in exc.value.problems] == ["records[0].b"]


def test_sklearn_preprocessor_on_a_numeric_array_fitted_scaler() -> None:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]]))
    pre = SklearnPreprocessor(scaler, input_fields=["u", "v"])
    X = pre.transform([{"u": 2, "v": 15.0}, {"v": 25.0, "u": 4.0}])
    np.testing.assert_array_equal(X, scaler.transform(np.array([[2.0, 15.0], [4.0, 25.0]])))


# -- save / load ---------------------------------------------------------------------------


def test_tabular_save_and_load_round_trip(tmp_path: Path) -> None:
    rng = random.Random(3)
    train = [_clean_record(rng, extra=False) for _ in range(40)]
    columns = [
        *EQUIV_COLUMNS,
        NumericColumn(name="n", allow_missing=True, fill="nan"),
        NumericColumn(name="k", allow_missing=True),
    ]
    for r in train:
        r["n"], r["k"] = rng.random(), rng.choice([None, 1, 2, 3.5])
    pre = fitted(columns, train, extra_fields="forbid")
    meta = save_preprocessing(pre, tmp_path / "pre")
    assert meta == {"kind": "tabular", "framework": "sidecar", "format": "json"}
    loaded = load_preprocessing(tmp_path / "pre", dict(meta, version="p-1"))
    assert isinstance(loaded, TabularPreprocessor)
    assert loaded.version == "p-1"
    assert loaded.to_spec() == pre.to_spec().model_copy(update={"version": "p-1"})
    assert loaded.vocabularies_ == pre.vocabularies_
    assert loaded.feature_names_out == pre.feature_names_out
    batch = [_clean_record(rng, extra=False) for _ in range(20)]
    for r in batch:
        r["n"], r["k"] = rng.choice([None, 0.5]), rng.choice([None, 7])
    for records in (batch, batch[:3]):
        X, report = pre.transform_with_report(records)
        X2, report2 = loaded.transform_with_report(records)
        np.testing.assert_array_equal(X2, X)  # NaN fills compare equal here
        assert report2 == report


def test_sklearn_save_and_load_round_trip(
    tmp_path: Path, frame_transformer: Any, array_transformer: Any
) -> None:
    records = _frame_records(10, 4)
    for name, pre in [
        ("frame", SklearnPreprocessor(frame_transformer, categorical_fields=["c"])),
        (
            "array",
            SklearnPreprocessor(
                array_transformer,
                input_fields=["a", "b", "c"],
                categorical_fields=["c"],
                allow_nan=True,
            ),
        ),
    ]:
        meta = save_preprocessing(pre, tmp_path / name)
        assert meta == {"kind": "sklearn", "framework": "sklearn", "format": "skops"}
        loaded = load_preprocessing(tmp_path / name, dict(meta, version="s-1"))
        assert isinstance(loaded, SklearnPreprocessor)
        assert loaded.version == "s-1"
        assert loaded.input_fields == pre.input_fields
        assert loaded.categorical_fields == ("c",)
        assert loaded.allow_nan == pre.allow_nan
        assert loaded.feature_names_out == pre.feature_names_out
        np.testing.assert_array_equal(loaded.transform(records), pre.transform(records))


def test_save_preprocessing_refuses_other_objects(tmp_path: Path) -> None:
    with pytest.raises(sidecar.BundleError, match="TabularPreprocessor"):
        save_preprocessing(object(), tmp_path / "x")  # type: ignore[arg-type]
