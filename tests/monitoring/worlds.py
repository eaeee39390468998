"""Seeded synthetic worlds for the end-to-end monitoring scenarios.

A *world* is a generator of raw records (what a client would POST) and their
labels. Every period is drawn from ``numpy.random.default_rng((seed, period))``
so a scenario is reproducible from its seed alone, and the training, reference
and serving periods of one seed are independent draws.

The clinical-looking classification world
-----------------------------------------
Fields: ``weight`` (kg), ``temp`` (degC), ``visits`` (a non-negative count),
``dx`` (an ICD-9-like diagnosis code), ``hba1c`` (a lab value, sometimes
missing) and ``u`` (a score in [-3, 3]). The label is a logistic draw from a
linear score in the (standardised) fields plus, while ``pattern`` is on, a
high-frequency term ``PATTERN_AMP * sin(PATTERN_FREQ * u)``: a period-specific
interaction that a gradient-boosted model learns and a linear baseline cannot.

A :class:`Shift` describes how a later period differs from the training one:
the world itself (``pattern``, ``weight_mean``, ``flip``) or the pipeline that
feeds it (``faults``: unit changes, code-system changes, overflows, missing
values) -- the label is always drawn from the *true* values, so a pipeline
fault changes only what the model sees.

The regression world uses the same fields and a continuous target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DAY",
    "ICD9",
    "ICD10_OF",
    "START",
    "Period",
    "Shift",
    "classification_period",
    "label_times",
    "regression_period",
    "serving_times",
]

DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

#: ICD-9-like codes, their frequencies and their effect on the label's log-odds
ICD9: tuple[tuple[str, float, float], ...] = (
    ("250.00", 0.22, 0.6),
    ("401.9", 0.18, 0.0),
    ("428.0", 0.12, 0.8),
    ("414.01", 0.10, 0.3),
    ("272.4", 0.09, -0.2),
    ("427.31", 0.08, 0.4),
    ("584.9", 0.07, 0.7),
    ("599.0", 0.05, -0.4),
    ("486", 0.05, 0.2),
    ("496", 0.04, 0.1),
)
#: the ICD-10 code each ICD-9 code became (what a code-system change sends)
ICD10_OF = {
    "250.00": "E11.9",
    "401.9": "I10",
    "428.0": "I50.9",
    "414.01": "I25.10",
    "272.4": "E78.5",
    "427.31": "I48.91",
    "584.9": "N17.9",
    "599.0": "N39.0",
    "486": "J18.9",
    "496": "J44.9",
}
_CODES = [c for c, _, _ in ICD9]
_FREQ = np.array([f for _, f, _ in ICD9]) / sum(f for _, f, _ in ICD9)
_DX_EFFECT = {c: e for c, _, e in ICD9}

WEIGHT_MEAN, WEIGHT_SD = 78.0, 14.0
TEMP_MEAN, TEMP_SD = 36.9, 0.45
VISITS_MEAN = 3.0
HBA1C_MEAN, HBA1C_SD = 6.2, 1.0
HBA1C_MISSING = 0.05
PATTERN_AMP, PATTERN_FREQ = 3.0, 4.0

#: the fault names :class:`Shift` understands
FAULTS = ("kg_to_lb", "icd9_to_icd10", "wrap_u32", "negative", "missing", "degc_to_degf")


@dataclass(frozen=True)
class Shift:
    """How a period differs from the training period (the default: not at all)."""

    #: the high-frequency interaction is present (training and reference always have it)
    pattern: bool = True
    #: the population's mean weight (kg): moving it moves the inputs (data drift)
    weight_mean: float = WEIGHT_MEAN
    #: the effect of hba1c on the label changes sign (concept drift)
    flip: bool = False
    #: pipeline faults (names in ``FAULTS``) applied to what the model is sent
    faults: tuple[str, ...] = ()
    #: share of the records a fault touches
    fault_share: float = 1.0


@dataclass
class Period:
    """Raw records, labels and the true (fault-free) field values of one period."""

    records: list[dict[str, Any]]
    labels: list[Any]
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def split(self, at: int) -> tuple[Period, Period]:
        return (
            Period(self.records[:at], self.labels[:at], {k: v[:at] for k, v in self.truth.items()}),
            Period(self.records[at:], self.labels[at:], {k: v[at:] for k, v in self.truth.items()}),
        )


def _rng(seed: int, period: int) -> np.random.Generator:
    return np.random.default_rng((seed, period))


def _fields(rng: np.random.Generator, n: int, shift: Shift) -> dict[str, np.ndarray]:
    weight = np.round(np.clip(rng.normal(shift.weight_mean, WEIGHT_SD, n), 35.0, 250.0), 1)
    temp = np.round(rng.normal(TEMP_MEAN, TEMP_SD, n), 2)
    visits = rng.poisson(VISITS_MEAN, n).astype(np.int64)
    dx = np.array(_CODES, dtype=object)[rng.choice(len(_CODES), size=n, p=_FREQ)]
    hba1c = np.round(rng.normal(HBA1C_MEAN, HBA1C_SD, n), 1)
    hba1c_missing = rng.random(n) < HBA1C_MISSING
    u = np.round(rng.uniform(-3.0, 3.0, n), 4)
    return {
        "weight": weight,
        "temp": temp,
        "visits": visits,
        "dx": dx,
        "hba1c": hba1c,
        "hba1c_missing": hba1c_missing,
        "u": u,
    }


def _linear(f: dict[str, np.ndarray], shift: Shift) -> np.ndarray:
    """The linear part of the label's score (what the baseline can learn)."""
    hba1c = np.where(f["hba1c_missing"], HBA1C_MEAN, f["hba1c"])
    z_hba1c = (hba1c - HBA1C_MEAN) / HBA1C_SD
    return (
        -1.2
        + 0.3 * (f["weight"] - WEIGHT_MEAN) / WEIGHT_SD
        + 0.6 * (f["temp"] - TEMP_MEAN) / TEMP_SD
        + 0.25 * (f["visits"] - VISITS_MEAN)
        + np.array([_DX_EFFECT[c] for c in f["dx"]])
        + (-1.0 if shift.flip else 1.0) * 1.8 * z_hba1c
    )


