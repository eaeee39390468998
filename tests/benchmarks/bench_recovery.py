"""Benchmark: how much of a full retrain's recovery each strategy gets, on river's data, and when.

Two data sets, both from river (no download):

* **Agrawal** (classification): the champion learns concept 0 on ``--train``
  rows; the store then holds ``--before`` labelled rows of concept 0 followed
  by ``--after`` rows of concept 2 (a sudden change); the test set is fresh
  concept-2 rows.
* **TrumpApproval** (regression, 1,001 days of polls): the champion learns the
  first 500 days, the store holds days 500-899, the test set is the last 101.
  Its ``ordinal_date`` column trends by construction, so the diagnosis calls
  it a preprocessing fault (values beyond the reference's range); it is
  dropped, and the model learns from the polls alone.

For each, two models: a random forest (``replace-members``) and a histogram
gradient boosting model (the new cheap ``refit``, against ``regularize``).
Each strategy runs through ``sidecar.retrain`` twice: on the **auto** window
(rows from the diagnosed change on, when the change is significant and leaves
at least 50 labelled rows -- what ``--strategy auto`` does) and on **all** rows.

*Recovery share* = (test metric of the candidate - the champion's) / (that of a
full retrain - the champion's), where the full retrain is a clone of the
champion fitted on the post-change rows of the store (for TrumpApproval all
its rows). *Time share* = the adapter's ``train_time_s`` / the full retrain's
fit time. Medians over ``--seeds`` seeds (model seeds; Agrawal also redraws).

Targets (issue 13): the auto window recovers at least 0.9 of a full retrain
for every model and data set. Prints one JSON object; exits 1 if missed.

    python tests/benchmarks/bench_recovery.py [--seeds 3] [--train 5000] [--before 1000]
        [--after 2000] [--trees 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import adapters
import sidecar
from sidecar.recording import open_store

Rows = list[dict[str, float]]


def agrawal(function: int, n: int, seed: int) -> tuple[Rows, list[int]]:
    from river.datasets import synth

    rows = list(synth.Agrawal(classification_function=function, seed=seed).take(n))
    return [{k: float(v) for k, v in x.items()} for x, _ in rows], [int(y) for _, y in rows]


def trump() -> tuple[Rows, list[float]]:
    from river import datasets

    rows = list(datasets.TrumpApproval())
    x = [{k: float(v) for k, v in r.items() if k != "ordinal_date"} for r, _ in rows]
    return x, [float(y) for _, y in rows]


def model(kind: str, task: str, trees: int, seed: int) -> Any:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    if kind == "forest":
        cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
        return cls(n_estimators=trees, min_samples_leaf=2, random_state=seed)
    hgb = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    return hgb(max_iter=100, random_state=seed)


def metric(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy (higher is better) or minus the MAE, so that higher is better for both."""
    if task == "classification":
        return float(np.mean(pred == y))
    return -float(np.mean(np.abs(np.asarray(pred, float) - y)))


def world(name: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Champion data, the store's rows (time order) with the change index, and a test set."""
    if name == "agrawal":
        train = agrawal(0, args.train, 100 + seed)
        before = agrawal(0, args.before, 200 + seed)
        after = agrawal(2, args.after, 300 + seed)
        test = agrawal(2, 3000, 400 + seed)
        rows = (before[0] + after[0], before[1] + after[1])
        return {"task": "classification", "train": train, "rows": rows, "change": args.before,
                "test": test}  # fmt: skip
    x, y = trump()
    return {"task": "regression", "train": (x[:500], y[:500]), "rows": (x[500:900], y[500:900]),
            "change": 0, "test": (x[900:], y[900:])}  # fmt: skip


def one(name: str, kind: str, args: argparse.Namespace, seed: int, tmp: Path) -> dict[str, Any]:
    from sklearn.base import clone

    w = world(name, args, seed)
    task = w["task"]
    (xt, yt), (xs, ys), (xe, ye) = w["train"], w["rows"], w["test"]
    pre = sidecar.TabularPreprocessor(columns=[sidecar.NumericColumn(name=k) for k in xt[0]])
    pre.fit(xt)
    champion_model = model(kind, task, args.trees, seed).fit(pre.transform(xt), yt)
    bundle = sidecar.wrap(champion_model, task=task, preprocessing=pre, train=(xt, yt),
                          reference=(xt[-1000:], yt[-1000:]), name=f"{name}-{kind}")  # fmt: skip
    url = f"sqlite:///{tmp / f'{name}-{kind}-{seed}.db'}"
    store = open_store(url)
    sidecar.replay(
        bundle, xs, store=store, labels=ys, timestamps=[60.0 * i for i in range(len(xs))]
    )
    store.close()
    X_test, y_test = pre.transform(xe), np.asarray(ye)
    champion = metric(task, y_test, champion_model.predict(X_test))
    full = clone(champion_model)
    start = time.perf_counter()
    full.fit(pre.transform(xs[w["change"] :]), ys[w["change"] :])
    full_s = time.perf_counter() - start
    recovered_full = metric(task, y_test, full.predict(X_test)) - champion

    diagnosis = sidecar.diagnose(bundle, url)
    change = diagnosis.change
    auto_since = None
    if change is not None and change.significant and change.n_after >= 50:
        auto_since = change.ts
    strategies = [adapters.strategy_for("concept_drift", adapters.model_family(bundle))]
    if kind == "hgb":
        strategies.append("regularize")
    out: dict[str, Any] = {"verdict": diagnosis.verdict, "full_fit_s": full_s,
                           "change_found_at": None if change is None else change.index,
                           "change_p": None if change is None else change.p_value}  # fmt: skip
    for strategy in strategies:
        for window, since in (("auto", auto_since), ("all", None)):
            result = sidecar.retrain(
                bundle, url, strategy=strategy, since=since, force=True, seed=seed
            )
            pred = result.candidate.advanced.estimator.predict(X_test)
            gained = metric(task, y_test, pred) - champion
            key = f"{strategy}/{window}"
            out[f"{key}/recovery"] = gained / recovered_full if recovered_full > 0 else float("nan")
            out[f"{key}/time_share"] = result.report.train_time_s / full_s
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--before", type=int, default=1000)
    parser.add_argument("--after", type=int, default=2000)
    parser.add_argument("--trees", type=int, default=60)
    parser.add_argument("--only", choices=["agrawal", "trump"], help="one data set")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    targets: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [args.only] if args.only else ["agrawal", "trump"]:
            for kind in ("forest", "hgb"):
                runs = [one(name, kind, args, seed, Path(tmp)) for seed in range(args.seeds)]
                keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
                med = {k: round(float(statistics.median(r[k] for r in runs)), 4) for k in keys}
                med["verdicts"] = [r["verdict"] for r in runs]
                med["change_found_at"] = [r["change_found_at"] for r in runs]
                results[f"{name}/{kind}"] = med
                family = "ensemble" if kind == "forest" else "boosting"
                first = adapters.strategy_for("concept_drift", family)
                targets[f"{name}/{kind}: {first}/auto recovery >= 0.9"] = bool(
                    med[f"{first}/auto/recovery"] >= 0.9
                )
    out = {
        "benchmark": "recovery and time share of each strategy against a full retrain on "
        "post-change data (river Agrawal 0->2, river TrumpApproval without ordinal_date)",
        "setup": vars(args),
        "median_over_seeds": results,
        "targets": targets,
        "targets_met": all(targets.values()),
    }
    print(json.dumps(out, indent=2))
    return 0 if out["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
