"""The monitoring plan: every statistical choice, declared before monitoring starts.

A plan is frozen into the bundle (``plan.json``); its sha256 is in the
manifest and in every diagnosis, and changing it makes a new bundle version,
so nobody can move the goalposts after seeing the data.

>>> plan = default_plan("classification", reference_metric=0.95)
>>> plan.primary_metric, plan.alpha, plan.bounds.lower
('accuracy', 0.05, 0.9)
>>> MonitoringPlan.from_mapping({**plan.model_dump(), "alpah": 0.1})
Traceback (most recent call last):
...
sidecar._errors.PlanError: the monitoring plan is invalid: `alpah`: Extra inputs ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._errors import PlanError
from .._files import read_mapping
from .._types import Task
from ._battery import CORRECTIONS, DRIFT, EQUIVALENCE, PAIRED, REFERENCE, RELATIONS, WINDOWS

__all__ = [
    "Bounds",
    "MonitoringPlan",
    "PlanTests",
    "default_plan",
    "parse_window",
    "read_plan",
]


CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1", "log_loss", "brier", "roc_auc")
REGRESSION_METRICS = (
    "mse",
    "rmse",
    "mae",
    "median_absolute_error",
    "trimmed_mse",
    "huber",
    "pinball",
)
#: metrics that are the mean of a per-example loss, so paired tests apply directly
LOSS_METRICS = {
    "accuracy": "zero_one",
    "log_loss": "log_loss",
    "brier": "brier",
    "mse": "mse",
    "mae": "mae",
    "huber": "huber",
    "pinball": "pinball",
    "trimmed_mse": "mse",
    "rmse": "mse",
    "median_absolute_error": "mae",
    "balanced_accuracy": "zero_one",
    "f1": "zero_one",
    "roc_auc": "log_loss",
}
HIGHER_IS_BETTER = frozenset({"accuracy", "balanced_accuracy", "f1", "roc_auc"})
#: outlier-robust primaries: their tests compare per-example losses winsorised at
#: the reference's 99th percentile, so one lucky post cannot move them
ROBUST_METRICS = frozenset({"median_absolute_error", "trimmed_mse"})


class Bounds(BaseModel):
    """Acceptable values of the primary metric: outside either bound is an alert.

    Below the acceptable range (for a metric where higher is better) is
    decay; *above* it is just as suspicious -- it usually means leakage or a
    broken label feed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(
                f"bounds.lower must be <= bounds.upper; got {self.lower} > {self.upper}"
            )
        return self


if TYPE_CHECKING:  # the names are checked at run time, from the registry
    from typing import TypeAlias

    PairedTest: TypeAlias = str
    ReferenceTest: TypeAlias = str
    WindowTest: TypeAlias = str
    DriftTest: TypeAlias = str
    RelationTest: TypeAlias = str
    EquivalenceTest: TypeAlias = str
    Correction: TypeAlias = str
else:  # every Literal is built from ``_battery``'s registry: one list of names
    PairedTest = Literal[tuple(PAIRED)]
    ReferenceTest = Literal[tuple(REFERENCE)]
    WindowTest = Literal[tuple(WINDOWS)]
    DriftTest = Literal[DRIFT]
    RelationTest = Literal[RELATIONS]
    EquivalenceTest = Literal[EQUIVALENCE]
    Correction = Literal[CORRECTIONS]


