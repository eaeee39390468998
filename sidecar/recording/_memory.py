"""An in-memory store for unit tests: the same contract, one process, nothing on disk."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ._schema import COLUMNS, LATEST
from ._store import FeedbackResult, Label, PredictionRow, WriterStats, dumps

__all__ = ["MemoryStore"]


class MemoryStore:
    """``memory://`` -- see :class:`sidecar.recording.Store`."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._predictions: dict[str, PredictionRow] = {}
        self._labels: dict[str, tuple[str, float]] = {}
        self._writers: dict[str, WriterStats] = {}
        #: Set to an exception to make every call fail with it (to test recovery).
        self.fail_with: Exception | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            from .._errors import StoreError

            raise StoreError(f"the store {self.url} failed: {self.fail_with}")

    def migrate(self) -> int:
        self._check()
        return LATEST

    def write_predictions(self, rows: Sequence[PredictionRow], writer: WriterStats | None) -> int:
        self._check()
        for row in rows:
            json.loads(row[7])  # the raw input must be valid JSON, as in a SQL store
        with self._lock:
            for row in rows:
                self._predictions.setdefault(row[0], tuple(row))
            if writer is not None:
                self._writers[writer.writer_id] = writer
        return len(rows)

    def upsert_labels(self, labels: Sequence[Label]) -> FeedbackResult:
        self._check()
        now = time.time()
        accepted: dict[str, tuple[str, float]] = {}
        unknown: list[str] = []
        with self._lock:
            for lab in labels:
                if lab.request_id in self._predictions:
                    accepted[lab.request_id] = (
                        dumps(lab.label),
                        lab.ts if lab.ts is not None else now,
                    )
                elif lab.request_id not in unknown:
                    unknown.append(lab.request_id)
            self._labels.update(accepted)
        return FeedbackResult(accepted=len(accepted), unknown_request_ids=tuple(unknown))

    def iter_joined(
        self, *, since: float | None = None, until: float | None = None, chunk_size: int = 50_000
    ) -> Iterator[list[dict[str, Any]]]:
        self._check()
        with self._lock:
            rows = sorted(self._predictions.values(), key=lambda r: (r[1], r[0]))
            labels = dict(self._labels)
        names = [*COLUMNS, "label", "label_ts"]
        selected = [
            r for r in rows if (since is None or r[1] >= since) and (until is None or r[1] < until)
        ]
        for start in range(0, len(selected), chunk_size):
            chunk = selected[start : start + chunk_size]
            yield [
                dict(zip(names, (*r, *labels.get(r[0], (None, None))), strict=True)) for r in chunk
            ]

    def count(self) -> dict[str, int]:
        self._check()
        with self._lock:
            return {"predictions": len(self._predictions), "labels": len(self._labels)}

    def writers(self) -> list[WriterStats]:
        with self._lock:
            return sorted(self._writers.values(), key=lambda w: w.started_at)

    def close(self) -> None:
        pass
