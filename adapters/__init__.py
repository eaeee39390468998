"""Retraining adapters for model-sidecar bundles (regularize, replace members, fine-tune head).

They use only ``sidecar``'s public API; ``sidecar`` never imports them at module level.
"""

__all__: list[str] = []
