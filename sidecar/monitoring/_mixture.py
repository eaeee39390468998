"""Partial unit switches: a share of a column's values arrives in another unit.

Why this module is long: about 480 lines, over the usual 400, because the fit,
the sketch's CDF and the smooth change of the world the fit must beat belong
together and nowhere else.

When one upstream system of three starts sending pounds, a third of the
weights are the reference times 2.2046 and the rest are unchanged. No single
factor maps the reference quantiles onto the window's (the whole-column check
in ``_unit_factor.unit_factor`` finds nothing), and a drift test only says
"changed". :func:`fit_unit_mixture` asks the sharper question: is the window a
two-component mixture ``(1 - share) F + share F∘T⁻¹`` of the reference
distribution ``F`` and its image under a known conversion ``T(x) = a x + b``
(every same-dimension pair in ``UNITS``: kg->lb, x1000, m->cm, degC->degF...)?

The reference is its bundle sketch (101 quantiles), so ``F`` is the
piecewise-linear CDF through them -- a step function for integer data, and
for whole numbers that still arrive whole the conversion is rounded -- with
``1 / (n_ref + 1)`` of mass beyond each extreme. The window is counted in
bins bounded by the reference's 0/2/5/.../95/98/100 % quantiles and their
images under ``T`` (so both components are resolved). Beyond its 2nd and
98th percentiles a sketch says how much mass lies, not how it is spread, so
the reference's tails are split freely there (like the window's counts under
"no change", by EM beside the converted copy under the mixture). The share is
the maximum-likelihood estimate of the binned multinomial mixture (concave in
the share: safeguarded Newton steps).

The reference is a sample too: every deviance is scaled by
``m_eff / m = 1 / (1 + m / n_ref)`` (the variance of a two-sample difference
of proportions), so a million current rows against a 5,000-row reference do
not turn the reference's own noise into evidence.

For the best conversion -- among the clearly significant ones whose mixture
fits, the one that fits best -- four things decide:

* **significance** -- the likelihood-ratio statistic against ``share = 0``
  is, on the boundary, a 50:50 mixture of chi2_0 and chi2_1; the p-value is
  Bonferroni-corrected for the conversions tried (the caller corrects it
  again with the window's other health tests);
* **materiality** -- the share is at least a floor (``min_share``);
* **fit** -- the mixture must explain the change: its residual deviance is
  within the chi-square noise of its degrees of freedom (p > 0.001) or at most
  a tenth of the no-mixture deviance; and
* **not an ordinary change** -- it must fit clearly better (by the chi-square
  1-df 0.001 point) than the best smooth monotone change of the reference
  (shift, stretch, and a curvature on each side of the median; see
  ``_world_change``). A shifted, widened or re-skewed world is left to the
  drift tests.

Conversions whose two components barely differ on this feature (total
variation below 0.25, e.g. x1.09 on almost anything) are not tried: they
cannot be told from a change of the world, and leaving them out keeps the
correction small. Known limits: a factor within the spread of a very skewed
feature (x2.2 where values span two decades) separates poorly; a share under
about 15 % of a few hundred rows is often missed or, with no declared unit,
taken for a neighbouring factor (x1440 for x1000); the share leans low by up
to the reference tails' 2 % on each side (its interval is widened for it).

>>> import numpy as np
>>> from sidecar.bundle._reference import _numeric_sketch
>>> rng = np.random.default_rng(0)
>>> sketch = _numeric_sketch(rng.normal(70, 12, 5000))  # kg
>>> now = rng.normal(70, 12, 2000)
>>> now[:700] *= 2.20462262  # one source in three sends pounds
>>> fit = fit_unit_mixture(sketch, np.sort(now))
>>> fit.units, round(fit.share, 2), fit.explains(min_share=0.05)
(('kg->lb',), 0.35, True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from ..preprocessing._units import UNITS, affine

__all__ = ["MixtureFit", "fit_unit_mixture"]

_TAIL = 2  # percentiles beyond which the sketch's shape is not trusted
_LEVELS = np.r_[0, _TAIL, 5:100:5, 100 - _TAIL, 100]  # bin edges (and their images)
_MIN_SEPARATION = 0.25  # total variation between the components below which T is not tried
_FIT_P = 1e-3  # a mixture fits when its residual deviance has a p-value above this
_EXPLAINED = 0.9  # ... or when it explains at least this share of the deviance
_NEWTON = 80  # at most this many safeguarded Newton steps for the share
_EM_ROUNDS = 4  # rounds of (tails, share)


@dataclass(frozen=True)
class MixtureFit:
    """The best mixture of the reference with a converted copy of itself.

    ``share`` is the estimated fraction of the (non-missing) values that
    arrive converted, ``share_low``/``share_high`` its 95 % Wald interval
    (widened upwards by the reference's 2 % tails on either side, which may
    hold some converted values: the estimate leans low by up to that much);
    ``statistic`` the likelihood ratio against ``share = 0`` and ``p_value``
    its boundary p-value times ``candidates`` (Bonferroni); ``deviance`` and
    ``residual`` the scaled deviance of the window from the reference without
    and with the mixture, ``df`` the residual's degrees of freedom;
    ``separation`` the total variation between the two components.
    """

    factor: float
    offset: float
    units: tuple[str, ...]
    share: float
    share_low: float
    share_high: float
    statistic: float
    p_value: float
    deviance: float
    residual: float
    world_change: float
    df: int
    separation: float
    candidates: int
    n: int

    @property
    def fits(self) -> bool:
        """Does the mixture explain the window (within noise, or most of its change)?"""
        noise = float(stats.chi2.isf(_FIT_P, max(self.df, 1)))
        explained = self.residual <= max(noise, (1 - _EXPLAINED) * self.deviance)
        # NaN (not fitted: the mixture did not fit) compares False
        better = self.world_change - self.residual >= float(stats.chi2.isf(_FIT_P, 1))
        return explained and better

    def explains(self, *, min_share: float) -> bool:
        """A material partial switch: the share reaches ``min_share`` and the mixture fits."""
        return self.share >= min_share and self.fits

    def evidence(self) -> dict[str, Any]:
        """The fit as plain JSON-ready values."""
        return {
            "factor": self.factor,
            "offset": self.offset,
            "units": list(self.units),
            "share": self.share,
            "share_low": self.share_low,
            "share_high": self.share_high,
            "lr_statistic": self.statistic,
            "deviance": self.deviance,
            "residual_deviance": self.residual,
            "shift_scale_deviance": self.world_change,
            "df": self.df,
            "separation": self.separation,
            "conversions_tried": self.candidates,
            "n": self.n,
        }


@functools.cache
def _conversions(
    declared: str | None,
) -> tuple[np.ndarray, np.ndarray, tuple[tuple[str, ...], ...]]:
    """Every same-dimension conversion ``a * x + b`` (a > 0) in UNITS, grouped by (a, b)."""
    groups: dict[tuple[float, float], list[str]] = {}
    for source, (dim_s, _, _) in UNITS.items():
        if declared is not None and source != declared:
            continue
        for target, (dim_t, _, _) in UNITS.items():
            if source != target and dim_s == dim_t:
                a, b = affine(source, target)
                groups.setdefault((float(f"{a:.9g}"), round(b, 6)), []).append(
                    f"{source}->{target}"
                )
    keys = [k for k in groups if k[0] > 0]
    return (
        np.array([a for a, _ in keys]),
        np.array([b for _, b in keys]),
        tuple(tuple(groups[k]) for k in keys),
    )


@dataclass(frozen=True)
class _ReferenceCdf:
    """The sketch's CDF: knots ``xs`` (distinct quantiles) at levels ``ls``."""

    xs: np.ndarray
    ls: np.ndarray
    tail: float  # mass beyond each extreme, 1 / (n_ref + 1)
    integer: bool

    @staticmethod
    def of(sketch: Mapping[str, Any]) -> _ReferenceCdf:
        q = np.asarray(sketch["quantiles"], dtype=np.float64)
        levels = np.linspace(0.0, 1.0, q.size)
        last_of_tie = np.r_[q[1:] > q[:-1], True]  # right-continuous at tied quantiles
        n_ref = int(sketch["count"]) - int(sketch["missing"])
        return _ReferenceCdf(
            q[last_of_tie], levels[last_of_tie], 1.0 / (n_ref + 1), bool(sketch.get("integer"))
        )

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """P(X <= v), the reference's tail mass counted at its extremes."""
        if self.integer:  # whole numbers: P(X <= 4.5) = P(X <= 4)
            with np.errstate(invalid="ignore"):  # +-inf stay as they are
                v = np.where(np.isfinite(v), np.floor(v + 1e-9 * np.maximum(1.0, np.abs(v))), v)
        core = np.interp(v, self.xs, self.ls, left=0.0, right=1.0)
        return np.asarray(self.tail + (1 - 2 * self.tail) * core)


