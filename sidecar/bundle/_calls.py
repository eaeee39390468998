"""The loop's two per-request calls as functions: :func:`predict` and :func:`feedback`.

A script or a notebook holds a bundle directory and a store URL rather than
live objects; these take either and do what ``Bundle.predict`` and
``Bundle.feedback`` do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..recording import FeedbackResult, Store
    from ._bundle import Bundle
    from ._prediction import Prediction

__all__ = ["feedback", "predict"]

BundleLike = "Bundle | str | os.PathLike[str]"


def _bundle(bundle: Bundle | str | os.PathLike[str], trusted: Sequence[str]) -> Bundle:
    from ._bundle import Bundle
    from ._load import load

    return bundle if isinstance(bundle, Bundle) else load(bundle, trusted=trusted)


def predict(
    bundle: Bundle | str | os.PathLike[str],
    records: Any,
    *,
    trusted: Sequence[str] = (),
    timestamps: Sequence[float] | None = None,
) -> Prediction:
    """The advanced model's predictions for ``records`` (dicts, or a DataFrame).

    ``bundle`` is a :class:`~sidecar.Bundle` or a bundle directory (loaded with
    ``trusted``, as :func:`sidecar.load` does). A bundle with a recorder
    attached records the requests, as :meth:`Bundle.predict` does.
    """
    return _bundle(bundle, trusted).predict(records, timestamps=timestamps)


def feedback(
    bundle: Bundle | str | os.PathLike[str],
    labels: Sequence[Mapping[str, Any]],
    *,
    store: Store | str | None = None,
    trusted: Sequence[str] = (),
) -> FeedbackResult:
    """Join ground truth to recorded predictions: ``[{"request_id": ..., "label": ...}]``.

    ``store`` is a :class:`~sidecar.recording.Store` or a store URL (opened
    and closed here); ``None`` means the recorder attached to ``bundle``. The
    labels are checked against the bundle's task and classes first (a wrong
    one is an :class:`~sidecar.InputError` naming it, and nothing is written).
    """
    target = _bundle(bundle, trusted)
    if not isinstance(store, str):
        return target.feedback(labels, store=store)
    from ..recording import open_store

    opened = open_store(store)
    try:
        return target.feedback(labels, store=opened)
    finally:
        opened.close()
