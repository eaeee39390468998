"""``sidecar.predict`` / ``sidecar.feedback`` on a bundle directory or object, and model files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sidecar
from sidecar.bundle import framework_of, read_model
from sidecar.recording import Recorder, open_store


def test_predict_takes_a_directory_or_a_bundle(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    bundle = sidecar.load(quickstart_bundle)
    by_path = sidecar.predict(quickstart_bundle, quickstart_records[:5])
    by_object = sidecar.predict(bundle, quickstart_records[:5])
    np.testing.assert_array_equal(by_path.predictions, by_object.predictions)
    np.testing.assert_allclose(by_path.probabilities, bundle.predict_proba(quickstart_records[:5]))
    assert by_path.bundle_version == bundle.version


def test_feedback_joins_labels_through_a_store_url(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = open_store(url)
    bundle = sidecar.load(quickstart_bundle)
    recorder = Recorder(store)
    bundle.attach_recorder(recorder)
    try:
        pred = sidecar.predict(bundle, quickstart_records[:3])
        bundle.shadow.drain(10.0)
        assert recorder.flush(10.0)
    finally:
        recorder.close()
        bundle.attach_recorder(None)
        store.close()
    label = pred.predictions[0].item()
    labels = [{"request_id": rid, "label": label} for rid in pred.request_ids]
    labels.append({"request_id": "unknown-1", "label": label})
    result = sidecar.feedback(quickstart_bundle, labels, store=url)
    assert result.accepted == 3 and result.unknown_request_ids == ("unknown-1",)
    with pytest.raises(sidecar.InputError, match="label"):
        sidecar.feedback(quickstart_bundle, [{"request_id": "x", "label": "nope"}], store=url)
    with pytest.raises(sidecar.InputError, match="feedback needs a store"):
        sidecar.feedback(quickstart_bundle, labels)


def test_read_model_by_extension(quickstart_bundle: Path, tmp_path: Path) -> None:
    assert framework_of("m.skops") == "sklearn" and framework_of("m.onnx") == "onnx"
    assert framework_of("pkg.mod:make") == "callable"
    model, framework, options = read_model(quickstart_bundle / "advanced" / "model.skops")
    assert framework == "sklearn" and options == {}
    assert hasattr(model, "predict_proba")
    with pytest.raises(sidecar.InputError, match=r"model must be an existing model file"):
        read_model(tmp_path / "missing.skops")
    with open(tmp_path / "m.pkl", "wb") as fh:
        pickle.dump(model, fh)
    with pytest.raises(sidecar.InputError, match="allow_pickle=True"):
        read_model(tmp_path / "m.pkl")
    again, framework, _ = read_model(tmp_path / "m.pkl", allow_pickle=True)
    assert framework == "pickle" and type(again) is type(model)
    assert read_model("pkg.mod:make") == ("pkg.mod:make", "callable", {})
