"""One contract for every runtime: scikit-learn, PyTorch (state dict and TorchScript),
ONNX (with and without ZipMap) and plain callables, for classification and regression.

Each case trains (or builds) a small native model on the preprocessed training
matrix, wraps it with ``sidecar.wrap`` and checks the same promises: shapes and
dtypes, probabilities that are distributions agreeing with the labels,
predictions equal to the framework's own, a save/load round trip that changes
nothing, a shadow pair, and a manifest entry for every part.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sidecar
from sidecar.runtimes import (
    CallablePredictor,
    OnnxPredictor,
    SklearnPredictor,
    TorchPredictor,
)
from tests import models

N_FEATURES = len(models.COLUMNS_NUMERIC) + 1  # numeric fields + the ordinal `color`
N_CLASSES = 3
PARTS = ("preprocessing", "advanced", "baseline", "reference")


@dataclass(frozen=True)
class Case:
    framework: str  # sklearn, torch_state_dict, torchscript, onnx, onnx_zipmap, callable
    task: str

    @property
    def id(self) -> str:
        return f"{self.framework}-{self.task}"


FRAMEWORKS = ("sklearn", "torch_state_dict", "torchscript", "onnx", "onnx_zipmap", "callable")
CASES = [
    Case(framework, task)
    for task in ("classification", "regression")
    for framework in FRAMEWORKS
    if not (framework == "onnx_zipmap" and task == "regression")  # ZipMap is for classifiers
]

#: What each case's advanced part must look like in the manifest.
EXPECTED_RUNTIME = {
    "sklearn": (SklearnPredictor, "sklearn", "skops"),
    "torch_state_dict": (TorchPredictor, "torch", "state_dict"),
    "torchscript": (TorchPredictor, "torch", "torchscript"),
    "onnx": (OnnxPredictor, "onnx", "onnx"),
    "onnx_zipmap": (OnnxPredictor, "onnx", "onnx"),
    "callable": (CallablePredictor, "callable", "import-path"),
}


@dataclass
class Built:
    """A native model, how to wrap it, and how the framework itself predicts."""

    model: Any
    native: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    wrap_kwargs: dict[str, Any] = field(default_factory=dict)
    rtol: float = 0.0
    atol: float = 0.0


@dataclass
class Wrapped:
    case: Case
    bundle: sidecar.Bundle
    built: Built
    train: tuple[list[dict[str, Any]], np.ndarray]
    ref: tuple[list[dict[str, Any]], np.ndarray]
    X_ref: np.ndarray
    path: Path


# -- building one native model per case ------------------------------------------------


def _train_torch(module: Any, X: np.ndarray, y: np.ndarray, task: str) -> Any:
    import torch

    Xt = torch.tensor((X - X.mean(axis=0)) / X.std(axis=0), dtype=torch.float32)
    # Train on standardised inputs, then fold the standardisation into the first
    # layer so the module takes the raw preprocessed matrix.
    if task == "classification":
        yt = torch.tensor(y, dtype=torch.long)
        loss_fn: Any = torch.nn.CrossEntropyLoss()
    else:
        yt = torch.tensor(y, dtype=torch.float32)[:, None]
        loss_fn = torch.nn.MSELoss()
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(module(Xt), yt)
        loss.backward()
        opt.step()
    first = module[0]
    mean = torch.tensor(X.mean(axis=0), dtype=torch.float32)
    std = torch.tensor(X.std(axis=0), dtype=torch.float32)
    with torch.no_grad():
        first.bias -= (first.weight / std) @ mean
        first.weight /= std
    return module.eval()


def _torch_native(module: Any, task: str, classes: np.ndarray) -> Callable[..., Any]:
    import torch

    def native(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.no_grad():
            out = module(torch.tensor(X, dtype=torch.float32))
        if task == "regression":
            return out[:, 0].numpy().astype(np.float64), None
        proba = torch.softmax(out, dim=1).numpy()
        return classes.take(out.numpy().argmax(axis=1)), proba

    return native


def _script(module: Any) -> Any:
    import torch

    with pytest.warns(DeprecationWarning, match="torch.jit.script"):
        return torch.jit.script(module)


def _onnx_native(model_proto: Any, task: str, zipmap: bool) -> Callable[..., Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(
        model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )

    def native(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = session.run(None, {"X": X.astype(np.float32)})
        if task == "regression":
            return outputs[0][:, 0].astype(np.float64), None
        labels, proba = outputs
        if zipmap:
            proba = np.array([[row[k] for k in sorted(row)] for row in proba])
        return np.asarray(labels), np.asarray(proba)

    return native


def build(case: Case, X: np.ndarray, y: np.ndarray) -> Built:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classification = case.task == "classification"
    classes = np.arange(N_CLASSES)
    if case.framework == "sklearn":
        if classification:
            clf = RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0).fit(X, y)
            return Built(clf, lambda X: (clf.predict(X), clf.predict_proba(X)))
        reg = RandomForestRegressor(n_estimators=15, max_depth=5, random_state=0).fit(X, y)
        return Built(reg, lambda X: (reg.predict(X), None))

    if case.framework in ("torch_state_dict", "torchscript"):
        import torch

        torch.manual_seed(0)
        if classification:
            kwargs = {"n_features": N_FEATURES, "n_classes": N_CLASSES}
            module = _train_torch(models.make_mlp_classifier(**kwargs), X, y, case.task)
            factory = "tests.models:make_mlp_classifier"
        else:
            kwargs = {"n_features": N_FEATURES}
            module = _train_torch(models.make_mlp_regressor(**kwargs), X, y, case.task)
            factory = "tests.models:make_mlp_regressor"
        if case.framework == "torchscript":
            scripted = _script(module)
            return Built(scripted, _torch_native(scripted, case.task, classes), atol=1e-6)
        return Built(
            module,
            _torch_native(module, case.task, classes),
            wrap_kwargs={"model_options": {"factory": factory, "factory_kwargs": kwargs}},
            atol=1e-6,
            rtol=1e-6,
        )

    if case.framework in ("onnx", "onnx_zipmap"):
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        zipmap = case.framework == "onnx_zipmap"
        est: Any
        if classification:
            est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
            options = {id(est): {"zipmap": zipmap}}
        else:
            est = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, y)
            options = {}
        proto = convert_sklearn(
            est, initial_types=[("X", FloatTensorType([None, N_FEATURES]))], options=options
        )
        model: Any = proto
        if zipmap:
            # Hand this one over as a live session: the runtime must find its bytes.
            import onnxruntime as ort

            model = ort.InferenceSession(
                proto.SerializeToString(), providers=["CPUExecutionProvider"]
            )
        built = Built(model, _onnx_native(proto, case.task, zipmap), atol=1e-6, rtol=1e-6)
        built.wrap_kwargs["_sklearn_twin"] = est
        return built

    assert case.framework == "callable"
    if classification:
        fn = models.linear_class_probabilities
        return Built(
            "tests.models:linear_class_probabilities",
            lambda X: (classes.take(fn(X).argmax(axis=1)), fn(X)),
        )
    return Built(
        "tests.models:linear_regression_values",
        lambda X: (models.linear_regression_values(X), None),
    )


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasets() -> dict[str, tuple[Any, ...]]:
    return {
        "classification": models.make_classification_data(n_train=150, n_ref=60, seed=3),
        "regression": models.make_regression_data(n_train=150, n_ref=60, seed=3),
    }


@pytest.fixture(scope="module")
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def wrapped(
    case: Case, datasets: dict[str, tuple[Any, ...]], tmp_path_factory: pytest.TempPathFactory
) -> Wrapped:
    train, y_train, ref, y_ref = datasets[case.task]
    own = sidecar.TabularPreprocessor(columns=models.preprocessing_columns()).fit(train)
    X_train, X_ref = own.transform(train), own.transform(ref)
    built = build(case, X_train, y_train)
    kwargs = {k: v for k, v in built.wrap_kwargs.items() if not k.startswith("_")}
    bundle = sidecar.wrap(
        built.model,
        task=case.task,
        preprocessing=sidecar.TabularPreprocessor(columns=models.preprocessing_columns()),
        train=(train, y_train),
        reference=(ref, y_ref),
        name=f"contract-{case.id}",
        **kwargs,
    )
    path = bundle.save(tmp_path_factory.mktemp(case.id) / "bundle")
    return Wrapped(case, bundle, built, (train, y_train), (ref, y_ref), X_ref, path)


def _code_names(bundle: sidecar.Bundle) -> list[str]:
    """The import paths the advanced model's manifest entry names (a factory, a callable)."""
    meta = bundle.manifest["parts"]["advanced"]
    return [meta[k] for k in ("factory", "path") if meta.get(k)]


