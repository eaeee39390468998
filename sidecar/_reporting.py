"""The HTML report: a diagnosis of what the store recorded, as one self-contained file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bundle._bundle import Bundle
    from .monitoring import Diagnosis
    from .recording import Store

__all__ = ["report"]


def report(
    bundle: Bundle,
    store: Store | str | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    diagnosis: Diagnosis | None = None,
    since: float | None = None,
    until: float | None = None,
    all_versions: bool = False,
) -> str:
    """The report on ``bundle``'s records in ``store`` as one HTML string (no scripts, no network).

    It diagnoses the store's records in ``[since, until)`` as
    :func:`sidecar.diagnose` does, unless a ``diagnosis`` of them is given, and
    writes the page to ``out`` (a ``.html`` file) when asked. The page holds the
    verdict and the period it covers, every metric now and on the reference
    with intervals, the estimate before labels, and the plots.
    """
    from .monitoring import render_report

    if diagnosis is None:
        if store is None:
            from ._errors import InputError

            raise InputError(
                "report needs `store` (a Store or a URL) or a `diagnosis`; got neither."
            )
        from ._analysis import diagnose

        diagnosis = diagnose(bundle, store, since=since, until=until, all_versions=all_versions)
    html = render_report(diagnosis, plan=bundle.plan, title=f"{bundle.name} {bundle.version}")
    if out is not None:
        Path(out).write_text(html, encoding="utf-8")
    return html
