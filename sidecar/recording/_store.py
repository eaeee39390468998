"""The Store protocol, the SQL store shared by SQLite and PostgreSQL, and ``open_store``.

SQLite and PostgreSQL share one schema and one code path; a dialect supplies
only how to connect, its parameter marker and how to write a batch fast. A
store is chosen by URL:

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
- ``postgresql://user@host:5432/dbname`` (psycopg 3)
- ``memory://`` (one process; for tests)
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._errors import InputError, StoreError
from .._redact import redact_url, scrub, secrets_of
from ._schema import COLUMNS, LATEST

__all__ = [
    "FeedbackResult",
    "Label",
    "Store",
    "WriterStats",
    "open_store",
]

PredictionRow = tuple[Any, ...]


@dataclass(frozen=True)
class Label:
    """Ground truth for one served record."""

    request_id: str
    label: Any
    ts: float | None = None


@dataclass(frozen=True)
class FeedbackResult:
    """What became of a batch of labels."""

    accepted: int
    unknown_request_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "unknown_request_ids": list(self.unknown_request_ids)}


@dataclass(frozen=True)
class WriterStats:
    """One recording process's running totals, as stored in ``sidecar_writers``."""

    writer_id: str
    host: str
    pid: int
    started_at: float
    updated_at: float
    enqueued: int
    written: int
    dropped: int
    failed_commits: int


