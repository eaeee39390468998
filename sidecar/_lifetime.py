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
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends; ``True`` if set.

    Safe in a ``preexec_fn``. If the parent ended while the request was made,
    ``sig`` is sent at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        # dlopen(NULL): the process's own symbols, libc's prctl among them (no
        # library search, which would run a subprocess -- this runs in preexec_fn).
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # Reparented between the two calls: the signal will never come. (A parent
    # of pid 1 is no sign of an orphan: in a container BentoML may be pid 1.)
    if os.getppid() != parent:
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), sig)
    return True
