"""The registry of tests a plan may declare, the one correction step, and the batteries.

Every test name a :class:`~sidecar.monitoring.MonitoringPlan` accepts is a key
of one of the registries below (the plan's ``Literal`` types are built from
them), and every test the diagnosis or the promotion decision runs is looked
up here by the name the plan declared: what the plan says is what runs.

- ``PAIRED``: two models on the same requests (per-request loss ``a - b``).
- ``REFERENCE``: one model's losses now against its reference losses.
- ``WINDOWS``: one model's losses across the time windows of a period.
- ``DRIFT``: the names of the input-drift tests (run in ``_diagnosis``).
- ``CORRECTIONS``: the multiple-testing corrections; :func:`correct` is the
  one step every family of tests (performance, drift, relations, health,
  promotion) goes through.

A runner returns ``None`` when its test does not apply to the data (McNemar
on a continuous loss, a bootstrap past ``BOOTSTRAP_MAX_N`` pairs, ...); the
caller lists such skips in its notes, so nothing declared vanishes silently.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> a, b = rng.exponential(1.0, 300), rng.exponential(1.0, 300)
>>> done = paired_battery(("wilcoxon", "mcnemar"), a, b, loss="mae", ts=np.arange(300.0))
>>> [t.name for t in done.results], done.skipped
(['paired:wilcoxon'], ('mcnemar',))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from ._results import DriftResult, TestResult
from ._stats import (
    anova_oneway,
    benjamini_hochberg,
    bootstrap_mean_diff,
    diebold_mariano,
    f_test_variances,
    kruskal,
    mann_whitney,
    mcnemar_exact,
    paired_bootstrap,
    welch_anova,
    welch_t,
    wilcoxon_signed_rank,
)

__all__ = [
    "BOOTSTRAP_MAX_N",
    "CORRECTIONS",
    "DRIFT",
    "EQUIVALENCE",
    "PAIRED",
    "REFERENCE",
    "RELATIONS",
    "WINDOWS",
    "Battery",
    "adjust",
    "correct",
    "paired_battery",
    "reference_battery",
    "registry_names",
    "window_battery",
]

FloatArray = npt.NDArray[np.float64]

#: Above this many labelled pairs the bootstrap adds nothing the CLT does not
#: give, and costs n * n_boot: the bootstrap tests are skipped (and say so).
BOOTSTRAP_MAX_N = 50_000

PairedRunner = Callable[[FloatArray, FloatArray, str, FloatArray, int], TestResult | None]
ReferenceRunner = Callable[[FloatArray, FloatArray, int], TestResult | None]
WindowRunner = Callable[[Sequence[FloatArray]], TestResult | None]


# --------------------------------------------------------------------------- paired


def _mcnemar(
    a: FloatArray, b: FloatArray, loss: str, ts: FloatArray, seed: int
) -> TestResult | None:
    if loss != "zero_one":
        return None  # only for 0/1 losses
    return mcnemar_exact(a == 0, b == 0)


def _paired_bootstrap(
    a: FloatArray, b: FloatArray, loss: str, ts: FloatArray, seed: int
) -> TestResult | None:
    return paired_bootstrap(a, b, seed=seed) if a.size <= BOOTSTRAP_MAX_N else None


def _wilcoxon(
    a: FloatArray, b: FloatArray, loss: str, ts: FloatArray, seed: int
) -> TestResult | None:
    return None if np.array_equal(a, b) else wilcoxon_signed_rank(a, b)


def _diebold_mariano(
    a: FloatArray, b: FloatArray, loss: str, ts: FloatArray, seed: int
) -> TestResult | None:
    if a.size < 10:
        return None
    order = np.argsort(ts, kind="stable")
    return diebold_mariano(a[order], b[order])


#: two models on the same requests: ``effect`` > 0 means the first has the larger loss
PAIRED: Mapping[str, PairedRunner] = {
    "mcnemar": _mcnemar,
    "paired_bootstrap": _paired_bootstrap,
    "wilcoxon": _wilcoxon,
    "diebold_mariano": _diebold_mariano,
}


# --------------------------------------------------------------------------- reference


def _welch(ref: FloatArray, now: FloatArray, seed: int) -> TestResult | None:
    return welch_t(ref, now) if ref.size >= 2 and now.size >= 2 else None


def _mann_whitney(ref: FloatArray, now: FloatArray, seed: int) -> TestResult | None:
    return mann_whitney(ref, now)


def _bootstrap(ref: FloatArray, now: FloatArray, seed: int) -> TestResult | None:
    if ref.size + now.size > 2 * BOOTSTRAP_MAX_N:
        return None
    return bootstrap_mean_diff(ref, now, seed=seed)


#: a model's losses now against its reference: ``effect`` > 0 means worse now
REFERENCE: Mapping[str, ReferenceRunner] = {
    "welch": _welch,
    "mann_whitney": _mann_whitney,
    "bootstrap": _bootstrap,
}


# --------------------------------------------------------------------------- windows


def _anova(groups: Sequence[FloatArray]) -> TestResult | None:
    return anova_oneway(groups) if all(g.size >= 2 for g in groups) else None


def _welch_anova(groups: Sequence[FloatArray]) -> TestResult | None:
    return welch_anova(groups) if all(g.size >= 2 for g in groups) else None


def _kruskal(groups: Sequence[FloatArray]) -> TestResult | None:
    return kruskal(groups)


def _f_variance(groups: Sequence[FloatArray]) -> TestResult | None:
    """The last window's loss variance against the first's (positive: it spreads more)."""
    first, last = groups[0], groups[-1]
    return f_test_variances(last, first) if first.size >= 2 and last.size >= 2 else None


#: one model's losses across the windows of a period, the first window as reference
WINDOWS: Mapping[str, WindowRunner] = {
    "anova": _anova,
    "welch_anova": _welch_anova,
    "kruskal": _kruskal,
    "f_variance": _f_variance,
}

#: input-drift tests: numeric features (KS) and categorical ones (chi-square)
DRIFT: tuple[str, ...] = ("ks", "chi2_homogeneity")

#: feature-target relation tests: the change of each numeric feature's Spearman
#: correlation with the target, now against the reference (Fisher z)
RELATIONS: tuple[str, ...] = ("spearman_fisher_z",)

#: equivalence tests (two one-sided tests at the plan's alpha against ``min_effect``):
#: ``tost_welch`` for `healthy` (the advanced model's decline, now - reference) and
#: ``tost_paired`` for rejecting a candidate (its paired improvement over the champion)
EQUIVALENCE: tuple[str, ...] = ("tost_welch", "tost_paired")

#: the multiple-testing corrections a plan may declare
CORRECTIONS: tuple[str, ...] = ("benjamini_hochberg", "bonferroni", "none")


# --------------------------------------------------------------------------- correction

R = TypeVar("R", TestResult, DriftResult)


def adjust(p_values: npt.ArrayLike, method: str) -> FloatArray:
    """Adjusted p-values by ``method`` (a name in ``CORRECTIONS``); NaN stays NaN, uncounted.

    >>> adjust([0.01, 0.04, float("nan")], "bonferroni").tolist()
    [0.02, 0.08, nan]
    >>> adjust([0.01, 0.04], "none").tolist()
    [0.01, 0.04]
    """
    if method not in CORRECTIONS:
        raise ValueError(f"`correction` must be one of {list(CORRECTIONS)}; got {method!r}.")
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0 or method == "none":
        return p.copy()
    if method == "benjamini_hochberg":
        return benjamini_hochberg(p)
    known = ~np.isnan(p)
    return np.where(known, np.minimum(1.0, p * int(known.sum())), np.nan)


def correct(results: Sequence[R], method: str) -> list[R]:
    """Copies of ``results`` with ``p_adjusted`` filled in by ``method``, as one family."""
    adjusted = adjust([r.p_value for r in results], method)
    return [replace(r, p_adjusted=float(p)) for r, p in zip(results, adjusted, strict=True)]


# --------------------------------------------------------------------------- batteries


@dataclass(frozen=True)
class Battery:
    """The results of the tests a plan declared, and the declared ones that did not apply."""

    results: tuple[TestResult, ...]
    skipped: tuple[str, ...]


def _named(t: TestResult, name: str, what: str) -> TestResult:
    return replace(t, name=name, detail={**t.detail, "test": t.name, "what": what})


def paired_battery(
    declared: Sequence[str],
    loss_a: FloatArray,
    loss_b: FloatArray,
    *,
    loss: str,
    ts: FloatArray,
    seed: int = 0,
    what: str = "a - b loss on the same requests (> 0: a is worse)",
) -> Battery:
    """Run the declared paired tests on per-request losses ``a - b``, each named ``paired:<name>``.

    Uncorrected: the caller corrects them together with the rest of its family.
    """
    results: list[TestResult] = []
    skipped: list[str] = []
    for name in declared:
        t = PAIRED[name](loss_a, loss_b, loss, ts, seed)
        if t is None:
            skipped.append(name)
        else:
            results.append(_named(t, f"paired:{name}", what))
    return Battery(tuple(results), tuple(skipped))


def reference_battery(
    declared: Sequence[str],
    ref: FloatArray,
    now: FloatArray,
    *,
    name: str,
    what: str,
    seed: int = 0,
) -> Battery:
    """The declared reference tests; the first that applies is named ``name`` (it decides),
    the others ``name:<test>``."""
    results: list[TestResult] = []
    skipped: list[str] = []
    for test in declared:
        t = REFERENCE[test](ref, now, seed)
        if t is None:
            skipped.append(test)
            continue
        results.append(_named(t, name if not results else f"{name}:{test}", what))
    return Battery(tuple(results), tuple(skipped))


def window_battery(declared: Sequence[str], groups: Sequence[FloatArray], *, what: str) -> Battery:
    """The declared across-window tests, each named ``windows:<name>``."""
    results: list[TestResult] = []
    skipped: list[str] = []
    for name in declared:
        t = WINDOWS[name](groups) if len(groups) >= 2 else None
        if t is None:
            skipped.append(name)
        else:
            results.append(_named(t, f"windows:{name}", what))
    return Battery(tuple(results), tuple(skipped))


def registry_names() -> dict[str, tuple[str, ...]]:
    """Every registered name per family (what a plan's ``tests`` may declare)."""
    return {
        "paired": tuple(PAIRED),
        "reference": tuple(REFERENCE),
        "windows": tuple(WINDOWS),
        "drift": DRIFT,
        "relations": RELATIONS,
        "equivalence": EQUIVALENCE,
        "correction": CORRECTIONS,
    }
