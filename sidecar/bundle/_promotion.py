"""Promote a candidate when a paired test says it is better; roll back to an earlier version.

The candidate runs in shadow beside the champion (``SIDECAR_CANDIDATE`` when
serving, :meth:`sidecar.Bundle.attach_candidate` in Python), so every labelled
request holds both models' answers; :func:`promote` compares them on those
requests and, only if the candidate is better by a material amount, makes it
the registry's active version. :func:`rollback` makes an earlier one active
again. Both switch the registry in one atomic rename and log why
(``history.jsonl``); a service serving the registry follows the active version.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import InputError
from ._registry import ACTIVE, Registry

if TYPE_CHECKING:
    from ..monitoring import PromotionDecision
    from ..recording import Store
    from ._bundle import Bundle

__all__ = ["SHADOW_HINT", "promote", "rollback"]

SHADOW_HINT = (
    "; put the candidate in shadow first: serve with `sidecar serve BUNDLE --candidate "
    "CANDIDATE` (or SIDECAR_CANDIDATE=CANDIDATE), or in Python "
    "`champion.attach_candidate(sidecar.load(CANDIDATE))`, then send the labels of the "
    "requests it answered (/feedback, `sidecar feedback` or `Bundle.feedback`)"
)


def promote(
    champion: str | os.PathLike[str],
    candidate: str | os.PathLike[str] | Bundle,
    store: Store | str,
    *,
    since: float | None = None,
    until: float | None = None,
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
) -> PromotionDecision:
    """Promote ``candidate`` over ``champion`` only if, in shadow, it was really better.

    ``champion`` is a bundle directory or a registry; ``candidate`` a saved
    bundle (its directory, or the :class:`~sidecar.Bundle` loaded from it).
    The plan's paired tests compare both models' losses on the labelled
    requests in ``store`` (in ``[since, until)``) that both answered. On
    ``promote`` the candidate is copied into the registry (a plain bundle
    directory becomes one) and made active; otherwise a registry logs the
    rejection and nothing switches. Returns the decision: ``promote``,
    ``reject`` or ``insufficient_data``, with the reason and the evidence.
    ``trusted`` and ``allow_pickle`` are passed to :func:`sidecar.load`.
    """
    from .._analysis import promotion_decision
    from ._bundle import Bundle, load

    root = Path(champion)
    champ = load(root, trusted=trusted, allow_pickle=allow_pickle)
    if isinstance(candidate, Bundle):
        cand, source = candidate, getattr(candidate, "path", None)
        if source is None:
            raise InputError(
                "`candidate` must be a saved bundle (its directory, or sidecar.load(directory)); "
                "got a bundle that was never saved: call candidate.save(path) first."
            )
    else:
        source = Path(candidate)
        cand = load(source, trusted=trusted, allow_pickle=allow_pickle)
    decision = promotion_decision(champ, cand, store, since=since, until=until)
    if decision.n_paired == 0:
        decision = dataclasses.replace(decision, reason=decision.reason + SHADOW_HINT)
    evidence = decision.to_dict()
    if decision.promote:
        registry = Registry.open(root, create=True)
        registry.register(Path(source))
        registry.activate(cand.version, action="promote", evidence=evidence)
    elif (root / ACTIVE).is_file():
        Registry.open(root).log({"action": "reject", "version": cand.version, "evidence": evidence})
    return decision


def rollback(registry: str | os.PathLike[str], *, to: str | None = None) -> str:
    """Make ``to`` -- by default the version active before the current one -- active again.

    Returns the version now active. The switch is one atomic rename, logged
    in the registry's history as a ``rollback`` from the version it replaced.
    """
    reg = Registry.open(registry)
    target = to or reg.previous_active()
    if target is None:
        raise InputError(f"{registry} has no earlier active version to roll back to.")
    reg.activate(target, action="rollback")
    return target
