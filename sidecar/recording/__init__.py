"""Recording shadow predictions and joining labels: stores and the batching recorder.

``recording`` knows nothing about monitoring: it stores rows and hands them
back as dictionaries, in time order and in chunks.
"""

from ._privacy import RecordPolicy
from ._recorder import Recorder, RecorderCounters
from ._schema import COLUMNS, LATEST
from ._store import FeedbackResult, Label, Store, WriterStats, dumps, open_store

__all__ = [
    "COLUMNS",
    "LATEST",
    "FeedbackResult",
    "Label",
    "RecordPolicy",
    "Recorder",
    "RecorderCounters",
    "Store",
    "WriterStats",
    "dumps",
    "open_store",
]
