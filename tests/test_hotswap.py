"""Hot promotion against real ``bentoml serve``: switch versions under load, refuse bad bundles.

A running service follows its registry's ``ACTIVE`` pointer: a promotion and
then a rollback are served without a restart, without a failed request, and
every response and record names the one version that answered it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sidecar
from sidecar.recording import open_store
from tests.servers import free_port, serve_sidecar

pytestmark = [
    pytest.mark.serve,
    # BentoML's client leaves its TemporaryDirectory to the garbage collector.
    pytest.mark.filterwarnings("ignore:Implicitly cleaning up <TemporaryDirectory:ResourceWarning"),
]

CLIENTS = 4


@pytest.fixture(scope="module")
def versions(quickstart_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The quickstart bundle, a candidate with another model, and one that does not fit it."""
    from sklearn.tree import DecisionTreeClassifier

    from sidecar._quickstart import load_quickstart_data

    root = tmp_path_factory.mktemp("hotswap")
    champion = sidecar.load(quickstart_bundle)
    train, y_train, _, _ = load_quickstart_data()
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    tree.fit(champion.preprocessing.transform(train), y_train)
    champion.with_models(advanced=tree).save(root / "candidate")
    columns = [
        sidecar.NumericColumn(name=name, **({"unit": "m", "input_unit": "cm"} if i == 0 else {}))
        for i, name in enumerate(train[0])
    ]
    other = champion.with_preprocessing(sidecar.TabularPreprocessor(columns=columns))
    other.save(root / "misfit")
    return {
        "champion": quickstart_bundle,
        "candidate": root / "candidate",
        "misfit": root / "misfit",
    }


