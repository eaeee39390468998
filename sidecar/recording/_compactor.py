"""Merging a store's small segments off the recorder's writer thread.

Every commit of the recorder adds one small segment; the store merges them
into big ones (``SQLStore.compact``), which reads and rewrites tens of
thousands of records -- a tenth of a second and more of CPU. Inside the
writer's commit that stalls the writer and lands next to the requests being
served; here it runs on a thread of its own, with its own connection, once
the writer has been idle for ``idle`` seconds (traffic has lulls), and under
steady traffic at the latest ``every`` seconds after the first commit it has
not merged yet. A merge is one transaction: a crash in the middle leaves the
segments as they were, and nothing committed is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

__all__ = ["CompactingStore", "Compactor"]

logger = logging.getLogger("sidecar.recording")


class CompactingStore(Protocol):
    """A store that merges its small segments when asked (``SQLStore``)."""

    def compact(self) -> None: ...


class Compactor:
    """Call ``store.compact()`` on a thread of its own when the writer is idle or it is overdue."""

    def __init__(self, store: CompactingStore, *, idle: float = 1.0, every: float = 60.0) -> None:
        self.store = store
        self.idle = idle
        self.every = every
        self.runs = 0
        self.failures = 0
        self._cond = threading.Condition()
        self._dirty_since: float | None = None  # first commit not merged yet
        self._last_commit = 0.0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="sidecar-compactor", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The writer committed a segment (cheap: no wake-up unless it is the first)."""
        now = time.monotonic()
        with self._cond:
            self._last_commit = now
            if self._dirty_since is None:
                self._dirty_since = now
                self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Stop; a merge under way finishes (or, past ``timeout``, is left to roll back)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _due(self) -> bool:
        """Wait (holding the condition) until a merge is due; ``False`` when closing."""
        while self._dirty_since is None and not self._closing:
            self._cond.wait()
        while not self._closing:
            assert self._dirty_since is not None
            wait = min(self._last_commit + self.idle, self._dirty_since + self.every)
            wait -= time.monotonic()
            if wait <= 0:
                self._dirty_since = None
                return True
            self._cond.wait(wait)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._due():
                    return
            try:
                self.store.compact()
                self.runs += 1
            except Exception as exc:  # the segments stay small; the next commit retries
                self.failures += 1
                logger.warning("merging the store's small segments failed: %s", exc)
