"""The diagnosis's evidence that needs labels.

Per-example losses of both models (winsorised for a robust primary metric),
each source's metrics with intervals, the plan's declared test batteries
corrected as one family, the equivalence test of the decline, feature-target
relations, the error tree's worst segments and the per-window loss series.
The independent parts run as jobs on the caller's thread pool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._battery import (
    BOOTSTRAP_MAX_N,
    Battery,
    correct,
    paired_battery,
    reference_battery,
    window_battery,
)
from ._changepoint import ChangePoint, change_point
from ._drift import relation_change
from ._equivalence import labels_to_settle, required_n_equivalence, tost_welch
from ._errortree import ErrorSegment, error_segments
from ._input_evidence import judged
from ._inputs import ReferenceInputs, WindowData
from ._metrics import metrics_with_ci, outlier_influence, per_example_loss
from ._plan import MonitoringPlan
from ._results import DriftResult, MetricValue, OutlierInfluence, TestResult
from ._windows import loss_series, split_by_window

#: Past BOOTSTRAP_MAX_N, intervals, feature-target relations and the error tree
#: are estimated on seeded random subsamples (this many records for intervals,
#: five times as many for relations and the tree); point values and the tests
#: themselves use every record.
SUBSAMPLE_N = 20_000


@dataclass(frozen=True)
class Performance:
    """Everything that needs labels, for the verdict and the evidence."""

    n_labelled: int
    metrics: dict[str, dict[str, MetricValue]]
    tests: tuple[TestResult, ...]
    relations: tuple[DriftResult, ...]
    outliers: tuple[OutlierInfluence, ...]
    segments: tuple[ErrorSegment, ...]
    windows: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...]
    required: int | None
    cap: float
    equivalence: TestResult | None
    settle: int | None
    #: where one change in the advanced model's mean loss began (time order)
    change: ChangePoint | None = None


def label_evidence(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    seed: int,
    pool: ThreadPoolExecutor,
) -> Performance:
    """Everything that needs labels: metrics, tests, relations, outliers, segments, series."""
    mask = np.asarray(window.labelled, dtype=bool)
    n_lab = int(mask.sum())
    ref_adv, ref_base, cap = reference_losses(plan, reference)
    required = required_n(plan, ref_adv, ref_base)
    empty = Performance(n_lab, {}, (), (), (), (), (), (), required, cap, None, None)
    if n_lab < 2:
        return empty
    # Every labelled record, without copying the window when all are labelled.
    rows = None if n_lab == window.n else np.flatnonzero(mask)

    def take(values: np.ndarray) -> np.ndarray:
        return values if rows is None else values[rows]

    y = take(window.labels)
    adv_pred, base_pred = take(window.advanced), take(window.baseline)
    adv_p = None if window.advanced_proba is None else take(window.advanced_proba)
    base_p = None if window.baseline_proba is None else take(window.baseline_proba)
    if reference.task == "classification":
        y = _like(y, reference.y)
    now_adv = np.minimum(_loss(plan.loss, y, adv_pred, adv_p, reference), cap)
    now_base = np.minimum(_loss(plan.loss, y, base_pred, base_p, reference), cap)
    # Independent parts, on the pool's threads (NumPy and SciPy release the GIL
    # in their heavy loops); the largest first.
    metrics_job = _metrics(plan, reference, y, adv_pred, adv_p, base_pred, base_p, seed, pool)
    tests_job = pool.submit(
        _performance_tests, plan, ref_adv, ref_base, now_adv, now_base, take(window.ts), seed
    )
    relations_job = pool.submit(_relations, plan, reference, window, rows, y, seed)
    segments_job = pool.submit(_segments, reference, window, rows, now_adv, now_base, seed)
    outliers = []
    if reference.task == "regression":
        for who, pred in (("advanced", adv_pred), ("baseline", base_pred)):
            err = np.asarray(pred, dtype=np.float64) - np.asarray(y, dtype=np.float64)
            outliers.append(replace(outlier_influence(err, metric="mse", k=1), metric=f"{who}:mse"))
    windows = loss_series(plan, take(window.ts), now_adv, now_base)
    equivalence, settle = _equivalence(plan, ref_adv, now_adv)
    change = _change(plan, take(window.ts), now_adv, seed)
    tests, notes = tests_job.result()
    return Performance(
        n_labelled=n_lab,
        metrics={who: job.result() for who, job in metrics_job.items()},
        tests=tuple(tests),
        relations=tuple(relations_job.result()),
        outliers=tuple(outliers),
        segments=tuple(segments_job.result()),
        windows=tuple(windows),
        notes=tuple(notes),
        required=required,
        cap=cap,
        equivalence=equivalence,
        settle=settle,
        change=change,
    )


def _change(
    plan: MonitoringPlan, ts: np.ndarray, losses: np.ndarray, seed: int
) -> ChangePoint | None:
    """Where one change in the advanced model's mean loss began, in time order."""
    if len(losses) < 4 or not np.isfinite(losses).all():
        return None
    order = np.argsort(np.asarray(ts, dtype=np.float64), kind="stable")
    return change_point(losses[order], ts=np.asarray(ts)[order], alpha=plan.alpha, seed=seed)


