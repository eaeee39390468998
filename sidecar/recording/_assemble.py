"""A window's segments copied once into columns of the whole window, and segment bytes read into
one reused buffer.

Reading a window used to keep every segment's bytes alive (the tables read
from them point into them) and then copy the columns out again into the
arrays analysis reads: two fresh copies of hundreds of megabytes, and on
Linux the cost is mostly the kernel's page faults on that fresh memory, not
the copying. Here a store reads each segment into a :class:`Scratch` buffer
it reuses, and an :class:`Assembler` copies the segment's columns into
arrays sized for the whole window before the next segment overwrites it:
numbers and fixed-size lists (raw inputs, features, predictions,
probabilities) straight into one NumPy buffer per column, anything else
(text, lists of any length, columns with nulls) as an Arrow copy of its own.
The window then comes back as one chunk per column, which NumPy views
without a copy.
"""

from __future__ import annotations

import contextlib
import importlib
import mmap
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["Assembler", "Scratch", "ordinary_pages"]

#: Buffers from this size on are mapped with every page at once (see ``_bytes``).
_MAPPED = 1 << 20


class Scratch:
    """One growing byte buffer, reused for segment after segment (its pages are touched once).

    With ``reuse=False`` each segment gets a buffer of its own instead, for a
    read that keeps the segments (every column wanted: copying them out again
    would cost more than it saves); after :meth:`recycle`, the buffers lent
    before are lent again (export: the next piece of a window into the last
    one's memory, not fresh pages).
    """

    def __init__(self, *, reuse: bool = True) -> None:
        self.reuse = reuse
        self._buf = np.empty(0, dtype=np.uint8)
        self._lent: list[np.ndarray] = []
        self._free: list[np.ndarray] = []

    def get(self, nbytes: int) -> np.ndarray:
        """A writable buffer of ``nbytes`` bytes; what an earlier call returned is overwritten
        (unless the scratch does not reuse)."""
        if not self.reuse:
            fits = [i for i, b in enumerate(self._free) if len(b) >= nbytes]
            if fits:
                buf = self._free.pop(min(fits, key=lambda i: len(self._free[i])))
            else:
                buf = _bytes(nbytes)
            self._lent.append(buf)
            return buf[:nbytes]
        if len(self._buf) < nbytes:
            self._buf = _bytes(max(nbytes, int(len(self._buf) * 1.25)))
        return self._buf[:nbytes]

    def recycle(self) -> None:
        """Lend the buffers lent so far again: nothing reads what they hold any more."""
        self._free.extend(self._lent)
        self._lent = []


def _bytes(n: int) -> np.ndarray:
    """``n`` writable bytes in ordinary pages, mapped up front where the system can.

    Not NumPy's allocator, nor Arrow's (mimalloc): both ask the kernel for
    transparent huge pages for large buffers, and on the machine measured
    (issue #12, a 2-core virtual machine) those page faults cost two to three
    times the 4 KB faults of the same bytes. ``MAP_POPULATE`` maps every page
    in one call instead of one fault per page (about a third less CPU).
    """
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if n < _MAPPED or not populate:
        return np.frombuffer(bytearray(n), dtype=np.uint8)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate
    return np.frombuffer(mmap.mmap(-1, n, flags=flags), dtype=np.uint8)


_pages_lock = threading.Lock()
_pages_depth = 0
_pages_saved = True


@contextlib.contextmanager
def ordinary_pages() -> Iterator[None]:
    """NumPy's large arrays in ordinary 4 KB pages while the block runs (in every thread).

    NumPy asks the kernel for transparent huge pages for each array of 4 MB
    or more. What a huge page's first touch costs depends on the machine's
    state (on the virtual machine measured, none of it compaction: the 2 MB
    blocks are memory the host has not backed yet): reading a window of 1M
    records (issue #12) spent 0.25-0.3 s more system time with the hint than
    with ``NUMPY_MADVISE_HUGEPAGE=0`` in two A/B runs of four (a quarter of the
    read), and 0.05 s less in one. An analysis fills its arrays once and reads
    them a few times: too little for huge pages to pay back a bad case. Left
    alone when the environment sets ``NUMPY_MADVISE_HUGEPAGE`` (the user
    chose), or NumPy has no such switch.
    """
    global _pages_depth, _pages_saved
    setter = _hugepage_switch()
    if setter is None or "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        yield
        return
    with _pages_lock:
        if not _pages_depth:
            _pages_saved = bool(setter(False))
        _pages_depth += 1
    try:
        yield
    finally:
        with _pages_lock:
            _pages_depth -= 1
            if not _pages_depth:
                setter(_pages_saved)


