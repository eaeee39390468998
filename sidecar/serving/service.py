"""The BentoML service: one class, one ``POST /predict``; thin by design.

Serve it with ``bentoml serve`` from the repository root (``bentofile.yaml``
names this class) or with ``sidecar serve BUNDLE``; the bundle comes from the
``SIDECAR_BUNDLE`` setting. Everything it does is ``Bundle.predict(records,
shadow=True)``: the baseline, a candidate and the recorder run on the
bundle's shadow threads (``SIDECAR_SHADOW_PROCESS=1``: in a process of each
worker's own), so they can never fail or slow a response.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import re
import sys
from typing import Any, cast

import bentoml
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from .._errors import FieldProblem, InputError, SidecarError, short_repr
from .._settings import settings_from_env
from ..recording import Recorder, open_store
from ._middleware import BodyLimitMiddleware

__all__ = ["ErrorResponse", "PredictResponse", "Sidecar"]

logger = logging.getLogger("sidecar.serving")
_settings = settings_from_env()


class PredictRequest(BaseModel):
    """The body of ``POST /predict``. ``records`` is checked by the bundle's preprocessing,
    which names each bad field; a top-level field other than ``records`` is refused."""

    model_config = ConfigDict(extra="forbid")

    records: Any = Field(
        description="A non-empty list of raw records (JSON objects), one per example.",
        json_schema_extra={"examples": [[{"feature": 1.0}]]},
    )


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="The advanced model's prediction per record.")
    probabilities: list[list[float]] | None = Field(
        default=None, description="Class probabilities per record, in the order of `classes`."
    )
    classes: list[Any] | None = None
    request_ids: list[str] = Field(description="One id per record; send labels for it later.")
    bundle_version: str
    preprocessing_version: str


class FeedbackRequest(BaseModel):
    """The body of ``POST /feedback``; each label is checked against the bundle's task."""

    model_config = ConfigDict(extra="forbid")

    labels: Any = Field(
        description="A non-empty list of {request_id, label} (and optionally ts, epoch seconds).",
        json_schema_extra={"examples": [[{"request_id": "0f1e...-0", "label": "benign"}]]},
    )


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="Labels stored (a repeat replaces the earlier label).")
    unknown_request_ids: list[str] = Field(
        description="Request ids the store does not know; their labels were not stored."
    )


class Problem(BaseModel):
    field: str
    expected: str
    got: str


class ErrorResponse(BaseModel):
    error: str = Field(description="The error class, e.g. InputError.")
    message: str
    problems: list[Problem] = Field(default_factory=list)


