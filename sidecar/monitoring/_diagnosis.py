"""The diagnosis: is performance really worse, and why?

One pure function, :func:`diagnose`, turns the plan, the reference and a
window of served records into one verdict from a fixed vocabulary, with the
recommended action and every piece of evidence behind it.

The order of the questions
--------------------------
1. **Does the pipeline look broken?** Preprocessing-health checks need no
   labels: a unit factor, an unknown-code jump, a sign or wrap-around break, a
   format change, a missing-rate jump. -> ``preprocessing_fault``.
2. **Performance, from the labels**: every test the plan declares (looked up
   in ``_battery``'s registry), corrected together by the plan's correction,
   and the equivalence test of the advanced model's decline.
3. **The verdict** (``_verdict.decide``): the hard floor ``min_labelled``; an
   alarm (significant AND material AND out of bounds) at any n above it, and
   why (``overfitting``, ``data_drift``, ``concept_drift``); ``healthy`` when the
   decline's interval rules out ``min_effect`` or n reached the power target;
   otherwise ``insufficient_data`` with what is undecided and how many labels
   would settle it.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
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
from ._drift import (
    chi2_homogeneity,
    is_material,
    ks_drift,
    ks_drift_sorted,
    relation_change,
    sort_reference,
)
from ._equivalence import labels_to_settle, required_n_equivalence, tost_welch
from ._errortree import ErrorSegment, error_segments
from ._estimate import ESTIMABLE, PerformanceEstimate, estimate_performance
from ._health import CurrentColumns, check_health
from ._inputs import ReferenceInputs, WindowData
from ._metrics import metrics_with_ci, outlier_influence, per_example_loss
from ._outcomes import outcomes
from ._plan import MonitoringPlan
from ._results import (
    VERDICTS,
    BoundsCheck,
    DriftResult,
    HealthFinding,
    MetricValue,
    OutlierInfluence,
    TestResult,
    Verdict,
)
from ._results import jsonable as _jsonable
from ._verdict import Recommendation, decide, recommend

__all__ = ["BOOTSTRAP_MAX_N", "VERDICTS", "Diagnosis", "Recommendation", "diagnose"]
#: Past BOOTSTRAP_MAX_N, intervals, feature-target relations and the error tree
#: are estimated on seeded random subsamples (this many records for intervals,
#: five times as many for relations and the tree); point values and the tests
#: themselves use every record.
SUBSAMPLE_N = 20_000


@dataclass(frozen=True)
class Diagnosis:
    """One verdict, its recommendation, and all the evidence."""

    verdict: Verdict
    recommendation: Recommendation
    plan_sha256: str
    n_records: int
    n_labelled: int
    since: float | None
    until: float | None
    reasons: tuple[str, ...]
    metrics: Mapping[str, Mapping[str, MetricValue]]
    tests: tuple[TestResult, ...]
    drift: tuple[DriftResult, ...]
    relations: tuple[DriftResult, ...]
    health: tuple[HealthFinding, ...]
    bounds: BoundsCheck
    outliers: tuple[OutlierInfluence, ...]
    segments: tuple[ErrorSegment, ...]
    windows: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...] = ()
    unknown_rates: Mapping[str, float] = field(default_factory=dict)
    #: per window, the share of each categorical field's values that were unknown
    unknown_series: tuple[Mapping[str, Any], ...] = ()
    #: the most drifted numeric features: reference and per-window histograms
    distributions: tuple[Mapping[str, Any], ...] = ()
    #: the primary metric (or accuracy) estimated from the advanced model's calibrated
    #: probabilities over every record of the window, labelled or not (CBPE)
    estimate: PerformanceEstimate | None = None
    #: confusion matrices (classification) or residuals (regression) of the labelled records
    outcomes: Mapping[str, Any] = field(default_factory=dict)
    #: the plan it was made under (its sha256 is ``plan_sha256``)
    plan: MonitoringPlan | None = field(default=None, repr=False, compare=False)

    @property
    def alarm(self) -> bool:
        return self.verdict not in ("healthy",)

    def _repr_html_(self) -> str:
        """Jupyter shows a diagnosis as its HTML report."""
        from ._report import render_report

        if self.plan is None:
            return f"<pre>{html.escape(repr(self.to_dict()))}</pre>"
        title = f"sidecar diagnosis: {self.verdict}"
        return render_report(self, plan=self.plan, title=title, fragment=True)

    @property
    def exit_code(self) -> int:
        """0 for healthy, 1 for any other verdict (so a pipeline can gate on it)."""
        return 0 if self.verdict == "healthy" else 1

    def to_dict(self) -> dict[str, Any]:
        evidence = {
            "reasons": list(self.reasons),
            "metrics": {
                who: {name: m.to_dict() for name, m in values.items()}
                for who, values in self.metrics.items()
            },
            "tests": [t.to_dict() for t in self.tests],
            "drift": [d.to_dict() for d in self.drift],
            "features_drifted": sorted({d.feature for d in self.drift if d.alarm}),
            "relations": [r.to_dict() for r in self.relations],
            "health": [h.to_dict() for h in self.health],
            "bounds": self.bounds.to_dict(),
            "outliers": [o.to_dict() for o in self.outliers],
            "segments": [{**s.to_dict(), "rule": s.rule} for s in self.segments],
            "windows": [_jsonable(dict(w)) for w in self.windows],
            "unknown_rates": _jsonable(dict(self.unknown_rates)),
            "unknown_series": [_jsonable(dict(u)) for u in self.unknown_series],
            "distributions": [_jsonable(dict(d)) for d in self.distributions],
            "notes": list(self.notes),
            "performance_estimate": None if self.estimate is None else self.estimate.to_dict(),
            "outcomes": _jsonable(dict(self.outcomes)),
        }
        return {
            "verdict": self.verdict,
            "recommendation": self.recommendation.to_dict(),
            "plan_sha256": self.plan_sha256,
            "window": {
                "since": self.since,
                "until": self.until,
                "n_records": self.n_records,
                "n_labelled": self.n_labelled,
            },
            "evidence": evidence,
        }


def diagnose(
    *,
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    model_family: str = "other",
    since: float | None = None,
    until: float | None = None,
    seed: int = 0,
) -> Diagnosis:
    """Diagnose one window of served records against the reference, as the plan says.

    ``model_family`` (``"ensemble"``, ``"neural"`` or ``"other"``) picks the
    retraining adapter the recommendation names.
    """
    notes = list(window.notes)

    # 1. The pipeline, from the inputs alone, and the performance, from the labels.
    # The parts share nothing but the window and run as jobs on two worker
    # threads (NumPy, SciPy and scikit-learn release the GIL in their heavy
    # loops): first one sort per numeric column and one count per categorical
    # one, then the health checks and the drift tests on those, beside each
    # source's metrics, the tests, the relations and the error tree.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sidecar-diagnose") as pool:
        columns = _Columns.submit(pool, reference, window)
        inputs_job = pool.submit(_inputs, plan, reference, window, columns)
        perf = _performance(plan, reference, window, seed, pool)
        health, drift, distributions = inputs_job.result()
    unknown_rates = {
        f: (window.unknown.get(f, 0) / window.n if window.n else 0.0)
        for f in reference.categorical_fields
    }
    notes.extend(perf.notes)
    bounds = _bounds_check(plan, perf)
    verdict, reasons = decide(
        plan,
        n_labelled=perf.n_labelled,
        health=health,
        bounds=bounds,
        tests={t.name: t for t in perf.tests},
        drift=drift,
        relations=perf.relations,
    )
    return Diagnosis(
        verdict=verdict,
        recommendation=recommend(verdict, model_family, health, perf.n_labelled, plan, bounds),
        plan_sha256=plan.sha256,
        n_records=window.n,
        n_labelled=perf.n_labelled,
        since=since,
        until=until,
        reasons=tuple(reasons),
        metrics=perf.metrics,
        tests=perf.tests,
        drift=tuple(drift),
        relations=perf.relations,
        health=health,
        bounds=bounds,
        outliers=perf.outliers,
        segments=perf.segments,
        windows=perf.windows,
        notes=tuple(notes),
        unknown_rates=unknown_rates,
        unknown_series=tuple(_unknown_series(plan, window)),
        distributions=tuple(distributions),
        estimate=_estimate(plan, reference, window, seed, notes),
        outcomes=outcomes(reference, window, seed),
        plan=plan,
    )


def _estimate(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    seed: int,
    notes: list[str],
) -> PerformanceEstimate | None:
    """CBPE of the primary metric (accuracy when that cannot be estimated without labels)."""
    if (
        reference.task != "classification"
        or reference.classes is None
        or reference.advanced_proba is None
        or window.advanced_proba is None
        or window.n == 0
    ):
        return None
    metric = plan.primary_metric if plan.primary_metric in ESTIMABLE else "accuracy"
    labels = np.asarray(window.labels, dtype=object).copy()
    labels[~np.asarray(window.labelled, dtype=bool)] = None
    try:
        return estimate_performance(
            metric,
            window.advanced_proba,
            reference_proba=reference.advanced_proba,
            reference_labels=reference.y,
            classes=np.asarray(reference.classes),
            labels=labels,
            alpha=plan.alpha,
            seed=seed,
        )
    except ValueError as exc:  # e.g. a metric undefined on every draw: evidence, not a failure
        notes.append(f"no performance estimate: {exc}")
        return None


@dataclass(frozen=True)
class _Performance:
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


def _bounds_check(plan: MonitoringPlan, perf: _Performance) -> BoundsCheck:
    """The primary metric against the plan's bounds, with the decline's equivalence test."""
    lo, hi = plan.bounds.lower, plan.bounds.upper
    primary = perf.metrics.get("advanced", {}).get(plan.primary_metric)
    value, below, above = math.nan, False, False
    if primary is not None:
        value = primary.value
        # Decay counts when the value is out of bounds (the decline itself must be
        # significant and material too); "too good" only when the whole interval
        # is beyond the bound, so window-to-window noise is not a fault.
        if plan.higher_is_better:
            below = lo is not None and value < lo
            above = hi is not None and primary.ci_low > hi
        else:  # a loss: above the upper bound is decay, below the lower bound suspicious
            below = hi is not None and value > hi
            above = lo is not None and primary.ci_high < lo
    eq = perf.equivalence
    return BoundsCheck(
        lower=lo,
        upper=hi,
        value=value,
        decayed_out_of_bounds=below,
        suspiciously_good=above,
        required_n_for_power=perf.required,
        winsorised_at=perf.cap if plan.robust else None,
        decline=math.nan if eq is None else eq.effect,
        decline_ci_low=math.nan if eq is None else eq.ci_low,
        decline_ci_high=math.nan if eq is None else eq.ci_high,
        equivalence_p=math.nan if eq is None else eq.p_value,
        no_material_decline=eq is not None and eq.p_value <= plan.alpha,
        labels_to_settle=perf.settle,
    )


def _performance(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    seed: int,
    pool: ThreadPoolExecutor,
) -> _Performance:
    """Everything that needs labels: metrics, tests, relations, outliers, segments, series."""
    mask = np.asarray(window.labelled, dtype=bool)
    n_lab = int(mask.sum())
    ref_adv, ref_base, cap = reference_losses(plan, reference)
    required = required_n(plan, ref_adv, ref_base)
    empty = _Performance(n_lab, {}, (), (), (), (), (), (), required, cap, None, None)
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
    windows = _window_series(plan, take(window.ts), now_adv, now_base)
    equivalence, settle = _equivalence(plan, ref_adv, now_adv)
    tests, notes = tests_job.result()
    return _Performance(
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
    )


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


# -- pieces ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Columns:
    """The window's raw columns prepared once for the health checks and the drift tests.

    ``current[f]``: field ``f``'s non-missing values, sorted (``missing[f]``
    of them were NaN); ``reference[f]``: the same for the reference; and
    ``counts[f]``: how often each raw value of a categorical field occurs.
    """

    current: dict[str, np.ndarray]
    missing: dict[str, int]
    reference: dict[str, np.ndarray]
    counts: dict[str, Counter[Any]]

    @staticmethod
    def submit(
        pool: ThreadPoolExecutor, reference: ReferenceInputs, window: WindowData
    ) -> Callable[[], _Columns]:
        """Queue one sort per numeric column and one count per categorical one on ``pool``;
        the returned function waits for them and gathers the results."""
        current = {k: pool.submit(_present_sorted, v) for k, v in window.raw_numeric.items()}
        ref = {
            k: pool.submit(_present_sorted, reference.raw_numeric[k])
            for k in window.raw_numeric
            if k in reference.raw_numeric
        }
        counts = {k: pool.submit(Counter, v) for k, v in window.raw_categorical.items()}

        def collect() -> _Columns:
            cur = {k: job.result() for k, job in current.items()}
            return _Columns(
                current={k: v for k, (v, _) in cur.items()},
                missing={k: m for k, (_, m) in cur.items()},
                reference={k: job.result()[0] for k, job in ref.items()},
                counts={k: job.result() for k, job in counts.items()},
            )

        return collect


def _inputs(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    collect: Callable[[], _Columns],
) -> tuple[tuple[HealthFinding, ...], list[DriftResult], list[dict[str, Any]]]:
    """The health findings, the drift tests and the most drifted features' histograms."""
    columns = collect()
    health = tuple(_health(plan, reference, window, columns))
    drift = _drift(plan, reference, window, columns)
    return health, drift, _distributions(plan, reference, window, drift)