def _bin_probabilities(cdf: _ReferenceCdf, points: np.ndarray) -> np.ndarray:
    """Probabilities of the bins (-inf, p0], (p0, p1], ..., (p_last, inf), row by row."""
    inner = cdf(points)
    ones = np.ones((points.shape[0], 1))
    p = np.diff(np.hstack([0 * ones, inner, ones]), axis=1)
    floor = cdf.tail / p.shape[1]  # any value is possible, if unlikely
    return np.asarray((np.maximum(p, 0.0) + floor) / (1.0 + floor * p.shape[1]))


def _free_tails(
    p: np.ndarray, edges: np.ndarray, c: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """``p`` with its mass below ``lo`` and above ``hi`` split like the (expected) counts ``c``.

    A sketch says how much mass lies beyond its 2nd and 98th percentiles, not
    how it is spread there (the min and max are single noisy values). Split
    like the window's counts (plus a half), the tails are the maximum-likelihood
    tails of "nothing changed"; split like the counts the reference component
    is expected to hold under a mixture, an EM step towards the mixture's.
    """
    k = edges.shape[0]
    upper = np.hstack([edges, np.full((k, 1), np.inf)])
    lower = np.hstack([np.full((k, 1), -np.inf), edges])
    out = p.copy()
    for region in (upper <= lo, lower >= hi):
        total = np.sum(np.where(region, p, 0.0), axis=1, keepdims=True)
        weight = np.where(region, c + 0.5, 0.0)
        share = weight / np.maximum(weight.sum(axis=1, keepdims=True), 1e-300)
        out = np.where(region, total * share, out)
    return out


def _fit_shares(
    c: np.ndarray, p: np.ndarray, g: np.ndarray, start: np.ndarray | None = None
) -> np.ndarray:
    """Maximum-likelihood share of ``g`` in ``(1 - s) p + s g`` for each row.

    The log-likelihood is concave in ``s``: Newton steps on its slope from
    ``start`` (default 1/2), kept inside a shrinking bracket (a bisection step
    whenever Newton would leave it), until no share moves by 1e-12.
    """
    d = g - p
    k = c.shape[0]
    at_zero = np.sum(c * d / p, axis=1) <= 0
    at_one = np.sum(c * d / g, axis=1) >= 0
    lo, hi = np.zeros(k), np.ones(k)
    s = np.full(k, 0.5) if start is None else np.clip(start, 1e-6, 1 - 1e-6)
    for _ in range(_NEWTON):
        before = s
        q = p + s[:, None] * d
        slope = np.sum(c * d / q, axis=1)
        bend = np.sum(c * (d / q) ** 2, axis=1)  # minus the second derivative
        up = slope > 0
        lo, hi = np.where(up, s, lo), np.where(up, hi, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = s + slope / bend
        s = np.where((step > lo) & (step < hi), step, (lo + hi) / 2)
        if np.all(np.abs(s - before) < 1e-12):
            break
    return np.asarray(np.where(at_zero, 0.0, np.where(at_one, 1.0, s)))


def _deviance(c: np.ndarray, q: np.ndarray, m: int) -> np.ndarray:
    """G-statistic of counts ``c`` against probabilities ``q``, row by row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(c > 0, c * np.log(c / (m * q)), 0.0)
    return np.asarray(2 * np.sum(terms, axis=1))


def _preimage(
    edges: np.ndarray, a: np.ndarray, b: np.ndarray, cdf: _ReferenceCdf, window: np.ndarray
) -> np.ndarray:
    """Where the reference's CDF is read for ``P(T(X) <= edge)``, row ``i`` for ``T_i``.

    Whole numbers that arrive as whole numbers were rounded after the
    conversion (a source that records pounds records 154, not 154.32):
    ``P(round(a X + b) <= y) = P(X <= ceil((floor(y) + 1/2 - b) / a) - 1)``.
    """
    if cdf.integer and bool(np.all(window == np.round(window))):
        v = (np.floor(edges) + 0.5 - b[:, None]) / a[:, None]
        return np.asarray(np.ceil(v - 1e-9 * np.maximum(1.0, np.abs(v))) - 1)
    return np.asarray((edges - b[:, None]) / a[:, None])


def _fit_mixtures(
    p: np.ndarray, g: np.ndarray, edges: np.ndarray, c: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per conversion: the share, the reference's bin probabilities beside it, the
    mixture's, and the reference's alone (``share = 0``), its tails split freely."""
    unchanged = _free_tails(p, edges, c, lo, hi)
    share, p_mix, mix = np.zeros(c.shape[0]), unchanged, unchanged
    for _ in range(_EM_ROUNDS):  # the share, and the reference's tails beside it
        p_mix = _free_tails(p, edges, c * (1 - share[:, None]) * p_mix / mix, lo, hi)
        share = _fit_shares(c, p_mix, g, start=share if share.any() else None)
        mix = (1 - share[:, None]) * p_mix + share[:, None] * g
    return share, p_mix, mix, unchanged


def _bent(theta: np.ndarray, spread: float) -> tuple[float, float, float, float]:
    """``(d, s, k_low, k_high)`` of the smooth change ``theta`` (see ``_world_change``)."""
    return theta[0] * spread, math.exp(theta[1]), theta[2] / spread, theta[3] / spread


def _unbend(x: np.ndarray, c0: float, theta: np.ndarray, spread: float) -> np.ndarray:
    """The preimage of ``x`` under ``y -> c0 + d + s u + k u^2`` (``u = y - c0``; ``k`` is
    ``k_low`` below the median, ``k_high`` above): the monotone root, in the form that
    stays exact as ``k -> 0``; -inf/+inf where ``x`` has no preimage."""
    d, s, k_low, k_high = _bent(theta, spread)
    r = x - c0 - d
    k = np.where(r >= 0, k_high, k_low)
    disc = s * s + 4 * k * r
    with np.errstate(invalid="ignore", divide="ignore"):
        u = 2 * r / (s + np.sqrt(disc))
    return np.where(disc >= 0, c0 + u, np.where(r >= 0, np.inf, -np.inf))


def _matched(q: np.ndarray, window: np.ndarray, spread: float) -> np.ndarray:
    """The smooth change that maps the reference's 5%..95% quantiles onto the window's,
    by least squares (the map is linear in its parameters): Nelder-Mead's start."""
    levels = np.arange(5, 100, 5)
    u = q[levels] - q[50]
    y = window[np.minimum((levels / 100 * window.size).astype(int), window.size - 1)] - q[50]
    design = np.column_stack([np.ones_like(u), u, np.minimum(u, 0) ** 2, np.maximum(u, 0) ** 2])
    d, s, k_low, k_high = np.linalg.lstsq(design, y, rcond=None)[0]
    if not s > 0:
        return np.zeros(4)
    low, high = q[0] - q[50], q[-1] - q[50]
    if s + 2 * k_low * low <= 0 or s + 2 * k_high * high <= 0:
        k_low = k_high = 0.0
    return np.array([d / spread, math.log(s), k_low * spread, k_high * spread])


def _world_change(
    cdf: _ReferenceCdf,
    q: np.ndarray,
    edges: np.ndarray,
    c: np.ndarray,
    scale: float,
    window: np.ndarray,
) -> float:
    """Scaled deviance, in the same bins, of the best smooth change of the reference.

    The ordinary change a mixture must beat: the world moved, widened or
    narrowed, and grew or lost a skew or a tail on either side -- a monotone
    map ``y -> c0 + d + s u + k u^2`` (``u = y - c0``, ``c0`` the reference
    median) with one curvature ``k`` below the median and another above --
    fitted by Nelder-Mead (four parameters) from "no change" and from the map
    that matches the quantiles (``_matched``). A partial unit switch puts a
    copy of the whole distribution elsewhere, which no such map does.
    """
    m = int(c.sum())
    c0, spread = float(q[50]), float(q[75] - q[25]) or float(q[-1] - q[0])
    row = edges[None, :]
    low, high = float(q[0] - c0), float(q[-1] - c0)

    def deviance(theta: np.ndarray) -> float:
        d, s, k_low, k_high = _bent(theta, spread)
        if s + 2 * k_low * low <= 0 or s + 2 * k_high * high <= 0:
            return math.inf  # not monotone over the reference's range
        p = _bin_probabilities(cdf, _unbend(row, c0, theta, spread))
        u_lo, u_hi = q[_TAIL] - c0, q[100 - _TAIL] - c0
        lo, hi = c0 + d + s * u_lo + k_low * u_lo**2, c0 + d + s * u_hi + k_high * u_hi**2
        tails = _free_tails(p, row, c[None, :], lo, hi)
        return scale * float(_deviance(c[None, :], tails, m)[0])

    options = {"xatol": 1e-3, "fatol": 0.05, "maxiter": 400}  # deviances matter to ~1
    best = math.inf
    for start in (np.zeros(4), _matched(q, window, spread)):
        simplex = np.vstack([start, start + 0.2 * np.eye(4)])  # steps the bins can feel
        found = optimize.minimize(
            deviance, start, method="Nelder-Mead", options={**options, "initial_simplex": simplex}
        )
        best = min(best, float(found.fun))
    return best


def _shaped(
    q: np.ndarray, a: np.ndarray, b: np.ndarray, cdf: _ReferenceCdf, window: np.ndarray
) -> np.ndarray:
    """Which conversions leave the reference a shape of its own (at least four distinct values
    over its central 90 %, or as many as the reference has).

    A conversion that crushes whole numbers onto one or two values (0..16 grey levels times
    0.001 or 1/16, rounded) is indistinguishable from more mass at those values -- a rise of
    zeros in a zero-inflated field is a change of the world, not a unit.
    """
    central = q[5:96]
    conv = np.outer(a, central) + b[:, None]
    if cdf.integer and bool(np.all(window == np.round(window))):
        conv = np.round(conv)
    need = min(4, int(np.unique(central).size))
    distinct = np.array([np.unique(row).size for row in conv])
    return np.asarray(distinct >= need)


def fit_unit_mixture(
    sketch: Mapping[str, Any],
    present_sorted: np.ndarray,
    *,
    declared: str | None = None,
) -> MixtureFit | None:
    """The best-supported partial unit switch of one numeric field, or None.

    ``sketch`` is the field's reference sketch (``_reference._numeric_sketch``),
    ``present_sorted`` the window's non-missing values sorted ascending, and
    ``declared`` the field's declared unit (then only conversions from it are
    tried). None when the reference has no spread or no conversion separates
    from it. The caller decides with :meth:`MixtureFit.explains` and the
    p-value (see the module docstring).
    """
    q = np.asarray(sketch.get("quantiles", ()), dtype=np.float64)
    m = int(present_sorted.size)
    if q.size != 101 or m == 0 or not q[-1] > q[0]:
        return None
    cdf = _ReferenceCdf.of(sketch)
    a_all, b_all, names = _conversions(declared)
    base = np.unique(q[_LEVELS])
    edges = np.sort(
        np.hstack([np.tile(base, (a_all.size, 1)), np.outer(a_all, base) + b_all[:, None]])
    )
    p = _bin_probabilities(cdf, edges)
    g = _bin_probabilities(cdf, _preimage(edges, a_all, b_all, cdf, present_sorted))
    separation = 0.5 * np.abs(p - g).sum(axis=1)
    keep = np.flatnonzero(
        (separation >= _MIN_SEPARATION) & _shaped(q, a_all, b_all, cdf, present_sorted)
    )
    if keep.size == 0:
        return None
    edges, p, g = edges[keep], p[keep], g[keep]
    below = np.searchsorted(present_sorted, edges.ravel(), side="right").reshape(edges.shape)
    c = np.diff(np.hstack([np.zeros((keep.size, 1)), below, np.full((keep.size, 1), m)]), axis=1)
    share, p, mix, unchanged = _fit_mixtures(p, g, edges, c, q[_TAIL], q[100 - _TAIL])
    scale = 1.0 / (1.0 + m * cdf.tail)  # m_eff / m, with n_ref + 1 = 1 / tail
    deviance = scale * _deviance(c, unchanged, m)
    residual = scale * _deviance(c, mix, m)
    lr = np.maximum(deviance - residual, 0.0)
    df = np.count_nonzero(np.diff(edges) > 0, axis=1)  # bins - 1 - the share
    # The bins differ between conversions, so their likelihood ratios are not
    # comparable as they stand: among the conversions that are clearly significant
    # (Bonferroni p <= 0.001) and whose mixture fits, the best is the one that
    # fits best (residual in standard deviations of its chi-square); failing
    # those, the largest likelihood ratio.
    fitting = residual <= np.maximum(
        stats.chi2.isf(_FIT_P, np.maximum(df, 1)), (1 - _EXPLAINED) * deviance
    )
    eligible = fitting & (lr >= stats.chi2.isf(2 * _FIT_P / keep.size, 1))
    misfit = (residual - df) / np.sqrt(2 * np.maximum(df, 1))
    best = int(np.argmin(np.where(eligible, misfit, np.inf)) if eligible.any() else np.argmax(lr))
    info = scale * float(np.sum(c[best] * (g[best] - p[best]) ** 2 / mix[best] ** 2))
    half = 1.959963984540054 / math.sqrt(info) if info > 0 else math.inf
    single = 0.5 * float(stats.chi2.sf(lr[best], 1)) if lr[best] > 0 else 1.0
    k = int(keep[best])
    p_value = min(1.0, single * keep.size)
    return MixtureFit(
        factor=float(a_all[k]),
        offset=float(b_all[k]),
        units=names[k],
        share=float(share[best]),
        share_low=max(0.0, float(share[best]) - half),
        # The reference's free tails may hold converted values too: widened upwards.
        share_high=min(1.0, float(share[best]) + half + (1 - float(share[best])) * _TAIL / 50),
        statistic=float(lr[best]),
        p_value=p_value,
        deviance=float(deviance[best]),
        residual=float(residual[best]),
        world_change=(
            _world_change(cdf, q, edges[best], c[best], scale, present_sorted)
            if fitting[best] and p_value < 1.0  # else it cannot be named: spare the fit
            else math.nan
        ),
        df=int(df[best]),
        separation=float(separation[k]),
        candidates=int(keep.size),
        n=m,
    )
