"""Reading a mapping from a JSON, TOML or YAML file: specs and plans share it."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from ._errors import SidecarError

__all__ = ["read_mapping"]


def read_mapping(
    path: str | os.PathLike[str], *, what: str, error: type[SidecarError]
) -> dict[str, Any]:
    """The mapping in ``path`` (by its suffix); ``error`` names ``what`` the file is."""
    path = Path(path)
    label = f"{what} {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{label} cannot be read: {exc}") from exc
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml", ".yaml", ".yml"):
        raise error(
            f"{label} must end in .json, .toml, .yaml or .yml; got {suffix or 'no suffix'!r}."
        )
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json, toml and yaml each raise their own
        raise error(f"{label} is not valid {suffix[1:]}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{label} must hold a mapping; got {type(data).__name__}.")
    return data
