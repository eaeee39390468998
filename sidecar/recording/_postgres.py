"""PostgreSQL for many replicas on many machines (psycopg 3); same schema, same code path."""

from __future__ import annotations

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
_SLICES = (
    "COPY (SELECT substring(data from s for {piece}) FROM sidecar_segments, "
    "generate_series(1, octet_length(data), CASE WHEN pg_column_compression(data) IS NULL "
    "THEN {piece} ELSE octet_length(data) END) AS s WHERE seq_lo = {seq_lo} ORDER BY s) "
    "TO STDOUT (FORMAT binary)"
)


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
        # buffer one by one: libpq and Python allocate each slice where the last one was
        # freed, where a whole segment's value was fresh memory twice over (the kernel's
        # page faults cost more than the copies). A compressed value (stored before
        # version 3) is one slice: each slice of it would be decompressed from its start.
        at = -1
        if self._sliced(cur):
            out, at = scratch.get(nbytes), 0
            with cur.copy(_SLICES.format(seq_lo=int(seq_lo), piece=_PIECE)) as copy:
                copy.set_types(["bytea"])
                while (row := copy.read_row()) is not None:
                    piece = row[0]
                    if at + len(piece) <= nbytes:
                        out[at : at + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                    at += len(piece)
        if at != nbytes:  # a server before 14, or not the size recorded: read it whole
            cur.execute(
                "SELECT data FROM sidecar_segments WHERE seq_lo = %s", (seq_lo,), binary=True
            )
            return cur.fetchone()[0]
        return out

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
