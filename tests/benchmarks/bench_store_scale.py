"""Benchmark: analysis at the scale of real traffic, from the store, as a user runs it.

A classifier over 20 numeric and 5 categorical inputs; ``n`` labelled records
over one day, written to a Parquet file. For each store (SQLite, PostgreSQL)
and each code version -- ``after`` (this tree) and ``before`` (another
checkout, ``--before PATH``, e.g. ``/work/main``) -- it runs, as subprocesses:

1. ``sidecar replay BUNDLE --data records.parquet --store URL ...`` (records/s), once;
   then ``--repeat`` rounds of 2-4, before and after taking turns (medians; each
   round's CPU seconds are kept in ``each_run_cpu_s``):
2. ``sidecar diagnose BUNDLE --store URL --json`` (wall, peak RSS);
3. ``sidecar export --store URL --out ...`` (rows/s);
4. a stage breakdown in one process: loading the bundle, reading the window
   (``load_window``, and for ``after`` the raw scan ``Store.read_window``), and
   the in-memory diagnosis of the same rows (``monitoring`` on the arrays).

The machine is shared (load 9-10 on 2 cores while this was written), so each
subprocess's CPU time (user + system) is printed beside its wall time, and the
rates are given per wall second and per CPU second.

Targets (issue #12): diagnose end to end <= 3x the in-memory diagnosis and
>= 10x faster than before; peak < 2 GB; replay >= 50k records/s; export
>= 500k rows/s; window read >= 1M rows/s. Peak memory is each subprocess's
maximum RSS (``/usr/bin/time``).

    nice python tests/benchmarks/bench_store_scale.py --sizes 100000,1000000 \\
        --before /work/main --before-sizes 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
N_NUMERIC, N_CATEGORICAL = 20, 5
WORDS = [f"w{i:03d}" for i in range(40)]
DAY0 = 1_767_225_600.0  # 2026-01-01 UTC

CLI = "import sys; from sidecar.cli import main; sys.exit(main(sys.argv[1:]))"

STAGES = r"""
import json, sys, time, resource
clock = time.process_time  # CPU seconds: the machine is shared, wall time is not this process's
t0 = clock()
import sidecar
from sidecar.recording import open_store
bundle = sidecar.load(sys.argv[1])
t1 = clock()
store = open_store(sys.argv[2], create=False)
scan = None
try:
    from sidecar._window import load_window
    from sidecar._analysis import reference_inputs
    s = clock()
    table = store.read_window()
    scan = clock() - s
    del table
except ImportError:  # the code before the columnar path
    from sidecar._monitor import load_window, model_family, reference_inputs
t2 = clock()
window = load_window(bundle, store)
t3 = clock()
from sidecar.monitoring._diagnosis import diagnose
ref = reference_inputs(bundle)
try:
    from adapters import adapter_for
    rule = {"adapter_for": adapter_for(bundle)}
except ImportError:  # the code before the one model-family rule
    rule = {"model_family": model_family(bundle)}
