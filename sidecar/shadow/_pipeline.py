"""The shadow stage of one bundle: baseline, candidate, recorder sink and hooks, wired once.

A :class:`ShadowPipeline` is built with every collaborator it uses and never
changed afterwards: to record somewhere else, or to run another candidate,
build another one (the old one finishes what it was given). ``submit`` is the
request path's only contact with it; the rest runs on its runner's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import InputError
from ..recording._records import ServedBatch
from ..runtimes import ModelOutput
from ._items import RecordSink, ShadowItem, ShadowResult
from ._runner import ShadowCounters, ShadowRunner

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import RecordPolicy

__all__ = ["ShadowPipeline", "check_candidate"]


def check_candidate(champion: Bundle, candidate: Bundle) -> None:
    """Refuse a ``candidate`` that cannot run in shadow beside ``champion``.

    It must share the champion's preprocessing (same sha256), task and classes:
    it sees the champion's features, and its predictions are compared with the
    champion's on the same requests.
    """
    mine = champion.manifest["parts"]["preprocessing"]["sha256"]
    theirs = candidate.manifest["parts"]["preprocessing"]["sha256"]
    if candidate.task != champion.task:
        raise InputError(f"the candidate's task must be {champion.task!r}; got {candidate.task!r}.")
    if theirs != mine:
        raise InputError(
            "the candidate must use the champion's preprocessing (sha256 "
            f"{mine[:12]}...); got preprocessing {theirs[:12]}..."
        )
    want, got = list(champion.advanced.classes or []), list(candidate.advanced.classes or [])
    if got != want:
        raise InputError(f"the candidate must know the champion's classes {want}; got {got}.")


class ShadowPipeline:
    """Run ``bundle``'s baseline (and a ``candidate``'s advanced model) on answered requests.

    Parameters
    ----------
    bundle
        The bundle whose requests come here; its baseline runs, its counts
        (``bundle.stats``) are kept, its manifest names the versions recorded.
    recorder
        Where the store rows of each micro-batch go (``None``: not recorded).
    policy
        Raw fields to drop or hash before they are recorded.
    candidate
        A retrained bundle whose advanced model runs in shadow beside the
        champion; check it with :func:`check_candidate` first.
    observers
        Called with this pipeline after each micro-batch, on the shadow
        thread (the service sets its live gauges there).
    on_outcome
        Called with ``"completed"``, ``"error"``, ``"timeout"`` or ``"dropped"``
        for every shadow call; must not raise.
    timeout
        Seconds a shadow model call may take before it counts as a timeout.
    counters
        Counts to go on from (a bundle rewired to another recorder keeps its own).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        recorder: RecordSink | None = None,
        policy: RecordPolicy | None = None,
        candidate: Bundle | None = None,
        observers: Iterable[Callable[[ShadowPipeline], None]] = (),
        on_outcome: Callable[[str], None] | None = None,
        timeout: float = 1.0,
        counters: ShadowCounters | None = None,
    ) -> None:
        self.bundle = bundle
        self.recorder = recorder
        self.policy = policy if policy is not None and policy.active else None
        self.candidate = candidate
        self.observers = tuple(observers)
        self.runner = ShadowRunner(
            handler=self.run, on_outcome=on_outcome, counters=counters, timeout=timeout
        )

    def submit(self, item: ShadowItem) -> bool:
        """Queue ``item`` for the shadow thread; never blocks (``False``: dropped, counted)."""
        return self.runner.submit(item)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted was run and handed to the recorder."""
        return self.runner.drain(timeout)

    def run(self, items: Sequence[ShadowItem], timeout: float | None = None) -> list[ShadowResult]:
        """Run the shadow model(s) once over many requests, then record them."""
        X = items[0].features if len(items) == 1 else np.vstack([it.features for it in items])
        runner = self.runner
        baseline = self.bundle.baseline
        start = time.perf_counter()
        inline = getattr(baseline, "bounded", False) is True  # see ShadowRunner.call
        out, error = runner.call(lambda: baseline.infer(X), timeout, inline=inline)
        ms = (time.perf_counter() - start) * 1000.0
        candidate = self.candidate
        cand_out: ModelOutput | None = None
        cand_ms = None
        if candidate is not None:
            advanced = candidate.advanced
            start = time.perf_counter()
            cand_out, cand_error = runner.call(lambda: advanced.infer(X), timeout)
            cand_ms = (time.perf_counter() - start) * 1000.0
            if cand_error is not None:
                error = "; ".join(e for e in (error, f"candidate: {cand_error}") if e)
        finite = out is None or _finite_output(out)  # one check for the whole micro-batch
        results: list[ShadowResult] = []
        lo = 0
        for item in items:
            hi = lo + len(item.prediction)
            part = _slice(out, lo, hi)
            item_error = error
            if not finite and part is not None and not _finite_output(part):
                # Inputs beyond what the baseline can compute with (say +-1.7e308 through
                # its scaler): NaN is no answer, so it is an error, counted as one.
                part, item_error = None, "the baseline's output is not finite for these inputs"
                runner.count("error")
            share = ms * (hi - lo) / len(X)  # the batch's shadow time, shared by its records
            results.append(ShadowResult(part, item_error, share))
            lo = hi
        self._compare(items, out if finite else None, results)
        if self.recorder is not None:
            cand = None if candidate is None else (candidate.version, cand_out, cand_ms)
            for batch in self._batches(items, results, X, out, cand):
                self.recorder.enqueue(batch)
        for observe in self.observers:
            observe(self)
        return results

    def _batches(
        self,
        items: Sequence[ShadowItem],
        results: Sequence[ShadowResult],
        X: np.ndarray,
        base: ModelOutput | None,
        cand: tuple[str, ModelOutput | None, float | None] | None,
    ) -> list[ServedBatch]:
        """The micro-batch for the recorder: one batch per run of items recorded alike."""
        keys = [_key(item, result) for item, result in zip(items, results, strict=True)]
        if keys.count(keys[0]) == len(keys):  # the usual case: one version, one outcome
            return [self._batch(items, results, X, base, cand, 0)]
        out: list[ServedBatch] = []
        lo = start = 0
        for i in range(1, len(items) + 1):
            if i == len(items) or keys[i] != keys[start]:
                out.append(self._batch(items[start:i], results[start:i], X, base, cand, lo))
                lo += sum(len(it) for it in items[start:i])
                start = i
        return out

    def _batch(
        self,
        items: Sequence[ShadowItem],
        results: Sequence[ShadowResult],
        X: np.ndarray,
        base: ModelOutput | None,
        cand: tuple[str, ModelOutput | None, float | None] | None,
        lo: int,
    ) -> ServedBatch:
        """Items ``lo``... of the micro-batch, answered by the same versions, as one batch.

        Built with one NumPy call per column, not one per item: this runs on
        the shadow thread, whose every microsecond is taken from the serving
        thread's GIL.
        """
        preds = [it.prediction for it in items]
        sizes = [len(p) for p in preds]
        hi = lo + sum(sizes)
        ones = hi - lo == len(preds)  # one record per request: nothing to repeat

        def per_record(values: list[float | None]) -> np.ndarray:
            arr = np.array(values, dtype=np.float64)
            return arr if ones else np.repeat(arr, sizes)

        first = preds[0]
        records = [r for it in items for r in it.records]
        if all(it.timestamps is None for it in items):
            ts = per_record([p.ts for p in preds])
        else:
            ts = np.concatenate(
                [
                    np.broadcast_to(
                        np.asarray(
                            p.ts if it.timestamps is None else it.timestamps, dtype=np.float64
                        ),
                        (len(p),),
                    )
                    for p, it in zip(preds, items, strict=True)
                ]
            )
        cand_version, cand_out, cand_ms = cand if cand is not None else (None, None, None)
        base_part = None if results[0].output is None else _slice(base, lo, hi)
        cand_part = _slice(cand_out, lo, hi)
        parts = self.bundle.manifest["parts"]
        proba = [p.probabilities for p in preds]
        advanced = [p.predictions for p in preds]
        return ServedBatch(
            records,
            request_ids=[rid for p in preds for rid in p.request_ids],
            ts=ts,
            versions={
                "bundle_version": first.bundle_version,
                "preprocessing_version": first.preprocessing_version,
                "advanced_version": parts["advanced"]["version"],
                "baseline_version": parts["baseline"]["version"],
                "candidate_version": cand_version,
            },
            features=X[lo:hi],
            outputs={
                "advanced": (
                    advanced[0] if len(advanced) == 1 else np.concatenate(advanced),
                    None if proba[0] is None else _stack(proba),  # type: ignore[arg-type]
                ),
                "baseline": None if base_part is None else _pair(base_part),
                "candidate": None if cand_part is None else _pair(cand_part),
            },
            latencies={
                "advanced_latency_ms": per_record([p.latency_ms for p in preds]),
                "baseline_latency_ms": per_record([r.latency_ms for r in results]),
                # each item's share of the batch's shadow time, on each of its records
                "candidate_latency_ms": None
                if cand_ms is None
                else per_record([cand_ms * n / len(X) for n in sizes]),
            },
            error=results[0].error,
            apply=None if self.policy is None else self.policy.apply,  # by the writer
        )

    def _compare(
        self,
        items: Sequence[ShadowItem],
        out: ModelOutput | None,
        results: Sequence[ShadowResult],
    ) -> None:
        """Count the records where the baseline disagreed with the advanced model."""
        if self.bundle.task != "classification":
            return
        stats = self.bundle.stats
        if out is not None:  # every item has its part of ``out``: one comparison for all
            advanced = [it.prediction.predictions for it in items]
            mine = advanced[0] if len(advanced) == 1 else np.concatenate(advanced)
            stats.shadow_compared += len(mine)
            stats.shadow_disagreements += int(np.count_nonzero(out.predictions != mine))
            return
        for item, result in zip(items, results, strict=True):
            part = result.output
            if part is None:
                continue
            stats.shadow_compared += len(item.prediction)
            stats.shadow_disagreements += int(
                np.count_nonzero(part.predictions != item.prediction.predictions)
            )


def _key(item: ShadowItem, result: ShadowResult) -> tuple[Any, ...]:
    """Items with equal keys are recorded in one batch."""
    pred = item.prediction
    return (pred.bundle_version, pred.preprocessing_version, result.output is None, result.error)


def _stack(matrices: list[np.ndarray]) -> np.ndarray:
    return matrices[0] if len(matrices) == 1 else np.concatenate(matrices)


def _pair(out: ModelOutput) -> tuple[np.ndarray, np.ndarray | None]:
    return out.predictions, out.probabilities


def _finite_output(out: ModelOutput) -> bool:
    """Whether a model's probabilities (or a regressor's values) are all finite numbers."""
    values = out.probabilities if out.probabilities is not None else out.predictions
    if values.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(values).all())


def _slice(out: ModelOutput | None, lo: int, hi: int) -> ModelOutput | None:
    if out is None:
        return None
    proba = out.probabilities
    return ModelOutput(out.predictions[lo:hi], None if proba is None else proba[lo:hi])
