"""Fuzzing stays in the suite: a real ``bentoml serve`` against generated requests.

- schemathesis builds requests from the service's own OpenAPI document (``records`` and
  ``labels`` are typed there from the bundle, so most are valid and reach the model);
- hypothesis builds hostile records (extreme and wrong-typed values, missing and extra
  fields) and hostile labels (unknown ids, control characters, labels of every type).

Each run is bounded (a fixed number of examples, derandomised); after each: no 5xx, the
same worker still serving, and exactly one stored row per acknowledged record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sidecar.recording import open_store  # noqa: E402
from tests.servers import descendants, serve_sidecar  # noqa: E402

pytestmark = [pytest.mark.serve]

MAX_BATCH = 20
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Fuzzed:
    port: int
    store: str
    proc: subprocess.Popen[bytes]
    log: Path
    workers: list[int]
    acked: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def fuzzed(quickstart_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    store = f"sqlite:///{tmp / 'records.db'}"
    log = tmp / "server.log"
    proc, port = serve_sidecar(
        quickstart_bundle,
        store,
        log,
        SIDECAR_MAX_BATCH=str(MAX_BATCH),
        SIDECAR_SHADOW_PROCESS="0",
    )
    try:
        yield Fuzzed(port, store, proc, log, _workers(proc))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _workers(proc: subprocess.Popen[bytes]) -> list[int]:
    def cmd(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    return sorted(p for p in descendants(proc.pid) if b"worker.service" in cmd(p))


def _post(url: str, path: str, payload: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path, data=payload, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        try:
            return int(exc.code), json.loads(body)
        except ValueError:
            return int(exc.code), body


def _check_after(f: Fuzzed) -> None:
    """No worker restarted, and the store holds one row per acknowledged record, no more."""
    assert f.proc.poll() is None
    assert _workers(f.proc) == f.workers, "a worker died and was replaced"
    with urllib.request.urlopen(f"{f.url}/readyz", timeout=5) as resp:
        assert resp.status == 200
    store = open_store(f.store)
    try:
        deadline = time.monotonic() + 30
        while True:
            ids = [r["request_id"] for chunk in store.iter_joined() for r in chunk]
            if set(ids) >= f.acked or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        store.close()
    assert len(ids) == len(set(ids)) == len(f.acked) and set(ids) == f.acked
    text = f.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


def test_schemathesis_against_the_services_openapi(fuzzed: Fuzzed) -> None:
    with urllib.request.urlopen(f"{fuzzed.url}/docs.json", timeout=10) as resp:
        document = json.loads(resp.read())
    schema = schemathesis.openapi.from_dict(document)
    predict = schema["/predict"]["POST"]
    feedback = schema["/feedback"]["POST"]
    # The typed schema: a record is the bundle's 30 numeric fields, a label one of its classes.
    records = predict.body[0].definition["schema"]
    assert "records" in json.dumps(records)
    statuses: dict[str, dict[int, int]] = {"predict": {}, "feedback": {}}

    def run(case: Any, name: str) -> Any:
        response = case.call(base_url=fuzzed.url, timeout=30)
        assert response.status_code < 500, (case.body, response.text[:500])
        counts = statuses[name]
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        return response

    @FUZZ
    @given(case=predict.as_strategy())
    def fuzz_predict(case: Any) -> None:
        response = run(case, "predict")
        if response.status_code == 200:
            ids = response.json()["request_ids"]
            assert len(ids) == len(case.body["records"])
            fuzzed.acked.update(ids)

    @FUZZ
    @given(case=feedback.as_strategy())
    def fuzz_feedback(case: Any) -> None:
        response = run(case, "feedback")
        if response.status_code == 200:
            body = response.json()
            assert body["accepted"] + len(body["unknown_request_ids"]) >= 1

    fuzz_predict()
    fuzz_feedback()
    # Generated from the typed schema, valid requests do reach the model.
    assert statuses["predict"].get(200, 0) >= 10, statuses
    assert statuses["feedback"].get(200, 0) >= 5, statuses
    _check_after(fuzzed)


_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.7e308, -1.7e308, 5e-324, -0.0, 1e300]),
    st.integers(min_value=-(2**63), max_value=2**63),
)
_hostile_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.7e308, -1.7e308, 5e-324, 0.0, -0.0, 1e300]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def _records(draw: Any, template: dict[str, Any]) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=3))
    out = []
    for _ in range(n):
        rec = dict(template)
        if draw(st.integers(0, 2)) > 0:  # two records in three change nothing but numbers
            for name in draw(st.lists(st.sampled_from(sorted(template)), max_size=4)):
                rec[name] = draw(_number)
            out.append(rec)
            continue
        for name in draw(st.lists(st.sampled_from(sorted(template)), max_size=3)):
            rec[name] = draw(_hostile_value)
        if draw(st.booleans()) and draw(st.booleans()):
            rec.pop(draw(st.sampled_from(sorted(template))))
        if draw(st.integers(0, 9)) == 0:
            rec[draw(st.text(min_size=1, max_size=5))] = 1.0
        out.append(rec)
    return out


def test_hypothesis_records_and_labels(
    fuzzed: Fuzzed, quickstart_records: list[dict[str, Any]]
) -> None:
    template = dict(quickstart_records[0])
    served: list[str] = []

    @FUZZ
    @given(records=_records(template))
    def fuzz_records(records: list[dict[str, Any]]) -> None:
        status, body = _post(fuzzed.url, "/predict", json.dumps({"records": records}).encode())
        assert status in (200, 400), body
        if status == 200:
            assert len(body["request_ids"]) == len(records)
            assert len(body["predictions"]) == len(records)
            fuzzed.acked.update(body["request_ids"])
            served.extend(body["request_ids"])
        else:
            assert body["error"] == "InputError" and body["problems"], body

    fuzz_records()
    assert len(served) >= 10  # most hostile values are still numbers the model can take
    known = st.sampled_from(served)
    label = st.one_of(
        st.sampled_from(["benign", "malignant", "Benign", "", "1", "true"]),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
    )
    item = st.fixed_dictionaries(
        {"request_id": st.one_of(known, st.text(max_size=40)), "label": label},
        optional={"ts": st.one_of(st.floats(), st.text(max_size=4))},
    )

    @FUZZ
    @given(labels=st.lists(item, min_size=1, max_size=5))
    def fuzz_labels(labels: list[dict[str, Any]]) -> None:
        payload = json.dumps({"labels": labels}).encode()  # NaN and inf go as JSON literals
        status, body = _post(fuzzed.url, "/feedback", payload)
        assert status in (200, 400), body
        if status == 200:
            ids = {it["request_id"] for it in labels}
            assert body["accepted"] + len(body["unknown_request_ids"]) == len(ids)
            assert all(it["label"] in ("benign", "malignant") for it in labels)

    fuzz_labels()
    _check_after(fuzzed)
