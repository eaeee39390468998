"""The shadow process's child: one worker's baseline, candidate and recorder.

Started by :class:`~sidecar.shadow.ShadowProcess` as ``main([fd, bundle_dir, version])``.
It keeps one :class:`~sidecar.shadow.ShadowPipeline` per bundle version and
routes each request to the pipeline of the version that answered it, so a
worker that switched versions (a promotion, a rollback) records each request
with the baseline and part versions of the bundle that served it.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import SidecarError
from .._settings import Settings, settings_from_env
from ..bundle._registry import VERSIONS
from ..shadow._wire import Batch, Close, Flush, Prepare, Receiver, Reply
from ._wiring import candidate_for, load_candidate, load_champion, open_recorder, pipeline_for

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import Recorder
    from ..shadow import ShadowItem, ShadowPipeline

__all__ = ["main"]

logger = logging.getLogger("sidecar.serving")


class _Pipelines:
    """The child's pipelines, by bundle version."""

    def __init__(self, settings: Settings, recorder: Recorder, candidate: Bundle | None) -> None:
        self.settings = settings
        self.recorder = recorder
        self.candidate = candidate
        self.by_version: dict[str, ShadowPipeline] = {}
        self._unknown: set[str] = set()

    def load(self, path: str, version: str) -> None:
        """Make a pipeline for the bundle ``version`` at ``path`` (if there is none yet)."""
        if version in self.by_version:
            return
        try:
            bundle = load_champion(self.settings, path)
        except SidecarError:
            # A plain bundle directory turned into a registry (its first promotion)
            # while the worker served it: its files moved to versions/<version>.
            moved = Path(path) / VERSIONS / version
            if not moved.is_dir():
                raise
            bundle = load_champion(self.settings, moved)
        if bundle.version != version:
            raise SidecarError(
                f"{path} holds version {bundle.version}; the worker serves {version}."
            )
        if bundle.version in self.by_version:
            return
        try:
            candidate = candidate_for(bundle, self.candidate)
        except Exception as exc:  # checked at start-up; a later champion may not fit it
            logger.warning("the candidate does not run in shadow beside %s: %s", path, exc)
            candidate = None
        self.by_version[bundle.version] = pipeline_for(
            bundle, candidate, self.recorder, self.settings
        )

    def submit(self, item: ShadowItem) -> None:
        pred = item.prediction
        pipeline = self.by_version.get(pred.bundle_version)
        if pipeline is None:
            if pred.bundle_version not in self._unknown:
                self._unknown.add(pred.bundle_version)
                logger.error("no pipeline for version %s: records dropped", pred.bundle_version)
            self.recorder.add_dropped(len(item))
            return
        # the worker's counts, kept here too for the unknown-rate gauges
        pipeline.bundle.stats.count(len(pred), pred.unknown)
        pipeline.submit(item)

    def drain(self, timeout: float) -> bool:
        return all([p.drain(timeout) for p in list(self.by_version.values())])


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
    recorder = open_recorder(settings)
    pipelines = _Pipelines(settings, recorder, load_candidate(settings))
    pipelines.load(argv[1], argv[2])
    from ._metrics import QUEUE

    def flush_and_reply(token: int) -> None:
        # Off the reading thread: reading must go on while the store is slow.
        error = None
        try:
            pipelines.drain(timeout=5.0)
            recorder.flush(timeout=5.0, fail_fast=True)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        receiver.reply(Reply(token, error))

    receiver = Receiver(sock)
    sock.send(b"ready")
    try:
        while True:
            message = receiver.next()
            if message is None or isinstance(message, Close):
                break
            if isinstance(message, Batch):
                if message.dropped:
                    recorder.add_dropped(message.dropped)
                for item in message.items:
                    pipelines.submit(item)
            elif isinstance(message, Flush):
                threading.Thread(target=flush_and_reply, args=(message.token,), daemon=True).start()
            elif isinstance(message, Prepare):
                # On the reading thread: what the worker sends next may need this version.
                try:
                    pipelines.load(message.path, message.version)
                    receiver.reply(Reply(message.token))
                except Exception as exc:
                    logger.exception("could not load %s", message.path)
                    receiver.reply(Reply(message.token, f"{type(exc).__name__}: {exc}"))
    finally:
        # A backstop: a baseline stuck in native code must not keep us alive forever.
        signal.alarm(120)
        drained = pipelines.drain(timeout=10.0)
        written = recorder.close(timeout=30.0)
        QUEUE.set(0)
    return 0 if drained and written else 1
