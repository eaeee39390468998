"""Running the shadow model(s) off the response path.

One daemon thread per bundle runs shadow jobs from a bounded queue, so a slow
or hung baseline can never slow the primary response: when the queue is full
the job is dropped and counted. A job that raises is counted as an error; one
that finishes after ``timeout`` seconds is counted as a timeout (its result is
still delivered, marked late). A job stuck for good blocks only the shadow:
later jobs pile up to the bound and are then dropped, and counted.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ShadowCounters", "ShadowRunner"]


@dataclass
class ShadowCounters:
    """Running totals of what happened to shadow jobs (read them, do not write them)."""

    submitted: int = 0
    completed: int = 0
    errors: int = 0
    timeouts: int = 0
    dropped: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


class ShadowRunner:
    """A bounded queue drained by one daemon thread."""

    def __init__(self, *, timeout: float = 1.0, max_pending: int = 1024) -> None:
        self.timeout = timeout
        self.counters = ShadowCounters()
        self._queue: queue.Queue[Callable[[], Any] | None] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: called with "completed", "error", "timeout" or "dropped" for each outcome
        #: (the service feeds Prometheus counters from it); must not raise.
        self.on_outcome: Callable[[str], None] | None = None

    def submit(self, job: Callable[[], Any]) -> bool:
        """Queue ``job`` without ever blocking; ``False`` (and counted) when it was dropped."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self.counters.dropped += 1
            self._notify("dropped")
            return False
        with self._lock:
            self.counters.submitted += 1
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job has run; ``False`` if that took over ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def record(self, *, error: bool = False, late: bool = False) -> None:
        """Count the outcome of one shadow computation."""
        with self._lock:
            self.counters.completed += 1
            self.counters.errors += error
            self.counters.timeouts += late
        self._notify("completed")
        if error:
            self._notify("error")
        if late:
            self._notify("timeout")

    def _notify(self, outcome: str) -> None:
        hook = self.on_outcome
        if hook is not None:
            with contextlib.suppress(Exception):  # a broken hook must not break the shadow
                hook(outcome)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sidecar-shadow", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except BaseException:  # a job must never kill the shadow thread
                with self._lock:
                    self.counters.errors += 1
                self._notify("error")
            finally:
                self._queue.task_done()
