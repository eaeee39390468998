"""One of each policy (issue #14): the JSON coercion and the optional-dependency import."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sidecar import BundleError, InputError, SidecarError
from sidecar._json import dumps, to_jsonable
from sidecar.monitoring import TestResult


def test_non_finite_numbers_become_null_everywhere_in_a_value() -> None:
    value = {
        1: np.float64(math.nan),
        "inf": [math.inf, -math.inf, np.float32(math.inf)],
        "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
        "tuple": (np.int64(3), np.bool_(True), "text", None),
    }
    assert to_jsonable(value) == {
        "1": None,
        "inf": [None, None, None],
        "array": [[1.0, None], [None, 2.0]],
        "tuple": [3, True, "text", None],
    }


def test_an_array_stays_a_list_whatever_its_size() -> None:
    assert to_jsonable(np.array([1.5])) == [1.5]
    assert to_jsonable(np.array([[np.int64(2)]])) == [[2]]
    assert to_jsonable(np.array([np.nan])) == [None]
    assert to_jsonable(np.array(3.0)) == 3.0  # a 0-d array is a scalar
    assert to_jsonable(np.float32(0.5)) == 0.5


def test_dumps_writes_strict_json() -> None:
    text = dumps({"p": math.nan, "n": np.int32(4)}, sort_keys=True)
    assert text == '{"n": 4, "p": null}'
    # strict: Python's own NaN token would be rejected here
    assert json.loads(text, parse_constant=lambda token: pytest.fail(f"got {token}")) == {
        "n": 4,
        "p": None,
    }


def test_results_use_the_same_policy() -> None:
    result = TestResult(
        name="t", statistic=math.nan, p_value=math.inf, effect=1.0, ci_low=-1.0, ci_high=math.nan
    )
    out = result.to_dict()
    assert out["statistic"] is None and out["p_value"] is None and out["ci_high"] is None
    assert to_jsonable({"r": result}) == {"r": out}


def _torch() -> Any:
    from sidecar.runtimes._torch import require_torch

    return require_torch()


def _onnx() -> Any:
    from sidecar.runtimes._onnx import _require_ort

    return _require_ort()


def _signing() -> Any:
    from sidecar.bundle._signing import _require

    return _require()


def _parquet(tmp_path: Path) -> Any:
    from sidecar._tables import read_table

    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    return read_table(path)


CASES: list[tuple[str, Callable[..., Any], str, str, type[SidecarError]]] = [
    ("torch", _torch, "torch", "torch", BundleError),
    ("onnxruntime", _onnx, "onnxruntime", "onnx", BundleError),
    ("model_signing", _signing, "model_signing", "sign", BundleError),
    ("pyarrow", _parquet, "pyarrow.parquet", "parquet", InputError),
]


@pytest.mark.parametrize(
    ("needs", "call", "module", "extra", "error"), CASES, ids=[c[0] for c in CASES]
)
def test_a_missing_optional_dependency_names_its_extra(
    needs: str,
    call: Callable[..., Any],
    module: str,
    extra: str,
    error: type[SidecarError],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    args = (tmp_path,) if call is _parquet else ()
    with pytest.raises(error, match=rf"install it with `pip install 'model-sidecar\[{extra}\]'`"):
        call(*args)


def test_a_training_report_writes_non_finite_numbers_as_null() -> None:
    from adapters import TrainingReport

    report = TrainingReport(
        strategy="refit",
        wall_time_s=1.0,
        train_time_s=0.5,
        summary="s",
        changes={"C": {"from": 1.0, "to": math.inf}, "alphas": np.array([0.1, np.nan])},
        n_train=60,
        n_validation=20,
        n_holdout=20,
        primary_metric="log_loss",
        higher_is_better=False,
        min_effect=0.01,
        champion={"log_loss": math.inf},
        candidate={"log_loss": 0.3},
        search=({"C": np.float64(-math.inf), "score": np.float32(0.5), "chosen": True},),
    )
    out = report.to_dict()
    assert out["what_changed"]["parameters"] == {
        "C": {"from": 1.0, "to": None},
        "alphas": [0.1, None],
    }
    assert out["holdout"]["champion"] == {"log_loss": None}
    assert out["holdout"]["improvement"] is None  # inf - 0.3, lower is better
    assert out["search"] == [{"C": None, "score": 0.5, "chosen": True}]
    text = json.dumps(out, allow_nan=False)  # strict JSON: no NaN/Infinity tokens
    assert json.loads(text) == out
