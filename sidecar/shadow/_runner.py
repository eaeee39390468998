"""Running the shadow model(s) off the response path, with a timeout.

Two kinds of daemon thread keep a slow or broken baseline away from the
primary response:

- the *shadow thread* takes work from a bounded queue (``submit`` never
  blocks; a full queue drops the item and counts it) in micro-batches;
- each shadow model call (``call``) runs on a *model thread* and
  is waited for at most ``timeout`` seconds. An exception is counted as an
  error, an overrun as a timeout; either way the job goes on without that
  model's answer (so the record is still written, with the reason). A model
  thread that overran is abandoned -- Python cannot stop a thread -- and a
  fresh one takes its place; while ``max_abandoned`` of them are still stuck
  the shadow model is switched off (counted), since something in it hangs; it
  comes back as soon as one of them returns. A model of bounded time (plain
  NumPy arithmetic, ``call(..., inline=True)``) runs on the shadow thread
  itself: nothing in it can hang, and the hand-over would cost two GIL
  wake-ups per micro-batch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ShadowCounters", "ShadowRunner"]

T = TypeVar("T")


@dataclass
class ShadowCounters:
    """Running totals of what happened to shadow work (read them, do not write them)."""

    submitted: int = 0
    completed: int = 0
    errors: int = 0
    timeouts: int = 0
    dropped: int = 0
    abandoned_threads: int = 0
    hung_threads: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


class _ModelThread:
    """One daemon thread that runs calls handed to it, one at a time."""

    def __init__(self, on_late_return: Callable[[], None]) -> None:
        self.inbox: queue.SimpleQueue[tuple[Callable[[], Any], _Slot]] = queue.SimpleQueue()
        self._on_late_return = on_late_return
        threading.Thread(target=self._run, name="sidecar-shadow-model", daemon=True).start()

    def _run(self) -> None:
        while True:
            fn, slot = self.inbox.get()
            try:
                slot.value = fn()
            except BaseException as exc:
                slot.error = exc
            with slot.lock:
                slot.done.set()
                abandoned = slot.abandoned
            if abandoned:
                # It was slow, not stuck: it no longer counts against the shadow,
                # and this thread is idle now (its successor took over; it exits).
                self._on_late_return()
                return


class _Slot:
    __slots__ = ("abandoned", "done", "error", "lock", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.abandoned = False
        self.value: Any = None
        self.error: BaseException | None = None


class ShadowRunner:
    """A bounded queue of shadow work, drained in micro-batches by one thread.

    The request path only appends to a deque (``submit``); the shadow thread
    looks every ``interval`` seconds and hands everything pending to
    ``handler`` at once -- one baseline call for many requests, one hand-off
    to the recorder -- so serving pays for no thread switch per request. After
    ``park_after`` seconds without work the thread sleeps until ``submit``
    wakes it (only then does a request pay for waking it), so an idle runner
    costs nothing; under steady traffic the request path never signals it.
    """

    def __init__(
        self,
        *,
        handler: Callable[[list[Any]], object] | None = None,
        on_outcome: Callable[[str], None] | None = None,
        counters: ShadowCounters | None = None,
        timeout: float = 1.0,
        max_pending: int = 10_000,
        max_abandoned: int = 4,
        interval: float = 0.05,
        park_after: float = 1.0,
    ) -> None:
        self.timeout = timeout
        self.park_after = park_after
        self.max_pending = max_pending
        self.max_abandoned = max_abandoned
        self.interval = interval
        #: shared with an earlier runner when given (a rewired bundle keeps its counts)
        self.counters = counters if counters is not None else ShadowCounters()
        #: takes every item pending at once, on the shadow thread
        self.handler = handler
        self._pending: deque[Any] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._parked = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._model: _ModelThread | None = None
        #: called with "completed", "error", "timeout" or "dropped" for each outcome
        #: (the service feeds Prometheus counters from it); must not raise.
        self.on_outcome = on_outcome

    # -- jobs ---------------------------------------------------------------------

    def submit(self, item: Any) -> bool:
        """Queue ``item`` for the handler without ever blocking; ``False`` (counted) if dropped."""
        if self._thread is None:
            self._start()
        pending = self._pending
        if len(pending) >= self.max_pending:
            with self._lock:
                self.counters.dropped += 1
            self._notify("dropped")
            return False
        pending.append(item)
        self.counters.submitted += 1
        if self._parked:  # read after the append: a thread about to park sees the item
            with self._cond:
                self._cond.notify()
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until all submitted work was handled; ``False`` if that took over ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
        while self._pending or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    # -- timed model calls ----------------------------------------------------------

    def call(
        self, fn: Callable[[], T], timeout: float | None = None, *, inline: bool = False
    ) -> tuple[T | None, str | None]:
        """Run ``fn`` on the model thread; ``(result, None)`` or ``(None, reason)``.

        Never raises and never waits longer than ``timeout`` (the runner's by default).
        With ``inline``, for a model of bounded time (NumPy arithmetic that cannot
        hang), ``fn`` runs on the calling thread instead: no hand-over to the model
        thread and back, whose two wake-ups each take the GIL from the serving
        thread. Its outcomes are counted alike, and an answer later than
        ``timeout`` is dropped as a timeout.
        """
        wait = self.timeout if timeout is None else timeout
        if inline:
            return self._inline(fn, wait)
        with self._lock:
            if self.counters.hung_threads >= self.max_abandoned:
                disabled = True
            else:
                disabled = False
                if self._model is None:
                    self._model = _ModelThread(self._late_return)
                model = self._model
        if disabled:
            self._count("error")
            return None, (
                f"disabled: {self.max_abandoned} calls of the shadow model are stuck past "
                f"their {wait} s timeout; it is off until one of them returns"
            )
        slot = _Slot()
        model.inbox.put((fn, slot))
        if not slot.done.wait(wait):
            with slot.lock:
                late = not slot.done.is_set()
                slot.abandoned = late
            if late:
                with self._lock:
                    self.counters.abandoned_threads += 1
                    self.counters.hung_threads += 1
                    if self._model is model:
                        self._model = None  # the next call gets a fresh thread
                self._count("timeout")
                return None, f"timeout: no answer within {wait} s"
        if slot.error is not None:
            self._count("error")
            return None, f"{type(slot.error).__name__}: {slot.error}"
        self._count("completed")
        return slot.value, None

    def _inline(self, fn: Callable[[], T], wait: float) -> tuple[T | None, str | None]:
        start = time.monotonic()
        try:
            value = fn()
        except Exception as exc:
            self._count("error")
            return None, f"{type(exc).__name__}: {exc}"
        if time.monotonic() - start > wait:
            self._count("timeout")
            return None, f"timeout: no answer within {wait} s"
        self._count("completed")
        return value, None

    def _late_return(self) -> None:
        with self._lock:
            self.counters.hung_threads -= 1

    def count(self, outcome: str) -> None:
        """Count an outcome found after the call (a baseline's output that is not finite)."""
        self._count(outcome)

    def _count(self, outcome: str) -> None:
        with self._lock:
            if outcome == "error":
                self.counters.errors += 1
            elif outcome == "timeout":
                self.counters.timeouts += 1
            self.counters.completed += 1
        self._notify(outcome)
        if outcome != "completed":
            self._notify("completed")

    def _notify(self, outcome: str) -> None:
        hook = self.on_outcome
        if hook is not None:
            with contextlib.suppress(Exception):  # a broken hook must not break the shadow
                hook(outcome)

    # -- the shadow thread ------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sidecar-shadow", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        pending = self._pending
        idle = 0.0
        while True:
            if not pending and idle < self.park_after:
                time.sleep(self.interval)
                idle += self.interval
                continue
            if not pending:
                with self._cond:
                    self._parked = True
                    while not pending:
                        self._cond.wait()
                    self._parked = False
                time.sleep(self.interval)  # let concurrent requests join this batch
            idle = 0.0
            self._busy = True
            batch = []
            while pending:
                batch.append(pending.popleft())
            try:
                if self.handler is not None:
                    self.handler(batch)
            except BaseException:  # the handler must never kill the shadow thread
                with self._lock:
                    self.counters.errors += 1
                self._notify("error")
            finally:
                self._busy = False
