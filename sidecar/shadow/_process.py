"""The process transport: a serving worker's shadow work, in a process of its own.

A serving worker queues every answered request for a process of its own and
goes on. A thread of the worker hands what gathered over every 50 ms, as one
message on a private ``socketpair`` (``SOCK_SEQPACKET``: whole datagrams, in
order; a message larger than a datagram goes in pieces). The child (its
entry point is a module named when the handle is made; the service's is
``sidecar.serving._shadow_child``) runs a :class:`~sidecar.shadow.ShadowPipeline`
per bundle version, so the rows it writes are the rows ``Bundle.predict``
writes in-process.

Why a process and not threads in the worker:

- the shadow work does not take the worker's GIL, which the request thread
  wants back hundreds of times a request (scikit-learn's boosted trees let go
  of it once per tree);
- a baseline that spins in pure Python, or crashes its interpreter (a native
  fault in an ONNX or torch model), cannot slow or kill the worker: the child
  is replaced, and what could not be handed over meanwhile is counted.

The contract on the request path is the recorder's: :meth:`ShadowProcess.submit`
never blocks; a full queue drops and counts (and the writer stats the next
child keeps in the store). What a child that crashed had not yet written is
lost, as with ``kill -9``: at most one flush interval.

The channel is private to a worker and the child it started, so messages are
pickles (protocol 5) of the frozen dataclasses in ``_wire``; nothing else can
write to it. The child ignores SIGTERM and SIGINT from its first line (a stopped
``bentoml serve`` signals the worker's children too) and ends when the worker
closes its end -- on shutdown, when it retires the child, or when the worker
dies: it then finishes the shadow work, writes every queued record and exits.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import SidecarError
from ._items import ShadowItem
from ._runner import ShadowRunner
from ._wire import Batch, Close, Flush, Prepare, Reply, recv, send

__all__ = ["ShadowProcess", "process_supported"]

logger = logging.getLogger("sidecar.serving")

#: How long a retired child may take to write what it has and exit.
RETIRE_TIMEOUT = 60.0
#: The send buffer asked for (Linux caps it at twice ``net.core.wmem_max``).
SEND_BUFFER = 4 << 20
#: Least time between two restarts of a child that keeps dying.
RESTART_EVERY = 5.0


def process_supported() -> str | None:
    """``None`` if this platform can run a shadow process, else why not.

    The channel is an ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair, which Linux
    has and macOS does not.
    """
    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except (AttributeError, OSError) as exc:
        return f"this platform has no AF_UNIX SOCK_SEQPACKET socket pairs ({exc})"
    ours.close()
    theirs.close()
    return None


# -- the worker's side --------------------------------------------------------------------


@dataclass
class _Child:
    sock: socket.socket
    proc: subprocess.Popen[bytes]


class ShadowProcess:
    """A worker's handle on its shadow process: start, feed, flush, close, restart.

    :meth:`submit` only appends to a bounded queue (a :class:`ShadowRunner`);
    the runner's thread pickles what gathered every ``interval`` seconds into
    one message and sends it, waiting at most ``send_timeout`` for the child
    to read. A child that stops reading that long, or dies, is retired -- its
    end of the socket closed, so it writes what it has and exits -- and a
    fresh one is started; meanwhile records are dropped. ``on_dropped(n)`` is
    called for every ``n`` records dropped here; they are also reported to the
    next child, which adds them to its writer's ``dropped`` count in the store.

    ``child`` is the module whose ``main(argv)`` the child runs, with the
    socket's descriptor, ``bundle_path`` and ``bundle_version`` (the bundle it
    serves first; a restarted child gets the one last prepared with
    :meth:`prepare`).
    """

    def __init__(
        self,
        *,
        child: str,
        bundle_path: str,
        bundle_version: str,
        interval: float = 0.05,
        max_pending: int = 10_000,
        start_timeout: float = 120.0,
        send_timeout: float = 5.0,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.child_module = child
        self.bundle_path = bundle_path
        self.bundle_version = bundle_version
        self.start_timeout = start_timeout
        self.send_timeout = send_timeout
        self.on_dropped = on_dropped
        self.dropped = 0
        self.restarts = 0
        self._unreported = 0  # dropped here, not yet told to a child
        self._counts = threading.Lock()  # the two counts above; never held across I/O
        self._io = threading.Lock()  # sends, and swapping children (never on the request path)
        self._request_lock = threading.Lock()  # one request (flush, prepare) at a time
        self._tokens = itertools.count(1)
        self._closed = False
        self._last_start = 0.0
        self.runner = ShadowRunner(
            handler=self._send_batch, interval=interval, max_pending=max_pending
        )
        self._child: _Child | None = self._spawn()

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.proc.pid

    # -- the request path ------------------------------------------------------------------

    def submit(self, item: ShadowItem) -> bool:
        """Queue ``item`` for the child; never blocks.

        ``False`` when the records were dropped (and counted): the queue is full.
        """
        if self.runner.submit(item):
            return True
        self._drop(len(item.records))
        return False

    def _send_batch(self, batch: list[ShadowItem]) -> None:
        """The runner's handler: one message for everything that gathered."""
        n = sum(len(item.records) for item in batch)
        with self._io:
            child = self._child
            if child is None or self._closed:
                self._drop(n)  # restarting, or shut down
                return
            with self._counts:
                reported = self._unreported
            try:
                payload = pickle.dumps(Batch(batch, reported), protocol=5)
            except Exception:
                logger.exception("a batch for the shadow process could not be pickled")
                self._drop(n)
                return
            try:
                send(child.sock, payload, time.monotonic() + self.send_timeout)
            except (OSError, ValueError) as exc:
                self._drop(n)
                self._retire(child, f"sending to it failed: {exc!r}")
                return
            with self._counts:
                self._unreported -= reported

    def _drop(self, n: int) -> None:
        with self._counts:
            self.dropped += n
            self._unreported += n
        if self.on_dropped is not None:
            with contextlib.suppress(Exception):
                self.on_dropped(n)

    # -- requests: flush, prepare ---------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the child has run and written everything submitted so far."""
        deadline = time.monotonic() + timeout
        if not self.runner.drain(timeout):
            return False
        reply = self._request(lambda token: Flush(token), deadline)
        return reply is not None and reply.error is None

    def prepare(self, path: str, version: str, timeout: float = 120.0) -> str | None:
        """Have the child load bundle ``version`` at ``path``; ``None`` when it did, else why.

        Call it before the worker answers with that bundle, so that every
        record of it finds its pipeline in the child. A child started later
        (a restart) loads ``path`` first.
        """
        reply = self._request(
            lambda token: Prepare(token, path, version), time.monotonic() + timeout
        )
        if reply is None:
            return "the shadow process did not answer"
        if reply.error is None:
            self.bundle_path, self.bundle_version = path, version
        return reply.error

    def _request(self, make: Callable[[int], Any], deadline: float) -> Reply | None:
        """Send a request and wait for its reply; ``None`` at the deadline or if the child left."""
        with self._request_lock:
            with self._io:
                child = self._child
                if child is None or self._closed:
                    return None
                token = next(self._tokens)
                try:
                    send(child.sock, pickle.dumps(make(token)), deadline)
                except (OSError, ValueError) as exc:
                    self._retire(child, f"sending to it failed: {exc!r}")
                    return None
            while True:  # only requests read from the socket: the replies are their own
                data = recv(child.sock, deadline)
                if data is None:
                    return None
                reply = pickle.loads(data)
                if isinstance(reply, Reply) and reply.token == token:
                    return reply

    # -- close ------------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> bool:
        """Send what is queued, let the child write everything, wait for it; ``True`` if it did."""
        deadline = time.monotonic() + timeout
        self.runner.drain(timeout / 3)
        with self._io:
            self._closed = True
            child = self._child
            self._child = None
        if child is None:
            logger.error("the shadow process was restarting at shutdown; records were dropped")
            return False
        with contextlib.suppress(OSError, ValueError):
            send(child.sock, pickle.dumps(Close()), deadline)
        with contextlib.suppress(OSError):
            child.sock.shutdown(socket.SHUT_WR)
        try:
            code = child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("the shadow process did not finish in %.0f s; killing it", timeout)
            child.proc.kill()
            code = child.proc.wait()
        child.sock.close()
        if code != 0:
            logger.error("the shadow process ended with exit code %s", code)
        with self._counts:
            unreported = self._unreported
        if unreported:
            logger.error(
                "the worker dropped %d records that no shadow process could count in the store",
                unreported,
            )
        return code == 0

    # -- starting, retiring, restarting ----------------------------------------------------

    def _spawn(self) -> _Child:
        self._last_start = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = None
        try:
            with contextlib.suppress(OSError):
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            argv = [self.child_module, str(theirs.fileno()), self.bundle_path, self.bundle_version]
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, *argv],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # no terminal's or process group's signals
            )
            theirs.close()
            ready = recv(ours, time.monotonic() + self.start_timeout)
            if ready != b"ready":
                raise SidecarError(
                    f"the shadow process did not start (exit code {proc.poll()}); its error is in "
                    "the log above. It loads the bundle and opens the store that SIDECAR_BUNDLE "
                    "and SIDECAR_STORE name."
                )
        except BaseException:
            theirs.close()
            ours.close()
            if proc is not None:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait()
            raise
        ours.setblocking(False)
        child = _Child(ours, proc)
        threading.Thread(
            target=self._watch, args=(child,), name="sidecar-shadow-watch", daemon=True
        ).start()
        return child

    def _watch(self, child: _Child) -> None:
        """Reap the child when it ends; if it died while serving, replace it."""
        code = child.proc.wait()
        _mark_dead(child.proc.pid)
        with self._io:
            if self._child is child:
                self._retire(child, f"it died (exit code {code})")

    def _retire(self, child: _Child, why: str) -> None:
        """Take ``child`` out of service and start its replacement. Call with ``_io`` held.

        Closing our end lets it read what was sent, write it and exit; one that
        does not exit within a minute is killed.
        """
        if self._child is not child:
            return
        self._child = None
        logger.error("the shadow process (pid %d) is out: %s; restarting it", child.proc.pid, why)
        with contextlib.suppress(OSError):
            child.sock.close()

        def retire() -> None:
            try:
                child.proc.wait(RETIRE_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.proc.kill()

        threading.Thread(target=retire, name="sidecar-shadow-retire", daemon=True).start()
        threading.Thread(target=self._restart, name="sidecar-shadow-restart", daemon=True).start()

    def _restart(self) -> None:
        while not self._closed:
            time.sleep(max(0.0, self._last_start + RESTART_EVERY - time.monotonic()))
            if self._closed:
                return
            try:
                child = self._spawn()
            except Exception:
                logger.exception("restarting the shadow process failed; trying again")
                continue
            with self._io:
                if self._closed or self._child is not None:
                    stale = True
                else:
                    stale = False
                    self._child = child
                    self.restarts += 1
            if stale:
                child.sock.close()  # it reads EOF and exits
                return
            logger.warning("the shadow process is back (pid %d)", child.proc.pid)
            return


#: How the child starts: signals off before anything heavy is imported.
_LAUNCH = (
    "import importlib, signal, sys\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))\n"
)


def _mark_dead(pid: int) -> None:
    """Let Prometheus drop the live gauges of an ended child (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
