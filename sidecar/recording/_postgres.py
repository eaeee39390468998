"""PostgreSQL for many replicas on many machines (psycopg 3); same schema, same code path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import StoreError
from ._store import SQLStore

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x51DECA7


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

    Prediction batches go in with ``COPY`` into a per-transaction staging table
    and one ``INSERT ... ON CONFLICT DO NOTHING``, so a retried batch never
    duplicates; migrations take an advisory lock, so replicas starting together
    migrate once.
    """

    dialect = "postgresql"
    marker = "%s"

    def _connect(self) -> Any:
        psycopg = _psycopg()
        return psycopg.connect(self.url, autocommit=False, connect_timeout=5)

    def _lock_for_migration(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _insert_many(
        self, cur: Any, table: str, columns: Sequence[str], rows: Sequence[Any], conflict: str
    ) -> None:
        if table != "sidecar_predictions" or len(rows) < 64:
            super()._insert_many(cur, table, columns, rows, conflict)
            return
        cols = ", ".join(columns)
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sidecar_stage "
            "(LIKE sidecar_predictions) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY sidecar_stage ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO sidecar_predictions ({cols}) SELECT {cols} FROM sidecar_stage {conflict}"
        )
