"""Reading a bundle safely: every file and hash checked before any part is loaded.

:func:`load` resolves a registry to its active version, checks a signature
when given a public key, checks the bundle without loading its models
(``sidecar.bundle._checks``), and only then loads the parts, running no code the
caller did not trust by name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import BundleError
from ..preprocessing import load_preprocessing
from ..runtimes import Predictor, load_predictor
from ..runtimes._lazy import LAZY_FRAMEWORKS, LazyPredictor
from ._checks import check_bundle
from ._integrity import MAX_PART_BYTES
from ._manifest import LEGACY_FORMAT
from ._persist import sources_of
from ._reference import Reference

if TYPE_CHECKING:
    from ._bundle import Bundle

__all__ = ["load"]


def load(
    path: str | os.PathLike[str],
    *,
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
    shadow_timeout: float = 1.0,
    allow_legacy: bool = False,
    public_key: str | os.PathLike[str] | None = None,
    max_part_bytes: int = MAX_PART_BYTES,
    lazy_models: bool = False,
) -> Bundle:
    """Read a bundle directory (or a registry's active version), checking every part first.

    Loading runs no code the caller did not name: ``trusted`` lists the import
    paths (a torch ``factory``, a callable model's ``path``) and the skops types
    beyond the built-in allow-list of scikit-learn and NumPy types that may be
    loaded, each by its exact name; ``allow_pickle=True`` is needed for a
    bundle with a pickled model. Give either only for bundles from a trusted
    source. ``public_key`` (a PEM file) makes the bundle's signature required
    and checked first (see ``sidecar sign``). ``allow_legacy=True`` loads a
    bundle saved before the manifest was sealed (see :mod:`sidecar.bundle._manifest`).
    ``max_part_bytes`` bounds what each part may hold once inflated.
    ``lazy_models=True`` (for analyses of what was recorded) checks the two models
    as a load would refuse them but deserialises each -- and imports its
    framework -- only when it is first used, from bytes hashed again then
    (:class:`sidecar.runtimes._lazy.LazyPredictor`).
    """
    from ._bundle import Bundle  # the class imports this package
    from ._registry import resolve_bundle_path

    root = resolve_bundle_path(Path(path))  # a registry loads its active version
    if public_key is not None:
        from ._signing import verify_bundle

        verify_bundle(root, public_key)
    manifest, plan = check_bundle(root, allow_legacy=allow_legacy, max_part_bytes=max_part_bytes)
    if root != Path(path) and manifest["version"] != root.name:
        raise BundleError(
            f"{root}: field `version` {manifest['version']!r} is not the version the registry "
            f"keeps it under ({root.name!r}); the registry was tampered with."
        )
    parts = manifest["parts"]
    trusted_t = tuple(trusted)
    bundle = Bundle(
        name=manifest["name"],
        task=manifest["task"],
        preprocessing=load_preprocessing(
            root / "preprocessing", parts["preprocessing"], trusted=trusted_t
        ),
        advanced=_model(root / "advanced", manifest, trusted_t, allow_pickle, lazy_models),
        baseline=_model(root / "baseline", manifest, trusted_t, allow_pickle, lazy_models),
        reference=Reference.load(root / "reference"),
        plan=plan,
        parent=manifest["parent"],
        created_at=manifest["created_at"],
        manifest=manifest,
        sources=sources_of(root, manifest),
        shadow_timeout=shadow_timeout,
    )
    bundle.path = root
    return bundle


def _model(
    directory: Path,
    manifest: dict[str, Any],
    trusted: tuple[str, ...],
    allow_pickle: bool,
    lazy: bool,
) -> Predictor:
    meta = manifest["parts"][directory.name]
    if lazy and meta.get("framework") in LAZY_FRAMEWORKS:
        framed = manifest["format"] != LEGACY_FORMAT
        return LazyPredictor(
            directory, meta, trusted=trusted, allow_pickle=allow_pickle, framed=framed
        )
    return load_predictor(directory, meta, trusted=trusted, allow_pickle=allow_pickle)
