"""The shadow stage: what runs after a response, never on its path.

- :class:`ShadowRunner` -- a bounded queue drained in micro-batches by one
  thread, and timed model calls that count errors and timeouts;
- :class:`ShadowPipeline` -- one bundle's baseline, candidate, recorder sink
  and hooks, passed in once;
- :class:`ShadowProcess` -- the same work in a process of a serving worker's
  own, fed over a private socket;
- :class:`ShadowItem` -- the work item; :class:`ShadowSink` and
  :class:`RecordSink` -- the one-method protocols the stage is wired with.
"""

from __future__ import annotations

from ._items import RecordSink, ShadowItem, ShadowResult, ShadowSink
from ._pipeline import ShadowPipeline, check_candidate
from ._process import ShadowProcess
from ._runner import ShadowCounters, ShadowRunner

__all__ = [
    "RecordSink",
    "ShadowCounters",
    "ShadowItem",
    "ShadowPipeline",
    "ShadowProcess",
    "ShadowResult",
    "ShadowRunner",
    "ShadowSink",
    "check_candidate",
]
