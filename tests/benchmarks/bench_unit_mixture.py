"""Benchmark: the partial-unit-switch check (``unit_mixture``) -- power, false alarms, cost.

Three parts, over seeded simulations (a 5,000-row reference sketch each):

* **power**: a share (15 %, 35 %, 60 %) of a window's values converted --
  kg->lb on N(70, 12) weights, x1000 on Gamma(4, 50) amounts, m->cm on
  N(1.7, 0.1) heights, degC->degF on N(15, 8) temperatures -- in windows of
  500, 2,000 and 20,000 rows: how often the right conversion is named (p <= 0.05
  and the mixture explains the change, share >= 10 %), the mean estimated
  share, and how often its 95 % interval holds the true share;
* **false alarms**: unchanged windows of seven shapes (normal, skewed,
  log-normal, t3, bimodal, counts, zero-inflated) against a 1,000-row reference:
  the rate at which a switch is named, and at which the raw p-value is <= 0.05;
* **cost**: the full diagnosis of ``bench_diagnosis.py`` (1,000,000 current rows,
  20 numeric fields) with the check and with it switched off, alternating,
  medians of ``--runs``; and the fit alone on a million sorted values, clean
  (no smooth-change fit needed) and with 35 % in pounds (the smooth-change fit runs).

    python tests/benchmarks/bench_unit_mixture.py [--seeds 20] [--runs 3] [--current 1000000]

Targets: power >= 0.9 at 35 % and 60 % for every conversion and size; false-alarm
rate <= 0.05 for every shape and size; the check costs <= 5 % of the diagnosis.
Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

Draw = Callable[[np.random.Generator, int], np.ndarray]

SWITCHES: dict[str, tuple[Draw, Callable[[np.ndarray], np.ndarray], str]] = {
    "kg->lb": (lambda r, n: r.normal(70, 12, n), lambda x: x * 2.20462262, "kg->lb"),
    "x1000": (lambda r, n: r.gamma(4.0, 50.0, n), lambda x: x * 1000, "kg->g"),
    "m->cm": (lambda r, n: r.normal(1.7, 0.1, n), lambda x: x * 100, "m->cm"),
    "degC->degF": (lambda r, n: r.normal(15, 8, n), lambda x: 1.8 * x + 32, "degC->degF"),
}
CLEAN: dict[str, Draw] = {
    "normal": lambda r, n: r.normal(70, 12, n),
    "skewed_gamma": lambda r, n: r.gamma(2.0, 50.0, n),
    "heavy_lognormal": lambda r, n: r.lognormal(3.0, 1.2, n),
    "heavy_t3": lambda r, n: 20 + 5 * r.standard_t(3, n),
    "bimodal": lambda r, n: np.where(r.random(n) < 0.4, r.normal(30, 4, n), r.normal(66, 6, n)),
    "counts": lambda r, n: r.poisson(20, n).astype(float),
    "zero_inflated": lambda r, n: np.where(r.random(n) < 0.3, 0.0, r.gamma(2.0, 10.0, n)),
}
SIZES = (500, 2000, 20000)
SHARES = (0.15, 0.35, 0.6)
ALPHA, MIN_SHARE = 0.05, 0.1


def power(seeds: int) -> dict[str, Any]:
    from sidecar.bundle._reference import _numeric_sketch
    from sidecar.monitoring import fit_unit_mixture

    table: dict[str, Any] = {}
    for name, (draw, convert, units) in SWITCHES.items():
        for n in SIZES:
            for share in SHARES:
                named, covered, estimates = 0, 0, []
                for seed in range(seeds):
                    r = np.random.default_rng((seed, n, 1))
                    window = draw(r, n)
                    hit = r.random(n) < share
                    window[hit] = convert(window[hit])
                    fit = fit_unit_mixture(_numeric_sketch(draw(r, 5000)), np.sort(window))
                    if fit is None:
                        continue
                    ok = fit.p_value <= ALPHA and fit.explains(min_share=MIN_SHARE)
                    named += ok and units in fit.units
                    covered += fit.share_low <= hit.mean() <= fit.share_high
                    estimates.append(fit.share)
                table[f"{name} n={n} share={share:.0%}"] = {
                    "named": named / seeds,
                    "mean_share": round(float(np.mean(estimates)), 4),
                    "interval_holds_truth": covered / seeds,
                }
    return table


def false_alarms(seeds: int) -> dict[str, Any]:
    from sidecar.bundle._reference import _numeric_sketch
    from sidecar.monitoring import fit_unit_mixture

    table: dict[str, Any] = {}
    for name, draw in CLEAN.items():
        for n in SIZES:
            named = rejected = 0
            for seed in range(seeds):
                r = np.random.default_rng((seed, n, 2))
                fit = fit_unit_mixture(_numeric_sketch(draw(r, 1000)), np.sort(draw(r, n)))
                if fit is None:
                    continue
                rejected += fit.p_value <= ALPHA
                named += fit.p_value <= ALPHA and fit.explains(min_share=MIN_SHARE)
            table[f"{name} n={n}"] = {"named": named / seeds, "p_below_alpha": rejected / seeds}
    return table


def cost(runs: int, current: int) -> dict[str, Any]:
    import bench_diagnosis as bd

    from sidecar.bundle._reference import _numeric_sketch
    from sidecar.monitoring import (
        ReferenceInputs,
        WindowData,
        default_plan,
        diagnose,
        fit_unit_mixture,
    )

    rng = np.random.default_rng(0)
    ref, cur = bd.make(100_000, rng), bd.make(current, rng, shift=0.02)
    index = {w: i + 1 for i, w in enumerate(bd.WORDS)}
    names = [f"x{j}" for j in range(bd.N_NUMERIC)] + [f"c{j}" for j in range(bd.N_CATEGORICAL)]
    reference = ReferenceInputs(
        task="classification",
        classes=(0, 1),
        y=ref["y"],
        advanced=ref["adv_p"].argmax(1),
        advanced_proba=ref["adv_p"],
        baseline=ref["base_p"].argmax(1),
        baseline_proba=ref["base_p"],
        raw_numeric=ref["numeric"],
        sketches=bd.sketches(ref),
        features=bd.features(ref, index),
        feature_names=tuple(names),
        categorical_fields=tuple(f"c{j}" for j in range(bd.N_CATEGORICAL)),
        monotone_of={f"x{j}": f"x{j}" for j in range(bd.N_NUMERIC)},
    )
    window = WindowData(
        ts=np.sort(rng.uniform(0, 7 * 86400, current)),
        raw_numeric=cur["numeric"],
        raw_categorical=cur["categorical"],
        features=bd.features(cur, index),
        unknown={f"c{j}": 0 for j in range(bd.N_CATEGORICAL)},
        advanced=cur["adv_p"].argmax(1),
        advanced_proba=cur["adv_p"],
        baseline=cur["base_p"].argmax(1),
        baseline_proba=cur["base_p"],
        labels=cur["y"],
        labelled=np.ones(current, dtype=bool),
    )
    plan = default_plan("classification", reference_metric=0.8)
    with_check, without = [], []
    for _ in range(runs):
        start = time.perf_counter()
        diagnose(plan=plan, reference=reference, window=window)
        with_check.append(time.perf_counter() - start)
        with mock.patch("sidecar.monitoring._numeric_health.fit_unit_mixture", return_value=None):
            start = time.perf_counter()
            diagnose(plan=plan, reference=reference, window=window)
            without.append(time.perf_counter() - start)
    columns = [np.sort(v) for v in cur["numeric"].values()]
    start = time.perf_counter()
    for name, col in zip(cur["numeric"], columns, strict=True):
        fit_unit_mixture(reference.sketches[name], col)
    clean_fits = time.perf_counter() - start
    r = np.random.default_rng(1)
    sketch = _numeric_sketch(r.normal(70, 12, 100_000))
    lb = r.normal(70, 12, current)
    lb[r.random(current) < 0.35] *= 2.20462262
    lb.sort()
    start = time.perf_counter()
    fit = fit_unit_mixture(sketch, lb)
    faulty_fit = time.perf_counter() - start
    assert fit is not None and fit.units == ("kg->lb",)
    median_with, median_without = statistics.median(with_check), statistics.median(without)
    return {
        "current_rows": current,
        "numeric_fields": bd.N_NUMERIC,
        "diagnosis_s_with_check": round(median_with, 3),
        "diagnosis_s_without_check": round(median_without, 3),
        "fits_alone_s_20_clean_fields": round(clean_fits, 4),
        "fit_alone_s_one_faulty_field": round(faulty_fit, 4),
        "check_share_of_diagnosis": round(clean_fits / median_with, 4),
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--current", type=int, default=1_000_000)
    args = parser.parse_args()
    table, alarms = power(args.seeds), false_alarms(args.seeds)
    spent = cost(args.runs, args.current)
    missed = [k for k, v in table.items() if "share=15%" not in k and v["named"] < 0.9]
    missed += [k for k, v in alarms.items() if v["named"] > ALPHA]
    if spent["check_share_of_diagnosis"] > 0.05:
        missed.append("cost")
    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "power": table,
                "false_alarms": alarms,
                "cost": spent,
                "targets": {
                    "power_at_35_and_60_percent": ">= 0.9",
                    "false_alarm_rate": f"<= {ALPHA}",
                    "check_share_of_diagnosis": "<= 0.05",
                },
                "missed": missed,
            },
            indent=1,
        )
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
