"""The shadow process: each serving worker's baseline, candidate and recorder, out of its GIL.

A serving worker queues every answered request for a process of its own and
goes on. A thread of the worker hands what gathered over every 50 ms, as one
message on a private ``socketpair`` (``SOCK_SEQPACKET``: whole datagrams, in
order; a message larger than a datagram goes in pieces). The child runs the
bundle's shadow machinery as the SDK does (micro-batches, timed model calls,
the batching recorder), so the rows it writes are the rows ``Bundle.predict``
writes in-process.

Why a process and not threads in the worker:

- the shadow work does not take the worker's GIL, which the request thread
  wants back hundreds of times a request (scikit-learn's boosted trees let go
  of it once per tree);
- a baseline that spins in pure Python, or crashes its interpreter (a native
  fault in an ONNX or torch model), cannot slow or kill the worker: the child
  is replaced, and what could not be handed over meanwhile is counted.

The contract on the request path is the recorder's: :meth:`ShadowProcess.submit`
never blocks; a full queue drops and counts (Prometheus, and the writer stats
the next child keeps in the store). What a child that crashed had not yet
written is lost, as with ``kill -9``: at most one flush interval.

The channel is private to a worker and the child it started, so messages are
pickles (protocol 5); nothing else can write to it. The child ignores SIGTERM
and SIGINT from its first line (a stopped ``bentoml serve`` signals the
worker's children too) and ends when the worker closes its end -- on shutdown,
when it retires the child, or when the worker dies: it then finishes the shadow
work, writes every queued record and exits.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from typing import Any

from .._errors import BundleError, SidecarError
from .._settings import Settings, settings_from_env
from .._shadow import ShadowRunner

__all__ = ["ShadowProcess", "load_bundle", "open_recorder"]

logger = logging.getLogger("sidecar.serving")

#: Largest datagram: a message is sent whole up to this size, in pieces beyond it.
#: (Each datagram carries a one-byte tag: M a whole message, C a piece, E the last piece.)
DATAGRAM = 128 << 10
#: How long a retired child may take to write what it has and exit.
RETIRE_TIMEOUT = 60.0
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
    # Loading runs only what the settings name (SIDECAR_TRUSTED, SIDECAR_ALLOW_PICKLE), and
    # with SIDECAR_PUBLIC_KEY only a bundle (and candidate) signed with its private key.
    options: dict[str, Any] = {
        "trusted": settings.trusted,
        "allow_pickle": settings.allow_pickle,
        "public_key": settings.public_key,
        "max_part_bytes": settings.max_part_bytes,
    }
    try:
        bundle = sidecar.load(settings.bundle, shadow_timeout=settings.shadow_timeout, **options)
        if candidate and settings.candidate:
            bundle.attach_candidate(sidecar.load(settings.candidate, **options))
    except BundleError as exc:
        # A refused bundle stays refused: a restarted worker would only refuse it again,
        # forever. In a BentoML worker, stop the server (the arbiter, our parent) instead.
        if "_bentoml_impl" in sys.argv[0]:
            logger.critical("refusing to serve %s: %s", settings.bundle, exc)
            os.kill(os.getppid(), signal.SIGTERM)
        raise
    return bundle


def open_recorder(settings: Settings) -> Any:
    """A recorder on the settings' store, feeding the Prometheus counters."""
    from ..recording import Recorder, open_store
    from ._metrics import RECORDER, UNSTORED

    # Not migrated here: a store that is down at start-up must not stop serving;
    # the recorder migrates before its first write and retries until it can.
    store = open_store(settings.store, migrate=False)
    recorder = Recorder(store, max_queue=settings.recorder_queue, linger=settings.recorder_linger)

    def on_event(event: str, n: int) -> None:
        RECORDER.labels(event).inc(n)
        if event != "written":  # a drop, or a commit that failed: the store may be behind
            UNSTORED.set(recorder.unstored_dropped())
        elif recorder.unstored_dropped() == 0:
            UNSTORED.set(0)

    recorder.on_event = on_event
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
    from ._metrics import DISAGREEMENT, QUEUE, UNKNOWN_RATE, UNSTORED

    stats = bundle.stats
    if stats.records:
        for feature in bundle.preprocessing.categorical_fields:
            UNKNOWN_RATE.labels(feature).set(stats.unknown.get(feature, 0) / stats.records)
    if stats.shadow_compared:
        DISAGREEMENT.set(stats.shadow_disagreements / stats.shadow_compared)
    if bundle.recorder is not None:
        QUEUE.set(bundle.recorder.pending())
        UNSTORED.set(bundle.recorder.unstored_dropped())


