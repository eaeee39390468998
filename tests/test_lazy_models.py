"""``sidecar.load(..., lazy_models=True)``: refused at load as an eager load is, read on first use.

What the analysis commands load: the models' trust is checked when the bundle
loads (the same refusals, the same messages), and a model is deserialised --
its framework imported -- only when it is first used, from bytes hashed again
then: a file changed after the load is refused, not loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sidecar
from tests.test_hostile_bundles import (  # the bundles and the attacks on them
    ATTACKS,
    FACTORY,
    Edit,
    hostile,
    sklearn_bundle,
    torch_bundle,
)

__all__ = ["sklearn_bundle", "torch_bundle"]  # fixtures, used by name

RECORDS = [{"a": 0.5, "b": -1.0}, {"a": -2.0, "b": 0.25}, {"a": 1.5, "b": 1.5}]


@pytest.mark.parametrize(
    ("kind", "edit", "message"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_a_lazy_load_refuses_at_load_what_a_load_refuses(
    sklearn_bundle: Path,
    torch_bundle: Path,
    tmp_path: Path,
    kind: str,
    edit: Edit,
    message: str,
) -> None:
    root, marker = hostile({"sklearn": sklearn_bundle, "torch": torch_bundle}[kind], tmp_path, edit)
    with pytest.raises(sidecar.BundleError, match=message):
        sidecar.load(root, lazy_models=True)
    with pytest.raises(sidecar.BundleError, match=message):
        sidecar.load(root, trusted=["numpy", "subprocess", "tests.models:other"], lazy_models=True)
    assert not marker.exists()


def test_a_lazy_model_loads_on_first_use_and_predicts_the_same(sklearn_bundle: Path) -> None:
    eager = sidecar.load(sklearn_bundle)
    lazy = sidecar.load(sklearn_bundle, lazy_models=True)
    assert "not loaded yet" in repr(lazy.advanced) and "not loaded yet" in repr(lazy.baseline)
    assert lazy.advanced.classes == eager.advanced.classes == (0, 1)
    assert lazy.info() == {**eager.info(), "path": lazy.info()["path"]}
    assert "not loaded yet" in repr(lazy.advanced)  # classes and info come from the manifest
    got, want = lazy.predict(RECORDS, shadow=False), eager.predict(RECORDS, shadow=False)
    np.testing.assert_array_equal(got.probabilities, want.probabilities)
    assert "loaded" in repr(lazy.advanced) and "not" not in repr(lazy.advanced)
    assert type(lazy.advanced.estimator).__name__ == "LogisticRegression"  # the runtime's own


def test_a_model_file_changed_after_a_lazy_load_is_refused(
    sklearn_bundle: Path, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "bundle"
    shutil.copytree(sklearn_bundle, root)
    lazy = sidecar.load(root, lazy_models=True)
    model = root / "advanced" / "model.skops"
    model.write_bytes(bytes(reversed(model.read_bytes())))  # same size, other bytes
    with pytest.raises(sidecar.BundleError, match="part 'advanced' changed after the bundle"):
        lazy.predict(RECORDS, shadow=False)
    with pytest.raises(sidecar.BundleError, match="changed after"):
        _ = lazy.advanced.estimator  # every way in re-checks, none loads


def test_a_lazy_torch_bundle_imports_no_torch_until_it_predicts(torch_bundle: Path) -> None:
    """The analysis commands' load of a PyTorch bundle: the manifest's framework and classes,
    its factory trusted by name, and torch imported only when the model runs."""
    script = f"""
import sys
import sidecar
bundle = sidecar.load({str(torch_bundle)!r}, trusted=[{FACTORY!r}], lazy_models=True)
assert bundle.advanced.framework == "torch" and bundle.advanced.classes == (0, 1)
from adapters import model_family
assert model_family(bundle) == "neural"
assert "torch" not in sys.modules, "torch was imported before the model ran"
try:
    sidecar.load({str(torch_bundle)!r}, lazy_models=True)
except sidecar.BundleError as exc:
    assert "field `factory` is the import path" in str(exc)
else:
    raise AssertionError("an untrusted factory loaded")
print(bundle.predict([{{"a": 0.5, "b": -1.0}}]).predictions.tolist(), "torch" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("[0] True", "[1] True")


def test_a_pickled_model_is_refused_at_a_lazy_load_without_allow_pickle(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    records = [{"a": float(a), "b": float(b)} for a, b in X]
    bundle = sidecar.wrap(
        LogisticRegression().fit(X, y),
        task="classification",
        framework="pickle",
        preprocessing=sidecar.TabularPreprocessor(
            columns=[sidecar.NumericColumn(name="a"), sidecar.NumericColumn(name="b")]
        ),
        train=(records, y),
        reference=(records, y),
    )
    path = bundle.save(tmp_path / "pickled")
    with pytest.raises(sidecar.BundleError, match="holds a pickled model"):
        sidecar.load(path, lazy_models=True)
    lazy = sidecar.load(path, allow_pickle=True, lazy_models=True)
    eager = sidecar.load(path, allow_pickle=True)
    np.testing.assert_array_equal(
        lazy.predict(records, shadow=False).predictions,
        eager.predict(records, shadow=False).predictions,
    )


@pytest.mark.parametrize("lazy", [True, False])
def test_a_torch_part_of_an_unknown_format_is_refused_by_one_rule_eager_or_lazy(
    tmp_path: Path, lazy: bool
) -> None:
    """Eager or lazy, one rule refuses a `format` other than torchscript and state_dict,
    naming the field and what came."""
    from sidecar.runtimes._lazy import check_part
    from sidecar.runtimes._torch import TorchPredictor

    part = tmp_path / "advanced"
    part.mkdir()
    (part / "model.pt").write_bytes(b"not read")
    meta = {"framework": "torch", "task": "classification", "file": "model.pt", "format": "pkl"}
    with pytest.raises(sidecar.BundleError) as refused:
        if lazy:
            check_part(part, meta, trusted=(), allow_pickle=False)
        else:
            TorchPredictor.load(part, meta)
    assert "part 'advanced' field `format` must be 'torchscript' or 'state_dict'" in str(
        refused.value
    )
    assert "got 'pkl'" in str(refused.value)
