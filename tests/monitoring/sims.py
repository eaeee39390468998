"""Fast, seeded arrays for calibration runs: a reference and a window, straight into ``diagnose``.

No bundle, no store: the per-request correctness (classification) or the
error (regression) of the advanced and the baseline model is drawn directly,
so thousands of diagnoses fit in a test. The public path (wrap, replay into a
real SQLite store, diagnose) is covered by ``test_scenarios.py`` and
``test_verdicts.py``; these arrays are what that path hands ``diagnose``.

Classification: binary labels; the advanced model is right with probability
``acc`` and the baseline, independently, with ``base_acc``; both give a
probability of 0.8 to the class they predict. Regression: errors are
``N(0, sd)``; the baseline's are 1.5 times wider. Two raw numeric inputs,
``N(0, 1)`` in every period unless ``input_shift`` moves the first one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.bundle._reference import _numeric_sketch
from sidecar.monitoring import (
    Diagnosis,
    MonitoringPlan,
    ReferenceInputs,
    WindowData,
    default_plan,
    diagnose,
)

__all__ = ["DAY", "classification", "diagnose_sim", "plan_for", "regression"]

DAY = 86_400.0


def _inputs(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    return {"x0": rng.normal(shift, 1.0, n), "x1": rng.normal(0.0, 1.0, n)}


def _clf(rng: np.random.Generator, n: int, acc: float, base_acc: float) -> dict[str, Any]:
    y = rng.integers(0, 2, n)
    adv = np.where(rng.random(n) < acc, y, 1 - y)
    base = np.where(rng.random(n) < base_acc, y, 1 - y)

    def proba(pred: np.ndarray) -> np.ndarray:
        p1 = np.where(pred == 1, 0.8, 0.2)
        return np.column_stack([1 - p1, p1])

    return {"y": y, "adv": adv, "base": base, "adv_p": proba(adv), "base_p": proba(base)}


def _reg(rng: np.random.Generator, n: int, sd: float, outlier: float = 0.0) -> dict[str, Any]:
    y = rng.normal(5.0, 2.0, n)
    adv = y + rng.normal(0.0, sd, n)
    base = y + rng.normal(0.0, 1.5 * sd, n)
    if outlier and n:
        y = y.copy()
        y[0] += outlier
    return {"y": y, "adv": adv, "base": base, "adv_p": None, "base_p": None}


def _reference(task: str, d: dict[str, Any], x: dict[str, np.ndarray]) -> ReferenceInputs:
    return ReferenceInputs(
        task=task,
        classes=(0, 1) if task == "classification" else None,
        y=d["y"],
        advanced=d["adv"],
        advanced_proba=d["adv_p"],
        baseline=d["base"],
        baseline_proba=d["base_p"],
        raw_numeric=x,
        sketches={k: _numeric_sketch(v) for k, v in x.items()},
        features=np.column_stack(list(x.values())),
        feature_names=tuple(x),
        categorical_fields=(),
        monotone_of={k: k for k in x},
    )


def _window(d: dict[str, Any], x: dict[str, np.ndarray], start: float, days: float) -> WindowData:
    n = len(d["y"])
    ts = start + np.sort(np.random.default_rng(n).uniform(0.0, days * DAY, n))
    return WindowData(
        ts=ts,
        raw_numeric=x,
        raw_categorical={},
        features=np.column_stack(list(x.values())),
        unknown={},
        advanced=d["adv"],
        advanced_proba=d["adv_p"],
        baseline=d["base"],
        baseline_proba=d["base_p"],
        labels=np.asarray(d["y"]),
        labelled=np.ones(n, dtype=bool),
    )


def classification(
    seed: int,
    *,
    n_ref: int = 2000,
    n: int = 1500,
    acc_ref: float = 0.9,
    acc: float | None = None,
    base_acc: float = 0.8,
    base_now: float | None = None,
    input_shift: float = 0.0,
    days: float = 1.0,
) -> tuple[ReferenceInputs, WindowData]:
    """A classifier's reference (accuracy ``acc_ref``) and a window (accuracy ``acc``)."""
    rng = np.random.default_rng(seed)
    ref = _reference(
        "classification",
        _clf(rng, n_ref, acc_ref, base_acc),
        _inputs(rng, n_ref, 0.0),
    )
    now = _clf(rng, n, acc_ref if acc is None else acc, base_acc if base_now is None else base_now)
    return ref, _window(now, _inputs(rng, n, input_shift), 0.0, days)


def regression(
    seed: int,
    *,
    n_ref: int = 1500,
    n: int = 3000,
    sd: float = 0.55,
    sd_now: float | None = None,
    outlier: float = 0.0,
    days: float = 1.0,
) -> tuple[ReferenceInputs, WindowData]:
    """A regressor's reference (errors ``N(0, sd)``) and a window (``N(0, sd_now)``)."""
    rng = np.random.default_rng(seed)
    ref = _reference("regression", _reg(rng, n_ref, sd), _inputs(rng, n_ref, 0.0))
    now = _reg(rng, n, sd if sd_now is None else sd_now, outlier)
    return ref, _window(now, _inputs(rng, n, 0.0), 0.0, days)


def plan_for(reference: ReferenceInputs, **changes: Any) -> MonitoringPlan:
    """The default plan a bundle with this reference would get (``changes`` applied)."""
    from sidecar.monitoring import metric_with_ci

    probe = default_plan(reference.task)
    value = metric_with_ci(
        probe.primary_metric,
        reference.y,
        reference.advanced,
        reference.advanced_proba,
        reference.classes,
        n_boot=1,
    ).value
    plan = default_plan(reference.task, reference_metric=value)
    return MonitoringPlan.from_mapping({**plan.model_dump(), **changes}) if changes else plan


def diagnose_sim(
    plan: MonitoringPlan, reference: ReferenceInputs, window: WindowData, seed: int = 0
) -> Diagnosis:
    return diagnose(plan=plan, reference=reference, window=window, seed=seed)
