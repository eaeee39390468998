"""The preprocessing-health tests of one categorical field: missing and unknown-code
rates, and values whose shape (digits -> ``9``, letters -> ``A``) the reference never had.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ._health_candidates import MAX_EXAMPLES, Candidate, Thresholds, rate_candidate, share_candidate

_SHAPE = str.maketrans(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "9" * 10 + "A" * 52,
)


def value_shape(value: str) -> str:
    """A value's shape: digits become ``9``, letters ``A``, everything else stays.

    >>> value_shape("250.00"), value_shape("E11.9")
    ('999.99', 'A99.9')
    """
    shape = value.translate(_SHAPE)
    if not shape.isascii():
        shape = "".join("A" if c.isalpha() else "9" if c.isdigit() else c for c in shape)
    return shape


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def categorical_checks(
    feature: str,
    sketch: Mapping[str, Any],
    values: Sequence[Any],
    unknown: int | None,
    limits: Thresholds,
    *,
    counted: Mapping[Any, int] | None = None,
) -> list[Candidate]:
    """The missing and unknown-code rates and the never-seen shapes of one categorical field."""
    min_rate_increase, min_format_share = limits.min_rate_increase, limits.min_format_share
    tests: list[Candidate] = []
    n = len(values)
    n_ref = int(sketch["count"])
    if n == 0 or n_ref == 0:
        return tests
    # Count the values once (hashing in C), then fold the few distinct keys.
    counts: Counter[str] = Counter()
    for value, c in (Counter(values) if counted is None else counted).items():
        if not _is_missing(value):
            counts[str(value)] += c
    n_missing = n - sum(counts.values())
    tests.append(
        rate_candidate(
            feature,
            "missing_rate",
            "missing",
            int(sketch["missing"]),
            n_ref,
            n_missing,
            n,
            min_rate_increase,
        )
    )
    if unknown is not None:
        k_ref = round(float(sketch["unknown_rate"]) * n_ref)
        tests.append(
            rate_candidate(
                feature, "unknown_rate", "unknown-code", k_ref, n_ref, unknown, n, min_rate_increase
            )
        )
    m = n - n_missing
    if m == 0:
        return tests
    seen = {value_shape(str(k)) for k in sketch["counts"]}
    new_shapes: Counter[str] = Counter()
    for value, c in counts.items():
        shape = value_shape(value)
        if shape not in seen:
            new_shapes[shape] += c
    k = sum(new_shapes.values())
    m_ref = n_ref - int(sketch["missing"])
    tests.append(
        share_candidate(
            feature,
            "format",
            f"{feature}: {k} of {m} values have a shape the reference never had "
            f"(e.g. {', '.join(repr(s) for s, _ in new_shapes.most_common(3))}; reference: "
            f"{', '.join(repr(s) for s in sorted(seen)[:3])}).",
            # The shapes of the reference's rarest values (its ``other``) are not
            # known: count them as possibly new, which keeps the test conservative.
            int(sketch.get("other", 0)),
            m_ref,
            k,
            m,
            min_format_share,
            {
                "new_shapes": dict(new_shapes.most_common(MAX_EXAMPLES)),
                "reference_shapes": sorted(seen)[:MAX_EXAMPLES],
            },
        )
    )
    return tests
