"""Partial unit switches: a share of a field's records in another unit is named with its share.

From the mixture fit (``sidecar.monitoring._mixture``) through ``check_health``
to a served window's verdict. Calibration and power are checked over seeded
simulations here at modest sizes; ``tests/benchmarks/bench_unit_mixture.py``
prints the full power table and the cost on a million rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import sidecar
from sidecar._monitor import diagnose
from sidecar.recording import open_store
from tests.monitoring import worlds
from tests.monitoring.worlds import Shift

SEED = 0


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


def _diagnose(
    bundle: sidecar.Bundle, tmp_path: Path, shift: Shift, n: int
) -> sidecar.monitoring.Diagnosis:
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
