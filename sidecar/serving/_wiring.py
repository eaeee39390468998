"""How the service builds what it serves: bundle, candidate, recorder, shadow pipeline.

Every collaborator is made here and passed in where it is used -- the service
and the shadow process's child both wire their pipelines with these functions
-- so nothing is patched onto a live object.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import SidecarError
from .._settings import Settings

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
    from ..recording import Recorder, RecordPolicy
    from ..shadow import ShadowPipeline

__all__ = [
    "candidate_for",
    "check_servable",
    "load_bundle",
    "load_champion",
    "open_recorder",
    "pipeline_for",
    "record_policy",
]

logger = logging.getLogger("sidecar.serving")


def _options(settings: Settings) -> dict[str, Any]:
    # Loading runs only what the settings name (SIDECAR_TRUSTED, SIDECAR_ALLOW_PICKLE), and
    # with SIDECAR_PUBLIC_KEY only a bundle (and candidate) signed with its private key.
    return {
        "trusted": settings.trusted,
        "allow_pickle": settings.allow_pickle,
        "public_key": settings.public_key,
        "max_part_bytes": settings.max_part_bytes,
    }


def load_champion(settings: Settings, path: str | os.PathLike[str] | None = None) -> Bundle:
    """The bundle to serve: ``path``, or what ``SIDECAR_BUNDLE`` names (a registry's active one)."""
    import sidecar

    where = path if path is not None else settings.bundle
    if not where:
        raise SidecarError(
            "SIDECAR_BUNDLE must name the bundle directory to serve; got nothing, and BentoML's "
            "model store holds no bundle either. Example: SIDECAR_BUNDLE=./my-bundle bentoml "
            "serve; or, for a Bento that carries it: sidecar bento import ./my-bundle, then "
            "bentoml build"
        )
    return sidecar.load(where, shadow_timeout=settings.shadow_timeout, **_options(settings))


def load_candidate(settings: Settings) -> Bundle | None:
    """The candidate ``SIDECAR_CANDIDATE`` names (checked and loaded), or ``None``."""
    import sidecar

    if not settings.candidate:
        return None
    return sidecar.load(settings.candidate, **_options(settings))


def candidate_for(champion: Bundle, candidate: Bundle | None) -> Bundle | None:
    """``candidate`` if it can run in shadow beside ``champion`` and is another version.

    A candidate that has been promoted is the champion now: nothing to compare.
    Raises :class:`~sidecar.InputError` for one that does not fit the champion.
    """
    from ..shadow import check_candidate

    if candidate is None or candidate.version == champion.version:
        return None
    check_candidate(champion, candidate)
    return candidate


def check_servable(settings: Settings) -> tuple[Bundle, Bundle | None]:
    """Load and check the bundle and its candidate as the service will; raise if refused.

    Returns the champion and the candidate as loaded (see :func:`candidate_for`
    for whether it runs beside this champion).
    """
    champion = load_champion(settings)
    try:
        candidate = load_candidate(settings)
    except SidecarError as exc:
        raise type(exc)(f"SIDECAR_CANDIDATE {settings.candidate}: {exc}") from exc
    try:
        candidate_for(champion, candidate)
        return champion, candidate
    except SidecarError as exc:
        raise type(exc)(
            f"SIDECAR_CANDIDATE {settings.candidate} cannot run in shadow beside "
            f"{settings.bundle}: {exc}"
        ) from exc


def refuse_unservable(settings: Settings) -> None:
    """Exit (status 2) with the reason if the service would refuse its bundle or candidate."""
    try:
        check_servable(settings)
    except SidecarError as exc:
        raise SystemExit(f"sidecar: refusing to serve {settings.bundle}: {exc}") from None


def load_bundle(settings: Settings, *, candidate: bool = True) -> Bundle:
    """The served bundle, with its candidate in shadow when ``candidate`` (the SDK's wiring).

    In a BentoML worker a refusal also stops the server: a restarted worker
    would only refuse it again, forever.
    """
    try:
        if not candidate:
            return load_champion(settings)
        champion, cand = check_servable(settings)
    except SidecarError as exc:
        stop_server_if_worker(settings, exc)
        raise
    champion.attach_candidate(candidate_for(champion, cand))
    return champion


def stop_server_if_worker(settings: Settings, exc: Exception) -> None:
    """In a BentoML worker, stop the server (the arbiter, our parent) after a refusal."""
    if "_bentoml_impl" in sys.argv[0]:
        logger.critical("refusing to serve %s: %s", settings.bundle, exc)
        os.kill(os.getppid(), signal.SIGTERM)


def open_recorder(settings: Settings) -> Recorder:
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


def record_policy(settings: Settings) -> RecordPolicy:
    from ..recording import RecordPolicy

    return RecordPolicy(
        exclude=settings.record_exclude,
        hash=settings.record_hash,
        key=settings.hash_key.encode() if settings.hash_key else None,
    )


def pipeline_for(
    bundle: Bundle, candidate: Bundle | None, recorder: Recorder, settings: Settings
) -> ShadowPipeline:
    """The served bundle's shadow stage: its baseline, the candidate, the recorder, the gauges."""
    from ..shadow import ShadowPipeline
    from ._live_estimate import attach_live_estimate
    from ._metrics import SHADOW

    def count(outcome: str) -> None:
        SHADOW.labels(outcome).inc()

    one_thread(bundle.baseline, None if candidate is None else candidate.advanced)
    pipeline = ShadowPipeline(
        bundle,
        recorder=recorder,
        policy=record_policy(settings),
        candidate=candidate,
        observers=(live_gauges(recorder),),
        on_outcome=count,
        timeout=settings.shadow_timeout,
    )
    attach_live_estimate(pipeline)  # sidecar_estimated_metric, before labels (_live_estimate)
    return pipeline


def live_gauges(recorder: Recorder) -> Callable[[ShadowPipeline], None]:
    """An observer: unknown-code rates, shadow disagreement and recorder queue."""
    from ._metrics import DISAGREEMENT, QUEUE, UNKNOWN_RATE, UNSTORED

    def observe(pipeline: ShadowPipeline) -> None:
        bundle = pipeline.bundle
        stats = bundle.stats
        if stats.records:
            for feature in bundle.preprocessing.categorical_fields:
                UNKNOWN_RATE.labels(feature).set(stats.unknown.get(feature, 0) / stats.records)
        if stats.shadow_compared:
            DISAGREEMENT.set(stats.shadow_disagreements / stats.shadow_compared)
        QUEUE.set(recorder.pending())
        UNSTORED.set(recorder.unstored_dropped())

    return observe


def one_thread(*models: Any) -> None:
    """Torch models serve with one intra-op thread (BENTOML_NOTES: OpenMP tails)."""
    if any(m is not None and m.framework == "torch" for m in models):
        import torch

        torch.set_num_threads(1)


def bundle_dir(bundle: Bundle) -> str:
    """The directory ``bundle`` was loaded from (a registry's version directory)."""
    assert bundle.path is not None, "a served bundle is loaded from a directory"
    return str(Path(bundle.path).resolve())
