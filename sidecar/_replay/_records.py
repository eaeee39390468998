"""Replay: run a whole data set through the serving path and record it, labels included.

It is how a user backtests monitoring on history, and how tests build
realistic stores quickly: the same ``Bundle.predict_shadow`` and recorder as
serving, with the record's own timestamps instead of "now". Records given as
an Arrow table (or a pandas DataFrame) take the column path instead
(``_table``): the same features, answers and labels, stored without a
dict a record -- what ``sidecar replay`` does with a data file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import InputError
from ..bundle._bundle import Bundle
from ..recording import Label, Recorder, RecordPolicy, Store
from ..shadow import ShadowItem, ShadowPipeline

__all__ = ["ReplayResult", "replay"]


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: records recorded, labels joined or unknown, rows dropped, seconds."""

    records: int
    labels_accepted: int
    labels_unknown: int
    dropped: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def replay(
    bundle: Bundle,
    records: Sequence[Mapping[str, Any]] | Any,
    *,
    store: Store,
    labels: Sequence[Any] | None = None,
    timestamps: Sequence[float] | None = None,
    label_timestamps: Sequence[float | None] | None = None,
    batch_size: int = 1000,
    policy: RecordPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Predict ``records`` in batches as the service would, record them, then join ``labels``.

    ``timestamps`` (epoch seconds) become the records' times; labels are
    stamped ``label_timestamps`` (the record's time when not given). A record
    whose label, or whose label timestamp, is ``None`` stays unlabelled: its
    label never arrived.

    ``records`` may be an Arrow table or a pandas DataFrame: then every input
    is checked before anything is stored (a bad value, label or time records
    nothing), and each chunk of records is stored with its labels in one
    transaction.

    ``store`` and ``policy`` apply to the replay only: a recorder (and its
    policy) attached to ``bundle`` stays as it is and records none of it.
    """
    table = _as_table(records)
    n = table.num_rows if table is not None else len(records)
    for name, seq in (
        ("labels", labels),
        ("timestamps", timestamps),
        ("label_timestamps", label_timestamps),
    ):
        if seq is not None and len(seq) != n:
            raise InputError(f"`{name}` must have one entry per record ({n}); got {len(seq)}.")
    if batch_size < 1:
        raise InputError(f"`batch_size` must be a positive integer; got {batch_size}.")
    if table is not None:
        from ._table import replay_table

        return replay_table(
            bundle, table, store=store, labels=labels, timestamps=timestamps,
            label_timestamps=label_timestamps, batch_size=batch_size, policy=policy,
            progress=progress,
        )  # fmt: skip
    return _replay_rows(
        bundle, records, store=store, labels=labels, timestamps=timestamps,
        label_timestamps=label_timestamps, batch_size=batch_size, policy=policy,
        progress=progress,
    )  # fmt: skip


def _replay_rows(
    bundle: Bundle,
    records: Sequence[Mapping[str, Any]],
    *,
    store: Store,
    labels: Sequence[Any] | None,
    timestamps: Sequence[float] | None,
    label_timestamps: Sequence[float | None] | None,
    batch_size: int,
    policy: RecordPolicy | None,
    progress: Callable[[int, int], None] | None,
) -> ReplayResult:
    """The row path: batches of records through ``Bundle.predict`` and a recorder of its own."""
    n = len(records)
    start = time.perf_counter()
    recorder = Recorder(store, batch_size=50_000, max_queue=400_000)
    # The bundle's own shadow stage (its recorder, policy) is left as it is: the
    # replay's records go through a stage of their own, run as each batch is predicted.
    runner = bundle.shadow
    sink = _RunNow(
        ShadowPipeline(
            bundle,
            recorder=recorder,
            policy=policy,
            candidate=bundle.candidate,
            timeout=runner.timeout,
            counters=runner.counters,
        )
    )
    accepted = unknown = 0
    try:
        ids: list[str] = []
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            ts = None if timestamps is None else timestamps[lo:hi]
            try:
                pred = bundle.predict(records[lo:hi], shadow=sink, timestamps=ts)
            except InputError as exc:
                raise InputError(f"records {lo}..{hi - 1} (numbered from 0): {exc}") from exc
            ids.extend(pred.request_ids)
            if recorder.pending() > 200_000:
                recorder.flush()
            if progress is not None:
                progress(hi, n)
        if not recorder.flush(timeout=300.0):
            raise InputError("the store did not take the records within 5 minutes; see its logs.")
        if labels is not None:
            accepted, unknown = _join_labels(
                bundle, store, ids, labels, label_timestamps or timestamps, label_timestamps
            )
    finally:
        recorder.close()
    return ReplayResult(
        records=n,
        labels_accepted=accepted,
        labels_unknown=unknown,
        dropped=recorder.counters.dropped,
        seconds=round(time.perf_counter() - start, 3),
    )


class _RunNow:
    """A shadow sink that runs each item at once on the caller's thread (none is dropped)."""

    def __init__(self, pipeline: ShadowPipeline) -> None:
        self.pipeline = pipeline

    def submit(self, item: ShadowItem) -> bool:
        self.pipeline.run([item])
        return True


def _as_table(records: Any) -> Any:
    """``records`` as an Arrow table when it is one (or a DataFrame); else ``None``.

    Missing values are what :func:`sidecar._frames.as_records` makes of them:
    a float ``NaN`` is a missing value, as in a DataFrame.
    """
    module = type(records).__module__.split(".", 1)[0]
    if module not in ("pyarrow", "pandas"):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    if module == "pandas" and hasattr(records, "columns"):
        columns = [str(c) for c in records.columns]
        if len(set(columns)) != len(columns):
            raise InputError(f"a table's column names must be unique; got {columns}.")
        try:
            table = pa.Table.from_pandas(records, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):  # mixed columns: record by record
            return None
    elif isinstance(records, pa.Table):
        table = records
    else:
        return None
    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            col = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_nan(col), None, col))
    return table


def _join_labels(
    bundle: Bundle,
    store: Store,
    ids: Sequence[str],
    labels: Sequence[Any],
    stamps: Sequence[float | None] | None,
    label_timestamps: Sequence[float | None] | None,
) -> tuple[int, int]:
    """Store the labels, checked by the one label rule -- once per distinct value.

    A label that breaks the rule fails the replay with the same message
    ``Bundle.feedback`` gives (nothing is stored then).
    """
    from .._labels import MISSING, check_labels, label_rule

    coerce, _, allowed = label_rule(bundle.task, bundle.advanced.classes)
    seen: dict[tuple[type, Any], Any] = {}
    items: list[Label] = []
    for i, label in enumerate(labels):
        if label is None:
            continue
        when = stamps[i] if stamps is not None else None
        if label_timestamps is not None and when is None:  # this label never arrived
            continue
        try:
            key = (type(label), label)
            got = seen[key] if key in seen else seen.setdefault(key, coerce(label))
        except TypeError:  # unhashable: the rule names it below
            got = MISSING
        if got is MISSING or (allowed is not None and got not in allowed):
            check_labels([{"request_id": ids[i], "label": label}], task=bundle.task,
                         classes=bundle.advanced.classes)  # fmt: skip
        items.append(Label(ids[i], got, None if when is None else float(when)))
    accepted = unknown = 0
    for lo in range(0, len(items), 50_000):
        result = store.upsert_labels(items[lo : lo + 50_000])
        accepted += result.accepted
        unknown += len(result.unknown_request_ids)
    return accepted, unknown
