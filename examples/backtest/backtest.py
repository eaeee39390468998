"""Backtest: replay a generated history, with labels that arrive days late, into a store.

A churn-style classifier is trained on the first weeks of a generated
history; the rest is replayed through the serving path (``sidecar.replay``)
with each record's own timestamp and each label's arrival time, exactly as the
live service would have recorded it. Then the store is read back in weekly
windows to show both models' accuracy on the labels that had arrived.

    python examples/backtest/backtest.py [--dir DIR] [--days 84]

The same from a shell: ``sidecar replay BUNDLE --data history.csv --store URL
--label-column churned --timestamp-column ts --label-timestamp-column label_ts``.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

import sidecar
from sidecar.recording import open_store

DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PLANS = ["basic", "plus", "pro", "family"]


def generate(days: int, per_day: int, seed: int = 0) -> list[dict[str, Any]]:
    """A history of customers: usage, tenure, plan; churn depends on all three."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        for _ in range(per_day):
            usage = float(rng.gamma(2.0, 5.0))
            tenure = int(rng.integers(1, 60))
            plan = PLANS[int(rng.integers(0, len(PLANS)))]
            logit = 1.0 - 0.15 * usage - 0.04 * tenure + (0.8 if plan == "basic" else 0.0)
            churned = "yes" if rng.random() < 1 / (1 + np.exp(-logit)) else "no"
            ts = START + day * DAY + float(rng.uniform(0, DAY))
            # Labels come 1-14 days later; 10% never come.
            label_ts = ts + float(rng.uniform(1, 14)) * DAY if rng.random() > 0.1 else None
            rows.append(
                {
                    "usage_hours": round(usage, 2),
                    "tenure_months": tenure,
                    "plan": plan,
                    "churned": churned,
                    "ts": ts,
                    "label_ts": label_ts,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a new temporary folder)")
    parser.add_argument("--days", type=int, default=84)
    parser.add_argument("--per-day", type=int, default=60)
    args = parser.parse_args()
    out = Path(args.dir or tempfile.mkdtemp(prefix="sidecar-backtest-"))
    out.mkdir(parents=True, exist_ok=True)

    history = generate(args.days, args.per_day)
    split = len(history) // 4
    fields = ["usage_hours", "tenure_months", "plan"]
    train = [{k: r[k] for k in fields} for r in history[:split]]
    y_train = [r["churned"] for r in history[:split]]
    ref = [{k: r[k] for k in fields} for r in history[split : split + 500]]
    y_ref = [r["churned"] for r in history[split : split + 500]]

    pre = sidecar.TabularPreprocessor(
        columns=[
            sidecar.NumericColumn(name="usage_hours", unit="h"),
            sidecar.NumericColumn(name="tenure_months"),
            sidecar.CategoricalColumn(name="plan", encoding="onehot"),
        ]
    ).fit(train)
    model = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=0)
    model.fit(pre.transform(train), y_train)
    bundle = sidecar.wrap(
        model,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="churn",
    )
    bundle.save(out / "bundle", overwrite=True)

    # The same history as a file, for `sidecar replay` from a shell.
    later = history[split + 500 :]
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*fields, "churned", "ts", "label_ts"])
        writer.writeheader()
        writer.writerows(later)

    store_url = f"sqlite:///{(out / 'records.db').resolve()}"
    store = open_store(store_url)
    result = sidecar.replay(
        bundle,
        [{k: r[k] for k in fields} for r in later],
        store=store,
        labels=[r["churned"] if r["label_ts"] is not None else None for r in later],
        timestamps=[float(r["ts"]) for r in later],
        label_timestamps=[float(r["label_ts"] or r["ts"]) for r in later],
    )
    print(json.dumps({"bundle": bundle.version, "store": store_url, **result.to_dict()}))

    # Read it back in weekly windows: accuracy of both models on the labelled records.
    weeks: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for chunk in store.iter_joined():
        for row in chunk:
            if row["label"] is None:
                continue
            week = int((row["ts"] - START) // (7 * DAY))
            counts = weeks[week]
            counts[0] += 1
            counts[1] += row["advanced_prediction"] == row["label"]
            counts[2] += row["baseline_prediction"] == row["label"]
    print("week  labelled  advanced  baseline")
    for week in sorted(weeks):
        n, adv, base = weeks[week]
        print(f"{week:>4}  {n:>8}  {adv / n:>8.3f}  {base / n:>8.3f}")
    store.close()


if __name__ == "__main__":
    main()