def _sharpness(weight: np.ndarray) -> np.ndarray:
    """Heavier patients' outcomes are less predictable: the score shrinks towards 0.

    Flat (1.0) up to half a standard deviation above the mean weight, so the
    training period barely shows it; a population that got heavier is harder
    for any model (data drift that hurts both).
    """
    z = (weight - WEIGHT_MEAN) / WEIGHT_SD
    return 1.0 / (1.0 + 1.5 * np.maximum(z - 0.5, 0.0))


def _records(f: dict[str, np.ndarray], shift: Shift, rng: np.random.Generator) -> list[dict]:
    """The records the pipeline sends: the true values, with ``shift.faults`` applied."""
    n = len(f["weight"])
    hit = rng.random(n) < shift.fault_share if shift.faults else np.zeros(n, dtype=bool)
    weight = f["weight"].astype(np.float64)
    temp = f["temp"].astype(np.float64)
    visits: list[Any] = f["visits"].tolist()
    dx = list(f["dx"])
    missing = f["hba1c_missing"].copy()
    for fault in shift.faults:
        if fault == "kg_to_lb":
            weight = np.where(hit, np.round(weight * 2.20462, 1), weight)
        elif fault == "degc_to_degf":
            temp = np.where(hit, np.round(temp * 1.8 + 32.0, 2), temp)
        elif fault == "icd9_to_icd10":
            dx = [ICD10_OF[c] if h else c for c, h in zip(dx, hit, strict=True)]
        elif fault == "wrap_u32":
            # a signed delta that went negative upstream, stored unsigned: 2**32 - k
            k = rng.integers(1, 6, n)
            visits = [int(2**32 - kk) if h else v for v, kk, h in zip(visits, k, hit, strict=True)]
        elif fault == "negative":
            visits = [-(v + 1) if h else v for v, h in zip(visits, hit, strict=True)]
        elif fault == "missing":
            missing = missing | hit
        else:
            raise ValueError(f"unknown fault {fault!r}; choose from {FAULTS}")
    records = []
    for i in range(n):
        records.append(
            {
                "weight": float(weight[i]),
                "temp": float(temp[i]),
                "visits": visits[i],
                "dx": dx[i],
                "hba1c": None if missing[i] else float(f["hba1c"][i]),
                "u": float(f["u"][i]),
            }
        )
    return records


def classification_period(seed: int, period: int, n: int, shift: Shift | None = None) -> Period:
    """``n`` records of the classification world (labels ``"readmitted"`` / ``"home"``)."""
    shift = shift or Shift()
    rng = _rng(seed, period)
    f = _fields(rng, n, shift)
    score = _linear(f, shift)
    if shift.pattern:
        score = score + PATTERN_AMP * np.sin(PATTERN_FREQ * f["u"])
    score = score * _sharpness(f["weight"])
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-score))
    labels = ["readmitted" if v else "home" for v in y]
    return Period(_records(f, shift, rng), labels, f)


def regression_period(seed: int, period: int, n: int, noise: float = 1.0) -> Period:
    """``n`` records of the regression world: a length of stay in days (continuous)."""
    rng = _rng(seed, period)
    f = _fields(rng, n, Shift())
    hba1c = np.where(f["hba1c_missing"], HBA1C_MEAN, f["hba1c"])
    y = (
        5.0
        + 1.5 * (f["weight"] - WEIGHT_MEAN) / WEIGHT_SD
        + 0.8 * (hba1c - HBA1C_MEAN)
        + 0.3 * f["visits"]
        + np.array([_DX_EFFECT[c] for c in f["dx"]])
        + 1.5 * np.sin(2.0 * f["u"])
        + rng.normal(0.0, noise, n)
    )
    return Period(_records(f, Shift(), rng), [round(float(v), 4) for v in y], f)


def serving_times(seed: int, n: int, days: float = 6.0) -> list[float]:
    """Sorted request times spread over ``days`` days from ``START``."""
    rng = _rng(seed, 1000)
    return sorted((START + rng.uniform(0.0, days * DAY, n)).tolist())


def label_times(
    seed: int, ts: Sequence[float], *, never: float = 0.15, max_delay_days: float = 4.0
) -> list[float | None]:
    """When each label arrives: 2 hours to ``max_delay_days`` later; a share ``never`` does."""
    rng = _rng(seed, 1001)
    n = len(ts)
    delay = rng.uniform(2 * 3600.0, max_delay_days * DAY, n)
    lost = rng.random(n) < never
    return [None if lost[i] else float(ts[i] + delay[i]) for i in range(n)]
