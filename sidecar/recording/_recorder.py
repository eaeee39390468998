"""The recorder: a bounded queue and one writer thread that commits in batches.

``enqueue`` never blocks: when the queue is full the rows are dropped and
counted. The writer waits for the first rows, lingers briefly so light
traffic commits a few rows at a time rather than row by row, and writes up to
``batch_size`` rows in one transaction. A failing store is retried with
exponential backoff while serving goes on (new rows queue up to the bound and
are then dropped and counted). ``close`` writes everything still queued.
A crash loses at most what was queued -- one linger interval plus one commit,
counted from when the rows were queued (a served record is queued by the
shadow micro-batch a moment after its response: measured from the response,
one run on a busy machine lost 0.303 s against the 0.25 s linger).

Drops are kept in the store with each commit (the writer's row). A store that
cannot take a commit cannot take the count either: :meth:`unstored_dropped`
says how many the store does not know of, they go in with the next commit
that works, and ``close`` logs them at ERROR with the number.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeAlias

import pyarrow as pa

from .._errors import StoreError
from ._compactor import Compactor
from ._records import ServedBatch, encode_served, rows_to_table
from ._sql import SQLStore
from ._store import PredictionRow, Store, WriterStats, default_writer_identity

#: What ``enqueue`` takes: a batch of records as columns, or rows of the row form.
Batch: TypeAlias = ServedBatch | pa.Table | Sequence[PredictionRow]

__all__ = ["Recorder", "RecorderCounters"]

logger = logging.getLogger("sidecar.recording")


@dataclass
class RecorderCounters:
    """Running totals of one recorder (read them; only the recorder writes them)."""

    enqueued: int = 0
    written: int = 0
    dropped: int = 0
    batches: int = 0
    failed_commits: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, object]:
        return dict(self.__dict__)


class Recorder:
    """Write batches of records to a :class:`Store` off the request path.

    A batch is an Arrow table (``sidecar.recording._records.encode_records``;
    rows of the row form are taken too); the writer merges what is queued
    into one table and commits it as one segment.

    Parameters
    ----------
    store
        Where rows go.
    max_queue
        Most rows waiting at once; beyond it rows are dropped and counted.
    batch_size
        Most rows in one transaction.
    linger
        Seconds the writer waits for more rows after the first before it commits
        (``flush`` cuts it short). Each commit costs the serving process far
        more than its rows do -- the driver lets go of the GIL around every
        statement, and the request thread pays for each hand-back -- so a
        quarter second (4 commits a second under load) keeps recording near
        free; a crash loses at most this much.
    max_backoff
        Longest wait between two attempts at a failing store.
    compact_idle, compact_every
        A SQL store's small segments are merged on a thread of their own
        (:mod:`sidecar.recording._compactor`), never inside a commit: once the
        writer has been idle ``compact_idle`` seconds, and under steady
        traffic at the latest ``compact_every`` seconds after the first
        commit not merged yet.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = 200_000,
        batch_size: int = 5_000,
        linger: float = 0.25,
        max_backoff: float = 2.0,
        compact_idle: float = 1.0,
        compact_every: float = 60.0,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger = linger
        self.max_backoff = max_backoff
        self.counters = RecorderCounters()
        host, pid = default_writer_identity()
        self._identity = (f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid)
        self._parts: deque[Batch] = deque()
        self._queued = 0  # rows in _parts
        self._cond = threading.Condition()
        self._closing = False
        self._flushing = 0  # callers of flush() waiting: the writer stops lingering
        self._busy = False
        self._in_flight = 0
        self._migrated = False
        self._dropped_stored = 0  # the drop count the store's writer row last got
        self._failing = False  # the last commit attempt failed
        #: called with ("dropped" | "written" | "failed", n) -- feeds Prometheus; must not raise
        self.on_event: Callable[[str, int], None] | None = None
        self._compactor = (
            Compactor(store, idle=compact_idle, every=compact_every)
            if isinstance(store, SQLStore)
            else None
        )
        self._thread = threading.Thread(target=self._run, name="sidecar-recorder", daemon=True)
        self._thread.start()

    # -- producer side ------------------------------------------------------------

    def enqueue(self, rows: Batch) -> bool:
        """Queue a batch for writing; never blocks. ``False`` (and counted) when dropped."""
        n = len(rows)
        if n == 0:
            return True
        with self._cond:
            if self._closing or self._queued + n > self.max_queue:
                self.counters.dropped += n
                dropped = True
            else:
                self._parts.append(rows)
                self._queued += n
                self.counters.enqueued += n
                dropped = False
                if self._queued >= self.batch_size or self._queued == n:
                    self._cond.notify()
        if dropped:
            self._emit("dropped", n)
        return not dropped

    def add_dropped(self, n: int) -> None:
        """Count ``n`` rows dropped before they reached this recorder (in its writer stats).

        A serving worker drops records when its shadow process is behind or
        restarting; the process's recorder reports them with its own.
        """
        with self._cond:
            self.counters.dropped += n

    def unstored_dropped(self) -> int:
        """Drops counted here that the store does not know of yet (it could not take them).

        They reach the store with the next commit that succeeds; until then
        they are only here, on ``/metrics`` and, at shutdown, in the log.
        """
        with self._cond:
            return self.counters.dropped - self._dropped_stored

    def pending(self) -> int:
        with self._cond:
            return self._queued + (1 if self._busy else 0)

    def flush(self, timeout: float = 30.0, *, fail_fast: bool = False) -> bool:
        """Wait until every queued row is written (or ``timeout`` passes); ``True`` if all were.

        With ``fail_fast`` a failing store answers at once: ``False`` as soon
        as a commit attempt fails (or if the last one did), not after the
        whole timeout -- what a request waiting on it needs.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            failed = self.counters.failed_commits
            try:
                self._cond.notify_all()
                while self._queued or self._busy:
                    if fail_fast and (self._failing or self.counters.failed_commits != failed):
                        return False
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.05))
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Stop taking rows, write what is queued, stop the writer; ``True`` if all were written."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._compactor is not None:
            self._compactor.close()
        with self._cond:
            left = self._queued
            if self._thread.is_alive():
                # The writer is still inside a commit (a slow or hung store): those
                # rows are not known to be written, so they count as dropped too.
                left += self._in_flight
            if left:
                self.counters.dropped += left
                self._parts.clear()
                self._queued = 0
        if left:
            self._emit("dropped", left)
            logger.error(
                "recorder closed with %d rows unwritten (store: %s)", left, self.counters.last_error
            )
        unstored = self.unstored_dropped()
        if unstored:
            logger.error(
                "recording lost %d records in all; the store could not take the count of %d of "
                "them, so `sidecar status` does not show those (last store error: %s)",
                self.counters.dropped,
                unstored,
                self.counters.last_error,
            )
        return left == 0

    def stats(self) -> WriterStats:
        c = self.counters
        writer_id, host, pid = self._identity
        return WriterStats(
            writer_id,
            host,
            pid,
            c.started_at,
            time.time(),
            c.enqueued,
            c.written,
            c.dropped,
            c.failed_commits,
        )

    # -- writer thread --------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        close_attempts = 0
        while True:
            with self._cond:
                while not self._queued and not self._closing:
                    self._cond.wait()
                done = not self._queued and self._closing
            if done:
                self._store_final_stats()
                return
            with self._cond:
                # Linger: let a light trickle of requests share one commit.
                deadline = time.monotonic() + self.linger
                while self._queued < self.batch_size and not self._closing and not self._flushing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._take()
                take = sum(len(p) for p in batch)
                self._busy = True
                self._in_flight = take
            ok = self._write(batch)
            with self._cond:
                self._failing = not ok
                if not ok:
                    self._parts.extendleft(reversed(batch))  # keep order; retry after backoff
                    self._queued += take
                self._busy = False
                self._in_flight = 0
                self._cond.notify_all()
            if ok:
                backoff = 0.0
                continue
            backoff = min(self.max_backoff, max(0.05, backoff * 2))
            with self._cond:
                if self._closing:
                    # On shutdown, give a failing store a few short tries, not forever.
                    backoff = min(backoff, 0.2)
                    close_attempts += 1
                    if close_attempts > 10:
                        return
                # Sleep the whole backoff: new rows and flush() notify this
                # condition, and must not turn backoff into one retry per request.
                resume = time.monotonic() + backoff
                while not self._closing:
                    remaining = resume - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)

    def _store_final_stats(self) -> None:
        """On close: drops counted since the last commit (``add_dropped``) reach the store too."""
        if self.counters.dropped == self._dropped_stored:
            return
        try:
            if not self._migrated:
                self.store.migrate()
                self._migrated = True
            stats = self.stats()
            self.store.write_predictions([], stats)
            self._dropped_stored = stats.dropped
        except Exception as exc:
            self.counters.failed_commits += 1
            self.counters.last_error = str(exc)
            self._emit("failed", 1)

    def _take(self) -> list[Batch]:
        """About ``batch_size`` rows from the head of the queue (a big table is split)."""
        out: list[Batch] = []
        room = self.batch_size
        while self._parts and room > 0:
            part = self._parts.popleft()
            if len(part) > room and not isinstance(part, ServedBatch):
                self._parts.appendleft(part[room:])
                part = part[:room]
            out.append(part)
            room -= len(part)
        self._queued -= self.batch_size - room
        return out

    def _write(self, batch: list[Batch]) -> bool:
        try:
            if not self._migrated:  # a store that was down at start-up gets its schema now
                self.store.migrate()
                self._migrated = True
            n = sum(len(p) for p in batch)
            stats = replace(self.stats(), written=self.counters.written + n)  # as once committed
            written = sum(self._commit(t, s) for t, s in _tables(batch, stats))
            self._dropped_stored = stats.dropped
        except StoreError as exc:
            self.counters.failed_commits += 1
            self.counters.last_error = str(exc)
            self._emit("failed", 1)
            logger.warning("recording failed, will retry: %s", exc)
            return False
        except Exception as exc:  # a bug must not kill the writer thread
            self.counters.failed_commits += 1
            self.counters.last_error = f"{type(exc).__name__}: {exc}"
            self._emit("failed", 1)
            logger.exception("recording failed, will retry")
            return False
        self.counters.written += written
        self.counters.batches += 1
        self._emit("written", written)
        return True

    def _commit(self, table: pa.Table, stats: WriterStats | None) -> int:
        compactor = self._compactor
        if compactor is None:
            return self.store.write_batch(table, stats)
        assert isinstance(self.store, SQLStore)
        written = self.store.write_batch(table, stats, compact=False)
        compactor.committed()
        return written

    def _emit(self, event: str, n: int) -> None:
        hook = self.on_event
        if hook is not None:
            try:
                hook(event, n)
            except Exception:
                logger.exception("recorder event hook failed")


def _tables(batch: list[Batch], stats: WriterStats) -> list[tuple[pa.Table, WriterStats | None]]:
    """One table for the batch (the writer's stats go with the last), or one per schema."""
    tables: list[pa.Table] = []
    served: list[ServedBatch] = []
    for part in [*batch, None]:
        if isinstance(part, ServedBatch):
            served.append(part)
            continue
        if served:  # encoded together: Arrow's per-column cost once, not once a request
            tables.extend(encode_served(served))
            served = []
        if part is not None:
            tables.append(part if isinstance(part, pa.Table) else rows_to_table(part))
    try:
        return [(pa.concat_tables(tables, promote_options="permissive"), stats)]
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. a field typed two ways: commit apart
        return [(t, stats if i == len(tables) - 1 else None) for i, t in enumerate(tables)]
