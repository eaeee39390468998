"""Where each column of a stored segment lies, so a read fetches only the columns it needs.

A segment is one Arrow IPC stream (``_columnar.to_ipc``): a schema message,
a record batch message -- its metadata, then its *body*, every column's
buffers end to end -- and the end-of-stream marker. The batch's metadata (a
flatbuffer) lists each buffer's offset and length in the body, in the
schema's depth-first order, so from the first few kilobytes of a segment a
store knows which byte ranges hold the columns an analysis reads (a fifth of
the bytes are request ids, versions and latencies it never looks at). It
fetches those ranges into a buffer at their places in the stream, and
pyarrow reads the stream with ``included_fields``: it never looks at the
bytes of the other columns, which are left as they were.

Anything else -- several record batches in one segment, dictionaries,
compressed bodies, view or union types, an older IPC framing -- gets
:data:`None` from :func:`layout`, and the store reads the segment whole.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "HEAD",
    "Incomplete",
    "Layout",
    "Place",
    "Targets",
    "layout",
    "ranges",
    "read_fields",
    "some_fields",
]

#: Bytes read first: the schema and the batch's metadata (a few KB for 50 columns).
HEAD = 1 << 16
#: Ranges closer than this are fetched as one (a round trip per range costs more).
GAP = 1 << 12

_CONTINUATION = 0xFFFFFFFF
_SCHEMA, _RECORD_BATCH = 1, 3
_EOS = 8  # the continuation marker and a zero length


@dataclass(frozen=True)
class Layout:
    """A one-batch segment's schema, and where each top-level field's buffers lie."""

    schema: pa.Schema
    #: the byte ranges ``[a, b)`` of each top-level field's buffers, in the segment
    fields: tuple[tuple[tuple[int, int], ...], ...]
    #: where the batch's body ends (the end-of-stream marker follows)
    body_end: int
    #: the batch's rows, and each top-level field's nulls (its children's included)
    rows: int = 0
    nulls: tuple[int, ...] = ()


class Incomplete(Exception):
    """The head read holds too little: ``need`` bytes from the start are needed."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.need = need


def layout(head: np.ndarray, nbytes: int) -> Layout | None:
    """The layout of the segment of ``nbytes`` bytes that starts with ``head``.

    Raises :class:`Incomplete` when ``head`` ends before the batch's
    metadata does; ``None`` when the segment is not one plain record batch.
    """
    try:
        return _layout(np.ascontiguousarray(head, dtype=np.uint8).data.cast("B"), nbytes)
    except (_Unsupported, struct.error, IndexError, ValueError, pa.ArrowException):
        return None


def _layout(head: memoryview, nbytes: int) -> Layout | None:
    schema_meta, schema_end = _message(head, 0)
    kind, body, _ = _header(head, *schema_meta)
    if kind != _SCHEMA or body:
        return None
    batch_meta, body_start = _message(head, schema_end)
    kind, body_len, batch = _header(head, *batch_meta)
    if kind != _RECORD_BATCH or batch is None or body_start + body_len + _EOS != nbytes:
        return None
    parsed = _record_batch(head, batch)
    if parsed is None:
        return None
    rows, nodes, buffers = parsed
    schema = pa.ipc.read_schema(pa.py_buffer(head[:schema_end]))
    fields: list[tuple[tuple[int, int], ...]] = []
    nulls: list[int] = []
    at_node = at_buf = 0
    for field in schema:
        shape = _shape(field.type)
        if shape is None:
            return None
        n_nodes, n_bufs = shape
        spans = buffers[at_buf : at_buf + n_bufs]
        fields.append(tuple((body_start + o, body_start + o + n) for o, n in spans if n))
        nulls.append(sum(nodes[at_node : at_node + n_nodes]))
        at_node, at_buf = at_node + n_nodes, at_buf + n_bufs
    if at_node != len(nodes) or at_buf != len(buffers):
        return None
    if any(b > body_start + body_len for spans in fields for _, b in spans):
        return None
    return Layout(schema, tuple(fields), body_start + body_len, rows, tuple(nulls))


def ranges(plan: Layout, indices: Sequence[int], nbytes: int, done: int) -> list[tuple[int, int]]:
    """The byte ranges to fetch for fields ``indices`` (and the end marker) beyond ``done``."""
    spans = sorted(s for i in indices for s in plan.fields[i])
    spans.append((plan.body_end, nbytes))
    out: list[tuple[int, int]] = []
    for a, b in spans:
        a = max(a, done)
        if a >= b:
            continue
        if out and a - out[-1][1] <= GAP:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def read_fields(data: np.ndarray, indices: Sequence[int]) -> pa.Table:
    """Fields ``indices`` of the stream in ``data`` (only their bytes need be there)."""
    options = pa.ipc.IpcReadOptions(included_fields=list(indices))
    return pa.ipc.open_stream(pa.py_buffer(data), options=options).read_all()


