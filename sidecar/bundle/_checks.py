"""Checking a saved bundle without loading its models: what ``sidecar.load`` does first.

Files plain and within the size limits (:mod:`sidecar.bundle._integrity`), every
part's hash, the plan's hash, the manifest's seal and version
(:mod:`sidecar.bundle._manifest`), and every ``file`` field confined to its part.
``sidecar sign`` and ``Registry.register`` run the same checks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

from .._errors import BundleError, InputError
from ..monitoring._plan import MonitoringPlan
from ._integrity import MAX_PART_BYTES, check_plain_file, confined_file, scan_part
from ._manifest import FORMAT, LEGACY_FORMAT, PARTS, check_seal, check_shape, legacy_version

__all__ = ["MANIFEST", "PLAN", "check_bundle"]

MANIFEST = "manifest.json"
PLAN = "plan.json"


def check_bundle(
    root: Path, *, allow_legacy: bool = False, max_part_bytes: int = MAX_PART_BYTES
) -> tuple[dict[str, Any], MonitoringPlan]:
    """Check a bundle directory without loading its models: its manifest and plan.

    Files plain and within limits, every part's hash, the plan's hash, the
    seal and the version, and every ``file`` field confined to its part.
    """
    manifest = _read_manifest(root, allow_legacy)
    _check_parts(root, manifest, max_part_bytes)
    plan = _read_plan(root, manifest)
    if manifest["format"] == LEGACY_FORMAT:
        expected = legacy_version(manifest, plan.sha256)
        if manifest["version"] != expected:
            raise BundleError(
                f"{root / MANIFEST}: field `version` {manifest['version']!r} does not match its "
                f"parts (they make version {expected!r}); the manifest was edited after the "
                "bundle was saved."
            )
    else:
        check_seal(manifest, str(root / MANIFEST))
    parts = manifest["parts"]
    for part in PARTS:  # a file a loader opens must be a plain file of its own part
        if "file" in parts[part]:
            confined_file(root / part, parts[part]["file"], part=part, field="file")
    return manifest, plan


def _read_manifest(root: Path, allow_legacy: bool) -> dict[str, Any]:
    if not root.exists():  # a path mistyped: a usage error (exit 2), not a broken bundle
        raise InputError(f"{root}: no such bundle directory.")
    manifest_file = root / MANIFEST
    check_plain_file(manifest_file, what=MANIFEST)
    if not manifest_file.is_file():
        raise BundleError(f"{root} is not a bundle: it has no {MANIFEST}.")
    try:
        manifest = json.loads(manifest_file.read_text())
    except ValueError as exc:
        raise BundleError(f"{manifest_file} is not valid JSON: {exc}") from exc
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt == LEGACY_FORMAT and not allow_legacy:
        raise BundleError(
            f"{manifest_file} has format {LEGACY_FORMAT!r}, saved before the bundle version "
            "covered the whole manifest; its fields other than the parts' hashes are not "
            "checked. If you trust it, re-save it once: "
            "sidecar.load(path, allow_legacy=True).save(new_path) (its version changes)."
        )
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise BundleError(f"{manifest_file}: field `format` must be {FORMAT!r}; got {fmt!r}.")
    check_shape(manifest, str(manifest_file))
    return cast(dict[str, Any], manifest)


def _check_parts(root: Path, manifest: dict[str, Any], max_part_bytes: int) -> None:
    """Every part there, its files plain and within limits, hashing to its manifest sha256."""
    for part in PARTS:
        meta = manifest["parts"].get(part)
        directory = root / part
        if meta is None or not (directory.is_dir() or directory.is_symlink()):
            raise BundleError(f"{root} is missing its {part!r} part; the bundle is incomplete.")
        framed = manifest["format"] != LEGACY_FORMAT
        scanned = scan_part(directory, part, max_part_bytes=max_part_bytes, framed=framed)
        if scanned.sha256 != meta["sha256"]:
            raise BundleError(
                f"{root}: part {part!r} failed its hash check (field `parts.{part}.sha256` is "
                f"{meta['sha256'][:16]}..., its files hash to {scanned.sha256[:16]}...); the "
                "bundle was changed or corrupted after it was saved."
            )
        scanned.check()


def _read_plan(root: Path, manifest: dict[str, Any]) -> MonitoringPlan:
    plan_file = root / PLAN
    check_plain_file(plan_file, what=PLAN)
    if not plan_file.is_file():
        raise BundleError(
            f"{root} is missing its monitoring plan {PLAN}; the bundle is incomplete."
        )
    plan_text = plan_file.read_text()
    plan_sha = hashlib.sha256(plan_text.encode()).hexdigest()
    if plan_sha != manifest.get("plan_sha256"):
        raise BundleError(
            f"{root}: {PLAN} failed its hash check (field `plan_sha256` is "
            f"{str(manifest.get('plan_sha256'))[:16]}..., the file hashes to {plan_sha[:16]}...); "
            "the plan was changed after the bundle was saved. A new plan makes a new bundle "
            "version: use Bundle.with_plan(...)."
        )
    return MonitoringPlan.from_mapping(json.loads(plan_text), source=str(plan_file))
