"""The bundle as a BentoML model: ``bentoml build`` packs it, ``bentoml serve <bento>`` serves it.

BentoML's convention is that a Bento carries its models: they live in the
model store (``$BENTOML_HOME/models``), the service declares them, and
``bentoml build`` records their tags in the Bento (``bentoml containerize``
and ``bentoml export`` copy them in). :func:`import_bundle` checks a bundle
and saves the directory, byte for byte, as a model labelled
``model-sidecar: bundle``, its tag the bundle's name and version::

    sidecar bento import ./my-bundle      # -> my-bundle:1a2b3c4d5e6f in the model store
    bentoml build                         # the Bento declares (and carries) it
    bentoml serve model-sidecar:latest    # serves it: no SIDECAR_BUNDLE needed

The service calls :func:`bundle_model` when it is imported; it decides which
bundle to serve when ``SIDECAR_BUNDLE`` is not set:

- inside a Bento (its ``bento.yaml`` beside the sources): the bundle model the
  Bento was built with, from the Bento's own model store in a container;
- from the sources (``bentoml build``, or ``bentoml serve`` in the repository):
  ``SIDECAR_MODEL`` (a model tag) or else the bundle model imported last.

It then sets ``SIDECAR_BUNDLE`` to the copy in the model store, so every
process below (workers, shadow processes) serves those very bytes, and every
check of ``sidecar.load`` (hashes, seal, ``SIDECAR_PUBLIC_KEY``'s signature)
runs on them. With no bundle anywhere a BentoML worker stops the server with
a message saying what to do, instead of being restarted for ever.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import BundleError, InputError, SidecarError

__all__ = ["ImportedBundle", "bundle_model", "import_bundle", "list_bundle_models"]

logger = logging.getLogger("sidecar.serving")

#: The label every bundle model carries (value ``bundle``): how the service finds them.
LABEL = "model-sidecar"
#: Where a model keeps the bundle directory, inside its own directory.
BUNDLE_DIR = "bundle"
_NAME = re.compile(r"[^a-z0-9_.-]+")


@dataclass(frozen=True)
class ImportedBundle:
    """A bundle in BentoML's model store: its tag, the copy's directory, and whether it is new."""

    tag: str
    path: Path
    bundle_name: str
    bundle_version: str
    created: bool


def _model_name(bundle_name: str) -> str:
    """A BentoML model name from a bundle's name (lower case; ``[a-z0-9_.-]``).

    >>> _model_name("Breast Cancer/GBM")
    'breast-cancer-gbm'
    """
    name = _NAME.sub("-", bundle_name.lower()).strip("-._")
    return name or "sidecar-bundle"


def import_bundle(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    public_key: str | os.PathLike[str] | None = None,
) -> ImportedBundle:
    """Check the bundle at ``path`` and save it in BentoML's model store as ``NAME:VERSION``.

    ``name`` defaults to the bundle's own name; the version is the bundle's.
    A registry directory imports its active version. The bundle is checked
    (hashes, seal and, with ``public_key``, its signature) before it is copied
    and the copy is checked again. Importing the same bundle again is a no-op
    (``created=False``); a different bundle under an existing tag is refused.
    """
    import bentoml

    from ..bundle._checks import check_bundle
    from ..bundle._registry import resolve_bundle_path

    root = resolve_bundle_path(Path(path))
    if not (root / "manifest.json").is_file():
        raise InputError(
            f"`BUNDLE` must be a bundle directory (with a manifest.json) or a registry; got {path}."
        )
    if public_key is not None:
        from ..bundle._signing import verify_bundle

        verify_bundle(root, public_key)
    manifest, _ = check_bundle(root)
    model_name = _model_name(name if name is not None else str(manifest["name"]))
    tag = f"{model_name}:{manifest['version']}"
    metadata = _metadata(manifest)
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        if existing.info.metadata.get("seal_sha256") != metadata["seal_sha256"]:
            raise BundleError(
                f"the model store already holds {tag} and it is not this bundle (its seal "
                f"sha256 is {existing.info.metadata.get('seal_sha256')!r}); delete it first: "
                f"bentoml models delete {tag}"
            )
        copy = Path(existing.path) / BUNDLE_DIR
        check_bundle(copy)
        return ImportedBundle(tag, copy, manifest["name"], manifest["version"], created=False)
    labels = {LABEL: "bundle", "bundle-name": model_name, "task": str(manifest["task"])}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        target = Path(model.path) / BUNDLE_DIR
        shutil.copytree(root, target, symlinks=True)
        check_bundle(target)  # the bytes that will be served
    stored = bentoml.models.get(tag)
    return ImportedBundle(
        str(stored.tag),
        Path(stored.path) / BUNDLE_DIR,
        manifest["name"],
        manifest["version"],
        created=True,
    )


def _metadata(manifest: Mapping[str, Any]) -> dict[str, Any]:
    parts = manifest.get("parts", {})
    return {
        "bundle_name": str(manifest["name"]),
        "bundle_version": str(manifest["version"]),
        "seal_sha256": str(manifest.get("seal_sha256", "")),
        "parent": str(manifest.get("parent") or ""),
        "created_at": str(manifest.get("created_at", "")),
        "parts_sha256": {str(k): str(v.get("sha256", "")) for k, v in parts.items()},
    }


def list_bundle_models() -> list[Any]:
    """The bundle models in the active model store, the one imported last first."""
    import bentoml

    found = [m for m in bentoml.models.list() if m.info.labels.get(LABEL) == "bundle"]
    return sorted(found, key=lambda m: m.info.creation_time, reverse=True)


def _bento_tags() -> list[str] | None:
    """The model tags of the Bento these sources were built into; ``None`` outside a Bento."""
    # <bento>/src/sidecar/serving/_bentoml_model.py
    bento_yaml = Path(__file__).resolve().parents[3] / "bento.yaml"
    if not bento_yaml.is_file():
        return None
    import yaml

    info = yaml.safe_load(bento_yaml.read_text()) or {}
    tags = [str(m["tag"]) for m in info.get("models") or [] if isinstance(m, dict) and "tag" in m]
    for service in info.get("services") or []:
        for m in service.get("models") or []:
            if isinstance(m, dict) and "tag" in m and str(m["tag"]) not in tags:
                tags.append(str(m["tag"]))
    return tags


def _choose(environ: Mapping[str, str]) -> Any:
    """The stored model of the bundle to serve, or ``None``."""
    import bentoml

    in_bento = _bento_tags()
    if in_bento is not None:
        for tag in in_bento:
            model = bentoml.models.get(tag)
            if model.info.labels.get(LABEL) == "bundle":
                return model
        return None
    wanted = environ.get("SIDECAR_MODEL")
    if wanted:
        model = bentoml.models.get(wanted)
        if model.info.labels.get(LABEL) != "bundle":
            raise InputError(
                f"SIDECAR_MODEL must name a bundle imported with `sidecar bento import`; "
                f"{wanted} has no {LABEL}=bundle label."
            )
        return model
    found = list_bundle_models()
    return found[0] if found else None


def bundle_model(environ: MutableMapping[str, str] | None = None) -> Any:
    """The ``bentoml.models.BentoModel`` the service declares, or ``None`` with ``SIDECAR_BUNDLE``.

    Sets ``SIDECAR_BUNDLE`` to the model's bundle directory. Called once, when the
    service module is imported (by ``bentoml build`` and by every serving process).
    """
    env = os.environ if environ is None else environ
    if env.get("SIDECAR_BUNDLE"):
        return None
    import bentoml

    try:
        model = _choose(env)
    except bentoml.exceptions.NotFound as exc:
        _refuse(f"the bundle model to serve is not in BentoML's model store: {exc}")
        return None
    if model is None:
        _refuse(
            "no bundle to serve: SIDECAR_BUNDLE is not set and BentoML's model store holds no "
            "bundle. Either SIDECAR_BUNDLE=./my-bundle bentoml serve, or import the bundle "
            "(sidecar bento import ./my-bundle), then bentoml build and bentoml serve the Bento."
        )
        return None
    env["SIDECAR_BUNDLE"] = str(Path(model.path) / BUNDLE_DIR)
    logger.info("serving bundle model %s from %s", model.tag, env["SIDECAR_BUNDLE"])
    return bentoml.models.BentoModel(model.tag)


def _refuse(message: str) -> None:
    """In a BentoML worker: stop the server (a restarted worker would fail the same way)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", "") != "_bentoml_impl.worker.service":
        logger.warning("%s", message)  # `bentoml build`, or an import outside serving
        return
    logger.critical("%s", message)
    os.kill(os.getppid(), signal.SIGTERM)
    raise SidecarError(message)
