"""An in-memory store for unit tests: the same contract and reads, one process, nothing on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from ._assemble import Scratch
from ._columnar import ColumnarReads, LabelColumns, SegmentInfo, encode_label
from ._ipc import Place
from ._records import rows_to_table
from ._schema import LATEST
from ._store import FeedbackResult, Label, PredictionRow, WriterStats

__all__ = ["MemoryStore"]


class MemoryStore(ColumnarReads):
    """``memory://`` -- see :class:`sidecar.recording.Store`."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._segments: list[tuple[int, pa.Table]] = []
        self._index: dict[str, int] = {}
        self._labels: dict[str, tuple[int, int, float | None, str | None, float]] = {}
        self._writers: dict[str, WriterStats] = {}
        self._next = 0
        #: Set to an exception to make every call fail with it (to test recovery).
        self.fail_with: Exception | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            from .._errors import StoreError

            raise StoreError(f"the store {self.url} failed: {self.fail_with}")

    def migrate(self) -> int:
        self._check()
        return LATEST

    def write_batch(self, batch: pa.Table, writer: WriterStats | None) -> int:
        self._check()
        n = batch.num_rows
        ids = batch.column("request_id").to_pylist() if n else []
        with self._lock:
            base = self._next
            self._next += n
            keep = np.zeros(n, dtype=bool)
            for i, rid in enumerate(ids):
                if rid not in self._index:
                    self._index[rid] = base + i
                    keep[i] = True
            if keep.any():
                seq = pa.array(np.arange(base, base + n, dtype=np.int64))
                table = batch.append_column("seq", seq).filter(pa.array(keep))
                self._segments.append((base, table))
            if writer is not None:
                self._writers[writer.writer_id] = writer
        return int(n)

    def write_predictions(self, rows: Sequence[PredictionRow], writer: WriterStats | None) -> int:
        return self.write_batch(rows_to_table(rows), writer)

    def upsert_labels(self, labels: Sequence[Label]) -> FeedbackResult:
        self._check()
        now = time.time()
        accepted: dict[str, tuple[int, int, float | None, str | None, float]] = {}
        unknown: list[str] = []
        with self._lock:
            for lab in labels:
                seq = self._index.get(lab.request_id)
                if seq is not None:
                    when = lab.ts if lab.ts is not None else now
                    accepted[lab.request_id] = (seq, *encode_label(lab.label), when)
                elif lab.request_id not in unknown:
                    unknown.append(lab.request_id)
            self._labels.update(accepted)
        return FeedbackResult(accepted=len(accepted), unknown_request_ids=tuple(unknown))

    def _segment_infos(self, since: float, until: float) -> list[SegmentInfo]:
        self._check()
        with self._lock:
            segments = list(self._segments)
        return [
            SegmentInfo(lo, lo + t.num_rows, t.num_rows, t.nbytes)
            for lo, t in segments
            if _overlaps(t, since, until)
        ]

    def _scan(
        self,
        since: float,
        until: float,
        keep: Callable[[pa.Table], None],
        seqs: tuple[int, int] | None = None,
        *,
        reuse: bool = True,
        fields: Callable[[Sequence[str]], Sequence[str]] | None = None,
        scratch: Scratch | None = None,
        place: Place | None = None,
    ) -> None:
        self._check()
        with self._lock:
            segments = list(self._segments)
        lo, hi = seqs if seqs is not None else (-(2**62), 2**62)
        for s, t in segments:
            if lo <= s < hi and _overlaps(t, since, until):
                keep(t)

    def _label_columns(self, seq_lo: int, seq_hi: int) -> LabelColumns:
        with self._lock:
            rows = [v for v in self._labels.values() if seq_lo <= v[0] < seq_hi]
        return LabelColumns.from_rows(rows)

    def count(self) -> dict[str, int]:
        self._check()
        with self._lock:
            return {"predictions": len(self._index), "labels": len(self._labels)}

    def writers(self) -> list[WriterStats]:
        with self._lock:
            return sorted(self._writers.values(), key=lambda w: w.started_at)

    def close(self) -> None:
        pass


def _overlaps(table: pa.Table, since: float, until: float) -> bool:
    ts = table.column("ts").to_numpy()
    return bool(ts.size) and float(ts.max()) >= since and float(ts.min()) < until
