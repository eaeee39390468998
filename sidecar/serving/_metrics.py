"""Prometheus metrics of the service (BentoML serves them on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["INVALID", "RECORDER", "RECORDS", "SHADOW", "UNKNOWN"]

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
