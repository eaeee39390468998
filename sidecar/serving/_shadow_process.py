"""Moved: the process transport is :mod:`sidecar.shadow._process`, the factories ``_wiring``.

Kept for the CLI's start-up check until it imports ``_wiring`` itself.
"""

from __future__ import annotations

from ._wiring import load_bundle

__all__ = ["load_bundle"]
