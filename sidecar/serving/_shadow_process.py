"""The shadow process: each serving worker's baseline, candidate and recorder, out of its GIL.

A serving worker hands every answered request to a process of its own -- one
datagram on a private ``socketpair`` (``SOCK_SEQPACKET``: whole messages, in
order) -- and goes on. The child runs the bundle's shadow machinery as the SDK
does (micro-batches, timed model calls, the batching recorder), so the rows it
writes are the rows ``Bundle.predict`` writes in-process.

Why a process and not threads in the worker:

- the shadow work no longer takes the worker's GIL, which the request thread
  wants back hundreds of times a request (scikit-learn's boosted trees let go
  of it once per tree);
- a baseline that spins in pure Python, or crashes the interpreter (a native
  fault in an ONNX or torch model), cannot slow or kill the worker: the child
  is restarted and what was lost is counted.

The contract on the request path is the recorder's: :meth:`ShadowProcess.submit`
never blocks. When the socket's buffer is full, or the child is gone, the
records are dropped and counted (Prometheus, and the writer stats the child
keeps in the store).

The channel is private to a worker and the child it started, so messages are
pickles (protocol 5); nothing else can write to it. The child ignores SIGTERM
and SIGINT -- a ``bentoml serve`` that is stopped signals the whole process
group -- and ends when the worker closes its end (on shutdown, or when the
worker dies): it then finishes the shadow work and writes every queued record.

Run as ``python -m sidecar.serving._shadow_process FD`` by :class:`ShadowProcess`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import SidecarError
from .._settings import Settings, settings_from_env

__all__ = ["ShadowProcess", "load_bundle", "open_recorder"]

logger = logging.getLogger("sidecar.serving")

#: Largest datagram: a message is sent whole up to this size, in pieces beyond it.
#: (Each datagram carries a one-byte tag: M a whole message, C a piece, E the last piece.)
DATAGRAM = 128 << 10
#: How long the rest of a message in pieces may wait for the child to read.
PIECES_DEADLINE = 1.0
#: The send buffer asked for (Linux caps it at twice ``net.core.wmem_max``).
SEND_BUFFER = 4 << 20
#: Least time between two restarts of a child that keeps dying.
RESTART_EVERY = 5.0


def load_bundle(settings: Settings, *, candidate: bool = True) -> Any:
    """The served bundle (with its candidate in shadow, if one is named), as settings say."""
    import sidecar

    if not settings.bundle:
        raise SidecarError(
            "SIDECAR_BUNDLE must name the bundle directory to serve; got nothing. "
            "Example: SIDECAR_BUNDLE=./my-bundle bentoml serve"
        )
    bundle = sidecar.load(
        settings.bundle,
        trusted=settings.trusted,
        allow_pickle=settings.allow_pickle,
        shadow_timeout=settings.shadow_timeout,
    )
    if candidate and settings.candidate:
        bundle.attach_candidate(
            sidecar.load(
                settings.candidate, trusted=settings.trusted, allow_pickle=settings.allow_pickle
            )
        )
    return bundle


def open_recorder(settings: Settings) -> Any:
    """A recorder on the settings' store, feeding the Prometheus counters."""
    from ..recording import Recorder, open_store
    from ._metrics import RECORDER

    # Not migrated here: a store that is down at start-up must not stop serving;
    # the recorder migrates before its first write and retries until it can.
    store = open_store(settings.store, migrate=False)
    recorder = Recorder(store, max_queue=settings.recorder_queue, linger=settings.recorder_linger)
    recorder.on_event = lambda event, n: RECORDER.labels(event).inc(n)
    return recorder


def record_policy(settings: Settings) -> Any:
    from ..recording import RecordPolicy

    return RecordPolicy(
        exclude=settings.record_exclude,
        hash=settings.record_hash,
        key=settings.hash_key.encode() if settings.hash_key else None,
    )


def set_live_gauges(bundle: Any) -> None:
    """Unknown-code rates, shadow disagreement and recorder queue, from ``bundle``'s counts."""
    from ._metrics import DISAGREEMENT, QUEUE, UNKNOWN_RATE

    stats = bundle.stats
    if stats.records:
        for feature in bundle.preprocessing.categorical_fields:
            UNKNOWN_RATE.labels(feature).set(stats.unknown.get(feature, 0) / stats.records)
    if stats.shadow_compared:
        DISAGREEMENT.set(stats.shadow_disagreements / stats.shadow_compared)
    if bundle.recorder is not None:
        QUEUE.set(bundle.recorder.pending())


