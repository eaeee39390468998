"""Labels as Arrow segments: an append-only log, newest label per record wins.

Each ``upsert_labels`` call appends one *label segment* -- an Arrow table of
``seq`` (the record's sequence number), ``kind``, ``num``, ``text`` (the label
in typed columns, see ``_columnar.encode_label``) and ``ts`` -- numbered by
``batch`` in write order. Reading the labels of a range of records reads the
label segments that overlap it (``seq_min``/``seq_max``) and keeps, for each
record, the label of the highest batch: two NumPy sorts, no row in Python.
As with records, small neighbouring label segments (consecutive batches) are
merged into one once they add up, keeping only the newest label of each
record, so light feedback traffic does not leave thousands behind.

Schema version 3 brought it; the step from version 2 moves the ``sidecar_labels``
rows into label segments in the migration's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._columnar import TEXT, LabelColumns, from_ipc, to_ipc
from ._segments import MERGE_COUNT, SEGMENT_ROWS, merge_runs

__all__ = ["LABEL_SCHEMA", "LabelLog", "label_table", "newest_labels", "overlapping_groups"]

LABEL_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("kind", pa.int8()),
        ("num", pa.float64()),
        ("text", pa.string()),
        ("ts", pa.float64()),
    ]
)


def label_table(rows: Sequence[tuple[int, int, float | None, str | None, float]]) -> pa.Table:
    """A label segment from ``(seq, kind, num, text, ts)`` rows."""
    seq, kind, num, text, ts = zip(*rows, strict=True) if rows else ((), (), (), (), ())
    return pa.table(
        [
            pa.array(seq, pa.int64()),
            pa.array(kind, pa.int8()),
            pa.array(num, pa.float64()),
            pa.array(text, pa.string()),
            pa.array(ts, pa.float64()),
        ],
        schema=LABEL_SCHEMA,
    )


def newest_labels(parts: Sequence[pa.Table], seq_lo: int, seq_hi: int) -> pa.Table:
    """The label of each record in ``[seq_lo, seq_hi)``: the last of ``parts`` (in batch order)
    that holds one wins; sorted by ``seq``."""
    if not parts:
        return label_table([])
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    seq = table.column("seq").to_numpy()
    inside = (seq >= seq_lo) & (seq < seq_hi)
    if not inside.all():
        table, seq = table.filter(pa.array(inside)), seq[inside]
    if bool(np.all(seq[1:] > seq[:-1])):  # one label per record, in order: as it is
        return table
    # A stable sort by seq keeps batch order within a record; its last entry wins.
    order = np.argsort(seq, kind="stable")
    ordered = seq[order]
    last = np.ones(len(ordered), dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    pick = order[last]
    if len(pick) == table.num_rows and bool(np.all(pick == np.arange(len(pick)))):
        return table
    return table.take(pa.array(pick))


def overlapping_groups(
    segments: Sequence[tuple[int, int, int, int]],
) -> list[list[tuple[int, int, int, int]]]:
    """``(batch, seq_min, seq_max, n_rows)`` segments in groups whose seq ranges chain-overlap."""
    groups: list[list[tuple[int, int, int, int]]] = []
    reach = 0
    for seg in sorted(segments, key=lambda s: s[1]):
        if groups and seg[1] <= reach:
            groups[-1].append(seg)
            reach = max(reach, seg[2])
        else:
            groups.append([seg])
            reach = seg[2]
    return groups


def to_columns(table: pa.Table) -> LabelColumns:
    """What ``ColumnarReads`` joins: arrays, and the texts only when some label is text."""
    kind = np.asarray(table.column("kind").to_numpy(zero_copy_only=False), dtype=np.int8)
    has_text = bool(np.any(kind >= TEXT))
    return LabelColumns(  # views of the columns where their types are already these: no copy
        np.asarray(table.column("seq").to_numpy(zero_copy_only=False), dtype=np.int64),
        kind,
        np.asarray(table.column("num").to_numpy(zero_copy_only=False), dtype=np.float64),
        table.column("text").to_pylist() if has_text else [],
        np.asarray(table.column("ts").to_numpy(zero_copy_only=False), dtype=np.float64),
    )


class LabelLog:
    """The label segments of :class:`~sidecar.recording._sql.SQLStore` (a mixin)."""

    marker: str

    def _lock_for_write(self, cur: Any) -> None:
        raise NotImplementedError  # pragma: no cover - SQLStore's

    def _blobs(self, cur: Any, sql: str, params: Sequence[Any]) -> list[Any]:
        """The one column of a query's rows (PostgreSQL: bytea fetched as bytes, not hex)."""
        cur.execute(sql, params)
        return [r[0] for r in cur.fetchall()]

    def _append_labels(self, cur: Any, table: pa.Table, *, compact: bool = True) -> None:
        """One label segment for ``table`` (``LABEL_SCHEMA``), after every earlier one."""
        if not table.num_rows:
            return
        self._lock_for_write(cur)
        cur.execute("SELECT COALESCE(MAX(batch), 0) FROM sidecar_label_segments")
        batch = int(cur.fetchone()[0]) + 1
        self._insert_label_segment(cur, batch, table)
        if compact:
            self._compact_labels(cur)

    def _insert_label_segment(self, cur: Any, batch: int, table: pa.Table) -> None:
        seq = table.column("seq").to_numpy()
        m = self.marker
        cur.execute(
            "INSERT INTO sidecar_label_segments (batch, seq_min, seq_max, n_rows, data) "
            f"VALUES ({m}, {m}, {m}, {m}, {m})",
            (batch, int(seq.min()), int(seq.max()), table.num_rows, to_ipc(table)),
        )

    def _compact_labels(self, cur: Any) -> None:
        """Merge runs of small consecutive label segments, keeping each record's newest label."""
        cur.execute("SELECT batch, n_rows FROM sidecar_label_segments ORDER BY batch")
        rows = [(int(b), int(n)) for b, n in cur.fetchall()]
        # neighbours: consecutive among *all* label segments (a large one breaks a run)
        small = [(i, i + 1, n) for i, (_, n) in enumerate(rows) if n < SEGMENT_ROWS]
        m = self.marker
        for run in merge_runs(small, rows=SEGMENT_ROWS, count=MERGE_COUNT):
            batches = [rows[i][0] for i, _, _ in run]
            marks = ", ".join([m] * len(batches))
            blobs = self._blobs(
                cur,
                f"SELECT data FROM sidecar_label_segments WHERE batch IN ({marks}) ORDER BY batch",
                batches,
            )
            merged = newest_labels([from_ipc(b) for b in blobs], -(2**62), 2**62)
            cur.execute(f"DELETE FROM sidecar_label_segments WHERE batch IN ({marks})", batches)
            self._insert_label_segment(cur, batches[-1], merged.combine_chunks())

    def _read_labels(self, cur: Any, seq_lo: int, seq_hi: int) -> LabelColumns:
        m = self.marker
        blobs = self._blobs(
            cur,
            "SELECT data FROM sidecar_label_segments "
            f"WHERE seq_max >= {m} AND seq_min < {m} ORDER BY batch",
            (seq_lo, seq_hi),
        )
        parts = [from_ipc(b) for b in blobs]
        return to_columns(newest_labels(parts, seq_lo, seq_hi))

    def _count_labels(self, cur: Any) -> int:
        """How many records have a label (a record relabelled counts once).

        A label segment holds each record at most once, so a segment whose
        ``[seq_min, seq_max]`` overlaps no other counts its ``n_rows`` unread;
        only segments that overlap are read, to count their records once.
        """
        cur.execute("SELECT batch, seq_min, seq_max, n_rows FROM sidecar_label_segments")
        total = 0
        segments = [(int(b), int(lo), int(hi), int(n)) for b, lo, hi, n in cur.fetchall()]
        for group in overlapping_groups(segments):
            if len(group) == 1:
                total += group[0][3]
                continue
            marks = ", ".join([self.marker] * len(group))
            blobs = self._blobs(
                cur,
                f"SELECT data FROM sidecar_label_segments WHERE batch IN ({marks})",
                [g[0] for g in group],
            )
            seqs = [from_ipc(b).column("seq").to_numpy() for b in blobs]
            total += int(np.unique(np.concatenate(seqs)).size)
        return total

    def _move_v2_labels(self, cur: Any) -> None:
        """Version 2 -> 3: the ``sidecar_labels`` rows into label segments, by ``seq``."""
        m = self.marker
        last, batch = -1, 0
        while True:
            cur.execute(
                f"SELECT seq, kind, num, text, ts FROM sidecar_labels WHERE seq > {m} "
                f"ORDER BY seq LIMIT {SEGMENT_ROWS}",
                (last,),
            )
            rows = cur.fetchall()
            if not rows:
                return
            batch += 1
            self._insert_label_segment(cur, batch, label_table(rows))
            last = int(rows[-1][0])
