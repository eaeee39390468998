"""Signing a bundle, and verifying who signed it: the OpenSSF model-signing format.

Integrity (the seal and the part hashes) says a bundle is what its manifest
says; anyone can write a consistent bundle. A signature says *who* wrote it:
``sidecar sign`` signs every file of a saved bundle with a private key (an
ECDSA key in PEM, e.g. P-256) using the OpenSSF ``model-signing`` package
(an in-toto statement over each file's sha256, in a Sigstore bundle, signed
offline -- no network, no transparency log). ``sidecar verify`` and
``sidecar.load(path, public_key=...)`` (``SIDECAR_PUBLIC_KEY``, or
``sidecar serve --require-signature KEY``) check it first, before anything is
loaded: any changed byte, added, removed or renamed file, or another key,
fails.

The signature lives in the bundle, ``signature.sig`` beside the manifest, and
is the one file the signature does not cover. Saving a bundle again writes an
unsigned copy; sign it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._errors import BundleError
from .._optional import import_optional

__all__ = ["SIGNATURE", "sign_bundle", "verify_bundle"]

SIGNATURE = "signature.sig"


def _require() -> Any:
    return import_optional(
        "model_signing",
        extra="sign",
        needed_by="signing and verifying bundles",
        package="the OpenSSF model-signing package",
        error=BundleError,
    )


def _hashing(model_signing: Any) -> Any:
    # Every file but the signature itself, .git* files included: an added file must fail.
    return model_signing.hashing.Config().set_ignored_paths(
        paths=[SIGNATURE], ignore_git_paths=False
    )


def sign_bundle(
    path: str | os.PathLike[str],
    private_key: str | os.PathLike[str],
    *,
    password: str | None = None,
) -> Path:
    """Sign the saved bundle at ``path`` (a registry: its active version); return the signature.

    The bundle is checked first (hashes, seal, files), without loading its
    models: a bundle that would not load is never signed.
    """
    from ._checks import check_bundle
    from ._registry import resolve_bundle_path

    root = resolve_bundle_path(Path(path))
    check_bundle(root)
    ms = _require()
    key = Path(private_key)
    if not key.is_file():
        raise BundleError(f"the private key must be a PEM file; got {str(key)!r} (no such file).")
    signature = root / SIGNATURE
    signature.unlink(missing_ok=True)
    try:
        # model-signing 1.1 hands the password to cryptography, which needs bytes
        secret = None if password is None else password.encode()
        config = ms.signing.Config().use_elliptic_key_signer(private_key=key, password=secret)
        config.set_hashing_config(_hashing(ms)).sign(root, signature)
    except Exception as exc:  # a bad key or password: model-signing raises several kinds
        signature.unlink(missing_ok=True)
        raise BundleError(f"cannot sign {root} with {key}: {exc}") from exc
    return signature


def verify_bundle(path: str | os.PathLike[str], public_key: str | os.PathLike[str]) -> None:
    """Refuse the bundle at ``path`` unless its signature verifies with ``public_key``."""
    root = Path(path)
    ms = _require()
    key = Path(public_key)
    if not key.is_file():
        raise BundleError(f"the public key must be a PEM file; got {str(key)!r} (no such file).")
    signature = root / SIGNATURE
    if signature.is_symlink() or not signature.is_file():
        raise BundleError(
            f"{root} is not signed (it has no {SIGNATURE}), and a signature is required; sign it "
            "with `sidecar sign BUNDLE --key PRIVATE.pem`."
        )
    try:
        config = ms.verifying.Config().use_elliptic_key_verifier(public_key=key)
        config.set_hashing_config(_hashing(ms)).verify(root, signature)
    except Exception as exc:  # model-signing raises ValueError and others on a mismatch
        raise BundleError(
            f"{root}: the signature does not verify with {key}: {exc}. The bundle was changed "
            "after it was signed, or signed with another key; refusing it."
        ) from exc