result = diagnose(plan=bundle.plan, reference=ref, window=window, **rule)
t4 = clock()
print(json.dumps({"load_bundle_cpu_s": t1 - t0, "scan_cpu_s": scan, "load_window_cpu_s": t3 - t2,
    "in_memory_diagnosis_cpu_s": t4 - t3, "rows": window.n, "verdict": result.verdict,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_data(n: int, out: Path, seed: int = 1) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for j in range(N_NUMERIC):
        cols[f"x{j}"] = rng.normal(0.3 * (j % 3 == 0), 1.0 + 0.1 * (j % 4), n)
    weights = np.linspace(1, 3, len(WORDS))
    for j in range(N_CATEGORICAL):
        idx = rng.choice(len(WORDS), size=n, p=weights / weights.sum())
        cols[f"c{j}"] = pa.DictionaryArray.from_arrays(
            pa.array(idx.astype(np.int32)), pa.array(WORDS)
        ).dictionary_decode()
    logit = cols["x0"] - 0.5 * cols["x1"] + 0.3 * cols["x2"]
    cols["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    cols["ts"] = DAY0 + np.sort(rng.uniform(0, 86_400, n))
    pq.write_table(pa.table(cols), out)


def make_bundle(out: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    import sidecar

    rng = np.random.default_rng(0)
    n = 5000
    records = [
        {
            **{f"x{j}": float(rng.normal(0, 1.0 + 0.1 * (j % 4))) for j in range(N_NUMERIC)},
            **{f"c{j}": str(rng.choice(WORDS)) for j in range(N_CATEGORICAL)},
        }
        for _ in range(n)
    ]
    y = np.array([int(r["x0"] - 0.5 * r["x1"] + 0.3 * r["x2"] > 0) for r in records])
    pre = sidecar.TabularPreprocessor(
        columns=[
            *(sidecar.NumericColumn(name=f"x{j}") for j in range(N_NUMERIC)),
            *(sidecar.CategoricalColumn(name=f"c{j}") for j in range(N_CATEGORICAL)),
        ]
    ).fit(records)
    model = LogisticRegression(max_iter=500).fit(pre.transform(records), y)
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(records[:4000], y[:4000]),
        reference=(records[4000:], y[4000:]),
    )
    bundle.save(out)


def timed(
    argv: list[str], code: Path, *, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> dict[str, Any]:
    """Run ``argv`` with ``code`` first on the path; its wall time, peak RSS and output."""
    full = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "PEAK_KB=%M CPU_S=%U+%S", *argv],
        env=full,
        # `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH:
        # run in `code`, or the tree the benchmark was started from is what gets measured.
        cwd=code,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    peak = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_KB=")]
    if proc.returncode not in ok:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    kb, cpu = peak[-1].split()
    user, system = cpu.removeprefix("CPU_S=").split("+")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(float(user) + float(system), 2),
        "peak_mb": round(int(kb.removeprefix("PEAK_KB=")) / 1024),
        "stdout": proc.stdout,
    }


def fresh_url(kind: str, tmp: Path, tag: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'{tag}.db'}"
    sys.path.insert(0, str(ROOT))
    from tests.stores import pg_admin, pg_url

    schema = f"bench_{tag}"
    with pg_admin() as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.execute(f'CREATE SCHEMA "{schema}"')
    return pg_url(schema)


def drop_pg(tag: str) -> None:
    from tests.stores import pg_admin

    with pg_admin() as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "bench_{tag}" CASCADE')


def replayed(code: Path, n: int, kind: str, data: Path, bundle: Path, tmp: Path) -> dict[str, Any]:
    """A fresh store of ``kind`` with ``n`` records written by ``sidecar replay`` of ``code``."""
    tag = f"{code.name}_{kind}_{n}".replace("-", "_")
    url = fresh_url(kind, tmp, tag)
    sidecar = [sys.executable, "-c", CLI]
    rep = timed(
        [*sidecar, "replay", str(bundle), "--data", str(data), "--store", url,
         "--label-column", "y", "--timestamp-column", "ts", "--batch-size", "20000", "--json"],
        code,
    )  # fmt: skip
    return {
        "tag": tag,
        "url": url,
        "replay_s": rep["wall_s"],
        "replay_cpu_s": rep["cpu_s"],
        "replay_records_per_s": round(n / rep["wall_s"]),
        "replay_records_per_cpu_s": round(n / rep["cpu_s"]),
        "replay_peak_mb": rep["peak_mb"],
    }


def measured(code: Path, n: int, kind: str, store: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """One round of ``sidecar diagnose``, the stage breakdown and ``sidecar export``."""
    url, tag = store["url"], store["tag"]
    bundle = tmp / "bundle"
    sidecar = [sys.executable, "-c", CLI]
    out: dict[str, Any] = {"code": str(code), "store": kind, "records": n}
    out.update({k: v for k, v in store.items() if k.startswith("replay")})
    diag = timed(  # diagnose exits 1 on an alarm
        [*sidecar, "diagnose", str(bundle), "--store", url, "--json"], code, ok=(0, 1)
    )
    out["diagnose_s"] = diag["wall_s"]
    out["diagnose_cpu_s"] = diag["cpu_s"]
    out["diagnose_peak_mb"] = diag["peak_mb"]
    out["verdict"] = json.loads(diag["stdout"])["verdict"]
    stages = timed([sys.executable, "-c", STAGES, str(bundle), url], code)
    out["stages_cpu_s"] = stages["cpu_s"]
    out["stages"] = {
        k: (round(v, 3) if isinstance(v, float) else v)
        for k, v in json.loads(stages["stdout"]).items()
    }
    rows = out["stages"]["rows"]
    st = out["stages"]
    out["window_read_rows_per_cpu_s"] = round(rows / max(st["load_window_cpu_s"], 1e-9))
    if st.get("scan_cpu_s"):
        out["scan_rows_per_cpu_s"] = round(rows / st["scan_cpu_s"])
    out["diagnose_cpu_over_in_memory_cpu"] = round(
        out["diagnose_cpu_s"] / st["in_memory_diagnosis_cpu_s"], 2
    )
    target = tmp / f"{tag}.export"
    shutil.rmtree(target, ignore_errors=True)
    exp = timed([*sidecar, "export", "--store", url, "--out", str(target)], code)
    out["export_s"] = exp["wall_s"]
    out["export_cpu_s"] = exp["cpu_s"]
    out["export_rows_per_s"] = round(n / exp["wall_s"])
    out["export_rows_per_cpu_s"] = round(n / exp["cpu_s"])
    out["export_peak_mb"] = exp["peak_mb"]
    out["export_readable"] = _read_back(target, n)
    shutil.rmtree(target, ignore_errors=True)
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' medians, figure by figure (stages too); each run's CPU seconds kept beside."""
    first = runs[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if key == "stages":
            out[key] = median_of([r["stages"] for r in runs])
        elif all(r[key] == value for r in runs):
            out[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = round(statistics.median(r[key] for r in runs), 3)
        else:
            out[key] = value
    if "diagnose_cpu_s" in first:
        out["runs"] = len(runs)
        out["each_run_cpu_s"] = {
            k: [r[k] for r in runs] for k in ("diagnose_cpu_s", "export_cpu_s", "stages_cpu_s")
        }
        out["each_run_load_window_cpu_s"] = [r["stages"]["load_window_cpu_s"] for r in runs]
    return out


def _read_back(path: Path, n: int) -> bool:
    """Whether DuckDB (or pyarrow) reads the export back with all ``n`` rows."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover
        return False
    glob = f"{path}/**/*.parquet" if path.is_dir() else str(path)
    got = duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{glob}', hive_partitioning=true)")
    rows = got.fetchall()
    return bool(rows) and int(rows[0][0]) == n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--before", default=None, help="a checkout of the code to compare with")
    ap.add_argument("--before-sizes", default="100000")
    ap.add_argument("--before-stores", default="sqlite,postgresql")
    ap.add_argument(
        "--repeat", type=int, default=1, help="rounds of diagnose/stages/export (medians)"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-scale-"))
    bundle = tmp / "bundle"
    make_bundle(bundle)
    results: dict[str, Any] = {"after": [], "before": []}
    for n in [int(s) for s in args.sizes.split(",")]:
        data = tmp / f"records-{n}.parquet"
        make_data(n, data)
        for kind in args.stores.split(","):
            codes = [("after", ROOT)]
            if (
                args.before
                and str(n) in args.before_sizes.split(",")
                and kind in args.before_stores.split(",")
            ):
                codes.append(("before", Path(args.before)))
            stores = {side: replayed(code, n, kind, data, bundle, tmp) for side, code in codes}
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side, _ in codes}
            for i in range(args.repeat):  # old and new take turns, the first alternating
                for side, code in codes if i % 2 == 0 else codes[::-1]:
                    runs[side].append(measured(code, n, kind, stores[side], tmp))
                    print(json.dumps(runs[side][-1]), file=sys.stderr, flush=True)
            for side, _ in codes:
                results[side].append(median_of(runs[side]))
            if kind == "postgresql":
                for store in stores.values():
                    drop_pg(store["tag"])
    results["comparison"] = _compare(results)
    results["growth"] = _growth(results["after"])
    results["targets"] = {
        "diagnose_cpu_over_in_memory_cpu_max": 3.0,
        "speedup_min": 10.0,
        "peak_mb_max": 2048,
        "replay_records_per_s_min": 50_000,
        "export_rows_per_s_min": 500_000,
        "window_read_rows_per_s_min": 1_000_000,
    }
    print(json.dumps(results, indent=2))
    return 0


def _growth(after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per store, how each stage grows with the records (CPU seconds; x: over the smallest)."""
    out = []
    for store in sorted({a["store"] for a in after}):
        runs = sorted((a for a in after if a["store"] == store), key=lambda a: a["records"])
        first = runs[0]
        for a in runs:
            x = a["records"] / first["records"]
            out.append(
                {
                    "store": store,
                    "records": a["records"],
                    "records_x": round(x, 1),
                    "diagnose_cpu_s": a["diagnose_cpu_s"],
                    "diagnose_cpu_x": round(a["diagnose_cpu_s"] / first["diagnose_cpu_s"], 1),
                    "scan_cpu_s": a["stages"].get("scan_cpu_s"),
                    "load_window_cpu_s": a["stages"]["load_window_cpu_s"],
                    "in_memory_diagnosis_cpu_s": a["stages"]["in_memory_diagnosis_cpu_s"],
                    "export_cpu_s": a["export_cpu_s"],
                    "diagnose_peak_mb": a["diagnose_peak_mb"],
                }
            )
    return out


def _compare(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for b in results["before"]:
        for a in results["after"]:
            if (a["store"], a["records"]) == (b["store"], b["records"]):
                out.append(
                    {
                        "store": a["store"],
                        "records": a["records"],
                        "diagnose_speedup": round(b["diagnose_s"] / a["diagnose_s"], 1),
                        "diagnose_cpu_speedup": round(b["diagnose_cpu_s"] / a["diagnose_cpu_s"], 1),
                        "replay_speedup": round(b["replay_s"] / a["replay_s"], 1),
                        "export_speedup": round(b["export_s"] / a["export_s"], 1),
                        "window_read_cpu_speedup": round(
                            b["stages"]["load_window_cpu_s"] / a["stages"]["load_window_cpu_s"], 1
                        ),
                        "export_cpu_speedup": round(b["export_cpu_s"] / a["export_cpu_s"], 1),
                        "diagnose_cpu_s": [b["diagnose_cpu_s"], a["diagnose_cpu_s"]],
                        "export_cpu_s": [b["export_cpu_s"], a["export_cpu_s"]],
                        "export_rows_per_cpu_s": [
                            b["export_rows_per_cpu_s"],
                            a["export_rows_per_cpu_s"],
                        ],
                        "window_read_rows_per_cpu_s": [
                            b["window_read_rows_per_cpu_s"],
                            a["window_read_rows_per_cpu_s"],
                        ],
                        "diagnose_peak_mb": [b["diagnose_peak_mb"], a["diagnose_peak_mb"]],
                        "stages_before_after": {
                            k: [b["stages"].get(k), a["stages"].get(k)]
                            for k in (
                                "load_bundle_cpu_s",
                                "scan_cpu_s",
                                "load_window_cpu_s",
                                "in_memory_diagnosis_cpu_s",
                            )
                        },
                    }
                )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
