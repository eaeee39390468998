"""Partial unit switches: a share of a field's records in another unit is named with its share.

From the mixture fit (``sidecar.monitoring._mixture``) through ``check_health``
to a served window's verdict. Calibration and power are checked over seeded
simulations here at modest sizes; ``tests/benchmarks/bench_unit_mixture.py``
prints the full power table and the cost on a million rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.ensemble import GradientBoostingClassifier

import sidecar
from sidecar import diagnose
from sidecar.bundle._reference import _numeric_sketch
from sidecar.monitoring import CurrentColumns, Diagnosis, MixtureFit, check_health, fit_unit_mixture
from sidecar.monitoring._mixture import _fit_shares
from sidecar.recording import open_store
from tests.monitoring import worlds
from tests.monitoring.worlds import Shift

SEED = 0
Draw = Callable[[np.random.Generator, int], np.ndarray]
Convert = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def bundle() -> sidecar.Bundle:
    """A gradient-boosted readmission model wrapped with its reference (weight in kg)."""
    train = worlds.classification_period(SEED, 0, 3000)
    reference = worlds.classification_period(SEED, 1, 2000)
    pre = sidecar.TabularPreprocessor(
        columns=[
            sidecar.NumericColumn(name="weight", unit="kg"),
            sidecar.NumericColumn(name="temp", unit="degC"),
            sidecar.NumericColumn(name="visits"),
            sidecar.CategoricalColumn(name="dx", encoding="onehot"),
            sidecar.NumericColumn(name="hba1c", allow_missing=True),
            sidecar.NumericColumn(name="u"),
        ]
    ).fit(train.records)
    model = GradientBoostingClassifier(random_state=SEED, n_estimators=50)
    model.fit(pre.transform(train.records), train.labels)
    return sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train.records, train.labels),
        reference=(reference.records, reference.labels),
        baseline="auto",
        name="readmission",
    )


def _diagnose(bundle: sidecar.Bundle, tmp_path: Path, shift: Shift, n: int) -> Diagnosis:
    period = worlds.classification_period(SEED, 2, n, shift)
    ts = worlds.serving_times(SEED, n)
    store = open_store(f"sqlite:///{tmp_path / 'served.db'}")
    try:
        sidecar.replay(
            bundle,
            period.records,
            store=store,
            labels=period.labels,
            timestamps=ts,
            label_timestamps=worlds.label_times(SEED, ts, never=0.10),
        )
        return diagnose(bundle, store)
    finally:
        store.close()


SWITCHES = [
    # (fault, feature, units, factor, offset)
    pytest.param("kg_to_lb", "weight", "kg->lb", 2.20462262, 0.0, id="one-source-in-lb"),
    pytest.param("degc_to_degf", "temp", "degC->degF", 1.8, 32.0, id="one-source-in-degF"),
]


@pytest.mark.parametrize(("fault", "feature", "units", "factor", "offset"), SWITCHES)
def test_a_served_partial_switch_is_a_preprocessing_fault_with_its_share(
    bundle: sidecar.Bundle,
    tmp_path: Path,
    fault: str,
    feature: str,
    units: str,
    factor: float,
    offset: float,
) -> None:
    """One upstream system of three sends another unit: 35% of the records."""
    d = _diagnose(bundle, tmp_path, Shift(faults=(fault,), fault_share=0.35), 2500)
    health = [h.to_dict() for h in d.health]
    assert d.verdict == "preprocessing_fault", (d.verdict, health)
    assert [(h["feature"], h["check"]) for h in health] == [(feature, "unit_mixture")]
    evidence = health[0]["evidence"]
    assert evidence["units"] == [units]
    assert evidence["factor"] == pytest.approx(factor, rel=1e-6)
    assert evidence["offset"] == pytest.approx(offset, abs=1e-6)
    assert evidence["share_low"] <= 0.35 <= evidence["share_high"]
    assert evidence["share"] == pytest.approx(0.35, abs=0.05)
    assert evidence["p_adjusted"] <= bundle.plan.alpha
    message = health[0]["message"]
    assert f"about {evidence['share']:.0%} of the values" in message and units in message
    assert any(feature in r and units in r for r in d.to_dict()["evidence"]["reasons"])
    assert d.recommendation.action == "fix preprocessing"
    assert d.recommendation.adapter is None  # convert, do not retrain
    assert feature in d.recommendation.detail


def test_a_served_clean_window_names_no_mixture(bundle: sidecar.Bundle, tmp_path: Path) -> None:
    d = _diagnose(bundle, tmp_path, Shift(), 2500)
    assert [h.check for h in d.health] == []


# --------------------------------------------------------------------------- the fit


def _sketch(values: np.ndarray) -> dict[str, Any]:
    return _numeric_sketch(np.asarray(values, dtype=np.float64))


def _fit(reference: np.ndarray, window: np.ndarray, declared: str | None = None) -> MixtureFit:
    fit = fit_unit_mixture(_sketch(reference), np.sort(window), declared=declared)
    assert fit is not None
    return fit


def _named(fit: MixtureFit | None, alpha: float = 0.05) -> bool:
    """What check_health turns into a finding (alone in its family)."""
    return fit is not None and fit.p_value <= alpha and fit.explains(min_share=MIN_SHARE)


MIN_SHARE = 0.1  # check_health's default


def test_the_share_is_the_binned_maximum_likelihood(rng: np.random.Generator) -> None:
    """The bisection on the score finds what scipy's bounded scalar minimiser finds."""
    k, bins = 6, 30
    p = rng.dirichlet(np.ones(bins), k)
    g = rng.dirichlet(np.full(bins, 0.3), k)
    truth = np.array([0.0, 0.05, 0.2, 0.5, 0.8, 1.0])
    c = np.array(
        [
            rng.multinomial(3000, (1 - s) * pi + s * gi)
            for s, pi, gi in zip(truth, p, g, strict=True)
        ]
    )
    found = _fit_shares(c.astype(float), p, g)
    for row in range(k):

        def nll(s: float, row: int = row) -> float:
            return -float(np.sum(c[row] * np.log((1 - s) * p[row] + s * g[row])))

        best = optimize.minimize_scalar(
            nll, bounds=(0, 1), method="bounded", options={"xatol": 1e-10}
        )
        assert nll(found[row]) <= nll(best.x) + 1e-7
        assert found[row] == pytest.approx(best.x, abs=1e-4)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2026)


