"""One lucky post: robust metrics keep a single outlier from raising a false alarm.

A popularity model predicts how many views a post gets (log-normal, heavy
tailed). In the monitored week one post goes viral -- 2,000 times its usual
views. Its single error moves MSE (and even the mean absolute error) by far more
than 10%, which would raise an alarm on a plan built on them; this plan's
primary metric is the median absolute error, and its tests compare absolute
errors winsorised at the reference's 99th percentile, which that one post
barely moves. The diagnosis is healthy, and its outlier evidence shows exactly
what the one post did to MSE.

    python examples/outlier_regression/outlier_regression.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

import sidecar
from sidecar.monitoring import Bounds, MonitoringPlan
from sidecar.recording import open_store

DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TOPICS = ["news", "sport", "music", "tech", "food"]


def posts(n: int, rng: np.random.Generator) -> tuple[list[dict[str, Any]], list[float]]:
    """Posts and their views (in thousands)."""
    records, views = [], []
    for _ in range(n):
        topic = int(rng.integers(0, len(TOPICS)))
        followers = float(rng.gamma(2.0, 5.0))
        hour = float(rng.integers(0, 24))
        length = float(rng.integers(20, 2000))
        mean = 0.5 + 0.3 * topic + 0.08 * followers + 0.4 * np.sin(hour / 24 * 2 * np.pi)
        views.append(round(float(np.exp(mean + rng.normal(0, 0.3))), 3))
        records.append(
            {
                "topic": TOPICS[topic],
                "followers_k": round(followers, 2),
                "hour": hour,
                "length_chars": length,
            }
        )
    return records, views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a new temporary folder)")
    args = parser.parse_args()
    out = Path(args.dir or tempfile.mkdtemp(prefix="sidecar-outlier-"))
    rng = np.random.default_rng(3)

    train, y_train = posts(4000, rng)
    ref, y_ref = posts(1500, rng)
    pre = sidecar.TabularPreprocessor(
        columns=[
            sidecar.CategoricalColumn(name="topic", encoding="onehot"),
            sidecar.NumericColumn(name="followers_k"),
            sidecar.NumericColumn(name="hour", unit="h"),
            sidecar.NumericColumn(name="length_chars"),
        ]
    ).fit(train)
    model = HistGradientBoostingRegressor(max_iter=200, random_state=0)
    model.fit(pre.transform(train), y_train)
    # The plan, declared before monitoring: judge the typical error (median absolute
    # error, outlier-robust), acceptable up to 2,500 views; a change of 500 views matters.
    plan = MonitoringPlan(
        task="regression",
        primary_metric="median_absolute_error",
        secondary_metrics=("mae", "mse", "trimmed_mse", "huber"),
        bounds=Bounds(upper=2.5),
        min_effect=0.5,
    )
    bundle = sidecar.wrap(
        model,
        task="regression",
        preprocessing=pre,
        plan=plan,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="popularity",
    )
    bundle.save(out / "bundle", overwrite=True)
    print("plan:", bundle.plan.primary_metric, "bounds", bundle.plan.bounds.model_dump())

    week, views = posts(1200, rng)
    lucky = int(np.argmax(views))
    views[lucky] = round(views[lucky] * 2000, 3)  # it went viral
    store = open_store(f"sqlite:///{(out / 'records.db').resolve()}")
    ts = [START + 7 * DAY * i / len(week) for i in range(len(week))]
    sidecar.replay(
        bundle,
        week,
        store=store,
        labels=views,
        timestamps=ts,
        label_timestamps=[t + DAY for t in ts],
    )
    result = sidecar.diagnose(bundle, store)
    store.close()

    adv = result.metrics["advanced"]
    ref_adv = result.metrics["advanced_reference"]
    mse_outlier = next(o for o in result.outliers if o.metric == "advanced:mse")
    print(f"verdict: {result.verdict}")
    primary = "median_absolute_error"
    print(
        f"median absolute error  now {adv[primary].value:.3f} vs reference "
        f"{ref_adv[primary].value:.3f}"
    )
    print(f"MAE  now {adv['mae'].value:.3f} vs reference {ref_adv['mae'].value:.3f}")
    print(f"MSE  now {adv['mse'].value:.1f} vs reference {ref_adv['mse'].value:.3f}")
    print(
        f"the largest error alone moves MSE by {mse_outlier.relative_change:+.1%} "
        f"(without it: {mse_outlier.value_without_top_k:.3f})"
    )
    print(
        json.dumps(
            {
                "verdict": result.verdict,
                "mse_moved_by_one_error": mse_outlier.relative_change,
                "median_absolute_error_now": adv[primary].value,
                "median_absolute_error_reference": ref_adv[primary].value,
            }
        )
    )


if __name__ == "__main__":
    main()
