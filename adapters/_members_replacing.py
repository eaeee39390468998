"""Replacing members: score them on recent data, choose ``k``, fill the freed slots.

The worst ``k`` members on the validation part (the latest rows before the
holdout) are dropped. New members trained on the train part fill their slots
while ``k`` is chosen on the validation part; once ``k`` is chosen, the new
members are trained again on train and validation together -- the most
recent rows the adapter may learn from -- unless ``final_fit=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import sidecar
from sidecar.monitoring import per_example_loss

from ._base import Progress, TrainingData, higher_is_better, score
from ._members_families import (
    OOB,
    Family,
    FloatArray,
    check_classes,
    fresh_pool,
    member_names,
    onehot,
    pool_candidate,
    refit,
    slot_candidate,
)

__all__ = ["Choice", "better", "replace"]


@dataclass(frozen=True)
class Choice:
    """The ``k`` chosen on the validation part, its score, the champion's, and every ``k`` tried."""

    k: int
    score: float
    own: float
    worst: list[int]
    search: list[dict[str, Any]]


def better(value: float, best: float, higher: bool) -> bool:
    """Strictly better (ties keep the smaller, cheaper ``k``)."""
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if higher else value < best


def _member_losses(outputs: Sequence[FloatArray], data: TrainingData, loss: str) -> FloatArray:
    """Each member's mean loss on the validation part (higher: worse)."""
    if data.task == "classification":
        truth = onehot(data.c_val, data.n_classes)
        return np.asarray([float(np.mean(np.sum((o - truth) ** 2, axis=1))) for o in outputs])
    return np.asarray([float(np.mean(per_example_loss(loss, data.c_val, o))) for o in outputs])


def _score_outputs(combined: FloatArray, data: TrainingData, metric: str, soft: bool) -> float:
    if data.task == "regression":
        return score(metric, data, data.c_val, combined, None)
    pred = np.argmax(combined, axis=1)
    return score(metric, data, data.c_val, pred, combined if soft else None)


