"""Faults against a real ``bentoml serve``, as an attacker or an unlucky operator meets them.

- PostgreSQL behind a password-bearing URL: a store outage (the test's own TCP proxy in
  front of the real server is stopped), hostile and malformed requests; every response
  body and the whole server log are searched for the password;
- a full disk (SQLite on a small tmpfs): acknowledged - stored equals the drops reported;
- ``sidecar serve`` stopped by its PID, or its process group killed: nothing survives.

(One module over 400 lines: the three share the real-server client and the proxy.)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sidecar.recording import open_store
from tests.servers import alive, descendants, free_port, serve_sidecar
from tests.stores import pg_schema

pytestmark = [
    pytest.mark.serve,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

SECRET = "Pw-in-the-URL-5b1c"
SECRET2 = "Pw-in-the-query-9d2e"
TOKEN = "feedback-token-3a4f"


class Proxy:
    """A TCP forwarder to PostgreSQL that the test can take down (an outage) and bring back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)


class Client:
    """Raw HTTP to the server; every response body is kept, to be searched for secrets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[bytes] = []

    def request(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        start = time.monotonic()
        try:
            conn.request(
                "POST", path, body, {"content-type": "application/json", **(headers or {})}
            )
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        took = time.monotonic() - start
        self.bodies.append(data)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data
        return resp.status, parsed, took

    def predict(self, records: list[dict[str, Any]]) -> tuple[int, Any, float]:
        return self.request("/predict", json.dumps({"records": records}).encode())

    def feedback(self, labels: Any, token: str | None = TOKEN) -> tuple[int, Any, float]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.request("/feedback", json.dumps({"labels": labels}).encode(), headers)

    def raw(self, payload: bytes) -> tuple[bytes, float]:
        """Send ``payload`` as is on a fresh connection; the first bytes back and the time."""
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.settimeout(15)
            start = time.monotonic()
            s.sendall(payload)
            data = s.recv(65536)
            took = time.monotonic() - start
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            while length and len(body) < int(length[1]):
                more = s.recv(65536)
                if not more:
                    break
                body += more
            data = head + b"\r\n\r\n" + body
        self.bodies.append(data)
        return data, took


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=90)


@pytest.fixture
def secret_pg_url() -> Iterator[tuple[str, Proxy, str]]:
    proxy = Proxy(("127.0.0.1", 5432))
    proxy.start()
    with pg_schema() as schema:
        options = quote(f"-csearch_path={schema}", safe="")
        # Trust authentication ignores the password; the URL carries two all the same.
        url = (
            f"postgresql://postgres:{SECRET}@127.0.0.1:{proxy.port}/test"
            f"?options={options}&password={SECRET2}&application_name={schema}"
        )
        try:
            yield url, proxy, schema
        finally:
            proxy.stop()


def _stored(url: str) -> tuple[set[str], list[Any]]:
    """The request ids the store holds, and its writers' stats."""
    store = open_store(url)
    try:
        ids = {r["request_id"] for chunk in store.iter_joined() for r in chunk}
        return ids, store.writers()
    finally:
        store.close()