def _equivalence(
    plan: MonitoringPlan, ref_adv: np.ndarray, now_adv: np.ndarray
) -> tuple[TestResult | None, int | None]:
    """The advanced model's decline (now - reference) tested against ``min_effect`` (TOST at
    the plan's alpha), and about how many labels in all would settle it if it stays open."""
    if "tost_welch" not in plan.tests.equivalence or len(ref_adv) < 2 or len(now_adv) < 2:
        return None, None
    eq = tost_welch(ref_adv, now_adv, low=-math.inf, high=plan.min_effect, alpha=plan.alpha)
    settle = labels_to_settle(
        effect=eq.effect,
        sd=float(np.std(now_adv, ddof=1)),
        n=len(now_adv),
        margin=plan.min_effect,
        alpha=plan.alpha,
        ref_var_of_mean=float(np.var(ref_adv, ddof=1)) / len(ref_adv),
    )
    return eq, settle


def _segments(
    reference: ReferenceInputs,
    window: WindowData,
    rows: np.ndarray | None,
    now_adv: np.ndarray,
    now_base: np.ndarray,
    seed: int,
) -> list[ErrorSegment]:
    """The error tree's worst segments, on at most ``2 * SUBSAMPLE_N`` sampled records."""
    features = window.features
    if features is None or len(reference.feature_names) != features.shape[1]:
        return []
    return error_segments(
        features,
        now_adv,
        now_base,
        feature_names=reference.feature_names,
        seed=seed,
        max_fit=2 * SUBSAMPLE_N,
        rows=rows,
    )[:8]


def reference_losses(
    plan: MonitoringPlan, reference: ReferenceInputs
) -> tuple[np.ndarray, np.ndarray, float]:
    """Both models' per-example reference losses for the plan's primary metric, and the cap.

    For an outlier-robust primary metric every per-example loss is winsorised
    at the reference's 99th percentile (``cap``; infinite otherwise): the same
    transform on both sides keeps the tests calibrated, and no single error can
    move a mean by more than ``cap / n``.
    """
    adv = _loss(plan.loss, reference.y, reference.advanced, reference.advanced_proba, reference)
    base = _loss(plan.loss, reference.y, reference.baseline, reference.baseline_proba, reference)
    if not plan.robust:
        return adv, base, math.inf
    cap = float(np.quantile(np.concatenate([adv, base]), 0.99))
    return np.minimum(adv, cap), np.minimum(base, cap), cap


def required_n(plan: MonitoringPlan, ref_adv: np.ndarray, ref_base: np.ndarray) -> int | None:
    """Labels at which the plan's declared power rules out a decline of ``min_effect``.

    The statistic is the one the verdict weighs: the advanced model's mean
    per-example loss (winsorised for a robust primary) now against its
    reference, whose own size and spread bound what any number of labels can
    show. ``None`` when the reference alone is too small. (``ref_base`` is kept
    for callers that also report the paired spread.)
    """
    n_ref = len(ref_adv)
    sd = float(np.std(ref_adv, ddof=1)) if n_ref > 1 else 1.0
    return required_n_equivalence(
        margin=plan.min_effect,
        sd=max(sd, 1e-12),
        alpha=plan.alpha,
        power=plan.power,
        n_reference=n_ref if n_ref > 1 else math.inf,
    )


def _like(y: np.ndarray, ref_y: np.ndarray) -> np.ndarray:
    """Labels from JSON in the reference's dtype (so 1 == 1.0 == np.int64(1))."""
    try:
        return np.asarray(y).astype(ref_y.dtype)
    except (TypeError, ValueError):
        return np.asarray(y)


def _loss(
    name: str,
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    reference: ReferenceInputs,
) -> np.ndarray:
    return np.asarray(per_example_loss(name, y, pred, proba, reference.classes), dtype=np.float64)


def _metrics(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    y: np.ndarray,
    adv: np.ndarray,
    adv_p: np.ndarray | None,
    base: np.ndarray,
    base_p: np.ndarray | None,
    seed: int,
    pool: ThreadPoolExecutor,
) -> dict[str, Future[dict[str, MetricValue]]]:
    """Each source's metrics with their intervals, one job per source on ``pool``."""
    names = (plan.primary_metric, *plan.secondary_metrics)
    out: dict[str, Future[dict[str, MetricValue]]] = {}
    sources = {
        "advanced": (y, adv, adv_p),
        "baseline": (y, base, base_p),
        "advanced_reference": (reference.y, reference.advanced, reference.advanced_proba),
        "baseline_reference": (reference.y, reference.baseline, reference.baseline_proba),
    }
    for who, (yy, pred, proba) in sources.items():
        boots = {name: 1000 if name == plan.primary_metric and "reference" not in who else 200
                 for name in names}  # fmt: skip
        out[who] = pool.submit(
            _source_metrics, names, yy, pred, proba, reference.classes, boots, seed
        )
    return out