def test_a_third_in_pounds_is_named_with_its_share(rng: np.random.Generator) -> None:
    reference = rng.normal(70, 12, 5000)
    window = rng.normal(70, 12, 2000)
    window[:700] *= 2.20462262
    fit = _fit(reference, window)
    assert fit.units == ("kg->lb",)
    assert fit.factor == pytest.approx(2.20462262) and fit.offset == 0.0
    assert fit.share_low <= 0.35 <= fit.share_high
    assert fit.share_high - fit.share_low < 0.09
    assert fit.p_value < 1e-50 and fit.explains(min_share=MIN_SHARE)
    assert fit.residual < fit.world_change  # no smooth change of the world does as well
    assert _fit(reference, window, declared="kg").units == ("kg->lb",)
    assert "kg->lb" not in _fit(reference, window, declared="m").units


def test_whole_numbers_recorded_in_pounds_are_rounded_pounds(rng: np.random.Generator) -> None:
    """Integer kg in the reference, integer lb from one source: rounding is part of the map."""
    reference = np.round(rng.normal(78, 14, 5000))
    window = np.round(rng.normal(78, 14, 2000))
    hit = rng.random(2000) < 0.35
    window[hit] = np.round(window[hit] * 2.20462262)
    fit = _fit(reference, window)
    assert fit.units == ("kg->lb",) and _named(fit)
    assert fit.share_low <= hit.mean() <= fit.share_high


# --------------------------------------------------------------------------- calibration

CLEAN: dict[str, Draw] = {
    "normal": lambda r, n: r.normal(70, 12, n),
    "skewed_gamma": lambda r, n: r.gamma(2.0, 50.0, n),
    "heavy_lognormal": lambda r, n: r.lognormal(3.0, 1.2, n),
    "heavy_t3": lambda r, n: 20 + 5 * r.standard_t(3, n),
    "bimodal": lambda r, n: np.where(r.random(n) < 0.4, r.normal(30, 4, n), r.normal(66, 6, n)),
    "counts": lambda r, n: r.poisson(20, n).astype(float),
    "zero_inflated": lambda r, n: np.where(r.random(n) < 0.3, 0.0, r.gamma(2.0, 10.0, n)),
}


