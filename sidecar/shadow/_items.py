"""What flows through the shadow stage: the work item, its result, and the two sinks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..bundle._bundle import Prediction
    from ..recording._records import ServedBatch
    from ..runtimes import ModelOutput

__all__ = ["RecordSink", "ShadowItem", "ShadowResult", "ShadowSink"]


@dataclass(frozen=True)
class ShadowItem:
    """One answered request, handed to the shadow stage after its response.

    ``records`` are the raw records as served (copied: the caller may reuse its
    dicts), ``features`` what the preprocessing made of them, ``prediction``
    the advanced model's answer (its ``bundle_version`` names the bundle that
    answered), ``timestamps`` the records' times when replaying history.
    """

    records: Sequence[Mapping[str, Any]]
    features: np.ndarray
    prediction: Prediction
    timestamps: Sequence[float] | None = None

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class ShadowResult:
    """The baseline's answer for one item: its output, or ``None`` and the reason."""

    output: ModelOutput | None
    error: str | None
    latency_ms: float | None


@runtime_checkable
class ShadowSink(Protocol):
    """Where a prediction hands its shadow work; ``submit`` never blocks.

    A :class:`~sidecar.shadow.ShadowPipeline` runs it on threads of this
    process; a :class:`~sidecar.shadow.ShadowProcess` sends it to a process of
    its own. ``False`` means the item was dropped (and counted).
    """

    def submit(self, item: ShadowItem) -> bool: ...


@runtime_checkable
class RecordSink(Protocol):
    """Where the shadow stage hands the records of a micro-batch; never blocks.

    :class:`~sidecar.recording.Recorder` is one.
    """

    def enqueue(self, rows: ServedBatch) -> bool: ...
