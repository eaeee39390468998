"""Benchmark: the sidecar endpoint against a bare BentoML service, over loopback.

Both services serve the quickstart's model with the same tuning (one worker):
the sidecar does preprocessing + advanced + baseline in shadow + recording
into SQLite; the bare one (``bare_service.py``) does the model alone. A load
generator in a second process (started once, kept for every run) keeps 1 and
then 16 connections busy with single-record requests (keep-alive HTTP/1.1,
one request in flight per connection). After a 1 s warm-up of each, the two
services take turns, ``--rounds`` times, for ``--seconds`` each (the order
alternating): this machine's speed drifts by tens of percent within a minute,
and short turns let both services see the same machine. The figures pool all
of a service's runs -- requests over time, percentiles over every latency --
and the ratios come with 95 % bootstrap intervals that resample the rounds in
pairs. After the load the sidecar is
stopped with SIGTERM and the store must hold one record for every request
answered 200.

    python tests/benchmarks/bench_serving.py [--seconds 1] [--rounds 40]
    SIDECAR_SHADOW_PROCESS=0 python tests/benchmarks/bench_serving.py   # shadow on threads

Targets: sidecar throughput >= 0.9x the bare service's, p99 <= 1.25x, zero records lost.
Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(target: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                target,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=env.get("CWD", str(ROOT)),
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"{target} did not become ready; see {log}")


async def _client(port: int, request: bytes, stop: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out["lat"].append(time.perf_counter() - t0)
            if b" 200 " in status_line:
                out["ok"] += 1
            else:
                out["errors"] += 1
    finally:
        writer.close()


def _measure(port: int, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out: dict[str, Any] = {"lat": [], "ok": 0, "errors": 0}

    async def clients_until_stop() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_client(port, request, stop, out) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(clients_until_stop())
    elapsed = time.perf_counter() - started
    lat = sorted(out["lat"])
    return {
        "requests_per_s": len(lat) / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        "ok": out["ok"],
        "errors": out["errors"],
        "elapsed_s": elapsed,
        "latencies_ms": [x * 1e3 for x in out["lat"]],
    }


def _generator(conn: Any) -> None:
    """The load generator process: one measurement per (port, body, clients, seconds) received."""
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(_measure(*job))


class LoadGenerator:
    """A second process that keeps ``clients`` connections busy, on request.

    Started once and kept: a fresh interpreter per run would cost a second of
    start-up between the two runs of a pair, and its imports would land in a run.
    """

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_generator, args=(child,), daemon=True)
        self._proc.start()

    def run(self, port: int, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
        self._conn.send((port, body, clients, seconds))
        if not self._conn.poll(seconds + 120):
            raise RuntimeError("the load generator did not answer")
        result: dict[str, Any] = self._conn.recv()
        return result

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(timeout=30)


def pooled(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Throughput over all of a service's runs, and percentiles of all their latencies."""
    import numpy as np

    lat = np.concatenate([np.asarray(r["latencies_ms"]) for r in runs])
    return {
        "requests_per_s": len(lat) / sum(r["elapsed_s"] for r in runs),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def compare(
    side: list[dict[str, Any]], bare: list[dict[str, Any]], seed: int = 0, n_boot: int = 1000
) -> dict[str, Any]:
    """Pooled throughput and p99 ratios (sidecar / bare), with 95 % paired-bootstrap intervals.

    The rounds are resampled in pairs, so each resample keeps the two runs that
    saw the same few seconds of the machine together.
    """
    import numpy as np

    def ratios(idx: Any) -> tuple[float, float]:
        s, b = pooled([side[i] for i in idx]), pooled([bare[i] for i in idx])
        return s["requests_per_s"] / b["requests_per_s"], s["p99_ms"] / b["p99_ms"]

    rng = np.random.default_rng(seed)
    n = len(side)
    boot = np.array([ratios(rng.integers(0, n, n)) for _ in range(n_boot)])
    throughput, p99 = ratios(range(n))
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return {
        "throughput_ratio": throughput,
        "throughput_ratio_ci95": (float(lo[0]), float(hi[0])),
        "p99_ratio": p99,
        "p99_ratio_ci95": (float(lo[1]), float(hi[1])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    from sidecar._quickstart import build_quickstart, load_quickstart_data
    from sidecar.recording import open_store

    tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-serving-"))
    bundle = build_quickstart(tmp / "bundle")
    fields = list(bundle.preprocessing.input_fields)
    record = load_quickstart_data()[2][0]
    body = json.dumps({"records": [record]}).encode()
    db = tmp / "records.db"
    base_env = dict(os.environ, OMP_NUM_THREADS="1", BENTOML_DO_NOT_TRACK="1")
    side_env = dict(base_env, SIDECAR_BUNDLE=str(tmp / "bundle"), SIDECAR_STORE=f"sqlite:///{db}")
    bare_env = dict(
        base_env,
        BARE_MODEL=str(tmp / "bundle" / "advanced" / "model.skops"),
        BARE_FIELDS=",".join(fields),
        CWD=str(HERE),
        PYTHONPATH=str(HERE) + os.pathsep + base_env.get("PYTHONPATH", ""),
    )
    side_port, bare_port = free_port(), free_port()
    side = start("sidecar.serving.service:Sidecar", side_port, side_env, tmp / "sidecar.log")
    bare = start("bare_service:Bare", bare_port, bare_env, tmp / "bare.log")
    acked = 0
    results: dict[str, Any] = {
        "model": "quickstart HistGradientBoostingClassifier",
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "workers": 1,
        "record_store": "sqlite",
        "shadow": "threads" if os.environ.get("SIDECAR_SHADOW_PROCESS") == "0" else "process",
    }
    ok = True
    gen = LoadGenerator()
    try:
        for clients in (1, 16):
            acked += int(gen.run(side_port, body, clients, 1.0)["ok"])  # warm-up, not counted
            gen.run(bare_port, body, clients, 1.0)
            runs: dict[str, list[dict[str, Any]]] = {"sidecar": [], "bare": []}
            for r in range(args.rounds):
                order = [("sidecar", side_port), ("bare", bare_port)]
                for name, port in order if r % 2 == 0 else order[::-1]:
                    figures = gen.run(port, body, clients, args.seconds)
                    runs[name].append(figures)
                    if name == "sidecar":
                        acked += int(figures["ok"])
            figures = {name: pooled(fs) for name, fs in runs.items()}
            per_round = [
                s["requests_per_s"] / b["requests_per_s"]
                for s, b in zip(runs["sidecar"], runs["bare"], strict=True)
            ]
            cmp = compare(runs["sidecar"], runs["bare"])
            errors = sum(f["errors"] for fs in runs.values() for f in fs)
            results[f"clients_{clients}"] = {
                "sidecar": {k: round(v, 3) for k, v in figures["sidecar"].items()},
                "bare": {k: round(v, 3) for k, v in figures["bare"].items()},
                "throughput_ratio": round(cmp["throughput_ratio"], 3),
                "throughput_ratio_ci95": [round(x, 3) for x in cmp["throughput_ratio_ci95"]],
                "target_throughput_ratio": 0.9,
                "p99_ratio": round(cmp["p99_ratio"], 3),
                "p99_ratio_ci95": [round(x, 3) for x in cmp["p99_ratio_ci95"]],
                "target_p99_ratio": 1.25,
                "median_of_per_round_throughput_ratios": round(statistics.median(per_round), 3),
                "per_round_throughput_ratio_range": [
                    round(min(per_round), 3),
                    round(max(per_round), 3),
                ],
                "non_200_responses": errors,
                "ok": cmp["throughput_ratio"] >= 0.9 and cmp["p99_ratio"] <= 1.25 and errors == 0,
            }
            ok = ok and results[f"clients_{clients}"]["ok"]
    finally:
        gen.close()
        for proc in (side, bare):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (side, bare):
            proc.wait(timeout=60)
    store = open_store(f"sqlite:///{db}")
    try:
        stored = store.count()["predictions"]
    finally:
        store.close()
    results["records"] = {
        "acknowledged": acked,
        "stored": stored,
        "lost": acked - stored,
        "target_lost": 0,
        "ok": stored >= acked,
    }
    ok = ok and stored >= acked
    results["all_targets_met"] = ok
    print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
