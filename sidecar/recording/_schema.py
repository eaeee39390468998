"""The store's schema, versioned, with forward migrations for each SQL dialect.

Version 1 -- three tables:

``sidecar_predictions``
    one row per record served: ``request_id`` (primary key), ``ts`` (epoch
    seconds, UTC), the bundle, preprocessing, advanced, baseline and candidate
    versions, ``raw`` (the raw input as JSON, after privacy rules), each model's
    ``*_prediction`` (a JSON scalar) and ``*_proba`` (a JSON list, classifiers),
    each model's ``*_latency_ms``, and ``shadow_error``.
``sidecar_labels``
    ``request_id`` (primary key), ``label`` (a JSON scalar), ``ts``.
``sidecar_writers``
    one row per recording process: what it enqueued, wrote and dropped.

``sidecar_meta`` holds ``schema_version``. Migrations run on start-up, in a
transaction each, and are idempotent: a store at the latest version is left
alone, so several workers may start at once.
"""

from __future__ import annotations

__all__ = ["COLUMNS", "LATEST", "migrations"]

LATEST = 1

#: Column order of a prediction row, as the recorder builds it.
COLUMNS = (
    "request_id",
    "ts",
    "bundle_version",
    "preprocessing_version",
    "advanced_version",
    "baseline_version",
    "candidate_version",
    "raw",
    "advanced_prediction",
    "advanced_proba",
    "baseline_prediction",
    "baseline_proba",
    "candidate_prediction",
    "candidate_proba",
    "advanced_latency_ms",
    "baseline_latency_ms",
    "candidate_latency_ms",
    "shadow_error",
)


def migrations(dialect: str) -> dict[int, list[str]]:
    """The statements that take a store from version ``v - 1`` to ``v``, per version."""
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return {
        1: [
            f"""CREATE TABLE IF NOT EXISTS sidecar_predictions (
                request_id TEXT PRIMARY KEY,
                ts {real} NOT NULL,
                bundle_version TEXT NOT NULL,
                preprocessing_version TEXT NOT NULL,
                advanced_version TEXT NOT NULL,
                baseline_version TEXT NOT NULL,
                candidate_version TEXT,
                raw TEXT NOT NULL,
                advanced_prediction TEXT NOT NULL,
                advanced_proba TEXT,
                baseline_prediction TEXT,
                baseline_proba TEXT,
                candidate_prediction TEXT,
                candidate_proba TEXT,
                advanced_latency_ms {real},
                baseline_latency_ms {real},
                candidate_latency_ms {real},
                shadow_error TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS sidecar_predictions_ts ON sidecar_predictions (ts)",
            f"""CREATE TABLE IF NOT EXISTS sidecar_labels (
                request_id TEXT PRIMARY KEY,
                label TEXT NOT NULL,
                ts {real} NOT NULL
            )""",
            f"""CREATE TABLE IF NOT EXISTS sidecar_writers (
                writer_id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                started_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                enqueued BIGINT NOT NULL,
                written BIGINT NOT NULL,
                dropped BIGINT NOT NULL,
                failed_commits BIGINT NOT NULL
            )""",
        ],
    }