#: Where a field's values may go instead: ``place(field, rows)`` gives the bytes (or ``None``).
Place = Callable[[pa.Field, int], "np.ndarray | None"]


def some_fields(
    read: Callable[[list[tuple[int, int]], Any], bool],
    out: np.ndarray,
    nbytes: int,
    fields: Callable[[Sequence[str]], Sequence[str]],
    place: Place | None = None,
) -> pa.Table | None:
    """The fields of a segment that ``fields`` picks from its names (``None``: read it whole).

    ``read(spans, into)`` puts bytes ``[a, b)`` of the segment at ``into[a:b]`` for
    each span (``False``: it cannot, for this segment); the head first, then the
    chosen fields, into ``out`` -- except the values of a field without nulls that
    ``place`` gives room for (numbers, fixed-size lists of them): those are read
    straight there, and the table views them there.
    """
    done = min(HEAD, nbytes)
    if not read([(0, done)], out):
        return None
    while True:
        try:
            plan = layout(out[:done], nbytes)
            break
        except Incomplete as more:  # the batch's metadata runs past the head: read on
            need = min(max(more.need, 2 * done), nbytes)
            if done >= nbytes or not read([(done, need)], out):
                return None
            done = need
    if plan is None:
        return None
    names = set(fields(plan.schema.names))
    indices = [i for i, name in enumerate(plan.schema.names) if name in names]
    if not indices:  # (no field would mean every field to pyarrow)
        return None
    moved = _placed(plan, indices, place, done)
    rest = [i for i in indices if i not in moved]
    exact = [(a, a + len(dest), dest) for a, dest in moved.values()]
    spans = ranges(plan, rest, nbytes, done) + [(a, b) for a, b, _ in exact]
    if not read(spans, Targets(out, exact)):
        return None
    table = read_fields(out[:nbytes], rest) if rest else None
    columns = [
        _over(plan.schema.field(i).type, plan.rows, moved[i][1])
        if i in moved
        else table.column(plan.schema.field(i).name)  # type: ignore[union-attr]
        for i in indices
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema([plan.schema.field(i) for i in indices]))


def _placed(
    plan: Layout, indices: Sequence[int], place: Place | None, done: int
) -> dict[int, tuple[int, np.ndarray]]:
    """``{field: (where its values start, where they go)}`` for the fields read elsewhere."""
    moved: dict[int, tuple[int, np.ndarray]] = {}
    for i in indices if place is not None else ():
        spans = plan.fields[i]
        if plan.nulls[i] or len(spans) != 1 or spans[0][0] < done:  # one buffer: the values
            continue
        dest = place(plan.schema.field(i), plan.rows)  # type: ignore[misc]
        if dest is not None and len(dest) <= spans[0][1] - spans[0][0]:
            moved[i] = (spans[0][0], dest)
    return moved


def _over(kind: pa.DataType, rows: int, data: np.ndarray) -> pa.Array:
    """An array of ``rows`` values of ``kind`` (numbers, or a fixed-size list of them) over
    ``data``, without a copy."""
    buf = pa.py_buffer(data)
    if pa.types.is_fixed_size_list(kind):
        child = pa.Array.from_buffers(kind.value_type, rows * kind.list_size, [None, buf])
        return pa.Array.from_buffers(kind, rows, [None], children=[child])
    return pa.Array.from_buffers(kind, rows, [None, buf])


class Targets:
    """Where a segment's bytes go: ``out`` at their places, except the ranges ``moved``
    (``(a, b, dest)``: bytes ``[a, b)`` to ``dest``) -- a store writes into it as into ``out``."""

    def __init__(self, out: np.ndarray, moved: Sequence[tuple[int, int, np.ndarray]]) -> None:
        self.out = out
        self.moved = sorted(moved, key=lambda m: m[0])
        self._starts = [m[0] for m in self.moved]

    def __len__(self) -> int:
        return len(self.out)

    def __setitem__(self, where: slice, value: np.ndarray) -> None:
        s, e = int(where.start), int(where.stop)
        i = max(bisect.bisect_right(self._starts, s) - 1, 0)
        at = s
        while at < e:
            if i < len(self.moved) and self.moved[i][1] <= at:
                i += 1
            elif i < len(self.moved) and self.moved[i][0] <= at:
                a, b, dest = self.moved[i]
                stop = min(b, e)
                dest[at - a : stop - a] = value[at - s : stop - s]
                at, i = stop, i + 1
            else:
                stop = min(e, self.moved[i][0]) if i < len(self.moved) else e
                self.out[at:stop] = value[at - s : stop - s]
                at = stop


