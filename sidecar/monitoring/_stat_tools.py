"""What the hypothesis tests share: argument checks, bootstrap draws, pair estimates.

Each check raises ``InputError`` naming the argument, the expected form and
what came. Bootstrap draws are ``(rows, n)`` index matrices in chunks of at
most :data:`_CHUNK_ELEMENTS` elements; Hodges-Lehmann estimates use every pair
up to :data:`_MAX_PAIRS` and a seeded sample of pairs beyond.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import numpy.typing as npt
from scipy import stats

from .._errors import FieldProblem, InputError, short_repr

FloatArray = npt.NDArray[np.float64]


#: Index elements drawn per bootstrap chunk (an (rows, n) int64 matrix: 32 MiB).
_CHUNK_ELEMENTS = 1 << 22


#: Above this many pairs, Hodges-Lehmann estimates use a seeded sample of pairs.
_MAX_PAIRS = 2_000_000


def _problem(field: str, expected: str, got: str) -> InputError:
    return InputError([FieldProblem(field, expected, got)])


def _vector(values: npt.ArrayLike, name: str, *, min_size: int = 1) -> FloatArray:
    """``values`` as a 1-D float array of finite numbers with at least ``min_size`` entries."""
    expected = "a 1-D array of finite numbers" + (
        f" with at least {min_size} values" if min_size > 1 else ""
    )
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _problem(name, expected, short_repr(values)) from None
    if arr.ndim != 1:
        raise _problem(name, expected, f"an array of shape {arr.shape}")
    if arr.size < min_size:
        raise _problem(name, expected, f"{arr.size} values" if arr.size else "an empty array")
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.argmin(finite))
        raise _problem(name, expected, f"{arr[i]} at index {i}")
    return arr


def _paired(
    a: npt.ArrayLike, b: npt.ArrayLike, names: tuple[str, str], *, min_size: int = 1
) -> tuple[FloatArray, FloatArray]:
    x = _vector(a, names[0], min_size=min_size)
    y = _vector(b, names[1], min_size=min_size)
    if x.size != y.size:
        raise _problem(
            names[1], f"the same length as `{names[0]}` ({x.size}, one per request)", str(y.size)
        )
    return x, y


def _probability(value: float, name: str, *, closed: bool = False) -> float:
    interval = "[0, 1]" if closed else "(0, 1)"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (0.0 <= v <= 1.0) if closed else (0.0 < v < 1.0)
    if not inside:
        raise _problem(name, f"a float in {interval}", short_repr(value))
    return v


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not (math.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        form = "a finite float >= 0" if allow_zero else "a finite float > 0"
        raise _problem(name, form, short_repr(value))
    return v


def _count(value: int, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise _problem(name, f"an integer >= {minimum}", short_repr(value))
    return int(value)


def _bootstrap_means(values: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """Means of ``n_boot`` resamples of ``values``, drawn as (rows, n) index matrices in chunks."""
    n = values.size
    rows = max(1, min(n_boot, _CHUNK_ELEMENTS // n))
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _percentile_ci(boot: FloatArray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _bootstrap_p(boot: FloatArray, estimate: float) -> float:
    """Two-sided p-value: the bootstrap distribution shifted to the null (mean 0).

    ``(1 + #{|boot - estimate| >= |estimate|}) / (n_boot + 1)``, which is never 0.
    """
    extreme = np.count_nonzero(np.abs(boot - estimate) >= abs(estimate))
    return float((1 + extreme) / (boot.size + 1))


def _ratio(num: float, den: float) -> float:
    """``num / den`` where a zero denominator gives 0 (for 0/0) or a signed infinity."""
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.copysign(math.inf, num)


def _order_statistics(values: FloatArray, total: int, k: int) -> tuple[float, float, float]:
    """Median and the k-th smallest / largest of ``total`` pair statistics (``values`` may be a
    uniform sample of them), for a Hodges-Lehmann estimate and its distribution-free interval."""
    m = values.size
    k = min(max(k, 1), (total + 1) // 2)
    lo_pos = round((k - 1) * (m - 1) / max(total - 1, 1))
    hi_pos = m - 1 - lo_pos
    part = np.partition(values, [lo_pos, hi_pos])
    return float(np.median(values)), float(part[lo_pos]), float(part[hi_pos])


def _walsh_averages(d: FloatArray, seed: int) -> tuple[FloatArray, bool]:
    """All ``(d_i + d_j) / 2`` for ``i <= j``, or a seeded sample of ``_MAX_PAIRS`` of them."""
    n = d.size
    if n * (n + 1) // 2 <= _MAX_PAIRS:
        i, j = np.triu_indices(n)
        return (d[i] + d[j]) / 2.0, True
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, _MAX_PAIRS)
    j = rng.integers(0, n, _MAX_PAIRS)
    return (d[i] + d[j]) / 2.0, False


def _pair_differences(x: FloatArray, y: FloatArray, seed: int) -> tuple[FloatArray, bool]:
    """All ``x_i - y_j``, or a seeded sample of ``_MAX_PAIRS`` of them."""
    if x.size * y.size <= _MAX_PAIRS:
        return (x[:, None] - y[None, :]).ravel(), True
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, x.size, _MAX_PAIRS)] - y[rng.integers(0, y.size, _MAX_PAIRS)], False


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))
