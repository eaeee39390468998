"""`sidecar retrain` from a shell: from a store (auto follows the diagnosis) or from a file."""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import sidecar
from sidecar.cli import main
from sidecar.recording import open_store

DAY = 86_400.0


def sea(n: int, rng: np.random.Generator, theta: float) -> tuple[list[dict[str, Any]], list[str]]:
    x = rng.uniform(0, 10, size=(n, 3))
    y = x[:, 0] + x[:, 1] > theta
    y ^= rng.random(n) < 0.05
    return [{"x1": a, "x2": b, "x3": c} for a, b, c in x.round(3).tolist()], [
        "yes" if v else "no" for v in y
    ]


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("retrain")
    rng = np.random.default_rng(5)
    train, y_train = sea(4000, rng, 8.0)
    ref, y_ref = sea(1500, rng, 8.0)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=f"x{i}") for i in (1, 2, 3)]
    ).fit(train)
    forest = RandomForestClassifier(n_estimators=40, min_samples_leaf=5, random_state=0)
    forest.fit(pre.transform(train), y_train)
    bundle = sidecar.wrap(
        forest,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="sea",
    )
    bundle.save(tmp / "model")
    recent, y_recent = sea(3000, rng, 9.5)
    url = f"sqlite:///{tmp / 'records.db'}"
    store = open_store(url)
    ts = [i * 7 * DAY / len(recent) for i in range(len(recent))]
    sidecar.replay(bundle, recent, store=store, labels=y_recent, timestamps=ts)
    store.close()
    with open(tmp / "recent.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["x1", "x2", "x3", "y", "ts"])
        writer.writeheader()
        for r, y, t in zip(recent, y_recent, ts, strict=True):
            writer.writerow({**r, "y": y, "ts": t})
    return {"tmp": tmp, "url": url, "bundle": bundle}


def test_auto_follows_the_diagnosis_and_writes_a_candidate_with_its_report(
    drifted: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, out = drifted["tmp"], drifted["tmp"] / "candidate-auto"
    capsys.readouterr()
    code = main(
        [
            "retrain",
            str(tmp / "model"),
            "--store",
            drifted["url"],
            "--strategy",
            "auto",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert "diagnosis: concept_drift" in captured.err
    assert report["parent"] == drifted["bundle"].version
    assert report["report"]["strategy"] == "replace-members"
    assert report["report"]["wall_time_s"] > 0
    candidate = sidecar.load(out)
    assert candidate.parent == drifted["bundle"].version
    assert (
        candidate.manifest["parts"]["preprocessing"]["sha256"]
        == drifted["bundle"].manifest["parts"]["preprocessing"]["sha256"]
    )
    holdout = report["report"]["holdout"]
    champ, cand = holdout["champion"], holdout["candidate"]
    assert cand["accuracy"] > champ["accuracy"]


def test_from_a_file_with_an_explicit_strategy(drifted: dict[str, Any]) -> None:
    tmp, out = drifted["tmp"], drifted["tmp"] / "candidate-file"
    code = main(
        [
            "retrain",
            str(tmp / "model"),
            "--data",
            str(tmp / "recent.csv"),
            "--label-column",
            "y",
            "--timestamp-column",
            "ts",
            "--strategy",
            "regularize",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sidecar.load(out).parent == drifted["bundle"].version


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "recent.csv", "--strategy", "auto", "--label-column", "y"], "needs --store"),
        (["--data", "recent.csv", "--strategy", "regularize"], "--label-column must name"),
        (["--data", "recent.csv", "--strategy", "regularize", "--label-column", "nope"], "'nope'"),
    ],
    ids=["auto-without-store", "no-label-column", "wrong-label-column"],
)
def test_bad_retrain_requests_are_usage_errors_and_write_nothing(
    drifted: dict[str, Any], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    tmp = drifted["tmp"]
    args = [str(tmp / a) if a == "recent.csv" else a for a in extra]
    before = (tmp / "model" / "manifest.json").read_text()
    capsys.readouterr()
    code = main(["retrain", str(tmp / "model"), *args, "--out", str(tmp / "never")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp / "never").exists()
    assert (tmp / "model" / "manifest.json").read_text() == before


@pytest.fixture(scope="module")
def changed(drifted: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store: 1,500 labelled requests of the old concept, then 1,500 of a new one."""
    tmp = tmp_path_factory.mktemp("changed")
    rng = np.random.default_rng(9)
    before, y_before = sea(1500, rng, 8.0)
    after, y_after = sea(1500, rng, 9.5)
    url = f"sqlite:///{tmp / 'records.db'}"
    store = open_store(url)
    ts = [i * 60.0 for i in range(3000)]
    sidecar.replay(
        drifted["bundle"], before + after, store=store, labels=y_before + y_after, timestamps=ts
    )
    store.close()
    return {"url": url, "tmp": tmp, "change_ts": ts[1500]}


@pytest.mark.parametrize("since", [None, "all"], ids=["auto-window", "since-all"])
def test_auto_learns_from_after_the_change_unless_told_otherwise(
    drifted: dict[str, Any],
    changed: dict[str, Any],
    since: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = changed["tmp"] / f"candidate-{since}"
    argv = ["retrain", str(drifted["tmp"] / "model"), "--store", changed["url"]]
    argv += ["--out", str(out), *(["--since", since] if since else [])]
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    window = json.loads(capsys.readouterr().out)["report"]["window"]
    if since is None:
        assert window["rows"] == "after_change"
        assert window["change_p"] <= 0.05
        assert abs(window["change_ts"] - changed["change_ts"]) <= 100 * 60.0
        assert 1300 <= window["n"] <= 1700
    else:
        assert window["rows"] == "all" and window["n"] == 3000
    assert main([*argv, "--overwrite"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("window"))
    assert ("rows from the change on" in line) == (since is None)
