"""Physical units a numeric column may declare, and the conversion between them.

A column declares the ``unit`` the model was trained on and, when the raw field
arrives in another unit, the ``input_unit``; the preprocessor converts on the
way in. Fixing a "weights now arrive in pounds" fault is then a preprocessing
swap (``input_unit="lb"``), not a retraining.

>>> affine("lb", "kg")
(0.45359237, 0.0)
>>> a, b = affine("degF", "degC")
>>> round(212 * a + b, 9)
100.0
"""

from __future__ import annotations

from .._errors import InputError

__all__ = ["UNITS", "affine"]

# unit -> (dimension, scale to the dimension's base unit, offset to it)
UNITS: dict[str, tuple[str, float, float]] = {
    "kg": ("mass", 1.0, 0.0),
    "g": ("mass", 1e-3, 0.0),
    "mg": ("mass", 1e-6, 0.0),
    "lb": ("mass", 0.45359237, 0.0),
    "oz": ("mass", 0.028349523125, 0.0),
    "m": ("length", 1.0, 0.0),
    "cm": ("length", 1e-2, 0.0),
    "mm": ("length", 1e-3, 0.0),
    "km": ("length", 1e3, 0.0),
    "in": ("length", 0.0254, 0.0),
    "ft": ("length", 0.3048, 0.0),
    "mi": ("length", 1609.344, 0.0),
    "K": ("temperature", 1.0, 0.0),
    "degC": ("temperature", 1.0, 273.15),
    "degF": ("temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    "s": ("time", 1.0, 0.0),
    "ms": ("time", 1e-3, 0.0),
    "min": ("time", 60.0, 0.0),
    "h": ("time", 3600.0, 0.0),
    "d": ("time", 86400.0, 0.0),
}


def affine(source: str, target: str) -> tuple[float, float]:
    """Return ``(a, b)`` such that ``value_in_target = a * value_in_source + b``."""
    for unit in (source, target):
        if unit not in UNITS:
            raise InputError(f"unit must be one of {sorted(UNITS)}; got {unit!r}.")
    dim_s, scale_s, off_s = UNITS[source]
    dim_t, scale_t, off_t = UNITS[target]
    if dim_s != dim_t:
        raise InputError(
            f"cannot convert {source!r} ({dim_s}) to {target!r} ({dim_t}): "
            "the units measure different things."
        )
    a = scale_s / scale_t
    b = (off_s - off_t) / scale_t
    return (round(a, 15), round(b, 12))
