"""Replay: run a whole data set through the serving path and record it, labels included.

One concept, four rooms:

- :mod:`._records` -- :func:`replay` itself (the entry point ``sidecar.replay``),
  the row path (a list of records, one dict a record, through
  ``Bundle.predict_shadow`` and the recorder) and the label join;
- :mod:`._table` -- the column path: a whole Arrow table (or a pandas
  DataFrame) checked before the first write and stored chunk by chunk;
- :mod:`._parts` -- a chunk's predictions and its records as one Arrow table,
  for the column path;
- :mod:`._file` -- a data file (.csv, .parquet) read for ``sidecar replay``: as
  columns when Arrow types them as the record reader would, else as records,
  with the label and time columns taken out the same way for both.
"""

from ._records import ReplayResult, replay

__all__ = ["ReplayResult", "replay"]