# -- the contract ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES], indirect=True, scope="module")
class TestRuntimeContract:
    def test_is_a_predictor(self, wrapped: Wrapped) -> None:
        bundle, case = wrapped.bundle, wrapped.case
        runtime, framework, _ = EXPECTED_RUNTIME[case.framework]
        assert isinstance(bundle.advanced, sidecar.Predictor)
        assert isinstance(bundle.baseline, sidecar.Predictor)
        assert isinstance(bundle.advanced, runtime)
        assert bundle.advanced.framework == framework
        assert bundle.advanced.task == case.task
        assert bundle.baseline.framework == "sklearn"
        if case.task == "classification":
            assert bundle.advanced.classes == (0, 1, 2)
            assert bundle.baseline.classes == (0, 1, 2)
        else:
            assert bundle.advanced.classes is None

    def test_preprocessing_is_the_one_the_model_was_trained_on(self, wrapped: Wrapped) -> None:
        X = wrapped.bundle.preprocessing.transform(wrapped.ref[0])
        np.testing.assert_array_equal(X, wrapped.X_ref)
        assert X.shape == (len(wrapped.ref[0]), N_FEATURES)

    def test_prediction_shape_and_dtype(self, wrapped: Wrapped) -> None:
        bundle, ref = wrapped.bundle, wrapped.ref[0]
        pred = bundle.predict(ref)
        n = len(ref)
        assert len(pred) == n
        assert pred.predictions.shape == (n,)
        assert pred.bundle_version == bundle.version
        assert pred.preprocessing_version == bundle.preprocessing_version
        assert len(set(pred.request_ids)) == n
        if wrapped.case.task == "classification":
            assert pred.predictions.dtype.kind in "iu"
            assert pred.probabilities is not None
            assert pred.probabilities.shape == (n, N_CLASSES)
            assert pred.probabilities.dtype == np.float64
            assert pred.classes == (0, 1, 2)
        else:
            assert pred.predictions.dtype == np.float64
            assert pred.probabilities is None
            assert pred.classes is None
            assert np.isfinite(pred.predictions).all()

    def test_probabilities_are_distributions_matching_labels(self, wrapped: Wrapped) -> None:
        bundle, ref = wrapped.bundle, wrapped.ref[0]
        pred = bundle.predict(ref)
        if wrapped.case.task == "regression":
            with pytest.raises(sidecar.InputError, match="classifier"):
                bundle.predict_proba(ref)
            return
        proba = pred.probabilities
        assert proba is not None
        assert (proba >= 0).all() and (proba <= 1).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)
        classes = np.asarray(bundle.advanced.classes)
        np.testing.assert_array_equal(pred.predictions, classes.take(proba.argmax(axis=1)))
        assert set(pred.predictions.tolist()) <= set(classes.tolist())
        np.testing.assert_array_equal(bundle.predict_proba(ref), proba)

    def test_predictions_equal_the_native_framework(self, wrapped: Wrapped) -> None:
        pred = wrapped.bundle.predict(wrapped.ref[0])
        labels, proba = wrapped.built.native(wrapped.X_ref)
        tol = {"rtol": wrapped.built.rtol, "atol": wrapped.built.atol}
        if wrapped.case.task == "classification":
            assert proba is not None and pred.probabilities is not None
            np.testing.assert_allclose(pred.probabilities, proba, **tol)
            np.testing.assert_array_equal(pred.predictions, labels)
        else:
            np.testing.assert_allclose(pred.predictions, labels, **tol)
        twin = wrapped.built.wrap_kwargs.get("_sklearn_twin")
        if twin is not None:  # an ONNX model also agrees with the estimator it came from
            if wrapped.case.task == "classification":
                np.testing.assert_allclose(
                    pred.probabilities, twin.predict_proba(wrapped.X_ref), rtol=0, atol=1e-4
                )
            else:
                np.testing.assert_allclose(
                    pred.predictions, twin.predict(wrapped.X_ref), rtol=1e-5, atol=1e-4
                )

    def test_small_batches_agree_with_large_ones(self, wrapped: Wrapped) -> None:
        # Fewer than 8 records take the row-by-row encoder, more take the columnar one.
        bundle, ref = wrapped.bundle, wrapped.ref[0]
        whole = bundle.predict(ref)
        for i in (0, 7, len(ref) - 1):
            one = bundle.predict([ref[i]])
            tol = {"rtol": max(wrapped.built.rtol, 1e-6), "atol": max(wrapped.built.atol, 1e-6)}
            if wrapped.case.task == "classification":
                assert one.probabilities is not None and whole.probabilities is not None
                np.testing.assert_allclose(one.probabilities[0], whole.probabilities[i], **tol)
            else:
                np.testing.assert_allclose(one.predictions[0], whole.predictions[i], **tol)

    def test_save_load_round_trip(self, wrapped: Wrapped) -> None:
        bundle, ref = wrapped.bundle, wrapped.ref[0]
        code = _code_names(bundle)
        if code:  # an import path runs code: it loads only when trusted by its exact name
            with pytest.raises(sidecar.BundleError, match=re.escape(code[0])):
                sidecar.load(wrapped.path)
        loaded = sidecar.load(wrapped.path, trusted=code)
        assert loaded.version == bundle.version
        assert loaded.preprocessing_version == bundle.preprocessing_version
        assert loaded.info()["parts"] == bundle.info()["parts"]
        assert loaded.info()["path"] == str(wrapped.path)
        runtime, framework, fmt = EXPECTED_RUNTIME[wrapped.case.framework]
        assert isinstance(loaded.advanced, runtime)
        assert loaded.info()["parts"]["advanced"]["framework"] == framework
        assert loaded.info()["parts"]["advanced"]["format"] == fmt
        before, after = bundle.predict(ref), loaded.predict(ref)
        np.testing.assert_array_equal(after.predictions, before.predictions)
        if wrapped.case.task == "classification":
            np.testing.assert_array_equal(after.probabilities, before.probabilities)
            assert after.classes == before.classes
        else:
            assert after.probabilities is None
        assert after.bundle_version == before.bundle_version

    def test_predict_shadow_returns_both_models(self, wrapped: Wrapped) -> None:
        bundle, ref = wrapped.bundle, wrapped.ref[0]
        for b in (bundle, sidecar.load(wrapped.path, trusted=_code_names(bundle))):
            pair = b.predict_shadow(ref, timeout=10)
            assert pair.baseline_error is None
            assert pair.baseline is not None
            assert pair.baseline_latency_ms is not None and pair.baseline_latency_ms >= 0
            assert len(pair.baseline.predictions) == len(pair.advanced) == len(ref)
            np.testing.assert_array_equal(
                pair.advanced.predictions, bundle.predict(ref).predictions
            )
            if wrapped.case.task == "classification":
                assert pair.baseline.probabilities is not None
                assert pair.baseline.probabilities.shape == (len(ref), N_CLASSES)
            else:
                assert pair.baseline.probabilities is None
            assert b.shadow.counters.errors == 0

    def test_info_lists_every_part(self, wrapped: Wrapped) -> None:
        bundle = wrapped.bundle
        info = bundle.info()
        assert info["version"] == bundle.version
        assert info["task"] == wrapped.case.task
        assert info["name"] == f"contract-{wrapped.case.id}"
        assert info["parent"] is None
        assert info["input_fields"] == [*(n for n, _, _ in models.COLUMNS_NUMERIC), "color"]
        assert info["classes"] == ([0, 1, 2] if wrapped.case.task == "classification" else None)
        assert set(info["parts"]) == set(PARTS)
        for part in PARTS:
            meta = info["parts"][part]
            assert isinstance(meta["version"], str) and meta["version"], part
            assert re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]), part
        assert info["parts"]["preprocessing"]["version"] == bundle.preprocessing_version
