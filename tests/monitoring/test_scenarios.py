"""End to end: one scenario per verdict, from a trained model to ``diagnose``.

Each scenario is the whole path a user takes: a training period is generated
(``tests/monitoring/worlds.py``), a real gradient-boosted model is trained on
it and wrapped with ``baseline="auto"`` and a held-out reference from the
training period, a later period is replayed through the serving path into a
real SQLite file (``sidecar.replay``: timestamps over six days, labels that
arrive hours to days late, some never), and ``sidecar.diagnose``
reads it back. The tests assert the verdict *and* the evidence behind it.

All scenarios use the bundle's **default** monitoring plan (classification:
accuracy, min_effect 0.025, bounds at +-0.05 around the reference accuracy;
regression: the outlier-robust median absolute error). The sizes are chosen
so that each verdict is the same for seeds 0..4 (set ``MONITORING_SCENARIO_SEED``
to rerun with another seed); seed 0 is pinned here.

The CLI (``python -m sidecar.cli diagnose/report``) and the HTML report in a
real headless Chromium are checked on the same stores.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

import sidecar
from adapters import model_family
from sidecar import diagnose
from sidecar.monitoring import VERDICTS, Diagnosis
from sidecar.recording import open_store
from tests.monitoring import worlds
from tests.monitoring.worlds import Period, Shift

SEED = int(os.environ.get("MONITORING_SCENARIO_SEED", "0"))

N_TRAIN = 4000
N_REFERENCE = 2000
#: served records of a scenario that needs performance tests: with 10% of the
#: labels lost, ~4,950 labelled (the verdicts hold from far fewer: test_verdicts.py)
N_SERVED = 5500
#: served records of a scenario that is decided from the inputs alone
N_SERVED_INPUTS = 2500

CHROMIUM = "/usr/bin/chromium"


# --------------------------------------------------------------------------- fixtures


def _preprocessing() -> sidecar.TabularPreprocessor:
    return sidecar.TabularPreprocessor(
        columns=[
            sidecar.NumericColumn(name="weight", unit="kg"),
            sidecar.NumericColumn(name="temp", unit="degC"),
            sidecar.NumericColumn(name="visits"),
            sidecar.CategoricalColumn(name="dx", encoding="onehot"),
            sidecar.NumericColumn(name="hba1c", allow_missing=True),
            sidecar.NumericColumn(name="u"),
        ]
    )


@dataclass(repr=False)
class Served:
    """One replayed scenario: its store and the SDK's diagnosis of it."""

    url: str
    diagnosis: Diagnosis
    period: Period


@dataclass(repr=False)
class World:
    """A trained, wrapped and saved bundle, and the scenarios served with it."""

    bundle: sidecar.Bundle
    path: Path
    root: Path
    seed: int
    cache: dict[str, Served] = field(default_factory=dict)

    def __repr__(self) -> str:  # short, for pytest's failure reports
        return f"World(bundle={self.bundle.version}, seed={self.seed}, served={list(self.cache)})"


def _serve(world: World, name: str, period: Period, *, only: Any = None) -> Served:
    """Replay ``period`` into a fresh SQLite store and diagnose it (once per name).

    Labels arrive 2 hours to 4 days after their request and 10% never do; with
    ``only`` (record indices), exactly those records get a label, an hour or more
    after their request.
    """
    if name in world.cache:
        return world.cache[name]
    n = len(period)
    ts = worlds.serving_times(world.seed, n)
    label_ts = worlds.label_times(world.seed, ts, never=0.10)
    if only is not None:
        keep = {int(i) for i in only}
        label_ts = [ts[i] + 3600.0 * (1 + i % 48) if i in keep else None for i in range(n)]
    url = f"sqlite:///{world.root / f'{name}.db'}"
    store = open_store(url)
    try:
        result = sidecar.replay(
            world.bundle,
            period.records,
            store=store,
            labels=period.labels,
            timestamps=ts,
            label_timestamps=label_ts,
        )
        assert result.records == n and result.dropped == 0
        assert result.labels_accepted == sum(t is not None for t in label_ts)
        found = diagnose(world.bundle, store)
    finally:
        store.close()
    served = Served(url=url, diagnosis=found, period=period)
    world.cache[name] = served
    return served


