"""Did the relation between a feature and the target (or a loss) change between windows?

Spearman's rho and the Fisher z test for a numeric feature; the correlation
ratio and the F test of the window x category interaction for a categorical one.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy import special, stats

from .._errors import InputError
from ._results import DriftResult
from ._samples import _numeric

_MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: exact p-values while both samples are this small
_PSI_FLOOR = 1e-4  # bin proportions are floored here so an empty bin does not make PSI infinite
_MIN_EXPECTED = 5.0  # the classic rule for the chi-square approximation
OTHER = "__other__"


def _pairs(name: str, x: Any, t: Any, categorical: bool) -> tuple[np.ndarray, np.ndarray]:
    tt = _numeric(f"t_{name}", t)
    xx = np.asarray(x, dtype=object) if categorical else _numeric(f"x_{name}", x)
    if xx.ndim != 1 or xx.shape != tt.shape:
        raise InputError(
            f"`x_{name}` and `t_{name}` must be 1-D arrays of the same length; "
            f"got shapes {xx.shape} and {tt.shape}."
        )
    if categorical:
        keep = np.array([v is not None and v == v for v in xx], dtype=bool) & ~np.isnan(tt)
        return xx[keep].astype(str), tt[keep]
    keep = ~np.isnan(xx) & ~np.isnan(tt)
    return xx[keep], tt[keep]


def _spearman(x: np.ndarray, t: np.ndarray) -> float:
    if x.size < 4 or np.ptp(x) == 0 or np.ptp(t) == 0:
        return math.nan
    return float(stats.spearmanr(x, t).statistic)


def _eta(codes: np.ndarray, t: np.ndarray, k: int) -> float:
    """Correlation ratio: sqrt(between-category sum of squares / total sum of squares)."""
    total = float(((t - t.mean()) ** 2).sum())
    if total == 0:
        return math.nan
    n = np.bincount(codes, minlength=k)
    s = np.bincount(codes, weights=t, minlength=k)
    nz = n > 0
    between = float((s[nz] ** 2 / n[nz]).sum() - t.sum() ** 2 / t.size)
    return math.sqrt(max(0.0, min(1.0, between / total)))


def _interaction_f(
    codes: list[np.ndarray], ts: list[np.ndarray], k: int
) -> tuple[float, float, int, int]:
    """F test of the window x category interaction in a two-way layout.

    Full model: one mean per (window, category) cell. Additive model: window
    effect plus category effect (the same category differences in both
    windows). Its least-squares fit for two windows has a closed form: with
    ``delta`` the window effect, ``b_k = (S_k - n_cur,k * delta) / n_k`` and
    ``delta = sum(T_cur,k - n_cur,k S_k / n_k) / sum(n_cur,k - n_cur,k^2 / n_k)``.
    """
    n = np.array([np.bincount(c, minlength=k) for c in codes], dtype=float)
    s = np.array([np.bincount(c, weights=t, minlength=k) for c, t in zip(codes, ts, strict=True)])
    ss = np.array(
        [np.bincount(c, weights=t * t, minlength=k) for c, t in zip(codes, ts, strict=True)]
    )
    nk, sk = n.sum(axis=0), s.sum(axis=0)
    both = (n > 0).all(axis=0)
    cells = int((n > 0).sum())
    df_within = int(n.sum()) - cells
    df_inter = int(both.sum()) - 1
    if df_inter < 1 or df_within < 1:
        return math.nan, math.nan, max(df_inter, 0), max(df_within, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(n > 0, s / np.where(n > 0, n, 1), 0.0)
        ss_within = float((ss - np.where(n > 0, s * s / np.where(n > 0, n, 1), 0.0)).sum())
        w = nk > 0
        den = float((n[1, w] - n[1, w] ** 2 / nk[w]).sum())
        num = float((s[1, w] - n[1, w] * sk[w] / nk[w]).sum())
    delta = num / den if den > 0 else 0.0
    b = np.where(w, (sk - n[1] * delta) / np.where(w, nk, 1), 0.0)
    fitted = np.vstack([b, b + delta])
    ss_inter = float((n * (means - fitted) ** 2).sum())
    if ss_within <= 0:
        return math.nan, math.nan, df_inter, df_within
    f = (ss_inter / df_inter) / (ss_within / df_within)
    return float(f), float(stats.f.sf(f, df_inter, df_within)), df_inter, df_within


def relation_change(
    x_ref: Any,
    t_ref: Any,
    x_cur: Any,
    t_cur: Any,
    *,
    feature: str = "",
    kind: Literal["numeric", "categorical"] | None = None,
    space: Literal["raw", "preprocessed"] = "raw",
) -> DriftResult:
    """Did the relation between a feature ``x`` and a target ``t`` change between windows?

    ``t`` is the target or, more useful for a model, its per-example loss.
    Pairs with a missing ``x`` or ``t`` are dropped. ``kind`` defaults to
    ``"categorical"`` for string/object ``x`` and ``"numeric"`` otherwise.

    Numeric ``x``: Spearman's rho in each window and the Fisher z test of the
    difference, ``z = (atanh(rho_cur) - atanh(rho_ref)) / sqrt(1.06/(n_ref-3)
    + 1.06/(n_cur-3))``. The 1.06 is Fieller, Hartley and Pearson's (1957)
    variance of the transformed Spearman coefficient; the normal approximation
    is good from a few dozen pairs and for |rho| not close to 1. Effect:
    ``|rho_cur - rho_ref|``. A window where ``x`` or ``t`` is constant has no
    rho: the result is NaN throughout (never material).

    Categorical ``x``: the correlation ratio eta (how much of the variance of
    ``t`` the categories explain) in each window, and the F test of the
    window x category interaction in a two-way layout: do the category means
    of ``t`` differ *differently* in the two windows, beyond one overall
    shift? It assumes roughly equal within-category variances (an ANOVA), and
    only categories seen in both windows inform it. Effect: ``|eta_cur -
    eta_ref|``.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x_ref, x_cur = rng.normal(size=800), rng.normal(size=800)
    >>> r = relation_change(x_ref, x_ref + rng.normal(size=800), x_cur, rng.normal(size=800))
    >>> r.p_value < 1e-6, round(r.effect, 1)
    (True, 0.7)
    """
    if kind is None:
        dtype = np.asarray(x_ref).dtype
        kind = "categorical" if dtype.kind in "OUS" else "numeric"
    if kind not in ("numeric", "categorical"):
        raise InputError(f"`kind` must be 'numeric', 'categorical' or None; got {kind!r}.")
    categorical = kind == "categorical"
    xr, tr = _pairs("ref", x_ref, t_ref, categorical)
    xc, tc = _pairs("cur", x_cur, t_cur, categorical)
    for name, size in (("ref", xr.size), ("cur", xc.size)):
        if size < 4:
            raise InputError(
                f"`x_{name}`/`t_{name}` must hold at least 4 complete pairs; got {size}."
            )
    if not categorical:
        return _numeric_relation(xr, tr, xc, tc, feature=feature, space=space)
    return _categorical_relation(xr, tr, xc, tc, feature=feature, space=space)


def _numeric_relation(
    xr: np.ndarray,
    tr: np.ndarray,
    xc: np.ndarray,
    tc: np.ndarray,
    *,
    feature: str,
    space: Literal["raw", "preprocessed"],
) -> DriftResult:
    """Spearman's rho in each window and the Fisher z test of their difference."""
    rho_ref, rho_cur = _spearman(xr, tr), _spearman(xc, tc)
    se = math.sqrt(1.06 / (xr.size - 3) + 1.06 / (xc.size - 3))
    clip = 1 - 1e-12
    z = (
        (math.atanh(max(-clip, min(clip, rho_cur))) - math.atanh(max(-clip, min(clip, rho_ref))))
        / se
        if not (math.isnan(rho_ref) or math.isnan(rho_cur))
        else math.nan
    )
    p = 2.0 * float(special.ndtr(-abs(z))) if not math.isnan(z) else math.nan
    return DriftResult(
        feature=feature,
        kind="numeric",
        space=space,
        test="spearman_fisher_z",
        statistic=z,
        p_value=p,
        effect_name="spearman_difference",
        effect=abs(rho_cur - rho_ref),
        n_reference=int(xr.size),
        n_current=int(xc.size),
        detail={"rho_reference": rho_ref, "rho_current": rho_cur},
    )


def _categorical_relation(
    xr: np.ndarray,
    tr: np.ndarray,
    xc: np.ndarray,
    tc: np.ndarray,
    *,
    feature: str,
    space: Literal["raw", "preprocessed"],
) -> DriftResult:
    """The correlation ratio in each window and the F test of the window x category
    interaction."""
    labels, codes = np.unique(np.concatenate([xr, xc]), return_inverse=True)
    k = labels.size
    cr, cc = codes[: xr.size], codes[xr.size :]
    eta_ref, eta_cur = _eta(cr, tr, k), _eta(cc, tc, k)
    f, p, df1, df2 = _interaction_f([cr, cc], [tr, tc], k)
    return DriftResult(
        feature=feature,
        kind="categorical",
        space=space,
        test="interaction_f",
        statistic=f,
        p_value=p,
        effect_name="eta_difference",
        effect=abs(eta_cur - eta_ref),
        n_reference=int(xr.size),
        n_current=int(xc.size),
        detail={"eta_reference": eta_ref, "eta_current": eta_cur, "df": [df1, df2]},
    )
