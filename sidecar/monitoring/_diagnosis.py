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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._json import to_jsonable as _jsonable
from ._battery import BOOTSTRAP_MAX_N
from ._changepoint import ChangePoint
from ._errortree import ErrorSegment
from ._estimate import ESTIMABLE, PerformanceEstimate, estimate_performance
from ._input_evidence import Columns, input_evidence
from ._inputs import ReferenceInputs, WindowData
from ._label_evidence import SUBSAMPLE_N, Performance, label_evidence, reference_losses, required_n
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
from ._verdict import Recommendation, decide, recommend
from ._windows import unknown_series

__all__ = [
    "BOOTSTRAP_MAX_N",
    "SUBSAMPLE_N",
    "VERDICTS",
    "Diagnosis",
    "Recommendation",
    "diagnose",
    "reference_losses",
    "required_n",
]


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
    #: where one change in the advanced model's mean loss began (labelled stream, by time)
    change: ChangePoint | None = None
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
            "change_point": None if self.change is None else _jsonable(self.change.to_dict()),
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
    adapter_for: Callable[[Verdict], str | None] | None = None,
    since: float | None = None,
    until: float | None = None,
    seed: int = 0,
) -> Diagnosis:
    """Diagnose one window of served records against the reference, as the plan says.

    The diagnosis names the verdict; ``adapter_for(verdict)`` -- the
    adapters' model-family rule, e.g. ``adapters.adapter_for(bundle)`` -- names
    the retraining adapter the recommendation carries. Without it, none is named.
    """
    notes = list(window.notes)

    # 1. The evidence, as jobs on two worker threads (NumPy, SciPy and scikit-learn
    # release the GIL in their heavy loops): one sort per numeric column and one
    # count per categorical one, then the health checks and drift tests on those,
    # the unlabelled estimate, the outcomes, and everything that needs labels.
    estimate_notes: list[str] = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sidecar-diagnose") as pool:
        columns = Columns.submit(pool, reference, window)
        inputs_job = pool.submit(input_evidence, plan, reference, window, columns)
        estimate_job = pool.submit(_estimate, plan, reference, window, seed, estimate_notes)
        outcomes_job = pool.submit(outcomes, reference, window, seed)
        perf = label_evidence(plan, reference, window, seed, pool)
        health, drift, distributions = inputs_job.result()
        estimate, summary = estimate_job.result(), outcomes_job.result()
    unknown_rates = {
        f: (window.unknown.get(f, 0) / window.n if window.n else 0.0)
        for f in reference.categorical_fields
    }
    notes += [*perf.notes, *estimate_notes]
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
        recommendation=recommend(
            verdict,
            None if adapter_for is None else adapter_for(verdict),
            health,
            perf.n_labelled,
            plan,
            bounds,
        ),
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
        unknown_series=tuple(unknown_series(plan, window)),
        distributions=tuple(distributions),
        estimate=estimate,
        outcomes=summary,
        change=perf.change,
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
    labelled = np.asarray(window.labelled, dtype=bool)
    labels = np.asarray(window.labels)
    if not labelled.all():  # unlabelled rows become None (every row labelled: no copy)
        labels = labels.astype(object)
        labels[~labelled] = None
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


def _bounds_check(plan: MonitoringPlan, perf: Performance) -> BoundsCheck:
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


# -- pieces ---------------------------------------------------------------------------
