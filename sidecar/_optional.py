"""Optional heavy dependencies, imported where they are used.

torch, onnxruntime, psycopg, pandas and model-signing are extras of
the package; importing ``sidecar`` never needs them. :func:`import_optional`
imports one when a feature needs it, and when it is missing raises the
project's error naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import InputError, SidecarError

__all__ = ["import_optional"]


def import_optional(
    module: str,
    *,
    extra: str,
    needed_by: str,
    package: str | None = None,
    error: type[SidecarError] = InputError,
) -> ModuleType:
    """Import ``module``, or raise ``error`` saying what needs it and which extra to install.

    ``needed_by`` starts the message ("this model", "export"); ``package`` names
    the distribution in it (``module`` by default).

    >>> import_optional("json", extra="none", needed_by="this example").__name__
    'json'
    >>> import_optional("no_such_module", extra="parquet", needed_by="export", package="pyarrow")
    Traceback (most recent call last):
    ...
    sidecar._errors.InputError: export needs pyarrow; install it with `pip install 'model-sidecar[parquet]'`.
    """  # noqa: E501
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(
            f"{needed_by} needs {package or module}; install it with "
            f"`pip install 'model-sidecar[{extra}]'`."
        ) from exc
