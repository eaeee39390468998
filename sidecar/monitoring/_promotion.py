"""Promote or reject: is the candidate, in shadow on the same requests, really better?

The plan's paired tests compare the champion's and the candidate's
per-example losses on the same labelled requests (``champion - candidate``:
positive means the candidate is better). The candidate is promoted only when
the deciding test -- the first of the plan's paired tests that applies -- is
significant after Benjamini-Hochberg AND the improvement's interval reaches
the plan's smallest effect that matters; otherwise it is rejected, with the
evidence either way.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._metrics import metric_with_ci, per_example_loss
from ._plan import MonitoringPlan
from ._results import MetricValue, TestResult
from ._stats import (
    benjamini_hochberg,
    diebold_mariano,
    is_alarm,
    mcnemar_exact,
    paired_bootstrap,
    wilcoxon_signed_rank,
)

__all__ = ["PromotionDecision", "decide_promotion"]


@dataclass(frozen=True)
class PromotionDecision:
    """Promote or not, why, and the evidence."""

    promote: bool
    reason: str
    champion_version: str
    candidate_version: str
    n_paired: int
    deciding_test: str | None
    tests: tuple[TestResult, ...]
    metrics: dict[str, MetricValue]
    plan_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "decision": "promote" if self.promote else "reject",
            "reason": self.reason,
            "champion_version": self.champion_version,
            "candidate_version": self.candidate_version,
            "n_paired": self.n_paired,
            "deciding_test": self.deciding_test,
            "evidence": {
                "tests": [t.to_dict() for t in self.tests],
                "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            },
            "plan_sha256": self.plan_sha256,
        }


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
        promote: bool,
        reason: str,
        tests: tuple[TestResult, ...] = (),
        deciding: str | None = None,
        metrics: dict[str, MetricValue] | None = None,
    ) -> PromotionDecision:
        return PromotionDecision(
            promote=promote,
            reason=reason,
            champion_version=champion_version,
            candidate_version=candidate_version,
            n_paired=n,
            deciding_test=deciding,
            tests=tests,
            metrics=metrics or {},
            plan_sha256=plan.sha256,
        )

    if n < plan.min_labelled:
        return decision(
            False,
            f"{n} labelled requests with the candidate in shadow; the plan needs at least "
            f"{plan.min_labelled} to judge",
        )
    loss_champ = np.asarray(per_example_loss(plan.loss, y, champion, champion_proba, classes))
    loss_cand = np.asarray(per_example_loss(plan.loss, y, candidate, candidate_proba, classes))
    if plan.robust:  # the same winsorising as the diagnosis: one outlier cannot decide
        cap = float(np.quantile(np.concatenate([loss_champ, loss_cand]), 0.99))
        loss_champ, loss_cand = np.minimum(loss_champ, cap), np.minimum(loss_cand, cap)
    tests: list[TestResult] = []
    what = "champion - candidate loss on the same requests (> 0: the candidate is better)"
    for name in plan.tests.paired:
        if name == "mcnemar" and plan.loss == "zero_one":
            t = mcnemar_exact(loss_champ == 0, loss_cand == 0)
        elif name == "paired_bootstrap" and n <= 50_000:
            t = paired_bootstrap(loss_champ, loss_cand, seed=seed)
        elif name == "wilcoxon" and not np.all(loss_champ == loss_cand):
            t = wilcoxon_signed_rank(loss_champ, loss_cand)
        elif name == "diebold_mariano" and n >= 10:
            order = np.argsort(ts, kind="stable")
            t = diebold_mariano(loss_champ[order], loss_cand[order])
        else:
            continue
        tests.append(replace(t, name=f"paired:{name}", detail={**t.detail, "what": what}))
    if not tests:
        return decision(False, "none of the plan's paired tests applies to these requests")
    adjusted = benjamini_hochberg([t.p_value for t in tests])
    tests = [replace(t, p_adjusted=float(p)) for t, p in zip(tests, adjusted, strict=True)]
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
    better = is_alarm(deciding, alpha=plan.alpha, min_effect=plan.min_effect)
    p = deciding.p_adjusted if not math.isnan(deciding.p_adjusted) else deciding.p_value
    summary = (
        f"{deciding.name}: the candidate's loss is lower by {deciding.effect:.4g} "
        f"(95% CI {deciding.ci_low:.4g} to {deciding.ci_high:.4g}, p_adj={p:.3g}) "
        f"on {n} labelled requests; the plan asks for p <= {plan.alpha} and an improvement "
        f"that can reach {plan.min_effect}"
    )
    return decision(
        better,
        ("promote: " if better else "reject: ") + summary,
        tuple(tests),
        deciding.name,
        metrics,
    )
