"""Recording shadow predictions and joining labels: stores and the batching recorder.

``recording`` knows nothing about monitoring: it stores each batch of served
records as typed columns (an Arrow table: raw inputs per field, the features
the model saw, predictions, probabilities) and hands a time window back the
same way, joined to its labels (``Store.read_window``); ``Store.iter_joined``
reads records one at a time for whoever needs them as rows. The public surface
is the store (:func:`open_store`, :class:`Store`), the :class:`Recorder` and
its :class:`RecordPolicy`, and the values they return; the row schema is private.

>>> from sidecar.recording import open_store
>>> store = open_store("memory://")
>>> store.count()["predictions"]
0
"""

from ._privacy import RecordPolicy
from ._recorder import Recorder, RecorderCounters
from ._store import FeedbackResult, Label, Store, WriterStats, open_store

__all__ = [
    "FeedbackResult",
    "Label",
    "RecordPolicy",
    "Recorder",
    "RecorderCounters",
    "Store",
    "WriterStats",
    "open_store",
]