def _present_sorted(values: Any) -> tuple[np.ndarray, int]:
    arr = np.asarray(values, dtype=np.float64)
    missing = np.isnan(arr)
    n_missing = int(np.count_nonzero(missing))
    return np.sort(arr[~missing] if n_missing else arr), n_missing


def _health(
    plan: MonitoringPlan, reference: ReferenceInputs, window: WindowData, columns: _Columns
) -> list[HealthFinding]:
    if window.n == 0:
        return []
    current = CurrentColumns(
        numeric={k: np.asarray(v, dtype=np.float64) for k, v in window.raw_numeric.items()},
        categorical=dict(window.raw_categorical),
        unknown=dict(window.unknown),
        sorted_present=columns.current,
        counts=columns.counts,
    )
    return check_health(
        reference.sketches,
        current,
        alpha=plan.alpha,
        units=reference.units,
        correction=plan.tests.correction,
    )


def _drift(
    plan: MonitoringPlan, reference: ReferenceInputs, window: WindowData, columns: _Columns
) -> list[DriftResult]:
    if window.n == 0:
        return []
    results: list[DriftResult] = []
    if "ks" in plan.tests.drift:
        for name in window.raw_numeric:
            ref_sorted = columns.reference.get(name)
            if ref_sorted is None:
                continue
            cur_sorted = columns.current[name]
            if len(ref_sorted) < 2 or len(cur_sorted) < 2:
                continue
            results.append(
                ks_drift_sorted(
                    name, ref_sorted, cur_sorted, n_missing=columns.missing[name], space="raw"
                )
            )
    if "chi2_homogeneity" in plan.tests.drift:
        for name in window.raw_categorical:
            sketch = reference.sketches.get(name, {})
            ref_counts = dict(sketch.get("counts", {}))
            if sketch.get("other"):
                ref_counts["<other>"] = int(sketch["other"])
            cur_counts: dict[str, int] = {}
            for v, c in columns.counts[name].items():  # counted once, fold the few keys
                if v is not None:
                    key = str(v)
                    cur_counts[key] = cur_counts.get(key, 0) + c
            if not ref_counts or not cur_counts:
                continue
            results.append(chi2_homogeneity(ref_counts, cur_counts, feature=name, space="raw"))
    # Preprocessed features: a feature that is a monotone map of one numeric raw
    # field has exactly that field's KS statistic and p-value, so it is not
    # tested twice; the others are.
    categorical = set(reference.categorical_fields)
    if window.features is not None and "ks" in plan.tests.drift:
        for j, name in enumerate(reference.feature_names):
            if name in reference.monotone_of or j >= window.features.shape[1]:
                continue
            if name in categorical or name.split("=", 1)[0] in categorical:
                continue  # an encoded category: the chi-square test on the raw field covers it
            ref = reference.features[:, j]
            cur = window.features[:, j]
            if len(np.unique(ref)) <= 2:  # one-hot / binary: covered by the categorical test
                continue
            results.append(ks_drift(name, sort_reference(ref), cur, space="preprocessed"))
    if not results:
        return []
    return _judged(plan, results)


