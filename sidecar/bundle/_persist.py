"""A bundle on disk: each part written and hashed, the manifest sealed, saved atomically.

A part a bundle kept from its parent (see ``Bundle._derive``) or read from
disk is copied byte for byte from its source directory, never re-serialised,
so a saved bundle saved again keeps its version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import BundleError
from .._json import to_jsonable
from ..preprocessing import save_preprocessing
from ._integrity import scan_part
from ._manifest import seal_manifest

if TYPE_CHECKING:
    from ..runtimes import Predictor
    from ._bundle import Bundle

__all__ = ["MANIFEST", "PARTS", "PLAN", "Sources", "hash_directory", "save", "sources_of", "stage"]

MANIFEST = "manifest.json"
PLAN = "plan.json"
PARTS = ("preprocessing", "advanced", "baseline", "reference")

#: part -> (the directory holding its saved files, its manifest entry)
Sources = dict[str, tuple[Path, dict[str, Any]]]


def sources_of(root: Path, manifest: Mapping[str, Any]) -> Sources:
    """Every part of the bundle saved at ``root`` as a source to copy from."""
    return {part: (root / part, manifest["parts"][part]) for part in PARTS}


def hash_directory(directory: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (links refused)."""
    return scan_part(directory, directory.name, max_part_bytes=1 << 62).sha256


def stage(
    bundle: Bundle, sources: Mapping[str, tuple[Path, dict[str, Any]]]
) -> tuple[dict[str, Any], Sources]:
    """Serialise an unsaved bundle once into a private staging directory.

    Returns the manifest and the staged parts as the bundle's new sources, so
    a later :func:`save` copies the very bytes hashed here. The directory is
    removed when ``bundle`` is garbage-collected.
    """
    staging = Path(tempfile.mkdtemp(prefix="sidecar-bundle-"))
    weakref.finalize(bundle, shutil.rmtree, staging, True)
    manifest = write_parts(bundle, staging, sources)
    return manifest, sources_of(staging, manifest)


def save(
    bundle: Bundle,
    sources: Mapping[str, tuple[Path, dict[str, Any]]],
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
) -> tuple[Path, dict[str, Any]]:
    """Write ``bundle`` to the directory ``path`` atomically; the directory and the manifest."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists; pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        manifest = write_parts(bundle, tmp, sources)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, manifest


def write_parts(
    bundle: Bundle, root: Path, sources: Mapping[str, tuple[Path, dict[str, Any]]]
) -> dict[str, Any]:
    """Every part and the plan under ``root``, then the sealed manifest; the manifest."""
    parts: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        directory = root / part
        if part in sources:
            source, meta_kept = sources[part]
            shutil.copytree(source, directory)
            parts[part] = dict(meta_kept)
            # the same bytes; a format-1 part gets its sha256 in today's framing
            parts[part]["sha256"] = hash_directory(directory)
            continue
        directory.mkdir(parents=True)
        parts[part] = _write_part(bundle, part, directory)
    plan_text = bundle.plan.canonical_json()
    (root / PLAN).write_text(plan_text)
    manifest = {
        "name": bundle.name,
        "plan_sha256": hashlib.sha256(plan_text.encode()).hexdigest(),
        "parent": bundle.parent,
        "task": bundle.task,
        "created_at": bundle.created_at,
        "classes": to_jsonable(bundle.advanced.classes),
        "parts": parts,
    }
    manifest = seal_manifest(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _write_part(bundle: Bundle, part: str, directory: Path) -> dict[str, Any]:
    """Serialise one part into ``directory``; its manifest entry with version and sha256."""
    meta: dict[str, Any]
    given: str | None = None
    if part == "preprocessing":
        meta = save_preprocessing(bundle.preprocessing, directory)
        given = bundle.preprocessing.version
    elif part == "reference":
        bundle.reference.save(directory)
        meta = {"kind": "reference", "format": bundle.reference.summary["format"]}
    else:
        model: Predictor = getattr(bundle, part)
        meta = model.save(directory)
        meta.update(task=bundle.task, classes=to_jsonable(model.classes))
    digest = hash_directory(directory)
    meta.update(version=given or digest[:12], sha256=digest)
    return meta
