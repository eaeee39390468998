"""The ``sidecar`` command: in-process through ``sidecar.cli.main`` and, for the exit
codes, as a real subprocess."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import sidecar
from sidecar.cli import main
from tests.cli_models import weight_rule

COLUMNS = ["weight", "age", "color", "y"]
SPEC = {
    "columns": [
        {"type": "numeric", "name": "weight", "unit": "kg"},
        {"type": "numeric", "name": "age"},
        {"type": "categorical", "name": "color", "top_n": 3},
    ]
}
LB_PER_KG = 1 / 0.45359237


def _records(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for _ in range(n):
        weight = float(rng.uniform(45.0, 120.0))
        color = str(rng.choice(["red", "green", "blue", "black"], p=[0.4, 0.3, 0.2, 0.1]))
        records.append({"weight": weight, "age": int(rng.integers(18, 90)), "color": color})
        labels.append(int(weight + (6.0 if color == "red" else 0.0) > 82.0))
    return records, labels


def _write_csv(path: Path, records: list[dict[str, Any]], labels: list[Any]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*records[0], "y"])
        writer.writeheader()
        for rec, label in zip(records, labels, strict=True):
            writer.writerow({**rec, "y": label})


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with its stdout and stderr (for module-scoped fixtures, where
    capsys is not available)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _swap(bundle: Path, spec: Path, out: Path, *extra: str) -> list[str]:
    return ["preprocessing", "swap", str(bundle), str(spec), "--out", str(out), *extra]


def _subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Data:
    root: Path
    train: list[dict[str, Any]]
    y_train: list[int]
    ref: list[dict[str, Any]]
    y_ref: list[int]
    pre: sidecar.TabularPreprocessor
    model: Any

    def wrap_args(self, model: str | Path, out: Path, *extra: str) -> list[str]:
        return [
            "wrap",
            "--model",
            str(model),
            "--task",
            "classification",
            "--preprocessing",
            str(self.root / "spec.yaml"),
            "--train",
            str(self.root / "train.csv"),
            "--reference",
            str(self.root / "ref.csv"),
            "--label-column",
            "y",
            "--out",
            str(out),
            *extra,
        ]

    def expected(self, records: list[dict[str, Any]] | None = None) -> np.ndarray:
        return np.asarray(self.model.predict(self.pre.transform(records or self.ref)))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    from sklearn.linear_model import LogisticRegression
    from skops.io import dump

    root = tmp_path_factory.mktemp("cli-data")
    train, y_train = _records(160, 0)
    ref, y_ref = _records(60, 1)
    _write_csv(root / "train.csv", train, y_train)
    _write_csv(root / "ref.csv", ref, y_ref)
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    pre = sidecar.read_spec(root / "spec.yaml").fit(train)
    model = LogisticRegression(max_iter=5000).fit(pre.transform(train), y_train)
    dump(model, root / "m.skops")
    return Data(root, train, y_train, ref, y_ref, pre, model)


@pytest.fixture(scope="module")
def wrapped(data: Data, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The skops model wrapped from CSV files by ``sidecar wrap``: (bundle dir, stdout)."""
    out = tmp_path_factory.mktemp("wrapped") / "B"
    rc, stdout, stderr = _run(data.wrap_args(data.root / "m.skops", out))
    assert rc == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    from threadpoolctl import threadpool_limits

    directory = tmp_path_factory.mktemp("quickstart") / "D"
    with threadpool_limits(limits=1):  # the model is small; extra OpenMP threads only contend
        rc, stdout, _ = _run(["quickstart", "--dir", str(directory), "--no-serve"])
    return directory, rc, stdout


# -- quickstart and info ----------------------------------------------------------------


def test_quickstart_without_serving_saves_a_loadable_bundle(
    quickstart: tuple[Path, int, str],
) -> None:
    directory, rc, stdout = quickstart
    assert rc == 0
    bundle = sidecar.load(directory / "bundle")
    assert stdout.strip() == (
        f"saved bundle breast-cancer version {bundle.version} to {directory / 'bundle'}"
    )
    assert bundle.name == "breast-cancer" and bundle.task == "classification"
    from sidecar._quickstart import load_quickstart_data

    _, _, ref, y_ref = load_quickstart_data()
    pred = bundle.predict(ref[:50])
    assert set(pred.predictions.tolist()) <= {"benign", "malignant"}
    assert np.mean(pred.predictions == np.asarray(y_ref[:50])) > 0.85


