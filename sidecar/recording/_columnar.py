"""The one store scan: segments in a time window, filtered and joined to their labels as columns.

Every store keeps records in *segments* (one Arrow table per commit, merged
into larger ones as they pile up; see ``Segments``) and labels in a table
keyed by request id that also holds the record's *sequence number* (``seq``).
A segment covers a contiguous range of sequence numbers, and merging keeps
them, so a label always finds its record again. A store supplies three
primitives -- the segments overlapping a window, the labels in a range of
sequence numbers, and the size of a window -- and :class:`ColumnarReads`
builds every read on them: :meth:`read_window` for analysis and export,
:meth:`iter_joined` for reading records one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from ._assemble import Assembler, Scratch
from ._ipc import Place
from ._records import dumps, table_to_rows

__all__ = [
    "LABEL_COLUMNS",
    "ColumnarReads",
    "LabelColumns",
    "SegmentInfo",
    "decode_labels",
    "encode_label",
    "from_ipc",
    "to_ipc",
]

#: The columns :meth:`ColumnarReads.read_window` adds to each record.
LABEL_COLUMNS = ("seq", "label_kind", "label_num", "label_text", "label_ts")

# label kinds: how a label's value is kept in typed columns
FLOAT, INT, BOOL, TEXT, JSON = 0, 1, 2, 3, 4


def encode_label(value: Any) -> tuple[int, float | None, str | None]:
    """``(kind, number, text)``: a label in typed columns, its type kept for reading back."""
    if isinstance(value, bool | np.bool_):
        return BOOL, float(bool(value)), None
    if isinstance(value, int | np.integer) and abs(int(value)) < 2**53:
        return INT, float(value), None
    if isinstance(value, float | np.floating):
        return FLOAT, float(value), None
    if isinstance(value, str):
        return TEXT, None, value
    return JSON, None, dumps(value)


def decode_labels(kind: np.ndarray, num: np.ndarray, text: Sequence[Any]) -> np.ndarray:
    """Labels as Python values in an object array (``None`` where ``kind`` is -1: no label)."""
    import json

    out = np.full(len(kind), None, dtype=object)
    for code, convert in ((FLOAT, None), (INT, np.int64), (BOOL, np.bool_)):
        sel = kind == code
        if sel.any():
            values = num[sel] if convert is None else num[sel].astype(convert)
            out[sel] = values.astype(object)
    for code in (TEXT, JSON):
        sel = np.flatnonzero(kind == code)
        if sel.size:
            picked = np.asarray(text, dtype=object)[sel]
            out[sel] = picked if code == TEXT else [json.loads(t) for t in picked]
    return out


@dataclass(frozen=True)
class SegmentInfo:
    """What a store knows of a segment without reading it."""

    seq_lo: int
    seq_hi: int
    n_rows: int
    nbytes: int


@dataclass(frozen=True)
class LabelColumns:
    """Labels of a range of records, as arrays (one entry per label)."""

    seq: np.ndarray
    kind: np.ndarray
    num: np.ndarray
    text: list[Any]
    ts: np.ndarray

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[Any, ...]]) -> LabelColumns:
        """From ``(seq, kind, num, text, ts)`` rows."""
        if not rows:
            return cls.empty()
        seq, kind, num, text, ts = zip(*rows, strict=True)
        return cls(
            np.fromiter(seq, np.int64, len(seq)),
            np.fromiter(kind, np.int8, len(kind)),
            np.array(num, dtype=np.float64),  # None -> nan
            list(text),
            np.array(ts, dtype=np.float64),
        )

    @classmethod
    def empty(cls) -> LabelColumns:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0), [], np.zeros(0))


def to_ipc(table: pa.Table) -> bytes:
    """A segment's bytes: one Arrow IPC stream (readable by any Arrow implementation)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def from_ipc(data: Any) -> pa.Table:
    """A segment back from its bytes, without copying them."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class ColumnarReads:
    """Reads shared by every store; subclasses supply the three primitives below."""

    url: str

    def _segment_infos(self, since: float, until: float) -> list[SegmentInfo]:
        raise NotImplementedError  # pragma: no cover

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
        """``keep(segment)`` for each segment overlapping ``[since, until)``, in sequence order.

        ``seqs`` keeps only the segments whose ``seq_lo`` lies in ``[lo, hi)``.
        With ``reuse`` a segment may live in memory the store reuses for the
        next one: ``keep`` copies what it needs (see ``_assemble.Assembler``);
        without, each segment's memory is its own, and ``keep`` may hold it.
        ``fields`` (of a segment's column names, those ``keep`` reads) lets a
        store leave the other columns unread; a segment may still hold them.
        ``scratch``: the memory to read into (else one of ``reuse``'s kind);
        ``place``: where a field's values may be read straight to (see ``_ipc``).
        """
        raise NotImplementedError  # pragma: no cover

    def _label_columns(self, seq_lo: int, seq_hi: int) -> LabelColumns:
        raise NotImplementedError  # pragma: no cover

    def window_size(
        self, *, since: float | None = None, until: float | None = None
    ) -> tuple[int, int]:
        """An upper bound on the records in ``[since, until)`` and on their stored bytes."""
        infos = self._segment_infos(*_bounds(since, until))
        return sum(i.n_rows for i in infos), sum(i.nbytes for i in infos)

    def read_window(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        columns: Sequence[str] | None = None,
        bundle_version: str | None = None,
        max_bytes: int | None = None,
    ) -> pa.Table:
        """The records in ``[since, until)`` as one table in time order, with their labels.

        ``columns`` keeps only those columns (and every ``raw:`` one when it
        names ``raw``); ``bundle_version`` keeps one version's records. Each
        record carries its ``seq`` and label (``label_kind`` -1 when none came:
        see :func:`decode_labels`). A window whose stored size exceeds
        ``max_bytes`` is refused before anything is read.
        """
        lo, hi = _bounds(since, until)
        infos = self._segment_infos(lo, hi)
        n, nbytes = sum(i.n_rows for i in infos), sum(i.nbytes for i in infos)
        if max_bytes is not None and nbytes > max_bytes:
            raise InputError(
                f"the window holds up to {n} records ({nbytes / 2**20:.0f} MiB stored), over "
                f"the memory limit of {max_bytes / 2**20:.0f} MiB (SIDECAR_MEMORY_LIMIT); "
                "narrow it with --since/--until, or raise the limit if this machine has "
                "the memory."
            )
        table = self._assembled(lo, hi, columns, bundle_version, n, None)
        if table is None:
            empty = {"seq": pa.array([], pa.int64()), "ts": pa.array([], pa.float64())}
            return _with_labels(pa.table(empty), None)  # no rows, but the columns every window has
        ts = table.column("ts").to_numpy()
        if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
            table = table.take(pa.array(np.argsort(ts, kind="stable")))
        seq = table.column("seq").to_numpy()
        return _with_labels(table, self._label_columns(int(seq.min()), int(seq.max()) + 1))

    def _assembled(
        self,
        lo: float,
        hi: float,
        columns: Sequence[str] | None,
        version: str | None,
        rows: int,
        seqs: tuple[int, int] | None,
        scratch: Scratch | None = None,
    ) -> pa.Table | None:
        """The segments' selected rows as one table (about ``rows`` rows expected).

        Some columns (analysis): copied once out of a reused buffer into arrays
        of the window. Every column (export, the row form): the segments are
        kept as read, each in memory of its own, and joined without a copy.
        """
        if columns is None:
            kept: list[pa.Table] = []
            self._scan(
                lo,
                hi,
                lambda t: kept.append(_select(t, lo, hi, None, version)),
                seqs,
                reuse=False,
                scratch=scratch,
            )
            kept = [t for t in kept if t.num_rows]
            if not kept:
                return None
            return (
                kept[0] if len(kept) == 1 else pa.concat_tables(kept, promote_options="permissive")
            )
        parts = Assembler(rows)
        self._scan(
            lo,
            hi,
            lambda t: parts.add(_select(t, lo, hi, columns, version)),
            seqs,
            fields=lambda names: _wanted(names, columns, version),
            place=parts.slot,
        )
        return parts.table()

    def iter_batches(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        columns: Sequence[str] | None = None,
        rows: int = 500_000,
        reuse: bool = False,
    ) -> Iterator[pa.Table]:
        """The window in pieces of about ``rows`` records (whole segments), each with its labels.

        In store order, not time order: for export, and any scan that must not
        hold the whole window at once. With ``reuse`` (every column) a piece is
        read into the memory of the piece before, which must no longer be read
        (nor anything that views it) once the next piece is asked for: fresh
        memory costs the kernel's page faults on every byte.
        """
        lo, hi = _bounds(since, until)
        infos = self._segment_infos(lo, hi)
        scratch = Scratch(reuse=False) if reuse and columns is None else None
        start = 0
        while start < len(infos):
            end, total = start, 0
            while end < len(infos) and (end == start or total + infos[end].n_rows <= rows):
                total += infos[end].n_rows
                end += 1
            seqs = (infos[start].seq_lo, infos[end - 1].seq_lo + 1)
            if scratch is not None:
                scratch.recycle()
            table = self._assembled(lo, hi, columns, None, total, seqs, scratch)
            start = end
            if table is None:
                continue
            seq = table.column("seq").to_numpy()
            yield _with_labels(table, self._label_columns(int(seq.min()), int(seq.max()) + 1))

    def iter_joined(
        self, *, since: float | None = None, until: float | None = None, chunk_size: int = 50_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Records with their label, in ``(ts, request_id)`` order, in chunks: the row form."""
        table = self.read_window(since=since, until=until)
        if not table.num_rows:
            return
        order = pc.sort_indices(table, [("ts", "ascending"), ("request_id", "ascending")])
        table = table.take(order)
        kind = table.column("label_kind").to_numpy()
        labels = decode_labels(
            kind,
            table.column("label_num").to_numpy(zero_copy_only=False),
            table.column("label_text").to_pylist(),
        )
        label_ts = table.column("label_ts").to_numpy(zero_copy_only=False)
        texts = [None if k < 0 else dumps(v) for k, v in zip(kind, labels, strict=True)]
        table = table.append_column("label", pa.array(texts, pa.string()))
        table = table.set_column(
            table.column_names.index("label_ts"),
            "label_ts",
            pa.array(np.where(kind < 0, np.nan, label_ts), mask=kind < 0),
        )
        for start in range(0, table.num_rows, chunk_size):
            yield table_to_rows(table.slice(start, chunk_size))


def _bounds(since: float | None, until: float | None) -> tuple[float, float]:
    return (-math.inf if since is None else since, math.inf if until is None else until)


def _select(
    table: pa.Table, lo: float, hi: float, columns: Sequence[str] | None, version: str | None
) -> pa.Table:
    ts = table.column("ts").to_numpy()  # one chunk: a view
    mask = (ts >= lo) & (ts < hi)
    if version is not None and "bundle_version" in table.column_names:
        same = pc.fill_null(pc.equal(table.column("bundle_version"), pa.scalar(version)), False)
        mask &= same.to_numpy(zero_copy_only=False)
    if columns is not None:
        table = table.select(_wanted(table.column_names, columns, None))
    if bool(mask.all()):
        return table
    return table.filter(pa.array(mask))


def _wanted(names: Sequence[str], columns: Sequence[str], version: str | None) -> list[str]:
    """The columns of ``names`` a read of ``columns`` keeps (``bundle_version`` too when a
    ``version`` is picked: the rows are filtered on it)."""
    want = set(columns) | {"seq", "ts"} | (set() if version is None else {"bundle_version"})
    return [
        c
        for c in names
        if c in want or ("raw" in want and (c.startswith("raw:") or c == "raw_json"))
    ]


def _with_labels(table: pa.Table, labels: LabelColumns | None) -> pa.Table:
    n = table.num_rows
    seq = table.column("seq").to_numpy() if n else np.zeros(0, np.int64)
    text: Sequence[Any] | None = None  # only when some label is text
    if labels is not None and len(labels.seq) == n and n and np.array_equal(labels.seq, seq):
        kind, num, ts = labels.kind, labels.num, labels.ts  # every record labelled, in order
        if labels.text and bool(np.any(kind >= TEXT)):
            text = labels.text
    else:
        kind, num, ts, text = _joined(seq, labels)
    none = kind < 0
    mask = none if bool(none.any()) else None
    return (
        table.append_column("label_kind", pa.array(kind))
        .append_column("label_num", pa.array(num, mask=mask))
        .append_column(
            "label_text", pa.nulls(n, pa.string()) if text is None else pa.array(text, pa.string())
        )
        .append_column("label_ts", pa.array(ts, mask=mask))
    )


def _joined(
    seq: np.ndarray, labels: LabelColumns | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any] | None]:
    """``(kind, num, ts, text)`` of each of the records ``seq`` (kind -1: no label)."""
    n = len(seq)
    kind = np.full(n, -1, dtype=np.int8)
    num = np.full(n, np.nan)
    ts = np.full(n, np.nan)
    text: list[Any] | None = None
    if labels is not None and len(labels.seq) and n:
        # A window in time order is almost always in seq order too: no sort then.
        order = None if bool(np.all(seq[1:] > seq[:-1])) else np.argsort(seq, kind="stable")
        ordered = seq if order is None else seq[order]
        pos = np.searchsorted(ordered, labels.seq)
        hit = pos < n
        hit[hit] = ordered[pos[hit]] == labels.seq[hit]
        rows = pos[hit] if order is None else order[pos[hit]]
        kind[rows] = labels.kind[hit]
        num[rows] = labels.num[hit]
        ts[rows] = labels.ts[hit]
        if labels.text and bool(np.any(labels.kind >= TEXT)):
            texts = np.full(n, None, dtype=object)
            texts[rows] = np.asarray(labels.text, dtype=object)[hit]
            text = texts.tolist()
    return kind, num, ts, text
