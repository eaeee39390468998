"""Safe serialisation of scikit-learn objects with skops, trusted types only.

skops never runs arbitrary code on load, but it refuses types it does not
trust by default. We trust, in addition, the types of the libraries a
scikit-learn model is made of (scikit-learn, NumPy, SciPy); anything else in a
file -- a user's own class, a function from another package -- is refused with
an error that lists it, unless the caller names it in ``trusted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._errors import BundleError

__all__ = ["TRUSTED_PREFIXES", "skops_dump", "skops_load"]

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "scipy.special.")


def skops_dump(obj: Any, path: Path) -> None:
    import skops.io as sio

    sio.dump(obj, path)


def skops_load(path: Path, trusted: Iterable[str] = ()) -> Any:
    """Load ``path``; refuse any type that is neither built-in trusted nor in ``trusted``."""
    import skops.io as sio

    allowed = set(trusted)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises several kinds on a corrupt file
        raise BundleError(f"{path} is not a readable skops file: {exc}") from exc
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES) and t not in allowed]
    if refused:
        raise BundleError(
            f"{path} holds types that are not trusted: {refused}. If you trust this file, "
            "pass them by name: sidecar.load(..., trusted=[...])."
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise BundleError(f"{path} could not be loaded with skops: {exc}") from exc
