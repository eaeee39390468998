"""A bare BentoML service with the quickstart's model and the sidecar's tuning.

The comparison point of ``bench_serving.py``: what a user would write without
the sidecar -- records in, the model's predictions and probabilities out --
with the same async API, pydantic output, one OpenMP thread, short traffic
timeout, access log off, ``gc.freeze()`` and the sidecar's 2 ms GIL switch
interval (which changes nothing with one thread, but the tuning is the same).
BARE_MODEL names the .skops file.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import bentoml
import numpy as np
from pydantic import BaseModel


class Output(BaseModel):
    predictions: list[Any]
    probabilities: list[list[float]]


@bentoml.service(
    name="bare",
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    traffic={"timeout": 5},
    logging={"access": {"enabled": False}},
)
class Bare:
    def __init__(self) -> None:
        import skops.io as sio

        path = os.environ["BARE_MODEL"]
        self.model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        self.fields = os.environ["BARE_FIELDS"].split(",")

    @bentoml.on_startup
    def _freeze(self) -> None:
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(0.002)

    @bentoml.api
    async def predict(self, records: list[dict[str, Any]]) -> Output:
        X = np.array([[r[f] for f in self.fields] for r in records], dtype=np.float64)
        proba = self.model.predict_proba(X)
        labels = self.model.classes_.take(proba.argmax(axis=1))
        return Output(predictions=labels.tolist(), probabilities=proba.tolist())
