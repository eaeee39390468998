"""Benchmark: recorder throughput into SQLite and into PostgreSQL.

Rows shaped like the quickstart's (30 raw fields, a classifier's predictions
and probabilities from both models) are enqueued in requests of ``--request``
rows, as the service's shadow thread does, and timed from the first enqueue
until the recorder has committed them all. Side by side, in the same run, the
same rows go through the raw driver in one transaction (the ceiling the
recorder's batching works against). Medians over ``--runs`` runs.

    python tests/benchmarks/bench_recorder.py [--rows 200000] [--runs 3]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

Targets: >= 50,000 records/s into SQLite, >= 20,000 into PostgreSQL.
Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sidecar.recording import Recorder, open_store
from sidecar.recording._records import dumps

TARGETS = {"sqlite": 50_000.0, "postgresql": 20_000.0}


def make_rows(n: int) -> list[tuple[Any, ...]]:
    from sidecar._quickstart import load_quickstart_data

    train, _, _, _ = load_quickstart_data()
    raws = [dumps(r) for r in train[:100]]
    now = time.time()
    prefix = uuid.uuid4().hex
    return [
        (
            f"{prefix}-{i}",
            now + i * 1e-3,
            "b1",
            "p1",
            "a1",
            "l1",
            None,
            raws[i % 100],
            '"benign"',
            "[0.9,0.1]",
            '"benign"',
            "[0.8,0.2]",
            None,
            None,
            1.2,
            0.1,
            None,
            None,
        )
        for i in range(n)
    ]


def through_recorder(url: str, rows: list[tuple[Any, ...]], request: int) -> dict[str, float]:
    store = open_store(url)
    recorder = Recorder(store, max_queue=len(rows) + 1)
    start = time.perf_counter()
    for lo in range(0, len(rows), request):
        recorder.enqueue(rows[lo : lo + request])
    enqueue_s = time.perf_counter() - start
    assert recorder.flush(timeout=600)
    seconds = time.perf_counter() - start
    batches = recorder.counters.batches
    assert recorder.close()
    assert recorder.counters.dropped == 0
    assert store.count()["predictions"] == len(rows), store.count()
    store.close()
    return {
        "records_per_s": len(rows) / seconds,
        "batches": batches,
        "enqueue_us_per_request": enqueue_s / (len(rows) / request) * 1e6,
    }


def through_driver(url: str, rows: list[tuple[Any, ...]]) -> float:
    """The raw driver, one transaction, no recorder: the ceiling."""
    store = open_store(url)
    start = time.perf_counter()
    store.write_predictions(rows, None)
    seconds = time.perf_counter() - start
    store.close()
    return len(rows) / seconds


def postgres_schema(base: str) -> tuple[str, Any]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(base, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", (conn, schema)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--request", type=int, default=10, help="rows per enqueue (one request)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "rows": args.rows,
        "runs": args.runs,
        "rows_per_request": args.request,
    }
    ok = True
    for kind in ("sqlite", "postgresql"):
        recorder_runs, driver_runs, batches, enqueue = [], [], [], []
        for _ in range(args.runs):
            rows = make_rows(args.rows)
            if kind == "sqlite":
                tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
                url, url2, cleanup = (f"sqlite:///{tmp}/a.db", f"sqlite:///{tmp}/b.db", None)
            else:
                url, cleanup = postgres_schema(args.postgres)
                url2, cleanup2 = postgres_schema(args.postgres)
            r = through_recorder(url, rows, args.request)
            recorder_runs.append(r["records_per_s"])
            batches.append(r["batches"])
            enqueue.append(r["enqueue_us_per_request"])
            driver_runs.append(through_driver(url2, make_rows(args.rows)))
            if kind == "postgresql":
                for conn, schema in (cleanup, cleanup2):
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
                    conn.close()
        median = statistics.median(recorder_runs)
        results[kind] = {
            "recorder_records_per_s": round(median),
            "recorder_runs": [round(x) for x in recorder_runs],
            "batch_commits": statistics.median(batches),
            "enqueue_us_per_request": round(statistics.median(enqueue), 2),
            "driver_one_transaction_records_per_s": round(statistics.median(driver_runs)),
            "recorder_vs_driver": round(median / statistics.median(driver_runs), 3),
            "target_records_per_s": TARGETS[kind],
            "ok": median >= TARGETS[kind],
        }
        ok = ok and median >= TARGETS[kind]
    results["all_targets_met"] = ok
    print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
