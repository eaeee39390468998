"""The BentoML service in-process: the full HTTP stack through starlette's TestClient.

Every refusal is checked for its status *and* for a body that names the field,
the form that was expected and what came instead.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytestmark = [
    # starlette 1.x warns that its TestClient still runs on httpx.
    pytest.mark.filterwarnings(
        "ignore:Using `httpx` with `starlette.testclient`"
        ":starlette.exceptions.StarletteDeprecationWarning"
    ),
]

SERVICE = "sidecar.serving.service"
MAX_BODY = 200_000
MAX_BATCH = 50
SHADOW_TIMEOUT = 0.2


# -- fixtures -----------------------------------------------------------------------


@dataclass
class Served:
    client: Any  # starlette.testclient.TestClient
    service: Any  # the live Sidecar instance behind the client

    @property
    def bundle(self) -> Any:
        return self.service.bundle


def _set_env(mp: pytest.MonkeyPatch, bundle: Path, store: Path) -> None:
    for key in [k for k in os.environ if k.startswith("SIDECAR_")]:
        mp.delenv(key)
    mp.setenv("SIDECAR_BUNDLE", str(bundle))
    mp.setenv("SIDECAR_STORE", f"sqlite:///{store}")  # not the default file in the cwd
    mp.setenv("SIDECAR_MAX_BODY_BYTES", str(MAX_BODY))
    mp.setenv("SIDECAR_MAX_BATCH", str(MAX_BATCH))
    mp.setenv("SIDECAR_SHADOW_TIMEOUT", str(SHADOW_TIMEOUT))
    # The baseline on threads in this process (the default), where these tests
    # can reach into it (make it raise or hang, read its counters). The shadow
    # process is tested against real servers in test_shadow_process.py.
    mp.setenv("SIDECAR_SHADOW_PROCESS", "0")


@pytest.fixture(scope="module")
def service_module(
    quickstart_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    """``sidecar.serving.service`` imported under this module's settings.

    The module reads the settings (body limit) when it is imported, so it is
    reloaded if someone imported it earlier under other settings.
    """
    from sidecar._settings import settings_from_env

    with pytest.MonkeyPatch.context() as mp:
        _set_env(mp, quickstart_bundle, tmp_path_factory.mktemp("store") / "records.db")
        module = importlib.import_module(SERVICE)
        if module._settings != settings_from_env():
            module = importlib.reload(module)
        assert module._settings.max_body_bytes == MAX_BODY
        yield module


class _Server:
    """One ASGI app of the service, running one bundle at a time.

    BentoML registers its Prometheus metrics once per app, so a second
    ``to_asgi()`` in this process would fail; the app is built once and its
    lifespan restarted (Sidecar.__init__ re-reads SIDECAR_BUNDLE) to switch bundles.
    """

    def __init__(self, module: ModuleType) -> None:
        self.app = module.Sidecar.to_asgi()
        self.bundle: Path | None = None
        self.served: Served | None = None

    def serve(self, bundle: Path) -> Served:
        import bentoml
        from starlette.testclient import TestClient

        if self.served is not None and self.bundle == bundle:
            return self.served
        self.stop()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SIDECAR_BUNDLE", str(bundle))
            client = TestClient(self.app)
            client.__enter__()
        self.bundle = bundle
        self.served = Served(client, bentoml.get_current_service())
        assert Path(self.served.bundle.path) == bundle
        return self.served

    def stop(self) -> None:
        if self.served is not None:
            served, self.served, self.bundle = self.served, None, None
            served.service.serving.drain(5)
            served.client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def server(service_module: ModuleType) -> Iterator[_Server]:
    server = _Server(service_module)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served(server: _Server, quickstart_bundle: Path) -> Served:
    """The quickstart bundle behind the full HTTP stack (started once, kept running)."""
    return server.serve(quickstart_bundle)


@pytest.fixture
def client(served: Served) -> Any:
    return served.client


@pytest.fixture(scope="module")
def records(quickstart_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r) for r in quickstart_records[:60]]


# -- helpers ------------------------------------------------------------------------


def post_raw(client: Any, body: str | bytes) -> Any:
    return client.post("/predict", content=body, headers={"content-type": "application/json"})


def body_with(record: dict[str, Any], field: str, literal: str) -> str:
    """A request body whose ``field`` holds ``literal`` verbatim (e.g. ``NaN``, ``1e999``)."""
    marker = "__SIDECAR_TEST_VALUE__"
    text = json.dumps({"records": [dict(record, **{field: marker})]})
    return text.replace(json.dumps(marker), literal)


def assert_problem(
    resp: Any, field: str, expected: str, got: str, *, status: int = 400, error: str = "InputError"
) -> dict[str, Any]:
    """A refusal with ``status`` whose problems name ``field``, ``expected`` and ``got``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "message", "problems"}, body
    assert body["error"] == error, body
    named = [p for p in body["problems"] if p["field"] == field]
    assert named, f"no problem names {field!r}: {body['problems']}"
    assert expected in named[0]["expected"], named[0]
    assert got in named[0]["got"], named[0]
    assert field in body["message"], body["message"]
    return body


