"""Benchmark: the wrapper's own overhead, the shadow's cost, and the preprocessor alone.

Everything is measured side by side in one run, on the quickstart's model
(histogram gradient boosting on breast-cancer data, 30 numeric fields), for a
single row and a batch of 1,000, with one OpenMP thread as in serving. Each
figure is the median over several rounds; within a round the contenders run
alternately, so machine noise hits both alike.

    python tests/benchmarks/bench_wrapper.py [--rounds 15]

Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def per_call_seconds(fn: Callable[[], Any], min_time: float = 0.05) -> float:
    """Seconds per call of ``fn``, from enough calls to fill ``min_time``."""
    fn()
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n
        n *= 2


def compare(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each contender, measured alternately over ``rounds``."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(per_call_seconds(contenders[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def pandas_on_path(fn: Callable[[], Any]) -> list[str]:
    """The pandas functions ``fn`` calls (skops imports pandas at load, so look at calls)."""
    profile = cProfile.Profile()
    profile.runcall(fn)
    stats = pstats.Stats(profile)
    return sorted(
        {
            f"{file}:{name}"
            for (file, _, name) in stats.stats  # type: ignore[attr-defined]
            if "pandas" in file
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    import sidecar
    from sidecar._quickstart import build_quickstart, load_quickstart_data

    tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    build_quickstart(tmp / "bundle")
    bundle = sidecar.load(tmp / "bundle")
    pre = bundle.preprocessing
    model = bundle.advanced.estimator  # type: ignore[attr-defined]
    train, _, ref, _ = load_quickstart_data()
    pool = train + ref
    # As the service does after start-up: the long-lived objects leave the collector's view.
    gc.collect()
    gc.freeze()
    rng = np.random.default_rng(0)
    batches = {
        "single_row": [pool[0]],
        "batch_1000": [pool[i] for i in rng.integers(0, len(pool), size=1000)],
    }

    results: dict[str, Any] = {
        "model": "quickstart HistGradientBoostingClassifier, 30 fields",
        "rounds": args.rounds,
        "omp_threads": os.environ["OMP_NUM_THREADS"],
    }
    checks: list[bool] = []
    for label, records in batches.items():
        X = pre.transform(records)
        wrap_times = compare(
            {
                "bundle_predict": lambda r=records: bundle.predict(r),
                "bare_transform_and_predict": lambda r=records: model.predict(pre.transform(r)),
            },
            args.rounds,
        )
        shadow_times = compare(
            {
                "advanced_alone": lambda X=X: bundle.advanced.infer(X),
                "advanced_and_baseline": lambda X=X: (
                    bundle.advanced.infer(X),
                    bundle.baseline.infer(X),
                ),
            },
            args.rounds,
        )
        bare = wrap_times["bare_transform_and_predict"]
        ours = wrap_times["bundle_predict"]
        overhead_us = (ours - bare) * 1e6
        overhead_ratio = ours / bare - 1.0
        adv = shadow_times["advanced_alone"]
        both = shadow_times["advanced_and_baseline"]
        shadow_share = (both - adv) / adv
        entry: dict[str, Any] = {
            "bundle_predict_us": round(ours * 1e6, 2),
            "bare_transform_and_predict_us": round(bare * 1e6, 2),
            "wrapper_overhead_us": round(overhead_us, 2),
            "wrapper_overhead_ratio": round(overhead_ratio, 4),
            "advanced_alone_us": round(adv * 1e6, 2),
            "advanced_and_baseline_us": round(both * 1e6, 2),
            "baseline_share_of_advanced": round(shadow_share, 4),
            "baseline_us_per_row": round(
                per_call_seconds(lambda X=X: bundle.baseline.infer(X)) * 1e6 / len(records), 3
            ),
            "advanced_us_per_row": round(adv * 1e6 / len(records), 3),
        }
        if label == "single_row":
            entry["target_wrapper_overhead_us"] = 50.0
            entry["wrapper_overhead_ok"] = overhead_us <= 50.0
        else:
            entry["target_wrapper_overhead_ratio"] = 0.05
            entry["wrapper_overhead_ok"] = overhead_ratio <= 0.05
        entry["target_baseline_share"] = 0.10
        entry["baseline_share_ok"] = shadow_share <= 0.10
        checks += [entry["wrapper_overhead_ok"], entry["baseline_share_ok"]]
        results[label] = entry

    record = [pool[0]]
    pre_alone = compare({"transform": lambda: pre.transform(record)}, args.rounds)["transform"]
    pandas_calls = pandas_on_path(lambda: (pre.transform(record), bundle.predict(record)))
    no_pandas = not pandas_calls
    results["preprocessor_single_record"] = {
        "transform_us": round(pre_alone * 1e6, 2),
        "target_us": 20.0,
        "ok": pre_alone * 1e6 < 20.0,
        "pandas_calls_on_single_record_path": pandas_calls,
    }
    checks += [pre_alone * 1e6 < 20.0, no_pandas]
    results["all_targets_met"] = all(checks)
    print(json.dumps(results, indent=2))
    return 0 if results["all_targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
