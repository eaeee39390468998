"""Starting a real ``bentoml serve`` of the sidecar for the tests that are about serving."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

__all__ = ["alive", "descendants", "free_port", "serve_sidecar", "state"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_sidecar(
    bundle: Path, store: str, log: Path, *, workers: int = 1, **env: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``bentoml serve`` the sidecar on 127.0.0.1 in a session of its own; wait until it is ready.

    The server sees this process's environment without its ``SIDECAR_*``
    settings (and with BentoML's own Prometheus directory), plus ``env``.
    Fails the test, with the end of ``log``, if it exits or is not ready in 90 s.
    """
    port = free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SIDECAR_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    environ.update(
        SIDECAR_BUNDLE=str(bundle),
        SIDECAR_STORE=store,
        SIDECAR_WORKERS=str(workers),
        OMP_NUM_THREADS="1",
        BENTOML_DO_NOT_TRACK="1",
        # A BentoML home per server: BentoML empties $BENTOML_HOME/prometheus_multiproc_dir
        # whenever a server starts, so servers sharing a home wipe each other's /metrics.
        BENTOML_HOME=str(log.parent / f"bentoml-home-{port}"),
        **env,
    )
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "sidecar.serving.service:Sidecar",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=environ,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the server was not ready in 90 s:\n{log.read_text()[-3000:]}")


def descendants(root: int) -> list[int]:
    """Every process below ``root``, from /proc (children first seen, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (not gone, not zombies)."""
    return [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in state(p)]


def state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "status").read_text().split("State:", 1)[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"
