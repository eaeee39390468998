"""The SQL store SQLite and PostgreSQL share: segments, the slim index and typed labels.

A dialect supplies only how to connect, its parameter marker, how to insert
many rows fast and how writers take turns. A commit writes its records'
index rows (``request_id``, ``seq``, ``ts``) and one segment holding the
records as Arrow columns; small segments (light traffic commits a few rows
at a time) are merged in the same transaction once enough of them pile up,
so a crash leaves either the old segments or the merged one, never both.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._errors import StoreError
from .._redact import redact_url, secrets_of
from ._assemble import Scratch
from ._columnar import ColumnarReads, LabelColumns, SegmentInfo, encode_label, from_ipc
from ._ipc import Place, some_fields
from ._label_log import LabelLog, label_table
from ._records import rows_to_table
from ._schema import LATEST, migrations
from ._segments import SEGMENT_ROWS, SegmentWrites
from ._store import FeedbackResult, Label, PredictionRow, WriterStats, _store_error, _transaction

__all__ = ["SEGMENT_ROWS", "SQLStore"]

#: Most bound parameters in one statement (SQLite's oldest limit is 999).
_MAX_PARAMS = 999


class SQLStore(ColumnarReads, SegmentWrites, LabelLog):
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
    ) -> int:
        """Insert ``rows`` with multi-row ``VALUES`` lists; return how many went in.

        ``executemany`` steps the statement once per row, and the drivers let go
        of the GIL around every step: in a serving process the request thread
        then takes it, and the writer waits a whole switch interval to get it
        back -- for every row. One statement per chunk lets go once.
        """
        cols = ", ".join(columns)
        one = "(" + ", ".join([self.marker] * len(columns)) + ")"
        per = max(1, _MAX_PARAMS // len(columns))
        done = 0
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            values = ", ".join([one] * len(chunk))
            cur.execute(
                f"INSERT INTO {table} ({cols}) VALUES {values} {conflict}",
                [value for row in chunk for value in row],
            )
            done += max(cur.rowcount, 0)
        return done

    def _lock_for_write(self, cur: Any) -> None:
        """Make writers take turns at sequence numbers (dialects override)."""

    def _segment_bytes(self, cur: Any, seq_lo: int, nbytes: int, scratch: Scratch) -> Any:
        """One segment's stored bytes (``nbytes`` of them), in ``scratch`` where a dialect can.

        A dialect reads them in pieces into the one reused buffer: a fresh
        buffer per segment costs the kernel's page faults on every byte.
        """
        cur.execute(f"SELECT data FROM sidecar_segments WHERE seq_lo = {self.marker}", (seq_lo,))
        return cur.fetchone()[0]

    def _segment_ranges(
        self, cur: Any, seq_lo: int, spans: Sequence[tuple[int, int]], out: Any
    ) -> bool:
        """Bytes ``[a, b)`` of a segment into ``out[a:b]`` (an array or ``_ipc.Targets``), each
        span; ``False``: this dialect (or segment) cannot read parts of a value."""
        return False

    def _lock_for_migration(self, cur: Any) -> None:
        """Serialise concurrent migrations (dialects override)."""

    def _begin(self, cur: Any, write: bool) -> None:
        """Start a transaction explicitly (dialects whose driver does not)."""

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
        steps = migrations(self.dialect, self._move_v1, self._move_v2_labels)
        m = self.marker

        def work(cur: Any) -> int:
            self._lock_for_migration(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS sidecar_meta "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            cur.execute(f"SELECT value FROM sidecar_meta WHERE key = {m}", ("schema_version",))
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            if current > LATEST:
                raise StoreError(
                    f"the store {redact_url(self.url)} has schema version {current}, newer than "
                    f"this model-sidecar understands ({LATEST}); upgrade model-sidecar."
                )
            for version in range(current + 1, LATEST + 1):
                for step in steps[version]:
                    cur.execute(step) if isinstance(step, str) else step(cur)
            if current < LATEST:
                cur.execute(f"DELETE FROM sidecar_meta WHERE key = {m}", ("schema_version",))
                cur.execute(
                    f"INSERT INTO sidecar_meta (key, value) VALUES ({m}, {m})",
                    ("schema_version", str(LATEST)),
                )
            return LATEST

        version = int(self._run(work, write=True, migrating=True))
        self._migrated = True
        return version

    # -- writes -------------------------------------------------------------------

    def write_batch(
        self, batch: pa.Table, writer: WriterStats | None, *, compact: bool = True
    ) -> int:
        """Commit ``batch``; with ``compact`` small segments are merged in the same transaction.

        A :class:`~sidecar.recording.Recorder` passes ``compact=False`` and calls
        :meth:`compact` from a thread of its own, so no commit waits for a merge.
        """

        def work(cur: Any) -> int:
            if batch.num_rows:
                self._write_table(cur, batch, compact=compact)
            if writer is not None:
                self._upsert_writer(cur, writer)
            return int(batch.num_rows)

        return int(self._run(work, write=True))

    def write_predictions(self, rows: Sequence[PredictionRow], writer: WriterStats | None) -> int:
        return self.write_batch(rows_to_table(rows), writer)

    def _write_table(self, cur: Any, batch: pa.Table, *, compact: bool) -> int:
        """Index rows and one segment for ``batch``; the known request ids left out."""
        self._lock_for_write(cur)
        cur.execute("SELECT COALESCE(MAX(seq_hi), 0) FROM sidecar_segments")
        base = int(cur.fetchone()[0])
        n = batch.num_rows
        ids = batch.column("request_id").to_pylist()
        ts = batch.column("ts").to_numpy()
        if not np.all(np.isfinite(ts)):
            raise StoreError("every record's ts must be a finite number of epoch seconds")
        index = list(zip(ids, range(base, base + n), ts.tolist(), strict=True))
        written = self._insert_many(
            cur, "sidecar_records", ("request_id", "seq", "ts"), index, _NOTHING
        )
        seq = np.arange(base, base + n, dtype=np.int64)
        batch = batch.append_column("seq", pa.array(seq))
        if written < n:  # some ids were known (a retried batch): keep the rows just indexed
            mine = self._seqs_of(cur, ids)
            keep = np.array(
                [mine.get(rid) == s for rid, s in zip(ids, seq.tolist(), strict=True)], dtype=bool
            )
            batch = batch.filter(pa.array(keep))
        if batch.num_rows:
            self._insert_segment(cur, batch, base, base + n)
            if compact:
                self._compact(cur)
        return written

    def _seqs_of(self, cur: Any, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join([self.marker] * len(chunk))
            cur.execute(
                f"SELECT request_id, seq FROM sidecar_records WHERE request_id IN ({marks})", chunk
            )
            out.update((r[0], int(r[1])) for r in cur.fetchall())
        return out

    def compact(self) -> None:
        """Merge the small segments now if they are due, in a transaction of its own.

        Atomic like any commit: a crash in the middle leaves the segments as they were.
        """

        def work(cur: Any) -> None:
            self._lock_for_write(cur)
            self._compact(cur)

        self._run(work, write=True)

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
        latest: dict[str, tuple[Any, float]] = {}
        for lab in labels:  # the last label for an id in one batch wins
            latest[lab.request_id] = (lab.label, lab.ts if lab.ts is not None else now)
        ids = list(latest)

        def work(cur: Any) -> FeedbackResult:
            known = self._seqs_of(cur, ids)
            rows = [
                (known[rid], *encode_label(latest[rid][0]), latest[rid][1])
                for rid in ids
                if rid in known
            ]
            self._append_labels(cur, label_table(rows))
            unknown = tuple(rid for rid in ids if rid not in known)
            return FeedbackResult(accepted=len(rows), unknown_request_ids=unknown)

        result: FeedbackResult = self._run(work, write=True)
        return result

    # -- reads (the primitives of ColumnarReads) -----------------------------------

    def _window_clause(self) -> str:
        return f"ts_max >= {self.marker} AND ts_min < {self.marker}"

    def _segment_infos(self, since: float, until: float) -> list[SegmentInfo]:
        def work(cur: Any) -> list[SegmentInfo]:
            cur.execute(
                "SELECT seq_lo, seq_hi, n_rows, nbytes FROM sidecar_segments WHERE "
                f"{self._window_clause()} ORDER BY seq_lo",
                (_finite(since), _finite(until)),
            )
            return [SegmentInfo(*map(int, r)) for r in cur.fetchall()]

        result: list[SegmentInfo] = self._run(work)
        return result

    def _scan(
        self,
        since: float,
        until: float,
        keep: Callable[[pa.Table], None],
        seqs: tuple[int, int] | None = None,
        *,
        reuse: bool = True,
        fields: Callable[[Sequence[str]], Sequence[str]] | None = None,
        scratch: Scratch | None = None,
        place: Place | None = None,
    ) -> None:
        # One transaction (one snapshot: a merge committed meanwhile is not seen
        # half), one segment per query, read into one reused buffer: never more
        # than one segment's bytes beside the columns kept.
        def work(cur: Any) -> None:
            m = self.marker
            lo, hi = seqs if seqs is not None else (-(2**62), 2**62)
            cur.execute(
                f"SELECT seq_lo, nbytes FROM sidecar_segments WHERE {self._window_clause()} "
                f"AND seq_lo >= {m} AND seq_lo < {m} ORDER BY seq_lo",
                (_finite(since), _finite(until), lo, hi),
            )
            into = scratch if scratch is not None else Scratch(reuse=reuse)
            for seq_lo, nbytes in cur.fetchall():
                keep(self._segment(cur, int(seq_lo), int(nbytes), into, fields, place))

        self._run(work)

    def _segment(
        self,
        cur: Any,
        seq_lo: int,
        nbytes: int,
        scratch: Scratch,
        fields: Callable[[Sequence[str]], Sequence[str]] | None,
        place: Place | None = None,
    ) -> pa.Table:
        """One segment; with ``fields``, only the bytes of the fields it names (``_ipc``)."""
        if fields is not None:
            read = functools.partial(self._segment_ranges, cur, seq_lo)
            table = some_fields(read, scratch.get(nbytes), nbytes, fields, place)
            if table is not None:
                return table
        return from_ipc(self._segment_bytes(cur, seq_lo, nbytes, scratch))

    def _label_columns(self, seq_lo: int, seq_hi: int) -> LabelColumns:
        result: LabelColumns = self._run(lambda cur: self._read_labels(cur, seq_lo, seq_hi))
        return result

    def count(self) -> dict[str, int]:
        def work(cur: Any) -> dict[str, int]:
            cur.execute("SELECT COUNT(*) FROM sidecar_records")
            predictions = int(cur.fetchone()[0])
            return {"predictions": predictions, "labels": self._count_labels(cur)}

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


_NOTHING = "ON CONFLICT (request_id) DO NOTHING"


def _finite(x: float) -> float:
    return max(min(x, 1e300), -1e300) if not math.isnan(x) else x
