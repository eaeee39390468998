"""PostgreSQL for many replicas on many machines (psycopg 3); same schema, same code path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import StoreError
from ._sql import SQLStore

__all__ = ["PostgresStore"]

_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("l1", ">i4"),
        ("packed", ">i8"),
        ("l2", ">i4"),
        ("num", ">f8"),
        ("l3", ">i4"),
        ("ts", ">f8"),
    ]
)
_MIGRATION_LOCK = 0x51DECA7
_WRITE_LOCK = 0x51DECA8


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StoreError(
            "a PostgreSQL store needs psycopg; install it with "
            "`pip install 'model-sidecar[postgres]'`."
        ) from exc
    return psycopg


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

    def _number_labels(
        self, cur: Any, seq_lo: int, seq_hi: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Number labels through a binary ``COPY``, read by NumPy without a row in Python."""
        buf = bytearray()
        query = (
            "COPY (SELECT seq * 8 + kind, num, ts FROM sidecar_labels "
            f"WHERE seq >= {int(seq_lo)} AND seq < {int(seq_hi)} AND kind < 3 ORDER BY seq) "
            "TO STDOUT (FORMAT BINARY)"
        )
        with cur.copy(query) as copy:
            for data in copy:
                buf += data
        # 19 bytes of header, then rows of: field count, and (length, value) per field.
        rows = np.frombuffer(buf, _COPY_ROW, offset=19, count=(len(buf) - 21) // _COPY_ROW.itemsize)
        return rows["packed"].astype(np.int64), rows["num"].astype(np.float64), rows["ts"].astype(
            np.float64
        )

    def _lock_for_write(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))

    def _begin(self, cur: Any, write: bool) -> None:
        if not write:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def _insert_many(
        self, cur: Any, table: str, columns: Sequence[str], rows: Sequence[Any], conflict: str
    ) -> int:
        if table not in ("sidecar_records", "sidecar_labels") or len(rows) < 64:
            return super()._insert_many(cur, table, columns, rows, conflict)
        cols = ", ".join(columns)
        stage = f"sidecar_stage_{table.removeprefix('sidecar_')}"
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # A batch may name one id twice: the first (lowest seq) stays, as with VALUES.
        key = "request_id" if table == "sidecar_records" else "seq"
        cur.execute(
            f"INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {stage} "
            f"ORDER BY {key}, seq {conflict}"
        )
        done = max(cur.rowcount, 0)
        cur.execute(f"DELETE FROM {stage}")
        return int(done)
