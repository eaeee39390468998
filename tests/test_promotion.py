"""Candidate in shadow, then promote or reject on a paired test; rollback; the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import sidecar
from sidecar import Registry
from sidecar._analysis import promotion_decision
from sidecar.cli import main
from sidecar.recording import open_store

DAY = 86_400.0


def world(n: int, rng: np.random.Generator, theta: float) -> tuple[list[dict[str, Any]], list[str]]:
    """SEA-like: the label is whether x1 + x2 exceeds theta (x3 is noise); theta can move."""
    x = rng.uniform(0, 10, size=(n, 3))
    y = np.where(x[:, 0] + x[:, 1] > theta, "yes", "no")
    flip = rng.random(n) < 0.05
    y = np.where(flip, np.where(y == "yes", "no", "yes"), y)
    return [{"x1": a, "x2": b, "x3": c} for a, b, c in x.tolist()], y.tolist()


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=f"x{i}") for i in (1, 2, 3)]
    )
    train, y_train = world(3000, rng, theta=8.0)
    pre.fit(train)
    ref, y_ref = world(1000, rng, theta=8.0)
    old = LogisticRegression(max_iter=1000).fit(pre.transform(train), y_train)
    champion = sidecar.wrap(
        old,
        task="classification",
        preprocessing=pre,
        train=(train, y_train),
        reference=(ref, y_ref),
        name="sea",
    )
    champion.save(tmp_path / "champion")
    # The concept moves: theta 8 -> 12. A candidate trained on recent labels knows it.
    recent, y_recent = world(3000, rng, theta=12.0)
    new = LogisticRegression(max_iter=1000).fit(pre.transform(recent), y_recent)
    held, y_held = world(800, rng, theta=12.0)
    better = champion.with_models(advanced=new, reference=(held, y_held))
    better.save(tmp_path / "better")
    same = champion.with_models(
        advanced=LogisticRegression(max_iter=1000).fit(pre.transform(train), y_train)
    )
    same.save(tmp_path / "same")
    served, y_served = world(1500, rng, theta=12.0)
    return {"tmp": tmp_path, "served": served, "y": y_served}


def _shadow(
    tmp: Path,
    champion_dir: Path,
    candidate_dir: Path,
    served: list[dict[str, Any]],
    labels: list[str],
    db: str,
) -> str:
    champion = sidecar.load(champion_dir)
    champion.attach_candidate(sidecar.load(candidate_dir))
    url = f"sqlite:///{tmp / db}"
    store = open_store(url)
    ts = [i * DAY / len(served) for i in range(len(served))]
    sidecar.replay(champion, served, store=store, labels=labels, timestamps=ts)
    store.close()
    return url


def test_the_candidate_is_recorded_in_shadow(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    url = _shadow(tmp, tmp / "champion", tmp / "better", setup["served"], setup["y"], "a.db")
    candidate = sidecar.load(tmp / "better")
    rows = [r for chunk in open_store(url).iter_joined() for r in chunk]
    assert len(rows) == len(setup["served"])
    assert {r["candidate_version"] for r in rows} == {candidate.version}
    served = candidate.predict(setup["served"]).predictions.tolist()
    assert [json.loads(r["candidate_prediction"]) for r in rows] == served
    assert all(r["candidate_proba"] is not None and r["candidate_latency_ms"] >= 0 for r in rows)


def test_a_better_candidate_is_promoted_and_can_be_rolled_back(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = setup["tmp"]
    url = _shadow(tmp, tmp / "champion", tmp / "better", setup["served"], setup["y"], "b.db")
    champion, candidate = sidecar.load(tmp / "champion"), sidecar.load(tmp / "better")
    decision = promotion_decision(champion, candidate, url)
    assert decision.promote and decision.n_paired == len(setup["served"])
    assert decision.deciding_test == "paired:paired_bootstrap"
    assert decision.tests[0].effect > champion.plan.min_effect  # loss fell by that much

    capsys.readouterr()
    code = main(
        [
            "promote",
            str(tmp / "champion"),
            "--candidate",
            str(tmp / "better"),
            "--store",
            url,
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "promote"
    registry = Registry.open(tmp / "champion")
    assert registry.active == candidate.version
    assert set(registry.versions()) == {champion.version, candidate.version}
    assert sidecar.load(tmp / "champion").version == candidate.version  # serving loads it
    assert [e["action"] for e in registry.history()] == ["register", "register", "promote"]

    assert main(["rollback", str(tmp / "champion")]) == 0
    assert sidecar.load(tmp / "champion").version == champion.version
    assert main(["info", str(tmp / "champion")]) == 0
    out = capsys.readouterr().out
    assert "promote" in out and "rollback" in out
    # every version stays loadable
    for version in registry.versions():
        assert sidecar.load(registry.path_of(version)).version == version


def test_a_candidate_that_is_no_better_is_rejected(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = setup["tmp"]
    url = _shadow(tmp, tmp / "champion", tmp / "same", setup["served"], setup["y"], "c.db")
    capsys.readouterr()
    code = main(
        ["promote", str(tmp / "champion"), "--candidate", str(tmp / "same"), "--store", url]
    )
    assert code == 1
    assert capsys.readouterr().out.startswith("rejected")
    assert not (tmp / "champion" / "ACTIVE").exists()  # nothing switched, nothing converted
    assert sidecar.load(tmp / "champion").version == sidecar.load(tmp / "champion").version


def test_too_few_shadow_labels_reject_and_mismatches_are_refused(setup: dict[str, Any]) -> None:
    tmp = setup["tmp"]
    url = _shadow(
        tmp, tmp / "champion", tmp / "better", setup["served"][:50], setup["y"][:50], "d.db"
    )
    decision = promotion_decision(sidecar.load(tmp / "champion"), sidecar.load(tmp / "better"), url)
    assert not decision.promote and "needs at least" in decision.reason
    assert decision.decision == "insufficient_data" and decision.to_dict()["decision"] == (
        "insufficient_data"
    )
    champion = sidecar.load(tmp / "champion")
    other = champion.with_preprocessing(
        sidecar.TabularPreprocessor(
            columns=[
                sidecar.NumericColumn(name="x1", unit="m", input_unit="cm"),
                sidecar.NumericColumn(name="x2"),
                sidecar.NumericColumn(name="x3"),
            ]
        )
    )
    with pytest.raises(sidecar.InputError, match="the champion's preprocessing"):
        champion.attach_candidate(other)
    with pytest.raises(sidecar.InputError, match="must be a bundle registry"):
        Registry.open(tmp / "better")
    assert main(["rollback", str(tmp / "better")]) == 2


def test_rollbacks_go_back_one_version_each_and_refuse_past_the_first(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = setup["tmp"]
    versions = {name: sidecar.load(tmp / name).version for name in ("champion", "better", "same")}
    registry = Registry.open(tmp / "champion", create=True)
    for name in ("better", "same"):
        registry.register(tmp / name)
    registry.activate(versions["better"], action="promote")
    registry.activate(versions["same"], action="promote")
    assert registry.stack() == [versions["champion"], versions["better"], versions["same"]]

    capsys.readouterr()
    assert main(["rollback", str(tmp / "champion")]) == 0
    assert registry.active == versions["better"]
    # The second rollback goes back again (it used to go forward to "same").
    assert main(["rollback", str(tmp / "champion")]) == 0
    assert registry.active == versions["champion"]
    assert sidecar.load(tmp / "champion").version == versions["champion"]
    capsys.readouterr()
    assert main(["rollback", str(tmp / "champion")]) == 2
    assert "no earlier active version to roll back to" in capsys.readouterr().err
    with pytest.raises(sidecar.InputError, match="is the first version made active here"):
        registry.rollback()
    assert registry.active == versions["champion"]

    # A rollback to a named version further down pops back to it; to another one, pushes it.
    registry.activate(versions["better"], action="promote")
    registry.activate(versions["same"], action="promote")
    assert registry.rollback(to=versions["champion"]) == versions["champion"]
    assert registry.stack() == [versions["champion"]]
    assert registry.rollback(to=versions["same"]) == versions["same"]
    assert registry.stack() == [versions["champion"], versions["same"]]
    assert registry.rollback() == versions["champion"]


# --------------------------------------------------------------------------- the decision order


def _decide(champ_acc: float, cand_acc: float, n: int, seed: int, **plan: Any) -> Any:
    """Champion and candidate right independently with the given rates on ``n`` requests."""
    from sidecar.monitoring import decide_promotion, default_plan

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    champ = np.where(rng.random(n) < champ_acc, y, 1 - y)
    cand = np.where(rng.random(n) < cand_acc, y, 1 - y)
    base = default_plan("classification", reference_metric=champ_acc)
    chosen = base.model_copy(update=plan) if plan else base
    return decide_promotion(
        plan=chosen, y=y, champion=champ, champion_proba=None, candidate=cand,
        candidate_proba=None, classes=(0, 1), ts=np.arange(n, dtype=np.float64),
        champion_version="champ", candidate_version="cand", seed=seed,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("champ", "cand", "n", "expected"),
    [
        (0.80, 0.95, 300, "promote"),  # clearly better on a few hundred pairs
        (0.80, 0.80, 150, "insufficient_data"),  # below the floor
        (0.80, 0.81, 300, "insufficient_data"),  # cannot tell yet
        (0.80, 0.80, 20000, "reject"),  # verifiably not better by 0.025
        (0.80, 0.75, 2000, "reject"),  # worse
        (0.80, 0.90, 20000, "promote"),
    ],
    ids=["clear-300", "floor", "open-300", "same-20000", "worse-2000", "better-20000"],
)
def test_the_promotion_order_at_small_and_large_n(
    champ: float, cand: float, n: int, expected: str
) -> None:
    decision = _decide(champ, cand, n, seed=1)
    assert decision.decision == expected, decision.reason
    assert decision.promote == (expected == "promote")
    if expected == "insufficient_data" and n >= 200:
        assert "more pairs would settle it" in decision.reason
        assert decision.labels_to_settle > n
    if expected == "reject" and n == 20000 and cand == champ:
        assert decision.equivalence.p_value <= 0.05 and "rules out" in decision.reason


def test_promotion_is_calibrated_both_ways() -> None:
    """An equal candidate is promoted in at most alpha of runs; a candidate better by
    exactly min_effect is rejected as 'not better' in at most alpha of runs."""
    runs, alpha = 150, 0.05
    mc = 3 * (alpha * (1 - alpha) / runs) ** 0.5
    equal = sum(_decide(0.85, 0.85, 600, seed=s).promote for s in range(runs))
    assert equal / runs <= alpha + mc
    better = [_decide(0.85, 0.875, 600, seed=s) for s in range(runs)]
    wrongly_rejected = sum(
        d.decision == "reject" and d.equivalence.p_value <= alpha for d in better
    )
    assert wrongly_rejected / runs <= alpha + mc


def test_the_cli_says_undecided_and_exits_1(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = setup["tmp"]
    url = _shadow(
        tmp, tmp / "champion", tmp / "better", setup["served"][:120], setup["y"][:120], "e.db"
    )
    capsys.readouterr()
    code = main(
        ["promote", str(tmp / "champion"), "--candidate", str(tmp / "better"), "--store", url]
    )
    assert code == 1
    assert capsys.readouterr().out.startswith("undecided ")
    assert not (tmp / "champion" / "ACTIVE").exists()


def test_a_registered_version_changed_on_disk_is_not_made_active(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by an outside review: a corrupted registered copy was "promoted" (exit 0) and the
    running service then failed to load it. Now promote and rollback refuse it (exit 1)."""
    tmp = setup["tmp"]
    versions = {name: sidecar.load(tmp / name).version for name in ("champion", "better")}
    registry = Registry.open(tmp / "champion", create=True)
    registry.register(tmp / "better")
    model = next(p for p in (registry.path_of(versions["better"]) / "advanced").iterdir())
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(data)
    with pytest.raises(sidecar.BundleError, match=r"cannot be made active \(promote\).*hash"):
        registry.activate(versions["better"], action="promote")
    assert registry.active == versions["champion"]
    capsys.readouterr()
    assert main(["rollback", str(tmp / "champion"), "--to", versions["better"]]) == 1
    assert "cannot be made active (rollback)" in capsys.readouterr().err
    assert registry.active == versions["champion"]
    assert [e["action"] for e in registry.history()].count("promote") == 0
