"""A forest meets a concept change: diagnose, replace members, shadow, promote.

A random forest learns an SEA-style concept (the label is whether x1 + x2
exceeds a threshold). Then the threshold moves: the same inputs now mean
something else. The diagnosis says concept drift and recommends replacing
ensemble members; the adapter scores the forest's trees on recent labelled
data, drops the worst and grows new ones on recent data; the candidate runs in
shadow beside the champion; `sidecar promote` runs the plan's paired test on
the shadow-recorded, labelled requests and promotes it. A rollback is one call.

    python examples/ensemble_drift/ensemble_drift.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

import adapters
import sidecar
from sidecar.cli import main as sidecar_cli
from sidecar.recording import open_store

DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def sea(n: int, rng: np.random.Generator, theta: float) -> tuple[list[dict[str, Any]], list[str]]:
    """SEA concept: label 'yes' when x1 + x2 > theta (x3 is noise), with 5% label noise."""
    x = rng.uniform(0, 10, size=(n, 3))
    y = x[:, 0] + x[:, 1] > theta
    y ^= rng.random(n) < 0.05
    return [{"x1": a, "x2": b, "x3": c} for a, b, c in x.round(3).tolist()], [
        "yes" if v else "no" for v in y
    ]


def replay(
    bundle: sidecar.Bundle,
    store: Any,
    records: list[dict[str, Any]],
    labels: list[str],
    day0: float,
    days: float,
) -> None:
    ts = [START + (day0 + days * i / len(records)) * DAY for i in range(len(records))]
    sidecar.replay(
        bundle,
        records,
        store=store,
        labels=labels,
        timestamps=ts,
        label_timestamps=[t + 3600 for t in ts],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a new temporary folder)")
    args = parser.parse_args()
    out = Path(args.dir or tempfile.mkdtemp(prefix="sidecar-ensemble-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)

    train, y_train = sea(6000, rng, theta=8.0)
    ref, y_ref = sea(2000, rng, theta=8.0)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=f"x{i}") for i in (1, 2, 3)]
    ).fit(train)
    forest = RandomForestClassifier(n_estimators=60, min_samples_leaf=5, random_state=0)
    forest.fit(pre.transform(train), y_train)
    champion = sidecar.wrap(
        forest,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="sea-forest",
    )
    champion.save(out / "model", overwrite=True)
    url = f"sqlite:///{(out / 'records.db').resolve()}"
    store = open_store(url)

    # Week 1: the threshold moves from 8 to 9.5. Served, labelled an hour later.
    replay(champion, store, *sea(3000, rng, theta=9.5), day0=0, days=7)
    diagnosis = sidecar.diagnose(champion, store)
    print("diagnosis:", diagnosis.verdict, "->", diagnosis.recommendation.adapter)

    # Retrain as the diagnosis recommends: replace the worst members on recent data.
    recent = sidecar.recent_data(champion, store)
    result = adapters.retrain(champion, recent, strategy="auto", diagnosis=diagnosis)
    candidate_dir = result.candidate.save(out / "candidate", overwrite=True)
    print("retrained:", result.report.summary)

    # Week 2: the candidate runs in shadow beside the champion on live traffic.
    champion.attach_candidate(result.candidate)
    replay(champion, store, *sea(2000, rng, theta=9.5), day0=7, days=7)
    champion.attach_candidate(None)
    store.close()

    # Promote only if the plan's paired test says it is better.
    code = sidecar_cli(
        ["promote", str(out / "model"), "--candidate", str(candidate_dir), "--store", url]
    )
    active = sidecar.load(out / "model")
    print(
        json.dumps(
            {
                "verdict": diagnosis.verdict,
                "adapter": diagnosis.recommendation.adapter,
                "strategy": result.report.strategy,
                "champion_holdout": dict(result.report.champion),
                "candidate_holdout": dict(result.report.candidate),
                "promoted": code == 0,
                "active_version": active.version,
                "candidate_version": result.candidate.version,
            }
        )
    )


if __name__ == "__main__":
    main()
