"""The JSON schemas the OpenAPI document shows for ``records`` and ``labels``.

They are built from the served bundle's manifest and preprocessing spec when
the service module is imported, so a client generator or a schema fuzzer
(schemathesis) can build valid requests. They describe; they do not
validate: the bundle's preprocessing and the label rule check every request
(and name each bad field), so typing the schema adds nothing to the request
path. A bundle whose spec cannot be read gets the generic schemas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._labels import MAX_EPOCH, MAX_REQUEST_ID

__all__ = ["labels_schema", "records_schema"]

_GENERIC_RECORD: dict[str, Any] = {
    "type": "object",
    "description": "One raw record: the fields the bundle's preprocessing reads.",
}


def records_schema(bundle: str | None, max_batch: int) -> dict[str, Any]:
    """``records``: 1 to ``max_batch`` raw records, each as the bundle's preprocessing reads it."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_batch,
        "items": _record_schema(bundle),
        "description": "A non-empty list of raw records (JSON objects), one per example.",
    }


def labels_schema(bundle: str | None) -> dict[str, Any]:
    """``labels``: ``{request_id, label[, ts]}`` items, the label typed as the model's classes."""
    return {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["request_id", "label"],
            "additionalProperties": False,
            "properties": {
                "request_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_REQUEST_ID,
                    "pattern": "^[^\\x00-\\x1f\\x7f]+$",
                    "description": "An id the service returned in `request_ids`.",
                },
                "label": _label_schema(bundle),
                "ts": {
                    "type": "number",
                    "minimum": -MAX_EPOCH,
                    "maximum": MAX_EPOCH,
                    "description": "When the label was observed (epoch seconds).",
                },
            },
        },
        "description": "A non-empty list of {request_id, label} (and optionally ts, epoch s).",
    }


def _manifest(bundle: str | None) -> dict[str, Any] | None:
    if not bundle:
        return None
    try:
        manifest = json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _label_schema(bundle: str | None) -> dict[str, Any]:
    manifest = _manifest(bundle) or {}
    if manifest.get("task") == "regression":
        return {"type": "number", "description": "The observed value (a finite number)."}
    classes = manifest.get("classes")
    if isinstance(classes, list) and classes:
        return {"enum": classes, "description": "The observed class, one of the model's classes."}
    return {"type": ["string", "number"], "description": "The observed class."}


def _record_schema(bundle: str | None) -> dict[str, Any]:
    if not bundle:
        return _GENERIC_RECORD
    try:
        from ..preprocessing import TabularSpec

        raw = json.loads(
            (Path(bundle) / "preprocessing" / "preprocessing.json").read_text(encoding="utf-8")
        )
        spec = TabularSpec.model_validate(raw.get("spec", raw))
    except Exception:  # not a tabular bundle, or not readable: the generic schema
        return _GENERIC_RECORD
    properties: dict[str, Any] = {}
    required: list[str] = []
    for col in spec.columns:
        if col.type == "numeric":
            # Finite numbers only (JSON has no NaN); the bound keeps a generator
            # inside what a float holds after unit conversion.
            prop: dict[str, Any] = {"type": "number", "minimum": -1e15, "maximum": 1e15}
        else:
            words = list(col.vocabulary or ())
            prop = {"type": "string"} if not words else {"type": "string", "examples": words[:5]}
        if col.allow_missing:
            prop = {"anyOf": [prop, {"type": "null"}]}
        else:
            required.append(col.name)
        properties[col.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if spec.extra_fields == "forbid":
        schema["additionalProperties"] = False
    return schema
