"""Replay from columns: a whole Arrow table through preprocessing, both models and the store.

The row path (``replay`` on a list of records) sends every batch through
``Bundle.predict_shadow`` and the recorder, one dict a record. A table skips
the dicts: the preprocessing encodes whole columns (``transform_table``),
each model predicts the same batches it would have predicted there, the
records are built as Arrow columns straight from the table's, and each chunk
goes to the store with its labels in one transaction
(``recording._bulk.append``). What is stored is what the row path stores,
except the request ids (fresh ones) and the latencies (timed here).

Everything that can be wrong with the input -- a bad value, a bad label, a
bad timestamp -- is found before the first write, so a replay that fails on
its input records nothing. A store that fails midway keeps the chunks
written before, each whole with its labels; the error says how many.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import FieldProblem, InputError, StoreError, short_repr
from ..recording._bulk import LabelBlock, append, encode_labels
from ..recording._sql import SEGMENT_ROWS
from ..recording._store import WriterStats, default_writer_identity
from ._parts import Part, build_table, features, predict_chunk

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import RecordPolicy, Store
    from ._records import ReplayResult

__all__ = ["replay_table"]

#: Rows preprocessed, predicted and committed together: a whole store segment, never merged.
CHUNK_ROWS = SEGMENT_ROWS
#: Features kept between the checking pass and the writing pass up to this many bytes.
KEEP_FEATURES_BYTES = 256 << 20


@dataclass
class _Chunk:
    lo: int
    hi: int
    X: np.ndarray | None
    parts: list[Part]


def replay_table(
    bundle: Bundle,
    table: pa.Table,
    *,
    store: Store,
    labels: Sequence[Any] | pa.Array | pa.ChunkedArray | None = None,
    timestamps: Sequence[float] | np.ndarray | None = None,
    label_timestamps: Sequence[float | None] | np.ndarray | None = None,
    batch_size: int = 1000,
    policy: RecordPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
    label_name: str = "labels",
) -> ReplayResult:
    """``replay`` for the records of an Arrow table; see :func:`sidecar.replay`."""
    from ._records import ReplayResult

    start = time.perf_counter()
    n = table.num_rows
    ts = None if timestamps is None else _times(timestamps, n, "timestamps")
    arrived = None
    label_ts: np.ndarray | None
    if label_timestamps is not None:
        label_ts = _times(label_timestamps, n, "label_timestamps", missing_ok=True)
        arrived = ~np.isnan(label_ts)
    else:
        label_ts = ts
    block = (
        None if labels is None else _label_block(bundle, labels, n, label_ts, arrived, label_name)
    )
    step = -(-CHUNK_ROWS // batch_size) * batch_size  # whole batches, as the row path has them
    chunks: list[_Chunk] = []
    kept = 0
    for lo in range(0, n, step):  # every check before the first write
        hi = min(n, lo + step)
        X, parts = predict_chunk(
            bundle, table.slice(lo, hi - lo), lo, batch_size, _halfway(progress, lo, n)
        )
        keep = kept + X.nbytes <= KEEP_FEATURES_BYTES
        kept += X.nbytes if keep else 0
        chunks.append(_Chunk(lo, hi, X if keep else None, parts))
    written, accepted = _write(bundle, table, chunks, store, ts, block, policy, progress, n)
    return ReplayResult(
        records=written,
        labels_accepted=accepted,
        labels_unknown=0 if block is None else len(block) - accepted,
        dropped=0,
        seconds=round(time.perf_counter() - start, 3),
    )


def _write(
    bundle: Bundle,
    table: pa.Table,
    chunks: list[_Chunk],
    store: Store,
    ts: np.ndarray | None,
    block: LabelBlock | None,
    policy: RecordPolicy | None,
    progress: Callable[[int, int], None] | None,
    n: int,
) -> tuple[int, int]:
    """Build each chunk's records while the store writes the one before."""
    host, pid = default_writer_identity()
    writer_id = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
    started = time.time()
    written = accepted = 0
    pending: Future[tuple[int, int]] | None = None

    def settle() -> None:
        nonlocal written, accepted, pending
        if pending is None:
            return
        try:
            w, a = pending.result()
        except StoreError as exc:
            raise StoreError(
                f"{exc} -- {written} of {n} records were recorded before it (each chunk "
                "whole, with its labels); replay the rest, or all into a fresh store."
            ) from exc
        pending = None
        written += w
        accepted += a
        if progress is not None:  # checked all, and written this many: halfway and on
            progress((n + written) // 2, n)

    with ThreadPoolExecutor(1, thread_name_prefix="sidecar-replay") as pool:
        for chunk in chunks:
            sub = table.slice(chunk.lo, chunk.hi - chunk.lo)
            X = chunk.X
            if X is None:
                X = features(bundle, sub, chunk.lo, count=False)
            chunk.X = None
            stamps = None if ts is None else ts[chunk.lo : chunk.hi]
            batch = build_table(bundle, sub, X, chunk.parts, stamps, policy)
            labels = None if block is None else _slice_labels(block, chunk.lo, chunk.hi)
            settle()
            stats = WriterStats(
                writer_id, host, pid, started, time.time(), n, written + batch.num_rows, 0, 0
            )
            pending = pool.submit(append, store, batch, labels, stats)
        settle()
    return written, accepted


def _halfway(
    progress: Callable[[int, int], None] | None, lo: int, n: int
) -> Callable[[int], None] | None:
    """Progress while checking: the first half of the way (writing is the second)."""
    if progress is None:
        return None
    return lambda rows: progress((lo + rows) // 2, n)


def _times(
    values: Sequence[Any] | np.ndarray, n: int, name: str, *, missing_ok: bool = False
) -> np.ndarray:
    """Epoch seconds as float64 (``nan`` where ``missing_ok`` and the value is ``None``)."""
    try:
        arr = np.asarray(
            [np.nan if v is None and missing_ok else v for v in values]
            if missing_ok and not isinstance(values, np.ndarray)
            else values,
            dtype=np.float64,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"`{name}` must be epoch seconds (numbers); got {exc}.") from exc
    if arr.shape != (n,):
        raise InputError(f"`{name}` must have one entry per record ({n}); got {len(arr)}.")
    bad = ~np.isfinite(arr) if not missing_ok else np.isinf(arr)
    bad |= np.abs(np.nan_to_num(arr)) > 1e11
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            [FieldProblem(f"{name}[{i}]", "finite epoch seconds (within +-1e11)", repr(arr[i]))]
        )
    return arr


def _distinct(labels: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """Each label's index among the distinct labels (-1: none), and those labels."""
    if isinstance(labels, pa.ChunkedArray | pa.Array):
        arr = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        enc = pc.dictionary_encode(arr)
        codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return codes, enc.dictionary.to_pylist()
    seen: dict[Any, int] = {}
    values: list[Any] = []
    codes = np.full(n, -1, dtype=np.int64)
    for i, v in enumerate(labels):
        if v is None:
            continue
        try:
            key = (type(v), v)
            code = seen.get(key)
        except TypeError:  # unhashable: a value of its own, refused below
            key, code = None, None
        if code is None:
            code = len(values)
            values.append(v)
            if key is not None:
                seen[key] = code
        codes[i] = code
    return codes, values


def _label_block(
    bundle: Bundle,
    labels: Any,
    n: int,
    stamps: np.ndarray | None,
    arrived: np.ndarray | None,
    where: str,
) -> LabelBlock:
    """The labels as columns, each checked by the one label rule (once per distinct value)."""
    from .._labels import MISSING, label_rule

    if len(labels) != n:
        raise InputError(f"`labels` must have one entry per record ({n}); got {len(labels)}.")
    coerce, expected, allowed = label_rule(bundle.task, bundle.advanced.classes)
    codes, values = _distinct(labels, n)
    got: list[Any] = []
    problems: list[tuple[int, FieldProblem]] = []
    for k, value in enumerate(values):
        try:
            label = coerce(value)
        except TypeError:
            label = MISSING
        if label is MISSING or (allowed is not None and label not in allowed):
            i = int(np.argmax(codes == k))
            problems.append((i, FieldProblem(f"{where}[{i}]", expected, short_repr(value))))
        got.append(label)
    if problems:
        raise InputError([p for _, p in sorted(problems, key=lambda p: p[0])[:20]])
    take = codes >= 0
    if arrived is not None:
        take &= arrived
    rows = np.flatnonzero(take)
    kind, num, text = encode_labels(got) if got else (np.zeros(0, np.int8), np.zeros(0), [])
    picked = codes[rows]
    texts: list[str | None] = (
        [text[c] for c in picked.tolist()]
        if any(t is not None for t in text)
        else [None] * len(rows)
    )
    ts = np.full(len(rows), np.nan) if stamps is None else stamps[rows]
    return LabelBlock(rows, kind[picked], num[picked], texts, ts)


def _slice_labels(block: LabelBlock, lo: int, hi: int) -> LabelBlock:
    a, b = np.searchsorted(block.rows, [lo, hi])
    return LabelBlock(
        block.rows[a:b] - lo, block.kind[a:b], block.num[a:b], block.text[a:b], block.ts[a:b]
    )
