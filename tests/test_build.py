"""`bentoml build` from the repository root, and a Bento that carries its bundle as a BentoML model.

Each test has a BentoML home of its own (a tmp dir): the model store, the Bento
store and BentoML's Prometheus directory. Servers are real ``bentoml serve``
subprocesses on 127.0.0.1, serving the built Bento by its tag with no
``SIDECAR_BUNDLE``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.recording import open_store
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
_BENTOML = [sys.executable, "-m", "bentoml"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIDECAR_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="1", OMP_NUM_THREADS="1", **extra)
    return env


def _run(
    args: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def _build(env: dict[str, str]) -> str:
    built = _run([*_BENTOML, "build", "--output", "tag"], env)
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("model-sidecar:"), built.stdout
    return tag


def _import(bundle: Path, env: dict[str, str]) -> dict[str, Any]:
    """``sidecar bento import BUNDLE --json``: the command users type."""
    done = _run([sys.executable, "-m", "sidecar", "bento", "import", str(bundle), "--json"], env)
    return dict(json.loads(done.stdout))


def _serve(tag: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*_BENTOML, "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=log.parent,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def _ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the server was not ready in 90 s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _exits(proc: subprocess.Popen[bytes], within: float) -> bool:
    try:
        proc.wait(timeout=within)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return False


@pytest.mark.serve
def test_bentoml_build_from_the_repository_root(tmp_path: Path) -> None:
    env = _env(tmp_path / "bentoml-home")
    tag = _build(env)
    bento_dir = tmp_path / "bentoml-home" / "bentos" / "model-sidecar" / tag.split(":")[1]
    sources = {
        p.relative_to(bento_dir / "src").as_posix() for p in (bento_dir / "src").rglob("*.py")
    }
    assert "sidecar/serving/service.py" in sources
    assert "sidecar/serving/_bentoml_model.py" in sources
    assert not any(s.startswith("tests/") for s in sources)
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert "skops" in requirements and "torch" not in requirements


@pytest.mark.serve
def test_a_bento_carries_its_bundle_and_serves_it_without_settings(
    tmp_path: Path, quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    home = tmp_path / "bentoml-home"
    store = tmp_path / "records.db"
    env = _env(home)
    imported = _import(quickstart_bundle, env)
    assert imported["created"] and imported["tag"] == f"breast-cancer:{imported['bundle_version']}"
    assert _import(quickstart_bundle, env)["created"] is False  # importing again is a no-op
    listed = _run([sys.executable, "-m", "sidecar", "bento", "list", "--json"], env)
    assert [m["tag"] for m in json.loads(listed.stdout)] == [imported["tag"]]
    copy = Path(imported["path"])
    assert copy.is_relative_to(home / "models")
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["version"] == imported["bundle_version"]
    model_yaml = yaml.safe_load((copy.parent / "model.yaml").read_text())
    assert model_yaml["labels"]["model-sidecar"] == "bundle"
    assert model_yaml["metadata"]["bundle_version"] == imported["bundle_version"]
    assert model_yaml["metadata"]["seal_sha256"] == manifest["seal_sha256"]

    tag = _build(env)
    bento = yaml.safe_load(
        (home / "bentos" / Path(tag.replace(":", "/")) / "bento.yaml").read_text()
    )
    declared = [m["tag"] for s in bento["services"] for m in s["models"]]
    assert declared == [imported["tag"]]

    serve_env = _env(home, SIDECAR_STORE=f"sqlite:///{store}")
    log = tmp_path / "serve.log"
    proc, port = _serve(tag, serve_env, log)
    try:
        _ready(proc, port, log)
        body = json.dumps({"records": quickstart_records[:3]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["bundle_version"] == imported["bundle_version"]
        assert len(answer["predictions"]) == 3
    finally:
        _stop(proc)  # SIGTERM flushes the recorder
    records = open_store(f"sqlite:///{store}")
    try:
        rows = [(r["request_id"], r["bundle_version"]) for c in records.iter_joined() for r in c]
    finally:
        records.close()
    assert sorted(r[0] for r in rows) == sorted(answer["request_ids"])
    assert {r[1] for r in rows} == {imported["bundle_version"]}

    # The checks run on the copy in the model store: a changed byte there is refused,
    # and the server stops instead of restarting its worker for ever.
    target = sorted(p for p in (copy / "advanced").rglob("*") if p.is_file())[0]
    target.write_bytes(target.read_bytes() + b"\0")
    log = tmp_path / "tampered.log"
    proc, _ = _serve(tag, serve_env, log)
    assert _exits(proc, within=90), f"the server kept running:\n{log.read_text()[-3000:]}"
    assert "sha256" in log.read_text(), log.read_text()[-3000:]


@pytest.mark.serve
def test_a_bento_without_a_bundle_stops_with_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path / "bentoml-home")
    tag = _build(env)  # the model store holds no bundle: a Bento without one
    log = tmp_path / "serve.log"
    proc, _ = _serve(tag, _env(tmp_path / "bentoml-home"), log)
    assert _exits(proc, within=90), f"the server kept running:\n{log.read_text()[-3000:]}"
    text = log.read_text()
    assert "model store holds no bundle" in text and "sidecar bento import" in text, text[-3000:]


def _container_engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"docker cannot reach a daemon: {info.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.mark.serve
@pytest.mark.skipif(_container_engine() is not None, reason=str(_container_engine()))
def test_bentoml_containerize_builds_an_image(tmp_path: Path, quickstart_bundle: Path) -> None:
    env = _env(tmp_path / "bentoml-home")
    _import(quickstart_bundle, env)
    tag = _build(env)
    done = _run(
        [sys.executable, "-m", "bentoml", "containerize", tag, "-t", "sidecar-test:ci"], env
    )
    assert "Successfully built" in done.stdout + done.stderr


def test_importing_what_is_not_a_bundle_is_a_usage_error(tmp_path: Path) -> None:
    env = _env(tmp_path / "bentoml-home")
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "bento", "import", str(tmp_path / "empty")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "`BUNDLE` must be a bundle directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bentoml-home" / "models").exists() or not any(
        (tmp_path / "bentoml-home" / "models").iterdir()
    )
