"""Preprocessing health: each check fires on its fault, and stays silent otherwise."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sidecar import InputError
from sidecar.bundle._reference import _categorical_sketch, _numeric_sketch
from sidecar.monitoring import CurrentColumns, HealthFinding, check_health, value_shape

N_REF, N_CUR = 5000, 1000
ICD9 = ["250.00", "401.9", "428.0", "414.01", "486", "599.0", "V58.61"]
ICD10 = ["E11.9", "I10", "I50.9", "I25.10", "J18.9", "N39.0", "Z79.4"]
COLOURS = ["red", "green", "blue"]


def _draw(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """One sample of every field, in the units the model was trained on."""
    return {
        "weight": rng.normal(70, 12, n),  # kg
        "height": rng.normal(1.70, 0.10, n),  # m
        "temperature": rng.normal(15, 8, n),  # degC
        "amount": rng.gamma(4.0, 50.0, n),  # thousands
        "visits": rng.poisson(20, n).astype(float),  # a count
        "diagnosis": list(rng.choice(ICD9, n, p=[0.3, 0.25, 0.15, 0.1, 0.1, 0.05, 0.05])),
        "colour": list(rng.choice(COLOURS, n)),
    }


NUMERIC = ["weight", "height", "temperature", "amount", "visits"]
CATEGORICAL = ["diagnosis", "colour"]


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, Any]]:
    data = _draw(np.random.default_rng(0), N_REF)
    sketches = {k: _numeric_sketch(data[k]) for k in NUMERIC}
    for k in CATEGORICAL:
        unknown = 10  # a few codes the encoder did not know
        sketches[k] = _categorical_sketch(data[k], unknown if k == "diagnosis" else 0, N_REF)
    return sketches


def _window(seed: int, **faults: Callable[[Any], Any]) -> CurrentColumns:
    data = _draw(np.random.default_rng(seed), N_CUR)
    for name, fault in faults.items():
        data[name] = fault(data[name])
    unseen = sum(v not in ICD9 for v in data["diagnosis"])
    unknown = {"diagnosis": min(N_CUR, unseen + 2), "colour": 0}
    return CurrentColumns(
        numeric={k: np.asarray(data[k], dtype=float) for k in NUMERIC},
        categorical={k: data[k] for k in CATEGORICAL},
        unknown=unknown,
    )


def _checks(findings: list[HealthFinding]) -> list[tuple[str, str]]:
    return [(f.feature, f.check) for f in findings]


# --------------------------------------------------------------------------- silence


@pytest.mark.parametrize("seed", range(1, 11), ids=lambda s: f"seed{s}")
def test_silent_without_change(reference: dict[str, dict[str, Any]], seed: int) -> None:
    assert check_health(reference, _window(seed), alpha=0.05) == []


def _shift(fraction: float) -> Callable[[Any], Any]:
    return lambda x: x + fraction * float(np.mean(x))


def _spread(factor: float) -> Callable[[Any], Any]:
    return lambda x: np.mean(x) + factor * (x - np.mean(x))


ORDINARY = {
    "shift_10pct": {k: _shift(0.10) for k in ("weight", "height", "amount")},
    "variance_x1.5": {k: _spread(1.5) for k in ("weight", "height", "temperature")},
    "variance_x0.6": {k: _spread(0.6) for k in ("weight", "height", "temperature", "amount")},
    "amount_skewed_up": {"amount": lambda x: np.random.default_rng(9).gamma(3.0, 75.0, x.size)},
    "temperature_warmer_3deg": {"temperature": lambda x: x + 3.0},
    "more_visits": {"visits": lambda x: np.random.default_rng(9).poisson(24, x.size) * 1.0},
    "case_mix": {
        "diagnosis": lambda v: list(np.random.default_rng(9).choice(ICD9, len(v))),
        "colour": lambda v: ["red"] * (len(v) // 2) + list(v[len(v) // 2 :]),
    },
}


@pytest.mark.parametrize("faults", ORDINARY.values(), ids=ORDINARY.keys())
@pytest.mark.parametrize("seed", [1, 2, 3], ids=lambda s: f"seed{s}")
def test_silent_on_ordinary_drift(
    reference: dict[str, dict[str, Any]], faults: dict[str, Callable[[Any], Any]], seed: int
) -> None:
    assert check_health(reference, _window(seed, **faults), alpha=0.05) == []


# --------------------------------------------------------------------------- unit factors

UNIT_FAULTS = [
    ("kg_to_lb", "weight", lambda x: x * 2.20462262, 2.20462262, 0.0, "kg->lb"),
    ("lb_to_kg", "weight", lambda x: x / 2.20462262, 0.45359237, 0.0, "lb->kg"),
    ("m_to_cm", "height", lambda x: x * 100, 100.0, 0.0, "m->cm"),
    ("m_to_mm", "height", lambda x: x * 1000, 1000.0, 0.0, "m->mm"),
    ("degC_to_degF", "temperature", lambda x: 1.8 * x + 32, 1.8, 32.0, "degC->degF"),
    ("times_1000", "amount", lambda x: x * 1000, 1000.0, 0.0, "kg->g"),
    ("divided_by_1000", "amount", lambda x: x / 1000, 0.001, 0.0, "g->kg"),
    ("km_to_mi", "weight", lambda x: x / 1.609344, 0.621371192, 0.0, "km->mi"),
    ("in_to_cm", "height", lambda x: x * 2.54, 2.54, 0.0, "in->cm"),
    ("visits_times_1000", "visits", lambda x: x * 1000, 1000.0, 0.0, "s->ms"),
]


@pytest.mark.parametrize(
    ("field", "fault", "factor", "offset", "units"),
    [c[1:] for c in UNIT_FAULTS],
    ids=[c[0] for c in UNIT_FAULTS],
)
def test_unit_factor_is_found(
    reference: dict[str, dict[str, Any]],
    field: str,
    fault: Callable[[Any], Any],
    factor: float,
    offset: float,
    units: str,
) -> None:
    findings = check_health(reference, _window(4, **{field: fault}), alpha=0.05)
    assert _checks(findings) == [(field, "unit_factor")]
    evidence = findings[0].evidence
    assert evidence["factor"] == pytest.approx(factor, rel=1e-6)
    assert evidence["offset"] == pytest.approx(offset, abs=1e-6)
    assert units in evidence["units"]
    assert math.isnan(findings[0].p_value)
    assert field in findings[0].message


def test_unit_factor_respects_a_declared_unit(reference: dict[str, dict[str, Any]]) -> None:
    window = _window(5, height=lambda x: x * 100)
    only_m = check_health(reference, window, alpha=0.05, units={"height": "m"})
    assert only_m[0].evidence["units"] == ["m->cm"]
    as_mass = check_health(reference, window, alpha=0.05, units={"height": "kg"})
    assert "unit_factor" not in [f.check for f in as_mass]


def test_a_variance_change_of_a_zero_centred_feature_is_not_a_unit() -> None:
    rng = np.random.default_rng(6)
    sketch = {"z": _numeric_sketch(rng.normal(0, 1, N_REF))}
    for factor in (1.5, 2.0, 3.0):
        window = CurrentColumns(numeric={"z": rng.normal(0, factor, N_CUR)})
        assert check_health(sketch, window, alpha=0.05) == []


# --------------------------------------------------------------------------- partial unit switches


def _some(share: float, convert: Callable[[np.ndarray], np.ndarray]) -> Callable[[Any], Any]:
    """``convert`` applied to every record of one source in ``1 / share``."""

    def fault(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        hit = np.arange(x.size) % round(1 / share) == 0
        x[hit] = convert(x[hit])
        return x

    return fault


PARTIAL = [
    ("lb_one_in_three", "weight", 1 / 3, lambda x: x * 2.20462262, "kg->lb"),
    ("cm_one_in_two", "height", 1 / 2, lambda x: x * 100, "m->cm"),
    ("x1000_one_in_six", "amount", 1 / 6, lambda x: x * 1000, "kg->g"),
    ("degF_one_in_three", "temperature", 1 / 3, lambda x: 1.8 * x + 32, "degC->degF"),
]


@pytest.mark.parametrize(
    ("field", "share", "convert", "units"), [c[1:] for c in PARTIAL], ids=[c[0] for c in PARTIAL]
)
def test_a_partial_unit_switch_is_a_mixture_with_its_share(
    reference: dict[str, dict[str, Any]],
    field: str,
    share: float,
    convert: Callable[[np.ndarray], np.ndarray],
    units: str,
) -> None:
    """Not a whole-column factor, not a range fault (x1000 goes far beyond it): a mixture."""
    findings = check_health(reference, _window(16, **{field: _some(share, convert)}), alpha=0.05)
    assert _checks(findings) == [(field, "unit_mixture")]
    evidence = findings[0].evidence
    assert units in evidence["units"]
    assert evidence["share_low"] <= share <= evidence["share_high"]
    assert evidence["p_adjusted"] <= 0.05 and findings[0].p_value <= evidence["p_adjusted"]
    assert f"about {evidence['share']:.0%} of the values" in findings[0].message


def test_a_partial_switch_beside_missing_values_and_new_codes(
    reference: dict[str, dict[str, Any]],
) -> None:
    """Each fault keeps its own check in one window: pounds from one source, a blanked
    field, a new code system."""

    def blank(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[::5] = np.nan  # 20%
        return x

    window = _window(
        17, weight=_some(1 / 3, lambda x: x * 2.20462262), height=blank, diagnosis=_icd10
    )
    findings = check_health(reference, window, alpha=0.05)
    assert _checks(findings) == [
        ("diagnosis", "format"),
        ("diagnosis", "unknown_rate"),
        ("height", "missing_rate"),
        ("weight", "unit_mixture"),
    ]
    # and with a third of the weights missing as well, the share is of the values present
    both = _window(17, weight=lambda x: blank(_some(1 / 3, lambda v: v * 2.20462262)(x)))
    found = {f.check: f for f in check_health(reference, both, alpha=0.05)}
    assert set(found) == {"missing_rate", "unit_mixture"}
    assert found["unit_mixture"].evidence["n"] == N_CUR * 4 // 5


def test_a_partial_switch_below_the_share_floor_is_not_named(
    reference: dict[str, dict[str, Any]],
) -> None:
    window = _window(18, weight=_some(1 / 25, lambda x: x * 2.20462262))  # 4%
    assert "unit_mixture" not in [f.check for f in check_health(reference, window, alpha=0.05)]
    named = check_health(reference, window, alpha=0.05, min_mixture_share=0.02)
    assert _checks(named) == [("weight", "unit_mixture")]
    with pytest.raises(InputError, match=r"`min_mixture_share` must be a number in \[0, 1\]"):
        check_health(reference, window, alpha=0.05, min_mixture_share=1.5)


def test_a_small_window_is_not_fitted(reference: dict[str, dict[str, Any]]) -> None:
    """Fewer present values than ``min_count``: no mixture is fitted at all."""
    lb = _some(1 / 3, lambda x: x * 2.20462262)
    window = CurrentColumns(numeric={"weight": lb(np.random.default_rng(19).normal(70, 12, 60))})
    assert check_health(reference, window, alpha=0.05) == []
    found = check_health(reference, window, alpha=0.05, min_count=50)
    assert _checks(found) == [("weight", "unit_mixture")]


# --------------------------------------------------------------------------- codes


def _icd10(codes: list[str]) -> list[str]:
    return [ICD10[ICD9.index(c)] for c in codes]


def test_code_system_switch_raises_unknown_rate_and_format(
    reference: dict[str, dict[str, Any]],
) -> None:
    findings = check_health(reference, _window(7, diagnosis=_icd10), alpha=0.05)
    assert _checks(findings) == [("diagnosis", "format"), ("diagnosis", "unknown_rate")]
    fmt, unknown = findings
    assert unknown.evidence["current_rate"] == pytest.approx(1.0, abs=0.01)
    assert unknown.evidence["reference_rate"] == pytest.approx(10 / N_REF)
    assert unknown.p_value < 1e-10
    assert unknown.evidence["p_adjusted"] >= unknown.p_value
    assert "A99.9" in fmt.evidence["new_shapes"]
    assert fmt.evidence["share"] > 0.5


def test_shapes() -> None:
    assert [value_shape(v) for v in ["250.00", "E11.9", "V58.61", "ß-7"]] == [
        "999.99",
        "A99.9",
        "A99.99",
        "A-9",
    ]


def test_a_small_unknown_rise_is_not_material(reference: dict[str, dict[str, Any]]) -> None:
    def some_new(codes: list[str]) -> list[str]:
        return ["999.99" if i % 50 == 0 else c for i, c in enumerate(codes)]  # 2%

    findings = check_health(reference, _window(8, diagnosis=some_new), alpha=0.05)
    assert findings == []


# --------------------------------------------------------------------------- sign, wrap, range


def test_negative_counts_break_the_sign_fact(reference: dict[str, dict[str, Any]]) -> None:
    def negate_some(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[::20] *= -1  # 5%
        return x

    findings = check_health(reference, _window(9, visits=negate_some), alpha=0.05)
    assert _checks(findings) == [("visits", "sign")]
    assert findings[0].evidence["share"] == pytest.approx(0.05, abs=0.002)
    assert findings[0].evidence["examples"][0] < 0


@pytest.mark.parametrize(
    "wrap",
    [lambda v: v - 2.0**32, lambda v: 2.0**32 - v, lambda v: -(2.0**31) + v],
    ids=["signed_read_of_unsigned", "negative_stored_unsigned", "int32_overflow"],
)
def test_wraparound_near_2_32(
    reference: dict[str, dict[str, Any]], wrap: Callable[[np.ndarray], np.ndarray]
) -> None:
    def wrap_some(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[::10] = wrap(x[::10])
        return x

    findings = check_health(reference, _window(10, visits=wrap_some), alpha=0.05)
    assert _checks(findings) == [("visits", "wraparound")]  # not also "sign" or "range"
    assert findings[0].evidence["count"] == 100


def test_values_far_beyond_the_reference_range(reference: dict[str, dict[str, Any]]) -> None:
    def corrupt(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[::25] = 9999.0  # 4%, a sentinel
        return x

    findings = check_health(reference, _window(11, weight=corrupt), alpha=0.05)
    assert _checks(findings) == [("weight", "range")]
    assert findings[0].evidence["examples"] == [9999.0]


def test_one_odd_value_in_a_large_window_is_not_material(
    reference: dict[str, dict[str, Any]],
) -> None:
    def one(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[0] = -3.0
        return x

    assert check_health(reference, _window(12, visits=one), alpha=0.05) == []


# --------------------------------------------------------------------------- format, missing


def test_integers_turning_fractional_is_a_format_fault(
    reference: dict[str, dict[str, Any]],
) -> None:
    findings = check_health(reference, _window(13, visits=lambda x: x + 0.5), alpha=0.05)
    assert _checks(findings) == [("visits", "format")]
    assert findings[0].evidence["fact"] == "integer"


def test_missing_rate_jump(reference: dict[str, dict[str, Any]]) -> None:
    def blank_numbers(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[::5] = np.nan  # 20%
        return x

    def blank_labels(v: list[str]) -> list[str | None]:
        return [None if i % 4 == 0 else c for i, c in enumerate(v)]  # 25%

    window = _window(14, height=blank_numbers, colour=blank_labels)
    findings = check_health(reference, window, alpha=0.05)
    assert _checks(findings) == [("colour", "missing_rate"), ("height", "missing_rate")]
    assert findings[1].evidence["current_rate"] == pytest.approx(0.2)
    assert findings[1].evidence["reference_rate"] == 0.0
    assert all(f.p_value < 1e-10 for f in findings)


def test_findings_are_json_ready(reference: dict[str, dict[str, Any]]) -> None:
    findings = check_health(reference, _window(15, weight=lambda x: x * 2.20462262), alpha=0.05)
    d = findings[0].to_dict()
    assert d["check"] == "unit_factor"
    assert d["p_value"] is None
    assert d["evidence"]["units"][0] == "kg->lb"


# --------------------------------------------------------------------------- errors


def _with_shortcuts(window: CurrentColumns) -> CurrentColumns:
    from collections import Counter
    from dataclasses import replace

    return replace(
        window,
        sorted_present={k: np.sort(v[~np.isnan(v)]) for k, v in window.numeric.items()},
        counts={k: Counter(v) for k, v in window.categorical.items()},
    )


@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"weight": lambda x: x * 2.20462, "height": lambda x: x * 100},
        {"visits": lambda x: np.where(np.arange(x.size) % 10 == 0, x - 2.0**32, x)},
        {"amount": lambda x: np.where(np.arange(x.size) % 5 == 0, np.nan, x)},
        {"diagnosis": lambda d: [v.replace(".", "") if i % 3 else v for i, v in enumerate(d)]},
        {"weight": lambda x: np.where(np.arange(x.size) % 3 == 0, x * 2.20462262, x)},
    ],
    ids=["none", "units", "wraparound", "missing", "code-format", "partial-units"],
)
def test_sorted_columns_and_counts_given_change_nothing(
    reference: dict[str, dict[str, Any]], faults: dict[str, Callable[[Any], Any]]
) -> None:
    """The diagnosis's shortcuts (columns sorted, values counted once) find the same."""
    window = _window(12, **faults)
    plain = check_health(reference, window, alpha=0.05)
    assert bool(plain) == bool(faults)
    assert check_health(reference, _with_shortcuts(window), alpha=0.05) == plain


