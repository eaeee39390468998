"""Benchmark: ``sidecar replay`` into a store, the column path against the record path.

The data and bundle of ``bench_store_scale`` (a classifier over 20 numeric
and 5 categorical inputs; labelled records over one day in a Parquet file).
For each size and store (SQLite, PostgreSQL), in one run, side by side:

- ``after``: ``sidecar replay BUNDLE --data records.parquet --store URL
  --label-column y --timestamp-column ts --batch-size 20000`` -- the column path;
- ``before``: the record path, as ``sidecar replay`` ran it before the column
  path: the file read into dicts (``_tables.read_table``), then
  ``replay(bundle, records, ...)`` through ``Bundle.predict_shadow`` and the
  recorder (``--before-code PATH`` runs it from another checkout instead).

Each run is a fresh subprocess into a fresh store, timed end to end as a user
sees it (start-up, loading the bundle, reading the file, writing the store);
its CPU seconds (user + system, ``/usr/bin/time``) are printed beside its wall
seconds because the machine is shared: the rates are given per wall second
and per CPU second, as medians of ``--repeats`` runs, before and after taking
turns. Target (issue #12): >= 50,000 records/s.

    nice python tests/benchmarks/bench_replay.py --sizes 200000,1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_store_scale import (  # noqa: E402
    drop_pg,
    fresh_url,
    make_bundle,
    make_data,
    timed,
)

TARGET = 50_000
BATCH = 20_000
CLI = "import sys; from sidecar.cli import main; sys.exit(main(sys.argv[1:]))"

#: The record path exactly as ``sidecar replay`` ran it before the column path.
RECORD_PATH = r"""
import json, sys
from sidecar import load
from sidecar._replay import replay
from sidecar._tables import pop_column, read_table
try:  # the record path's time check moved with the replay package
    from sidecar._replay._file import record_times as _moments
except ImportError:
    from sidecar.cli._store_cmds import _moments
from sidecar.recording import open_store

bundle_dir, data, url, batch = sys.argv[1:5]
bundle = load(bundle_dir)
text = [*bundle.preprocessing.categorical_fields, "y"]
records = read_table(data, text_columns=text)
labels = pop_column(records, "y", flag="--label-column", source=data)
stamps = _moments(pop_column(records, "ts", flag="--timestamp-column", source=data), "ts")
store = open_store(url)
try:
    result = replay(bundle, records, store=store, labels=labels, timestamps=stamps,
                    batch_size=int(batch))
finally:
    store.close()
print(json.dumps(result.to_dict()))
"""


def one_run(path: str, code: Path, n: int, kind: str, data: Path, bundle: Path, tmp: Path,
            i: int) -> dict[str, Any]:  # fmt: skip
    tag = f"replay_{path}_{kind}_{n}_{i}"
    url = fresh_url(kind, tmp, tag)
    if path == "after":
        argv = [sys.executable, "-c", CLI, "replay", str(bundle), "--data", str(data),
                "--store", url, "--label-column", "y", "--timestamp-column", "ts",
                "--batch-size", str(BATCH), "--json"]  # fmt: skip
    else:
        argv = [sys.executable, "-c", RECORD_PATH, str(bundle), str(data), url, str(BATCH)]
    run = timed(argv, code)
    result = json.loads(run["stdout"])
    if result["records"] != n or result["labels_accepted"] != n or result["dropped"]:
        raise RuntimeError(f"{path} on {kind} stored {result}, expected {n} labelled records")
    if kind == "postgresql":
        drop_pg(tag)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp / tag}.db{suffix}").unlink(missing_ok=True)
    return {
        "wall_s": run["wall_s"],
        "cpu_s": run["cpu_s"],
        "peak_mb": run["peak_mb"],
        "replay_s": result["seconds"],
    }


def summary(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    return {
        "records_per_s_wall": round(n / wall),
        "records_per_s_cpu": round(n / cpu),
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_mb": max(r["peak_mb"] for r in runs),
        "runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before-code", default=str(ROOT), help="checkout whose record path runs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-replay-"))
    bundle = tmp / "bundle"
    make_bundle(bundle)
    out: dict[str, Any] = {"target_records_per_s": TARGET, "batch_size": BATCH, "results": []}
    for n in [int(s) for s in args.sizes.split(",")]:
        data = tmp / f"records-{n}.parquet"
        make_data(n, data)
        for kind in args.stores.split(","):
            runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
            load = [os.getloadavg()[0]]
            for i in range(args.repeats):  # taking turns: both see the same machine
                for path in ("before", "after"):
                    code = Path(args.before_code) if path == "before" else ROOT
                    runs[path].append(one_run(path, code, n, kind, data, bundle, tmp, i))
                    print(json.dumps({path: runs[path][-1], "n": n, "store": kind}),
                          file=sys.stderr, flush=True)  # fmt: skip
            load.append(os.getloadavg()[0])
            before, after = summary(runs["before"], n), summary(runs["after"], n)
            out["results"].append(
                {
                    "store": kind,
                    "records": n,
                    "target": TARGET,
                    "records_per_s_wall": after["records_per_s_wall"],
                    "records_per_s_cpu": after["records_per_s_cpu"],
                    "before": before,
                    "after": after,
                    "ratio_wall": round(before["wall_s"] / after["wall_s"], 2),
                    "ratio_cpu": round(before["cpu_s"] / after["cpu_s"], 2),
                    "meets_target_wall": after["records_per_s_wall"] >= TARGET,
                    "meets_target_cpu": after["records_per_s_cpu"] >= TARGET,
                    "load_average_1min": load,
                }
            )
            print(json.dumps(out["results"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
