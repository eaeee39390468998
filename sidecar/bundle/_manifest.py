"""The manifest's seal: a bundle's version covers every field a loader reads.

Format ``sidecar.bundle/2``. ``seal`` maps every field of the manifest -- each
top-level key, and each ``parts.<part>.<key>`` (framework, format, file,
factory, factory_kwargs, path, kind, classes, task, version, sha256, ...) -- to
the sha256 of its canonical JSON. ``seal_sha256`` is the sha256 of the
canonical seal; the version is the first 12 hex digits of the sha256 of the
seal without ``created_at`` (sealed, but *when* a bundle was saved is not
*what* it is: the same content saved twice is one version). Each part's
``sha256`` covers the part's bytes and ``plan_sha256`` the plan, so the version
covers the whole manifest and every byte. A field edited without resealing is
refused by name; an attacker who reseals makes another version (and breaks a
signature, see :mod:`sidecar.bundle._signing`).

Format ``sidecar.bundle/1`` (model-sidecar before the seal) derived the version
from the name, task, parent, parts' hashes and plan only, so its other fields
(``file``, ``factory``, ``framework``, ``classes`` ...) could be edited under
the same version. Such a bundle is refused unless the loader asks for it by
name, ``sidecar.load(path, allow_legacy=True)``: it is then checked the old way
(plus every rule a loader applies: confined paths, no links, trust by name),
and saving it again writes format 2 -- with a new version, because the version
now covers more. Re-save each old bundle once, from a copy you trust::

    sidecar.load("old", allow_legacy=True).save("new")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .._errors import BundleError

__all__ = ["FORMAT", "LEGACY_FORMAT", "check_seal", "legacy_version", "seal_manifest"]

FORMAT = "sidecar.bundle/2"
LEGACY_FORMAT = "sidecar.bundle/1"
PARTS = ("preprocessing", "advanced", "baseline", "reference")
_UNSEALED = ("version", "seal", "seal_sha256")
_NOT_IN_VERSION = ("created_at",)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def field_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The sha256 of every field's canonical JSON, by dotted field name."""
    out: dict[str, str] = {}
    for key, value in manifest.items():
        if key in _UNSEALED:
            continue
        if key == "parts" and isinstance(value, Mapping):
            for part, meta in value.items():
                if isinstance(meta, Mapping):
                    for k, v in meta.items():
                        out[f"parts.{part}.{k}"] = _digest(v)
                else:
                    out[f"parts.{part}"] = _digest(meta)
        else:
            out[key] = _digest(value)
    return out


def _version(seal: Mapping[str, str]) -> str:
    return _digest({k: v for k, v in seal.items() if k not in _NOT_IN_VERSION})[:12]


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with its ``seal``, ``seal_sha256`` and the ``version`` they make."""
    body = {k: v for k, v in manifest.items() if k not in _UNSEALED}
    body["format"] = FORMAT
    seal = field_digests(body)
    return {**body, "seal": seal, "seal_sha256": _digest(seal), "version": _version(seal)}


def check_seal(manifest: Mapping[str, Any], where: str) -> None:
    """Refuse a manifest whose fields, seal or version disagree, naming the field."""
    seal = manifest.get("seal")
    if not isinstance(seal, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in seal.items()
    ):
        raise BundleError(
            f"{where}: field `seal` must map each manifest field to its sha256; got "
            f"{type(seal).__name__}. The manifest is damaged or was not written by model-sidecar."
        )
    actual = field_digests(manifest)
    for name in sorted(set(seal) | set(actual)):
        if name not in seal:
            raise BundleError(
                f"{where}: field `{name}` is not in the manifest's seal: it was added after the "
                "bundle was saved. Refusing the bundle."
            )
        if name not in actual:
            raise BundleError(
                f"{where}: field `{name}` is sealed but missing: it was removed after the bundle "
                "was saved. Refusing the bundle."
            )
        if seal[name] != actual[name]:
            raise BundleError(
                f"{where}: field `{name}` was changed after the bundle was saved (its sealed "
                f"sha256 is {seal[name][:16]}..., its value hashes to {actual[name][:16]}...). "
                "Refusing the bundle."
            )
    whole = _digest(seal)
    if manifest.get("seal_sha256") != whole:
        raise BundleError(
            f"{where}: field `seal_sha256` {str(manifest.get('seal_sha256'))[:16]}... does not "
            f"match the seal ({whole[:16]}...); the seal was edited after the bundle was saved."
        )
    version = _version(seal)
    if manifest.get("version") != version:
        raise BundleError(
            f"{where}: field `version` {manifest.get('version')!r} does not match the sealed "
            f"manifest (it makes version {version!r}); the version was edited after the "
            "bundle was saved."
        )


def legacy_version(manifest: Mapping[str, Any], plan_sha256: str) -> str:
    """The version format 1 derived: identity, every part's sha256 and the plan's."""
    parts = manifest["parts"]
    identity = json.dumps(
        [
            manifest["name"],
            manifest["task"],
            manifest["parent"],
            [parts[p]["sha256"] for p in PARTS],
            plan_sha256,
        ]
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def check_shape(manifest: Any, where: str) -> None:
    """The fields every loader reads must be there, with the right types."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where} must hold a JSON object; got {type(manifest).__name__}.")
    expected: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "task": (str,),
        "version": (str,),
        "plan_sha256": (str,),
        "created_at": (str,),
        "parent": (str, type(None)),
        "classes": (list, type(None)),
        "parts": (dict,),
    }
    for key, types in expected.items():
        if key not in manifest:
            raise BundleError(f"{where}: field `{key}` is missing; the manifest is incomplete.")
        if not isinstance(manifest[key], types):
            raise BundleError(
                f"{where}: field `{key}` must be {' or '.join(t.__name__ for t in types)}; got "
                f"{type(manifest[key]).__name__}."
            )
    if manifest["task"] not in ("classification", "regression"):
        raise BundleError(
            f"{where}: field `task` must be 'classification' or 'regression'; got "
            f"{manifest['task']!r}."
        )
    parts = manifest["parts"]
    for part in PARTS:
        meta = parts.get(part)
        if meta is None:
            continue  # the loader says the part is missing, in its own words
        if not isinstance(meta, dict):
            raise BundleError(
                f"{where}: field `parts.{part}` must be an object; got {type(meta).__name__}."
            )
        sha = meta.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise BundleError(
                f"{where}: field `parts.{part}.sha256` must be 64 hex digits; got {sha!r}."
            )
    extra = sorted(set(parts) - set(PARTS))
    if extra:
        raise BundleError(
            f"{where}: field `parts` must hold only the parts {list(PARTS)}; got also {extra}."
        )
    for part in ("advanced", "baseline"):
        meta = parts.get(part)
        if meta is not None and meta.get("task") != manifest["task"]:
            raise BundleError(
                f"{where}: field `parts.{part}.task` must be the bundle's task "
                f"{manifest['task']!r}; got {meta.get('task')!r}."
            )
