"""Hot promotion: a worker notices that its registry's active version changed, and switches.

A thread of each worker stats the registry's ``ACTIVE`` pointer about once a
second (never on the request path). When it changed, the worker loads and
verifies the new version beside the one it serves, gets its shadow stage ready
(the shadow process loads it too), and then replaces one reference: a request
reads that reference once and is answered and recorded by that one bundle
from start to end, so no request fails and none is served by a mix.

A version that cannot be loaded (a broken or unverifiable bundle, a different
task) is refused with a log line and the worker goes on serving what it had;
it tries again, less often, until the pointer changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..bundle._registry import ACTIVE

__all__ = ["ActiveWatcher"]

logger = logging.getLogger("sidecar.serving")

#: The longest wait before a version that failed to load is tried again.
MAX_BACKOFF = 60.0


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ActiveWatcher:
    """Call ``switch()`` on a thread of its own whenever ``root/ACTIVE`` changes.

    ``switch`` returns ``True`` once the change is dealt with (switched, or
    nothing to switch to) and ``False`` to be called again after a backoff.
    An exception counts as ``False`` and is logged.
    """

    def __init__(self, root: Path, switch: Callable[[], bool], *, interval: float = 1.0) -> None:
        self.pointer = root / ACTIVE
        self.switch = switch
        self.interval = interval
        self._seen = _signature(self.pointer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sidecar-hotswap", daemon=True)

    def start(self) -> ActiveWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = self.interval
        while not self._stop.wait(self.interval):
            now = _signature(self.pointer)
            if now == self._seen:
                continue
            try:
                done = self.switch()
            except Exception:
                logger.exception("switching to the registry's active version failed")
                done = False
            if done:
                self._seen, backoff = now, self.interval
            else:
                backoff = min(MAX_BACKOFF, backoff * 2)
                if self._stop.wait(backoff):
                    return
