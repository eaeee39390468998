"""The bundle: preprocessing, advanced model, baseline and reference, versioned together.

A bundle on disk is a directory::

    manifest.json      format, name, version, parent, task, created_at, classes,
                       and for each part: kind, framework, format, version, sha256
    preprocessing/     the preprocessing module (its own version)
    advanced/          the advanced model in a safe native format
    baseline/          the baseline model
    reference/         what "normal" looked like (see ``sidecar._reference``)

Every part has its own version and sha256; the bundle's version is derived
from the whole sealed manifest (see ``sidecar._manifest``), which covers every
field a loader reads and, through the parts' hashes, every byte -- so any
change makes a new version, and saving a loaded bundle again keeps it (its
parts are copied, not re-serialised). Loading first checks the files (plain
files only, no links, within the size limits: ``sidecar._integrity``),
re-hashes every part, checks the seal, and refuses a bundle whose files or
manifest changed after it was saved, naming the part or field. Loading runs no
code the caller did not trust by name (pickle, import paths, skops types
outside the allow-list in ``sidecar._safe``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._checks import check_bundle
from ._errors import BundleError, InputError
from ._frames import as_records
from ._integrity import MAX_PART_BYTES, scan_part
from ._labels import check_labels
from ._manifest import seal_manifest
from ._reference import Reference
from ._shadow import ShadowRunner
from .monitoring._plan import MonitoringPlan, default_plan
from .preprocessing import (
    Preprocessor,
    SklearnPreprocessor,
    TabularPreprocessor,
    load_preprocessing,
    read_spec,
    save_preprocessing,
)
from .recording import FeedbackResult, Recorder, RecordPolicy, Store
from .runtimes import ModelOutput, Predictor, as_predictor, load_predictor

__all__ = ["Bundle", "Prediction", "ShadowPrediction", "load", "wrap"]

MANIFEST = "manifest.json"
PLAN = "plan.json"
PARTS = ("preprocessing", "advanced", "baseline", "reference")

Records = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Prediction:
    """The advanced model's answer for a batch of raw records.

    ``request_ids`` holds one id per record (a per-batch random prefix and the
    record's index), the key under which labels are joined later.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: tuple[Any, ...] | None
    bundle_version: str
    preprocessing_version: str
    batch_id: str
    latency_ms: float
    ts: float = 0.0
    #: values per categorical field this batch encoded to the unknown code (non-zero only)
    unknown: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def request_ids(self) -> tuple[str, ...]:
        prefix = self.batch_id
        return tuple(f"{prefix}-{i}" for i in range(len(self.predictions)))

    def __len__(self) -> int:
        return len(self.predictions)


@dataclass(frozen=True)
class ShadowPrediction:
    """Both models' predictions for the same records (the shadow pair)."""

    advanced: Prediction
    baseline: ModelOutput | None
    baseline_error: str | None
    baseline_latency_ms: float | None


@dataclass
class BundleStats:
    """Running counts a served bundle keeps (exposed by ``info`` and, later, as gauges)."""

    requests: int = 0
    records: int = 0
    unknown: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    shadow_disagreements: int = 0
    shadow_compared: int = 0

    def count(
        self, n_records: int, unknown: Mapping[str, int], missing: Mapping[str, int] | None = None
    ) -> None:
        """Count one request of ``n_records`` and its unknown (and missing) values per field."""
        self.requests += 1
        self.records += n_records
        if unknown:
            self.unknown.update(unknown)
        if missing:
            self.missing.update(missing)


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
        self.shadow = ShadowRunner(timeout=shadow_timeout)
        self.shadow.handler = self._shadow_batch
        self.path: Path | None = None
        self._classes = advanced.classes
        self.recorder: Recorder | None = None
        #: a retrained candidate running in shadow (see attach_candidate)
        self.candidate: Bundle | None = None
        #: called on the shadow thread after each micro-batch (the service sets
        #: its live Prometheus gauges there, off the request path)
        self.observers: list[Callable[[Bundle], None]] = []
        #: where ``predict(shadow=True)`` hands ``(records, X, prediction, timestamps)``:
        #: the shadow thread by default; a serving worker sets its shadow process here
        self.shadow_submit: Callable[[tuple[Any, ...]], object] = self.shadow.submit
        self._policy = RecordPolicy()

    # -- identity -----------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest; computing it for an unsaved bundle serialises the parts once."""
        if self._manifest is None:
            # Serialise once into a private staging directory and keep it as the
            # parts' source, so a later save() copies the very bytes hashed here.
            staging = Path(tempfile.mkdtemp(prefix="sidecar-bundle-"))
            weakref.finalize(self, shutil.rmtree, staging, True)
            self._manifest = self._write_parts(staging)
            self._sources = _sources_of(staging, self._manifest)
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

    def attach_recorder(
        self, recorder: Recorder | None, *, policy: RecordPolicy | None = None
    ) -> None:
        """Record every prediction from now on (``None`` detaches).

        With a recorder attached, :meth:`predict` runs the baseline in shadow and
        hands one row per record to the recorder -- exactly what the service does.
        ``policy`` drops or hashes raw fields before they are stored.
        """
        self.recorder = recorder
        self._policy = policy or RecordPolicy()

    def predict(
        self,
        records: Records | Any,
        *,
        shadow: bool | None = None,
        timestamps: Sequence[float] | None = None,
    ) -> Prediction:
        """Preprocess ``records`` and return the advanced model's predictions.

        With ``shadow=True`` -- the default when a recorder is attached -- the
        baseline also runs, on the shadow thread, so it can never fail or slow
        this call; its errors, timeouts and disagreements are counted, and the
        recorder (if any) gets the records with both models' answers.
        ``timestamps`` (epoch seconds, one per record) replace "now" in the
        record, for replaying history.
        """
        if shadow is None:
            shadow = self.recorder is not None
        records = as_records(records)
        X, pred = self._predict(records, timestamps)
        if shadow:
            # Recorded later, on the shadow thread: keep the records as served,
            # whatever the caller does with its dicts afterwards.
            kept = [dict(r) for r in records]
            self.shadow_submit((kept, X, pred, timestamps))
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
        ((out, error, ms),) = self._shadow_batch([(records, X, pred, timestamps)], timeout)
        return ShadowPrediction(pred, out, error, ms)

    def _shadow_batch(
        self,
        items: list[tuple[Records, np.ndarray, Prediction, Sequence[float] | None]],
        timeout: float | None = None,
    ) -> list[tuple[ModelOutput | None, str | None, float | None]]:
        """Run the baseline (and a candidate in shadow) once over many requests; record them."""
        X = items[0][1] if len(items) == 1 else np.vstack([it[1] for it in items])
        start = time.perf_counter()
        out, error = self.shadow.call(lambda: self.baseline.infer(X), timeout)
        ms = (time.perf_counter() - start) * 1000.0
        candidate = self.candidate
        cand_out: ModelOutput | None = None
        cand_ms = None
        if candidate is not None:
            start = time.perf_counter()
            cand_out, cand_error = self.shadow.call(lambda: candidate.advanced.infer(X), timeout)
            cand_ms = (time.perf_counter() - start) * 1000.0
            if cand_error is not None:
                error = "; ".join(e for e in (error, f"candidate: {cand_error}") if e)
        results: list[tuple[ModelOutput | None, str | None, float | None]] = []
        rows: list[Any] = []
        recorder = self.recorder
        lo = 0
        for records, features, pred, timestamps in items:
            hi = lo + len(pred)
            part = _slice(out, lo, hi)
            item_error = error
            if part is not None and not _finite_output(part):
                # Inputs beyond what the baseline can compute with (say +-1.7e308 through
                # its scaler): NaN is no answer, so it is an error, counted as one.
                part, item_error = None, "the baseline's output is not finite for these inputs"
                self.shadow._count("error")
            share = ms * (hi - lo) / len(X)  # the batch's shadow time, shared by its records
            results.append((part, item_error, share))
            if recorder is not None:
                cand = None
                if candidate is not None:
                    cand_share = None if cand_ms is None else cand_ms * (hi - lo) / len(X)
                    cand = (candidate.version, _slice(cand_out, lo, hi), cand_share)
                rows.append(
                    self._rows(records, pred, part, item_error, share, timestamps, cand, features)
                )
            if part is not None and self.task == "classification":
                self.stats.shadow_compared += hi - lo
                self.stats.shadow_disagreements += int(
                    np.count_nonzero(part.predictions != pred.predictions)
                )
            lo = hi
        if recorder is not None:
            for batch in rows:
                recorder.enqueue(batch)
        for observe in self.observers:
            observe(self)
        return results

    def attach_candidate(self, candidate: Bundle | None) -> None:
        """Run ``candidate``'s advanced model in shadow beside this one (``None`` detaches).

        Its predictions are recorded with every request, for ``sidecar promote``
        to compare with this champion's on the same, labelled requests. It must
        share this bundle's preprocessing (same sha256), task and classes.
        """
        if candidate is not None:
            mine = self.manifest["parts"]["preprocessing"]["sha256"]
            theirs = candidate.manifest["parts"]["preprocessing"]["sha256"]
            if candidate.task != self.task:
                raise InputError(
                    f"the candidate's task must be {self.task!r}; got {candidate.task!r}."
                )
            if theirs != mine:
                raise InputError(
                    "the candidate must use the champion's preprocessing (sha256 "
                    f"{mine[:12]}...); got preprocessing {theirs[:12]}..."
                )
            if list(candidate._classes or []) != list(self._classes or []):
                raise InputError(
                    f"the candidate must know the champion's classes {list(self._classes or [])}; "
                    f"got {list(candidate._classes or [])}."
                )
        self.candidate = candidate

    def feedback(
        self, labels: Sequence[Mapping[str, Any]], *, store: Store | None = None
    ) -> FeedbackResult:
        """Join ground truth to recorded predictions: ``[{"request_id": ..., "label": ...}]``.

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
        if self.recorder is not None and target is self.recorder.store:
            # Labels for just-served requests must find their records: finish the
            # shadow work that builds them, then write what is queued.
            self.shadow.drain(timeout=5.0)
            self.recorder.flush(timeout=5.0, fail_fast=True)  # a store that is down: answer now
        return target.upsert_labels(checked)

    def _rows(
        self,
        records: Records,
        pred: Prediction,
        base: ModelOutput | None,
        error: str | None,
        base_ms: float | None,
        timestamps: Sequence[float] | None,
        candidate: tuple[str, ModelOutput | None, float | None] | None = None,
        features: np.ndarray | None = None,
    ) -> Any:
        """The records as one batch for the recorder (encoded by its writer)."""
        from .recording._records import ServedBatch

        parts = self.manifest["parts"]
        cand_version, cand_out, cand_ms = candidate if candidate is not None else (None, None, None)
        return ServedBatch(
            records,
            request_ids=pred.request_ids,
            ts=pred.ts if timestamps is None else timestamps,
            versions={
                "bundle_version": pred.bundle_version,
                "preprocessing_version": pred.preprocessing_version,
                "advanced_version": parts["advanced"]["version"],
                "baseline_version": parts["baseline"]["version"],
                "candidate_version": cand_version,
            },
            features=features,
            outputs={
                "advanced": (pred.predictions, pred.probabilities),
                "baseline": None if base is None else (base.predictions, base.probabilities),
                "candidate": None
                if cand_out is None
                else (cand_out.predictions, cand_out.probabilities),
            },
            latencies={
                "advanced_latency_ms": pred.latency_ms,
                "baseline_latency_ms": base_ms,
                "candidate_latency_ms": cand_ms,
            },
            error=error,
            apply=self._policy.apply if self._policy.active else None,
        )

    def with_preprocessing(self, preprocessing: Preprocessor) -> Bundle:
        """A new bundle version with the same models and a new preprocessing version.

        Nothing is retrained: the new preprocessing must emit the same features
        (names and count) the models were trained on.
        """
        if isinstance(preprocessing, TabularPreprocessor) and not hasattr(
            preprocessing, "vocabularies_"
        ):
            if not isinstance(self.preprocessing, TabularPreprocessor):
                raise InputError(
                    "an unfitted tabular preprocessing can only replace a tabular one "
                    "(it takes over its vocabularies); fit it first."
                )
            preprocessing.with_state_of(self.preprocessing)
        old, new = self.preprocessing.feature_names_out, preprocessing.feature_names_out
        if old and new and old != new:
            raise InputError(
                f"the new preprocessing must emit the features the models were trained on "
                f"{list(old)[:10]}...; got {list(new)[:10]}..."
            )
        if (
            preprocessing.version is not None
            and preprocessing.version == self.preprocessing_version
        ):
            raise InputError(
                f"the new preprocessing must have a new version; got the current one "
                f"{preprocessing.version!r}."
            )
        self.manifest  # noqa: B018 - make sure the kept parts have sources to copy
        sources = {k: v for k, v in self._sources.items() if k != "preprocessing"}
        # The kept parts may live in this bundle's private staging directory,
        # which goes when this object does: the child keeps its parent alive.
        return Bundle(
            name=self.name,
            task=self.task,
            preprocessing=preprocessing,
            advanced=self.advanced,
            baseline=self.baseline,
            reference=self.reference,
            plan=self.plan,
            parent=self.version,
            sources=sources,
            shadow_timeout=self.shadow.timeout,
            keep_alive=self,
        )

    def with_models(
        self,
        *,
        advanced: Any = None,
        baseline: Any = None,
        reference: tuple[Records | Any, Any] | None = None,
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
        self.manifest  # noqa: B018 - make sure the kept parts have sources to copy
        new_adv = self.advanced
        if advanced is not None:
            new_adv = as_predictor(
                advanced,
                task=self.task,
                framework=framework,
                classes=self._classes,
                **dict(model_options or {}),
            )
        new_base = self.baseline if baseline is None else as_predictor(baseline, task=self.task)
        if self.task == "classification":
            for who, model in (("advanced", new_adv), ("baseline", new_base)):
                if model.classes is not None and list(model.classes) != list(self._classes or []):
                    raise InputError(
                        f"the new {who} model must know the classes {list(self._classes or [])} "
                        f"in that order; got {list(model.classes)}."
                    )
        keep = {"preprocessing"}
        if advanced is None:
            keep.add("advanced")
        if baseline is None:
            keep.add("baseline")
        ref = self.reference
        if reference is not None:
            records, y = as_records(reference[0]), np.asarray(reference[1])
            X, report = self.preprocessing.transform_with_report(records)
            pre = self.preprocessing
            ref = Reference.compute(
                task=self.task,
                records=records,
                input_fields=pre.input_fields,
                features=X,
                feature_names=pre.feature_names_out or [f"x{j}" for j in range(X.shape[1])],
                categorical_fields=pre.categorical_fields,
                unknown=report.unknown,
                y=y,
                outputs={"advanced": new_adv.infer(X), "baseline": new_base.infer(X)},
                classes=new_adv.classes,
                canonical=pre.canonical_values if isinstance(pre, TabularPreprocessor) else None,
            )
        else:
            keep.add("reference")
        return Bundle(
            name=self.name,
            task=self.task,
            preprocessing=self.preprocessing,
            advanced=new_adv,
            baseline=new_base,
            reference=ref,
            plan=self.plan,
            parent=self.version,
            sources={k: v for k, v in self._sources.items() if k in keep},
            shadow_timeout=self.shadow.timeout,
            keep_alive=self,
        )

    def with_plan(self, plan: MonitoringPlan) -> Bundle:
        """A new bundle version with the same parts and a new monitoring plan."""
        if plan.task != self.task:
            raise InputError(f"the plan's task must be {self.task!r}; got {plan.task!r}.")
        if plan.sha256 == self.plan.sha256:
            raise InputError("the new plan must differ from the current one; got the same plan.")
        self.manifest  # noqa: B018 - make sure the kept parts have sources to copy
        return Bundle(
            name=self.name,
            task=self.task,
            preprocessing=self.preprocessing,
            advanced=self.advanced,
            baseline=self.baseline,
            reference=self.reference,
            plan=plan,
            parent=self.version,
            sources=dict(self._sources),
            shadow_timeout=self.shadow.timeout,
            keep_alive=self,
        )

    # -- persistence --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the bundle to the directory ``path`` atomically and return it."""
        target = Path(path)
        if target.exists() and not overwrite:
            raise BundleError(f"{target} already exists; pass overwrite=True to replace it.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self._manifest = self._write_parts(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = target
        self._sources = _sources_of(target, self._manifest)
        return target

    def _write_parts(self, root: Path) -> dict[str, Any]:
        parts: dict[str, dict[str, Any]] = {}
        for part in PARTS:
            directory = root / part
            if part in self._sources:
                source, meta_kept = self._sources[part]
                shutil.copytree(source, directory)
                parts[part] = dict(meta_kept)
                # the same bytes; a format-1 part gets its sha256 in today's framing
                parts[part]["sha256"] = scan_part(directory, part, max_part_bytes=1 << 62).sha256
                continue
            directory.mkdir(parents=True)
            meta: dict[str, Any]
            if part == "preprocessing":
                meta = save_preprocessing(self.preprocessing, directory)
                given = self.preprocessing.version
            elif part == "reference":
                self.reference.save(directory)
                meta = {"kind": "reference", "format": self.reference.summary["format"]}
                given = None
            else:
                model: Predictor = getattr(self, part)
                meta = model.save(directory)
                meta.update(task=self.task, classes=_jsonable(model.classes))
                given = None
            digest = scan_part(directory, part, max_part_bytes=1 << 62).sha256
            meta.update(version=given or digest[:12], sha256=digest)
            parts[part] = meta
        plan_text = self.plan.canonical_json()
        (root / PLAN).write_text(plan_text)
        plan_sha = hashlib.sha256(plan_text.encode()).hexdigest()
        manifest = {
            "name": self.name,
            "plan_sha256": plan_sha,
            "parent": self.parent,
            "task": self.task,
            "created_at": self.created_at,
            "classes": _jsonable(self._classes),
            "parts": parts,
        }
        manifest = seal_manifest(manifest)
        (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        return manifest

    def __repr__(self) -> str:
        version = self._manifest["version"] if self._manifest else "unsaved"
        return f"Bundle(name={self.name!r}, task={self.task!r}, version={version!r})"


def _default_plan_for(task: str, reference: Reference) -> MonitoringPlan:
    """The task's default plan, its bounds set around the advanced model's reference value."""
    error = reference.arrays.get("advanced:error")
    value = None
    if error is not None and len(error):
        # accuracy for a classifier; the median absolute error for a regressor
        value = float(1.0 - error.mean()) if task == "classification" else float(np.median(error))
    return default_plan(task, reference_metric=value)


def _batch_id() -> str:
    """A time-ordered unique batch id: nanoseconds, then 48 random bits.

    Request ids built on it arrive in ascending order, so the store's primary-key
    index grows at its right edge instead of taking random page splits.
    """
    return f"{time.time_ns():016x}{os.urandom(6).hex()}"


def _finite_output(out: ModelOutput) -> bool:
    """Whether a model's probabilities (or a regressor's values) are all finite numbers."""
    values = out.probabilities if out.probabilities is not None else out.predictions
    if values.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(values).all())


def _slice(out: ModelOutput | None, lo: int, hi: int) -> ModelOutput | None:
    if out is None:
        return None
    proba = out.probabilities
    return ModelOutput(out.predictions[lo:hi], None if proba is None else proba[lo:hi])


def _sources_of(root: Path, manifest: dict[str, Any]) -> dict[str, tuple[Path, dict[str, Any]]]:
    return {part: (root / part, manifest["parts"][part]) for part in PARTS}


def hash_directory(directory: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (links refused)."""
    return scan_part(directory, directory.name, max_part_bytes=1 << 62).sha256


def load(
    path: str | os.PathLike[str],
    *,
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
    shadow_timeout: float = 1.0,
    allow_legacy: bool = False,
    public_key: str | os.PathLike[str] | None = None,
    max_part_bytes: int = MAX_PART_BYTES,
) -> Bundle:
    """Read a bundle directory (or a registry's active version), checking every part first.

    Loading runs no code the caller did not name: ``trusted`` lists the import
    paths (a torch ``factory``, a callable model's ``path``) and the skops types
    beyond the built-in allow-list of scikit-learn and NumPy types that may be
    loaded, each by its exact name; ``allow_pickle=True`` is needed for a
    bundle with a pickled model. Give either only for bundles from a trusted
    source. ``public_key`` (a PEM file) makes the bundle's signature required
    and checked first (see ``sidecar sign``). ``allow_legacy=True`` loads a
    bundle saved before the manifest was sealed (see :mod:`sidecar._manifest`).
    ``max_part_bytes`` bounds what each part may hold once inflated.
    """
    from ._registry import resolve_bundle_path

    root = resolve_bundle_path(Path(path))  # a registry loads its active version
    if public_key is not None:
        from ._signing import verify_bundle

        verify_bundle(root, public_key)
    manifest, plan = check_bundle(root, allow_legacy=allow_legacy, max_part_bytes=max_part_bytes)
    if root != Path(path) and manifest["version"] != root.name:
        raise BundleError(
            f"{root}: field `version` {manifest['version']!r} is not the version the registry "
            f"keeps it under ({root.name!r}); the registry was tampered with."
        )
    parts = manifest["parts"]
    trusted_t = tuple(trusted)
    bundle = Bundle(
        name=manifest["name"],
        task=manifest["task"],
        preprocessing=load_preprocessing(
            root / "preprocessing", parts["preprocessing"], trusted=trusted_t
        ),
        advanced=load_predictor(
            root / "advanced", parts["advanced"], trusted=trusted_t, allow_pickle=allow_pickle
        ),
        baseline=load_predictor(
            root / "baseline", parts["baseline"], trusted=trusted_t, allow_pickle=allow_pickle
        ),
        reference=Reference.load(root / "reference"),
        plan=plan,
        parent=manifest["parent"],
        created_at=manifest["created_at"],
        manifest=manifest,
        sources=_sources_of(root, manifest),
        shadow_timeout=shadow_timeout,
    )
    bundle.path = root
    return bundle


def wrap(
    model: Any,
    *,
    task: str,
    preprocessing: Preprocessor | Any,
    reference: tuple[Records | Any, Any],
    train: tuple[Records | Any, Any] | None = None,
    baseline: str | Any = "auto",
    name: str = "model",
    framework: str | None = None,
    classes: Sequence[Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    plan: MonitoringPlan | str | os.PathLike[str] | None = None,
) -> Bundle:
    """Wrap a fitted ``model`` with its preprocessing, a baseline and a reference.

    Parameters
    ----------
    model
        The advanced model: a scikit-learn estimator, a ``torch.nn.Module``, an
        ONNX model, or a callable (or its import path). See
        :func:`sidecar.runtimes.as_predictor`.
    task
        ``"classification"`` or ``"regression"``.
    preprocessing
        A :class:`~sidecar.preprocessing.TabularPreprocessor` (fitted on
        ``train`` if it is not yet), a spec file path, or a fitted
        scikit-learn transformer.
    reference
        ``(records, labels)`` held out from training: what "normal" looks like.
    train
        ``(records, labels)`` the model was trained on; needed to fit the
        preprocessing and an automatic baseline.
    baseline
        ``"auto"`` / ``"linear"`` / ``"tree"`` to fit one on ``train``, or a fitted
        scikit-learn model taking the preprocessed features.
    plan
        The monitoring plan (a :class:`~sidecar.monitoring.MonitoringPlan` or a
        plan file); the task's default plan when left out.
    framework, classes, model_options
        Passed to the runtime: the framework when it cannot be guessed, the
        class labels of a non-scikit-learn classifier (the sorted training
        labels by default), and options such as torch's ``factory``.
    """
    from ._baseline import BaselineKind, fit_baseline
    from .runtimes._base import check_task

    checked_task = check_task(task)
    ref_records, y_ref = as_records(reference[0]), np.asarray(reference[1])
    if len(ref_records) != len(y_ref):
        raise InputError(
            f"`reference` labels must have one entry per record ({len(ref_records)}); "
            f"got {len(y_ref)}."
        )
    if len(ref_records) < 2:
        raise InputError(f"`reference` must hold at least 2 records; got {len(ref_records)}.")
    train_records: Records | None = None
    y_train: np.ndarray | None = None
    if train is not None:
        train_records, y_train = as_records(train[0]), np.asarray(train[1])
        if len(train_records) != len(y_train):
            raise InputError(
                f"`train` labels must have one entry per record ({len(train_records)}); "
                f"got {len(y_train)}."
            )

    pre = _as_preprocessor(preprocessing, train_records, ref_records)
    if classes is None and checked_task == "classification":
        labels = y_train if y_train is not None else y_ref
        classes = tuple(np.unique(labels).tolist())
    advanced = as_predictor(
        model,
        task=checked_task,
        framework=framework,
        classes=tuple(classes) if classes is not None else None,
        **dict(model_options or {}),
    )
    if isinstance(baseline, str):
        if train_records is None or y_train is None:
            raise InputError(
                f"`train` must be given to fit baseline={baseline!r}; got train=None "
                "(or pass a fitted baseline model)."
            )
        fitted = fit_baseline(
            pre.transform(train_records),
            y_train,
            task=checked_task,
            kind=cast(BaselineKind, baseline),
        )
        base = as_predictor(fitted, task=checked_task, framework="sklearn")
    else:
        base = as_predictor(baseline, task=checked_task)
    if (
        checked_task == "classification"
        and advanced.classes is not None
        and (base.classes is not None and list(base.classes) != list(advanced.classes))
    ):
        raise InputError(
            f"the baseline must know the classes of the advanced model {list(advanced.classes)}; "
            f"got {list(base.classes)}."
        )

    X_ref, report = pre.transform_with_report(ref_records)
    outputs = {"advanced": advanced.infer(X_ref), "baseline": base.infer(X_ref)}
    ref = Reference.compute(
        task=checked_task,
        records=ref_records,
        input_fields=pre.input_fields,
        features=X_ref,
        feature_names=pre.feature_names_out or [f"x{j}" for j in range(X_ref.shape[1])],
        categorical_fields=pre.categorical_fields,
        unknown=report.unknown,
        y=y_ref,
        outputs=outputs,
        classes=advanced.classes,
        canonical=pre.canonical_values if isinstance(pre, TabularPreprocessor) else None,
    )
    if plan is not None and not isinstance(plan, MonitoringPlan):
        from .monitoring._plan import read_plan

        plan = read_plan(plan)
    if plan is not None and plan.task != checked_task:
        raise InputError(f"the plan's task must be {checked_task!r}; got {plan.task!r}.")
    return Bundle(
        name=name,
        task=checked_task,
        preprocessing=pre,
        advanced=advanced,
        baseline=base,
        reference=ref,
        plan=plan,
    )


def _as_preprocessor(preprocessing: Any, train: Records | None, ref: Records) -> Preprocessor:
    if isinstance(preprocessing, str | os.PathLike):
        preprocessing = read_spec(preprocessing)
    if isinstance(preprocessing, TabularPreprocessor):
        if not hasattr(preprocessing, "vocabularies_"):
            if train is None:
                raise InputError(
                    "`train` must be given to fit the preprocessing (it is not fitted yet); "
                    "got train=None."
                )
            preprocessing.fit(train)
        return preprocessing
    if isinstance(preprocessing, SklearnPreprocessor):
        return preprocessing
    if hasattr(preprocessing, "transform") and hasattr(preprocessing, "fit"):
        names = getattr(preprocessing, "feature_names_in_", None)
        fields = None if names is not None else list((train or ref)[0].keys())
        return SklearnPreprocessor(preprocessing, input_fields=fields)
    if isinstance(preprocessing, Preprocessor):
        return preprocessing
    raise InputError(
        "`preprocessing` must be a TabularPreprocessor, a spec file path or a fitted "
        f"scikit-learn transformer; got {type(preprocessing).__name__}."
    )


def _jsonable(classes: tuple[Any, ...] | None) -> list[Any] | None:
    if classes is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in classes]
