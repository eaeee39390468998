"""The quickstart: a real model on data that ships with scikit-learn, wrapped and saved.

Breast-cancer diagnosis (569 patients, 30 measurements; scikit-learn ships the
data, nothing is downloaded): a histogram gradient-boosting classifier is the
advanced model, a standardised logistic regression fitted by ``wrap`` is the
baseline, and a held-out 30% is the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle._bundle import Bundle, wrap
from .preprocessing import NumericColumn, TabularPreprocessor

__all__ = ["build_quickstart", "load_quickstart_data"]


def load_quickstart_data(
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]], list[str]]:
    """Train and reference records (snake_case fields) and their labels."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    records = [dict(zip(names, map(float, row), strict=True)) for row in data.data]
    labels = [str(data.target_names[t]) for t in data.target]
    train, ref, y_train, y_ref = train_test_split(
        records, labels, test_size=0.3, random_state=seed, stratify=labels
    )
    return train, y_train, ref, y_ref


def build_quickstart(directory: str | Path, *, overwrite: bool = True) -> Bundle:
    """Train, wrap and save the quickstart bundle into ``directory``; return it."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    train, y_train, ref, y_ref = load_quickstart_data()
    preprocessing = TabularPreprocessor(
        columns=[NumericColumn(name=name) for name in train[0]]
    ).fit(train)
    model = HistGradientBoostingClassifier(max_iter=200, random_state=0)
    model.fit(preprocessing.transform(train), y_train)
    bundle = wrap(
        model,
        task="classification",
        preprocessing=preprocessing,
        train=(train, y_train),
        reference=(ref, y_ref),
        baseline="auto",
        name="breast-cancer",
    )
    bundle.save(directory, overwrite=overwrite)
    return bundle