@pytest.mark.parametrize("n", [300, 2000, 20000], ids=lambda n: f"n{n}")
def test_false_alarms_over_seeded_clean_windows_stay_below_alpha(n: int) -> None:
    """Unchanged data, 7 shapes x 20 seeds: the test's p-value <= alpha no more often than
    alpha allows (binomial 99.9% bound), and a named switch even less often."""
    alpha, runs = 0.05, 20
    rejected, named = 0, 0
    for name, draw in CLEAN.items():
        for seed in range(runs):
            r = np.random.default_rng((seed, n, len(name)))
            fit = fit_unit_mixture(_sketch(draw(r, 1000)), np.sort(draw(r, n)))
            rejected += fit is not None and fit.p_value <= alpha
            named += _named(fit, alpha)
    total = runs * len(CLEAN)
    assert rejected <= stats.binom.ppf(0.999, total, alpha), rejected / total
    assert named <= stats.binom.ppf(0.999, total, alpha), named / total


def _stretch(x: np.ndarray, s: float) -> np.ndarray:
    return np.asarray(np.median(x) + s * (x - np.median(x)))


WORLD_CHANGES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shift_10pct": lambda x, r: x + 0.1 * np.abs(np.mean(x)) + 0.1,
    "shift_30pct": lambda x, r: x + 0.3 * np.abs(np.mean(x)) + 0.3,
    "wider_x1.5": lambda x, r: _stretch(x, 1.5),
    "wider_x3": lambda x, r: _stretch(x, 3.0),
    "narrower_x0.6": lambda x, r: _stretch(x, 0.6),
    "more_skew": lambda x, r: (
        _stretch(x, 1.0) + 0.4 * np.maximum(x - np.median(x), 0) * (x - np.median(x)) / np.std(x)
    ),
}


@pytest.mark.parametrize("change", WORLD_CHANGES.values(), ids=WORLD_CHANGES.keys())
@pytest.mark.parametrize("n", [500, 20000], ids=lambda n: f"n{n}")
def test_a_changed_world_is_not_a_partial_unit_switch(
    change: Callable[[np.ndarray, np.random.Generator], np.ndarray], n: int
) -> None:
    """Shifts, stretches and skews of every clean shape: drift, never a named switch."""
    for name, draw in CLEAN.items():
        r = np.random.default_rng((n, len(name)))
        fit = fit_unit_mixture(_sketch(draw(r, 5000)), np.sort(change(draw(r, n), r)))
        assert not _named(fit), (name, fit)


# --------------------------------------------------------------------------- power

SWITCH_WORLDS: dict[str, tuple[Draw, Convert, str]] = {
    # name: (clean values, conversion, units, factor)
    "kg->lb": (lambda r, n: r.normal(70, 12, n), lambda x: x * 2.20462262, "kg->lb"),
    "x1000": (lambda r, n: r.gamma(4.0, 50.0, n), lambda x: x * 1000, "kg->g"),
    "m->cm": (lambda r, n: r.normal(1.7, 0.1, n), lambda x: x * 100, "m->cm"),
    "degC->degF": (lambda r, n: r.normal(15, 8, n), lambda x: 1.8 * x + 32, "degC->degF"),
}
#: least detection rate (the right conversion named) over 6 seeds; the benchmark's
#: table over 20 seeds: 1.0 everywhere at 35% and 60%; at 15% of 500 rows 0.75-0.9
#: (x1000 is then sometimes taken for x1440, degC->degF missed), at 2,000 rows >= 0.95
POWER = {(name, share): 0.9 for name in SWITCH_WORLDS for share in (0.15, 0.35, 0.6)}
POWER["x1000", 0.15] = 0.8
POWER["degC->degF", 0.15] = 0.4


@pytest.mark.parametrize("share", [0.15, 0.35, 0.6], ids=lambda s: f"{s:.0%}")
@pytest.mark.parametrize("world", SWITCH_WORLDS, ids=list(SWITCH_WORLDS))
def test_power_to_name_a_partial_switch_and_its_share(world: str, share: float) -> None:
    draw, convert, units = SWITCH_WORLDS[world]
    for n in (500, 2000):
        named, covered = 0, 0
        for seed in range(6):
            r = np.random.default_rng((seed, n))
            window = draw(r, n)
            hit = r.random(n) < share
            window[hit] = convert(window[hit])
            fit = fit_unit_mixture(_sketch(draw(r, 5000)), np.sort(window))
            named += _named(fit) and fit is not None and units in fit.units
            covered += fit is not None and fit.share_low <= hit.mean() <= fit.share_high
        assert named >= 6 * POWER[world, share if n == 500 else 0.35], (n, named)
        assert covered >= 5, (n, covered)  # the share's 95% interval


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def segments() -> dict[str, np.ndarray]:
    """River's bundled image-segment data (2,310 regions, 7 classes): multimodal colours."""
    from river import datasets

    rows = list(datasets.ImageSegments())  # type: ignore[no-untyped-call]
    columns = {k: np.array([x[k] for x, _ in rows], dtype=float) for k in rows[0][0]}
    columns["class"] = np.array([y for _, y in rows])
    return columns


