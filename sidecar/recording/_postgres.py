"""PostgreSQL for many replicas on many machines (psycopg 3); same schema, same code path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import StoreError
from .._optional import import_optional
from ._sql import SQLStore

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x51DECA7
_WRITE_LOCK = 0x51DECA8


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

    def _segment_bytes(self, cur: Any, seq_lo: int) -> Any:
        # Binary results: bytea as its bytes, not as hex text twice their size.
        cur.execute("SELECT data FROM sidecar_segments WHERE seq_lo = %s", (seq_lo,), binary=True)
        return cur.fetchone()[0]

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
