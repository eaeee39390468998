"""A real ``bentoml serve`` process (and ``sidecar serve``): start, answer, stop on SIGTERM."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.serve,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
    # BentoML's client leaves its TemporaryDirectory to the garbage collector.
    pytest.mark.filterwarnings("ignore:Implicitly cleaning up <TemporaryDirectory:ResourceWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
MAX_BODY = 100_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, bundle: Path | None) -> dict[str, str]:
    """A clean environment: no SIDECAR_* of ours, no in-process Prometheus directory;
    predictions are recorded to ``tmp_path/records.db``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIDECAR_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    if bundle is not None:
        env["SIDECAR_BUNDLE"] = str(bundle)
    env.update(
        SIDECAR_STORE=f"sqlite:///{tmp_path / 'records.db'}",
        SIDECAR_MAX_BODY_BYTES=str(MAX_BODY),
        OMP_NUM_THREADS="1",
        BENTOML_HOME=str(tmp_path / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="True",
    )
    return env


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in the process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(stat.parent.name))
    return members


@contextmanager
def _process(
    cmd: list[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in its own session; whatever happens, kill its process group at the end."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < READY_TIMEOUT:
        if proc.poll() is not None:
            pytest.fail(
                f"the server exited ({proc.returncode}) before it was ready:\n{_log(log_path)}"
            )
        with suppress(OSError):
            if _get(f"{url}/readyz", timeout=1.0) == 200:
                return time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"{url}/readyz did not answer 200 within {READY_TIMEOUT} s:\n{_log(log_path)}")


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/predict",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read())


def _stop(proc: subprocess.Popen[bytes], log_path: Path) -> int:
    """SIGTERM the process group; it must be gone within STOP_TIMEOUT, without a traceback."""
    offset = log_path.stat().st_size
    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    try:
        code = proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server ignored SIGTERM for {STOP_TIMEOUT} s:\n{_log(log_path)}")
    while (left := _group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes {left} outlived SIGTERM:\n{_log(log_path)}"
    shutdown = _log(log_path)[offset:]
    assert "Traceback" not in shutdown, _log(log_path)
    return code


def _recorded(db: Path) -> int:
    """How many predictions the store at ``db`` holds."""
    from sidecar.recording import open_store

    store = open_store(f"sqlite:///{db}")
    try:
        return int(store.count()["predictions"])
    finally:
        store.close()


def _predict_with_bentoml_client(url: str, records: list[dict[str, Any]]) -> Any:
    import bentoml

    with bentoml.SyncHTTPClient(url) as client:
        return client.predict(records=records)


def _bad_request_with_bentoml_client(url: str, records: list[dict[str, Any]]) -> tuple[int, str]:
    """The status and text of the InvalidArgument BentoML's client raises (not the exception
    itself: its traceback would keep the client, and its temporary directory, alive)."""
    import bentoml
    from bentoml.exceptions import InvalidArgument

    with bentoml.SyncHTTPClient(url) as client:
        try:
            out = client.predict(records=records)
        except InvalidArgument as exc:
            return int(exc.error_code), str(exc)
    pytest.fail(f"BentoML's client returned {out!r} for a bad request instead of raising")


def test_bentoml_serve_process(
    tmp_path: Path, quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "sidecar.serving.service:Sidecar",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    records = quickstart_records[:3]
    with _process(cmd, _env(tmp_path, quickstart_bundle), log_path) as proc:
        _wait_ready(url, proc, log_path)
        version = json.loads((quickstart_bundle / "manifest.json").read_text())["version"]

        # BentoML's own client returns the response model as a dict ...
        out = _predict_with_bentoml_client(url, records)
        assert isinstance(out, dict), type(out)
        assert len(out["predictions"]) == 3 and len(set(out["request_ids"])) == 3
        assert out["classes"] == ["benign", "malignant"]
        assert out["bundle_version"] == version
        # ... and raises InvalidArgument (400) whose text is our error body.
        bad = [dict(records[0], mean_radius="big")]
        code, text = _bad_request_with_bentoml_client(url, bad)
        assert code == 400
        [problem] = json.loads(text)["problems"]
        assert problem == {
            "field": "records[0].mean_radius",
            "expected": "a finite number",
            "got": "'big' (str)",
        }
        gc.collect()  # the client's TemporaryDirectory is cleaned up here, under the filter

        # Raw HTTP.
        status, body = _post(url, json.dumps({"records": records}).encode())
        assert status == 200, body
        assert len(body["predictions"]) == 3 and len(set(body["request_ids"])) == 3
        assert all(sum(p) == pytest.approx(1.0) for p in body["probabilities"])
        status, body = _post(
            url, json.dumps({"records": [dict(records[0], mean_area=None)]}).encode()
        )
        assert status == 400, body
        assert body["error"] == "InputError"
        assert body["problems"] == [
            {
                "field": "records[0].mean_area",
                "expected": "not null (a finite number)",
                "got": "null",
            }
        ]
        status, body = _post(url, b'{"records": [' + b" " * MAX_BODY + b"]}")
        assert status == 413, body
        assert body["problems"][0]["field"] == "body"
        # our refusals are answers, not crashes: nothing so far logged a traceback
        assert "Traceback" not in _log(log_path), _log(log_path)

        # BentoML's own 400 for malformed JSON (it logs that one with a traceback)
        status, body = _post(url, b"{")
        assert status == 400 and body["detail"][0]["loc"] == []
        # the worker is still there, and counted what it did
        status, _ = _post(url, json.dumps({"records": records[:1]}).encode())
        assert status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert "sidecar_records_total" in text and "sidecar_invalid_requests_total" in text
        # the shadow process counts its outcomes off the request path, a moment later
        deadline = time.monotonic() + 10
        while "sidecar_shadow_outcomes_total" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        assert "sidecar_shadow_outcomes_total" in text

        code = _stop(proc, log_path)
        assert code in (0, -signal.SIGTERM), code
    # every predicted record was written by the time the worker exited
    assert _recorded(tmp_path / "records.db") == 3 + 3 + 1


def test_sidecar_serve_cli(
    tmp_path: Path, quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "sidecar-serve.log"
    db = tmp_path / "cli-records.db"
    cmd = [
        sys.executable,
        "-m",
        "sidecar.cli",
        "serve",
        str(quickstart_bundle),
        "--port",
        str(port),
        "--store",
        f"sqlite:///{db}",
    ]
    env = _env(tmp_path, None)
    # no SIDECAR_BUNDLE or SIDECAR_STORE: the command must hand both to `bentoml serve`
    del env["SIDECAR_STORE"]
    with _process(cmd, env, log_path) as proc:
        _wait_ready(url, proc, log_path)
        status, body = _post(url, json.dumps({"records": quickstart_records[:2]}).encode())
        assert status == 200, body
        assert len(body["predictions"]) == 2 and len(set(body["request_ids"])) == 2
        _stop(proc, log_path)
    assert _recorded(db) == 2
