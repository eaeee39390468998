"""Promote, reject, or wait: is the candidate, in shadow on the same requests, really better?

The plan's paired tests (``_battery.paired_battery``, the same battery the
diagnosis runs) compare the champion's and the candidate's per-example losses
on the same labelled requests (``champion - candidate``: positive means the
candidate is better), corrected together by the plan's correction. The order
is the diagnosis's:

1. fewer than the plan's ``min_labelled`` pairs -> ``insufficient_data``;
2. the deciding test -- the first of the plan's paired tests that applies --
   significant AND its improvement's interval reaching ``min_effect`` ->
   ``promote``, at any n above the floor;
3. the ``1 - 2 alpha`` interval of the improvement below ``min_effect`` (two
   one-sided tests: the candidate is verifiably not better by a material
   amount), or n at the power target for the observed spread -> ``reject``;
4. otherwise ``insufficient_data``, with how many more pairs would settle it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._battery import correct, paired_battery
from ._equivalence import labels_to_settle, required_n_equivalence, tost_paired
from ._metrics import metric_with_ci, per_example_loss
from ._plan import MonitoringPlan
from ._results import MetricValue, TestResult
from ._stats import is_alarm

__all__ = ["PromotionDecision", "PromotionVerdict", "decide_promotion"]

PromotionVerdict = Literal["promote", "reject", "insufficient_data"]


@dataclass(frozen=True)
class PromotionDecision:
    """Promote, reject or wait, why, and the evidence."""

    decision: PromotionVerdict
    reason: str
    champion_version: str
    candidate_version: str
    n_paired: int
    deciding_test: str | None
    tests: tuple[TestResult, ...]
    metrics: dict[str, MetricValue]
    plan_sha256: str
    #: the equivalence test of the improvement against ``min_effect`` (None below the floor)
    equivalence: TestResult | None = None
    #: about how many labelled pairs in all would settle an open question
    labels_to_settle: int | None = None

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "decision": self.decision,
            "reason": self.reason,
            "champion_version": self.champion_version,
            "candidate_version": self.candidate_version,
            "n_paired": self.n_paired,
            "deciding_test": self.deciding_test,
            "evidence": {
                "tests": [t.to_dict() for t in self.tests],
                "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
                "equivalence": None if self.equivalence is None else self.equivalence.to_dict(),
                "labels_to_settle": self.labels_to_settle,
            },
            "plan_sha256": self.plan_sha256,
        }


def _losses(
    plan: MonitoringPlan,
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    classes: tuple[Any, ...] | None,
) -> np.ndarray:
    """One model's per-example losses for the plan's loss."""
    return np.asarray(per_example_loss(plan.loss, y, pred, proba, classes), dtype=np.float64)


def decide_promotion(
    *,
    plan: MonitoringPlan,
    y: np.ndarray,
    champion: np.ndarray,
    champion_proba: np.ndarray | None,
    candidate: np.ndarray,
    candidate_proba: np.ndarray | None,
    classes: tuple[Any, ...] | None,
    ts: np.ndarray,
    champion_version: str,
    candidate_version: str,
    seed: int = 0,
) -> PromotionDecision:
    """Decide on labelled requests both models answered (arrays aligned by request)."""
    n = len(y)

    def decision(
        verdict: PromotionVerdict,
        reason: str,
        tests: tuple[TestResult, ...] = (),
        deciding: str | None = None,
        metrics: dict[str, MetricValue] | None = None,
        equivalence: TestResult | None = None,
        settle: int | None = None,
    ) -> PromotionDecision:
        return PromotionDecision(
            decision=verdict,
            reason=reason,
            champion_version=champion_version,
            candidate_version=candidate_version,
            n_paired=n,
            deciding_test=deciding,
            tests=tests,
            metrics=metrics or {},
            plan_sha256=plan.sha256,
            equivalence=equivalence,
            labels_to_settle=settle,
        )

    if n < plan.min_labelled:
        return decision(
            "insufficient_data",
            f"{n} labelled requests with the candidate in shadow; the plan needs at least "
            f"{plan.min_labelled} to judge",
            settle=plan.min_labelled,
        )
    loss_champ = _losses(plan, y, champion, champion_proba, classes)
    loss_cand = _losses(plan, y, candidate, candidate_proba, classes)
    if plan.robust:  # the same winsorising as the diagnosis: one outlier cannot decide
        cap = float(np.quantile(np.concatenate([loss_champ, loss_cand]), 0.99))
        loss_champ, loss_cand = np.minimum(loss_champ, cap), np.minimum(loss_cand, cap)
    what = "champion - candidate loss on the same requests (> 0: the candidate is better)"
    battery = paired_battery(
        plan.tests.paired,
        loss_champ,
        loss_cand,
        loss=plan.loss,
        ts=np.asarray(ts, dtype=np.float64),
        seed=seed,
        what=what,
    )
    if not battery.results:
        return decision(
            "insufficient_data", "none of the plan's paired tests applies to these requests"
        )
    tests = tuple(correct(battery.results, plan.tests.correction))
    metrics = {}
    for who, (pred, proba) in {
        "champion": (champion, champion_proba),
        "candidate": (candidate, candidate_proba),
    }.items():
        with contextlib.suppress(ValueError):
            metrics[who] = metric_with_ci(
                plan.primary_metric, y, pred, proba, classes, n_boot=500, seed=seed
            )
    deciding = tests[0]
    verdict, reason, eq, settle = _weigh(plan, deciding, loss_champ, loss_cand)
    return decision(verdict, reason, tests, deciding.name, metrics, eq, settle)


def _weigh(
    plan: MonitoringPlan, deciding: TestResult, loss_champ: np.ndarray, loss_cand: np.ndarray
) -> tuple[PromotionVerdict, str, TestResult, int | None]:
    """Promote, reject or wait, from the deciding test and the equivalence of the improvement."""
    n = len(loss_champ)
    eq = tost_paired(loss_champ, loss_cand, low=-math.inf, high=plan.min_effect, alpha=plan.alpha)
    sd = float(np.std(loss_champ - loss_cand, ddof=1))
    settle = labels_to_settle(
        effect=eq.effect, sd=sd, n=n, margin=plan.min_effect, alpha=plan.alpha
    )
    power_n = required_n_equivalence(
        margin=plan.min_effect, sd=max(sd, 1e-12), alpha=plan.alpha, power=plan.power
    )
    p = deciding.p_adjusted if not math.isnan(deciding.p_adjusted) else deciding.p_value
    summary = (
        f"{deciding.name}: the candidate's loss is lower by {deciding.effect:.4g} "
        f"(95% CI {deciding.ci_low:.4g} to {deciding.ci_high:.4g}, p_adj={p:.3g}) "
        f"on {n} labelled requests; the plan asks for p <= {plan.alpha} and an improvement "
        f"that can reach {plan.min_effect}"
    )
    interval = f"{1 - 2 * plan.alpha:.0%} interval [{eq.ci_low:.4g}, {eq.ci_high:.4g}]"
    if is_alarm(deciding, alpha=plan.alpha, min_effect=plan.min_effect):
        return "promote", "promote: " + summary, eq, settle
    if "tost_paired" in plan.tests.equivalence and eq.p_value <= plan.alpha:
        return (
            "reject",
            f"reject: the improvement's {interval} rules out one of {plan.min_effect:g} "
            f"(equivalence p={eq.p_value:.3g}); " + summary,
            eq,
            settle,
        )
    if power_n is not None and n >= power_n:
        return (
            "reject",
            f"reject: no significant and material improvement in {n} pairs, at least the "
            f"{power_n} the plan's power {plan.power:g} needs; " + summary,
            eq,
            settle,
        )
    more = "" if settle is None else f"; about {max(settle - n, 1)} more pairs would settle it"
    return (
        "insufficient_data",
        f"insufficient_data: the improvement {eq.effect:+.4g}, {interval}, neither reaches "
        f"significance nor rules out {plan.min_effect:g}{more}; " + summary,
        eq,
        settle,
    )
