"""The shadow process of a real `bentoml serve`: same records, and a baseline that cannot hurt.

Each worker hands its requests to a process of its own that runs the
baseline and writes the records. These tests serve a bundle whose baseline
misbehaves on cue (``tests.models.controlled_baseline``): it raises, hangs,
spins in pure Python holding its GIL, or dies of a segmentation fault. The
responses must come on time, the worker must survive, the shadow process must
come back, and what happened must be recorded and counted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import statistics
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.recording import open_store
from sidecar.recording._records import COLUMNS
from tests.models import BASELINE_CONTROL
from tests.servers import alive, descendants, serve_sidecar

pytestmark = pytest.mark.serve

SHADOW_TIMEOUT = 0.5


CONTROLLED = "tests.models:controlled_baseline"


@pytest.fixture(scope="module")
def controlled_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart's preprocessing and model, with ``controlled_baseline`` as the baseline."""
    import sidecar
    from sidecar._quickstart import build_quickstart, load_quickstart_data
    from sidecar.runtimes import CallablePredictor

    base = build_quickstart(tmp_path_factory.mktemp("quick") / "bundle")
    _, _, ref, y_ref = load_quickstart_data()
    baseline = CallablePredictor(
        CONTROLLED,
        task="classification",
        classes=tuple(base.advanced.classes or ()),
    )
    bundle = sidecar.wrap(
        base.advanced,
        task="classification",
        preprocessing=base.preprocessing,
        reference=(ref, y_ref),
        baseline=baseline,
        name="controlled",
    )
    path = tmp_path_factory.mktemp("controlled") / "bundle"
    bundle.save(path)
    return path


class Server:
    def __init__(self, bundle: Path, store: str, tmp: Path, **env: str) -> None:
        self.control = tmp / "baseline-mode"
        self.control.write_text("")
        self.log = tmp / "server.log"
        settings = {
            "SIDECAR_SHADOW_TIMEOUT": str(SHADOW_TIMEOUT),
            "SIDECAR_SHADOW_PROCESS": "1",
            "SIDECAR_TRUSTED": CONTROLLED,  # the baseline is an import path: trusted by name
            BASELINE_CONTROL: str(self.control),
        }
        self.proc, self.port = serve_sidecar(bundle, store, self.log, **(settings | env))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mode(self, mode: str) -> None:
        self.control.write_text(mode)

    def post(self, path: str, body: Any) -> tuple[int, Any, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        start = time.monotonic()
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        elapsed = time.monotonic() - start
        conn.close()
        return resp.status, data, elapsed

    def predict(self, records: list[dict[str, Any]]) -> tuple[list[str], float]:
        status, data, elapsed = self.post("/predict", {"records": records})
        assert status == 200, data
        return data["request_ids"], elapsed

    def labelled(self, request_id: str) -> bool:
        """Send a label for ``request_id``; ``True`` if the store knew the request."""
        status, data, _ = self.post(
            "/feedback", {"labels": [{"request_id": request_id, "label": "benign"}]}
        )
        assert status == 200, data
        return bool(data["accepted"] == 1)

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as r:
            text = r.read().decode()
        want = name
        if labels:
            want += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(want + " ")
        )

    def processes(self) -> dict[str, list[int]]:
        """The live worker and shadow-process pids below this server, from /proc."""
        found: dict[str, list[int]] = {"worker": [], "shadow": []}
        for pid in alive(descendants(self.proc.pid)):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"sidecar.serving._shadow_child" in cmd:
                found["shadow"].append(pid)
            elif b"_bentoml_impl.worker" in cmd:
                found["worker"].append(pid)
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=90)