# -- the worker's side ----------------------------------------------------------------


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
    """

    def __init__(
        self,
        *,
        interval: float = 0.05,
        max_pending: int = 10_000,
        start_timeout: float = 120.0,
        send_timeout: float = 5.0,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.start_timeout = start_timeout
        self.send_timeout = send_timeout
        self.on_dropped = on_dropped
        self.dropped = 0
        self.restarts = 0
        self._unreported = 0  # dropped here, not yet told to a child
        self._counts = threading.Lock()  # the two counts above; never held across I/O
        self._io = threading.Lock()  # sends, and swapping children (never on the request path)
        self._flush_lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._closed = False
        self._last_start = 0.0
        self.runner = ShadowRunner(interval=interval, max_pending=max_pending)
        self.runner.handler = self._send_batch
        self._child: _Child | None = self._spawn()

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.proc.pid

    # -- the request path ------------------------------------------------------------------

    def submit(self, item: tuple[Any, ...]) -> bool:
        """Queue ``(records, X, prediction, timestamps)`` for the child; never blocks.

        ``False`` when the records were dropped (and counted): the queue is full.
        """
        if self.runner.submit(item):
            return True
        self._drop(len(item[0]))
        return False

    def _send_batch(self, batch: list[tuple[Any, ...]]) -> None:
        """The runner's handler: one message for everything that gathered."""
        n = sum(len(item[0]) for item in batch)
        with self._io:
            child = self._child
            if child is None or self._closed:
                self._drop(n)  # restarting, or shut down
                return
            with self._counts:
                reported = self._unreported
            try:
                payload = pickle.dumps(("batch", batch, reported), protocol=5)
            except Exception:
                logger.exception("a batch for the shadow process could not be pickled")
                self._drop(n)
                return
            try:
                _send(child.sock, payload, time.monotonic() + self.send_timeout)
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

    # -- flush and close ----------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the child has run and written everything submitted so far."""
        deadline = time.monotonic() + timeout
        if not self.runner.drain(timeout):
            return False
        with self._flush_lock:
            with self._io:
                child = self._child
                if child is None or self._closed:
                    return False
                token = next(self._tokens)
                try:
                    _send(child.sock, pickle.dumps(("flush", token)), deadline)
                except (OSError, ValueError) as exc:
                    self._retire(child, f"sending to it failed: {exc!r}")
                    return False
            while True:  # only flush reads from the socket: the replies are its own
                reply = _recv(child.sock, deadline)
                if reply is None:
                    return False
                kind, got = pickle.loads(reply)
                if kind == "flushed" and got == token:
                    return True

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
            _send(child.sock, pickle.dumps(("close", 0)), deadline)
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
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # no terminal's or process group's signals
            )
            theirs.close()
            ready = _recv(ours, time.monotonic() + self.start_timeout)
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
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "from sidecar.serving._shadow_process import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _send(sock: socket.socket, payload: bytes, deadline: float) -> None:
    """Send one message (in pieces beyond a datagram), waiting for room until ``deadline``.

    Raises ``TimeoutError`` at the deadline, ``OSError`` if the child is gone.
    """
    if len(payload) <= DATAGRAM:
        _send_datagram(sock, [b"M", payload], deadline)
        return
    view = memoryview(payload)
    for start in range(0, len(payload), DATAGRAM):
        tag = b"E" if start + DATAGRAM >= len(payload) else b"C"
        _send_datagram(sock, [tag, view[start : start + DATAGRAM]], deadline)


def _send_datagram(sock: socket.socket, parts: list[Any], deadline: float) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while True:
        try:
            sock.sendmsg(parts)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the shadow process stopped reading") from None
            poller.poll(left * 1000)


def _recv(sock: socket.socket, deadline: float) -> bytes | None:
    """One message, or ``None`` at the deadline or when the other end is gone."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):
        return None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if poller.poll(left * 1000):
            try:
                data = sock.recv(DATAGRAM + 1)
            except BlockingIOError:
                continue
            except (OSError, ValueError):
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
    # spins in pure Python, or the worker's sends wait and then drop.
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings_from_env()
    bundle = load_bundle(settings)
    for part in (bundle.baseline, None if bundle.candidate is None else bundle.candidate.advanced):
        if part is not None and part.framework == "torch":
            import torch

            torch.set_num_threads(1)
    from ._live_estimate import attach_live_estimate
    from ._metrics import QUEUE, SHADOW

    bundle.shadow.on_outcome = lambda outcome: SHADOW.labels(outcome).inc()
    recorder = open_recorder(settings)
    bundle.attach_recorder(recorder, policy=record_policy(settings))
    bundle.observers.append(set_live_gauges)
    attach_live_estimate(bundle)  # sidecar_estimated_metric, before labels

    def flush_and_reply(token: int) -> None:
        # Off the reading thread: reading must go on while the store is slow.
        bundle.shadow.drain(timeout=5.0)
        recorder.flush(timeout=5.0, fail_fast=True)
        with contextlib.suppress(OSError):
            sock.send(b"M" + pickle.dumps(("flushed", token)))

    sock.send(b"ready")
    buffer = bytearray(DATAGRAM + 1)
    view = memoryview(buffer)
    pieces = bytearray()
    try:
        while True:
            n = sock.recv_into(buffer)
            if n == 0:
                break  # the worker closed its end (or died); a message in pieces is discarded
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
                _, items, dropped = message
                if dropped:
                    recorder.add_dropped(dropped)
                for item in items:
                    # the worker's counts, kept here too for the unknown-rate gauges
                    bundle.stats.count(len(item[2]), item[2].unknown)
                    bundle.shadow.submit(item)
            elif kind == "flush":
                threading.Thread(target=flush_and_reply, args=(message[1],), daemon=True).start()
            elif kind == "close":
                break
    finally:
        # A backstop: a baseline stuck in native code must not keep us alive forever.
        signal.alarm(120)
        drained = bundle.shadow.drain(timeout=10.0)
        written = recorder.close(timeout=30.0)
        QUEUE.set(0)
    return 0 if drained and written else 1
