"""The one exception hierarchy of model-sidecar.

Every error the project raises on purpose derives from :class:`SidecarError`.
The HTTP status a service answers with follows from the class, so the serving
layer never has to guess:

========================  ======  ==============================================
class                     status  raised when
========================  ======  ==============================================
``InputError``            400     a request or data set does not have the form
                                  the bundle expects (names the field)
``BundleError``           500     a bundle is missing a part, fails its hash
                                  check, or asks for an unsafe loader
``StoreError``            503     the prediction store cannot be reached
``PlanError``             400     a monitoring plan is invalid
``AdapterError``          400     a retraining adapter cannot work on the model
========================  ======  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AdapterError",
    "BundleError",
    "FieldProblem",
    "InputError",
    "PlanError",
    "SidecarError",
    "StoreError",
]


class SidecarError(Exception):
    """Root of every error model-sidecar raises on purpose."""

    http_status: int = 500


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of the input.

    ``field`` is a dotted path such as ``records[3].weight``; ``expected``
    says what form was wanted and ``got`` shows (a short repr of) what came.
    """

    field: str
    expected: str
    got: str

    def message(self) -> str:
        return f"`{self.field}` must be {self.expected}; got {self.got}."

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "expected": self.expected, "got": self.got}


def short_repr(value: Any, limit: int = 60) -> str:
    """A repr of ``value`` cut to ``limit`` characters, with its type for clarity."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"


class InputError(SidecarError, ValueError):
    """Input that does not have the expected form; carries one problem per field."""

    http_status = 400

    def __init__(self, problems: list[FieldProblem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[FieldProblem] = []
            text = problems
        else:
            self.problems = list(problems)
            shown = [p.message() for p in self.problems[:5]]
            more = len(self.problems) - len(shown)
            text = " ".join(shown) + (f" (and {more} more problems)" if more > 0 else "")
        super().__init__(text)


class BundleError(SidecarError):
    """A bundle that cannot be written or loaded safely."""


class StoreError(SidecarError):
    """The prediction store failed."""

    http_status = 503


class PlanError(SidecarError, ValueError):
    """An invalid monitoring plan."""

    http_status = 400


class AdapterError(SidecarError, ValueError):
    """A retraining adapter that cannot work on the given model or data."""

    http_status = 400