BIMODAL = ["hue-mean", "exgreen-mean", "saturation-mean", "rawblue-mean", "intensity-mean"]


def _halves(values: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(values.size)
    return values[order[: values.size // 2]], values[order[values.size // 2 :]]


@pytest.mark.parametrize("column", BIMODAL)
def test_a_real_bimodal_feature_raises_no_alarm(
    segments: dict[str, np.ndarray], column: str
) -> None:
    """Random halves of a real multimodal column: the health checks say nothing; a change
    of its mode mix (more sky and foliage) is drift, not a unit switch; a third of its
    values converted is named with its unit."""
    for seed in range(5):
        reference, window = _halves(segments[column], seed)
        sketch = {column: _sketch(reference)}
        assert check_health(sketch, CurrentColumns(numeric={column: window}), alpha=0.05) == []
    reference, window = _halves(segments[column], 99)
    _, classes = _halves(segments["class"], 99)
    r = np.random.default_rng(99)
    weights = np.where(np.isin(classes, ["sky", "foliage"]), 3.0, 1.0)
    mixed = r.choice(window, window.size, p=weights / weights.sum())
    sketch = {column: _sketch(reference)}
    found = check_health(sketch, CurrentColumns(numeric={column: mixed}), alpha=0.05)
    assert "unit_mixture" not in [f.check for f in found]
    conversions: list[tuple[Convert, str]] = [
        (lambda x: x * 2.20462262, "kg->lb"),
        (lambda x: 1.8 * x + 32, "degC->degF"),
    ]
    for convert, units in conversions:
        switched = window.copy()
        hit = r.random(window.size) < 0.35
        switched[hit] = convert(switched[hit])
        found = check_health(sketch, CurrentColumns(numeric={column: switched}), alpha=0.05)
        assert [(f.check, f.evidence["units"]) for f in found] == [("unit_mixture", [units])]
        assert found[0].evidence["share_low"] <= hit.mean() <= found[0].evidence["share_high"]


def test_a_real_multimodal_count_raises_no_alarm() -> None:
    """River's bundled NASA shuttle data, feature f1 (whole numbers, several modes):
    10,000 reference rows against windows of 2,000 and 20,000 others."""
    from river import datasets

    f1 = np.array([x["f1"] for x, _ in datasets.Shuttle()], dtype=float)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(f1.size)
        sketch = {"f1": _sketch(f1[order[:10000]])}
        for n in (2000, 20000):
            window = CurrentColumns(numeric={"f1": f1[order[10000 : 10000 + n]]})
            assert check_health(sketch, window, alpha=0.05) == []
    switched = f1[order[10000:30000]].copy()
    hit = np.random.default_rng(7).random(switched.size) < 0.15
    switched[hit] *= 1000  # one source in milli-units
    found = check_health(sketch, CurrentColumns(numeric={"f1": switched}), alpha=0.05)
    assert [(f.check, f.evidence["factor"]) for f in found] == [("unit_mixture", 1000.0)]


@pytest.mark.parametrize("pixel", [2, 14, 49, 58, 62], ids=lambda p: f"p{p:02d}")
def test_rotated_grey_levels_are_not_a_unit_switch(pixel: int) -> None:
    """Whole-number grey levels (0..16, mostly zeros) of scikit-learn's digits, the camera
    turned by 30 degrees: pixels go dark. Crushing conversions (x0.001, oz->lb's 1/16, rounded)
    would explain "more zeros" as a unit; they are not tried (found by the resnet example)."""
    from scipy.ndimage import rotate
    from sklearn.datasets import load_digits

    images = load_digits().images
    rng = np.random.default_rng(0)
    turned = np.stack(
        [
            np.clip(np.rint(rotate(img, 30 + rng.uniform(-5, 5), reshape=False, order=1)), 0, 16)
            for img in images[1200:1500]
        ]
    )
    reference = images[:900].reshape(-1, 64)[:, pixel]
    window = turned.reshape(-1, 64)[:, pixel]
    assert not _named(_fit(reference, window))
