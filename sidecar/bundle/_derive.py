"""What a derived bundle version must satisfy before ``Bundle._derive`` builds it.

A new preprocessing must emit the features the models were trained on and
carry a new version; new models must answer the same task and know the same
classes, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import InputError
from ..preprocessing import Preprocessor, TabularPreprocessor
from ..runtimes import Predictor, as_predictor

if TYPE_CHECKING:
    from ._bundle import Bundle

__all__ = ["checked_models", "checked_preprocessing"]


def checked_preprocessing(bundle: Bundle, preprocessing: Preprocessor) -> Preprocessor:
    """``preprocessing`` as the successor of ``bundle``'s: an unfitted tabular one takes
    over the current vocabularies; the features must match; the version must be new."""
    if isinstance(preprocessing, TabularPreprocessor) and not hasattr(
        preprocessing, "vocabularies_"
    ):
        if not isinstance(bundle.preprocessing, TabularPreprocessor):
            raise InputError(
                "an unfitted tabular preprocessing can only replace a tabular one "
                "(it takes over its vocabularies); fit it first."
            )
        preprocessing.with_state_of(bundle.preprocessing)
    old, new = bundle.preprocessing.feature_names_out, preprocessing.feature_names_out
    if old and new and old != new:
        raise InputError(
            f"the new preprocessing must emit the features the models were trained on "
            f"{list(old)[:10]}...; got {list(new)[:10]}..."
        )
    if preprocessing.version is not None and preprocessing.version == bundle.preprocessing_version:
        raise InputError(
            f"the new preprocessing must have a new version; got the current one "
            f"{preprocessing.version!r}."
        )
    return preprocessing


def checked_models(
    bundle: Bundle,
    advanced: Any,
    baseline: Any,
    *,
    framework: str | None,
    model_options: Mapping[str, Any] | None,
) -> tuple[Predictor, Predictor]:
    """The advanced and baseline predictors of a retraining candidate of ``bundle``: the
    given models (``None`` keeps the current one), checked against its classes."""
    classes = bundle.advanced.classes
    new_adv = bundle.advanced
    if advanced is not None:
        new_adv = as_predictor(
            advanced,
            task=bundle.task,
            framework=framework,
            classes=classes,
            **dict(model_options or {}),
        )
    new_base = bundle.baseline if baseline is None else as_predictor(baseline, task=bundle.task)
    if bundle.task == "classification":
        for who, model in (("advanced", new_adv), ("baseline", new_base)):
            if model.classes is not None and list(model.classes) != list(classes or []):
                raise InputError(
                    f"the new {who} model must know the classes {list(classes or [])} "
                    f"in that order; got {list(model.classes)}."
                )
    return new_adv, new_base
