"""Safe serialisation of scikit-learn objects with skops, trusted types only.

skops never runs arbitrary code on load, but it refuses types it does not
trust by default. We trust, in addition, the types of the libraries a
scikit-learn model is made of (scikit-learn, NumPy, SciPy); anything else in a
file -- a user's own class, a function from another package -- is refused with
an error that lists it, unless the caller names it in ``trusted``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._errors import BundleError

__all__ = ["TRUSTED_PREFIXES", "skops_dump", "skops_load"]

#: the project's own adapters package holds models too (adapters.WeightedEnsemble)
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "scipy.special.", "adapters.")


def skops_dump(obj: Any, path: Path) -> None:
    import skops.io as sio

    sio.dump(obj, path)


def normalise_zip(path: Path) -> None:
    """Rewrite a zip with fixed timestamps and sorted entries, so equal content hashes equal.

    ``np.savez`` stamps each entry with the current time; the bundle's versions
    are hashes of the saved bytes, so equal arrays should give equal bytes.
    (skops names its entries after object ids, so its files differ from one
    process to the next whatever their timestamps; a loaded bundle keeps its
    bytes, and so its version, because saving it copies its parts.)
    """
    with zipfile.ZipFile(path) as src:
        entries = sorted(
            (info.filename, src.read(info), info.compress_type) for info in src.infolist()
        )
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        for name, data, compression in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            dst.writestr(info, data)
    os.replace(tmp, path)


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