# -- the IPC framing and the flatbuffers of its metadata ------------------------------


def _u32(buf: memoryview, at: int) -> int:
    if at + 4 > len(buf):
        raise Incomplete(at + 4)
    return int(struct.unpack_from("<I", buf, at)[0])


def _message(buf: memoryview, at: int) -> tuple[tuple[int, int], int]:
    """``((metadata start, metadata length), where the body starts)`` of the message at ``at``."""
    if _u32(buf, at) != _CONTINUATION:
        raise _Unsupported  # the framing before Arrow 0.15: not written here
    size = _u32(buf, at + 4)
    start = at + 8
    if start + size > len(buf):
        raise Incomplete(start + size)
    return (start, size), start + size


class _Unsupported(Exception):
    """Not a layout this module reads (the caller reads the segment whole)."""


def _table(buf: memoryview, at: int) -> tuple[int, int, int]:
    """``(table, vtable, vtable size)`` of the flatbuffer table at ``at``."""
    vtable = at - struct.unpack_from("<i", buf, at)[0]
    return at, vtable, struct.unpack_from("<H", buf, vtable)[0]


def _slot(buf: memoryview, table: tuple[int, int, int], i: int) -> int:
    """Where field ``i`` of ``table`` lies (0 when absent: its default)."""
    at, vtable, size = table
    if 4 + 2 * i >= size:
        return 0
    off = struct.unpack_from("<H", buf, vtable + 4 + 2 * i)[0]
    return at + off if off else 0


def _deref(buf: memoryview, slot: int) -> int:
    return slot + int(struct.unpack_from("<I", buf, slot)[0])


def _header(buf: memoryview, start: int, size: int) -> tuple[int, int, int | None]:
    """A ``Message``'s header type, body length and header table."""
    msg = _table(buf, start + struct.unpack_from("<I", buf, start)[0])
    kind_at, header_at, body_at = (_slot(buf, msg, i) for i in (1, 2, 3))
    kind = int(buf[kind_at]) if kind_at else 0
    body = int(struct.unpack_from("<q", buf, body_at)[0]) if body_at else 0
    return kind, body, (_deref(buf, header_at) if header_at else None)


def _record_batch(buf: memoryview, at: int) -> tuple[int, list[int], list[tuple[int, int]]] | None:
    """A ``RecordBatch``'s rows, its nodes' null counts and its buffers (``None``: compressed,
    or view types)."""
    batch = _table(buf, at)
    if _slot(buf, batch, 3) or _slot(buf, batch, 4):  # compression, variadic buffer counts
        return None
    rows_at = _slot(buf, batch, 0)
    rows = int(struct.unpack_from("<q", buf, rows_at)[0]) if rows_at else 0
    return rows, [n for _, n in _structs(buf, batch, 1)], _structs(buf, batch, 2)


def _structs(buf: memoryview, table: tuple[int, int, int], i: int) -> list[tuple[int, int]]:
    """A vector of two-``long`` structs (``FieldNode``: length and nulls; ``Buffer``: offset
    and length), field ``i`` of ``table``."""
    at = _slot(buf, table, i)
    if not at:
        return []
    vec = _deref(buf, at)
    count = _u32(buf, vec)
    flat = np.frombuffer(buf, dtype="<i8", count=2 * count, offset=vec + 4)
    return [(int(flat[2 * j]), int(flat[2 * j + 1])) for j in range(count)]


def _shape(kind: pa.DataType) -> tuple[int, int] | None:
    """``(nodes, buffers)`` a field of type ``kind`` takes in a batch (``None``: not read here)."""
    t = pa.types
    if t.is_null(kind):
        return 1, 0
    if any(test(kind) for test in _FIXED):
        return 1, 2
    if t.is_string(kind) or t.is_binary(kind) or t.is_large_string(kind) or t.is_large_binary(kind):
        return 1, 3
    own = next((n for test, n in _NESTED if test(kind)), None)
    if own is None:  # views, unions, dictionaries, run-end encoding, extension types
        return None
    nodes, bufs = 1, own
    for i in range(kind.num_fields):
        child = _shape(kind.field(i).type)
        if child is None:
            return None
        nodes, bufs = nodes + child[0], bufs + child[1]
    return nodes, bufs


#: Types of one validity and one data buffer.
_FIXED = (
    pa.types.is_boolean,
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_temporal,
    pa.types.is_fixed_size_binary,
)
#: Nested types, and the buffers of their own (their children's follow).
_NESTED = (
    (pa.types.is_map, 2),
    (pa.types.is_list, 2),
    (pa.types.is_large_list, 2),
    (pa.types.is_fixed_size_list, 1),
    (pa.types.is_struct, 1),
)
