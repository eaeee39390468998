"""Safe serialisation of scikit-learn objects with skops, trusted types only.

skops refuses, by default, every type outside its own list of scikit-learn
estimators and NumPy/SciPy building blocks. A type it does not trust can run
code while it is built (``numpy.testing._private.utils.runstring`` is an
``exec``), so trust is never given by prefix: beyond skops's defaults we allow
only the few types, by their exact names, that the models model-sidecar writes
are made of (:data:`ALLOWED_TYPES`). Anything else in a file -- a user's own
class, a function -- is refused with an error that lists it, unless the caller
names it in ``trusted``.
"""

from __future__ import annotations

import os
import sys
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._errors import BundleError

__all__ = ["ALLOWED_TYPES", "skops_dump", "skops_load"]

#: Types skops does not trust by default that the models this project writes hold:
#: found with ``skops.io.get_untrusted_types`` over every bundle the tests and the
#: examples make (trees and forests, gradient boosting, the retraining adapters'
#: ensemble). Each is a data holder whose state skops sets; none is a function.
ALLOWED_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "adapters._members.WeightedEnsemble",
    }
)


_IMPORT_LOCK = threading.Lock()


#: Optional imports of scikit-learn's that skops's start-up would pull in for nothing:
#: torch (through ``array_api_compat``) and pytest (``sklearn.utils._testing``).
_UNNEEDED = ("torch", "pytest")


def _skops_io() -> Any:
    """``skops.io``, imported without importing PyTorch or pytest.

    On import, skops lists scikit-learn's estimators, and scikit-learn's package
    walk imports ``array_api_compat.torch`` -- and so torch, seconds of start-up --
    whenever torch is installed, though no scikit-learn model needs it; and
    ``sklearn.utils._testing``, which imports pytest (a tenth of a second) for its
    test markers when pytest is installed. While skops is imported, each is
    marked unavailable (scikit-learn skips what it cannot import, as where they
    are not installed); afterwards each imports as usual, for a torch model that
    needs it. One already imported is left alone.
    """
    if "skops.io" in sys.modules:
        import skops.io

        return skops.io
    # SciPy's array-API helpers look torch up in sys.modules and trip on the
    # marker; scikit-learn imports scipy.stats first thing, so import it unmarked.
    import scipy.stats  # noqa: F401

    with _IMPORT_LOCK:
        blocked = [name for name in _UNNEEDED if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            import skops.io
        finally:
            for name in blocked:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
    return skops.io


def skops_dump(obj: Any, path: Path) -> None:
    """Save ``obj`` with skops, its object ids renumbered so equal models give equal bytes."""
    _skops_io().dump(obj, path)
    _renumber_skops(path)


def _renumber_skops(path: Path) -> None:
    """Replace skops' object ids (``id()`` values, new in every process) by their order.

    skops names each node's ``__id__`` and each array file after ``id(obj)``; the
    same ids, in the same places, become 0, 1, 2, ... in the order the schema
    lists them, so a refitted model saves to the same bytes every time.
    """
    import json

    with zipfile.ZipFile(path) as src:
        entries = {info.filename: (src.read(info), info.compress_type) for info in src.infolist()}
    schema = json.loads(entries["schema.json"][0])
    order: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if isinstance(node.get("__id__"), int):
                out["__id__"] = order.setdefault(node["__id__"], len(order))
            file = node.get("file")
            if isinstance(file, str) and file.endswith(".npy") and file[:-4].isdigit():
                out["file"] = f"{order.setdefault(int(file[:-4]), len(order))}.npy"
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    renamed = walk(schema)
    files = {"schema.json": (json.dumps(renamed).encode(), entries["schema.json"][1])}
    for name, entry in entries.items():
        if name.endswith(".npy") and name[:-4].isdigit():
            files[f"{order[int(name[:-4])]}.npy"] = entry
        elif name != "schema.json":
            files[name] = entry
    with zipfile.ZipFile(path, "w") as dst:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = files[name][1]
            info.external_attr = 0o644 << 16
            dst.writestr(info, files[name][0])


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
    """Load ``path``; refuse a type neither skops, :data:`ALLOWED_TYPES` nor ``trusted`` names."""
    sio = _skops_io()

    allowed = set(trusted)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises several kinds on a corrupt file
        raise BundleError(f"{path} is not a readable skops file: {exc}") from exc
    refused = [t for t in untrusted if t not in ALLOWED_TYPES and t not in allowed]
    if refused:
        raise BundleError(
            f"part {path.parent.name!r} file {path.name!r} holds types that are not trusted: "
            f"{refused}. Building them can run code; if you trust this file, name them: "
            "sidecar.load(..., trusted=[...]) (SIDECAR_TRUSTED for `sidecar serve`)."
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise BundleError(f"{path} could not be loaded with skops: {exc}") from exc
