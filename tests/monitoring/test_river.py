"""The two failures of issue 10, on data this project did not write: river's synthetic streams.

The whole public path: a model trained on a river stream, wrapped with
``sidecar.wrap`` (default plan, automatic baseline, a held-out reference),
a later stretch of the stream replayed through the serving path into a real
SQLite file, and the diagnosis read back as ``sidecar diagnose`` reads it
(``sidecar.cli.main`` in-process, ``--json``).

- ``Agrawal`` (Agrawal, Imielinski & Swami 1993): a random forest learns
  classification function 0; the stream switches to function 2 (concept
  drift). Its accuracy collapses from ~1.00 to ~0.5 on 1,500-2,000 labels: that
  is an alarm, never ``insufficient_data``.
- ``Friedman`` (Friedman 1991): a gradient-boosted regressor, the stream
  unchanged, 3,000 labels: ``healthy``, also with one label a million off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

import sidecar
from sidecar.cli import main
from sidecar.recording import open_store

river_synth = pytest.importorskip("river.datasets.synth")

DAY = 86_400.0
START = 1_767_225_600.0
AGRAWAL_FIELDS = (
    "salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"
)  # fmt: skip


def _agrawal(function: int, seed: int, n: int) -> tuple[list[dict[str, Any]], list[int]]:
    stream = river_synth.Agrawal(classification_function=function, seed=seed)
    rows = list(stream.take(n))
    return [{k: float(x[k]) for k in AGRAWAL_FIELDS} for x, _ in rows], [int(y) for _, y in rows]


def _friedman(seed: int, n: int) -> tuple[list[dict[str, Any]], list[float]]:
    rows = list(river_synth.Friedman(seed=seed).take(n))
    return [{f"x{k}": float(v) for k, v in x.items()} for x, _ in rows], [float(y) for _, y in rows]


def _diagnose_cli(
    bundle: sidecar.Bundle,
    root: Path,
    records: list[dict[str, Any]],
    labels: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, dict[str, Any]]:
    """Replay one day of ``records`` into a fresh SQLite file, then ``sidecar diagnose --json``."""
    path = bundle.save(root / "bundle")
    url = f"sqlite:///{root / 'records.db'}"
    ts = (START + np.sort(np.random.default_rng(0).uniform(0, DAY, len(records)))).tolist()
    store = open_store(url)
    try:
        done = sidecar.replay(
            bundle,
            records,
            store=store,
            labels=labels,
            timestamps=ts,
            label_timestamps=[t + 3600.0 for t in ts],
        )
        assert done.records == len(records) and done.dropped == 0
    finally:
        store.close()
    capsys.readouterr()
    code = main(["diagnose", str(path), "--store", url, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def agrawal_bundle() -> sidecar.Bundle:
    train, y_train = _agrawal(0, seed=1, n=4000)
    reference, y_ref = _agrawal(0, seed=2, n=2000)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=f) for f in AGRAWAL_FIELDS]
    ).fit(train)
    model = RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=1)
    model.fit(pre.transform(train), y_train)
    return sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(reference, y_ref),
        baseline="auto",
        name="agrawal",
    )


@pytest.mark.parametrize("n", [1500, 2000], ids=["1500-labels", "2000-labels"])
def test_an_agrawal_concept_switch_is_an_alarm_not_a_wait(
    agrawal_bundle: sidecar.Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    n: int,
) -> None:
    records, labels = _agrawal(2, seed=3, n=n)  # the concept moved: function 0 -> 2
    code, out = _diagnose_cli(agrawal_bundle, tmp_path, records, labels, capsys)
    acc = {who: m["accuracy"]["value"] for who, m in out["evidence"]["metrics"].items()}
    assert acc["advanced_reference"] > 0.97 and acc["advanced"] < 0.7, acc
    assert out["window"]["n_labelled"] == n
    assert out["verdict"] in {"concept_drift", "data_drift"}, out["evidence"]["reasons"]
    assert code == 1
    assert out["recommendation"]["action"] == "retrain"
    assert out["recommendation"]["adapter"] == "replace-members"  # a forest


def test_the_same_agrawal_stream_unchanged_is_healthy_on_1500_labels(
    agrawal_bundle: sidecar.Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records, labels = _agrawal(0, seed=4, n=1500)
    code, out = _diagnose_cli(agrawal_bundle, tmp_path, records, labels, capsys)
    assert (code, out["verdict"]) == (0, "healthy"), out["evidence"]["reasons"]
    assert out["evidence"]["bounds"]["no_material_decline"] is True


@pytest.fixture(scope="module")
def friedman_bundle() -> sidecar.Bundle:
    train, y_train = _friedman(seed=1, n=4000)
    reference, y_ref = _friedman(seed=2, n=1500)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=f"x{k}") for k in range(10)]
    ).fit(train)
    model = GradientBoostingRegressor(random_state=0)
    model.fit(pre.transform(train), y_train)
    return sidecar.wrap(
        model,
        task="regression",
        preprocessing=pre,
        train=(train, y_train),
        reference=(reference, y_ref),
        name="friedman",
    )


@pytest.mark.parametrize("outlier", [0.0, 1e6], ids=["clean", "one-huge-outlier"])
def test_an_unchanged_friedman_regressor_is_healthy_on_3000_labels(
    friedman_bundle: sidecar.Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    outlier: float,
) -> None:
    records, labels = _friedman(seed=3, n=3000)
    labels[17] += outlier
    code, out = _diagnose_cli(friedman_bundle, tmp_path, records, labels, capsys)
    plan = friedman_bundle.plan
    assert plan.primary_metric == "median_absolute_error"
    assert (code, out["verdict"]) == (0, "healthy"), out["evidence"]["reasons"]
    bounds = out["evidence"]["bounds"]
    assert bounds["no_material_decline"] is True
    assert bounds["decline_ci_high"] < plan.min_effect
    if outlier:
        mse = out["evidence"]["metrics"]["advanced"]["mse"]["value"]
        assert mse > outlier**2 / 3000 / 2  # the outlier is in the window, and harmless
