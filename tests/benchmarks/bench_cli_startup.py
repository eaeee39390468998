"""Start-up of the `sidecar` command: `--help`, `info`, and `diagnose` start-up vs its work.

Prints one JSON object: the median wall time and CPU seconds of several runs of
each command (interleaved; ``diagnose`` is the whole command on the store below),
the target for `--help` (< 1 s), and for `diagnose` on 20,000 recorded requests
the phases of one process: the interpreter, the command's
parser, loading the bundle (its imports included) and the diagnosis itself --
the start-up's share is what the first three cost of the whole. Run from the
repository root:

    .venv/bin/python tests/benchmarks/bench_cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=300)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # diagnose answers 1 for an alarm
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr[-2000:]!r}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = [sys.executable, "-m", "sidecar.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        from sidecar._quickstart import build_quickstart

        build_quickstart(bundle)
        store = _store(bundle, Path(tmp) / "records.db")
        commands = {
            "help": [*exe, "--help"],
            "version": [*exe, "--version"],
            "info": [*exe, "info", str(bundle)],
            "diagnose": [*exe, "diagnose", str(bundle), "--store", store, "--json"],
            "python_bare": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        phases: list[dict[str, float]] = []
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, used = _time(argv)
                times[name].append(wall)
                cpu[name].append(used)
            phases.append(_diagnose_phases(bundle, store))
    medians = {k: statistics.median(v) for k, v in times.items()}
    phase = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    startup = medians["python_bare"] + phase["parser_s"] + phase["load_bundle_s"]
    result = {
        "runs": args.runs,
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        # CPU seconds of each command: what a shared machine's load does not inflate
        "median_cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "each_run_cpu_s": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
        "target_help_s": 1.0,
        "help_met": medians["help"] < 1.0,
        "diagnose_phases_median_s": {k: round(v, 3) for k, v in phase.items()},
        "diagnose_startup_share": round(startup / (startup + phase["diagnose_s"]), 3),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    return 0 if result["help_met"] else 1


PHASES = """
import json, sys, time
t0 = time.perf_counter()
from sidecar.cli import build_parser
build_parser().parse_args(["diagnose", sys.argv[1], "--store", sys.argv[2]])
t1 = time.perf_counter()
import sidecar
bundle = sidecar.load(sys.argv[1])
t2 = time.perf_counter()
sidecar.diagnose(bundle, sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"parser_s": t1 - t0, "load_bundle_s": t2 - t1, "diagnose_s": t3 - t2}))
"""


def _store(bundle: Path, path: Path) -> str:
    """20,000 labelled requests of the quickstart's data, replayed into a SQLite file."""
    import sidecar
    from sidecar._quickstart import load_quickstart_data
    from sidecar.recording import open_store

    _, _, ref, y_ref = load_quickstart_data()
    reps = 20_000 // len(ref) + 1
    records, labels = (ref * reps)[:20_000], (y_ref * reps)[:20_000]
    url = f"sqlite:///{path}"
    store = open_store(url)
    try:
        sidecar.replay(
            sidecar.load(bundle),
            records,
            store=store,
            labels=labels,
            timestamps=[1_700_000_000.0 + 4.0 * i for i in range(len(records))],
        )
    finally:
        store.close()
    return url


def _diagnose_phases(bundle: Path, store: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PHASES, str(bundle), store],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {k: float(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


if __name__ == "__main__":
    raise SystemExit(main())
