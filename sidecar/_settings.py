"""Every environment variable model-sidecar reads, in one place.

=============================  ===========================================  ==========
variable                       meaning                                      default
=============================  ===========================================  ==========
``SIDECAR_BUNDLE``             the bundle directory the service serves      (required)
``SIDECAR_MODEL``              without SIDECAR_BUNDLE: the BentoML model    (the last
                               tag of the bundle to serve (from             imported)
                               ``sidecar bento import``)
``SIDECAR_CANDIDATE``          a retrained candidate to run in shadow       (none)
``SIDECAR_STORE``              where predictions are recorded (a URL)       ``sqlite:///sidecar-records.db``
``SIDECAR_MAX_BODY_BYTES``     largest request body accepted (413 beyond)   10485760
``SIDECAR_MAX_BATCH``          most records in one request                  10000
``SIDECAR_SHADOW_TIMEOUT``     seconds a baseline may take before it is     1.0
                               counted as a timeout
``SIDECAR_TRAFFIC_TIMEOUT``    BentoML's request timeout in seconds         5
``SIDECAR_BODY_TIMEOUT``       seconds a request body may pause before it   1.0
                               is refused as incomplete (400)
``SIDECAR_WORKERS``            BentoML worker processes                     1
``SIDECAR_TRUSTED``            comma-separated names a bundle may load and  (none)
                               so run: import paths (a torch factory, a
                               callable model) and skops types beyond the
                               allow-list, each by its exact name
``SIDECAR_ALLOW_PICKLE``       ``1`` to load bundles holding pickles        0
``SIDECAR_PUBLIC_KEY``         a PEM public key: the served bundle must     (none)
                               carry a signature that verifies with it
``SIDECAR_MAX_PART_BYTES``     most bytes one bundle part may hold once     536870912
                               inflated (arrays are checked before)
``SIDECAR_RECORD_EXCLUDE``     comma-separated raw fields never recorded    (none)
``SIDECAR_RECORD_HASH``        raw fields recorded only as a keyed hash     (none)
``SIDECAR_HASH_KEY``           the secret key of those hashes               (none)
``SIDECAR_FEEDBACK_TOKEN``     bearer token ``/feedback`` requires          (none: open)
``SIDECAR_RECORDER_QUEUE``     most records waiting to be written           200000
``SIDECAR_RECORDER_LINGER``    seconds the writer waits to batch commits    0.25
``SIDECAR_SWITCH_INTERVAL``    a serving worker's GIL switch interval (s)   0.002
``SIDECAR_SHADOW_PROCESS``     ``1``: each worker runs the baseline and     1
                               recorder in a process of its own (no GIL
                               shared with requests; a baseline that
                               crashes or spins cannot hurt the worker);
                               ``0``: on threads in the worker (always,
                               with a ``memory:`` store)
``SIDECAR_MEMORY_LIMIT``       bytes an analysis (diagnose, report,         0: 60 % of
                               retrain, promote, export) may use; a window  this machine
                               that would need more is refused, naming it
=============================  ===========================================  ==========
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import InputError

__all__ = ["Settings", "settings_from_env"]

_PREFIX = "SIDECAR_"
_LISTS = frozenset({"trusted", "record_exclude", "record_hash"})


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle: str | None = None
    model: str | None = None
    candidate: str | None = None
    store: str = "sqlite:///sidecar-records.db"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_batch: int = Field(default=10_000, gt=0)
    shadow_timeout: float = Field(default=1.0, gt=0)
    traffic_timeout: float = Field(default=5.0, gt=0)
    body_timeout: float = Field(default=1.0, gt=0)
    workers: int = Field(default=1, gt=0)
    trusted: tuple[str, ...] = ()
    allow_pickle: bool = False
    public_key: str | None = None
    max_part_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    record_exclude: tuple[str, ...] = ()
    record_hash: tuple[str, ...] = ()
    hash_key: str | None = None
    feedback_token: str | None = None
    recorder_queue: int = Field(default=200_000, gt=0)
    recorder_linger: float = Field(default=0.25, ge=0)
    switch_interval: float = Field(default=0.002, gt=0, le=0.1)
    #: ``None``: in a process unless the store lives in the worker's memory
    shadow_process: bool | None = None
    memory_limit: int = Field(default=0, ge=0)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``SIDECAR_*`` variables; an unknown one is an error."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    known = set(Settings.model_fields)
    for key, raw in env.items():
        if not key.startswith(_PREFIX):
            continue
        name = key[len(_PREFIX) :].lower()
        if name not in known:
            raise InputError(
                f"environment variable {key} is not a model-sidecar setting; the settings are "
                f"{sorted(_PREFIX + k.upper() for k in known)}."
            )
        values[name] = tuple(t for t in raw.split(",") if t) if name in _LISTS else raw
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_PREFIX}{str(e['loc'][0]).upper()} {e['msg'].lower()} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise InputError(f"invalid settings: {problems}.") from exc
