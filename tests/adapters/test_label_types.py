"""Labels typed once: every class type goes feedback -> diagnose -> retrain -> promote.

Labels arrive as text (a CSV, a form) or as JSON values; the one rule at the
door (``sidecar._labels``) coerces them to the type of the model's classes,
so the diagnosis scores them as the model predicts and the adapters accept them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import sidecar
from sidecar.recording import open_store

#: class type -> (the two classes, how a label arrives as text, and as JSON)
TYPES: dict[str, tuple[tuple[Any, Any], Any, Any]] = {
    "bool": ((False, True), lambda c: ["false", "True"][int(c)], lambda c: bool(c)),
    "int": ((0, 1), lambda c: f" {int(c)} ", lambda c: float(c)),  # "1" and 1.0 are 1
    "str": (("no", "yes"), lambda c: ["no", "yes"][int(c)], lambda c: ["no", "yes"][int(c)]),
    # scikit-learn classifiers take integral floats only ("0.5" would be a regression target)
    "float": ((0.0, 1.0), lambda c: ["0", "1.0"][int(c)], lambda c: int(c)),
}


def _world(n: int, theta: float, seed: int) -> tuple[list[dict[str, float]], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, size=(n, 3))
    y = (x[:, 0] + x[:, 1] > theta) ^ (rng.random(n) < 0.05)
    return [{"x1": a, "x2": b, "x3": c} for a, b, c in x.tolist()], y.astype(int)


@pytest.mark.parametrize("kind", list(TYPES))
def test_every_class_type_round_trips_through_the_loop(kind: str, tmp_path: Path) -> None:
    classes, as_text, as_json = TYPES[kind]
    typed = np.array(classes, dtype=object)
    train, c_train = _world(1500, 8.0, 1)
    ref, c_ref = _world(500, 8.0, 2)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=f"x{i}") for i in (1, 2, 3)]
    ).fit(train)
    forest = RandomForestClassifier(n_estimators=20, min_samples_leaf=3, random_state=0)
    forest.fit(pre.transform(train), typed[c_train].tolist())
    champion = sidecar.wrap(
        forest,
        task="classification",
        preprocessing=pre,
        train=(train, typed[c_train].tolist()),
        reference=(ref, typed[c_ref].tolist()),
        name=f"labels-{kind}",
    )
    assert tuple(champion.advanced.classes) == classes
    champion.save(tmp_path / "champion")

    # feedback: half the labels as text, half as JSON values, through the SDK's door
    served, c_served = _world(1200, 9.5, 3)
    url = f"sqlite:///{tmp_path / 'served.db'}"
    store = open_store(url)
    sidecar.replay(champion, served, store=store, timestamps=[60.0 * i for i in range(1200)])
    rows = sorted((r for chunk in store.iter_joined() for r in chunk), key=lambda r: r["ts"])
    items = [
        {"request_id": r["request_id"], "label": (as_text if i % 2 else as_json)(c)}
        for i, (r, c) in enumerate(zip(rows, c_served, strict=True))
    ]
    assert champion.feedback(items, store=store).accepted == len(items)
    store.close()

    # diagnose scores the labels as the model predicts them
    d = sidecar.diagnose(champion, url)
    predicted = champion.predict(served).predictions
    truth = typed[c_served]
    expected = float(np.mean([p == t for p, t in zip(predicted.tolist(), truth, strict=True)]))
    assert d.metrics["advanced"]["accuracy"].value == pytest.approx(expected)
    assert d.verdict in ("concept_drift", "data_drift"), d.reasons

    # retrain accepts them and keeps the classes, with their type
    result = sidecar.retrain(champion, url, strategy="auto")
    candidate = result.candidate
    assert tuple(candidate.advanced.classes) == classes
    assert [type(c) for c in candidate.advanced.classes] == [type(c) for c in classes]
    assert result.report.improved
    candidate.save(tmp_path / "candidate")

    # promote: the candidate in shadow, labels from a CSV (text)
    shadowed = sidecar.load(tmp_path / "champion")
    shadowed.attach_candidate(sidecar.load(tmp_path / "candidate"))
    later, c_later = _world(800, 9.5, 4)
    url2 = f"sqlite:///{tmp_path / 'shadow.db'}"
    store2 = open_store(url2)
    sidecar.replay(
        shadowed,
        later,
        store=store2,
        labels=[as_text(c) for c in c_later],
        timestamps=[1e6 + 60.0 * i for i in range(800)],
    )
    store2.close()
    decision = sidecar.promote(tmp_path / "champion", tmp_path / "candidate", url2)
    assert decision.promote, decision.reason
