"""Writing segments: one per commit, small neighbours merged, and version-1 rows moved in.

A segment covers the half-open range ``[seq_lo, seq_hi)`` of record sequence
numbers. Light traffic commits a few records at a time, so small segments
pile up; once a *run* of them -- neighbours, each starting where the one
before ends -- adds up to :data:`SEGMENT_ROWS` records (or
:data:`MERGE_COUNT` pile up), the run is merged into one segment in the same
transaction as the commit. Only neighbours merge: a merged segment's range
never overlaps another's, so segments stay in sequence (and, as records are
served, in time) order, and a scan by ``seq_lo`` never reads a row twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ._columnar import encode_label, from_ipc, to_ipc
from ._records import COLUMNS, rows_to_table

__all__ = ["LABEL_COLUMNS", "MERGE_COUNT", "SEGMENT_ROWS", "SegmentWrites", "merge_runs"]

#: Segments smaller than this are merged once a run of neighbours adds up to it.
SEGMENT_ROWS = 50_000
#: ... or once this many neighbours pile up.
MERGE_COUNT = 256
LABEL_COLUMNS = ("seq", "kind", "num", "text", "ts")


def merge_runs(
    small: Sequence[tuple[int, int, int]], *, rows: int = SEGMENT_ROWS, count: int = MERGE_COUNT
) -> list[list[tuple[int, int, int]]]:
    """The runs of ``(seq_lo, seq_hi, n_rows)`` segments (in ``seq_lo`` order) to merge.

    A run is a stretch of neighbours (each ``seq_lo`` the ``seq_hi`` before
    it); it is merged once it holds ``rows`` records or ``count`` segments.

    >>> merge_runs([(0, 10, 10), (10, 20, 10), (30, 40, 10)], rows=20)
    [[(0, 10, 10), (10, 20, 10)]]
    >>> merge_runs([(0, 10, 10), (30, 40, 10)], rows=20)
    []
    """
    runs: list[list[tuple[int, int, int]]] = []
    for seg in small:
        if runs and runs[-1][-1][1] == seg[0]:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return [
        run
        for run in runs
        if len(run) >= 2 and (sum(s[2] for s in run) >= rows or len(run) >= count)
    ]


class SegmentWrites:
    """The segment writes of :class:`~sidecar.recording._sql.SQLStore` (a mixin)."""

    marker: str

    def _write_table(self, cur: Any, batch: pa.Table, *, compact: bool) -> int:
        raise NotImplementedError  # pragma: no cover - SQLStore's

    def _insert_many(
        self, cur: Any, table: str, columns: Sequence[str], rows: Sequence[Any], conflict: str
    ) -> int:
        raise NotImplementedError  # pragma: no cover - SQLStore's

    def _insert_segment(self, cur: Any, table: pa.Table, seq_lo: int, seq_hi: int) -> None:
        data = to_ipc(table)
        ts = table.column("ts").to_numpy()
        m = self.marker
        cur.execute(
            "INSERT INTO sidecar_segments (seq_lo, seq_hi, n_rows, ts_min, ts_max, nbytes, data) "
            f"VALUES ({', '.join([m] * 7)})",
            (seq_lo, seq_hi, table.num_rows, float(ts.min()), float(ts.max()), len(data), data),
        )

    def _compact(self, cur: Any) -> None:
        """Merge each run of small neighbours that adds up to a full segment."""
        cur.execute(
            "SELECT seq_lo, seq_hi, n_rows FROM sidecar_segments "
            f"WHERE n_rows < {SEGMENT_ROWS} ORDER BY seq_lo"
        )
        small = [(int(a), int(b), int(n)) for a, b, n in cur.fetchall()]
        for run in merge_runs(small, rows=SEGMENT_ROWS, count=MERGE_COUNT):
            self._merge_run(cur, run[0][0], run[-1][0])

    def _merge_run(self, cur: Any, lo: int, hi: int) -> None:
        """Merge the segments starting in ``[lo, hi]``: those of one schema each become one."""
        m = self.marker
        cur.execute(
            "SELECT seq_lo, seq_hi, data FROM sidecar_segments "
            f"WHERE seq_lo >= {m} AND seq_lo <= {m} ORDER BY seq_lo",
            (lo, hi),
        )
        found = [(int(r[0]), int(r[1]), from_ipc(r[2])) for r in cur.fetchall()]
        groups: list[list[tuple[int, int, pa.Table]]] = [[found[0]]]
        for item in found[1:]:  # only segments of one schema merge (a new bundle starts a group)
            if item[2].schema.equals(groups[-1][-1][2].schema):
                groups[-1].append(item)
            else:
                groups.append([item])
        for group in groups:
            if len(group) < 2:
                continue
            marks = ", ".join([m] * len(group))
            cur.execute(
                f"DELETE FROM sidecar_segments WHERE seq_lo IN ({marks})", [g[0] for g in group]
            )
            merged = pa.concat_tables([g[2] for g in group]).combine_chunks()
            self._insert_segment(cur, merged, group[0][0], group[-1][1])

    def _move_v1(self, cur: Any) -> None:
        """Version 1 -> 2: rows of JSON text into segments; JSON labels into typed ones."""
        m = self.marker
        cols = ", ".join(COLUMNS)
        last_ts, last_id = -1e300, ""
        while True:
            cur.execute(
                f"SELECT {cols} FROM sidecar_predictions "
                f"WHERE ts > {m} OR (ts = {m} AND request_id > {m}) "
                f"ORDER BY ts, request_id LIMIT {SEGMENT_ROWS}",
                (last_ts, last_ts, last_id),
            )
            rows = cur.fetchall()
            if not rows:
                break
            self._write_table(cur, rows_to_table(rows), compact=False)
            last_ts, last_id = rows[-1][1], rows[-1][0]
        cur.execute(
            "SELECT r.seq, l.label, l.ts FROM sidecar_labels_v1 l "
            "JOIN sidecar_records r ON r.request_id = l.request_id"
        )
        labels = [(seq, *encode_label(json.loads(text)), ts) for seq, text, ts in cur.fetchall()]
        self._insert_many(cur, "sidecar_labels", LABEL_COLUMNS, labels, "")