# -- the worker's side ----------------------------------------------------------------


class ShadowProcess:
    """A worker's handle on its shadow process: start, feed, flush, close, restart.

    ``on_dropped(n)`` is called (on the caller's thread) for every ``n`` records
    that could not be handed over; they are also reported to the child, which
    adds them to its writer's ``dropped`` count in the store.
    """

    def __init__(
        self,
        *,
        start_timeout: float = 120.0,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.start_timeout = start_timeout
        self.on_dropped = on_dropped
        self.dropped = 0
        self.restarts = 0
        self._unreported = 0  # dropped here, not yet told to a child
        self._lock = threading.Lock()  # sends, and swapping in a restarted child
        self._flush_lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._restarting = False
        self._last_start = 0.0
        self._closed = False
        self._sock, self._proc = self._spawn()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    # -- the request path --------------------------------------------------------------

    def submit(self, item: tuple[Any, ...]) -> bool:
        """Hand ``(records, X, prediction, timestamps)`` to the child; never blocks.

        ``False`` when the records were dropped (and counted): the child is
        behind by a full socket buffer, restarting, or gone. A request larger
        than one datagram goes in pieces; once its first piece is taken, the
        rest may wait up to a second for the child to read.
        """
        n = len(item[0])
        with self._lock:
            if self._closed or self._restarting:
                self._drop(n)
                return False
            payload = pickle.dumps(("batch", *item, self._unreported), protocol=5)
            try:
                sent = _send_message(self._sock, payload)
            except OSError as exc:
                self._drop(n)
                self._restart_later(f"sending to it failed: {exc}")
                return False
            if not sent:
                self._drop(n)
                return False
            self._unreported = 0
            return True

    def _drop(self, n: int) -> None:
        self.dropped += n
        self._unreported += n
        if self.on_dropped is not None:
            with contextlib.suppress(Exception):
                self.on_dropped(n)

    # -- flush and close ----------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the child has run and written everything sent so far."""
        deadline = time.monotonic() + timeout
        with self._flush_lock:
            token = next(self._tokens)
            with self._lock:
                sock = self._sock
                if self._closed or self._restarting:
                    return False
                if not _send_until(sock, b"M" + pickle.dumps(("flush", token)), deadline):
                    return False
            while True:
                reply = _recv_until(sock, deadline)
                if reply is None:
                    return False
                kind, got = pickle.loads(reply)
                if kind == "flushed" and got == token:
                    return True

    def close(self, timeout: float = 30.0) -> bool:
        """Let the child finish and write everything, then wait for it; ``True`` if it did."""
        with self._lock:
            self._closed = True
            sock, proc = self._sock, self._proc
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            _send_until(sock, b"M" + pickle.dumps(("close", 0)), deadline)
            sock.shutdown(socket.SHUT_WR)
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("the shadow process did not finish in %.0f s; killing it", timeout)
            proc.kill()
            proc.wait()
            code = -signal.SIGKILL
        finally:
            sock.close()
            _mark_dead(proc.pid)
        if code != 0:
            logger.error("the shadow process ended with exit code %s", code)
        return code == 0

    # -- starting and restarting ----------------------------------------------------------

    def _spawn(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        self._last_start = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sidecar.serving._shadow_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ready = _recv_until(ours, time.monotonic() + self.start_timeout)
        if ready != b"ready":
            with contextlib.suppress(OSError):
                proc.kill()
            code = proc.wait()
            ours.close()
            raise SidecarError(
                f"the shadow process did not start (exit code {code}); its error is in the log "
                "above. It loads the bundle and opens the store that SIDECAR_BUNDLE and "
                "SIDECAR_STORE name."
            )
        ours.setblocking(False)
        return ours, proc

    def _restart_later(self, why: str) -> None:
        """Start a fresh child on a thread of its own; records are dropped meanwhile."""
        if self._restarting or self._closed:
            return
        self._restarting = True
        code = self._proc.poll()
        logger.error(
            "the shadow process (pid %d, exit code %s) is gone: %s; restarting it",
            self._proc.pid,
            code,
            why,
        )
        threading.Thread(target=self._restart, name="sidecar-shadow-restart", daemon=True).start()

    def _restart(self) -> None:
        old_sock, old_proc = self._sock, self._proc
        with contextlib.suppress(OSError):
            old_sock.close()
        with contextlib.suppress(OSError):
            old_proc.kill()
        with contextlib.suppress(Exception):
            old_proc.wait(10)
        _mark_dead(old_proc.pid)
        while not self._closed:
            time.sleep(max(0.0, self._last_start + RESTART_EVERY - time.monotonic()))
            try:
                sock, proc = self._spawn()
            except Exception:
                logger.exception("restarting the shadow process failed; trying again")
                continue
            with self._lock:
                self._sock, self._proc = sock, proc
                self.restarts += 1
                self._restarting = False
            logger.warning("the shadow process is back (pid %d)", proc.pid)
            return


def _send_message(sock: socket.socket, payload: bytes) -> bool:
    """Send ``payload`` without blocking; ``False`` if the child's buffer is full.

    Raises ``OSError`` if the child is gone, or stopped reading in the middle
    of a message sent in pieces (the stream is then broken: restart it).
    """
    if len(payload) <= DATAGRAM:
        try:
            sock.sendmsg([b"M", payload])
        except BlockingIOError:
            return False
        return True
    view = memoryview(payload)
    starts = range(0, len(payload), DATAGRAM)
    try:
        sock.sendmsg([b"C", view[:DATAGRAM]])
    except BlockingIOError:
        return False  # nothing of it was sent: the stream is intact
    deadline = time.monotonic() + PIECES_DEADLINE
    for start in starts[1:]:
        tag = b"E" if start + DATAGRAM >= len(payload) else b"C"
        if not _send_until(sock, [tag, view[start : start + DATAGRAM]], deadline):
            raise OSError(errno.ETIMEDOUT, "the child stopped reading in the middle of a message")
    return True


def _send_until(sock: socket.socket, message: bytes | list[Any], deadline: float) -> bool:
    parts = [message] if isinstance(message, bytes) else message
    while True:
        try:
            sock.sendmsg(parts)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [sock], [], left)


def _recv_until(sock: socket.socket, deadline: float) -> bytes | None:
    """One message, or ``None`` at the deadline or when the other end is gone."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                data = sock.recv(DATAGRAM + 1)
            except BlockingIOError:
                continue
            except OSError:
                return None
            return data or None


def _mark_dead(pid: int) -> None:
    """Let Prometheus drop the live gauges of an ended child (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        with contextlib.suppress(Exception):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# -- the child's side -----------------------------------------------------------------

_WHOLE, _LAST = ord("M"), ord("E")


def main(argv: Sequence[str]) -> int:
    """Serve one worker's shadow work until it closes the socket; 0 if every record was written."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the worker ends us by closing the socket
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    # The reader below must get the GIL back quickly even from a baseline that
    # spins in pure Python, or the worker's socket buffer fills and drops.
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings_from_env()
    bundle = load_bundle(settings)
    for part in (bundle.baseline, None if bundle.candidate is None else bundle.candidate.advanced):
        if part is not None and part.framework == "torch":
            import torch

            torch.set_num_threads(1)
    from ._metrics import SHADOW

    bundle.shadow.on_outcome = lambda outcome: SHADOW.labels(outcome).inc()
    recorder = open_recorder(settings)
    bundle.attach_recorder(recorder, policy=record_policy(settings))
    bundle.observers.append(set_live_gauges)
    sock.send(b"ready")
    buffer = bytearray(DATAGRAM + 1)
    view = memoryview(buffer)
    pieces = bytearray()
    stats = bundle.stats
    try:
        while True:
            n = sock.recv_into(buffer)
            if n == 0:
                break  # the worker closed its end, or died
            tag = buffer[0]
            if tag == _WHOLE:
                message = pickle.loads(view[1:n])
            else:
                pieces += view[1:n]
                if tag != _LAST:
                    continue
                message = pickle.loads(pieces)
                pieces = bytearray()
            kind = message[0]
            if kind == "batch":
                _, records, X, pred, timestamps, dropped = message
                if dropped:
                    recorder.add_dropped(dropped)
                stats.requests += 1
                stats.records += len(pred)
                if pred.unknown:
                    stats.unknown.update(pred.unknown)
                bundle.shadow.submit((records, X, pred, timestamps))
            elif kind == "flush":
                bundle.shadow.drain(timeout=5.0)
                recorder.flush(timeout=5.0)
                sock.send(pickle.dumps(("flushed", message[1])))
            elif kind == "close":
                break
    finally:
        drained = bundle.shadow.drain(timeout=10.0)
        written = recorder.close(timeout=30.0)
    return 0 if drained and written else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