def _source_metrics(
    names: Sequence[str],
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    classes: tuple[Any, ...] | None,
    boots: dict[str, int],
    seed: int,
) -> dict[str, MetricValue]:
    try:
        return metrics_with_ci(
            names,
            y,
            pred,
            proba,
            classes,
            n_boot=boots,
            seed=seed,
            max_bootstrap_n=BOOTSTRAP_MAX_N,
            subsample_n=SUBSAMPLE_N,
        )
    except ValueError:  # labels or predictions the metrics cannot read: none of them
        return {}


def _performance_tests(
    plan: MonitoringPlan,
    ref_adv: np.ndarray,
    ref_base: np.ndarray,
    now_adv: np.ndarray,
    now_base: np.ndarray,
    ts: np.ndarray,
    seed: int,
) -> tuple[list[TestResult], list[str]]:
    """The plan's declared tests (one family, corrected together), and notes on skipped ones."""
    batteries: list[tuple[str, Battery]] = []
    # Each model now against its reference (unpaired: different requests).
    pairs = (
        ("advanced_vs_reference", ref_adv, now_adv, "advanced model: loss now - reference"),
        ("baseline_vs_reference", ref_base, now_base, "baseline: loss now - reference"),
        (
            "gap_vs_reference",
            ref_adv - ref_base,
            now_adv - now_base,
            "advanced-minus-baseline loss per request, now - reference (edge lost if > 0)",
        ),
    )
    for name, ref, now, what in pairs:
        done = reference_battery(plan.tests.reference, ref, now, name=name, what=what, seed=seed)
        batteries.append((name, done))
    # Now, paired on the same requests: is the advanced model still better?
    what = "advanced - baseline loss on the same requests (> 0: advanced is worse)"
    batteries.append(
        (
            "paired",
            paired_battery(
                plan.tests.paired, now_adv, now_base, loss=plan.loss, ts=ts, seed=seed, what=what
            ),
        )
    )
    # Across time windows within the period: is the advanced loss changing?
    groups = split_by_window(now_adv, ts, plan.window_seconds)
    batteries.append(
        ("windows", window_battery(plan.tests.windows, groups, what="advanced loss across windows"))
    )
    tests = [t for _, b in batteries for t in b.results]
    notes = [
        f"{family}: the plan's {', '.join(b.skipped)} did not apply to this window"
        for family, b in batteries
        if b.skipped
    ]
    return correct(tests, plan.tests.correction), notes


def _target_scores(reference: ReferenceInputs, y: np.ndarray) -> np.ndarray | None:
    """The target as numbers a rank correlation can use: the value for a regressor,
    the indicator of the last class for a binary classifier; ``None`` otherwise."""
    if reference.task == "regression":
        return np.asarray(y, dtype=np.float64)
    classes = reference.classes or ()
    if len(classes) == 2:
        scores: np.ndarray = (np.asarray(y) == classes[1]).astype(np.float64)
        return scores
    return None


def _relations(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    rows: np.ndarray | None,
    y: np.ndarray,
    seed: int = 0,
) -> list[DriftResult]:
    """How each raw numeric feature relates to the target, now against the reference.

    Spearman correlations (Fisher z test of the change) on up to
    ``SUBSAMPLE_N`` records of each side (seeded); a change is material when
    it is at least the plan's ``min_drift_effect``. With the inputs unchanged
    and both models worse, these name where the concept moved.
    """
    out: list[DriftResult] = []
    if "spearman_fisher_z" not in plan.tests.relations:
        return out
    t_now = _target_scores(reference, y)
    t_ref = _target_scores(reference, reference.y)
    if t_now is None or t_ref is None or len(t_now) < 10:
        return out
    rng = np.random.default_rng(seed)
    limit = SUBSAMPLE_N
    n_cur, n_ref = len(t_now), len(t_ref)
    pick_cur = rng.choice(n_cur, size=limit, replace=False) if n_cur > limit else None
    pick_ref = rng.choice(n_ref, size=limit, replace=False) if n_ref > limit else None
    # rows of the window to read: the labelled ones, or a sample of them
    at = rows if pick_cur is None else (pick_cur if rows is None else rows[pick_cur])
    tc = t_now if pick_cur is None else t_now[pick_cur]
    for name, cur in window.raw_numeric.items():
        ref = reference.raw_numeric.get(name)
        if ref is None or len(ref) != n_ref:
            continue
        x_cur = cur if at is None else cur[at]
        x_ref, tr = ref, t_ref
        if pick_ref is not None:
            x_ref, tr = x_ref[pick_ref], tr[pick_ref]
        try:
            out.append(relation_change(x_ref, tr, x_cur, tc, feature=name, kind="numeric"))
        except ValueError:
            continue
    return judged(plan, out)
