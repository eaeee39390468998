"""Prometheus metrics of the service (BentoML serves them on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DISAGREEMENT",
    "INVALID",
    "QUEUE",
    "RECORDER",
    "RECORDS",
    "SHADOW",
    "UNKNOWN",
    "UNKNOWN_RATE",
    "UNSTORED",
]

RECORDS = Counter("sidecar_records", "Records predicted by the advanced model.")
INVALID = Counter(
    "sidecar_invalid_requests",
    "Requests the sidecar's own input checks refused with 400 (bodies too large are 413s and "
    "malformed JSON is refused by BentoML before the sidecar sees it).",
)
SHADOW = Counter(
    "sidecar_shadow_outcomes",
    "Shadow (baseline) computations by outcome: completed, error, timeout, dropped.",
    ["outcome"],
)
UNKNOWN = Counter(
    "sidecar_unknown_category_values",
    "Categorical values encoded to the default code because they were unknown.",
    ["feature"],
)
RECORDER = Counter(
    "sidecar_recorder_rows",
    "Prediction records by what the recorder did with them: written, dropped; and failed "
    "(commit attempts that failed and will be retried).",
    ["event"],
)

# Live signals that need no labels, set off the request path after each shadow
# micro-batch. Each worker reports its own value since it started; with several
# workers, Prometheus keeps the most recent one ("mostrecent").
UNKNOWN_RATE = Gauge(
    "sidecar_unknown_code_rate",
    "Share of a categorical feature's values encoded to the unknown code since the worker started.",
    ["feature"],
    multiprocess_mode="mostrecent",
)
DISAGREEMENT = Gauge(
    "sidecar_shadow_disagreement_rate",
    "Share of records where the baseline's label differs from the advanced model's.",
    multiprocess_mode="mostrecent",
)
QUEUE = Gauge(
    "sidecar_recorder_queue_rows",
    "Records waiting to be written by this worker's recorder.",
    multiprocess_mode="livesum",
)
UNSTORED = Gauge(
    "sidecar_recorder_unstored_dropped_rows",
    "Dropped records whose count the store has not taken yet (it was full, read-only or down): "
    "`sidecar status` does not show them. They are written with the next commit that succeeds "
    "and logged at ERROR at shutdown.",
    multiprocess_mode="livesum",
)