def assert_pydantic_400(resp: Any, loc: list[Any], msg: str) -> None:
    """BentoML's own validation refusal of the request model."""
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert msg in detail[0]["msg"], detail


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when it is not there yet)."""
    want = name
    if labels:
        want += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def metrics(client: Any) -> str:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    return str(resp.text)


# -- valid requests -----------------------------------------------------------------


def test_valid_single_record(served: Served, quickstart_record: dict[str, Any]) -> None:
    resp = served.client.post("/predict", json={"records": [quickstart_record]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {
        "predictions",
        "probabilities",
        "classes",
        "request_ids",
        "bundle_version",
        "preprocessing_version",
    }
    assert body["classes"] == ["benign", "malignant"]
    assert len(body["predictions"]) == 1 and body["predictions"][0] in body["classes"]
    [proba] = body["probabilities"]
    assert len(proba) == 2 and sum(proba) == pytest.approx(1.0)
    assert body["predictions"][0] == body["classes"][int(np.argmax(proba))]
    assert len(body["request_ids"]) == 1 and body["request_ids"][0]
    assert body["bundle_version"] == served.bundle.version
    assert body["preprocessing_version"] == served.bundle.preprocessing_version
    manifest = json.loads((Path(served.bundle.path) / "manifest.json").read_text())
    assert body["bundle_version"] == manifest["version"]
    assert body["preprocessing_version"] == manifest["parts"]["preprocessing"]["version"]


def test_the_worker_is_tuned_at_startup(served: Served) -> None:
    import gc
    import sys

    # the shadow and recorder threads share the GIL with requests: a short switch interval
    assert sys.getswitchinterval() == pytest.approx(0.002)
    assert gc.get_freeze_count() > 0  # the loaded bundle is out of the collector's way


def test_batch_of_20_gets_20_unique_ids(client: Any, records: list[dict[str, Any]]) -> None:
    resp = client.post("/predict", json={"records": records[:20]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["predictions"]) == len(body["probabilities"]) == 20
    assert len(set(body["request_ids"])) == 20
    assert all(sum(p) == pytest.approx(1.0) for p in body["probabilities"])
    again = client.post("/predict", json={"records": records[:20]}).json()
    assert not set(again["request_ids"]) & set(body["request_ids"])
    assert again["predictions"] == body["predictions"]


def test_batch_at_the_limit_is_served(client: Any, records: list[dict[str, Any]]) -> None:
    resp = client.post("/predict", json={"records": records[:MAX_BATCH]})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["request_ids"]) == MAX_BATCH


def test_chunked_body_under_the_limit_is_replayed(
    client: Any, records: list[dict[str, Any]]
) -> None:
    payload = json.dumps({"records": records[:5]}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 100):
            yield payload[i : i + 100]

    resp = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 5


# -- refused by BentoML's request model ---------------------------------------------


def test_malformed_json(client: Any) -> None:
    assert_pydantic_400(post_raw(client, b'{"records": [{'), [], "Invalid JSON")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_client_errors_are_logged_as_one_line_without_a_traceback(client: Any) -> None:
    from sidecar.serving._logging import BENTOML_HTTP_LOGGER

    handler = _Records()
    target = logging.getLogger(BENTOML_HTTP_LOGGER)
    target.addHandler(handler)
    try:
        assert post_raw(client, b'{"records": [{').status_code == 400
        assert post_raw(client, b'{"records": [], "extra": 1}').status_code == 400
    finally:
        target.removeHandler(handler)
    assert len(handler.records) == 2, [r.getMessage() for r in handler.records]
    for record in handler.records:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        assert "Traceback" not in handler.format(record)
    first, second = (r.getMessage() for r in handler.records)
    assert first.startswith("POST /predict refused with 400: "), first
    assert "Invalid JSON" in first, first
    assert "extra" in second and "Extra inputs are not permitted" in second, second


def test_server_errors_keep_their_traceback() -> None:
    from bentoml.exceptions import BentoMLException, InvalidArgument

    from sidecar.serving._logging import ClientErrorFilter

    def logged(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            import sys

            info = sys.exc_info()
        return logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/predict", "POST"), info
        )

    for exc in (RuntimeError("boom"), BentoMLException("internal")):
        record = logged(exc)
        assert ClientErrorFilter().filter(record)
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert record.getMessage() == "Exception on /predict [POST]"
    record = logged(InvalidArgument("bad argument"))
    assert ClientErrorFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "POST /predict refused with 400: bad argument"


def test_body_that_is_a_list(client: Any, quickstart_record: dict[str, Any]) -> None:
    resp = post_raw(client, json.dumps([quickstart_record]))
    assert_pydantic_400(resp, [], "Input should be an object")


def test_missing_records(client: Any) -> None:
    assert_pydantic_400(post_raw(client, b"{}"), ["records"], "Field required")


def test_extra_top_level_field(client: Any, quickstart_record: dict[str, Any]) -> None:
    resp = client.post("/predict", json={"records": [quickstart_record], "threshold": 0.5})
    assert_pydantic_400(resp, ["threshold"], "Extra inputs are not permitted")


# -- refused by the service and the preprocessing (InputError, problems) ------------


@pytest.mark.parametrize(
    ("value", "got"),
    [(5, "5 (int)"), ("abc", "'abc' (str)"), ({"a": 1}, "(dict)"), (None, "None (NoneType)")],
)
def test_records_not_a_list(client: Any, value: Any, got: str) -> None:
    resp = client.post("/predict", json={"records": value})
    assert_problem(resp, "records", "a list of record objects", got)


def test_empty_batch(client: Any) -> None:
    resp = client.post("/predict", json={"records": []})
    assert_problem(resp, "records", "a non-empty list", "[]")


def test_batch_over_the_limit(client: Any, records: list[dict[str, Any]]) -> None:
    resp = client.post("/predict", json={"records": records[: MAX_BATCH + 1]})
    assert_problem(resp, "records", f"at most {MAX_BATCH} records", f"{MAX_BATCH + 1} records")


def test_record_that_is_not_an_object(client: Any) -> None:
    resp = client.post("/predict", json={"records": [[1.0, 2.0]]})
    assert_problem(resp, "records[0]", "an object", "[1.0, 2.0] (list)")


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("17.99", "'17.99' (str)"),
        (True, "True (bool)"),
        (False, "False (bool)"),
        ([1.0], "[1.0] (list)"),
    ],
)
def test_wrong_type_names_the_field(
    client: Any, quickstart_record: dict[str, Any], value: Any, got: str
) -> None:
    resp = client.post("/predict", json={"records": [dict(quickstart_record, mean_radius=value)]})
    assert_problem(resp, "records[0].mean_radius", "a finite number", got)


def test_wrong_type_in_a_long_batch_names_the_record(
    client: Any, records: list[dict[str, Any]]
) -> None:
    batch = [dict(r) for r in records[:20]]
    batch[13]["mean_texture"] = "high"
    resp = client.post("/predict", json={"records": batch})
    body = assert_problem(resp, "records[13].mean_texture", "a finite number", "'high' (str)")
    assert len(body["problems"]) == 1


def test_missing_field(client: Any, quickstart_record: dict[str, Any]) -> None:
    del quickstart_record["worst_symmetry"]
    resp = client.post("/predict", json={"records": [quickstart_record]})
    assert_problem(resp, "records[0].worst_symmetry", "present", "missing")


def test_extra_field_in_a_record(client: Any, quickstart_record: dict[str, Any]) -> None:
    resp = client.post("/predict", json={"records": [dict(quickstart_record, age=52)]})
    assert_problem(resp, "records[0].age", "", "an undeclared field")


def test_null_where_not_allowed(client: Any, quickstart_record: dict[str, Any]) -> None:
    resp = client.post("/predict", json={"records": [dict(quickstart_record, mean_area=None)]})
    assert_problem(resp, "records[0].mean_area", "not null", "null")


@pytest.mark.parametrize(
    ("literal", "got"),
    [
        ("NaN", "nan (float)"),
        ("1e999", "inf (float)"),
        ("-1e999", "-inf (float)"),
        ("Infinity", "inf (float)"),
    ],
)
def test_non_finite_number(
    client: Any, quickstart_record: dict[str, Any], literal: str, got: str
) -> None:
    resp = post_raw(client, body_with(quickstart_record, "mean_radius", literal))
    assert_problem(resp, "records[0].mean_radius", "a finite number", got)


@pytest.mark.parametrize("n", [1, 10])
def test_integer_too_large_for_a_float(
    client: Any, quickstart_record: dict[str, Any], n: int
) -> None:
    # once answered 500 (OverflowError in the preprocessing's finiteness check)
    body = json.loads(body_with(quickstart_record, "mean_radius", '"x"'))
    body["records"] = body["records"] * n
    text = json.dumps(body).replace('"x"', "1" + "0" * 400)
    resp = post_raw(client, text)
    assert_problem(resp, "records[0].mean_radius", "a finite number", "int")


def test_many_problems_are_all_named(client: Any, quickstart_record: dict[str, Any]) -> None:
    bad = dict(quickstart_record, mean_radius="x", mean_area=None)
    del bad["worst_symmetry"]
    resp = client.post("/predict", json={"records": [quickstart_record, bad]})
    body = assert_problem(resp, "records[1].mean_radius", "a finite number", "'x' (str)")
    fields = {p["field"] for p in body["problems"]}
    assert fields == {"records[1].mean_radius", "records[1].mean_area", "records[1].worst_symmetry"}


# -- the body limit -------------------------------------------------------------------


def test_oversized_body_with_content_length(client: Any) -> None:
    body = b'{"records": [' + b" " * MAX_BODY + b"]}"
    resp = post_raw(client, body)
    assert_problem(
        resp,
        "body",
        f"at most {MAX_BODY} bytes",
        f"{len(body)} bytes",
        status=413,
        error="PayloadTooLarge",
    )


def test_oversized_chunked_body(client: Any) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"records": ['
        for _ in range(30):
            yield b" " * 10_000
        yield b"]}"

    resp = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in resp.request.headers
    assert_problem(
        resp, "body", f"at most {MAX_BODY} bytes", "chunked", status=413, error="PayloadTooLarge"
    )


def test_worker_survives_bad_requests(
    client: Any, quickstart_record: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    bad_bodies: list[str | bytes] = [
        b"{",
        b"[]",
        b"null",
        b"{}",
        b'{"records": 1}',
        b'{"records": []}',
        body_with(quickstart_record, "mean_radius", "NaN"),
        body_with(quickstart_record, "mean_radius", "1e999"),
        json.dumps({"records": [{"x": 1}]}),
        json.dumps({"records": records[: MAX_BATCH + 1]}),
        b" " * (MAX_BODY + 1),
    ]
    for body in bad_bodies:
        assert post_raw(client, body).status_code in (400, 413)
    resp = client.post("/predict", json={"records": [quickstart_record]})
    assert resp.status_code == 200, resp.text
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


# -- server-side failures and the shadow baseline --------------------------------------


def test_model_failure_is_a_500_error_response(
    served: Served, quickstart_record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(X: Any) -> Any:
        raise RuntimeError("the model broke")

    monkeypatch.setattr(served.bundle.advanced, "infer", broken)
    resp = served.client.post("/predict", json={"records": [quickstart_record]})
    assert resp.status_code == 500, resp.text
    body = resp.json()
    assert body["error"] == "RuntimeError"
    assert "the model broke" in body["message"]
    assert body["problems"] == []
    monkeypatch.undo()
    resp = served.client.post("/predict", json={"records": [quickstart_record]})
    assert resp.status_code == 200, resp.text


def test_baseline_error_is_counted_not_returned(
    served: Served, quickstart_record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = served.service.serving.current.pipeline.runner
    assert shadow.drain(5)
    errors = shadow.counters.errors
    metric_errors = metric(metrics(served.client), "sidecar_shadow_outcomes_total", outcome="error")

    def broken(X: Any) -> Any:
        raise RuntimeError("the baseline broke")

    monkeypatch.setattr(served.bundle.baseline, "infer", broken)
    for _ in range(3):
        resp = served.client.post("/predict", json={"records": [quickstart_record]})
        assert resp.status_code == 200, resp.text
        assert "the baseline broke" not in resp.text
    assert shadow.drain(5)
    # (the shadow may run several requests' records in one baseline call: at least one error)
    assert errors + 1 <= shadow.counters.errors <= errors + 3
    text = metrics(served.client)
    assert metric(text, "sidecar_shadow_outcomes_total", outcome="error") >= metric_errors + 1


def test_hung_baseline_does_not_slow_responses(
    server: _Server,
    served: Served,
    quickstart_record: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shadow = served.service.serving.current.pipeline.runner
    assert shadow.drain(5)
    before = shadow.counters.snapshot()
    metric_timeouts = metric(
        metrics(served.client), "sidecar_shadow_outcomes_total", outcome="timeout"
    )
    original = served.bundle.baseline.infer
    release = threading.Event()

    def hung(X: Any) -> Any:
        release.wait(3.0)  # a hang of up to 3 s, cut short once the test has seen enough
        return original(X)

    monkeypatch.setattr(served.bundle.baseline, "infer", hung)
    n = 3
    try:
        first_answered = None
        for _ in range(n):
            start = time.monotonic()
            resp = served.client.post("/predict", json={"records": [quickstart_record]})
            elapsed = time.monotonic() - start
            assert resp.status_code == 200, resp.text
            assert elapsed < 1.0, f"a response took {elapsed:.2f} s behind a hung baseline"
            first_answered = first_answered or time.monotonic()
        now = shadow.counters.snapshot()
        assert now["submitted"] - before["submitted"] == n
        assert now["completed"] - before["completed"] < n, now  # shadow work is still pending
        assert not shadow.drain(0.01)
        # keep the first job stuck past the shadow timeout, so it must count as one
        time.sleep(max(0.0, first_answered + SHADOW_TIMEOUT + 0.3 - time.monotonic()))
    finally:
        release.set()
    try:
        assert shadow.drain(5)
        after = shadow.counters.snapshot()
        assert after["completed"] > now["completed"]
        assert after["timeouts"] - before["timeouts"] >= 1
        assert after["dropped"] == before["dropped"]
        text = metrics(served.client)
        assert metric(text, "sidecar_shadow_outcomes_total", outcome="timeout") >= (
            metric_timeouts + 1
        )
    finally:
        server.stop()  # later tests get a fresh bundle and shadow runner


# -- metrics --------------------------------------------------------------------------


def test_metrics_count_records_and_refusals(served: Served, records: list[dict[str, Any]]) -> None:
    assert served.service.serving.drain(5)
    before = metrics(served.client)
    assert served.client.post("/predict", json={"records": records[:7]}).status_code == 200
    assert served.client.post("/predict", json={"records": []}).status_code == 400
    assert served.service.serving.drain(5)
    after = metrics(served.client)
    for name in (
        "sidecar_records_total",
        "sidecar_shadow_outcomes_total",
        "sidecar_invalid_requests_total",
    ):
        base = name.removesuffix("_total")
        assert re.search(rf"^# TYPE {base}(_total)? counter$", after, re.MULTILINE), name
    assert metric(after, "sidecar_records_total") == metric(before, "sidecar_records_total") + 7
    assert metric(after, "sidecar_invalid_requests_total") == (
        metric(before, "sidecar_invalid_requests_total") + 1
    )
    shadow = "sidecar_shadow_outcomes_total"
    assert metric(after, shadow, outcome="completed") > metric(before, shadow, outcome="completed")


def test_only_the_sidecars_own_refusals_count_as_invalid_requests(client: Any) -> None:
    # As its help text says: BentoML refuses malformed JSON before the sidecar sees
    # it, and 413s are answered by the body-limit middleware.
    before = metric(metrics(client), "sidecar_invalid_requests_total")
    assert post_raw(client, b"{").status_code == 400
    assert post_raw(client, b" " * (MAX_BODY + 1)).status_code == 413
    assert metric(metrics(client), "sidecar_invalid_requests_total") == before
    assert post_raw(client, b'{"records": []}').status_code == 400
    assert metric(metrics(client), "sidecar_invalid_requests_total") == before + 1


# -- /feedback ------------------------------------------------------------------------


def test_feedback_right_after_predict_finds_the_request(
    served: Served, quickstart_record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = served.bundle.baseline.infer

    def slowish(X: Any) -> Any:  # well inside the shadow timeout
        time.sleep(SHADOW_TIMEOUT / 4)
        return original(X)

    monkeypatch.setattr(served.bundle.baseline, "infer", slowish)
    resp = served.client.post("/predict", json={"records": [quickstart_record]})
    assert resp.status_code == 200, resp.text
    [rid] = resp.json()["request_ids"]
    fb = served.client.post("/feedback", json={"labels": [{"request_id": rid, "label": "benign"}]})
    assert served.service.serving.drain(5)
    assert fb.status_code == 200, fb.text
    assert fb.json() == {"accepted": 1, "unknown_request_ids": []}


def test_feedback_on_a_fresh_store_reports_unknown_ids(
    server: _Server,
    quickstart_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.stop()
    monkeypatch.setenv("SIDECAR_STORE", f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        fresh = server.serve(quickstart_bundle)
        fb = fresh.client.post(
            "/feedback", json={"labels": [{"request_id": "not-served-here-0", "label": "benign"}]}
        )
        assert fb.status_code == 200, fb.text
        assert fb.json() == {"accepted": 0, "unknown_request_ids": ["not-served-here-0"]}
    finally:
        server.stop()  # later tests serve with the module's store again


# -- a bundle with a categorical column -------------------------------------------------


CODES = ("a", "b", "c", "d", "e")


def _code_records(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    rng = random.Random(seed)
    records = [{"code": rng.choice(CODES), "x": rng.gauss(0.0, 1.0)} for _ in range(n)]
    labels = [int((r["x"] > 0) != (r["code"] == "a")) for r in records]
    return records, labels


@pytest.fixture(scope="module")
def categorical_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LogisticRegression

    import sidecar

    train, y_train = _code_records(300, seed=1)
    ref, y_ref = _code_records(100, seed=2)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.CategoricalColumn(name="code", top_n=3), sidecar.NumericColumn(name="x")]
    ).fit(train)
    model = LogisticRegression().fit(pre.transform(train), y_train)
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="codes",
    )
    return bundle.save(tmp_path_factory.mktemp("codes") / "bundle")


@pytest.fixture
def cat_served(server: _Server, categorical_bundle: Path) -> Served:
    return server.serve(categorical_bundle)


def test_categorical_bundle_serves_integer_classes(cat_served: Served) -> None:
    resp = cat_served.client.post("/predict", json={"records": [{"code": "b", "x": 0.5}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["classes"] == [0, 1]
    assert body["predictions"][0] in (0, 1)
    assert body["bundle_version"] == cat_served.bundle.version


def test_unknown_category_is_served_and_counted(cat_served: Served) -> None:
    vocabulary = cat_served.bundle.preprocessing.vocabularies_["code"]
    unseen = [c for c in CODES if c not in vocabulary]
    assert len(vocabulary) == 3 and unseen
    before_stats = cat_served.bundle.stats.unknown["code"]
    before = metric(
        metrics(cat_served.client), "sidecar_unknown_category_values_total", feature="code"
    )

    resp = cat_served.client.post(
        "/predict", json={"records": [{"code": "never-seen-before", "x": 0.3}]}
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 1
    # a long batch takes the column-wise path: 3 unknown values among 10
    batch = [{"code": vocabulary[i % 3], "x": 0.1 * i} for i in range(7)]
    batch += [{"code": unseen[0], "x": 1.0}, {"code": "zz", "x": 2.0}, {"code": "Q", "x": 0.0}]
    resp = cat_served.client.post("/predict", json={"records": batch})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 10

    assert cat_served.bundle.stats.unknown["code"] == before_stats + 4
    after = metric(
        metrics(cat_served.client), "sidecar_unknown_category_values_total", feature="code"
    )
    assert after == before + 4
    # The live gauges (no labels needed) follow, set after the shadow batch ran.
    assert cat_served.service.serving.drain(5)
    stats = cat_served.bundle.stats
    text = metrics(cat_served.client)
    rate = metric(text, "sidecar_unknown_code_rate", feature="code")
    assert rate == pytest.approx(stats.unknown["code"] / stats.records)
    assert rate > 0
    disagreement = metric(text, "sidecar_shadow_disagreement_rate")
    assert disagreement == pytest.approx(stats.shadow_disagreements / stats.shadow_compared)
    assert "sidecar_recorder_queue_rows" in text


def test_categorical_wrong_type_is_refused(cat_served: Served) -> None:
    resp = cat_served.client.post("/predict", json={"records": [{"code": 1.5, "x": 0.3}]})
    assert_problem(resp, "records[0].code", "a string", "1.5 (float)")


# -- BodyLimitMiddleware as a plain ASGI app ---------------------------------------------


def _run_middleware(
    scope: dict[str, Any], messages: list[dict[str, Any]], max_bytes: int = 10
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """Run the middleware around an app that reads the whole body; return what was sent,
    what the app received (``None`` if it was never called) and what was left unread."""
    from sidecar.serving._middleware import BodyLimitMiddleware

    pending = list(messages)
    sent: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] | None = None

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal seen
        seen = []
        if scope["type"] == "http":
            while True:
                message = await receive()
                seen.append(message)
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(BodyLimitMiddleware(app, max_bytes=max_bytes)(scope, receive, send))
    return sent, seen, pending


def _scope(method: str = "POST", length: str | None = None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", length.encode()))
    return {"type": "http", "method": method, "path": "/predict", "headers": headers}


def _chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]


def _assert_413(sent: list[dict[str, Any]], got: str) -> None:
    start, body = sent
    assert start["status"] == 413
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    payload = json.loads(body["body"])
    assert payload["error"] == "PayloadTooLarge"
    assert payload["problems"] == [{"field": "body", "expected": "at most 10 bytes", "got": got}]


def test_middleware_refuses_a_declared_length_without_reading() -> None:
    sent, seen, unread = _run_middleware(_scope(length="11"), _chunks(b"x" * 11))
    assert seen is None and len(unread) == 1
    _assert_413(sent, "11 bytes (declared Content-Length)")


def test_middleware_passes_a_declared_length_at_the_limit() -> None:
    sent, seen, _ = _run_middleware(_scope(length="10"), _chunks(b"x" * 10))
    assert sent[0]["status"] == 200
    assert seen == _chunks(b"x" * 10)


def test_middleware_refuses_a_long_chunked_body_early() -> None:
    sent, seen, unread = _run_middleware(_scope(), _chunks(b"x" * 6, b"x" * 6, b"x" * 6))
    assert seen is None and len(unread) == 1
    _assert_413(sent, "more than 10 bytes (chunked)")


def test_middleware_replays_a_short_chunked_body() -> None:
    messages = _chunks(b"abc", b"", b"defg", b"hij")
    sent, seen, _ = _run_middleware(_scope(), messages)
    assert sent[0]["status"] == 200
    assert seen == messages


def test_middleware_counts_bytes_when_content_length_is_not_a_number() -> None:
    sent, seen, _ = _run_middleware(_scope(length="many"), _chunks(b"x" * 8, b"x" * 8))
    assert seen is None
    _assert_413(sent, "more than 10 bytes (chunked)")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_middleware_leaves_reads_alone(method: str) -> None:
    sent, seen, _ = _run_middleware(_scope(method, length="1000"), _chunks(b""))
    assert sent[0]["status"] == 200 and seen is not None


def test_middleware_leaves_lifespan_alone() -> None:
    sent, seen, _ = _run_middleware({"type": "lifespan"}, [])
    assert seen == [] and sent[0]["status"] == 200


def _guard(
    scope: dict[str, Any], receive: Any, **options: Any
) -> tuple[list[dict[str, Any]], bool]:
    """Run the guard with ``receive``; what it sent, and whether the app was called."""
    from sidecar.serving._middleware import BodyLimitMiddleware

    sent: list[dict[str, Any]] = []
    called = False

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    asyncio.run(BodyLimitMiddleware(app, max_bytes=1000, **options)(scope, receive, send))
    return sent, called


def _refusal(sent: list[dict[str, Any]]) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    start, body = sent
    return start["status"], json.loads(body["body"]), dict(start["headers"])


@pytest.mark.parametrize("auth", [None, b"Bearer wrong", b"bearer s3cret", b"s3cret"])
def test_guard_checks_the_feedback_token_before_reading_the_body(auth: bytes | None) -> None:
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"{not json", "more_body": False}

    scope = _scope()
    scope["path"] = "/feedback"
    if auth is not None:
        scope["headers"] = [*scope["headers"], (b"authorization", auth)]
    sent, called = _guard(scope, receive, feedback_token="s3cret")
    status, body, headers = _refusal(sent)
    assert (status, body["error"], reads, called) == (401, "Unauthorized", 0, False)
    assert headers[b"www-authenticate"] == b"Bearer"
    assert "s3cret" not in json.dumps(body)


def test_guard_lets_the_right_token_and_other_paths_through() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = _scope()
    scope["path"] = "/feedback"
    scope["headers"] = [*scope["headers"], (b"authorization", b"Bearer s3cret")]
    assert _guard(scope, receive, feedback_token="s3cret") == ([], True)
    assert _guard(_scope(), receive, feedback_token="s3cret") == ([], True)  # /predict


@pytest.mark.parametrize(
    "media",
    [
        b"multipart/form-data",
        b"Multipart/Form-Data; charset=x",
        b"application/x-www-form-urlencoded",
    ],
)
def test_guard_refuses_form_bodies_with_415(media: bytes) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"a=1", "more_body": False}

    scope = _scope()
    scope["headers"] = [(b"content-type", media)]
    sent, called = _guard(scope, receive)
    status, body, _ = _refusal(sent)
    assert (status, body["problems"][0]["field"], called) == (415, "content-type", False)


def test_guard_refuses_a_body_that_stalls_with_400() -> None:
    messages = [{"type": "http.request", "body": b'{"records":', "more_body": True}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(60)  # the client sends no more and keeps the connection open
        raise AssertionError("not reached")

    start = time.monotonic()
    sent, called = _guard(_scope(length="100"), receive, body_timeout=0.2)
    assert time.monotonic() - start < 5
    status, body, _ = _refusal(sent)
    assert (status, body["error"], called) == (400, "IncompleteBody", False)
    assert body["problems"] == [
        {"field": "body", "expected": "100 bytes", "got": "11 bytes, then nothing for 0.2 s"}
    ]


def test_guard_answers_nothing_to_a_client_that_left() -> None:
    messages = [
        {"type": "http.request", "body": b'{"rec', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    assert _guard(_scope(length="100"), receive) == ([], False)


@pytest.mark.parametrize(
    ("env", "store", "expected"),
    [
        ({}, "sqlite:///records.db", True),  # the default: no GIL shared with requests
        ({"SIDECAR_SHADOW_PROCESS": "1"}, "postgresql://h/db", True),
        ({"SIDECAR_SHADOW_PROCESS": "0"}, "sqlite:///records.db", False),
        ({}, "memory://", False),  # a store in one process keeps the threads
        ({"SIDECAR_SHADOW_PROCESS": "1"}, "memory://", False),
    ],
)
def test_the_shadow_stage_runs_in_a_process_unless_told_or_unable(
    env: dict[str, str], store: str, expected: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar._settings import settings_from_env
    from sidecar.serving._served import uses_shadow_process

    settings = settings_from_env({**env, "SIDECAR_STORE": store})
    with caplog.at_level("WARNING", logger="sidecar.serving"):
        assert uses_shadow_process(settings) is expected
    # asked for by name and refused: said so; the default falling back: silent
    warned = "lives in one process" in caplog.text
    assert warned == (store.startswith("memory:") and "SIDECAR_SHADOW_PROCESS" in env)


@pytest.mark.parametrize("asked", [True, False])
def test_a_platform_without_seqpacket_pairs_serves_its_shadow_on_threads(
    asked: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """macOS has no AF_UNIX SOCK_SEQPACKET: the default falls back to threads and says
    why at INFO; asking for the process by name makes it a WARNING."""
    import socket

    from sidecar._settings import settings_from_env
    from sidecar.serving._served import uses_shadow_process

    def no_seqpacket(*args: object) -> None:
        raise OSError(93, "Protocol not supported")  # what macOS answers

    monkeypatch.setattr(socket, "socketpair", no_seqpacket)
    env = {"SIDECAR_STORE": "sqlite:///records.db"}
    if asked:
        env["SIDECAR_SHADOW_PROCESS"] = "1"
    with caplog.at_level("INFO", logger="sidecar.serving"):
        assert uses_shadow_process(settings_from_env(env)) is False
    [entry] = [r for r in caplog.records if "SOCK_SEQPACKET" in r.getMessage()]
    assert entry.levelname == ("WARNING" if asked else "INFO")
    assert "runs on threads in the worker" in entry.getMessage()
