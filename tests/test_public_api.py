"""The three public tiers, pinned: ``sidecar``, ``sidecar.monitoring``, ``sidecar.recording``.

As httpx's ``test_exported_members``: each ``__all__`` is exactly the names
below, every one resolves, and nothing else public sits in the module. A name
added or removed is a deliberate change of this file.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import sidecar
import sidecar.monitoring
import sidecar.recording

SIDECAR = {
    # the loop
    "wrap",
    "load",
    "predict",
    "feedback",
    "Bundle",
    "Prediction",
    "ShadowPrediction",
    "replay",
    "ReplayResult",
    "diagnose",
    "report",
    "retrain",
    "promote",
    "rollback",
    "Registry",
    "RecentData",
    "recent_data",
    "export_parquet",
    # preprocessing and runtimes
    "TabularPreprocessor",
    "SklearnPreprocessor",
    "NumericColumn",
    "CategoricalColumn",
    "read_spec",
    "ModelOutput",
    "Predictor",
    # errors
    "SidecarError",
    "InputError",
    "FieldProblem",
    "BundleError",
    "StoreError",
    "PlanError",
    "AdapterError",
}

MONITORING_TYPES = {
    "Battery",
    "Bounds",
    "BoundsCheck",
    "ChangePoint",
    "CurrentColumns",
    "Diagnosis",
    "DriftResult",
    "ErrorSegment",
    "HealthFinding",
    "MetricSpec",
    "MetricValue",
    "MixtureFit",
    "MonitoringPlan",
    "OutlierInfluence",
    "PerformanceEstimate",
    "PlanTests",
    "PromotionDecision",
    "PromotionVerdict",
    "Recommendation",
    "ReferenceInputs",
    "TestResult",
    "Verdict",
    "WindowData",
}
MONITORING_REGISTRIES = {
    "CORRECTIONS",
    "DRIFT",
    "EQUIVALENCE",
    "LOSSES",
    "METRICS",
    "PAIRED",
    "REFERENCE",
    "RELATIONS",
    "VERDICTS",
    "WINDOWS",
}
MONITORING_FUNCTIONS = {
    # metrics and losses
    "accuracy",
    "balanced_accuracy",
    "brier",
    "f1",
    "huber",
    "log_loss",
    "mae",
    "median_absolute_error",
    "metric_with_ci",
    "metrics_with_ci",
    "mse",
    "outlier_influence",
    "per_example_loss",
    "pinball",
    "rmse",
    "roc_auc",
    "trimmed_mse",
    # tests and their corrections
    "adjust",
    "anova_oneway",
    "benjamini_hochberg",
    "bootstrap_mean_diff",
    "correct",
    "default_max_lag",
    "diebold_mariano",
    "f_test_variances",
    "is_alarm",
    "kruskal",
    "mann_whitney",
    "mcnemar_exact",
    "paired_bootstrap",
    "power_paired",
    "required_n_mcnemar",
    "required_n_paired",
    "two_proportions",
    "welch_anova",
    "welch_t",
    "wilcoxon_signed_rank",
    # when a change began
    "change_point",
    "cusum_test",
    # equivalence
    "labels_to_settle",
    "required_n_equivalence",
    "tost_paired",
    "tost_welch",
    # drift and health
    "chi2_homogeneity",
    "is_material",
    "ks_2samp_sorted",
    "ks_drift",
    "psi",
    "relation_change",
    "sort_reference",
    "check_health",
    "value_shape",
    "fit_unit_mixture",
    "error_segments",
    # batteries, plans, decisions, the report
    "paired_battery",
    "reference_battery",
    "window_battery",
    "registry_names",
    "default_plan",
    "parse_window",
    "read_plan",
    "diagnose",
    "decide_promotion",
    "estimate_performance",
    "render_report",
}

RECORDING = {
    "Store",
    "open_store",
    "Recorder",
    "RecordPolicy",
    # what their methods return
    "FeedbackResult",
    "Label",
    "RecorderCounters",
    "WriterStats",
}

TIERS = [
    (sidecar, SIDECAR),
    (sidecar.monitoring, MONITORING_TYPES | MONITORING_REGISTRIES | MONITORING_FUNCTIONS),
    (sidecar.recording, RECORDING),
]


@pytest.mark.parametrize(("module", "expected"), TIERS, ids=lambda v: getattr(v, "__name__", ""))
def test_all_is_exactly_the_public_api(module: types.ModuleType, expected: set[str]) -> None:
    assert len(module.__all__) == len(set(module.__all__)), "a name is listed twice"
    assert set(module.__all__) == expected
    for name in module.__all__:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize(
    "module", [sidecar.monitoring, sidecar.recording], ids=lambda m: m.__name__
)
def test_nothing_public_hides_outside_all(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "Any"}
    }
    assert public == set(module.__all__)


def test_schema_internals_are_not_reachable_through_the_recording_tier() -> None:
    # the store's column order and JSON encoding belong to recording's private modules
    for name in ("COLUMNS", "LATEST", "dumps"):
        assert name not in sidecar.recording.__all__
        assert not hasattr(sidecar.recording, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = sidecar.recording.nothing  # type: ignore[attr-defined]


def test_every_public_function_and_class_has_a_docstring() -> None:
    def documented(value: object) -> bool:
        doc = (value.__doc__ or "").strip()
        # a dataclass without a docstring gets its signature as one: that is not documentation
        return bool(doc) and not doc.startswith(f"{getattr(value, '__name__', '')}(")

    missing = [
        f"{module.__name__}.{name}"
        for module, _ in TIERS
        for name in module.__all__
        if (inspect.isclass(value := getattr(module, name)) or inspect.isfunction(value))
        and not documented(value)
    ]
    assert missing == []


def test_the_sdk_never_imports_the_adapters_or_torch_until_retraining_runs() -> None:
    probe = (
        "import sys, sidecar\n"
        "for name in sidecar.__all__: getattr(sidecar, name)\n"
        "print(sorted(m for m in ('adapters', 'torch') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_tests_import_exported_names_from_their_tier_not_from_private_modules() -> None:
    """Tests use public names: a name a tier exports is never imported from behind it.

    Benchmarks are left out: they time private stages on purpose.
    """
    exported = {name: module for module, _ in TIERS for name in module.__all__}
    tests = Path(__file__).resolve().parent
    found = []
    for path in sorted(tests.rglob("*.py")):
        if "benchmarks" in path.relative_to(tests).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if not any(part.startswith("_") for part in node.module.split(".")[1:]):
                continue
            for alias in node.names:
                tier = exported.get(alias.name)
                source = importlib.import_module(node.module) if tier is not None else None
                if tier is not None and getattr(source, alias.name) is getattr(tier, alias.name):
                    found.append(f"{path.name}:{node.lineno} {alias.name} ({tier.__name__})")
    assert found == []
