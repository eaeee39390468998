"""The shadow pipeline hands the recorder one batch per micro-batch, encoded as before."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import sidecar
from sidecar.recording import RecordPolicy
from sidecar.recording._records import ServedBatch, encode_served
from sidecar.shadow import ShadowItem, ShadowPipeline


class ListSink:
    def __init__(self) -> None:
        self.batches: list[ServedBatch] = []

    def enqueue(self, rows: ServedBatch) -> bool:
        self.batches.append(rows)
        return True


def _items(bundle: Any, groups: list[list[dict[str, Any]]]) -> list[ShadowItem]:
    out = []
    for records in groups:
        X, pred = bundle._predict(records, None)
        out.append(ShadowItem([dict(r) for r in records], X, pred, None))
    return out


def test_one_batch_per_micro_batch_with_per_record_latencies(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    bundle = sidecar.load(quickstart_bundle)
    sink = ListSink()
    dropped, kept = list(quickstart_records[0])[:2]
    pipeline = ShadowPipeline(bundle, recorder=sink, policy=RecordPolicy(exclude=(dropped,)))
    sizes = [1, 3, 1, 5]
    groups, at = [], 0
    for n in sizes:
        groups.append(quickstart_records[at : at + n])
        at += n
    items = _items(bundle, groups)
    results = pipeline.run(items)
    assert len(sink.batches) == 1  # the whole micro-batch, not one batch per request
    (table,) = encode_served(sink.batches)
    assert table.num_rows == sum(sizes)
    assert table.column("request_id").to_pylist() == [
        rid for it in items for rid in it.prediction.request_ids
    ]
    # each record carries its own request's latencies (the baseline's: its request's share)
    expected_base = np.repeat([r.latency_ms for r in results], sizes)
    np.testing.assert_allclose(table.column("baseline_latency_ms").to_numpy(), expected_base)
    expected_adv = np.repeat([it.prediction.latency_ms for it in items], sizes)
    np.testing.assert_allclose(table.column("advanced_latency_ms").to_numpy(), expected_adv)
    # the features the model saw, and the baseline's answers, row for row
    features = np.vstack([it.features for it in items])
    got = np.asarray(table.column("features").to_pylist())
    np.testing.assert_allclose(got, features)
    base = bundle.baseline.infer(features)
    np.testing.assert_allclose(
        np.asarray(table.column("baseline_proba").to_pylist()), base.probabilities
    )
    # the policy is applied on the way to the store
    assert f"raw:{dropped}" not in table.column_names and f"raw:{kept}" in table.column_names
    assert table.column("shadow_error").null_count == table.num_rows
    assert bundle.stats.shadow_compared == sum(sizes)


def test_a_non_finite_item_is_its_own_batch(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    bundle = sidecar.load(quickstart_bundle)
    sink = ListSink()
    pipeline = ShadowPipeline(bundle, recorder=sink)
    extreme = {k: (1.7e308 if i % 2 else -1.7e308) for i, k in enumerate(quickstart_records[0])}
    items = _items(bundle, [quickstart_records[:2], [extreme], quickstart_records[2:4]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = pipeline.run(items)
    assert [r.output is None for r in results] == [False, True, False]
    assert [len(b) for b in sink.batches] == [2, 1, 2]
    tables = encode_served(sink.batches)
    table = pa.concat_tables(tables, promote_options="permissive")
    errors = table.column("shadow_error").to_pylist()
    assert errors[0] is None and errors[1] is None and errors[3] is None
    assert "not finite" in errors[2]
    assert table.column("baseline_proba").to_pylist()[2] is None
    assert pipeline.runner.counters.errors == 1
    assert bundle.stats.shadow_compared == 4  # the item without an answer is not compared


@pytest.mark.parametrize("n_items", [1, 40], ids=["one", "many"])
def test_writer_encoding_matches_one_batch_per_item(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]], n_items: int
) -> None:
    """The micro-batch encodes to the very table the per-request batches gave."""
    bundle = sidecar.load(quickstart_bundle)
    sink = ListSink()
    pipeline = ShadowPipeline(bundle, recorder=sink)
    items = _items(bundle, [[quickstart_records[i % 50]] for i in range(n_items)])
    pipeline.run(items)
    whole = pa.concat_tables(encode_served(sink.batches))
    per_item = []
    for item in items:
        one = ListSink()
        ShadowPipeline(bundle, recorder=one).run([item])
        per_item.extend(encode_served(one.batches))
    apart = pa.concat_tables(per_item)
    assert whole.schema == apart.schema
    for name in whole.column_names:
        if name.endswith("latency_ms"):
            continue  # measured again
        if name == "baseline_proba":  # one matrix product against forty: last-bit noise
            np.testing.assert_allclose(
                np.asarray(whole.column(name).to_pylist(), dtype=float),
                np.asarray(apart.column(name).to_pylist(), dtype=float),
                rtol=1e-12,
            )
            continue
        assert whole.column(name).to_pylist() == apart.column(name).to_pylist(), name


def test_per_record_columns_of_requests_of_several_records(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    """Times, latencies and the candidate's share land on every record of their request."""
    bundle = sidecar.load(quickstart_bundle)
    candidate = sidecar.load(quickstart_bundle)
    sink = ListSink()
    pipeline = ShadowPipeline(bundle, recorder=sink, candidate=candidate)
    sizes = [2, 1, 3]
    groups = [quickstart_records[0:2], quickstart_records[2:3], quickstart_records[3:6]]
    stamps = [1_700_000_000.0, 1_700_000_001.0, 1_700_000_002.0]
    items = []
    for records, n in zip(groups, sizes, strict=True):
        given = stamps[:n] if n == 3 else None  # one request replays its own times
        X, pred = bundle._predict(records, given)
        items.append(ShadowItem([dict(r) for r in records], X, pred, given))
    pipeline.run(items)
    (table,) = encode_served(sink.batches)
    expected_ts = [items[0].prediction.ts] * 2 + [items[1].prediction.ts] + stamps
    np.testing.assert_allclose(table.column("ts").to_numpy(), expected_ts)
    expected_adv = np.repeat([it.prediction.latency_ms for it in items], sizes)
    np.testing.assert_allclose(table.column("advanced_latency_ms").to_numpy(), expected_adv)
    # the candidate's time is shared by request, in proportion to its records
    cand = table.column("candidate_latency_ms").to_numpy()
    per_record_share = cand / np.repeat(sizes, sizes)
    np.testing.assert_allclose(per_record_share, per_record_share[0])
    assert table.column("candidate_version").to_pylist() == [candidate.version] * sum(sizes)
    np.testing.assert_allclose(
        np.asarray(table.column("candidate_proba").to_pylist()),
        np.asarray(table.column("advanced_proba").to_pylist()),
    )