def _judged(plan: MonitoringPlan, results: Sequence[DriftResult]) -> list[DriftResult]:
    """Drift or relation results corrected as one family by the plan's correction, each
    marked material (``min_drift_effect``) and an alarm (also significant at ``alpha``)."""
    out = []
    for r in correct(results, plan.tests.correction):
        material = is_material(r, min_effect=plan.min_drift_effect)
        p = r.p_value if math.isnan(r.p_adjusted) else r.p_adjusted
        out.append(
            replace(
                r,
                material=material,
                alarm=material and p <= plan.alpha,
                detail={**r.detail, "alpha": plan.alpha},  # for the report's colours
            )
        )
    return out


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
    groups = _split_by_window(now_adv, ts, plan.window_seconds)
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


def _split_by_window(values: np.ndarray, ts: np.ndarray, width: float) -> list[np.ndarray]:
    if len(ts) == 0:
        return []
    keys = np.floor((ts - ts.min()) / width).astype(np.int64)
    return [values[keys == k] for k in np.unique(keys) if np.count_nonzero(keys == k) >= 2]


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
    return _judged(plan, out)


def _window_series(
    plan: MonitoringPlan, ts: np.ndarray, now_adv: np.ndarray, now_base: np.ndarray
) -> list[dict[str, Any]]:
    """Per window: both models' mean loss with a normal-approximation CI, for the report."""
    if len(ts) == 0:
        return []
    width = plan.window_seconds
    start, keys = _window_keys(ts, width)
    series = []
    for k in np.unique(keys):
        sel = keys == k
        row: dict[str, Any] = {"start": start + int(k) * width, "n": int(sel.sum())}
        for who, loss in (("advanced", now_adv), ("baseline", now_base)):
            v = loss[sel]
            mean = float(v.mean())
            half = 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.nan
            value = 1.0 - mean if plan.loss == "zero_one" else mean
            row[who] = {"value": value, "ci_low": value - half, "ci_high": value + half}
        series.append(row)
    return series


