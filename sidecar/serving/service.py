"""The BentoML service: one class, one ``POST /predict``; thin by design.

Serve it with ``bentoml serve`` from the repository root (``bentofile.yaml``
names this class) or with ``sidecar serve BUNDLE``; the bundle comes from the
``SIDECAR_BUNDLE`` setting. Everything it does is ``Bundle.predict(records,
shadow=sink)``: the baseline, a candidate and the recorder run in a shadow
process of each worker's own (``SIDECAR_SHADOW_PROCESS=0``, or a ``memory:``
store: on threads of the worker), so they can never fail or slow a response.

- Start-up: the bundle and the candidate are checked once, before any worker
  starts (``on_deployment``); a refusal ends ``bentoml serve`` with the reason.
- Hot promotion: when ``SIDECAR_BUNDLE`` is a registry, each worker follows
  its ``ACTIVE`` pointer (``_served``, ``_hotswap``): a promotion or a rollback
  is served within about a second, without a restart, each request by one
  version from start to end.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, cast

import bentoml
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.responses import JSONResponse

from .._errors import FieldProblem, InputError, SidecarError, StoreError, short_repr
from .._redact import scrub
from .._settings import settings_from_env

if TYPE_CHECKING:
    from ..bundle._bundle import Bundle
from ._bentoml_model import bundle_model
from ._middleware import BodyLimitMiddleware
from ._schema import labels_schema, records_schema

__all__ = ["ErrorResponse", "PredictResponse", "Sidecar"]

logger = logging.getLogger("sidecar.serving")
# Without SIDECAR_BUNDLE: the bundle model in BentoML's model store (sets SIDECAR_BUNDLE).
_BENTO_MODEL = bundle_model()
_settings = settings_from_env()


class PredictRequest(BaseModel):
    """The body of ``POST /predict``. ``records`` is checked by the bundle's preprocessing,
    which names each bad field; a top-level field other than ``records`` is refused.

    The OpenAPI schema of ``records`` is the bundle's record schema (see
    ``_schema``); validation stays the preprocessing's, so it costs nothing here.
    """

    model_config = ConfigDict(extra="forbid")

    records: Annotated[
        Any, WithJsonSchema(records_schema(_settings.bundle, _settings.max_batch))
    ] = Field(json_schema_extra={"examples": [[{"feature": 1.0}]]})


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
    """The body of ``POST /feedback``; each label is checked against the bundle's classes."""

    model_config = ConfigDict(extra="forbid")

    labels: Annotated[Any, WithJsonSchema(labels_schema(_settings.bundle))] = Field(
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

    bento_model = _BENTO_MODEL  # declared, so `bentoml build` packs the bundle

    def __init__(self) -> None:
        from sidecar._lifetime import die_with_parent
        from sidecar.serving._logging import quiet_client_errors

        quiet_client_errors()
        if _in_bentoml_worker():
            # BentoML starts each worker in a session of its own: without this,
            # a worker whose arbiter was killed serves on as an orphan.
            die_with_parent()
        self.settings = settings_from_env()
        from sidecar.serving._served import Serving

        self.serving = Serving(self.settings)
        self.store = self.serving.current.store

    @property
    def bundle(self) -> Bundle:
        """The bundle answering requests now (it changes on a promotion or a rollback)."""
        return self.serving.current.bundle

    @bentoml.on_deployment
    def _check_bundle() -> None:
        # Once, in BentoML's supervisor, before any worker starts: a bundle or a
        # candidate that would be refused stops `bentoml serve` here with the
        # reason, instead of workers that fail and are restarted forever.
        from sidecar.serving._wiring import refuse_unservable

        refuse_unservable(settings_from_env())

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    async def feedback(self, labels: Any, ctx: bentoml.Context) -> FeedbackResponse:
        """Join ground truth to served requests: ``{"labels": [{"request_id", "label"}]}``.

        The bearer token (``SIDECAR_FEEDBACK_TOKEN``) is checked by the guard
        middleware before the body is read. A store that is down answers 503
        at once; one that does not answer within most of the traffic timeout
        answers 503 before BentoML's 504.
        """
        budget = 0.8 * self.settings.traffic_timeout
        try:
            result = await asyncio.wait_for(asyncio.to_thread(self._feedback, labels), budget)
        except TimeoutError:
            exc: SidecarError = StoreError(
                f"the store did not take the labels within {budget:g} s; nothing is known to be "
                "stored: send them again later."
            )
            ctx.response.status_code = exc.http_status
            return cast(FeedbackResponse, self._error(exc))
        except SidecarError as exc:
            ctx.response.status_code = exc.http_status
            return cast(FeedbackResponse, self._error(exc))
        return FeedbackResponse(**result.to_dict())

    def _feedback(self, labels: Any) -> Any:
        # Labels for just-served requests must find their records: let the
        # shadow stage write what it was given first.
        self.serving.flush()
        return self.serving.current.bundle.feedback(labels, store=self.store)

    def _error(self, exc: SidecarError) -> PredictResponse:
        if isinstance(exc, StoreError):
            logger.warning("%s", scrub(str(exc), self.settings.store))
        return _error(exc, self.settings.store)

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
        self.serving.close()

    @bentoml.api(input_spec=PredictRequest)
    async def predict(self, records: Any, ctx: bentoml.Context) -> PredictResponse:
        """Predict a batch of raw records: ``{"records": [{...}, ...]}``."""
        from sidecar.serving._metrics import INVALID, RECORDS, UNKNOWN

        served = (
            self.serving.current
        )  # read once: this request is answered and recorded by one bundle
        try:
            _check_batch(records, self.settings.max_batch)
            pred = served.bundle.predict(records, shadow=served.sink)
        except SidecarError as exc:
            if isinstance(exc, InputError):
                INVALID.inc()
            ctx.response.status_code = exc.http_status
            return self._error(exc)
        except Exception as exc:  # a model that breaks on valid input
            logger.exception("prediction failed")
            ctx.response.status_code = 500
            message = scrub(f"prediction failed: {exc}", self.settings.store)
            return _respond(500, ErrorResponse(error=type(exc).__name__, message=message))
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


def _in_bentoml_worker() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", "") == "_bentoml_impl.worker.service"


def _check_batch(records: Any, max_batch: int) -> None:
    if not isinstance(records, list):
        raise InputError([FieldProblem("records", "a list of record objects", short_repr(records))])
    if not records:
        raise InputError([FieldProblem("records", "a non-empty list of records", "[]")])
    if len(records) > max_batch:
        raise InputError(
            [FieldProblem("records", f"at most {max_batch} records", f"{len(records)} records")]
        )


def _error(exc: SidecarError, store: str) -> PredictResponse:
    """The error body of ``exc``; nothing of the store URL's secrets can be in it."""
    problems = getattr(exc, "problems", [])
    body = ErrorResponse(
        error=type(exc).__name__,
        message=scrub(str(exc), store),
        problems=[Problem(**p.to_dict()) for p in problems],
    )
    return _respond(exc.http_status, body)


def _respond(status: int, body: ErrorResponse) -> PredictResponse:
    # BentoML passes a Starlette response through (with the status set on the
    # context). The API is annotated with the success model alone because a
    # union breaks `bentoml build`'s OpenAPI generation (1.4.40).
    return cast(PredictResponse, JSONResponse(body.model_dump(), status_code=status))


def _signatures_once(service: Any) -> None:
    """Give each API function its signature, computed now instead of on every request.

    BentoML 1.4 calls ``inspect.signature`` on the API function for every
    request (``APIMethod._local_call``: ~15 µs, more than the guard middleware);
    a function that carries ``__signature__`` is answered from it. The value is
    what ``inspect.signature`` computes, so nothing BentoML sees changes.
    """
    for api in service.apis.values():
        api.func.__signature__ = inspect.signature(api.func)


_signatures_once(Sidecar)

Sidecar.add_asgi_middleware(  # type: ignore[attr-defined]
    BodyLimitMiddleware,
    max_bytes=_settings.max_body_bytes,
    feedback_token=_settings.feedback_token,
    body_timeout=_settings.body_timeout,
)

# BentoML workers inherit this; the supervisor reads it before it forks them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
