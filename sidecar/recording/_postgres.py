"""PostgreSQL for many replicas on many machines (psycopg 3); same schema, same code path."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import StoreError
from .._optional import import_optional
from ._assemble import Scratch
from ._sql import SQLStore

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x51DECA7
_WRITE_LOCK = 0x51DECA8
#: Bytes of a segment per row of the COPY that reads it: under the C library's threshold
#: for a memory map of its own, so each slice reuses the memory of the one before.
_PIECE = 1 << 16
#: A whole segment as rows of (offset, slice); a compressed value as one slice (below).
_WHOLE = (
    "COPY (SELECT s - 1, substring(data from s for {piece}) FROM sidecar_segments, "
    "generate_series(1, octet_length(data), CASE WHEN pg_column_compression(data) IS NULL "
    "THEN {piece} ELSE octet_length(data) END) AS s WHERE seq_lo = {seq_lo}) "
    "TO STDOUT (FORMAT binary)"
)
#: Given slices of a segment, as rows of (offset, slice); none of a compressed value.
_SLICES = (
    "COPY (SELECT r.a, substring(data from r.a + 1 for r.n) FROM sidecar_segments, "
    "unnest('{{{starts}}}'::int[], '{{{lengths}}}'::int[]) AS r(a, n) "
    "WHERE seq_lo = {seq_lo} AND pg_column_compression(data) IS NULL) TO STDOUT (FORMAT binary)"
)
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: A row's start: its field count (2), the offset's size (4), the offset, the slice's size.
_ROW = struct.Struct(">hiii")


def _psycopg() -> Any:
    return import_optional(
        "psycopg", extra="postgres", needed_by="a PostgreSQL store", error=StoreError
    )


class PostgresStore(SQLStore):
    """``postgresql://user@host:port/dbname``.

    Index rows go in with ``COPY`` into a per-transaction staging table and
    one ``INSERT ... ON CONFLICT DO NOTHING``, so a retried batch never
    duplicates; writers take an advisory lock for their sequence numbers, and
    migrations another, so replicas starting together migrate once. Reads run
    at ``REPEATABLE READ``: one snapshot for all the segments of a window.
    """

    dialect = "postgresql"
    marker = "%s"

    def _connect(self) -> Any:
        psycopg = _psycopg()
        return psycopg.connect(self.url, autocommit=False, connect_timeout=5)

    def _lock_for_migration(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _segment_bytes(self, cur: Any, seq_lo: int, nbytes: int, scratch: Scratch) -> Any:
        # A segment as rows of _PIECE-byte slices, by binary COPY, copied into the scratch
        # buffer one by one: libpq allocates each slice where the last one was freed, where
        # a whole segment's value was fresh memory twice over (the kernel's page faults cost
        # more than the copies). A compressed value (stored before version 3) is one slice:
        # each slice of it would be decompressed from its start.
        if self._sliced(cur):
            out = scratch.get(nbytes)
            with cur.copy(_WHOLE.format(seq_lo=int(seq_lo), piece=_PIECE)) as copy:
                if _copy_into(copy, out) == nbytes:
                    return out
        # a server before 14, or not the size recorded: read it whole
        cur.execute("SELECT data FROM sidecar_segments WHERE seq_lo = %s", (seq_lo,), binary=True)
        return cur.fetchone()[0]

    def _segment_ranges(
        self, cur: Any, seq_lo: int, spans: Sequence[tuple[int, int]], out: Any
    ) -> bool:
        # Slices of an uncompressed value only: a compressed one would be inflated from its
        # start for each slice (no row comes back, and the caller reads it whole).
        if not self._sliced(cur):
            return False
        starts = [s for a, b in spans for s in range(a, b, _PIECE)]
        if not starts:
            return True
        lengths = [min(_PIECE, b - s) for a, b in spans for s in range(a, b, _PIECE)]
        sql = _SLICES.format(
            seq_lo=int(seq_lo),
            starts=",".join(map(str, starts)),
            lengths=",".join(map(str, lengths)),
        )
        with cur.copy(sql) as copy:
            return _copy_into(copy, out) == sum(lengths)

    def _sliced(self, cur: Any) -> bool:
        """Whether the server reads slices (``pg_column_compression`` came with PostgreSQL 14)."""
        return int(cur.connection.info.server_version) >= 140000

    def _blobs(self, cur: Any, sql: str, params: Sequence[Any]) -> list[Any]:
        cur.execute(sql, params, binary=True)
        return [r[0] for r in cur.fetchall()]

    def _lock_for_write(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))

    def _begin(self, cur: Any, write: bool) -> None:
        if not write:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def _insert_many(
        self, cur: Any, table: str, columns: Sequence[str], rows: Sequence[Any], conflict: str
    ) -> int:
        if table != "sidecar_records" or len(rows) < 64:
            return super()._insert_many(cur, table, columns, rows, conflict)
        cols = ", ".join(columns)
        stage = f"sidecar_stage_{table.removeprefix('sidecar_')}"
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # A batch may name one id twice: the first (lowest seq) stays, as with VALUES.
        cur.execute(
            f"INSERT INTO {table} ({cols}) SELECT DISTINCT ON (request_id) {cols} FROM {stage} "
            f"ORDER BY request_id, seq {conflict}"
        )
        done = max(cur.rowcount, 0)
        cur.execute(f"DELETE FROM {stage}")
        return int(done)


def _copy_into(copy: Any, out: Any) -> int:
    """The ``(offset, slice)`` rows of a binary COPY written into ``out`` at their offsets;
    how many bytes came (-1 if a slice fell outside ``out``: it is then left unwritten).

    The stream is parsed here, not by psycopg's ``read_row``, which makes a ``bytes`` of
    every slice (one more copy of the whole segment) and a tuple per row. A row may span
    messages (the protocol does not tie messages to rows, though PostgreSQL sends one each).
    """
    pending, started, fits = b"", False, True
    at = left = total = 0
    while chunk := copy.read():
        view = memoryview(pending + bytes(chunk)) if pending else memoryview(chunk)
        pending, i, n = b"", 0, len(view)
        if not started:
            if n < 19 or n < 19 + int.from_bytes(view[15:19], "big"):
                pending = bytes(view)
                continue
            if bytes(view[:11]) != _SIGNATURE:
                raise StoreError("PostgreSQL sent a COPY stream of an unknown format")
            i, started = 19 + int.from_bytes(view[15:19], "big"), True
        while i < n:
            if left:
                k = min(left, n - i)
                if fits:
                    out[at : at + k] = np.frombuffer(view, dtype=np.uint8, count=k, offset=i)
                at, left, i, total = at + k, left - k, i + k, total + k
            elif n - i >= 2 and view[i] == 0xFF and view[i + 1] == 0xFF:  # the trailer
                i += 2
            elif n - i >= _ROW.size:
                fields, size, at, left = _ROW.unpack_from(view, i)
                if fields != 2 or size != 4 or left < 0:
                    raise StoreError("PostgreSQL sent a COPY row of an unexpected shape")
                fits = fits and at >= 0 and at + left <= len(out)
                i += _ROW.size
            else:
                pending = bytes(view[i:])
                break
    if pending or left or not started:
        raise StoreError("PostgreSQL's COPY stream ended inside a row")
    return total if fits else -1