class Load:
    """``CLIENTS`` threads posting one- to three-record requests until stopped."""

    def __init__(self, port: int, records: list[dict[str, Any]]) -> None:
        self.port = port
        self.records = records
        self.responses: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def versions(self) -> Counter[str]:
        with self._lock:
            return Counter(r[1].get("bundle_version", "?") for r in self.responses)

    def wait_for(self, version: str, n: int, timeout: float = 60.0) -> None:
        """Until ``n`` more responses came from ``version`` (fails the test on time-out)."""
        start = self.versions()[version]
        deadline = time.monotonic() + timeout
        while self.versions()[version] < start + n:
            assert time.monotonic() < deadline, f"no switch to {version}: {self.versions()}"
            assert not self.failures, self.failures[:3]
            time.sleep(0.05)

    def _run(self, i: int) -> None:
        rng = np.random.default_rng(i)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            picked = [
                self.records[j] for j in rng.integers(0, len(self.records), rng.integers(1, 4))
            ]
            try:
                conn.request(
                    "POST",
                    "/predict",
                    json.dumps({"records": picked}),
                    {"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                body = json.loads(resp.read())
            except Exception as exc:  # a dropped connection is a failed request too
                with self._lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            with self._lock:
                self.responses.append((resp.status, body, picked))
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=90)


@pytest.mark.parametrize(
    ("workers", "shadow_process"),
    [(1, "0"), (2, "1")],
    ids=["1-worker-threads", "2-workers-process"],
)
def test_a_promotion_and_a_rollback_are_served_under_load_without_a_restart(
    versions: dict[str, Path],
    quickstart_records: list[dict[str, Any]],
    tmp_path: Path,
    workers: int,
    shadow_process: str,
) -> None:
    root = tmp_path / "served"
    shutil.copytree(versions["champion"], root)  # it becomes a registry at the promotion
    champion, candidate = sidecar.load(root), sidecar.load(versions["candidate"])
    db = tmp_path / "records.db"
    proc, port = serve_sidecar(
        root,
        f"sqlite:///{db}",
        tmp_path / "server.log",
        workers=workers,
        SIDECAR_CANDIDATE=str(versions["candidate"]),
        SIDECAR_SHADOW_PROCESS=shadow_process,
    )
    _wait_for_workers(tmp_path / "server.log", workers)
    pids_before = _worker_pids(proc.pid)
    try:
        with Load(port, quickstart_records) as load:
            load.wait_for(champion.version, 30)
            registry = sidecar.Registry.open(root, create=True)
            registry.register(versions["candidate"])
            registry.activate(candidate.version, action="promote")
            load.wait_for(candidate.version, 60 * workers)
            assert registry.rollback() == champion.version
            load.wait_for(champion.version, 60 * workers)
        assert _worker_pids(proc.pid) == pids_before, "a worker was restarted"
    finally:
        _stop(proc)
    log = (tmp_path / "server.log").read_text()
    assert not load.failures, load.failures[:5]
    statuses = Counter(status for status, _, _ in load.responses)
    assert statuses == {200: len(load.responses)}, (statuses, log[-3000:])
    counts = load.versions()
    assert set(counts) == {champion.version, candidate.version}, counts

    # Every response was answered by one version, and the store says the same.
    rows = _rows(db)
    served = {
        v: sidecar.load(p)
        for v, p in (
            (champion.version, root / "versions" / champion.version),
            (candidate.version, versions["candidate"]),
        )
    }
    for version, bundle in served.items():
        answered = [
            (body, picked)
            for _, body, picked in load.responses
            if body["bundle_version"] == version
        ]
        # One call for all of a version's records: the same answers, record by record.
        expected = bundle.predict([r for _, picked in answered for r in picked], shadow=False)
        got = [p for body, _ in answered for p in body["predictions"]]
        assert got == expected.predictions.tolist()
        np.testing.assert_allclose(
            [p for body, _ in answered for p in body["probabilities"]],
            expected.probabilities,
            rtol=1e-9,
        )
        parts = bundle.manifest["parts"]
        for body, _ in answered:
            for i, rid in enumerate(body["request_ids"]):
                row = rows.pop(rid)
                assert row["bundle_version"] == version
                assert row["advanced_version"] == parts["advanced"]["version"]
                assert row["baseline_version"] == parts["baseline"]["version"]
                assert json.loads(row["advanced_prediction"]) == body["predictions"][i]
                # The candidate runs beside the champion; once promoted, it is the champion.
                if version == champion.version:
                    assert row["candidate_version"] == candidate.version
                    assert row["candidate_prediction"] is not None
                else:
                    assert row["candidate_version"] is None
    assert not rows, f"{len(rows)} records no response named"


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every stored record by request id, read through the store as any reader would."""
    store = open_store(f"sqlite:///{db}")
    try:
        return {r["request_id"]: r for chunk in store.iter_joined() for r in chunk}
    finally:
        store.close()


def _wait_for_workers(log: Path, workers: int, timeout: float = 120.0) -> None:
    """Until every worker has started (``/readyz`` answers as soon as one has)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("Completed startup hook: _tune_worker") < workers:
        assert time.monotonic() < deadline, f"not all workers started:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def _worker_pids(root: int) -> set[int]:
    from tests.servers import alive, descendants

    found = set()
    for pid in alive(descendants(root)):
        try:
            if b"_bentoml_impl.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


# -- refused at start-up ------------------------------------------------------------------


def _broken(versions: dict[str, Path], tmp_path: Path) -> Path:
    """The champion with one byte of its advanced model changed after it was saved."""
    broken = tmp_path / "broken"
    shutil.copytree(versions["champion"], broken)
    model = next((broken / "advanced").iterdir())
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(data)
    return broken


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("sidecar serve", "misfit candidate"),
        ("sidecar serve", "broken bundle"),
        ("bentoml serve", "misfit candidate"),
        ("bentoml serve", "broken candidate"),
    ],
    ids=["sidecar-misfit", "sidecar-broken-bundle", "bentoml-misfit", "bentoml-broken-candidate"],
)
def test_a_bad_bundle_or_candidate_stops_the_server_at_start_up(
    versions: dict[str, Path], tmp_path: Path, how: str, what: str
) -> None:
    bundle, candidate = versions["champion"], versions["misfit"]
    if what == "broken candidate":
        candidate = _broken(versions, tmp_path)
    elif what == "broken bundle":
        bundle, candidate = _broken(versions, tmp_path), versions["candidate"]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIDECAR_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        SIDECAR_BUNDLE=str(bundle),
        SIDECAR_CANDIDATE=str(candidate),
        SIDECAR_STORE=f"sqlite:///{tmp_path / 'records.db'}",
        BENTOML_HOME=str(tmp_path / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="1",
    )
    port = str(free_port())
    if how == "sidecar serve":
        cmd = [str(Path(sys.executable).parent / "sidecar"), "serve", str(bundle), "--port", port]
    else:
        cmd = [sys.executable, "-m", "bentoml", "serve", "sidecar.serving.service:Sidecar"]
        cmd += ["--host", "127.0.0.1", "--port", port]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{how} did not exit on a {what}:\n{out.decode()[-3000:]}")
    text = out.decode(errors="replace")
    assert proc.returncode not in (0, None), text[-3000:]
    if what == "misfit candidate":
        assert "the candidate must use the champion's preprocessing" in text, text[-3000:]
        assert "SIDECAR_CANDIDATE" in text
    else:
        assert "failed its hash check" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
