"""Benchmark: how often the default plan's verdicts are wrong or "wait", before and after issue 10.

Seeded simulations straight into ``diagnose`` (arrays, no store), the default
plan as a bundle would get it (its secondary metrics dropped: they decide
nothing and their bootstraps cost most of the time):

- a classifier at 90 % accuracy, a 2,000-record reference, 1,500 labels a day;
- a regressor with N(0, 0.55) errors, a 1,500-record reference, 3,000 labels a day.

Figures, per code version:

- ``false_alarm_rate``: share of unchanged-model days with an alarm verdict
  (``overfitting``, ``data_drift``, ``concept_drift``, ``preprocessing_fault``);
- ``insufficient_rate``: share of those days answered ``insufficient_data``;
- ``labels_to_verdict``: for a classifier whose accuracy fell by 1x, 2x and 5x the
  plan's ``min_effect`` (0.025), the fewest labels (on a grid) at which at least
  80 % of runs get a definite verdict, and the verdict most of them get.

The "before" code is ``git archive``'d from ``--before`` (default: c438dbe, the
commit issue 10 was filed against) into a temporary folder and run there.

    python tests/benchmarks/bench_verdicts.py [--days 40] [--runs 10] [--before c438dbe]

Targets: after, false alarms <= alpha (0.05), insufficient_data on a typical
healthy day <= 20 %, and a 5x decline alarmed on at most a few hundred labels.
Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ALARMS = {"overfitting", "data_drift", "concept_drift", "preprocessing_fault"}
GRID = (200, 400, 800, 1500, 3000, 6000)
DAY = 86_400.0


# --------------------------------------------------------------------------- the worker


def _api() -> SimpleNamespace:
    """The names the worker calls, from this tree or from the layout of c438dbe (``--before``).

    The worker runs in both trees; the older one had them in private modules only.
    """
    try:
        from sidecar.bundle._reference import _numeric_sketch
        from sidecar.monitoring import (
            MonitoringPlan,
            ReferenceInputs,
            WindowData,
            default_plan,
            diagnose,
            metric_with_ci,
        )
    except ImportError:  # before the tiers exported them (#14) and the bundle package
        from sidecar._reference import _numeric_sketch  # type: ignore[no-redef]

        from sidecar.monitoring import MonitoringPlan, default_plan  # type: ignore[no-redef]
        from sidecar.monitoring._diagnosis import diagnose  # type: ignore[no-redef]
        from sidecar.monitoring._inputs import (  # type: ignore[no-redef]
            ReferenceInputs,
            WindowData,
        )
        from sidecar.monitoring._metrics import metric_with_ci  # type: ignore[no-redef]
    return SimpleNamespace(
        numeric_sketch=_numeric_sketch,
        MonitoringPlan=MonitoringPlan,
        ReferenceInputs=ReferenceInputs,
        WindowData=WindowData,
        default_plan=default_plan,
        diagnose=diagnose,
        metric_with_ci=metric_with_ci,
    )


def _world(task: str, seed: int, n_ref: int, n: int, acc: float = 0.9) -> tuple[Any, Any, Any]:
    """(plan, reference, window) for one simulated day; the reference depends on ``n_ref`` only."""
    api = _api()

    def draw(rng: np.random.Generator, size: int, acc_now: float) -> dict[str, Any]:
        x = {"x0": rng.normal(0, 1, size), "x1": rng.normal(0, 1, size)}
        if task == "classification":
            y = rng.integers(0, 2, size)
            adv = np.where(rng.random(size) < acc_now, y, 1 - y)
            base = np.where(rng.random(size) < 0.8, y, 1 - y)

            def proba(p: np.ndarray) -> np.ndarray:
                p1 = np.where(p == 1, 0.8, 0.2)
                return np.column_stack([1 - p1, p1])

            return {"x": x, "y": y, "adv": adv, "base": base, "ap": proba(adv), "bp": proba(base)}
        y = rng.normal(5, 2, size)
        return {
            "x": x,
            "y": y,
            "adv": y + rng.normal(0, 0.55, size),
            "base": y + rng.normal(0, 0.8, size),
            "ap": None,
            "bp": None,
        }

    r = draw(np.random.default_rng((7, n_ref)), n_ref, 0.9)
    reference = api.ReferenceInputs(
        task=task,
        classes=(0, 1) if task == "classification" else None,
        y=r["y"],
        advanced=r["adv"],
        advanced_proba=r["ap"],
        baseline=r["base"],
        baseline_proba=r["bp"],
        raw_numeric=r["x"],
        sketches={k: api.numeric_sketch(v) for k, v in r["x"].items()},
        features=np.column_stack(list(r["x"].values())),
        feature_names=tuple(r["x"]),
        categorical_fields=(),
        monotone_of={k: k for k in r["x"]},
    )
    w = draw(np.random.default_rng((seed, n)), n, acc)
    window = api.WindowData(
        ts=np.sort(np.random.default_rng(seed).uniform(0, DAY, n)),
        raw_numeric=w["x"],
        raw_categorical={},
        features=np.column_stack(list(w["x"].values())),
        unknown={},
        advanced=w["adv"],
        advanced_proba=w["ap"],
        baseline=w["base"],
        baseline_proba=w["bp"],
        labels=w["y"],
        labelled=np.ones(n, dtype=bool),
    )
    probe = api.default_plan(task)
    value = api.metric_with_ci(
        probe.primary_metric, r["y"], r["adv"], r["ap"], reference.classes, n_boot=1
    ).value
    plan = api.default_plan(task, reference_metric=value)
    plan = api.MonitoringPlan.from_mapping({**plan.model_dump(), "secondary_metrics": []})
    return plan, reference, window


def _verdict(task: str, seed: int, n_ref: int, n: int, acc: float = 0.9) -> str:
    plan, reference, window = _world(task, seed, n_ref, n, acc)
    return str(_api().diagnose(plan=plan, reference=reference, window=window, seed=seed).verdict)


def worker(days: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for task, n_ref, n in (("classification", 2000, 1500), ("regression", 1500, 3000)):
        counts = Counter(_verdict(task, 1000 + d, n_ref, n) for d in range(days))
        out[task] = {
            "labels_a_day": n,
            "false_alarm_rate": sum(counts[v] for v in ALARMS) / days,
            "insufficient_rate": counts["insufficient_data"] / days,
            "verdicts": dict(counts),
        }
    declines: dict[str, Any] = {}
    for k in (1, 2, 5):
        acc = 0.9 - k * 0.025
        found: dict[str, Any] = {"labels": None, "verdict": None}
        for n in GRID:
            counts = Counter(
                _verdict("classification", 5000 + s, 2000, n, acc) for s in range(runs)
            )
            definite = runs - counts["insufficient_data"]
            if definite >= 0.8 * runs:
                verdict, _ = Counter(
                    {v: c for v, c in counts.items() if v != "insufficient_data"}
                ).most_common(1)[0]
                found = {"labels": n, "verdict": verdict, "verdicts": dict(counts)}
                break
        declines[f"{k}x"] = found
    out["labels_to_verdict"] = declines
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


# --------------------------------------------------------------------------- the driver


def _run(code: Path, days: int, runs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            f"--days={days}",
            f"--runs={runs}",
        ],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", default="c438dbe")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.days, args.runs)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        before = _run(Path(tmp), args.days, args.runs)
    after = _run(ROOT, args.days, args.runs)
    targets = {
        "false_alarm_rate <= 0.05": all(
            after[t]["false_alarm_rate"] <= 0.05 for t in ("classification", "regression")
        ),
        "insufficient_rate <= 0.2": all(
            after[t]["insufficient_rate"] <= 0.2 for t in ("classification", "regression")
        ),
        "5x decline alarmed on <= 800 labels": (after["labels_to_verdict"]["5x"]["labels"] or 1e9)
        <= 800
        and after["labels_to_verdict"]["5x"]["verdict"] in ALARMS,
    }
    print(
        json.dumps(
            {
                "before": {"commit": args.before, **before},
                "after": after,
                "days": args.days,
                "runs_per_grid_point": args.runs,
                "grid": GRID,
                "targets_met": targets,
            },
            indent=2,
        )
    )
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
