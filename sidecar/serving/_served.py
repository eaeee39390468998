"""What a worker serves, as one value it replaces whole: bundle, shadow stage, recorder.

:class:`Serving` holds the current :class:`Served` and switches it when the
registry's active version changes (see ``_hotswap``). A request reads
``serving.current`` once and uses that value from start to end.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import SidecarError
from .._redact import redact_url
from .._settings import Settings
from ._hotswap import ActiveWatcher
from ._wiring import (
    bundle_dir,
    candidate_for,
    check_servable,
    load_champion,
    one_thread,
    open_recorder,
    pipeline_for,
    stop_server_if_worker,
)

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import Recorder, Store
    from ..shadow import ShadowPipeline, ShadowProcess, ShadowSink

__all__ = ["Served", "Serving"]

logger = logging.getLogger("sidecar.serving")

#: The module the shadow process's child runs.
CHILD = "sidecar.serving._shadow_child"


@dataclass(frozen=True)
class Served:
    """One version being served and where its shadow work goes."""

    bundle: Bundle
    #: where ``predict`` hands the shadow work: ``pipeline`` or ``process``
    sink: ShadowSink
    #: the shadow stage on threads of this worker (``None`` with a shadow process)
    pipeline: ShadowPipeline | None
    process: ShadowProcess | None
    recorder: Recorder | None
    #: the store ``/feedback`` writes to
    store: Store
    #: ``SIDECAR_CANDIDATE`` as loaded; it runs beside any champion it fits
    candidate: Bundle | None


def uses_shadow_process(settings: Settings) -> bool:
    """Whether each worker runs its shadow stage in a process of its own.

    The default: the shadow work (baseline, candidate, recorder) then takes no
    GIL from the requests. On threads in the worker, each wake-up of the shadow
    or recorder thread delays the request thread: on two cores that cost 1.38-1.45x
    the bare service's p99 at one client, against 1.16x in a process
    (``tests/benchmarks/README.md``, session 8). A ``memory:`` store lives in
    one process, and a platform without ``SOCK_SEQPACKET`` pairs (macOS) has
    no channel to the process: both keep the threads, with a warning when
    ``SIDECAR_SHADOW_PROCESS=1`` asked for the process by name.
    """
    from ..shadow._process import process_supported

    if settings.shadow_process is False:
        return False
    why_not = (
        f"SIDECAR_STORE={redact_url(settings.store)} lives in one process"
        if settings.store.startswith("memory:")
        else process_supported()
    )
    if why_not is None:
        return True
    log = logger.warning if settings.shadow_process else logger.info
    log("%s: the shadow stage runs on threads in the worker", why_not)
    return False


def _start(settings: Settings) -> Served:
    try:
        bundle, candidate = check_servable(settings)
    except SidecarError as exc:
        stop_server_if_worker(settings, exc)
        raise
    one_thread(bundle.advanced)
    if uses_shadow_process(settings):
        from ..recording import open_store
        from ..shadow import ShadowProcess
        from ._metrics import RECORDER, SHADOW

        def dropped(n: int) -> None:
            SHADOW.labels("dropped").inc()
            RECORDER.labels("dropped").inc(n)

        # The store serves /feedback here; the child writes the records.
        store = open_store(settings.store, migrate=False)
        process = ShadowProcess(
            child=CHILD,
            bundle_path=bundle_dir(bundle),
            bundle_version=bundle.version,
            on_dropped=dropped,
        )
        return Served(bundle, process, None, process, None, store, None)
    recorder = open_recorder(settings)
    pipeline = pipeline_for(bundle, candidate_for(bundle, candidate), recorder, settings)
    return Served(bundle, pipeline, pipeline, None, recorder, recorder.store, candidate)


def _switched(old: Served, settings: Settings) -> Served | None:
    """``old`` moved to the registry's active version; ``None`` when that is ``old``'s."""
    bundle = load_champion(settings)  # verified as at start-up; raises if refused
    if bundle.version == old.bundle.version:
        return None
    if bundle.task != old.bundle.task:
        raise SidecarError(
            f"version {bundle.version} is a {bundle.task} bundle; this service serves "
            f"{old.bundle.task}: restart it to serve another task."
        )
    one_thread(bundle.advanced)
    if old.process is not None:
        error = old.process.prepare(bundle_dir(bundle), bundle.version)
        if error is not None:
            raise SidecarError(f"the shadow process could not load {bundle.version}: {error}")
        return dataclasses.replace(old, bundle=bundle)
    assert old.recorder is not None
    try:
        candidate = candidate_for(bundle, old.candidate)
    except SidecarError as exc:
        logger.warning("the candidate does not run beside version %s: %s", bundle.version, exc)
        candidate = None
    pipeline = pipeline_for(bundle, candidate, old.recorder, settings)
    return dataclasses.replace(old, bundle=bundle, sink=pipeline, pipeline=pipeline)


class Serving:
    """A worker's current :class:`Served`, switched when the registry's pointer moves."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current = _start(settings)
        self._retired: list[ShadowPipeline] = []
        self._lock = threading.Lock()
        self._watcher = ActiveWatcher(Path(settings.bundle or "."), self.switch).start()
        shadow = self.current.process
        logger.info(
            "serving bundle %s version %s, recording to %s (shadow %s)",
            self.current.bundle.name,
            self.current.bundle.version,
            redact_url(settings.store),
            f"process {shadow.pid}" if shadow else "threads",
        )

    def switch(self) -> bool:
        """Serve the registry's active version now, if it is another one."""
        with self._lock:
            old = self.current
            new = _switched(old, self.settings)
            if new is None:
                return True
            if old.pipeline is not None:
                self._retired = [p for p in self._retired if not p.drain(0)] + [old.pipeline]
            self.current = new  # one reference: a request uses one bundle from start to end
        gc.freeze()  # the new bundle lives as long as the old one did: keep GC off it
        logger.info(
            "now serving bundle %s version %s (was %s)",
            new.bundle.name,
            new.bundle.version,
            old.bundle.version,
        )
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the shadow work of every request answered so far was handed on."""
        served = self.current
        if served.process is not None:
            return served.process.flush(timeout)
        assert served.pipeline is not None
        return all([p.drain(timeout) for p in (*self._retired, served.pipeline)])

    def flush(self) -> None:
        """Before ``/feedback``: let the records of the requests answered so far be written."""
        served = self.current
        if served.process is not None:
            served.process.flush(timeout=2.0)
        elif served.recorder is not None:
            self.drain(timeout=5.0)
            served.recorder.flush(timeout=5.0, fail_fast=True)  # a store that is down: answer now

    def close(self) -> None:
        """At shutdown: finish the shadow work, write every queued record."""
        self._watcher.stop()
        with self._lock:
            served = self.current
        if served.process is not None:
            if not served.process.close(timeout=45.0):
                logger.error("the shadow process did not write every record at shutdown")
            served.store.close()
            return
        assert served.recorder is not None
        self.drain(timeout=10.0)
        if not served.recorder.close(timeout=30.0):
            logger.error("shutdown left records unwritten: %s", served.recorder.counters.snapshot())
