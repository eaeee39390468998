"""The bundle: preprocessing, advanced model, baseline and reference, versioned together.

A bundle on disk is a directory::

    manifest.json      format, name, version, parent, task, created_at, classes,
                       and for each part: kind, framework, format, version, sha256
    preprocessing/     the preprocessing module (its own version)
    advanced/          the advanced model in a safe native format
    baseline/          the baseline model
    reference/         what "normal" looked like (see ``sidecar.bundle._reference``)

Every part has its own version and sha256; the bundle's version is derived
from the whole sealed manifest (see ``sidecar.bundle._manifest``), which covers every
field a loader reads and, through the parts' hashes, every byte -- so any
change makes a new version, and saving a loaded bundle again keeps it (its
parts are copied, not re-serialised). Loading first checks the files (plain
files only, no links, within the size limits: ``sidecar.bundle._integrity``),
re-hashes every part, checks the seal, and refuses a bundle whose files or
manifest changed after it was saved, naming the part or field. Loading runs no
code the caller did not trust by name (pickle, import paths, skops types
outside the allow-list in ``sidecar.bundle._safe``).

This module holds the :class:`Bundle` class: identity, prediction, the
shadow stage, feedback and the derived versions. Making one (``wrap``),
reading one (``load``) and writing one (``_persist``) live in the
other modules of :mod:`sidecar.bundle`, re-exported here.

Why this module is long: the class is the one object a user holds, and its
methods are its public surface; everything that need not be a method has
moved to the other modules of this package; the shadow and feedback methods
stay beside ``predict``, whose requests they follow.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import InputError
from .._frames import as_records
from .._labels import check_labels
from ..monitoring._plan import MonitoringPlan
from ..preprocessing import Preprocessor
from ..recording import FeedbackResult, Recorder, RecordPolicy, Store
from ..runtimes import Predictor
from ..shadow import ShadowItem, ShadowPipeline, ShadowRunner, ShadowSink, check_candidate

# The class builds on the bundle package: wrap and load construct it, persistence
# writes it. Those modules import this one only when called, so no cycle.
from ._derive import checked_models, checked_preprocessing
from ._load import load
from ._persist import PARTS, hash_directory, sources_of, stage
from ._persist import save as save_bundle
from ._prediction import BundleStats, Prediction, ShadowPrediction
from ._reference import Reference
from ._wrap import compute_reference, wrap
from ._wrap import default_plan_for as _default_plan_for

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["Bundle", "Prediction", "ShadowPrediction", "hash_directory", "load", "wrap"]


Records = Sequence[Mapping[str, Any]]


class Bundle:
    """An advanced model, its preprocessing, a baseline and a reference, behind one ``predict``.

    Make one with :func:`wrap`, or read one with :func:`load`.
    """

    def __init__(
        self,
        *,
        name: str,
        task: str,
        preprocessing: Preprocessor,
        advanced: Predictor,
        baseline: Predictor,
        reference: Reference,
        plan: MonitoringPlan | None = None,
        parent: str | None = None,
        created_at: str | None = None,
        manifest: dict[str, Any] | None = None,
        sources: Mapping[str, tuple[Path, dict[str, Any]]] | None = None,
        shadow_timeout: float = 1.0,
        keep_alive: object = None,
    ) -> None:
        self._keep_alive = keep_alive
        self.name = name
        self.task = task
        self.preprocessing = preprocessing
        self.advanced = advanced
        self.baseline = baseline
        self.reference = reference
        self.plan = plan if plan is not None else _default_plan_for(task, reference)
        self.parent = parent
        self.created_at = created_at or datetime.now(UTC).isoformat(timespec="seconds")
        self._manifest = manifest
        self._sources = dict(sources or {})
        self.stats = BundleStats()
        self.path: Path | None = None
        self._classes = advanced.classes
        self._recorder: Recorder | None = None
        #: this bundle's own shadow stage (``predict(shadow=True)``); a service
        #: builds its own and passes it as ``predict(shadow=pipeline)``
        self._pipeline = ShadowPipeline(self, timeout=shadow_timeout)
        self._policy = RecordPolicy()

    # -- identity -----------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest; computing it for an unsaved bundle serialises the parts once."""
        if self._manifest is None:
            # Serialised once into a private staging directory kept as the parts'
            # source, so a later save() copies the very bytes hashed here.
            self._manifest, self._sources = stage(self, self._sources)
        return self._manifest

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def preprocessing_version(self) -> str:
        return str(self.manifest["parts"]["preprocessing"]["version"])

    def info(self) -> dict[str, Any]:
        """Versions, hashes and parts, as ``sidecar info`` prints them."""
        m = self.manifest
        return {
            "name": m["name"],
            "version": m["version"],
            "parent": m["parent"],
            "task": m["task"],
            "created_at": m["created_at"],
            "classes": m["classes"],
            "input_fields": list(self.preprocessing.input_fields),
            "parts": m["parts"],
            "path": str(self.path) if self.path else None,
        }

    # -- prediction ---------------------------------------------------------------

    @property
    def shadow(self) -> ShadowRunner:
        """The runner of this bundle's own shadow stage (its counters, ``drain``)."""
        return self._pipeline.runner

    @property
    def recorder(self) -> Recorder | None:
        """The recorder attached with :meth:`attach_recorder`, if any."""
        return self._recorder

    @property
    def candidate(self) -> Bundle | None:
        """The candidate attached with :meth:`attach_candidate`, if any."""
        return self._pipeline.candidate

    def _rewire(self, *, recorder: Recorder | None, candidate: Bundle | None) -> None:
        # A new shadow stage; the old one finishes what it was given.
        old = self.shadow
        self._pipeline = ShadowPipeline(
            self,
            recorder=recorder,
            policy=self._policy,
            candidate=candidate,
            timeout=old.timeout,
            counters=old.counters,
        )

    def attach_recorder(
        self, recorder: Recorder | None, *, policy: RecordPolicy | None = None
    ) -> None:
        """Record every prediction from now on (``None`` detaches).

        With a recorder attached, :meth:`predict` runs the baseline in shadow and
        hands one row per record to the recorder -- exactly what the service does.
        ``policy`` drops or hashes raw fields before they are stored.
        """
        self._recorder = recorder
        self._policy = policy or RecordPolicy()
        self._rewire(recorder=recorder, candidate=self.candidate)

    def predict(
        self,
        records: Records | Any,
        *,
        shadow: bool | ShadowSink | None = None,
        timestamps: Sequence[float] | None = None,
    ) -> Prediction:
        """Preprocess ``records`` and return the advanced model's predictions.

        With ``shadow=True`` -- the default when a recorder is attached -- the
        baseline also runs, on the shadow thread, so it can never fail or slow
        this call; its errors, timeouts and disagreements are counted, and the
        recorder (if any) gets the records with both models' answers.
        ``timestamps`` (epoch seconds, one per record) replace "now" in the
        record, for replaying history. ``shadow`` may also be a
        :class:`~sidecar.shadow.ShadowSink` (a service's own pipeline, or its
        shadow process): the shadow work goes there instead.
        """
        if shadow is None:
            shadow = self._recorder is not None
        records = as_records(records)
        X, pred = self._predict(records, timestamps)
        if shadow is not False:
            sink: ShadowSink = self._pipeline if shadow is True else shadow
            # Recorded later, on the shadow thread: keep the records as served,
            # whatever the caller does with its dicts afterwards.
            sink.submit(ShadowItem([dict(r) for r in records], X, pred, timestamps))
        return pred

    def _predict(
        self, records: Records, timestamps: Sequence[float] | None = None
    ) -> tuple[np.ndarray, Prediction]:
        manifest = self._manifest if self._manifest is not None else self.manifest
        ts = time.time()
        start = time.perf_counter()
        X, report = self.preprocessing.transform_with_report(records)
        out = self.advanced.infer(X)
        latency = (time.perf_counter() - start) * 1000.0
        if timestamps is not None and len(timestamps) != len(records):
            raise InputError(
                f"`timestamps` must have one entry per record ({len(records)}); "
                f"got {len(timestamps)}."
            )
        pred = Prediction(
            predictions=out.predictions,
            probabilities=out.probabilities,
            classes=self._classes,
            bundle_version=manifest["version"],
            preprocessing_version=manifest["parts"]["preprocessing"]["version"],
            batch_id=_batch_id(),
            latency_ms=latency,
            ts=ts,
            unknown={k: n for k, n in report.unknown.items() if n},
        )
        self.stats.count(report.n_records, pred.unknown, report.missing)
        return X, pred

    def predict_proba(self, records: Records | Any) -> np.ndarray:
        """Class probabilities of the advanced model (classifiers only)."""
        pred = self.predict(records, shadow=False)
        if pred.probabilities is None:
            raise InputError(
                f"predict_proba needs a classifier with probabilities; this bundle's task is "
                f"{self.task!r}."
            )
        return pred.probabilities

    def predict_shadow(
        self,
        records: Records | Any,
        *,
        timeout: float | None = None,
        timestamps: Sequence[float] | None = None,
    ) -> ShadowPrediction:
        """Both models' predictions for the same records: the shadow pair.

        The baseline runs on the shadow model thread as in serving, and is
        waited for at most ``timeout`` seconds (the bundle's shadow timeout by
        default); if it raises or overruns, the pair carries ``baseline=None``
        and the reason, and the advanced predictions all the same. With a
        recorder attached the records are recorded too.
        """
        records = as_records(records)
        X, pred = self._predict(records, timestamps)
        (result,) = self._pipeline.run([ShadowItem(records, X, pred, timestamps)], timeout)
        return ShadowPrediction(pred, result.output, result.error, result.latency_ms)

    def attach_candidate(self, candidate: Bundle | None) -> None:
        """Run ``candidate``'s advanced model in shadow beside this one (``None`` detaches).

        Its predictions are recorded with every request, for ``sidecar promote``
        to compare with this champion's on the same, labelled requests. It must
        share this bundle's preprocessing (same sha256), task and classes.
        """
        if candidate is not None:
            check_candidate(self, candidate)
        self._rewire(recorder=self._recorder, candidate=candidate)

    def feedback(
        self, labels: Sequence[Mapping[str, Any]], *, store: Store | None = None
    ) -> FeedbackResult:
        """Join ground truth to recorded predictions: ``[{"request_id": ..., "label": ...}]``
        (or a pandas, polars or Arrow table with those columns).

        An idempotent upsert into ``store`` (the attached recorder's by default):
        a later label for the same request replaces the earlier one; a label for
        a request id the store does not know is reported back, not stored. A
        label of the wrong type is an :class:`InputError` naming it, and then
        nothing is written. An item may carry ``ts`` (epoch seconds) for when
        the label was observed.
        """
        target = store if store is not None else getattr(self.recorder, "store", None)
        if target is None:
            raise InputError(
                "feedback needs a store: attach a recorder (bundle.attach_recorder) or pass "
                "store=sidecar.recording.open_store(url)."
            )
        checked = check_labels(labels, task=self.task, classes=self._classes)
        if self._recorder is not None and target is self._recorder.store:
            # Labels for just-served requests must find their records: finish the
            # shadow work that builds them, then write what is queued.
            self.shadow.drain(timeout=5.0)
            self._recorder.flush(timeout=5.0, fail_fast=True)  # a store that is down: answer now
        return target.upsert_labels(checked)

    def with_preprocessing(self, preprocessing: Preprocessor) -> Bundle:
        """A new bundle version with the same models and a new preprocessing version.

        Nothing is retrained: the new preprocessing must emit the same features
        (names and count) the models were trained on.
        """
        preprocessing = checked_preprocessing(self, preprocessing)
        return self._derive(keep=("advanced", "baseline", "reference"), preprocessing=preprocessing)

    def with_models(
        self,
        *,
        advanced: Any = None,
        baseline: Any = None,
        reference: tuple[Records | Any, npt.ArrayLike] | None = None,
        framework: str | None = None,
        model_options: Mapping[str, Any] | None = None,
    ) -> Bundle:
        """A new bundle version (a retraining candidate) with new model(s), same preprocessing.

        ``advanced`` / ``baseline`` replace the current ones when given (any model
        :func:`wrap` accepts, for the same task and classes). ``reference`` --
        held-out ``(records, labels)`` -- recomputes what "normal" looks like for
        the new models; without it the current reference is kept. The plan and
        the preprocessing are unchanged; the parent is this version.
        """
        if advanced is None and baseline is None:
            raise InputError("`advanced` or `baseline` must be given; got neither.")
        new_adv, new_base = checked_models(
            self, advanced, baseline, framework=framework, model_options=model_options
        )
        ref = None
        if reference is not None:
            records, y = as_records(reference[0]), np.asarray(reference[1])
            ref = compute_reference(self.preprocessing, self.task, records, y, new_adv, new_base)
        return self._derive(
            keep=[
                "preprocessing",
                *(["advanced"] if advanced is None else []),
                *(["baseline"] if baseline is None else []),
                *(["reference"] if reference is None else []),
            ],
            advanced=new_adv,
            baseline=new_base,
            reference=ref,
        )

    def with_plan(self, plan: MonitoringPlan) -> Bundle:
        """A new bundle version with the same parts and a new monitoring plan."""
        if plan.task != self.task:
            raise InputError(f"the plan's task must be {self.task!r}; got {plan.task!r}.")
        if plan.sha256 == self.plan.sha256:
            raise InputError("the new plan must differ from the current one; got the same plan.")
        return self._derive(keep=PARTS, plan=plan)

    def _derive(
        self,
        *,
        keep: Collection[str],
        preprocessing: Preprocessor | None = None,
        advanced: Predictor | None = None,
        baseline: Predictor | None = None,
        reference: Reference | None = None,
        plan: MonitoringPlan | None = None,
    ) -> Bundle:
        """The one way to a child version: this bundle with the given parts replaced.

        The child's parent is this version; the ``keep`` parts' saved files are
        copied as they are, never re-serialised. They may live in this bundle's
        private staging directory, which goes when this object does: the child
        keeps its parent alive.
        """
        parent = self.version  # stages an unsaved bundle: the kept parts get files to copy
        return Bundle(
            name=self.name,
            task=self.task,
            preprocessing=self.preprocessing if preprocessing is None else preprocessing,
            advanced=self.advanced if advanced is None else advanced,
            baseline=self.baseline if baseline is None else baseline,
            reference=self.reference if reference is None else reference,
            plan=self.plan if plan is None else plan,
            parent=parent,
            sources={k: v for k, v in self._sources.items() if k in keep},
            shadow_timeout=self.shadow.timeout,
            keep_alive=self,
        )

    # -- persistence --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the bundle to the directory ``path`` atomically and return it."""
        target, self._manifest = save_bundle(self, self._sources, path, overwrite=overwrite)
        self.path = target
        self._sources = sources_of(target, self._manifest)
        return target

    def __repr__(self) -> str:
        version = self._manifest["version"] if self._manifest else "unsaved"
        return f"Bundle(name={self.name!r}, task={self.task!r}, version={version!r})"


def _batch_id() -> str:
    """A time-ordered unique batch id: nanoseconds, then 48 random bits.

    Request ids built on it arrive in ascending order, so the store's primary-key
    index grows at its right edge instead of taking random page splits.
    """
    return f"{time.time_ns():016x}{os.urandom(6).hex()}"
