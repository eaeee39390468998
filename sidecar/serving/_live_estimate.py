"""The primary metric estimated live, before the labels arrive: Prometheus gauges.

Confidence-based performance estimation (CBPE, see
``sidecar.monitoring.estimate_performance``) on the most recent served records.
:func:`attach_live_estimate` taps the shadow stream of a served bundle (the
advanced model's probabilities, already computed for the response; hooked in
``serving._wiring.pipeline_for``, so threads and shadow processes alike): each shadow
micro-batch copies its rows into a ring buffer of the last ``window`` records,
which costs microseconds. A thread of its own recomputes the estimate every
``every`` seconds when new rows came (label draws from the calibrated
probabilities, at most ``window`` rows by ``draws`` draws) and sets:

=====================================  ===============================================
``sidecar_estimated_metric``           the estimate, label ``metric`` (the plan's primary
                                       metric, or accuracy when that needs labels)
``sidecar_estimated_metric_low``       its interval at the plan's ``alpha``
``sidecar_estimated_metric_high``
``sidecar_estimated_metric_records``   how many recent records it was estimated on
``sidecar_reference_metric``           the same metric on the bundle's reference
``sidecar_metric_bound``               the plan's acceptable bounds (``side``: lower/upper)
=====================================  ===============================================

Each worker (or its shadow process) estimates on the records it served;
Prometheus keeps the most recent value. Regressors and models without
probabilities get no estimate (the gauges stay absent).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
from prometheus_client import Gauge

__all__ = ["LiveEstimate", "attach_live_estimate"]

logger = logging.getLogger("sidecar.serving")

ESTIMATED = Gauge(
    "sidecar_estimated_metric",
    "The primary metric estimated from the advanced model's calibrated probabilities on the most "
    "recent records, before their labels arrive (CBPE).",
    ["metric"],
    multiprocess_mode="mostrecent",
)
ESTIMATED_LOW = Gauge(
    "sidecar_estimated_metric_low",
    "Lower end of the estimate's interval (at the plan's alpha).",
    ["metric"],
    multiprocess_mode="mostrecent",
)
ESTIMATED_HIGH = Gauge(
    "sidecar_estimated_metric_high",
    "Upper end of the estimate's interval (at the plan's alpha).",
    ["metric"],
    multiprocess_mode="mostrecent",
)
ESTIMATED_RECORDS = Gauge(
    "sidecar_estimated_metric_records",
    "Records the live estimate was computed on (the most recent ones).",
    ["metric"],
    multiprocess_mode="mostrecent",
)
REFERENCE = Gauge(
    "sidecar_reference_metric",
    "The estimated metric as the advanced model scored it on the bundle's labelled reference.",
    ["metric"],
    multiprocess_mode="mostrecent",
)
BOUND = Gauge(
    "sidecar_metric_bound",
    "The monitoring plan's acceptable bounds of the primary metric.",
    ["metric", "side"],
    multiprocess_mode="mostrecent",
)


class LiveEstimate:
    """A ring buffer of recent probabilities and the thread that turns it into the gauges."""

    def __init__(
        self, bundle: Any, *, window: int = 2000, every: float = 10.0, draws: int = 100
    ) -> None:
        from ..monitoring._estimate import ESTIMABLE

        plan = bundle.plan
        self.metric = plan.primary_metric if plan.primary_metric in ESTIMABLE else "accuracy"
        self._bundle = bundle
        self._classes = list(bundle.reference.summary.get("classes") or [])
        self._rows = np.zeros((window, len(self._classes)))
        self._filled = 0
        self._next = 0
        self._added = 0
        self._every, self._draws = every, draws
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.updates = 0
        self._thread = threading.Thread(target=self._run, name="sidecar-estimate", daemon=True)
        self._thread.start()

    def tap(self, items: list[Any]) -> None:
        """Copy the advanced probabilities of a shadow micro-batch into the buffer."""
        width = self._rows.shape[1]
        probas = [
            proba
            for proba in (item.prediction.probabilities for item in items)
            if proba is not None and proba.shape[1] == width
        ]
        if not probas:
            return
        # One copy for the micro-batch (on the shadow thread, taken from the GIL the
        # serving thread needs): the buffer keeps the last ``window`` of them.
        rows = probas[0] if len(probas) == 1 else np.concatenate(probas)
        with self._lock:
            self._put(rows[-len(self._rows) :])

    def _put(self, proba: np.ndarray) -> None:
        n, size = len(proba), len(self._rows)
        end = self._next + n
        if end <= size:
            self._rows[self._next : end] = proba
        else:
            split = size - self._next
            self._rows[self._next :] = proba[:split]
            self._rows[: n - split] = proba[split:]
        self._next = end % size
        self._filled = min(size, self._filled + n)
        self._added += n

    def close(self) -> None:
        self._stop.set()

    def _calibration(self) -> Any:
        from ..monitoring._estimate import Calibration
        from ..monitoring._metrics import METRICS

        arrays = self._bundle.reference.arrays
        ref_p = arrays["advanced:probabilities"]
        cal = Calibration(
            self.metric,
            reference_proba=ref_p,
            reference_labels=arrays["y"],
            classes=np.asarray(self._classes),
            alpha=self._bundle.plan.alpha,
        )
        y = np.asarray(arrays["y"])
        REFERENCE.labels(self.metric).set(
            float(METRICS[self.metric].function(y, None, ref_p, np.asarray(self._classes)))
        )
        bounds = self._bundle.plan.bounds
        if self.metric == self._bundle.plan.primary_metric:
            for side, value in (("lower", bounds.lower), ("upper", bounds.upper)):
                if value is not None:
                    BOUND.labels(self.metric, side).set(value)
        return cal

    def _run(self) -> None:
        try:
            cal = self._calibration()
        except Exception:  # a reference without probabilities or labels: no gauge
            logger.exception("no live performance estimate")
            return
        rng = np.random.default_rng(0)
        seen = 0
        while not self._stop.wait(self._every if seen else 0.5):
            with self._lock:
                if self._added == seen:
                    continue
                seen = self._added
                rows = self._rows[: self._filled].copy()
            try:
                started = time.perf_counter()
                estimate, low, high = cal.interval(rows, rng, self._draws, len(rows), pause=_let_go)
            except ValueError:  # undefined on every draw (say roc_auc on one class)
                continue
            ESTIMATED.labels(self.metric).set(estimate)
            ESTIMATED_LOW.labels(self.metric).set(low)
            ESTIMATED_HIGH.labels(self.metric).set(high)
            ESTIMATED_RECORDS.labels(self.metric).set(len(rows))
            self.updates += 1
            logger.debug(
                "estimated %s %.4f [%.4f, %.4f] on %d records in %.1f ms",
                self.metric,
                estimate,
                low,
                high,
                len(rows),
                (time.perf_counter() - started) * 1000,
            )


def _let_go() -> None:
    """Hand the GIL to the request threads between two small pieces of the estimate.

    One window's estimate is ~20 ms of Python and NumPy; held in one go, a
    request arriving meanwhile waits for it (the interpreter's switch interval
    is 5 ms, and it is often not honoured inside long NumPy calls). In pieces of
    a fraction of a millisecond with a yield between them, requests go first.
    """
    time.sleep(0)


_CURRENT: list[LiveEstimate] = []  # this process's estimate (a promotion replaces it)


def attach_live_estimate(pipeline: Any, **options: Any) -> LiveEstimate | None:
    """Tap a shadow pipeline's micro-batches for the live estimate gauges (classifiers only).

    The tap runs on the shadow thread before the pipeline's own work; it can
    neither fail nor slow a response. One estimate per process: a pipeline
    built for a promoted bundle replaces the previous one's.
    """
    bundle = pipeline.bundle
    arrays = getattr(bundle.reference, "arrays", {})
    if bundle.task != "classification" or "advanced:probabilities" not in arrays:
        return None
    live = LiveEstimate(bundle, **options)
    while _CURRENT:
        _CURRENT.pop().close()
    _CURRENT.append(live)
    handler = pipeline.runner.handler

    def tapped(items: list[Any]) -> object:
        try:
            live.tap(items)
        except Exception:  # never in the way of the shadow work
            logger.exception("the live estimate's tap failed")
        return handler(items)

    pipeline.runner.handler = tapped
    return live
