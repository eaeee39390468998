"""The Store protocol, what it returns, and ``open_store``.

A store keeps records as columnar segments (see ``_columnar``); SQLite and
PostgreSQL share one schema and one code path (``_sql``). A store is chosen
by URL:

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
- ``postgresql://user@host:5432/dbname`` (psycopg 3)
- ``memory://`` (one process; for tests)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import InputError, StoreError
from .._redact import redact_url, scrub

if TYPE_CHECKING:
    import pyarrow as pa

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

    def write_batch(self, batch: pa.Table, writer: WriterStats | None) -> int:
        """Store a batch of records (``_records.encode_records``) in one transaction.

        A request id the store knows already is left alone (so is the second of
        two in one batch); returns how many records the batch held.
        """
        ...

    def write_predictions(self, rows: Sequence[PredictionRow], writer: WriterStats | None) -> int:
        """``write_batch`` for rows in the row form of schema version 1 (JSON text cells)."""
        ...

    def upsert_labels(self, labels: Sequence[Label]) -> FeedbackResult:
        """Store labels for known request ids (a newer label replaces an older one)."""
        ...

    def read_window(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        columns: Sequence[str] | None = None,
        bundle_version: str | None = None,
        max_bytes: int | None = None,
    ) -> pa.Table:
        """The records in ``[since, until)`` as typed columns with their labels, in time order."""
        ...

    def window_size(
        self, *, since: float | None = None, until: float | None = None
    ) -> tuple[int, int]:
        """At most how many records ``[since, until)`` holds, and their stored bytes."""
        ...

    def iter_batches(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        columns: Sequence[str] | None = None,
        rows: int = 500_000,
        reuse: bool = False,
    ) -> Iterator[pa.Table]:
        """The window in pieces of whole segments (store order), each joined to its labels;
        with ``reuse``, each piece in the memory of the one before (read it first)."""
        ...

    def iter_joined(
        self, *, since: float | None = None, until: float | None = None, chunk_size: int = 50_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Records in the row form with their label (``None`` when none came), in chunks."""
        ...

    def count(self) -> dict[str, int]:
        """Number of predictions and of labels."""
        ...

    def writers(self) -> list[WriterStats]: ...

    def close(self) -> None: ...


def _store_error(url: str, exc: BaseException) -> StoreError:
    """A :class:`StoreError` for ``exc`` that names the store without its secrets.

    The driver's own message is kept (scrubbed too: it may quote the URL);
    the cause is chained only when the URL holds no secret, so a logged
    traceback cannot show one.
    """
    return StoreError(scrub(f"the store {url} failed: {type(exc).__name__}: {exc}", url))


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