@runtime_checkable
class Store(Protocol):
    """Where predictions and labels live. Every method is safe to call from any thread."""

    url: str

    def migrate(self) -> int:
        """Bring the schema to the latest version (idempotent); return that version."""
        ...

    def write_predictions(self, rows: Sequence[PredictionRow], writer: WriterStats | None) -> int:
        """Insert prediction rows in one transaction (a known request id is left alone)."""
        ...

    def upsert_labels(self, labels: Sequence[Label]) -> FeedbackResult:
        """Store labels for known request ids (a newer label replaces an older one)."""
        ...

    def iter_joined(
        self, *, since: float | None = None, until: float | None = None, chunk_size: int = 50_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Prediction rows with their label (``None`` when none came), in time order, in chunks."""
        ...

    def count(self) -> dict[str, int]:
        """Number of predictions and of labels."""
        ...

    def writers(self) -> list[WriterStats]: ...

    def close(self) -> None: ...


def dumps(value: Any) -> str:
    """Compact JSON for a stored cell (NumPy scalars become Python numbers).

    A broken model's NaN is stored as the ``NaN`` literal Python's ``json``
    reads back, rather than losing the record.
    """
    return _ENCODER.encode(value)


def _default(obj: Any) -> Any:
    item = getattr(obj, "item", None)
    if item is not None:
        return item()
    raise TypeError(f"a {type(obj).__name__} cannot be stored as JSON")


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default)


#: Rows per INSERT statement (20 columns x 32 rows stays under SQLite's oldest
#: limit of 999 parameters).
ROWS_PER_INSERT = 32


class SQLStore:
    """The one implementation over a DB-API connection; see :class:`Store`."""

    dialect = "sql"
    marker = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._migrated = False

    # -- dialect hooks ------------------------------------------------------------

    def _connect(self) -> Any:  # pragma: no cover - every dialect overrides it
        raise NotImplementedError

    def _insert_many(
        self, cur: Any, table: str, columns: Sequence[str], rows: Sequence[Any], conflict: str
    ) -> None:
        """Insert ``rows`` with multi-row ``VALUES`` lists, ``ROWS_PER_INSERT`` at a time.

        ``executemany`` steps the statement once per row, and the drivers let go
        of the GIL around every step: in a serving process the request thread
        then takes it, and the writer waits a whole switch interval (5 ms) to
        get it back -- for every row. One statement per chunk binds a chunk's
        values in one go and lets go once.
        """
        cols = ", ".join(columns)
        one = "(" + ", ".join([self.marker] * len(columns)) + ")"
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            values = ", ".join([one] * len(chunk))
            cur.execute(
                f"INSERT INTO {table} ({cols}) VALUES {values} {conflict}",
                [value for row in chunk for value in row],
            )

    # -- connection handling ------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _reset(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    def _begin(self, cur: Any, write: bool) -> None:
        """Start a transaction explicitly (dialects whose driver does not)."""

    def _run(self, work: Any, *, write: bool = False, migrating: bool = False) -> Any:
        """Run ``work(cursor)`` in one transaction; a broken connection is reopened next time.

        The schema is migrated before the first piece of work, so a store opened
        with ``migrate=False`` (say, while its server was down) heals itself.
        """
        if not self._migrated and not migrating:
            self.migrate()
        try:
            conn = self._conn()
            with _transaction(conn) as cur:
                self._begin(cur, write)
                return work(cur)
        except StoreError:
            raise
        except Exception as exc:
            self._reset()
            raise _store_error(self.url, exc) from (None if secrets_of(self.url) else exc)

    # -- schema -------------------------------------------------------------------

    def migrate(self) -> int:
        from ._schema import migrations

        steps = migrations(self.dialect)

        def work(cur: Any) -> int:
            self._lock_for_migration(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS sidecar_meta "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            cur.execute(
                f"SELECT value FROM sidecar_meta WHERE key = {self.marker}", ("schema_version",)
            )
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            if current > LATEST:
                raise StoreError(
                    f"the store {redact_url(self.url)} has schema version {current}, newer than "
                    f"this model-sidecar understands ({LATEST}); upgrade model-sidecar."
                )
            for version in range(current + 1, LATEST + 1):
                for statement in steps[version]:
                    cur.execute(statement)
            if current < LATEST:
                if row:
                    cur.execute(
                        f"UPDATE sidecar_meta SET value = {self.marker} WHERE key = {self.marker}",
                        (str(LATEST), "schema_version"),
                    )
                else:
                    cur.execute(
                        f"INSERT INTO sidecar_meta (key, value) VALUES ({self.marker}, "
                        f"{self.marker})",
                        ("schema_version", str(LATEST)),
                    )
            return LATEST

        version = int(self._run(work, write=True, migrating=True))
        self._migrated = True
        return version

    def _lock_for_migration(self, cur: Any) -> None:
        """Serialise concurrent migrations (dialects override)."""

    # -- writes -------------------------------------------------------------------

    def write_predictions(self, rows: Sequence[PredictionRow], writer: WriterStats | None) -> int:
        def work(cur: Any) -> int:
            if rows:
                self._insert_many(
                    cur, "sidecar_predictions", COLUMNS, rows, "ON CONFLICT (request_id) DO NOTHING"
                )
            if writer is not None:
                self._upsert_writer(cur, writer)
            return len(rows)

        return int(self._run(work, write=True))

    def _upsert_writer(self, cur: Any, w: WriterStats) -> None:
        m = self.marker
        cur.execute(
            "INSERT INTO sidecar_writers (writer_id, host, pid, started_at, updated_at, enqueued, "
            f"written, dropped, failed_commits) VALUES ({', '.join([m] * 9)}) "
            "ON CONFLICT (writer_id) DO UPDATE SET updated_at = excluded.updated_at, "
            "enqueued = excluded.enqueued, written = excluded.written, "
            "dropped = excluded.dropped, failed_commits = excluded.failed_commits",
            (
                w.writer_id,
                w.host,
                w.pid,
                w.started_at,
                w.updated_at,
                w.enqueued,
                w.written,
                w.dropped,
                w.failed_commits,
            ),
        )

    def upsert_labels(self, labels: Sequence[Label]) -> FeedbackResult:
        now = time.time()
        latest: dict[str, tuple[str, float]] = {}
        for lab in labels:  # the last label for an id in one batch wins
            latest[lab.request_id] = (dumps(lab.label), lab.ts if lab.ts is not None else now)
        ids = list(latest)

        def work(cur: Any) -> FeedbackResult:
            known: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join([self.marker] * len(chunk))
                cur.execute(
                    f"SELECT request_id FROM sidecar_predictions WHERE request_id IN ({marks})",
                    chunk,
                )
                known.update(r[0] for r in cur.fetchall())
            rows = [(rid, *latest[rid]) for rid in ids if rid in known]
            if rows:
                self._insert_many(
                    cur,
                    "sidecar_labels",
                    ("request_id", "label", "ts"),
                    rows,
                    "ON CONFLICT (request_id) DO UPDATE SET label = excluded.label, "
                    "ts = excluded.ts",
                )
            unknown = tuple(rid for rid in ids if rid not in known)
            return FeedbackResult(accepted=len(rows), unknown_request_ids=unknown)

        result: FeedbackResult = self._run(work, write=True)
        return result

    # -- reads --------------------------------------------------------------------

    def iter_joined(
        self, *, since: float | None = None, until: float | None = None, chunk_size: int = 50_000
    ) -> Iterator[list[dict[str, Any]]]:
        m = self.marker
        cols = ", ".join(f"p.{c}" for c in COLUMNS)
        names = [*COLUMNS, "label", "label_ts"]
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        last_ts, last_id = lo, ""
        first = True
        while True:
            # Keyset pagination on (ts, request_id): each chunk is one short query,
            # so a long analysis never holds a transaction or loads everything.
            op = ">=" if first else ">"

            def work(
                cur: Any, last_ts: float = last_ts, last_id: str = last_id, op: str = op
            ) -> list[tuple[Any, ...]]:
                cur.execute(
                    f"SELECT {cols}, l.label, l.ts FROM sidecar_predictions p "
                    "LEFT JOIN sidecar_labels l ON l.request_id = p.request_id "
                    f"WHERE (p.ts > {m} OR (p.ts = {m} AND p.request_id {op} {m})) AND p.ts < {m} "
                    f"ORDER BY p.ts, p.request_id LIMIT {int(chunk_size)}",
                    (_finite(last_ts), _finite(last_ts), last_id, _finite(hi)),
                )
                return list(cur.fetchall())

            rows = self._run(work)
            if not rows:
                return
            first = False
            yield [dict(zip(names, r, strict=True)) for r in rows]
            last_ts, last_id = rows[-1][1], rows[-1][0]
            if len(rows) < chunk_size:
                return

    def count(self) -> dict[str, int]:
        def work(cur: Any) -> dict[str, int]:
            cur.execute("SELECT COUNT(*) FROM sidecar_predictions")
            predictions = int(cur.fetchone()[0])
            cur.execute("SELECT COUNT(*) FROM sidecar_labels")
            return {"predictions": predictions, "labels": int(cur.fetchone()[0])}

        result: dict[str, int] = self._run(work)
        return result

    def writers(self) -> list[WriterStats]:
        def work(cur: Any) -> list[WriterStats]:
            cur.execute(
                "SELECT writer_id, host, pid, started_at, updated_at, enqueued, written, dropped, "
                "failed_commits FROM sidecar_writers ORDER BY started_at"
            )
            return [WriterStats(*r) for r in cur.fetchall()]

        result: list[WriterStats] = self._run(work)
        return result

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


def _store_error(url: str, exc: BaseException) -> StoreError:
    """A :class:`StoreError` for ``exc`` that names the store without its secrets.

    The driver's own message is kept (scrubbed too: it may quote the URL);
    the cause is chained only when the URL holds no secret, so a logged
    traceback cannot show one.
    """
    return StoreError(scrub(f"the store {url} failed: {type(exc).__name__}: {exc}", url))


def _finite(x: float) -> float:
    return max(min(x, 1e300), -1e300)


class _transaction:
    """``with _transaction(conn) as cur``: commit on success, roll back on error."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> Any:
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.cur.close()


def default_writer_identity() -> tuple[str, int]:
    import os

    return socket.gethostname(), os.getpid()


def open_store(url: str, *, migrate: bool = True, create: bool = True) -> Store:
    """Open the store named by ``url`` and (by default) migrate its schema forward.

    With ``create=False`` -- for reading, as ``diagnose`` does -- a SQLite file
    that does not exist is an error instead of a new empty store.
    """
    store: Store
    if url.startswith("sqlite://"):
        from ._sqlite import SQLiteStore

        store = SQLiteStore(url, create=create)
    elif url.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        store = PostgresStore(url)
    elif url.startswith("memory://"):
        from ._memory import MemoryStore

        store = MemoryStore(url)
    else:
        raise InputError(
            "a store URL must start with sqlite://, postgresql:// or memory://; "
            f"got {redact_url(url)!r}. Example: sqlite:///records.db"
        )
    if migrate:
        store.migrate()
    return store