def test_errors_name_the_argument(reference: dict[str, dict[str, Any]]) -> None:
    ok = _window(1)
    with pytest.raises(InputError, match=r"`alpha` must be a number in \(0, 1\); got 1.5"):
        check_health(reference, ok, alpha=1.5)
    with pytest.raises(InputError, match=r"`min_share` must be a number in \[0, 1\]"):
        check_health(reference, ok, alpha=0.05, min_share=2)
    with pytest.raises(InputError, match=r"`current` must be a CurrentColumns; got dict"):
        check_health(reference, {}, alpha=0.05)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"`reference_summary` must be a mapping"):
        check_health([], ok, alpha=0.05)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"`units\['height'\]` must be one of"):
        check_health(reference, ok, alpha=0.05, units={"height": "parsec"})
    with pytest.raises(InputError, match=r"`current.numeric\['colour'\]` is categorical"):
        check_health(reference, CurrentColumns(numeric={"colour": np.ones(3)}), alpha=0.05)
    with pytest.raises(InputError, match=r"`current.categorical\['weight'\]` is numeric"):
        check_health(reference, CurrentColumns(categorical={"weight": ["a"]}), alpha=0.05)
    with pytest.raises(InputError, match=r"`current.unknown\['colour'\]` needs the field's"):
        check_health(reference, CurrentColumns(unknown={"colour": 1}), alpha=0.05)
    with pytest.raises(
        InputError, match=r"`current.unknown\[.colour.\]` must be an integer in \[0, 1\]"
    ):
        bad = CurrentColumns(categorical={"colour": ["red"]}, unknown={"colour": -1})
        check_health(reference, bad, alpha=0.05)
    with pytest.raises(InputError, match=r"`current.numeric\['weight'\]` must be a 1-D array"):
        check_health(reference, CurrentColumns(numeric={"weight": np.ones((2, 2))}), alpha=0.05)
    with pytest.raises(
        InputError, match=r"`current.sorted_present\['weight'\]` must be the field's 3 non-missing"
    ):
        bad = CurrentColumns(
            numeric={"weight": np.array([3.0, 1.0, 2.0, np.nan])},
            sorted_present={"weight": np.array([3.0, 2.0, 1.0])},  # descending
        )
        check_health(reference, bad, alpha=0.05)


def test_values_counted_from_their_codes_are_counter_exactly() -> None:
    """Same keys, counts and key order as ``Counter``: codes whose values are equal merge
    (as canonical categories may), missing is ``None``, a value first seen late keeps its
    place, and a column without codes is counted as it is."""
    from collections import Counter

    from sidecar.monitoring._input_evidence import count_values

    rng = np.random.default_rng(3)
    table = np.array(["b", "a", "B", "b", "late", None], dtype=object)
    codes = rng.choice([0, 1, 2, 3, 5], size=50_000)
    codes[-7] = 4  # seen once, at the end: beyond the first prefixes scanned
    values = table[codes]
    want = Counter(values)
    got = count_values(values, (codes, table))
    assert list(got.items()) == list(want.items())
    assert got["b"] == int(np.isin(codes, [0, 3]).sum()) and got["late"] == 1
    assert list(count_values(values).items()) == list(want.items())
    empty = np.zeros(0, dtype=np.intp)
    assert count_values(table[empty], (empty, table)) == Counter()
