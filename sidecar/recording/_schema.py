"""The store's schema, versioned, with forward migrations for each SQL dialect.

Version 3 -- records in columnar segments, a slim index, labels in segments too:

``sidecar_segments``
    one row per segment: ``seq_lo`` (primary key) and ``seq_hi`` (exclusive),
    the range of record sequence numbers it covers; ``n_rows``, ``ts_min``,
    ``ts_max``, ``nbytes``; ``data``, the records as one Arrow IPC stream with
    typed columns (see ``sidecar.recording._records``).
``sidecar_records``
    the index: ``request_id`` (primary key), ``seq``, ``ts`` -- for the label
    join and for finding one record.
``sidecar_label_segments`` (version 3)
    the labels as an append-only log of Arrow segments (``batch``, the write
    order, is the primary key; ``seq_min``, ``seq_max``, ``n_rows``, ``data``):
    each holds the records' ``seq``, the label as ``kind`` (0 float, 1 int,
    2 bool, 3 text, 4 other as JSON), ``num`` and ``text``, and ``ts`` (when
    it was observed); the newest label of a record wins (see ``_label_log``).
``sidecar_writers``
    one row per recording process: what it enqueued, wrote and dropped.

Version 2 kept labels as rows of ``sidecar_labels`` (the same columns, one
row per record); the step to version 3 moves them into label segments.
Version 1 kept one row per record with the raw input, predictions and
probabilities as JSON text (``sidecar_predictions``) and labels as JSON; the
step to version 2 moves them into segments and typed labels, in the same
transaction, so a store is never half-migrated.

``sidecar_meta`` holds ``schema_version``. Migrations run on start-up, in a
transaction each, and are idempotent: a store at the latest version is left
alone, so several workers may start at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._records import COLUMNS

__all__ = ["COLUMNS", "LATEST", "migrations"]

LATEST = 3

Step = str | Callable[[Any], None]


def migrations(
    dialect: str,
    move_v1: Callable[[Any], None],
    move_v2: Callable[[Any], None] = lambda cur: None,
) -> dict[int, list[Step]]:
    """The steps that take a store from version ``v - 1`` to ``v``, per version.

    A step is a statement or a function of the cursor (``move_v1``: the
    store's own mover of version-1 rows into segments; ``move_v2``: of
    version-2 label rows into label segments).
    """
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    key = "INTEGER" if dialect == "sqlite" else "BIGINT"  # SQLite: the rowid, read in order
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
        2: _version_2(real, blob, key, move_v1),
        3: _version_3(dialect, blob, move_v2),
    }


def _version_2(real: str, blob: str, key: str, move_v1: Callable[[Any], None]) -> list[Step]:
    """Records into columnar segments beside a slim index; labels into typed columns."""
    return [
        f"""CREATE TABLE sidecar_segments (
            seq_lo BIGINT PRIMARY KEY,
            seq_hi BIGINT NOT NULL,
            n_rows INTEGER NOT NULL,
            ts_min {real} NOT NULL,
            ts_max {real} NOT NULL,
            nbytes BIGINT NOT NULL,
            data {blob} NOT NULL
        )""",
        "CREATE INDEX sidecar_segments_ts ON sidecar_segments (ts_max, ts_min)",
        f"""CREATE TABLE sidecar_records (
            request_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            ts {real} NOT NULL
        )""",
        "ALTER TABLE sidecar_labels RENAME TO sidecar_labels_v1",
        f"""CREATE TABLE sidecar_labels (
            seq {key} PRIMARY KEY,
            kind SMALLINT NOT NULL,
            num {real},
            text TEXT,
            ts {real} NOT NULL
        )""",
        move_v1,
        "DROP TABLE sidecar_labels_v1",
        "DROP TABLE sidecar_predictions",
    ]


def _version_3(dialect: str, blob: str, move_v2: Callable[[Any], None]) -> list[Step]:
    """Labels into an append-only log of segments (see ``_label_log``)."""
    return [
        f"""CREATE TABLE sidecar_label_segments (
            batch BIGINT PRIMARY KEY,
            seq_min BIGINT NOT NULL,
            seq_max BIGINT NOT NULL,
            n_rows INTEGER NOT NULL,
            data {blob} NOT NULL
        )""",
        "CREATE INDEX sidecar_label_segments_seq ON sidecar_label_segments (seq_max, seq_min)",
        move_v2,
        "DROP TABLE sidecar_labels",
        # PostgreSQL: Arrow buffers do not compress; stored out of line uncompressed, a
        # segment is read back without pglz trying to inflate each of its 2 KB chunks.
        *(
            [
                f"ALTER TABLE {t} ALTER COLUMN data SET STORAGE EXTERNAL"
                for t in ("sidecar_segments", "sidecar_label_segments")
            ]
            if dialect == "postgresql"
            else []
        ),
    ]
