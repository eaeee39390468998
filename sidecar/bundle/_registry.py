"""A bundle registry: every version kept, one of them active, switched atomically.

Layout::

    <root>/
      ACTIVE            the active version (one line), replaced atomically
      history.jsonl     one JSON object per event: register, promote, reject, rollback
      versions/<v>/     every bundle version, loadable as it was saved

``sidecar.load(root)`` loads the active version, so ``SIDECAR_BUNDLE`` can point
at the registry: a running service notices the pointer change within about a
second and switches without a restart (see ``sidecar.serving._hotswap``).

Promotions and rollbacks form a stack: a promotion pushes a version, a
rollback pops back to the version that was active before, so two rollbacks go
back two versions; at the first version a rollback is refused.
A plain bundle directory becomes a registry (its bundle the first version) the
first time a candidate is promoted into it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .._errors import BundleError, InputError
from .._json import dumps

__all__ = ["Registry", "resolve_bundle_path"]

ACTIVE = "ACTIVE"
HISTORY = "history.jsonl"
VERSIONS = "versions"


def resolve_bundle_path(path: Path) -> Path:
    """The directory of the bundle to load: the active version of a registry, or ``path``."""
    active = path / ACTIVE
    if active.is_file():
        version = active.read_text().strip()
        if not version or not version.isalnum():
            raise BundleError(
                f"{active} must name a version (letters and digits); got {version[:40]!r}."
            )
        target = path / VERSIONS / version
        if not target.is_dir():
            raise BundleError(f"{path}: the active version {version!r} is missing from versions/.")
        return target
    return path


class Registry:
    """The versions of one bundle, in ``root``; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> Registry:
        """The registry at ``path``; with ``create``, turn a plain bundle directory into one."""
        root = Path(path)
        if (root / ACTIVE).is_file():
            return cls(root)
        if not create:
            raise InputError(
                f"{root} must be a bundle registry (promote a candidate into it first); got a "
                "plain bundle directory."
            )
        manifest = root / "manifest.json"
        if not manifest.is_file():
            raise BundleError(f"{root} is not a bundle: it has no manifest.json.")
        version = str(json.loads(manifest.read_text())["version"])
        staging = root.parent / f".{root.name}.registry-{os.getpid()}"
        (staging / VERSIONS).mkdir(parents=True)
        try:
            os.replace(root, staging / VERSIONS / version)
            (staging / ACTIVE).write_text(version + "\n")
            os.replace(staging, root)
        except BaseException:
            if not root.exists() and (staging / VERSIONS / version).exists():
                os.replace(staging / VERSIONS / version, root)  # put the bundle back
            shutil.rmtree(staging, ignore_errors=True)
            raise
        registry = cls(root)
        registry._log({"action": "register", "version": version, "note": "the first version"})
        return registry

    @property
    def active(self) -> str:
        return (self.root / ACTIVE).read_text().strip()

    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / VERSIONS).iterdir() if p.is_dir())

    def path_of(self, version: str) -> Path:
        path = self.root / VERSIONS / version
        if not path.is_dir():
            raise InputError(f"version must be one of {self.versions()}; got {version!r}.")
        return path

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def register(self, bundle_dir: Path) -> str:
        """Copy a saved bundle into ``versions/`` (a no-op when that version is there).

        The bundle is checked first (files, hashes, seal), so a link is never
        turned into a copy of what it pointed at.
        """
        from ._checks import check_bundle

        manifest, _ = check_bundle(bundle_dir)
        version = str(manifest["version"])
        target = self.root / VERSIONS / version
        if not target.exists():
            staging = self.root / VERSIONS / f".{version}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(bundle_dir, staging, symlinks=True)
            os.replace(staging, target)
            self._log({"action": "register", "version": version})
        return version

    def activate(
        self, version: str, *, action: str, evidence: dict[str, Any] | None = None
    ) -> None:
        """Make ``version`` the active one in one atomic rename, and log why.

        The version's files are checked first (hashes, seal): a copy that changed
        since it was registered is refused here, while the old version still
        serves, not by a service that then fails to load it.
        """
        from ._checks import check_bundle

        path = self.path_of(version)
        try:
            check_bundle(path)
        except BundleError as exc:
            raise BundleError(
                f"{self.root}: version {version} cannot be made active ({action}); it stays "
                f"{self.active}: {exc}"
            ) from None
        previous = self.active
        tmp = self.root / f".{ACTIVE}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / ACTIVE)
        self._log(
            {
                "action": action,
                "version": version,
                "from": previous,
                **({"evidence": evidence} if evidence else {}),
            }
        )

    def log(self, event: dict[str, Any]) -> None:
        """Record an event that switches nothing (a rejected candidate, say)."""
        self._log(event)

    def stack(self) -> list[str]:
        """The versions made active in turn, oldest first, as rollbacks would undo them.

        Replayed from the history: a promotion pushes its version; a rollback to
        a version further down pops back to it (to one not on the stack, it
        pushes it). The last entry is the active version.
        """
        stack: list[str] = []
        for event in self.history():
            action, version = event.get("action"), event.get("version")
            if action not in ("promote", "rollback") or not isinstance(version, str):
                continue
            if not stack and isinstance(event.get("from"), str):
                stack.append(event["from"])
            if action == "rollback" and version in stack[:-1]:
                del stack[len(stack) - 1 - stack[::-1].index(version) + 1 :]
            else:
                stack.append(version)
        active = self.active
        if not stack or stack[-1] != active:  # switched by hand: start from what is active
            stack = [active]
        return stack

    def previous_active(self) -> str | None:
        """The version a rollback returns to: the one active before the current one."""
        stack = self.stack()
        return stack[-2] if len(stack) > 1 else None

    def rollback(self, to: str | None = None) -> str:
        """Make the previous version (or ``to``) active again; return it.

        Refused with :class:`~sidecar.InputError` at the first version: there
        is nothing earlier to go back to.
        """
        target = to if to is not None else self.previous_active()
        if target is None:
            raise InputError(
                f"{self.root}: nothing to roll back to: {self.active} is the first version made "
                "active here (history.jsonl lists every switch; pass a version to switch to one)."
            )
        self.activate(target, action="rollback")
        return target

    def _log(self, event: dict[str, Any]) -> None:
        line = dumps({"time": time.time(), **event}, sort_keys=True, default=str)
        with open(self.root / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
