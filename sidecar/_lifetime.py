"""Processes that end with their parent: no server process outlives the command that started it.

``sidecar serve`` starts ``bentoml serve``, whose arbiter starts the workers in
sessions of their own. A signal to the command, or to its process group, or a
``kill -9`` of any of them, must not leave a worker serving on as an orphan.
Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) gives each child a
SIGTERM -- a graceful shutdown that flushes the recorder -- when its parent
ends; elsewhere it is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends; ``True`` if set.

    Safe in a ``preexec_fn`` (no allocation beyond ctypes' call). If the parent
    ended before the request took effect, ``sig`` is sent at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent is gone already: the signal will never come
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), sig)
    return True