def _window_keys(ts: np.ndarray, width: float) -> tuple[float, np.ndarray]:
    start = math.floor(float(ts.min()) / width) * width
    return start, np.floor((ts - start) / width).astype(np.int64)


def _unknown_series(plan: MonitoringPlan, window: WindowData) -> list[dict[str, Any]]:
    if window.n == 0 or not window.unknown_flags:
        return []
    start, keys = _window_keys(window.ts, plan.window_seconds)
    series = []
    for k in np.unique(keys):
        sel = keys == k
        row: dict[str, Any] = {"start": start + int(k) * plan.window_seconds, "n": int(sel.sum())}
        row["rates"] = {f: float(flags[sel].mean()) for f, flags in window.unknown_flags.items()}
        series.append(row)
    return series


def _distributions(
    plan: MonitoringPlan,
    reference: ReferenceInputs,
    window: WindowData,
    drift: Sequence[DriftResult],
    top: int = 3,
    max_windows: int = 6,
) -> list[dict[str, Any]]:
    """Reference and per-window histograms of the most drifted numeric raw features."""
    if window.n == 0:
        return []
    numeric = [d for d in drift if d.kind == "numeric" and d.space == "raw"]
    numeric.sort(key=lambda d: (not d.material, -d.effect))
    start, keys = _window_keys(window.ts, plan.window_seconds)
    shown = np.unique(keys)[-max_windows:]
    out = []
    for d in numeric[:top]:
        ref = reference.raw_numeric[d.feature]
        ref = ref[~np.isnan(ref)]
        cur = np.asarray(window.raw_numeric[d.feature], dtype=np.float64)
        lo = float(min(ref.min(), np.nanmin(cur)))
        hi = float(max(ref.max(), np.nanmax(cur)))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        ref_hist = np.histogram(ref, bins=edges)[0] / max(len(ref), 1)
        windows = []
        for k in shown:
            values = cur[(keys == k) & ~np.isnan(cur)]
            if len(values) == 0:
                continue
            windows.append(
                {
                    "start": start + int(k) * plan.window_seconds,
                    "share": (np.histogram(values, bins=edges)[0] / len(values)).tolist(),
                }
            )
        out.append(
            {
                "feature": d.feature,
                "effect": d.effect,
                "edges": edges.tolist(),
                "reference": ref_hist.tolist(),
                "windows": windows,
            }
        )
    return out