@pytest.fixture(scope="module")
def clf(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The classification world's bundle: gradient boosting on a period that has the
    high-frequency interaction, the automatic (logistic) baseline, the default plan."""
    root = tmp_path_factory.mktemp("scenarios")
    train = worlds.classification_period(SEED, 0, N_TRAIN)
    reference = worlds.classification_period(SEED, 1, N_REFERENCE)
    pre = _preprocessing().fit(train.records)
    model = GradientBoostingClassifier(random_state=SEED)
    model.fit(pre.transform(train.records), train.labels)
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train.records, train.labels),
        reference=(reference.records, reference.labels),
        baseline="auto",
        name="readmission",
    )
    path = bundle.save(root / "bundle")
    return World(bundle=bundle, path=Path(path), root=root, seed=SEED)


def _period(n: int, shift: Shift | None = None) -> Period:
    return worlds.classification_period(SEED, 2, n, shift)


# --------------------------------------------------------------------------- helpers


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _common(d: Diagnosis, bundle: sidecar.Bundle, verdict: str) -> dict[str, Any]:
    """What every diagnosis must carry; returns its ``to_dict()``."""
    out = d.to_dict()
    why = json.dumps(
        {
            "verdict": out["verdict"],
            "reasons": out["evidence"]["reasons"],
            "tests": {
                t["name"]: (t["effect"], t["p_adjusted"])
                for t in out["evidence"]["tests"]
                if ":" not in t["name"]
            },
            "drifted": out["evidence"]["features_drifted"],
            "health": [(h["feature"], h["check"]) for h in out["evidence"]["health"]],
            "bounds": out["evidence"]["bounds"],
        },
        default=str,
    )
    assert d.verdict == verdict, why
    assert d.verdict in VERDICTS
    assert {"verdict", "recommendation", "evidence", "plan_sha256"} <= set(out)
    assert out["verdict"] == verdict
    assert d.plan_sha256 == bundle.plan.sha256 == out["plan_sha256"]
    assert set(out["recommendation"]) == {"action", "adapter", "detail"}
    # JSON-serialisable as it is: no NaN, no infinity, no NumPy scalars.
    assert _strict_json(json.dumps(out, allow_nan=False)) == out
    assert d.exit_code == (0 if verdict == "healthy" else 1)
    assert d.n_records == out["window"]["n_records"] > 0
    return out


def _tests(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in out["evidence"]["tests"]}


def _significant(t: dict[str, Any], alpha: float, min_effect: float) -> bool:
    return t["p_adjusted"] <= alpha and t["effect"] >= min_effect


def _powered(d: Diagnosis) -> None:
    """Most records are labelled, well above the plan's floor: the verdict weighs evidence."""
    assert d.n_labelled >= max(2 * 200, d.n_records * 0.8), d.n_labelled


# --------------------------------------------------------------------------- verdicts


def test_clean_period_is_healthy(clf: World) -> None:
    served = _serve(clf, "clean", _period(N_SERVED))
    d = served.diagnosis
    out = _common(d, clf.bundle, "healthy")
    _powered(d)
    plan = clf.bundle.plan
    assert plan.primary_metric == "accuracy"
    assert d.recommendation.action == "none" and d.recommendation.adapter is None
    ev = out["evidence"]
    assert ev["health"] == [] and ev["features_drifted"] == []
    assert ev["bounds"]["decayed_out_of_bounds"] is False
    assert ev["bounds"]["suspiciously_good"] is False
    tests = _tests(out)
    assert not _significant(tests["advanced_vs_reference"], plan.alpha, plan.min_effect)
    # The advanced model still beats its baseline on the same requests.
    acc = {who: m["accuracy"]["value"] for who, m in ev["metrics"].items()}
    assert acc["advanced"] > acc["baseline"] + 0.05
    # The window series is there for the report: six days, both models.
    assert len(ev["windows"]) >= 6
    assert {"advanced", "baseline"} <= set(ev["windows"][0])


def test_losing_a_learned_interaction_is_overfitting(clf: World) -> None:
    """The training period had a high-frequency pattern in ``u`` that gradient
    boosting learned (its edge over the linear baseline); later it is gone. The
    inputs are unchanged, the baseline (which never used it) does not get worse,
    the advanced model does and loses its edge: refit with stronger regularization."""
    served = _serve(clf, "overfitting", _period(N_SERVED, Shift(pattern=False)))
    d = served.diagnosis
    out = _common(d, clf.bundle, "overfitting")
    _powered(d)
    plan = clf.bundle.plan
    assert d.recommendation.action == "retrain"
    assert d.recommendation.adapter == "regularize"
    ev = out["evidence"]
    assert ev["health"] == [] and ev["features_drifted"] == []
    tests = _tests(out)
    assert _significant(tests["advanced_vs_reference"], plan.alpha, plan.min_effect)
    assert _significant(tests["gap_vs_reference"], plan.alpha, plan.min_effect)
    assert tests["baseline_vs_reference"]["effect"] < plan.min_effect
    assert ev["bounds"]["decayed_out_of_bounds"] is True
    acc = {who: m["accuracy"]["value"] for who, m in ev["metrics"].items()}
    assert acc["advanced"] < acc["advanced_reference"] - 2 * plan.min_effect
    assert acc["baseline"] >= acc["baseline_reference"] - plan.min_effect
    # On the same requests the advanced model is now the worse of the two.
    assert tests["paired:paired_bootstrap"]["effect"] > 0
    assert tests["paired:paired_bootstrap"]["p_adjusted"] <= plan.alpha


def test_inputs_that_move_and_hurt_both_models_are_data_drift(clf: World) -> None:
    """The population got heavier (mean weight 78 -> 106 kg, in kg): outcomes of heavy
    patients are less predictable, so both models get worse, and the weight moved."""
    served = _serve(clf, "data_drift", _period(N_SERVED, Shift(weight_mean=106.0)))
    d = served.diagnosis
    out = _common(d, clf.bundle, "data_drift")
    _powered(d)
    plan = clf.bundle.plan
    assert model_family(clf.bundle) == "ensemble"
    assert d.recommendation.action == "retrain"
    assert d.recommendation.adapter == "replace-members"
    ev = out["evidence"]
    assert ev["health"] == []  # a real shift, not a unit change
    assert ev["features_drifted"] == ["weight"]
    weight = next(x for x in ev["drift"] if x["feature"] == "weight" and x["space"] == "raw")
    assert weight["material"] is True and weight["effect"] >= plan.min_drift_effect
    assert "weight" in " ".join(ev["reasons"])
    tests = _tests(out)
    assert _significant(tests["advanced_vs_reference"], plan.alpha, plan.min_effect)
    assert _significant(tests["baseline_vs_reference"], plan.alpha, plan.min_effect)
    # The report's distributions lead with the drifted feature.
    assert ev["distributions"][0]["feature"] == "weight"


def test_a_flipped_relation_with_unchanged_inputs_is_concept_drift(clf: World) -> None:
    """hba1c used to raise the risk and now lowers it; the inputs are the same."""
    served = _serve(clf, "concept_drift", _period(N_SERVED, Shift(flip=True)))
    d = served.diagnosis
    out = _common(d, clf.bundle, "concept_drift")
    _powered(d)
    plan = clf.bundle.plan
    assert d.recommendation.action == "retrain"
    assert d.recommendation.adapter is not None
    ev = out["evidence"]
    assert ev["health"] == [] and ev["features_drifted"] == []
    tests = _tests(out)
    assert _significant(tests["advanced_vs_reference"], plan.alpha, plan.min_effect)
    assert _significant(tests["baseline_vs_reference"], plan.alpha, plan.min_effect)
    assert "did not move" in " ".join(ev["reasons"])
    # The relation evidence covers every numeric raw field, hba1c included.
    assert "hba1c" in {r["feature"] for r in ev["relations"]}


def test_concept_drift_names_the_feature_whose_relation_changed(clf: World) -> None:
    served = _serve(clf, "concept_drift", _period(N_SERVED, Shift(flip=True)))
    out = served.diagnosis.to_dict()
    alpha = clf.bundle.plan.alpha
    changed = {
        r["feature"]
        for r in out["evidence"]["relations"]
        if r["material"] and r["p_adjusted"] <= alpha
    }
    assert "hba1c" in changed, out["evidence"]["relations"]
    assert "hba1c" in " ".join(out["evidence"]["reasons"])


FAULTS = [
    # (fault, share of records hit, feature, the check that must name it, extra evidence)
    pytest.param("kg_to_lb", 1.0, "weight", "unit_factor", "kg->lb", id="kg-to-lb"),
    pytest.param("degc_to_degf", 1.0, "temp", "unit_factor", "degC->degF", id="degC-to-degF"),
    pytest.param("icd9_to_icd10", 0.8, "dx", "unknown_rate", None, id="icd9-to-icd10"),
    pytest.param("wrap_u32", 0.1, "visits", "wraparound", None, id="unsigned-wrap"),
    pytest.param("negative", 0.1, "visits", "sign", None, id="negative-count"),
    pytest.param("missing", 0.3, "hba1c", "missing_rate", None, id="missing-rate-jump"),
]


@pytest.mark.parametrize(("fault", "share", "feature", "check", "units"), FAULTS)
def test_preprocessing_faults_name_the_feature(
    clf: World, fault: str, share: float, feature: str, check: str, units: str | None
) -> None:
    shift = Shift(faults=(fault,), fault_share=share)
    served = _serve(clf, fault, _period(N_SERVED_INPUTS, shift))
    d = served.diagnosis
    out = _common(d, clf.bundle, "preprocessing_fault")
    assert d.recommendation.action == "fix preprocessing"
    assert d.recommendation.adapter is None  # no retraining
    assert feature in d.recommendation.detail
    health = out["evidence"]["health"]
    assert {h["feature"] for h in health} == {feature}, health
    found = {h["check"]: h for h in health}
    assert check in found, health
    evidence = found[check]["evidence"]
    if units is None:  # a test on a rate or a count, corrected with the others
        assert evidence["p_adjusted"] <= clf.bundle.plan.alpha
    else:  # the fitted conversion is named and pinned
        assert units in evidence["units"]
        factor = {"kg->lb": 1 / 0.45359237, "degC->degF": 1.8}[units]
        assert evidence["factor"] == pytest.approx(factor, rel=1e-6)
    if fault == "icd9_to_icd10":
        # the new codes have another shape ("E11.9" against "250.00")
        assert "format" in found
        assert out["evidence"]["unknown_rates"]["dx"] > 0.5
    assert any(feature in r for r in out["evidence"]["reasons"])


def test_too_few_labels_is_insufficient_data(clf: World) -> None:
    chosen = np.random.default_rng((SEED, 7)).choice(1500, size=30, replace=False)
    served = _serve(clf, "insufficient", _period(1500), only=chosen)
    d = served.diagnosis
    out = _common(d, clf.bundle, "insufficient_data")
    assert d.n_labelled == 30
    assert d.recommendation.action == "collect labels"
    assert d.recommendation.adapter is None
    floor = clf.bundle.plan.min_labelled
    assert f"about {floor - 30} more" in d.recommendation.detail
    assert f"from {floor} on" in " ".join(d.reasons)
    assert out["evidence"]["health"] == []


def test_thirty_lucky_labels_are_still_insufficient_data(clf: World) -> None:
    """The first 30 labels to arrive happen to be easy cases (29 of 30 right). Below
    the plan's floor of 200 labels that is luck, not leakage;
    seed 3 of the plain scenario above draws such a sample by chance."""
    period = _period(1500)
    right = np.asarray(clf.bundle.predict(period.records).predictions) == np.asarray(period.labels)
    chosen = [*np.flatnonzero(right)[:29].tolist(), int(np.flatnonzero(~right)[0])]
    served = _serve(clf, "lucky", period, only=chosen)
    assert served.diagnosis.n_labelled == 30
    _common(served.diagnosis, clf.bundle, "insufficient_data")


def test_one_huge_outlier_label_is_not_an_alarm_under_the_robust_default_plan(
    tmp_path: Path,
) -> None:
    """A clean regression period, except one label that is 250 noise SDs off. The
    default regression plan's primary metric is outlier-robust, so the verdict is
    healthy; the evidence shows that one error alone moves MSE by far more than 10%."""
    train = worlds.regression_period(SEED, 0, 3000)
    reference = worlds.regression_period(SEED, 1, 1500)
    pre = _preprocessing().fit(train.records)
    model = GradientBoostingRegressor(random_state=SEED)
    model.fit(pre.transform(train.records), train.labels)
    bundle = sidecar.wrap(
        model,
        task="regression",
        preprocessing=pre,
        train=(train.records, train.labels),
        reference=(reference.records, reference.labels),
        name="length-of-stay",
    )
    plan = bundle.plan
    assert plan.robust, plan.primary_metric  # the default is outlier-robust
    period = worlds.regression_period(SEED, 2, 2500)
    ts = worlds.serving_times(SEED, len(period))
    label_ts = worlds.label_times(SEED, ts, never=0.10)
    labels = list(period.labels)
    lucky = next(i for i, t in enumerate(label_ts) if t is not None)
    labels[lucky] = float(labels[lucky]) + 250.0
    store = open_store(f"sqlite:///{tmp_path / 'stay.db'}")
    try:
        sidecar.replay(
            bundle,
            period.records,
            store=store,
            labels=labels,
            timestamps=ts,
            label_timestamps=label_ts,
        )
        d = diagnose(bundle, store)
    finally:
        store.close()
    out = _common(d, bundle, "healthy")
    ev = out["evidence"]
    assert ev["health"] == [] and ev["features_drifted"] == []
    assert ev["bounds"]["no_material_decline"] is True  # ruled out, not waited out
    mse = next(o for o in ev["outliers"] if o["metric"] == "advanced:mse")
    assert mse["k"] == 1
    assert mse["relative_change"] > 0.10
    assert abs(mse["top_errors"][0]) > 200.0
    # The MSE itself is far off its reference; the primary metric is not.
    now, then = ev["metrics"]["advanced"], ev["metrics"]["advanced_reference"]
    assert now["mse"]["value"] > 2 * then["mse"]["value"]
    primary = plan.primary_metric
    assert abs(now[primary]["value"] - then[primary]["value"]) < plan.min_effect


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_cli_diagnose_json_and_exit_codes(clf: World, tmp_path: Path) -> None:
    healthy = _serve(clf, "clean", _period(N_SERVED))
    alarm = _serve(clf, "overfitting", _period(N_SERVED, Shift(pattern=False)))

    for served, code in ((healthy, 0), (alarm, 1)):
        done = _cli("diagnose", str(clf.path), "--store", served.url, "--json", cwd=tmp_path)
        assert done.returncode == code, done.stderr
        report = _strict_json(done.stdout)  # exactly one JSON object, nothing else
        assert isinstance(report, dict)
        assert report["verdict"] == served.diagnosis.verdict
        assert report["plan_sha256"] == clf.bundle.plan.sha256
        assert report["recommendation"] == served.diagnosis.recommendation.to_dict()
        assert report["window"]["n_labelled"] == served.diagnosis.n_labelled


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``sidecar.cli.main`` in-process (what ``python -m sidecar.cli`` exits with), for
    the refusals, which need no second interpreter (each costs ~4 s of imports)."""
    from sidecar.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_diagnose_exits_2_for_a_bad_store_url_or_a_missing_bundle(
    clf: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = _serve(clf, "clean", _period(N_SERVED))
    code, out, err = _main(
        capsys, "diagnose", str(clf.path), "--store", "mysql://nowhere/x", "--json"
    )
    assert (code, out) == (2, "")
    assert "sqlite://" in err
    code, out, err = _main(
        capsys, "diagnose", str(tmp_path / "no-bundle"), "--store", healthy.url, "--json"
    )
    assert (code, out) == (2, ""), err
    assert "no-bundle" in err


def test_cli_diagnose_refuses_a_store_that_does_not_exist(
    clf: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "no-such-dir" / "records.db"
    code, out, _ = _main(capsys, "diagnose", str(clf.path), "--store", f"sqlite:///{typo}")
    assert not typo.parent.exists(), "a read-only command created the store"
    assert code == 2, out[:300]


_ICD = Shift(faults=("icd9_to_icd10",), fault_share=0.8)
#: the SVG namespace is an identifier in an attribute, never fetched
_SVG_NS = re.compile(r"""xmlns=(['"])http://www\.w3\.org/2000/svg\1""")


def _report_html(clf: World) -> tuple[Path, str, Served]:
    """``sidecar report`` of the ICD-9 -> ICD-10 store (written once, read-only after)."""
    served = _serve(clf, "icd9_to_icd10", _period(N_SERVED_INPUTS, _ICD))
    out = clf.root / "r.html"
    if not out.exists():
        done = _cli("report", str(clf.path), "--store", served.url, "--out", str(out), cwd=clf.root)
        assert done.returncode == 0, done.stderr
        assert "preprocessing_fault" in done.stdout
    return out, out.read_text(encoding="utf-8"), served


def test_cli_report_is_self_contained(clf: World) -> None:
    _, text, served = _report_html(clf)
    assert text.startswith("<!doctype html>")
    assert "<script" not in text.lower()
    rest = _SVG_NS.sub("", text)
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"(?i)\b(src|href)\s*=|@import|url\(", rest)
    assert served.diagnosis.plan_sha256 in text
    assert "dx" in text and "unknown_rate" in text


@pytest.fixture
def chromium() -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    yield CHROMIUM


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_renders_in_a_real_browser(clf: World, tmp_path: Path, chromium: str) -> None:
    path, _, served = _report_html(clf)
    url = path.resolve().as_uri()
    dumped = _browser(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    svgs = re.findall(r"<svg\b[^>]*>", dom)
    plots = [s for s in svgs if re.search(r"""class=["']plot["']""", s)]
    # metric per window, drift per feature, each distribution shown, unknown-code rate,
    # and the confusion matrices (now and on the reference)
    dists = served.diagnosis.distributions
    assert len(dists) >= 2
    assert len(plots) == 3 + len(dists) + 2, svgs
    windows = len(served.diagnosis.windows)
    circles = re.findall(r"<circle\b[^>]*class=\"point (advanced|baseline)\"", dom)
    assert circles.count("advanced") == circles.count("baseline") == windows
    n_drift = min(len(served.diagnosis.drift), 25)
    assert len(re.findall(r"<rect\b[^>]*class=\"bar\"", dom)) == n_drift > 0
    n_lines = sum(1 + len(x["windows"]) for x in dists)  # the reference and each window
    assert len(re.findall(r"<polyline\b[^>]*class=\"dist\"", dom)) == n_lines
    assert len(re.findall(r"<polyline\b[^>]*class=\"unknown\"", dom)) == 1  # dx
    assert 'class="verdict alarm"' in dom and "preprocessing_fault" in dom

    shot = tmp_path / "r.png"
    done = _browser(
        chromium, tmp_path / "profile-png", f"--screenshot={shot}", "--window-size=800,2400", url
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (800, 2400)
    # A blank 800x2400 page compresses to ~10 kB; the plots and text make it larger.
    assert len(data) > 20_000


# --------------------------------------------------------------------------- small n


def _first_labels(n_served: int, k: int) -> np.ndarray:
    return np.random.default_rng((SEED, 11)).choice(n_served, size=k, replace=False)


def test_a_lost_interaction_is_an_alarm_on_400_labels(clf: World) -> None:
    """The overfitting world with only 400 of its 5,500 records labelled: the decline
    is significant and material already, so it is raised, not waited out."""
    period = _period(N_SERVED, Shift(pattern=False))
    served = _serve(clf, "overfitting-400", period, only=_first_labels(N_SERVED, 400))
    d = served.diagnosis
    assert d.n_labelled == 400
    assert d.verdict in {"overfitting", "concept_drift"}, d.reasons
    assert d.recommendation.action == "retrain"


def test_a_clean_period_on_400_labels_says_what_is_undecided(clf: World) -> None:
    served = _serve(clf, "clean-400", _period(N_SERVED), only=_first_labels(N_SERVED, 400))
    d = served.diagnosis
    assert d.n_labelled == 400
    assert d.verdict in {"healthy", "insufficient_data"}, d.reasons
    if d.verdict == "insufficient_data":
        assert "cannot yet rule out a material decline of 0.025" in d.reasons[0]
        assert re.search(r"about \d+ more labels would settle it", d.reasons[0])
        assert d.bounds.labels_to_settle is None or d.bounds.labels_to_settle > 400