@bentoml.service(
    name="sidecar",
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    traffic={"timeout": _settings.traffic_timeout},
    workers=_settings.workers,
    logging={"access": {"enabled": False}},
)
class Sidecar:
    """The advanced model, its preprocessing and its shadow baseline behind one endpoint."""

    def __init__(self) -> None:
        from sidecar.serving._logging import quiet_client_errors
        from sidecar.serving._metrics import RECORDER, SHADOW
        from sidecar.serving._shadow_process import (
            ShadowProcess,
            load_bundle,
            open_recorder,
            record_policy,
            set_live_gauges,
        )

        quiet_client_errors()
        settings = settings_from_env()
        self.settings = settings
        # The worker's own bundle answers requests; with a shadow process the
        # baseline, the candidate and the recorder live there instead.
        self.bundle = load_bundle(settings, candidate=not settings.shadow_process)
        if self.bundle.advanced.framework == "torch":
            import torch

            torch.set_num_threads(1)
        self.shadow_process: ShadowProcess | None = None
        self.recorder: Recorder | None = None
        in_memory = settings.store.startswith("memory:")
        if settings.shadow_process and in_memory:
            logger.warning(
                "SIDECAR_STORE=%s lives in one process: the shadow runs on threads in the worker",
                settings.store,
            )
        if settings.shadow_process and not in_memory:
            # The store serves /feedback here; the child writes the records.
            self.store = open_store(settings.store, migrate=False)

            def dropped(n: int) -> None:
                SHADOW.labels("dropped").inc()
                RECORDER.labels("dropped").inc(n)

            self.shadow_process = ShadowProcess(on_dropped=dropped)
            self.bundle.shadow_submit = self.shadow_process.submit
        else:
            self.bundle.shadow.on_outcome = lambda outcome: SHADOW.labels(outcome).inc()
            self.recorder = open_recorder(settings)
            self.store = self.recorder.store
            self.bundle.attach_recorder(self.recorder, policy=record_policy(settings))
            self.bundle.observers.append(set_live_gauges)
        logger.info(
            "serving bundle %s version %s, recording to %s (shadow %s)",
            self.bundle.name,
            self.bundle.version,
            _redacted(settings.store),
            f"process {self.shadow_process.pid}" if self.shadow_process else "threads",
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, labels: Any, ctx: bentoml.Context) -> FeedbackResponse:
        """Join ground truth to served requests: ``{"labels": [{"request_id", "label"}]}``."""
        token = self.settings.feedback_token
        if token is not None:
            given = ctx.request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                ctx.response.status_code = 401
                return cast(
                    FeedbackResponse,
                    JSONResponse(
                        ErrorResponse(
                            error="Unauthorized",
                            message="`Authorization` must be `Bearer <the feedback token>`; "
                            + ("got a wrong token." if given else "got no Authorization header."),
                        ).model_dump(),
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    ),
                )
        try:
            result = await asyncio.to_thread(self._feedback, labels)
        except SidecarError as exc:
            ctx.response.status_code = exc.http_status
            return cast(FeedbackResponse, _error(exc))
        return FeedbackResponse(**result.to_dict())

    def _feedback(self, labels: Any) -> Any:
        if self.shadow_process is not None:
            # Labels for just-served requests must find their records: let the
            # shadow process write what it was sent first.
            self.shadow_process.flush(timeout=5.0)
        return self.bundle.feedback(labels, store=self.store)

    @bentoml.on_startup
    def _tune_worker(self) -> None:
        # Everything loaded so far lives for the life of the worker: keep the
        # collector from scanning it on every full collection (BENTOML_NOTES).
        gc.collect()
        gc.freeze()
        # Background threads (BentoML's, and the shadow and recorder threads when
        # they run in the worker) share this process's GIL with the request
        # thread. At Python's default 5 ms switch interval a thread that wants
        # the GIL can hold up a request for that long (and models such as
        # scikit-learn's boosted trees drop and take it back hundreds of times
        # a request); see tests/benchmarks/README.md.
        sys.setswitchinterval(self.settings.switch_interval)

    @bentoml.on_shutdown
    def _flush(self) -> None:
        # SIGTERM: finish the shadow jobs, then write every queued record.
        if self.shadow_process is not None:
            if not self.shadow_process.close(timeout=45.0):
                logger.error("the shadow process did not write every record at shutdown")
            self.store.close()
            return
        assert self.recorder is not None
        self.bundle.shadow.drain(timeout=10.0)
        if not self.recorder.close(timeout=30.0):
            logger.error("shutdown left records unwritten: %s", self.recorder.counters.snapshot())

    @bentoml.api(input_spec=PredictRequest)
    async def predict(self, records: Any, ctx: bentoml.Context) -> PredictResponse:
        """Predict a batch of raw records: ``{"records": [{...}, ...]}``."""
        from sidecar.serving._metrics import INVALID, RECORDS, UNKNOWN

        try:
            _check_batch(records, self.settings.max_batch)
            pred = self.bundle.predict(records, shadow=True)
        except SidecarError as exc:
            if isinstance(exc, InputError):
                INVALID.inc()
            ctx.response.status_code = exc.http_status
            return _error(exc)
        except Exception as exc:  # a model that breaks on valid input
            logger.exception("prediction failed")
            ctx.response.status_code = 500
            return _respond(
                500, ErrorResponse(error=type(exc).__name__, message=f"prediction failed: {exc}")
            )
        RECORDS.inc(len(pred))
        for feature, count in pred.unknown.items():
            UNKNOWN.labels(feature).inc(count)
        return PredictResponse(
            predictions=pred.predictions.tolist(),
            probabilities=None if pred.probabilities is None else pred.probabilities.tolist(),
            classes=None if pred.classes is None else list(pred.classes),
            request_ids=list(pred.request_ids),
            bundle_version=pred.bundle_version,
            preprocessing_version=pred.preprocessing_version,
        )


def _redacted(url: str) -> str:
    """A store URL without its password, for logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _check_batch(records: Any, max_batch: int) -> None:
    if not isinstance(records, list):
        raise InputError([FieldProblem("records", "a list of record objects", short_repr(records))])
    if not records:
        raise InputError([FieldProblem("records", "a non-empty list of records", "[]")])
    if len(records) > max_batch:
        raise InputError(
            [FieldProblem("records", f"at most {max_batch} records", f"{len(records)} records")]
        )


def _error(exc: SidecarError) -> PredictResponse:
    problems = getattr(exc, "problems", [])
    body = ErrorResponse(
        error=type(exc).__name__,
        message=str(exc),
        problems=[Problem(**p.to_dict()) for p in problems],
    )
    return _respond(exc.http_status, body)


def _respond(status: int, body: ErrorResponse) -> PredictResponse:
    # BentoML passes a Starlette response through (with the status set on the
    # context). The API is annotated with the success model alone because a
    # union breaks `bentoml build`'s OpenAPI generation (1.4.40).
    return cast(PredictResponse, JSONResponse(body.model_dump(), status_code=status))


Sidecar.add_asgi_middleware(BodyLimitMiddleware, max_bytes=_settings.max_body_bytes)  # type: ignore[attr-defined]

# BentoML workers inherit this; the supervisor reads it before it forks them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
