"""Benchmark: the full diagnosis on 1,000,000 current rows against a 100,000-row reference.

20 numeric and 5 categorical features, a labelled binary classifier's
predictions (advanced and baseline) -- all arrays already in memory. In the
same run, the comparison: plain ``scipy.stats.ks_2samp`` on the 20 numeric
columns plus ``chi2_contingency`` on the 5 categorical ones (counting their
categories with ``collections.Counter``), which is only the drift part of what
the diagnosis does. Reading a store is timed separately: the same kind of rows
replayed into SQLite, then streamed back in chunks by ``load_window``.

    python tests/benchmarks/bench_diagnosis.py [--current 1000000] [--reference 100000]
        [--runs 3] [--store-rows 200000]

Targets: the whole diagnosis takes at most the scipy loop's time (median of
``--runs``), and peak memory stays under 2 GB. Prints one JSON object; exits 1
if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections import Counter
from typing import Any

import numpy as np

N_NUMERIC, N_CATEGORICAL = 20, 5
WORDS = [f"w{i:03d}" for i in range(40)]


def make(n: int, rng: np.random.Generator, shift: float = 0.0) -> dict[str, Any]:
    numeric = {
        f"x{j}": rng.normal(shift * (j % 3 == 0), 1.0 + 0.1 * (j % 4), n) for j in range(N_NUMERIC)
    }
    weights = np.linspace(1, 3, len(WORDS))
    weights /= weights.sum()
    categorical = {
        f"c{j}": list(rng.choice(WORDS, size=n, p=weights)) for j in range(N_CATEGORICAL)
    }
    logit = numeric["x0"] - 0.5 * numeric["x1"] + 0.3 * numeric["x2"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    p_adv = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.8, n))))
    p_base = 1 / (1 + np.exp(-(0.8 * logit + rng.normal(0, 1.0, n))))
    return {
        "numeric": numeric,
        "categorical": categorical,
        "y": y,
        "adv_p": np.column_stack([1 - p_adv, p_adv]),
        "base_p": np.column_stack([1 - p_base, p_base]),
    }


def sketches(data: dict[str, Any]) -> dict[str, Any]:
    from sidecar.bundle._reference import _categorical_sketch, _numeric_sketch

    out: dict[str, Any] = {k: _numeric_sketch(v) for k, v in data["numeric"].items()}
    n = len(data["y"])
    out.update({k: _categorical_sketch(v, 0, n) for k, v in data["categorical"].items()})
    return out


def features(data: dict[str, Any], index: dict[str, int]) -> np.ndarray:
    cols = [data["numeric"][f"x{j}"] for j in range(N_NUMERIC)]
    cols += [
        np.fromiter((index.get(v, 0) for v in data["categorical"][f"c{j}"]), np.float64)
        for j in range(N_CATEGORICAL)
    ]
    return np.column_stack(cols)


def scipy_loop(ref: dict[str, Any], cur: dict[str, Any]) -> float:
    from scipy.stats import chi2_contingency, ks_2samp

    start = time.perf_counter()
    for name, values in cur["numeric"].items():
        ks_2samp(ref["numeric"][name], values)
    for name, values in cur["categorical"].items():
        a, b = Counter(ref["categorical"][name]), Counter(values)
        cats = sorted(set(a) | set(b))
        chi2_contingency(np.array([[a[c] for c in cats], [b[c] for c in cats]]), correction=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--current", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store-rows", type=int, default=200_000)
    args = parser.parse_args()

    from sidecar.monitoring import ReferenceInputs, WindowData, default_plan, diagnose

    rng = np.random.default_rng(0)
    ref = make(args.reference, rng)
    cur = make(args.current, rng, shift=0.02)
    index = {w: i + 1 for i, w in enumerate(WORDS)}
    classes = (0, 1)
    names = [f"x{j}" for j in range(N_NUMERIC)] + [f"c{j}" for j in range(N_CATEGORICAL)]
    reference = ReferenceInputs(
        task="classification",
        classes=classes,
        y=ref["y"],
        advanced=ref["adv_p"].argmax(1),
        advanced_proba=ref["adv_p"],
        baseline=ref["base_p"].argmax(1),
        baseline_proba=ref["base_p"],
        raw_numeric=ref["numeric"],
        sketches=sketches(ref),
        features=features(ref, index),
        feature_names=tuple(names),
        categorical_fields=tuple(f"c{j}" for j in range(5)),
        monotone_of={f"x{j}": f"x{j}" for j in range(N_NUMERIC)},
    )
    n = args.current
    window = WindowData(
        ts=np.sort(rng.uniform(0, 7 * 86400, n)),
        raw_numeric=cur["numeric"],
        raw_categorical=cur["categorical"],
        features=features(cur, index),
        unknown={f"c{j}": 0 for j in range(N_CATEGORICAL)},
        advanced=cur["adv_p"].argmax(1),
        advanced_proba=cur["adv_p"],
        baseline=cur["base_p"].argmax(1),
        baseline_proba=cur["base_p"],
        labels=cur["y"],
        labelled=np.ones(n, dtype=bool),
    )
    plan = default_plan("classification", reference_metric=0.8)

    ours, theirs, verdicts = [], [], []
    for _ in range(args.runs):
        theirs.append(scipy_loop(ref, cur))
        start = time.perf_counter()
        result = diagnose(plan=plan, reference=reference, window=window)
        ours.append(time.perf_counter() - start)
        verdicts.append(result.verdict)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    store = store_read(args.store_rows)
    ratio = statistics.median(ours) / statistics.median(theirs)
    results = {
        "current_rows": n,
        "reference_rows": args.reference,
        "numeric_features": N_NUMERIC,
        "categorical_features": N_CATEGORICAL,
        "diagnosis_s": [round(x, 3) for x in ours],
        "scipy_ks_chi2_loop_s": [round(x, 3) for x in theirs],
        "diagnosis_over_scipy_loop": round(ratio, 3),
        "target_ratio": 1.0,
        "peak_memory_mb": round(peak_mb),
        "target_peak_memory_mb": 2048,
        "verdicts": verdicts,
        "store_read": store,
        "ok": ratio <= 1.0 and peak_mb < 2048,
    }
    print(json.dumps(results, indent=2))
    return 0 if results["ok"] else 1


def store_read(rows: int) -> dict[str, Any]:
    """Replay ``rows`` records into SQLite, then time streaming them back with load_window."""
    import tempfile
    from pathlib import Path

    import sidecar
    from sidecar._window import load_window
    from sidecar.recording import open_store

    rng = np.random.default_rng(1)
    data = make(max(rows, 2000), rng)
    records = [
        {
            **{k: float(v[i]) for k, v in data["numeric"].items()},
            **{k: v[i] for k, v in data["categorical"].items()},
        }
        for i in range(rows)
    ]
    pre = sidecar.TabularPreprocessor(
        columns=[
            *(sidecar.NumericColumn(name=f"x{j}") for j in range(N_NUMERIC)),
            *(sidecar.CategoricalColumn(name=f"c{j}") for j in range(N_CATEGORICAL)),
        ]
    ).fit(records[:2000])
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(pre.transform(records[:2000]), data["y"][:2000])
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(records[:2000], data["y"][:2000]),
        reference=(records[:1000], data["y"][:1000]),
    )
    tmp = Path(tempfile.mkdtemp(prefix="sidecar-bench-diag-"))
    store = open_store(f"sqlite:///{tmp}/records.db")
    start = time.perf_counter()
    sidecar.replay(
        bundle,
        records,
        store=store,
        labels=data["y"][:rows].tolist(),
        timestamps=np.linspace(0, 86400, rows).tolist(),
        batch_size=5000,
    )
    write_s = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    window = load_window(bundle, store)
    read_s = time.perf_counter() - start
    store.close()
    return {
        "rows": window.n,
        "replay_s": round(write_s, 2),
        "load_window_s": round(read_s, 2),
        "rows_per_s": round(window.n / read_s),
        "chunk_size": 50_000,
        "peak_memory_mb_before_read": round(before),
    }


if __name__ == "__main__":
    raise SystemExit(main())