@pytest.fixture
def server(controlled_bundle: Path, tmp_path: Path) -> Iterator[Server]:
    server = Server(controlled_bundle, f"sqlite:///{tmp_path / 'records.db'}", tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    store = open_store(f"sqlite:///{db}")
    try:
        return {r["request_id"]: r for chunk in store.iter_joined() for r in chunk}
    finally:
        store.close()


def test_the_shadow_process_records_what_the_sdk_records(
    controlled_bundle: Path, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    import sidecar
    from sidecar.recording import Recorder

    records = [dict(r) for r in quickstart_records]
    # Ten small requests, and one too large for a datagram (it goes in pieces).
    requests = [records[i : i + 4] for i in range(0, 40, 4)] + [records * 3]
    served_db = tmp_path / "served.db"
    server = Server(controlled_bundle, f"sqlite:///{served_db}", tmp_path)
    try:
        assert server.processes()["shadow"], "no shadow process runs beside the worker"
        served = [server.predict(batch)[0] for batch in requests]
    finally:
        server.stop()
    sdk_db = tmp_path / "sdk.db"
    bundle = sidecar.load(controlled_bundle, trusted=[CONTROLLED])
    recorder = Recorder(open_store(f"sqlite:///{sdk_db}"))
    bundle.attach_recorder(recorder)
    sdk = [list(bundle.predict(batch).request_ids) for batch in requests]
    bundle.shadow.drain(10)
    assert recorder.close(10)
    got, want = _rows(served_db), _rows(sdk_db)
    assert len(got) == len(want) == 40 + 3 * len(records)
    skip = {"request_id", "ts", "advanced_latency_ms", "baseline_latency_ms"}
    for served_ids, sdk_ids in zip(served, sdk, strict=True):
        for a, b in zip(served_ids, sdk_ids, strict=True):
            row, ref = got[a], want[b]
            for column in COLUMNS:
                if column not in skip:
                    assert row[column] == ref[column], (column, row[column], ref[column])
            assert row["baseline_latency_ms"] is not None and row["shadow_error"] is None


def test_a_baseline_that_raises_hangs_or_spins_never_slows_a_response(
    server: Server, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    record = dict(quickstart_records[0])
    server.predict([record])  # warm
    errors_before = server.metric("sidecar_shadow_outcomes_total", outcome="error")

    server.mode("raise")
    raised = [server.predict([record])[0][0] for _ in range(3)]
    assert server.labelled(raised[-1])  # flushes the shadow process: the rows are written
    assert server.metric("sidecar_shadow_outcomes_total", outcome="error") >= errors_before + 1

    timeouts_before = server.metric("sidecar_shadow_outcomes_total", outcome="timeout")
    server.mode("")
    calm = statistics.median(server.predict([record])[1] for _ in range(7))
    for mode in ("hang", "spin"):
        server.mode(mode)
        server.predict([record])
        time.sleep(0.3)  # the shadow process is hanging or spinning now, for 3 s
        times = [server.predict([record])[1] for _ in range(7)]
        assert max(times) < 1.0, f"a response took {max(times):.2f} s behind a {mode} baseline"
        # A spinning baseline on a thread of the worker would hold its GIL: responses
        # measured 3-7x slower. In a process of its own it costs them nothing.
        assert statistics.median(times) <= 2 * calm + 0.005, (mode, calm, times)
        time.sleep(SHADOW_TIMEOUT)
    server.mode("")
    deadline = time.monotonic() + 30
    clean = None
    while clean is None and time.monotonic() < deadline:
        # the hung and spinning calls run out; until then the baseline may be off
        rid = server.predict([record])[0][0]
        if server.labelled(rid) and _rows(tmp_path / "records.db")[rid]["shadow_error"] is None:
            clean = rid
        else:
            time.sleep(0.3)
    assert clean is not None, "the baseline did not come back after hanging and spinning"
    assert server.metric("sidecar_shadow_outcomes_total", outcome="timeout") >= (
        timeouts_before + 1
    )
    rows = _rows(tmp_path / "records.db")
    assert all("the baseline broke" in rows[rid]["shadow_error"] for rid in raised)
    assert any((r["shadow_error"] or "").startswith("timeout") for r in rows.values())


def test_a_baseline_that_crashes_its_process_does_not_touch_the_worker(
    server: Server, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    record = dict(quickstart_records[0])
    before = server.processes()
    assert len(before["worker"]) == 1 and len(before["shadow"]) == 1, before
    first = server.predict([record])[0][0]
    assert server.labelled(first)

    server.mode("crash")
    deadline = time.monotonic() + 30
    while before["shadow"][0] in server.processes()["shadow"] and time.monotonic() < deadline:
        server.predict([record])  # answered while the shadow process dies
        time.sleep(0.1)
    assert before["shadow"][0] not in server.processes()["shadow"], "the baseline did not crash"
    server.mode("")
    deadline = time.monotonic() + 60
    back = None
    while time.monotonic() < deadline:
        rid = server.predict([record])[0][0]
        if server.labelled(rid):
            back = rid
            break
        time.sleep(0.3)
    assert back is not None, f"the shadow process did not come back:\n{server.log.read_text()}"
    after = server.processes()
    assert after["worker"] == before["worker"], "the worker died with its shadow process"
    assert len(after["shadow"]) == 1 and after["shadow"] != before["shadow"], after
    assert server.metric("sidecar_recorder_rows_total", event="dropped") >= 1
    log = server.log.read_text()
    assert "the shadow process" in log and "is back" in log, log[-3000:]
    server.stop()
    store = open_store(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        writers = store.writers()
    finally:
        store.close()
    assert len(writers) == 2  # the first shadow process and the one that replaced it
    assert sum(w.dropped for w in writers) >= 1  # what the worker dropped meanwhile is counted


def test_a_worker_killed_with_sigkill_loses_no_acknowledged_record(
    server: Server, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    record = dict(quickstart_records[0])
    [worker] = server.processes()["worker"]
    [shadow] = server.processes()["shadow"]
    acked = [rid for _ in range(30) for rid in server.predict([record, record])[0]]
    time.sleep(0.5)  # the worker hands requests over every 50 ms
    os.kill(worker, signal.SIGKILL)
    # The shadow process reads what the worker sent before it died, writes it, and ends.
    deadline = time.monotonic() + 30
    while Path(f"/proc/{shadow}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if "State:\tZ" in Path(f"/proc/{shadow}/status").read_text():
                break
        time.sleep(0.1)
    stored = _rows(tmp_path / "records.db")
    missing = [rid for rid in acked if rid not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records were lost"


def test_the_handle_drops_and_counts_while_its_child_is_gone_and_never_hangs(
    controlled_bundle: Path,
    quickstart_records: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ShadowProcess`` itself, without BentoML: a stopped child, then a killed one."""
    import sidecar
    from sidecar.serving._served import CHILD
    from sidecar.shadow import ShadowItem, ShadowProcess

    for key in [k for k in os.environ if k.startswith("SIDECAR_")]:
        monkeypatch.delenv(key)
    db = tmp_path / "records.db"
    monkeypatch.setenv("SIDECAR_BUNDLE", str(controlled_bundle))
    monkeypatch.setenv("SIDECAR_STORE", f"sqlite:///{db}")
    monkeypatch.setenv("SIDECAR_TRUSTED", CONTROLLED)
    bundle = sidecar.load(controlled_bundle, trusted=[CONTROLLED])
    records = [dict(r) for r in quickstart_records[:3]]

    def item() -> ShadowItem:
        X, pred = bundle._predict(records)
        return ShadowItem(records, X, pred)

    dropped: list[int] = []
    handle = ShadowProcess(
        child=CHILD,
        bundle_path=str(controlled_bundle),
        bundle_version=bundle.version,
        send_timeout=1.0,
        on_dropped=dropped.append,
    )
    try:
        first = handle.pid
        assert first is not None
        assert handle.submit(item()) and handle.flush(10)

        os.kill(first, signal.SIGSTOP)  # alive, but reading nothing
        try:
            start = time.monotonic()
            assert handle.flush(0.5) is False  # no answer: False on time, no exception
            assert time.monotonic() - start < 2.0
        finally:
            os.kill(first, signal.SIGCONT)
        assert handle.flush(10)

        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while handle.pid == first and time.monotonic() < deadline:
            time.sleep(0.05)  # the waiter thread notices and retires it
        assert handle.pid != first
        for _ in range(5):  # while the replacement starts, records are dropped and counted
            assert handle.submit(item())
        deadline = time.monotonic() + 60
        while handle.pid is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert handle.pid is not None and handle.restarts == 1
        assert handle.submit(item()) and handle.flush(10)
        assert sum(dropped) == handle.dropped == 5 * len(records)
    finally:
        assert handle.close(30)
    store = open_store(f"sqlite:///{db}")
    try:
        writers = store.writers()
    finally:
        store.close()
    assert len(writers) == 2
    assert sum(w.dropped for w in writers) == handle.dropped  # reported to the new child
    assert sum(w.written for w in writers) == 2 * len(records)
