"""Replay: run a whole data set through the serving path and record it, labels included.

It is how a user backtests monitoring on history, and how tests build
realistic stores quickly: the same ``Bundle.predict_shadow`` and recorder as
serving, with the record's own timestamps instead of "now".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._bundle import Bundle
from ._errors import InputError
from .recording import Recorder, RecordPolicy, Store

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
    records: Sequence[Mapping[str, Any]],
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
    """
    n = len(records)
    for name, seq in (
        ("labels", labels),
        ("timestamps", timestamps),
        ("label_timestamps", label_timestamps),
    ):
        if seq is not None and len(seq) != n:
            raise InputError(f"`{name}` must have one entry per record ({n}); got {len(seq)}.")
    if batch_size < 1:
        raise InputError(f"`batch_size` must be a positive integer; got {batch_size}.")
    start = time.perf_counter()
    recorder = Recorder(store, batch_size=5000)
    previous = bundle.recorder
    bundle.attach_recorder(recorder, policy=policy)
    accepted = unknown = 0
    try:
        ids: list[str] = []
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            ts = None if timestamps is None else timestamps[lo:hi]
            try:
                pair = bundle.predict_shadow(records[lo:hi], timestamps=ts)
            except InputError as exc:
                raise InputError(f"records {lo}..{hi - 1} (numbered from 0): {exc}") from exc
            ids.extend(pair.advanced.request_ids)
            if recorder.pending() > 50_000:
                recorder.flush()
            if progress is not None:
                progress(hi, n)
        if not recorder.flush(timeout=300.0):
            raise InputError("the store did not take the records within 5 minutes; see its logs.")
        if labels is not None:
            items = []
            for i, label in enumerate(labels):
                if label is None:
                    continue
                if label_timestamps is not None:
                    when = label_timestamps[i]
                    if when is None:  # this label never arrived
                        continue
                else:
                    when = timestamps[i] if timestamps is not None else None
                items.append({"request_id": ids[i], "label": label, "ts": when})
            for lo in range(0, len(items), 5000):
                result = bundle.feedback(items[lo : lo + 5000], store=store)
                accepted += result.accepted
                unknown += len(result.unknown_request_ids)
    finally:
        recorder.close()
        bundle.attach_recorder(previous)
    return ReplayResult(
        records=n,
        labels_accepted=accepted,
        labels_unknown=unknown,
        dropped=recorder.counters.dropped,
        seconds=round(time.perf_counter() - start, 3),
    )
