"""Inputs at the edge of what a float holds: the baseline's NaN is an error, counted, never
a stored probability."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import sidecar
from sidecar.recording import Recorder, open_store


def test_non_finite_baseline_output_is_a_counted_shadow_error(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    bundle = sidecar.load(quickstart_bundle)
    extreme = {k: (1.7e308 if i % 2 else -1.7e308) for i, k in enumerate(quickstart_records[0])}
    store = open_store(f"sqlite:///{tmp_path / 'records.db'}")
    recorder = Recorder(store)
    bundle.attach_recorder(recorder)
    try:
        with warnings.catch_warnings():
            # the baseline's own overflow warnings (X @ w with +-1.7e308)
            warnings.simplefilter("ignore", RuntimeWarning)
            bad = bundle.predict_shadow([extreme])
            good = bundle.predict_shadow(quickstart_records[:2])
        assert recorder.flush(10.0)
        rows = {r["request_id"]: r for chunk in store.iter_joined() for r in chunk}
    finally:
        recorder.close()
        bundle.attach_recorder(None)
        store.close()
    # The advanced model still answered (a gradient-boosted model takes any float) ...
    assert len(bad.advanced.predictions) == 1
    # ... the baseline's NaN did not become an answer: an error, counted and recorded.
    assert bad.baseline is None and "not finite" in (bad.baseline_error or "")
    assert bundle.shadow.counters.errors == 1
    row = rows[bad.advanced.request_ids[0]]
    assert row["baseline_proba"] is None and row["baseline_prediction"] is None
    assert "not finite" in row["shadow_error"]
    # Ordinary requests are untouched.
    assert good.baseline is not None and good.baseline_error is None
    for rid in good.advanced.request_ids:
        proba = json.loads(rows[rid]["baseline_proba"])
        assert abs(sum(proba) - 1.0) < 1e-9
