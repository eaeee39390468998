"""A real `bentoml serve` with 2 workers under load: SIGTERM loses nothing, kill -9 little.

Every request answered 200 must be in the store after a graceful stop; after a
crash the store must open cleanly and only what was acknowledged within the
last flush interval may be missing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.recording import open_store
from tests.servers import alive, descendants, serve_sidecar

pytestmark = pytest.mark.serve

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _serve(
    bundle: Path, store: str, log: Path, workers: int = 2, shadow: str = "process"
) -> tuple[subprocess.Popen[bytes], int]:
    """A server whose shadow stage runs in a process per worker (the default) or on threads."""
    return serve_sidecar(
        bundle,
        store,
        log,
        workers=workers,
        SIDECAR_SHADOW_PROCESS="1" if shadow == "process" else "0",
    )


#: The two shadow transports: a process per worker (the default), threads in the worker.
SHADOWS = pytest.mark.parametrize("shadow", ["process", "threads"])


def _load(
    port: int, record: dict[str, Any], seconds: float, clients: int = 6
) -> list[tuple[str, float]]:
    """Send requests from several threads (half on fresh connections, so both workers get
    traffic); return (request_id, time acknowledged) for every 200."""
    acked: list[tuple[str, float]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    body = json.dumps({"records": [record, record]})

    def client(keep_alive: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            try:
                conn.request("POST", "/predict", body, {"content-type": "application/json"})
                response = conn.getresponse()
                data = response.read()
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            if response.status == 200:
                now = time.monotonic()
                with lock:
                    acked.extend((rid, now) for rid in json.loads(data)["request_ids"])
            if not keep_alive:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked


def _stored_ids(store_url: str) -> set[str]:
    store = open_store(store_url)
    try:
        return {row["request_id"] for chunk in store.iter_joined() for row in chunk}
    finally:
        store.close()


@pytest.fixture
def pg_store() -> Iterator[str]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@SHADOWS
def test_sigterm_under_load_keeps_every_acknowledged_record(
    kind: str,
    shadow: str,
    quickstart_bundle: Path,
    quickstart_record: dict[str, Any],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    store = (
        request.getfixturevalue("pg_store")
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'records.db'}"
    )
    proc, port = _serve(quickstart_bundle, store, tmp_path / "server.log", shadow=shadow)
    try:
        acked = _load(port, quickstart_record, seconds=3.0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert len(acked) > 100
    stored = _stored_ids(store)
    missing = {rid for rid, _ in acked} - stored
    assert not missing, f"{len(missing)} acknowledged records are not in the store"
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    # Both workers recorded (each writes its own row in sidecar_writers).
    s = open_store(store)
    writers = s.writers()
    s.close()
    assert sum(w.written for w in writers) == len(stored)
    assert all(w.dropped == 0 for w in writers)


@SHADOWS
def test_kill_9_loses_at_most_one_flush_interval_and_the_store_stays_readable(
    shadow: str, quickstart_bundle: Path, quickstart_record: dict[str, Any], tmp_path: Path
) -> None:
    db = tmp_path / "records.db"
    store = f"sqlite:///{db}"
    proc, port = _serve(quickstart_bundle, store, tmp_path / "server.log", shadow=shadow)
    try:
        acked = _load(port, quickstart_record, seconds=3.0)
        killed_at = time.monotonic()
    finally:
        # A crash of the whole server: BentoML's workers run in sessions of their
        # own, so the supervisor's process group is not enough.
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(family):
        time.sleep(0.1)
    assert not alive(family), "server processes survived SIGKILL"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = _stored_ids(store)
    lost = [(rid, t) for rid, t in acked if rid not in stored]
    # One flush interval: the shadow batch interval (0.05 s) plus the recorder's
    # linger (0.25 s) plus one commit; allow a generous second on a busy machine.
    bound = 1.0
    late = [t for _, t in lost if killed_at - t > bound]
    assert not late, (
        f"{len(late)} records acknowledged more than {bound} s before the kill are lost"
    )
    assert len(stored) >= len(acked) - sum(1 for _, t in acked if killed_at - t <= bound)


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _pg_ready() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@pytest.mark.skipif(
    not (shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql") and os.geteuid() == 0),
    reason="needs the local PostgreSQL cluster and root to stop and start it",
)
@SHADOWS
def test_postgresql_stopped_and_restarted_mid_traffic_loses_nothing(
    shadow: str,
    quickstart_bundle: Path,
    quickstart_record: dict[str, Any],
    tmp_path: Path,
    pg_store: str,
) -> None:
    proc, port = _serve(
        quickstart_bundle, pg_store, tmp_path / "server.log", workers=1, shadow=shadow
    )
    acked: list[tuple[str, float]] = []
    try:
        loader = threading.Thread(
            target=lambda: acked.extend(_load(port, quickstart_record, seconds=6.0, clients=2))
        )
        loader.start()
        time.sleep(1.0)
        _pg_ctl("stop")
        try:
            time.sleep(2.0)  # serving goes on while the store is down
        finally:
            _pg_ctl("start")
            deadline = time.monotonic() + 60
            while not _pg_ready() and time.monotonic() < deadline:
                time.sleep(0.2)
        loader.join()
        assert len(acked) > 50
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
    stored = _stored_ids(pg_store)
    missing = {rid for rid, _ in acked} - stored
    assert not missing, f"{len(missing)} acknowledged records were lost across the restart"
    s = open_store(pg_store)
    writers = s.writers()
    s.close()
    assert sum(w.failed_commits for w in writers) > 0  # it did notice the outage
    assert all(w.dropped == 0 for w in writers)
