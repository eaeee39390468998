"""The retraining entry point: recent labelled data, a diagnosis, an adapter, a candidate.

The adapters (``adapters``, shipped beside ``sidecar``) are imported only when
:func:`retrain` runs: ``import sidecar`` never loads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import InputError
from ._types import STRATEGIES

if TYPE_CHECKING:
    from adapters import RetrainResult

    from ._window import RecentData
    from .bundle._bundle import Bundle
    from .monitoring import Diagnosis
    from .recording import Store

__all__ = ["MIN_AFTER_CHANGE", "recent_from_records", "retrain"]

#: ``strategy="auto"`` learns only from after the change when at least this many
#: labelled rows lie after it (the adapters' own floor).
MIN_AFTER_CHANGE = 50


def retrain(
    bundle: Bundle,
    store: Store | str | None = None,
    *,
    data: tuple[Sequence[Mapping[str, Any]], Sequence[Any]] | None = None,
    timestamps: Sequence[float] | None = None,
    strategy: str = "auto",
    diagnosis: Diagnosis | None = None,
    since: float | str | None = None,
    until: float | None = None,
    force: bool = False,
    progress: Callable[[str, float], None] | None = None,
    seed: int = 0,
) -> RetrainResult:
    """A retrained candidate of ``bundle``, learnt from recent labelled data; nothing is saved.

    The data are the labelled records ``store`` holds in ``[since, until)``
    (every version's), or ``data=(records, labels)`` with optional
    ``timestamps`` (file order otherwise). ``strategy="auto"`` follows the
    diagnosis -- ``diagnosis``, or :func:`sidecar.diagnose` of the same store
    and window -- to the adapter its verdict calls for by the adapters'
    model-family rule (``regularize``, ``replace-members``, ``refit`` or
    ``fine-tune-head``); a healthy bundle is retrained
    only with ``force=True``, a preprocessing fault never. ``progress(step,
    fraction)`` is called as training goes.

    Which rows: with ``strategy="auto"`` and no ``since``, when the diagnosis
    found a significant change in the loss stream (``diagnosis.change``, p at
    most the plan's alpha) and at least :data:`MIN_AFTER_CHANGE` labelled rows
    lie after it, only the rows from the change on are used -- rows from before
    it teach the old concept. ``since="all"`` uses every row; a time uses the
    rows from it on. ``report.window`` says which was used and why.

    Returns the adapters' ``RetrainResult``: ``candidate`` (a new bundle
    version whose parent is ``bundle``; save it and run it in shadow) and
    ``report`` (what was trained, and both models' scores on held-out recent
    data; its ``notes`` include what the data left out and the diagnosis).
    """
    try:
        import adapters
    except ImportError as exc:  # pragma: no cover - adapters ships with the project
        raise InputError(f"the retraining adapters cannot be imported: {exc}") from exc
    from ._analysis import diagnose
    from ._window import recent_data

    if strategy not in STRATEGIES:
        raise InputError(f"`strategy` must be one of {list(STRATEGIES)}; got {strategy!r}.")
    if (store is None) == (data is None):
        raise InputError("retrain learns from `store` or from `data=(records, labels)`; give one.")
    notes: list[str] = []
    start = _since(since)
    if store is not None:
        recent = recent_data(bundle, store, since=start, until=until)
        if strategy == "auto" and diagnosis is None:
            diagnosis = diagnose(bundle, store, since=start, until=until)
    else:
        assert data is not None
        if strategy == "auto" and diagnosis is None:
            raise InputError(
                "strategy='auto' follows a diagnosis, which needs `store` (or `diagnosis`); with "
                "`data` name the strategy (regularize, replace-members, refit or fine-tune-head)."
            )
        recent = recent_from_records(bundle, data[0], data[1], timestamps)
    notes.extend(recent.notes)
    if diagnosis is not None:
        notes.append(f"diagnosis: {diagnosis.verdict}")
    window: dict[str, Any] = {"since": start, "until": until, "rows": "all", "n": len(recent)}
    if strategy == "auto" and since is None and diagnosis is not None:
        recent, window = _after_change(recent, diagnosis, window)
    result = adapters.retrain(
        bundle,
        recent,
        strategy=strategy,
        diagnosis=diagnosis,
        force=force,
        progress=progress,
        seed=seed,
    )
    report = dataclasses.replace(result.report, notes=(*notes, *result.report.notes), window=window)
    return dataclasses.replace(result, report=report)


def _since(since: float | str | None) -> float | None:
    if since is None or since == "all":
        return None
    if isinstance(since, bool) or not isinstance(since, int | float):
        raise InputError(f"`since` must be epoch seconds, 'all' or None; got {since!r}.")
    return float(since)


def _after_change(
    recent: RecentData, diagnosis: Diagnosis, window: dict[str, Any]
) -> tuple[RecentData, dict[str, Any]]:
    """Only the rows from the diagnosed change on, when it is significant and leaves enough."""
    import numpy as np

    change = diagnosis.change
    if change is None or change.ts is None:
        return recent, {**window, "why": "no change point was estimated"}
    facts = {"change_ts": change.ts, "change_p": change.p_value, "alpha": change.alpha}
    if not change.significant:
        why = f"no significant change in the loss stream (CUSUM p {change.p_value:.3g})"
        return recent, {**window, **facts, "why": why}
    keep = np.asarray(recent.ts, dtype=np.float64) >= change.ts
    n_after = int(keep.sum())
    if n_after < MIN_AFTER_CHANGE:
        why = f"only {n_after} labelled rows after the change (at least {MIN_AFTER_CHANGE} needed)"
        return recent, {**window, **facts, "why": why}
    idx = np.flatnonzero(keep)
    after = dataclasses.replace(
        recent,
        records=[recent.records[i] for i in idx],
        labels=np.asarray(recent.labels)[idx],
        ts=np.asarray(recent.ts)[idx],
    )
    why = (
        f"the loss stream changed (CUSUM p {change.p_value:.3g}); rows from the change on "
        f"({n_after} of {len(recent)}); --since all uses every row"
    )
    return after, {**window, **facts, "rows": "after_change", "n": n_after, "why": why}


def recent_from_records(
    bundle: Bundle,
    records: Sequence[Mapping[str, Any]] | Any,
    labels: Sequence[Any] | Any,
    timestamps: Sequence[float] | Any | None = None,
) -> RecentData:
    """Labelled records as :class:`sidecar.RecentData`, oldest first (file order without times).

    ``records`` may be a pandas, polars or Arrow table; ``labels`` a list, an array or a
    column (a pandas/polars Series, an Arrow array).
    """
    import numpy as np

    from ._frames import as_records
    from ._window import RecentData

    records = as_records(records)
    labels = _as_list(labels)
    if timestamps is not None:
        timestamps = _as_list(timestamps)

    if len(labels) != len(records):
        raise InputError(
            f"`labels` must hold one label per record ({len(records)}); got {len(labels)}."
        )
    if timestamps is not None and len(timestamps) != len(records):
        raise InputError(
            f"`timestamps` must hold one time per record ({len(records)}); got {len(timestamps)}."
        )
    ts = [float(t) for t in timestamps] if timestamps is not None else list(range(len(records)))
    order = sorted(range(len(records)), key=lambda i: ts[i])
    return RecentData(
        records=[dict(records[i]) for i in order],
        labels=np.array([labels[i] for i in order]),
        ts=np.array([ts[i] for i in order], dtype=float),
    )


def _as_list(values: Any) -> list[Any]:
    """A column of values as a list: from a list, a NumPy array, a pandas/polars Series or an
    Arrow array (positions, not a Series' index)."""
    for name in ("to_pylist", "to_list", "tolist"):
        method = getattr(values, name, None)
        if callable(method):
            return list(method())
    return list(values)
