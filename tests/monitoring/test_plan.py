"""The monitoring plan: declared, typed, frozen into the bundle, hashed everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sidecar
from sidecar import BundleError, PlanError
from sidecar.cli import main
from sidecar.monitoring import MonitoringPlan, default_plan, parse_window, read_plan

PLAN = {
    "task": "classification",
    "primary_metric": "accuracy",
    "secondary_metrics": ["f1", "roc_auc"],
    "bounds": {"lower": 0.85, "upper": 0.99},
    "alpha": 0.01,
    "power": 0.9,
    "min_effect": 0.03,
    "min_labelled": 300,
    "window": "6h",
    "tests": {"paired": ["mcnemar", "wilcoxon"], "correction": "benjamini_hochberg"},
}

TOML = """
task = "classification"
primary_metric = "accuracy"
secondary_metrics = ["f1", "roc_auc"]
alpha = 0.01
power = 0.9
min_effect = 0.03
min_labelled = 300
window = "6h"
[bounds]
lower = 0.85
upper = 0.99
[tests]
paired = ["mcnemar", "wilcoxon"]
correction = "benjamini_hochberg"
"""

YAML = """
task: classification
primary_metric: accuracy
secondary_metrics: [f1, roc_auc]
bounds: {lower: 0.85, upper: 0.99}
alpha: 0.01
power: 0.9
min_effect: 0.03
min_labelled: 300
window: 6h
tests: {paired: [mcnemar, wilcoxon], correction: benjamini_hochberg}
"""


@pytest.mark.parametrize("suffix", [".json", ".toml", ".yaml"], ids=["json", "toml", "yaml"])
def test_the_same_plan_from_each_file_format(tmp_path: Path, suffix: str) -> None:
    text = {".json": json.dumps(PLAN), ".toml": TOML, ".yaml": YAML}[suffix]
    path = tmp_path / f"plan{suffix}"
    path.write_text(text)
    plan = read_plan(path)
    assert plan == MonitoringPlan.from_mapping(PLAN)
    assert plan.sha256 == MonitoringPlan.from_mapping(PLAN).sha256
    assert plan.window_seconds == 6 * 3600


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"alpah": 0.1}, r"`alpah`: Extra inputs"),
        ({"bounds": {"lowr": 0.1}}, r"`bounds.lowr`: Extra inputs"),
        ({"alpha": 1.5}, r"`alpha`: .*less than 1"),
        ({"primary_metric": "mse"}, r"'mse' is not a classification metric"),
        ({"window": "soon"}, r"`window` must be a positive number and a unit"),
        ({"bounds": {"lower": 0.9, "upper": 0.8}}, r"lower must be <= bounds.upper"),
        ({"tests": {"paired": ["t-test"]}}, r"`tests.paired.0`"),
    ],
    ids=["unknown-key", "unknown-nested-key", "alpha", "metric", "window", "bounds", "test"],
)
def test_a_bad_plan_is_refused_naming_the_key(change: dict[str, object], match: str) -> None:
    with pytest.raises(PlanError, match=match):
        MonitoringPlan.from_mapping({**PLAN, **change})


def test_defaults_per_task() -> None:
    cls = default_plan("classification", reference_metric=0.9)
    assert (cls.primary_metric, cls.bounds.lower, cls.bounds.upper) == ("accuracy", 0.85, 0.95)
    reg = default_plan("regression", reference_metric=2.0)
    assert reg.primary_metric == "median_absolute_error" and reg.robust
    assert reg.min_effect == pytest.approx(0.2)
    with pytest.raises(PlanError, match="task"):
        default_plan("ranking")
    assert parse_window("90m") == 5400.0


def _bundle(tmp_path: Path) -> Path:
    main(["quickstart", "--dir", str(tmp_path / "qs"), "--no-serve"])
    return tmp_path / "qs" / "bundle"


def test_the_plan_lives_in_the_bundle_and_a_new_plan_is_a_new_version(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    bundle = sidecar.load(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["plan_sha256"] == bundle.plan.sha256
    new = bundle.with_plan(MonitoringPlan.from_mapping(PLAN))
    saved = new.save(tmp_path / "v2")
    again = sidecar.load(saved)
    assert again.version != bundle.version and again.parent == bundle.version
    assert again.plan.alpha == 0.01
    # parts are shared: the models did not change
    assert (
        again.manifest["parts"]["advanced"]["sha256"]
        == bundle.manifest["parts"]["advanced"]["sha256"]
    )
    # editing plan.json after saving is caught
    plan_file = saved / "plan.json"
    plan_file.write_text(plan_file.read_text().replace('"alpha":0.01', '"alpha":0.2'))
    with pytest.raises(BundleError, match=r"plan\.json failed its hash check"):
        sidecar.load(saved)


def test_plan_check_and_plan_set_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bundle(tmp_path)
    capsys.readouterr()
    assert main(["plan", "check", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["plan_sha256"] == sidecar.load(path).plan.sha256
    assert summary["plan"]["primary_metric"] == "accuracy"
    # The quickstart's reference (171 records at 96.5% accuracy) pins its own accuracy
    # only to about +-0.028: no number of labels rules out a decline of 0.025 against it.
    assert summary["n_reference"] == 171 and summary["required_n"] is None
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    assert main(["plan", "set", str(path), str(plan_file), "--out", str(tmp_path / "v2")]) == 0
    assert sidecar.load(tmp_path / "v2").plan.min_labelled == 300
    plan_file.write_text(json.dumps({**PLAN, "alpah": 1}))
    assert main(["plan", "set", str(path), str(plan_file), "--out", str(tmp_path / "v3")]) == 2
    assert "alpah" in capsys.readouterr().err
