"""Reading preprocessing spec files, and saving/loading the bundle's preprocessing part."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydantic

from .._errors import BundleError, InputError
from .._files import read_mapping
from ..bundle._safe import skops_dump, skops_load
from ._base import Preprocessor
from ._sklearn import SklearnPreprocessor
from ._tabular import TabularPreprocessor, TabularSpec

__all__ = ["load_preprocessing", "read_spec", "save_preprocessing"]

_STATE_FILE = "preprocessing.json"
_TRANSFORMER_FILE = "transformer.skops"


def read_spec(path: str | os.PathLike[str]) -> TabularPreprocessor:
    """Read a declarative tabular spec from a JSON, TOML or YAML file (unfitted)."""
    data = read_mapping(path, what="preprocessing spec", error=InputError)
    try:
        spec = TabularSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise InputError(f"preprocessing spec {path} is invalid: {_pydantic_text(exc)}") from exc
    return TabularPreprocessor.from_spec(spec)


def _pydantic_text(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"`{loc}`: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def save_preprocessing(pre: Preprocessor, directory: Path) -> dict[str, Any]:
    """Write ``pre`` into ``directory``; return its manifest entry (without hash)."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(pre, TabularPreprocessor):
        doc: dict[str, Any] = {"spec": pre.to_spec().model_dump(mode="json"), "state": pre.state()}
        (directory / _STATE_FILE).write_text(json.dumps(doc, indent=1, sort_keys=True))
        return {"kind": "tabular", "framework": "sidecar", "format": "json"}
    if isinstance(pre, SklearnPreprocessor):
        skops_dump(pre.transformer, directory / _TRANSFORMER_FILE)
        doc = {
            "input_fields": list(pre.input_fields),
            "categorical_fields": list(pre.categorical_fields),
            "allow_nan": pre.allow_nan,
        }
        (directory / _STATE_FILE).write_text(json.dumps(doc, indent=1, sort_keys=True))
        return {"kind": "sklearn", "framework": "sklearn", "format": "skops"}
    raise BundleError(
        "preprocessing must be a sidecar TabularPreprocessor or a fitted scikit-learn "
        f"transformer; got {type(pre).__name__}."
    )


def load_preprocessing(
    directory: Path, meta: dict[str, Any], *, trusted: tuple[str, ...] = ()
) -> Preprocessor:
    doc = json.loads((directory / _STATE_FILE).read_text())
    version = meta.get("version")
    if meta["kind"] == "tabular":
        spec = TabularSpec.model_validate(doc["spec"])
        pre = TabularPreprocessor.from_spec(spec)
        fills = {k: (float("nan") if v is None else v) for k, v in doc["state"]["fills"].items()}
        pre.set_state(doc["state"]["vocabularies"], fills)
        pre.version = version
        return pre
    if meta["kind"] == "sklearn":
        transformer = skops_load(directory / _TRANSFORMER_FILE, trusted)
        return SklearnPreprocessor(
            transformer,
            input_fields=doc["input_fields"],
            categorical_fields=doc["categorical_fields"],
            version=version,
            allow_nan=doc["allow_nan"],
        )
    raise BundleError(
        "part 'preprocessing' field `kind` must be 'tabular' or 'sklearn'; got "
        f"{meta.get('kind')!r}."
    )
