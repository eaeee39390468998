"""The declarative form of the tabular preprocessor: its columns and its spec file.

Pydantic models with unknown keys rejected, so a typo in a spec file is an
error, not a silently ignored option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._errors import InputError
from ._units import affine

__all__ = ["CategoricalColumn", "Column", "EncodingReport", "NumericColumn", "TabularSpec"]


class NumericColumn(BaseModel):
    """A numeric raw field.

    ``unit`` is the unit the model was trained on; ``input_unit`` the unit the
    raw field arrives in, when it differs. ``fill`` says what a missing value
    becomes when ``allow_missing`` is true: ``"median"`` (learned at fit),
    ``"nan"`` (for models that handle NaN), or a number.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["numeric"] = "numeric"
    name: str = Field(min_length=1)
    unit: str | None = None
    input_unit: str | None = None
    allow_missing: bool = False
    fill: float | Literal["median", "nan"] = "median"


class CategoricalColumn(BaseModel):
    """A categorical raw field, encoded from a top-n vocabulary.

    Code 0 is the default for anything outside the vocabulary (and for a
    missing value when ``allow_missing``); the vocabulary's words get codes
    1..n in order of falling frequency. ``recode`` maps raw words to
    vocabulary words before the look-up (e.g. ICD-10 codes to the ICD-9 codes
    the model learned). ``encoding="onehot"`` emits one 0/1 column per code,
    the unknown code first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["categorical"] = "categorical"
    name: str = Field(min_length=1)
    top_n: int = Field(default=50, ge=1)
    min_count: int = Field(default=1, ge=1)
    vocabulary: tuple[str, ...] | None = None
    recode: dict[str, str] = Field(default_factory=dict)
    encoding: Literal["ordinal", "onehot"] = "ordinal"
    allow_missing: bool = False


Column = Annotated[NumericColumn | CategoricalColumn, Field(discriminator="type")]


class TabularSpec(BaseModel):
    """The declarative form of a :class:`TabularPreprocessor` (what a spec file holds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tabular"] = "tabular"
    version: str | None = None
    extra_fields: Literal["forbid", "ignore"] = "forbid"
    columns: tuple[Column, ...] = Field(min_length=1)


@dataclass(frozen=True)
class EncodingReport:
    """What one ``transform`` call could not encode cleanly, per column."""

    n_records: int
    unknown: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)


def conversion(col: NumericColumn) -> tuple[float, float]:
    """``(a, b)`` with ``model value = a * raw value + b`` for a numeric column."""
    if col.input_unit is not None and col.input_unit != col.unit:
        if col.unit is None:
            raise InputError(
                f"column `{col.name}` must declare `unit` when it declares "
                f"`input_unit`; got input_unit={col.input_unit!r} and no unit."
            )
        return affine(col.input_unit, col.unit)
    if col.unit is not None:
        affine(col.unit, col.unit)  # validates the unit's name
    return (1.0, 0.0)
