"""Every environment variable model-sidecar reads, in one place.

=============================  ===========================================  ==========
variable                       meaning                                      default
=============================  ===========================================  ==========
``SIDECAR_BUNDLE``             the bundle directory the service serves      (required)
``SIDECAR_STORE``              where predictions are recorded (a URL)       ``sqlite:///sidecar-records.db``
``SIDECAR_MAX_BODY_BYTES``     largest request body accepted (413 beyond)   10485760
``SIDECAR_MAX_BATCH``          most records in one request                  10000
``SIDECAR_SHADOW_TIMEOUT``     seconds a baseline may take before it is     1.0
                               counted as a timeout
``SIDECAR_TRAFFIC_TIMEOUT``    BentoML's request timeout in seconds         5
``SIDECAR_WORKERS``            BentoML worker processes                     1
``SIDECAR_TRUSTED``            comma-separated extra types skops may load   (none)
``SIDECAR_ALLOW_PICKLE``       ``1`` to load bundles holding pickles        0
=============================  ===========================================  ==========
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import InputError

__all__ = ["Settings", "settings_from_env"]

_PREFIX = "SIDECAR_"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle: str | None = None
    store: str = "sqlite:///sidecar-records.db"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_batch: int = Field(default=10_000, gt=0)
    shadow_timeout: float = Field(default=1.0, gt=0)
    traffic_timeout: float = Field(default=5.0, gt=0)
    workers: int = Field(default=1, gt=0)
    trusted: tuple[str, ...] = ()
    allow_pickle: bool = False


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
        values[name] = tuple(t for t in raw.split(",") if t) if name == "trusted" else raw
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_PREFIX}{str(e['loc'][0]).upper()} {e['msg'].lower()} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise InputError(f"invalid settings: {problems}.") from exc