def test_a_compiled_baseline_runs_on_the_shadow_thread_and_is_counted_alike(
    quickstart_bundle: Path, quickstart_records: list[dict[str, Any]]
) -> None:
    """No hand-over to a model thread for NumPy arithmetic; a replaced ``infer`` still gets one."""
    bundle = sidecar.load(quickstart_bundle)
    assert bundle.baseline.bounded  # type: ignore[attr-defined]
    pipeline = ShadowPipeline(bundle, recorder=ListSink())
    (result,) = pipeline.run(_items(bundle, [quickstart_records[:3]]))
    assert result.output is not None and result.error is None
    assert pipeline.runner._model is None  # no model thread was started
    assert pipeline.runner.counters.completed == 1

    def broken(X: np.ndarray) -> Any:
        raise RuntimeError("no")

    bundle.baseline.infer = broken  # type: ignore[method-assign]
    assert not bundle.baseline.bounded  # type: ignore[attr-defined]
    (result,) = pipeline.run(_items(bundle, [quickstart_records[:1]]))
    assert result.output is None and result.error == "RuntimeError: no"
    assert pipeline.runner._model is not None  # timed on the model thread, as any model


def test_an_inline_call_is_counted_like_a_threaded_one() -> None:
    from sidecar.shadow import ShadowRunner

    runner = ShadowRunner(timeout=0.01)
    assert runner.call(lambda: 7, inline=True) == (7, None)
    value, reason = runner.call(lambda: time.sleep(0.05), inline=True)
    assert value is None and reason is not None and reason.startswith("timeout")
    value, reason = runner.call(lambda: 1 / 0, inline=True)
    assert value is None and reason == "ZeroDivisionError: division by zero"
    c = runner.counters
    assert (c.completed, c.timeouts, c.errors, c.abandoned_threads) == (3, 1, 1, 0)
