"""Bulk appends: a batch of records and their labels written together, for replays and backfills.

``Recorder`` is made for serving (a bounded queue that never blocks, drops
counted); a replay wants the opposite: every record stored or a clear error,
and its labels with it. :func:`append` writes one batch (an Arrow table as
``_records.encode_records`` builds it) and the labels of its records in one
transaction where the store is a SQL store -- a crash leaves the batch with
its labels or neither -- and through the public ``write_batch`` and
``upsert_labels`` elsewhere. Labels arrive as columns (``LabelBlock``) and
are stored without one Python object per label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ._columnar import BOOL, FLOAT, INT, TEXT
from ._label_log import LABEL_SCHEMA
from ._store import Label, Store, WriterStats

__all__ = ["LabelBlock", "append", "encode_labels"]

_KIND_VALUES = {FLOAT: float, INT: int, BOOL: bool}


@dataclass(frozen=True)
class LabelBlock:
    """Labels of some rows of a batch, typed as the store keeps them.

    ``rows`` indexes the batch; ``kind`` / ``num`` / ``text`` are
    ``_columnar.encode_label``'s three parts, ``ts`` when each label came
    (``nan``: now).
    """

    rows: np.ndarray
    kind: np.ndarray
    num: np.ndarray
    text: list[str | None]
    ts: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def values(self) -> list[Any]:
        """The labels as Python values (for stores without a bulk path)."""
        import json

        out: list[Any] = []
        for k, x, t in zip(self.kind.tolist(), self.num.tolist(), self.text, strict=True):
            if k in _KIND_VALUES:
                out.append(_KIND_VALUES[k](x))
            else:
                out.append(t if k == TEXT else json.loads(t or "null"))
        return out


def append(
    store: Store, batch: pa.Table, labels: LabelBlock | None, writer: WriterStats | None
) -> tuple[int, int]:
    """Store ``batch`` and ``labels``; ``(records written, labels stored)``."""
    from ._sql import SQLStore

    if isinstance(store, SQLStore) and _has_internals(store):
        result: tuple[int, int] = store._run(
            lambda cur: _append_sql(store, cur, batch, labels, writer), write=True
        )
        return result
    written = store.write_batch(batch, writer)
    if labels is None or not len(labels):
        return written, 0
    ids = batch.column("request_id").take(pa.array(labels.rows)).to_pylist()
    now = time.time()
    items = [
        Label(rid, value, now if ts != ts else ts)
        for rid, value, ts in zip(ids, labels.values(), labels.ts.tolist(), strict=True)
    ]
    return written, store.upsert_labels(items).accepted


def _has_internals(store: Any) -> bool:
    return all(
        hasattr(store, name)
        for name in ("_run", "_write_table", "_append_labels", "_upsert_writer")
    )


def _append_sql(
    store: Any, cur: Any, batch: pa.Table, labels: LabelBlock | None, writer: WriterStats | None
) -> tuple[int, int]:
    n = batch.num_rows
    written = store._write_table(cur, batch, compact=True) if n else 0
    stored = 0
    if labels is not None and len(labels):
        ids = batch.column("request_id")
        m = store.marker
        cur.execute(f"SELECT seq FROM sidecar_records WHERE request_id = {m}", (ids[0].as_py(),))
        found = cur.fetchone()
        if written == n and found is not None:  # this batch's records hold seq base .. base + n
            seqs = np.asarray(labels.rows, dtype=np.int64) + int(found[0])
            keep = np.ones(len(labels), dtype=bool)
        else:  # some ids were known already: look each one up
            known = store._seqs_of(cur, ids.take(pa.array(labels.rows)).to_pylist())
            wanted = ids.take(pa.array(labels.rows)).to_pylist()
            seqs = np.array([known.get(rid, -1) for rid in wanted], dtype=np.int64)
            keep = (seqs >= 0) & _last_of_each(seqs)  # a label segment holds a record once
        ts = np.where(np.isnan(labels.ts), time.time(), labels.ts)
        text = [t for t, k in zip(labels.text, keep.tolist(), strict=True) if k]
        table = pa.table(
            [
                pa.array(seqs[keep], pa.int64()),
                pa.array(labels.kind[keep], pa.int8()),
                pa.array(labels.num[keep], pa.float64(), from_pandas=True),  # NaN: a text label
                pa.array(text, pa.string()),
                pa.array(ts[keep], pa.float64()),
            ],
            schema=LABEL_SCHEMA,
        )
        store._append_labels(cur, table)  # one label segment; the newest label of a record wins
        stored = table.num_rows
    if writer is not None:
        store._upsert_writer(cur, writer)
    return written, stored


def _last_of_each(values: np.ndarray) -> np.ndarray:
    """Where each entry is the last one of its value (an id twice in a batch: its later label)."""
    last = np.zeros(len(values), dtype=bool)
    _, first_from_end = np.unique(values[::-1], return_index=True)
    last[len(values) - 1 - first_from_end] = True
    return last


def encode_labels(values: list[Any]) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """``(kind, num, text)`` columns for distinct label values (see ``encode_label``)."""
    from ._columnar import encode_label

    parts = [encode_label(v) for v in values]
    kind = np.array([p[0] for p in parts], dtype=np.int8)
    num = np.array([np.nan if p[1] is None else p[1] for p in parts], dtype=np.float64)
    return kind, num, [p[2] for p in parts]