def _hugepage_switch() -> Any:
    """NumPy's (private, since 1.20) switch of its huge-page hint, or ``None``."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
        except ImportError:
            continue
    return None


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def _fixed_width(kind: pa.DataType) -> int:
    """Bytes per value of a number type (0 for any other type)."""
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return int(kind.bit_width // 8)
    return 0


def _row_width(kind: pa.DataType) -> int:
    """Bytes per row when ``kind`` can be copied as one flat run of bytes, else 0."""
    if pa.types.is_fixed_size_list(kind):
        return int(kind.list_size) * _fixed_width(kind.value_type)
    return _fixed_width(kind)


class _Column:
    """One column of the window: its chunk per segment, numbers in one buffer where they can be."""

    def __init__(self, kind: pa.DataType, capacity: int) -> None:
        self.kind = kind
        self.width = _row_width(kind)
        self.capacity = capacity
        self.dest: np.ndarray | None = None  # allocated on the first flat copy
        self.chunks: dict[int, list[tuple[int, int] | pa.Array]] = {}

    def add(self, piece: int, col: pa.ChunkedArray, row: int) -> None:
        out = self.chunks.setdefault(piece, [])
        for chunk in col.chunks:
            if not len(chunk):
                continue
            flat = self._flat(chunk)
            if flat is None:
                out.append(pa.concat_arrays([chunk]))  # a copy of its own
                continue
            n = len(chunk)
            self._reserve(row + n)
            assert self.dest is not None
            target = self.dest[row * self.width : (row + n) * self.width]
            if _address(target) != _address(flat):  # else read straight there (``slot``)
                target[:] = flat
            out.append((row, row + n))
            row += n

    def _reserve(self, rows: int) -> None:
        """Room for ``rows`` rows (more than the hint: a commit landed after it was taken)."""
        if self.dest is None:
            self.dest = _bytes(max(self.capacity, rows) * self.width)
        elif len(self.dest) < rows * self.width:
            grown = _bytes(max(rows, len(self.dest) // self.width * 3 // 2) * self.width)
            grown[: len(self.dest)] = self.dest
            self.dest = grown

    def _flat(self, chunk: pa.Array) -> np.ndarray | None:
        """The chunk's values as bytes, when it is numbers (or a fixed-size list of them) and
        holds no null."""
        if not self.width or not chunk.type.equals(self.kind) or chunk.null_count:
            return None
        values = chunk
        if pa.types.is_fixed_size_list(self.kind):
            values = chunk.flatten()
            if values.null_count:
                return None
        w = _fixed_width(values.type)
        data = values.buffers()[1]
        if data is None:
            return None
        return np.frombuffer(data, dtype=np.uint8, count=len(values) * w, offset=values.offset * w)

    def arrays(self, piece: int) -> list[pa.Array]:
        """The column's chunks of one segment (several when its rows sat in one run)."""
        return [self._wrap(c) if isinstance(c, tuple) else c for c in self.chunks.get(piece, [])]

    def whole(self, n: int) -> pa.Array | None:
        """The column as one array over its buffer when every row was copied into it, in order."""
        if self.dest is None:
            return None
        spans = [c for chunks in self.chunks.values() for c in chunks]
        if not all(isinstance(c, tuple) for c in spans) or sum(b - a for a, b in spans) != n:
            return None
        return self._wrap((0, n))

    def _wrap(self, span: tuple[int, int]) -> pa.Array:
        """Rows ``[a, b)`` of the buffer as an Arrow array of the column's type (no copy)."""
        assert self.dest is not None
        a, b = span
        data = pa.py_buffer(self.dest[a * self.width : b * self.width])
        if pa.types.is_fixed_size_list(self.kind):
            k = int(self.kind.list_size)
            child = pa.Array.from_buffers(self.kind.value_type, (b - a) * k, [None, data])
            return pa.Array.from_buffers(self.kind, b - a, [None], children=[child])
        return pa.Array.from_buffers(self.kind, b - a, [None, data])


class Assembler:
    """Segments in, one table out; each segment may be overwritten once :meth:`add` returns."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.n = 0
        self._schemas: list[pa.Schema] = []
        self._rows: list[int] = []
        self._columns: dict[tuple[str, str], _Column] = {}

    def add(self, table: pa.Table) -> None:
        """Copy ``table``'s rows (``capacity`` is the rows expected in all: more cost a copy)."""
        if not table.num_rows:
            return
        piece = len(self._schemas)
        for field, col in zip(table.schema, table.columns, strict=True):
            key = (field.name, str(field.type))
            if key not in self._columns:
                self._columns[key] = _Column(field.type, self.capacity)
            self._columns[key].add(piece, col, self.n)
        self._schemas.append(table.schema)
        self._rows.append(table.num_rows)
        self.n += table.num_rows

    def slot(self, field: pa.Field, rows: int) -> np.ndarray | None:
        """Room for the next segment's ``rows`` values of ``field`` when it is numbers (or
        fixed-size lists of them): a store may read them straight there, and :meth:`add`
        finds them in place instead of copying them."""
        key = (field.name, str(field.type))
        if key not in self._columns:
            self._columns[key] = _Column(field.type, self.capacity)
        column = self._columns[key]
        if not column.width:
            return None
        column._reserve(self.n + rows)
        assert column.dest is not None
        return column.dest[self.n * column.width : (self.n + rows) * column.width]

    def table(self) -> pa.Table | None:
        """Every row added, in order (``None`` when none was)."""
        if not self._schemas:
            return None
        schema = self._schemas[0]
        if all(s.equals(schema) for s in self._schemas[1:]):
            columns: list[Any] = []
            for field in schema:
                column = self._columns[(field.name, str(field.type))]
                whole = column.whole(self.n)
                if whole is None:
                    parts = [a for p in range(len(self._schemas)) for a in column.arrays(p)]
                    whole = pa.chunked_array(parts, field.type)
                columns.append(whole)
            return pa.Table.from_arrays(columns, schema=schema)
        tables = []  # the segments' schemas differ (a bundle with other inputs): join as before
        for piece, s in enumerate(self._schemas):
            cols = [
                pa.chunked_array(self._columns[(f.name, str(f.type))].arrays(piece), f.type)
                for f in s
            ]
            tables.append(pa.Table.from_arrays(cols, schema=s))
        return pa.concat_tables(tables, promote_options="permissive")