class PlanTests(BaseModel):
    """Which tests the diagnosis runs: every name declared here runs, and nothing else.

    The accepted names are the keys of the registries in ``_battery``
    (``PAIRED``, ``REFERENCE``, ``WINDOWS``, ``DRIFT``, ``CORRECTIONS``).

    paired
        Advanced against baseline, and champion against candidate, on the same
        requests. The first that applies decides a promotion.
    reference
        Each model's losses now against its reference losses; the first that
        applies is the one the verdict weighs (``advanced_vs_reference``).
    windows
        The advanced model's losses across the period's windows (evidence).
    drift
        Input-drift tests: ``ks`` for numeric features, ``chi2_homogeneity``
        for categorical ones.
    relations
        Feature-target relation tests (evidence for concept drift); ``[]`` runs none.
    equivalence
        ``tost_welch``: the test behind ``healthy`` before the power target is
        reached (the decline of the advanced model's mean loss against
        ``min_effect``); ``tost_paired``: the one behind rejecting a candidate
        before the power target. Leave one out and that claim needs the power
        target (or, for ``healthy``, a decline within bounds).
    correction
        The multiple-testing correction applied within each family of tests
        (performance, drift, relations, health, promotion).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    paired: tuple[PairedTest, ...] = ("paired_bootstrap", "wilcoxon", "diebold_mariano")
    reference: tuple[ReferenceTest, ...] = ("welch", "bootstrap")
    windows: tuple[WindowTest, ...] = ("welch_anova", "kruskal")
    drift: tuple[DriftTest, ...] = ("ks", "chi2_homogeneity")
    relations: tuple[RelationTest, ...] = ("spearman_fisher_z",)
    equivalence: tuple[EquivalenceTest, ...] = ("tost_welch", "tost_paired")
    correction: Correction = "benjamini_hochberg"


_LATER_TESTS = {
    "relations": ["spearman_fisher_z"],
    "equivalence": ["tost_welch", "tost_paired"],
}


class MonitoringPlan(BaseModel):
    """What "worse" means for this model, decided before looking.

    Parameters
    ----------
    task
        ``"classification"`` or ``"regression"``.
    primary_metric, secondary_metrics
        Metric names (see ``CLASSIFICATION_METRICS`` / ``REGRESSION_METRICS``).
    bounds
        Acceptable range of the primary metric.
    alpha
        Significance level after multiple-testing correction.
    power
        The power the plan is declared for: with ``min_effect``, the reference's
        size and its per-example loss spread it fixes the labels at which an
        unchanged model is called ``healthy`` even when the equivalence test
        has not yet ruled out ``min_effect`` (``required_n``). It never holds
        back an alarm.
    min_effect
        The smallest change of the per-example loss behind the primary metric
        that matters (0/1 error for accuracy: 0.03 = three points of accuracy).
    min_drift_effect
        The smallest scale-free drift effect that matters (Wasserstein distance
        in reference IQRs for numeric features, Jensen-Shannon distance for
        categorical ones).
    min_labelled
        The hard floor: fewer labelled examples than this is
        ``insufficient_data`` whatever they show. Above it an alarm (significant
        after ``tests.correction`` AND material AND out of bounds) is raised at
        any n; ``healthy`` needs the ``1 - 2 alpha`` interval of the decline
        below ``min_effect`` (two one-sided tests) or n at ``required_n``.
    window
        Width of the windows compared across time, e.g. ``"1d"``, ``"6h"``, ``"7d"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    task: Task
    primary_metric: str
    secondary_metrics: tuple[str, ...] = ()
    bounds: Bounds = Field(default_factory=Bounds)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    min_effect: float = Field(gt=0)
    min_drift_effect: float = Field(default=0.1, gt=0)
    min_labelled: int = Field(default=200, ge=2)  # a few hundred: the hard floor
    window: str = "1d"
    tests: PlanTests = Field(default_factory=PlanTests)

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringPlan:
        known = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for name in (self.primary_metric, *self.secondary_metrics):
            if name not in known:
                raise ValueError(
                    f"metric {name!r} is not a {self.task} metric; choose from {list(known)}"
                )
        parse_window(self.window)
        return self

    @property
    def window_seconds(self) -> float:
        return parse_window(self.window)

    @property
    def higher_is_better(self) -> bool:
        return self.primary_metric in HIGHER_IS_BETTER

    @property
    def loss(self) -> str:
        """The per-example loss the paired tests compare for the primary metric."""
        return LOSS_METRICS[self.primary_metric]

    @property
    def robust(self) -> bool:
        """Whether the tests winsorise per-example losses (an outlier-robust primary metric)."""
        return self.primary_metric in ROBUST_METRICS

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        # Tests declared after plans were first hashed enter the hash only when they differ
        # from their defaults: a plan written before keeps its sha256 (and bundle version).
        for name, default in _LATER_TESTS.items():
            if data["tests"].get(name) == default:
                del data["tests"][name]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "the monitoring plan") -> MonitoringPlan:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"`{'.'.join(str(x) for x in e['loc']) or 'plan'}`: "
                f"{e['msg'].removeprefix('Value error, ')}"
                + ("" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})")
                for e in exc.errors()
            )
            raise PlanError(f"{source} is invalid: {problems}") from exc


def default_plan(
    task: str, *, reference_metric: float | None = None, min_effect: float | None = None
) -> MonitoringPlan:
    """Sensible defaults per task; bounds sit ``2 * min_effect`` around the reference value.

    Classification: accuracy (paired tests on the 0/1 error), min_effect 0.025
    (2.5 points of accuracy). Sized for a classifier near 90 % accuracy with a
    reference of about 2,000 records: at 1,500 labels a day the equivalence
    test rules out a 0.025 decline on about 8 days in 10 (the rest wait); a
    collapse of 5 x min_effect alarms from the 200-label floor on. A weaker
    model (80 %) or a smaller reference needs a larger min_effect.

    Regression: the median absolute error (one lucky outlier cannot move it, nor
    the winsorised absolute errors its tests compare), min_effect 10% of the
    reference value, which is then the median absolute error. The tests compare
    the *mean* winsorised absolute error, about 1.2 x the median for normal
    errors, so the effect is about 8 % of the tested mean; with a 1,500-record
    reference, 3,000 labels rule it out on nearly every day.
    """
    if task == "classification":
        effect = min_effect or 0.025
        lower = upper = None
        if reference_metric is not None:
            lower = round(max(0.0, reference_metric - 2 * effect), 6)
            upper = round(min(1.0, reference_metric + 2 * effect), 6)
            upper = None if upper >= 1.0 else upper
        return MonitoringPlan(
            task="classification",
            primary_metric="accuracy",
            secondary_metrics=("balanced_accuracy", "f1", "log_loss", "brier", "roc_auc"),
            bounds=Bounds(lower=lower, upper=upper),
            min_effect=effect,
        )
    if task == "regression":
        effect = min_effect or (0.1 * reference_metric if reference_metric else 1.0)
        bounds = Bounds()
        if reference_metric is not None:
            bounds = Bounds(
                lower=round(max(0.0, reference_metric - 2 * effect), 9),
                upper=round(reference_metric + 2 * effect, 9),
            )
        return MonitoringPlan(
            task="regression",
            primary_metric="median_absolute_error",
            secondary_metrics=("mae", "mse", "rmse", "trimmed_mse", "huber"),
            bounds=bounds,
            min_effect=effect,
        )
    raise PlanError(f"`task` must be 'classification' or 'regression'; got {task!r}.")


_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_window(text: str) -> float:
    """Seconds in a window such as ``"6h"`` or ``"7d"``.

    >>> parse_window("6h")
    21600.0
    """
    match = _WINDOW.match(text)
    if not match or float(match.group(1)) <= 0:
        raise PlanError(
            f"`window` must be a positive number and a unit (s, m, h, d, w) such as '1d'; "
            f"got {text!r}."
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def read_plan(path: str | os.PathLike[str]) -> MonitoringPlan:
    """Read a plan from a JSON, TOML or YAML file."""
    data = read_mapping(path, what="plan file", error=PlanError)
    return MonitoringPlan.from_mapping(data, source=f"plan file {path}")
