"""The examples run as users run them: as scripts, from another directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import sidecar
from sidecar.recording import open_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUICKSTART = EXAMPLES / "quickstart" / "quickstart.py"
BACKTEST = EXAMPLES / "backtest" / "backtest.py"


def test_quickstart_example_without_serving(tmp_path: Path) -> None:
    # TMPDIR: the example's default --dir is a fresh temporary directory; keep it in tmp_path.
    # One OpenMP thread: the gradient boosting is small, and oversubscription only slows it.
    env = dict(os.environ, TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), "--no-serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    saved = re.search(r"saved \S+ version (\w+) to (\S+)", done.stdout)
    assert saved, done.stdout
    bundle = sidecar.load(saved.group(2))
    assert bundle.version == saved.group(1)
    assert Path(saved.group(2)).resolve().is_relative_to(tmp_path.resolve())


def test_backtest_example_replays_history_with_delayed_labels(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(BACKTEST), "--dir", str(tmp_path), "--days", "28"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    summary = json.loads(done.stdout.splitlines()[0])
    assert summary["dropped"] == 0 and summary["labels_unknown"] == 0
    # About 10% of the labels never arrive; the rest are joined.
    assert 0.8 * summary["records"] < summary["labels_accepted"] < summary["records"]
    store = open_store(summary["store"])
    counts = store.count()
    rows = [row for chunk in store.iter_joined() for row in chunk]
    store.close()
    assert counts == {"predictions": summary["records"], "labels": summary["labels_accepted"]}
    labelled = [r for r in rows if r["label"] is not None]
    assert all(r["label_ts"] > r["ts"] for r in labelled)  # labels came later
    assert all(r["baseline_prediction"] is not None for r in rows)
    # The CSV it wrote replays the same way from the shell.
    db = tmp_path / "cli.db"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "replay",
            str(tmp_path / "bundle"),
            "--data",
            str(tmp_path / "history.csv"),
            "--store",
            f"sqlite:///{db}",
            "--label-column",
            "churned",
            "--timestamp-column",
            "ts",
            "--label-timestamp-column",
            "label_ts",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["records"] == summary["records"]


def _run_example(path: Path, tmp_path: Path) -> dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(path), "--dir", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_preprocessing_fault_example_says_fix_preprocessing_and_the_swap_fixes_it(
    tmp_path: Path,
) -> None:
    result = _run_example(EXAMPLES / "preprocessing_fault" / "preprocessing_fault.py", tmp_path)
    assert result["before"] == "healthy"
    assert result["fault"] == "preprocessing_fault"
    assert result["features"] == ["diagnosis", "weight"]
    assert result["after_fix"] == "healthy"
    assert result["models_unchanged"] is True


def test_outlier_regression_example_is_not_an_alarm_and_shows_the_outlier(
    tmp_path: Path,
) -> None:
    result = _run_example(EXAMPLES / "outlier_regression" / "outlier_regression.py", tmp_path)
    assert result["verdict"] == "healthy"
    assert float(result["mse_moved_by_one_error"]) > 0.10  # type: ignore[arg-type]


def test_ensemble_drift_example_replaces_members_and_promotes(tmp_path: Path) -> None:
    result = _run_example(EXAMPLES / "ensemble_drift" / "ensemble_drift.py", tmp_path)
    assert result["verdict"] == "concept_drift"
    assert result["strategy"] == "replace-members"
    assert result["promoted"] is True
    assert result["active_version"] == result["candidate_version"]
    champion, candidate = result["champion_holdout"], result["candidate_holdout"]
    assert candidate["accuracy"] > champion["accuracy"]  # type: ignore[index]


def test_resnet_head_example_fine_tunes_the_head_and_promotes(tmp_path: Path) -> None:
    result = _run_example(EXAMPLES / "resnet_head" / "resnet_head.py", tmp_path)
    assert result["verdict"] == "data_drift"
    assert result["strategy"] == "fine-tune-head"
    assert result["promoted"] is True
    assert result["active_version"] == result["candidate_version"]
    assert float(result["candidate_holdout"]) > float(result["champion_holdout"])  # type: ignore[arg-type]