def test_postgresql_faults_answer_clearly_and_leak_no_secret(
    secret_pg_url: tuple[str, Proxy, str],
    quickstart_bundle: Path,
    quickstart_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    url, proxy, _ = secret_pg_url
    log = tmp_path / "server.log"
    proc, port = serve_sidecar(
        quickstart_bundle, url, log, SIDECAR_FEEDBACK_TOKEN=TOKEN, SIDECAR_SHADOW_PROCESS="0"
    )
    client = Client(port)
    acked: list[str] = []
    try:
        status, body, _ = client.predict(quickstart_records[:3])
        assert status == 200, body
        acked += body["request_ids"]
        ids = body["request_ids"]

        # Auth first: a wrong or missing token is 401 even for a body that is not JSON.
        for token in (None, "wrong"):
            headers = {"authorization": f"Bearer {token}"} if token else {}
            status, body, _ = client.request("/feedback", b"{not json", headers)
            assert status == 401 and body["error"] == "Unauthorized", body
        # A NUL (or any control character) in a request id: 400 before the store sees it.
        status, body, _ = client.feedback([{"request_id": "a\x00b", "label": "benign"}])
        assert status == 400 and body["problems"][0]["field"] == "labels[0].request_id", body
        # A label outside the class set: 400 naming the set; then the right one is stored.
        status, body, _ = client.feedback([{"request_id": ids[0], "label": "Benign"}])
        assert status == 400, body
        assert "['benign', 'malignant']" in body["problems"][0]["expected"]
        status, body, _ = client.feedback([{"request_id": ids[0], "label": "benign"}])
        assert status == 200 and body["accepted"] == 1, body
        # A form body without a boundary: 415, not 500.
        status, body, _ = client.request(
            "/predict", b"abc", {"content-type": "multipart/form-data"}
        )
        assert status == 415 and body["problems"][0]["field"] == "content-type", body
        # A body shorter than its Content-Length: 400 within the body timeout, not a 504.
        data, took = client.raw(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"records":'
        )
        assert data.startswith(b"HTTP/1.1 400") and b"IncompleteBody" in data, data
        assert took < 3.0

        # The store goes away: serving goes on, /feedback answers 503 at once, nothing leaks.
        proxy.stop()
        status, body, _ = client.predict(quickstart_records[3:5])
        assert status == 200, body
        acked += body["request_ids"]
        for label in ("malignant", "benign"):
            status, body, took = client.feedback([{"request_id": ids[1], "label": label}])
            assert status == 503 and body["error"] == "StoreError", body
            assert took < 3.0, f"/feedback took {took:.1f} s during the outage"
            assert "***" in body["message"] and "127.0.0.1" in body["message"]
        # Back again: the records queued meanwhile are written, labels go in again.
        proxy.start()
        deadline = time.monotonic() + 30
        while True:
            status, body, _ = client.feedback([{"request_id": acked[-1], "label": "benign"}])
            if status == 200 and body["accepted"] == 1:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
    finally:
        _stop(proc)
    stored, writers = _stored(url)
    assert set(acked) <= stored
    assert sum(w.failed_commits for w in writers) > 0  # the outage was met and counted
    text = log.read_text(errors="replace")
    assert "StoreError" in text or "failed" in text  # the outage was logged ...
    for secret in (SECRET, SECRET2):  # ... and nothing anywhere holds a secret
        assert secret not in text, f"the server log holds {secret}"
        assert not [b for b in client.bodies if secret.encode() in b]
    assert "Traceback" not in text, text[-3000:]


# -- a full disk ---------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _fill(path: Path) -> Path:
    """Fill the file system at ``path`` to the last byte; return the filler file."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_full_disk_loses_only_what_it_reports(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    from sidecar.cli import main

    with _tmpfs(tmp_path / "disk", "3m") as disk:
        url = f"sqlite:///{disk / 'records.db'}"
        log = tmp_path / "server.log"
        proc, port = serve_sidecar(
            quickstart_bundle, url, log, SIDECAR_RECORDER_QUEUE="40", SIDECAR_SHADOW_PROCESS="0"
        )
        client = Client(port)
        acked: list[str] = []
        records = quickstart_records[:2]
        try:
            for _ in range(5):
                status, body, _ = client.predict(records)
                assert status == 200
                acked += body["request_ids"]
            time.sleep(1.0)  # written: the file, its WAL and its index exist
            filler = _fill(disk)
            for _ in range(150):  # 300 records against a queue of 40: most are dropped
                status, body, _ = client.predict(records)
                assert status == 200, body
                acked += body["request_ids"]
            time.sleep(1.0)
            unstored = _metric(port, "sidecar_recorder_unstored_dropped_rows")
            dropped = _metric(port, 'sidecar_recorder_rows_total{event="dropped"}')
            assert unstored == dropped > 0
            # `sidecar status` tells the figures may be stale.
            status_out = tmp_path / "status.json"
            with open(status_out, "w") as fh, contextlib.redirect_stdout(fh):
                assert main(["status", "--store", url, "--json"]) == 0
            report = json.loads(status_out.read_text())
            assert report["dropped"] == 0 and any("bytes free" in s for s in report["stale"])
            filler.unlink()  # room again: the next commit takes the rows and the counts
            deadline = time.monotonic() + 30
            while _metric(port, "sidecar_recorder_unstored_dropped_rows") > 0:
                assert time.monotonic() < deadline, "the counts never reached the store"
                time.sleep(0.2)
            for _ in range(3):
                status, body, _ = client.predict(records)
                acked += body["request_ids"]
        finally:
            _stop(proc)
        stored, writers = _stored(url)
        assert stored <= set(acked)
        assert len(acked) - len(stored) == sum(w.dropped for w in writers) == dropped
        text = log.read_text(errors="replace")
        assert "database or disk is full" in text
        assert "Traceback" not in text, text[-3000:]


# -- process hygiene -------------------------------------------------------------------------


def _sidecar_serve(bundle: Path, db: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIDECAR_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(OMP_NUM_THREADS="1", BENTOML_DO_NOT_TRACK="1", SIDECAR_WORKERS="2")
    cmd = [sys.executable, "-m", "sidecar.cli", "serve", str(bundle), "--port", str(port)]
    cmd += ["--store", f"sqlite:///{db}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"sidecar serve was not ready in 90 s:\n{log.read_text()[-3000:]}")


def _workers_started(proc: subprocess.Popen[bytes], n: int) -> list[int]:
    """The command's descendants once BentoML's ``n`` workers are among them."""
    deadline = time.monotonic() + 30
    while True:
        family = descendants(proc.pid)
        workers = [p for p in family if "worker.service" in _cmdline(p)]
        if len(workers) >= n or time.monotonic() > deadline:
            return family
        time.sleep(0.2)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("how", ["sigterm-the-pid", "sigkill-the-group"])
def test_stopping_sidecar_serve_leaves_no_process(
    how: str, quickstart_bundle: Path, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    db = tmp_path / "records.db"
    proc, port = _sidecar_serve(quickstart_bundle, db, tmp_path / "serve.log")
    family = _workers_started(proc, 2)
    try:
        assert len([p for p in family if "worker.service" in _cmdline(p)]) == 2, family
        client = Client(port)
        acked = []
        for _ in range(10):
            status, body, _ = client.predict(quickstart_records[:2])
            assert status == 200
            acked += body["request_ids"]
        if how == "sigterm-the-pid":
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and the arbiter, at once
            proc.wait(timeout=10)
        deadline = time.monotonic() + 60
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {p: _cmdline(p) for p in alive(family)}
        assert not left, f"processes outlived `sidecar serve`: {left}"
    finally:
        for pid in alive(family):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Each worker was stopped gracefully (SIGTERM), so it wrote what it acknowledged.
    store = open_store(f"sqlite:///{db}")
    try:
        stored = {r["request_id"] for chunk in store.iter_joined() for r in chunk}
    finally:
        store.close()
    assert set(acked) <= stored
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert not re.search(r"Traceback", log), log[-3000:]


def test_a_child_that_dies_with_its_parent_gets_sigterm_when_the_parent_is_killed(
    tmp_path: Path,
) -> None:
    """The mechanism under the two tests above, alone: parent killed with SIGKILL, the
    child (in a session of its own, as BentoML's workers are) gets SIGTERM and ends."""
    marker = tmp_path / "got-sigterm"
    armed = tmp_path / "armed"
    child = (
        "import os, signal, sys, time\n"
        "from sidecar._lifetime import die_with_parent\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), "
        "sys.exit(0)))\n"
        "assert die_with_parent()\n"
        f"open({str(armed)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not armed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = descendants(proc.pid)
        assert armed.exists() and kids, "the child did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while alive(kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(kids) and marker.exists()
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