def _max_new(n: int, max_new: int | None, k_max: int) -> int:
    if max_new is None:
        max_new = max(min(n, 24), n // 8)
    if isinstance(max_new, bool) or not isinstance(max_new, int | np.integer) or max_new < 1:
        raise sidecar.AdapterError(f"`max_new` must be a positive integer; got {max_new!r}.")
    return int(min(max_new, k_max))


def _choose(
    family: Family,
    data: TrainingData,
    old: list[FloatArray],
    worst: list[int],
    new_out: Any,
    ks: list[int],
    metric: str,
    m: int,
) -> Choice:
    """Score every ``k``: the worst ``k`` slots take new outputs.

    A pool (``m`` > 0 distinct new members) fills slot j of the worst ``k``
    with ``new_out[j % min(k, m)]``; slots (``m == 0``) take ``new_out[slot]``.
    """
    higher = higher_is_better(metric)
    own = _score_outputs(family.combine(old), data, metric, family.soft)
    search: list[dict[str, Any]] = [{"k": 0, "score": own, "current": True, "chosen": False}]
    best: tuple[float, int] | None = None
    for k in ks:
        mixed = list(old)
        for j, slot in enumerate(worst[:k]):
            mixed[slot] = new_out[j % min(k, m)] if m else new_out[slot]
        value = _score_outputs(family.combine(mixed), data, metric, family.soft)
        entry: dict[str, Any] = {"k": k, "score": value, "chosen": False}
        if m:
            entry["new_members"] = min(k, m)
        search.append(entry)
        if best is None or better(value, best[0], higher):
            best = (value, k)
    assert best is not None
    next(s for s in search if s["k"] == best[1] and not s.get("current"))["chosen"] = True
    return Choice(k=best[1], score=best[0], own=own, worst=worst, search=search)


def replace(
    family: Family,
    bundle: sidecar.Bundle,
    data: TrainingData,
    X_train: FloatArray,
    X_val: FloatArray,
    ks: list[int],
    metric: str,
    max_new: int | None,
    step: Progress,
    seed: int,
    notes: list[str],
    final_fit: bool = True,
) -> tuple[Any, str, dict[str, Any], list[dict[str, Any]]]:
    """The candidate ensemble, its summary, what changed, and every ``k`` tried."""
    step("scoring members on recent data", 0.05)
    old = family.outputs(X_val)
    losses = _member_losses(old, data, bundle.plan.loss)
    worst = [int(i) for i in np.argsort(-losses, kind="stable")]
    step("training new members", 0.15)
    m, fresh, refits = 0, None, {}
    if family.pool:
        m = _max_new(family.n, max_new, max(ks))
        fresh = fresh_pool(family.estimator, X_train, data.y_train, m, seed, notes)
        X32 = np.ascontiguousarray(X_val, dtype=np.float32)
        features = getattr(fresh, "estimators_features_", [None] * m)
        new_out: Any = [
            family.output(a, f, X_val, X32)
            for a, f in zip(fresh.estimators_, features, strict=True)
        ]
    else:
        refits = {
            s: refit(family, s, X_train, data.c_train, data.y_train, notes)
            for s in worst[: max(ks)]
        }
        new_out = {s: family.output(a, None, X_val, None) for s, a in refits.items()}
    step("choosing k on the validation part", 0.6)
    choice = _choose(family, data, old, worst, new_out, ks, metric, m)
    step("building the candidate", 0.75)
    X_fit = np.concatenate([X_train, X_val]) if final_fit else X_train
    if family.pool:
        y_fit = data.y_fit if final_fit else data.y_train
        new, summary, changes = _pool_result(
            family, choice, X_fit, y_fit, m, seed, notes, final_fit, fresh
        )
    else:
        new, summary, changes = _slot_result(family, choice, data, X_fit, notes, final_fit, refits)
    summary += f" Chosen on validation {metric}: {choice.score:.4g} (champion {choice.own:.4g})."
    if bundle.task == "classification":
        check_classes(family.estimator, new)
    return new, summary, changes, choice.search


def _pool_result(
    family: Family,
    choice: Choice,
    X_fit: FloatArray,
    y_fit: np.ndarray,
    m: int,
    seed: int,
    notes: list[str],
    final_fit: bool,
    fresh: Any,
) -> tuple[Any, str, dict[str, Any]]:
    k, n = choice.k, family.n
    m_k = min(k, m)
    if final_fit:  # the chosen number of new members, trained again on train + validation
        fresh = fresh_pool(family.estimator, X_fit, y_fit, m_k, seed, notes)
    members = list(fresh.estimators_)
    features = list(getattr(fresh, "estimators_features_", [None] * len(members)))
    slots = list(family.members)
    slot_features = list(family.features) if family.features is not None else None
    for j, slot in enumerate(choice.worst[:k]):
        slots[slot] = members[j % m_k]
        if slot_features is not None:
            slot_features[slot] = features[j % m_k]
    new = pool_candidate(family.estimator, slots, slot_features)
    per = [k // m_k + (1 if j < k % m_k else 0) for j in range(m_k)]
    changes: dict[str, Any] = {
        "replaced": k,
        "n_estimators": n,
        "dropped_slots": sorted(choice.worst[:k]),
        "new_members": m_k,
        "slots_per_new_member": {"min": min(per), "max": max(per)},
        "new_members_trained_on": len(X_fit),
        "final_fit": final_fit,
    }
    if any(hasattr(family.estimator, a) for a in OOB):
        changes["oob_score"] = "dropped (it described the old members on the old data)"
    summary = (
        f"dropped the {k} of {n} members of the {type(family.estimator).__name__} that scored "
        f"worst on recent data and filled their slots with {m_k} new members trained on the "
        f"{len(X_fit)} most recent rows before the holdout"
        + (f" (each holding {min(per)}-{max(per)} slots)" if m_k < k else "")
        + f"; the new members carry {k / n:.0%} of the vote."
    )
    return new, summary, changes


def _slot_result(
    family: Family,
    choice: Choice,
    data: TrainingData,
    X_fit: FloatArray,
    notes: list[str],
    final_fit: bool,
    refits: dict[int, Any],
) -> tuple[Any, str, dict[str, Any]]:
    k, n = choice.k, family.n
    dropped = sorted(choice.worst[:k])
    members = list(family.members)
    for slot in choice.worst[:k]:
        members[slot] = (
            refit(family, slot, X_fit, data.c_fit, data.y_fit, notes) if final_fit else refits[slot]
        )
    new = slot_candidate(family.estimator, members)
    names = member_names(family.estimator)
    changes = {
        "replaced": k,
        "members": n,
        "refitted": [names[s] for s in dropped],
        "refitted_on": len(X_fit),
        "final_fit": final_fit,
    }
    summary = (
        f"refitted the {k} of {n} members of the {type(family.estimator).__name__} that scored "
        f"worst on recent data ({', '.join(names[s] for s in dropped)}) on {len(X_fit)} recent "
        "rows; the other members and the weights are unchanged."
    )
    return new, summary, changes