def test_info_prints_versions_and_parts(
    quickstart: tuple[Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = quickstart[0] / "bundle"
    bundle = sidecar.load(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"breast-cancer  version {bundle.version}  (parent None)" in out
    assert "classes ['benign', 'malignant']" in out
    assert "mean_radius, mean_texture" in out
    for part in ("preprocessing", "advanced", "baseline", "reference"):
        meta = bundle.manifest["parts"][part]
        line = next(ln for ln in out.splitlines() if ln.startswith(part))
        assert f"version {meta['version']}" in line
        assert meta["sha256"][:16] in line


def test_info_json_is_one_json_object(
    quickstart: tuple[Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = quickstart[0] / "bundle"
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    bundle = sidecar.load(path)
    assert info["version"] == bundle.version
    assert info["name"] == "breast-cancer"
    assert info["parent"] is None
    assert info["parts"] == bundle.manifest["parts"]
    assert set(info["parts"]) == {"preprocessing", "advanced", "baseline", "reference"}
    assert len(info["input_fields"]) == 30
    assert info["path"] == str(path)


def test_info_on_a_directory_that_is_not_a_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("sidecar: error: ")
    assert f"{tmp_path} is not a bundle" in captured.err
    assert "manifest.json" in captured.err


def test_info_on_a_changed_bundle_fails_its_hash_check(
    quickstart: tuple[Path, int, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(quickstart[0] / "bundle", copy)
    state = copy / "preprocessing" / "preprocessing.json"
    state.write_text(state.read_text() + "\n")
    assert main(["info", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "'preprocessing' failed its hash check" in err


# -- wrap ---------------------------------------------------------------------------------


def test_wrap_a_skops_model_from_csv_files(data: Data, wrapped: tuple[Path, str]) -> None:
    path, stdout = wrapped
    bundle = sidecar.load(path)
    assert stdout.strip() == f"saved bundle model version {bundle.version} to {path}"
    assert bundle.info()["input_fields"] == ["weight", "age", "color"]
    assert bundle.manifest["parts"]["advanced"]["framework"] == "sklearn"
    assert bundle.manifest["classes"] == [0, 1]
    assert bundle.preprocessing.vocabularies_ == data.pre.vocabularies_  # type: ignore[attr-defined]
    pred = bundle.predict(data.ref)
    np.testing.assert_array_equal(pred.predictions, data.expected())
    np.testing.assert_allclose(
        pred.probabilities, data.model.predict_proba(data.pre.transform(data.ref))
    )
    pair = bundle.predict_shadow(data.ref[:5], timeout=30)
    assert pair.baseline is not None and len(pair.baseline.predictions) == 5


def test_wrap_an_onnx_model(data: Data, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    n_features = len(data.pre.feature_names_out)
    onx = convert_sklearn(
        data.model,
        initial_types=[("X", FloatTensorType([None, n_features]))],
        options={id(data.model): {"zipmap": False}},
    )
    (tmp_path / "m.onnx").write_bytes(onx.SerializeToString())
    assert main(data.wrap_args(tmp_path / "m.onnx", tmp_path / "B")) == 0
    bundle = sidecar.load(tmp_path / "B")
    assert bundle.manifest["parts"]["advanced"]["framework"] == "onnx"
    pred = bundle.predict(data.ref)
    np.testing.assert_array_equal(pred.predictions, data.expected())
    np.testing.assert_allclose(
        pred.probabilities, data.model.predict_proba(data.pre.transform(data.ref)), atol=1e-5
    )


def test_wrap_a_callable_import_path(data: Data, tmp_path: Path) -> None:
    argv = data.wrap_args("tests.cli_models:weight_rule", tmp_path / "B", "--classes", "0", "1")
    assert main(argv) == 0
    with pytest.raises(sidecar.BundleError, match=r"field `path`.*trusted="):
        sidecar.load(tmp_path / "B")  # an import path is code: trusted by name, or refused
    bundle = sidecar.load(tmp_path / "B", trusted=["tests.cli_models:weight_rule"])
    advanced = bundle.manifest["parts"]["advanced"]
    assert (advanced["framework"], advanced["path"]) == ("callable", "tests.cli_models:weight_rule")
    assert bundle.manifest["classes"] == [0, 1]  # typed like the labels in the data
    pred = bundle.predict(data.ref)
    proba = weight_rule(data.pre.transform(data.ref))
    np.testing.assert_array_equal(pred.predictions, proba.argmax(axis=1))
    np.testing.assert_allclose(pred.probabilities, proba)


def test_wrap_reads_parquet(data: Data, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for name, records, labels in [
        ("train", data.train, data.y_train),
        ("ref", data.ref, data.y_ref),
    ]:
        rows = [{**r, "y": y} for r, y in zip(records, labels, strict=True)]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
    argv = data.wrap_args(data.root / "m.skops", tmp_path / "B")
    argv[argv.index("--train") + 1] = str(tmp_path / "train.parquet")
    argv[argv.index("--reference") + 1] = str(tmp_path / "ref.parquet")
    assert main(argv) == 0
    bundle = sidecar.load(tmp_path / "B")
    np.testing.assert_array_equal(bundle.predict(data.ref).predictions, data.expected())
    assert bundle.preprocessing.vocabularies_ == data.pre.vocabularies_  # type: ignore[attr-defined]


def test_wrap_with_an_unknown_label_column(
    data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = data.wrap_args(data.root / "m.skops", tmp_path / "B")
    argv[argv.index("--label-column") + 1] = "nope"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--label-column" in err
    assert "'nope'" in err
    assert "['weight', 'age', 'color', 'y']" in err
    assert not (tmp_path / "B").exists()


@pytest.mark.parametrize(
    ("flag", "name", "words"),
    [
        ("--reference", "missing.csv", ["must exist"]),
        ("--train", "missing.parquet", ["must exist"]),
        ("--reference", "ref.txt", ["must end in .csv or .parquet", "'.txt'"]),
        ("--model", "missing.skops", ["--model must be an existing model file"]),
        ("--preprocessing", "missing.yaml", ["cannot be read"]),
    ],
)
def test_wrap_with_a_missing_or_unreadable_file(
    data: Data,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    name: str,
    words: list[str],
) -> None:
    (tmp_path / "ref.txt").write_text("weight,age,color,y\n")
    argv = data.wrap_args(data.root / "m.skops", tmp_path / "B")
    argv[argv.index(flag) + 1] = str(tmp_path / name)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sidecar: error: ")
    for word in words:
        assert word in err


def test_wrap_refuses_a_pickle_unless_allowed(
    data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(tmp_path / "m.pkl", "wb") as fh:
        pickle.dump(data.model, fh)
    assert main(data.wrap_args(tmp_path / "m.pkl", tmp_path / "B")) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert not (tmp_path / "B").exists()

    assert main(data.wrap_args(tmp_path / "m.pkl", tmp_path / "B", "--allow-pickle")) == 0
    with pytest.raises(sidecar.BundleError, match="allow_pickle=True"):
        sidecar.load(tmp_path / "B")
    bundle = sidecar.load(tmp_path / "B", allow_pickle=True)
    np.testing.assert_array_equal(bundle.predict(data.ref).predictions, data.expected())


def test_wrap_will_not_overwrite_unless_asked(
    data: Data, wrapped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "B"
    shutil.copytree(wrapped[0], out)
    assert main(data.wrap_args(data.root / "m.skops", out)) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(data.wrap_args(data.root / "m.skops", out, "--overwrite", "--name", "again")) == 0
    assert sidecar.load(out).name == "again"


def test_wrap_keeps_code_like_categories_as_text(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier
    from skops.io import dump

    codes = ["250.00", "401.9", "V58.67", "008.45"]
    rows = [{"dx": codes[k % 4], "age": 30 + k, "y": k % 2} for k in range(40)]
    for name in ("train", "ref"):
        with open(tmp_path / f"{name}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["dx", "age", "y"])
            writer.writeheader()
            writer.writerows(rows)
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(
            {
                "columns": [
                    {"type": "categorical", "name": "dx"},
                    {"type": "numeric", "name": "age"},
                ]
            }
        )
    )
    dump(DummyClassifier().fit(np.zeros((4, 2)), [0, 1, 0, 1]), tmp_path / "m.skops")
    rc = main(
        [
            "wrap",
            "--model",
            str(tmp_path / "m.skops"),
            "--task",
            "classification",
            "--preprocessing",
            str(tmp_path / "spec.yaml"),
            "--train",
            str(tmp_path / "train.csv"),
            "--reference",
            str(tmp_path / "ref.csv"),
            "--label-column",
            "y",
            "--out",
            str(tmp_path / "B"),
        ]
    )
    assert rc == 0
    bundle = sidecar.load(tmp_path / "B")
    assert set(bundle.preprocessing.vocabularies_["dx"]) == set(codes)  # type: ignore[attr-defined]


# -- preprocessing swap -----------------------------------------------------------------------


def test_swap_in_a_preprocessing_that_converts_units(
    data: Data, wrapped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = json.loads(json.dumps(SPEC))
    spec["columns"][0]["input_unit"] = "lb"
    (tmp_path / "new_spec.yaml").write_text(yaml.safe_dump(spec))
    old = sidecar.load(wrapped[0])
    out = tmp_path / "B2"
    assert main(_swap(wrapped[0], tmp_path / "new_spec.yaml", out)) == 0
    printed = capsys.readouterr().out
    new = sidecar.load(out)

    old_parts, new_parts = old.manifest["parts"], new.manifest["parts"]
    assert f"version {new.version} (parent {old.version})" in printed
    assert f"preprocessing {old.preprocessing_version} -> {new.preprocessing_version}" in printed
    assert (
        f"models unchanged (advanced {old_parts['advanced']['version']}, "
        f"baseline {old_parts['baseline']['version']})"
    ) in printed
    assert new.parent == old.version
    assert new.version != old.version
    for part in ("advanced", "baseline", "reference"):
        assert new_parts[part]["sha256"] == old_parts[part]["sha256"]
        assert new_parts[part]["version"] == old_parts[part]["version"]
    assert new.preprocessing_version != old.preprocessing_version
    assert new_parts["preprocessing"]["sha256"] != old_parts["preprocessing"]["sha256"]
    # Same features from weights in pounds: same answers.
    assert new.preprocessing.vocabularies_ == old.preprocessing.vocabularies_  # type: ignore[attr-defined]
    in_lb = [dict(r, weight=r["weight"] * LB_PER_KG) for r in data.ref]
    np.testing.assert_allclose(
        new.preprocessing.transform(in_lb), old.preprocessing.transform(data.ref)
    )
    np.testing.assert_array_equal(new.predict(in_lb).predictions, data.expected())

    # A named version is kept.
    argv = _swap(wrapped[0], tmp_path / "new_spec.yaml", tmp_path / "B3", "--version", "lb-1")
    assert main(argv) == 0
    assert sidecar.load(tmp_path / "B3").preprocessing_version == "lb-1"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"encoding": "onehot"}, ["must emit the features"]),
        ({"name": "colour"}, ["`colour` must declare a `vocabulary`"]),
    ],
    ids=["onehot", "renamed"],
)
def test_swap_that_changes_the_feature_layout_is_refused(
    wrapped: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    words: list[str],
) -> None:
    spec = json.loads(json.dumps(SPEC))
    spec["columns"][2].update(change)
    (tmp_path / "new_spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "B2"
    assert main(_swap(wrapped[0], tmp_path / "new_spec.yaml", out)) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert not out.exists()


def test_swap_with_a_bad_spec_file(
    wrapped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "new_spec.yaml").write_text("columns:\n  - {type: numeric, name: weight, si: 1}\n")
    assert main(_swap(wrapped[0], tmp_path / "new_spec.yaml", tmp_path / "B2")) == 2
    assert "si" in capsys.readouterr().err


# -- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["wrap"],
        [
            "wrap",
            "--model",
            "m.skops",
            "--task",
            "clustering",
            "--preprocessing",
            "s.yaml",
            "--reference",
            "r.csv",
            "--label-column",
            "y",
            "--out",
            "B",
        ],
        ["info"],
        ["quickstart", "--port", "eighty"],
        ["preprocessing", "swap", "B"],
        ["--no-such-flag"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: sidecar" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["preprocessing"]])
def test_no_command_prints_help_and_returns_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage: sidecar" in capsys.readouterr().out


# -- as a real process ------------------------------------------------------------------------


def test_exit_codes_of_the_real_command(wrapped: tuple[Path, str], tmp_path: Path) -> None:
    done = _subprocess("info", "--json", str(wrapped[0]), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["version"] == sidecar.load(wrapped[0]).version
    assert set(info["parts"]) == {"preprocessing", "advanced", "baseline", "reference"}

    done = _subprocess("info", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"sidecar: error: {tmp_path} is not a bundle: it has no manifest.json."
    )

    done = _subprocess("wrap", "--task", "regression", cwd=tmp_path)
    assert done.returncode == 2
    assert "the following arguments are required" in done.stderr

    done = _subprocess(
        "wrap",
        "--model",
        "m.skops",
        "--task",
        "classification",
        "--preprocessing",
        "s.yaml",
        "--reference",
        "missing.csv",
        "--label-column",
        "y",
        "--out",
        "B",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "s.yaml cannot be read" in done.stderr
    assert "Traceback" not in done.stderr
