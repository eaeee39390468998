"""The bundle SDK: integrity on load, safe loaders, versions, preprocessing swaps,
the baseline and its shadow, and the reference."""

from __future__ import annotations

import gc
import json
import math
import re
import shutil
import threading
import time
import types
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import sidecar
from sidecar.bundle import hash_directory
from sidecar.runtimes import PicklePredictor
from tests import models

PARTS = ("preprocessing", "advanced", "baseline", "reference")
LABELS = ("cat", "dog", "fox")
LB = 0.45359237  # kg per pound

Records = list[dict[str, Any]]


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cls_data() -> tuple[Records, np.ndarray, Records, np.ndarray]:
    return models.make_classification_data(n_train=150, n_ref=60, seed=11, labels=LABELS)


@pytest.fixture(scope="module")
def reg_data() -> tuple[Records, np.ndarray, Records, np.ndarray]:
    return models.make_regression_data(n_train=150, n_ref=60, seed=11)


def _pre(**numeric: dict[str, Any]) -> sidecar.TabularPreprocessor:
    return sidecar.TabularPreprocessor(columns=models.preprocessing_columns(**numeric))


@pytest.fixture(scope="module")
def X_train(cls_data: tuple[Any, ...]) -> np.ndarray:
    return _pre().fit(cls_data[0]).transform(cls_data[0])


@pytest.fixture(scope="module")
def forest(cls_data: tuple[Any, ...], X_train: np.ndarray) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(
        X_train, cls_data[1]
    )


def _wrap(model: Any, data: tuple[Any, ...], task: str = "classification", **kw: Any):
    train, y_train, ref, y_ref = data
    kw.setdefault("preprocessing", _pre(weight={"unit": "kg"}))
    return sidecar.wrap(model, task=task, train=(train, y_train), reference=(ref, y_ref), **kw)


@pytest.fixture
def bundle(forest: RandomForestClassifier, cls_data: tuple[Any, ...]) -> sidecar.Bundle:
    return _wrap(forest, cls_data)


@pytest.fixture(scope="module")
def saved(
    forest: RandomForestClassifier,
    cls_data: tuple[Any, ...],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A pristine saved bundle; tests copy it before changing anything."""
    return _wrap(forest, cls_data).save(tmp_path_factory.mktemp("saved") / "bundle")


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "bundle"))


def _flip_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def _first_file(directory: Path) -> Path:
    return sorted(p for p in directory.rglob("*") if p.is_file())[0]


# -- integrity on load ------------------------------------------------------------------------


class TestIntegrity:
    def test_pristine_copy_loads(self, copy: Path, saved: Path) -> None:
        assert sidecar.load(copy).version == sidecar.load(saved).version

    @pytest.mark.parametrize("part", PARTS)
    def test_changed_byte_fails_the_hash_check(self, copy: Path, part: str) -> None:
        _flip_byte(_first_file(copy / part))
        with pytest.raises(sidecar.BundleError, match=f"part '{part}' failed its hash check"):
            sidecar.load(copy)

    def test_changed_model_file_fails_the_hash_check(self, copy: Path) -> None:
        _flip_byte(copy / "advanced" / "model.skops")
        with pytest.raises(sidecar.BundleError, match="hash check"):
            sidecar.load(copy)

    def test_added_file_fails_the_hash_check(self, copy: Path) -> None:
        (copy / "advanced" / "extra.bin").write_bytes(b"\0")
        with pytest.raises(sidecar.BundleError, match="'advanced' failed its hash check"):
            sidecar.load(copy)

    @pytest.mark.parametrize("part", PARTS)
    def test_deleted_part_is_missing(self, copy: Path, part: str) -> None:
        shutil.rmtree(copy / part)
        with pytest.raises(sidecar.BundleError, match=f"missing its '{part}' part"):
            sidecar.load(copy)

    def test_deleted_baseline_is_missing(self, copy: Path) -> None:
        shutil.rmtree(copy / "baseline")
        with pytest.raises(sidecar.BundleError, match="missing"):
            sidecar.load(copy)

    def test_part_left_out_of_the_manifest_is_missing(self, copy: Path) -> None:
        manifest = json.loads((copy / "manifest.json").read_text())
        del manifest["parts"]["baseline"]
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(sidecar.BundleError, match="missing its 'baseline' part"):
            sidecar.load(copy)

    def test_no_manifest(self, copy: Path, tmp_path: Path) -> None:
        (copy / "manifest.json").unlink()
        with pytest.raises(sidecar.BundleError, match=r"no manifest\.json"):
            sidecar.load(copy)
        # a mistyped path is a usage error (the CLI's exit 2), not a broken bundle
        with pytest.raises(sidecar.InputError, match="does-not-exist: no such bundle directory"):
            sidecar.load(tmp_path / "does-not-exist")

    def test_manifest_that_is_not_json(self, copy: Path) -> None:
        (copy / "manifest.json").write_text("{not json")
        with pytest.raises(sidecar.BundleError, match="not valid JSON"):
            sidecar.load(copy)

    def test_manifest_of_another_format(self, copy: Path) -> None:
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["format"] = "sidecar.bundle/999"
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(sidecar.BundleError, match="format"):
            sidecar.load(copy)

    def test_bundle_error_is_a_sidecar_error_with_status_500(self, copy: Path) -> None:
        shutil.rmtree(copy / "reference")
        with pytest.raises(sidecar.SidecarError) as info:
            sidecar.load(copy)
        assert isinstance(info.value, sidecar.BundleError)
        assert info.value.http_status == 500

    def test_part_changed_with_its_manifest_hash_keeps_no_old_version(self, copy: Path) -> None:
        original = sidecar.load(copy).version
        ref_json = copy / "reference" / "reference.json"
        summary = json.loads(ref_json.read_text())
        summary["metrics"]["advanced"]["mean_loss"] = 0.0  # a "better" model, on paper
        ref_json.write_text(json.dumps(summary))
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["parts"]["reference"]["sha256"] = hash_directory(copy / "reference")
        (copy / "manifest.json").write_text(json.dumps(manifest))
        try:
            tampered = sidecar.load(copy)
        except sidecar.BundleError:
            return  # refusing the inconsistent manifest is a right answer too
        assert tampered.version != original


class TestLegacyFormat:
    """Bundles saved before the seal (format 1) load only when asked for, and re-save sealed."""

    @staticmethod
    def _as_legacy(root: Path) -> str:
        from sidecar.bundle._integrity import scan_part
        from sidecar.bundle._manifest import LEGACY_FORMAT, legacy_version

        manifest = json.loads((root / "manifest.json").read_text())
        for key in ("seal", "seal_sha256"):
            del manifest[key]
        manifest["format"] = LEGACY_FORMAT
        for part, meta in manifest["parts"].items():  # format 1 hashed without sizes
            meta["sha256"] = scan_part(root / part, part, framed=False).sha256
        manifest["version"] = legacy_version(manifest, manifest["plan_sha256"])
        (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        return str(manifest["version"])

    def test_refused_unless_asked_for_then_resaved_sealed(
        self, copy: Path, tmp_path: Path, cls_data: tuple[Any, ...]
    ) -> None:
        old_version = self._as_legacy(copy)
        with pytest.raises(sidecar.BundleError, match=r"sidecar\.bundle/1.*allow_legacy=True"):
            sidecar.load(copy)
        legacy = sidecar.load(copy, allow_legacy=True)
        assert legacy.version == old_version
        new = sidecar.load(legacy.save(tmp_path / "resaved"))
        assert new.manifest["format"] == "sidecar.bundle/2"
        assert new.version != old_version  # the version now covers the whole manifest
        for part, meta in new.manifest["parts"].items():  # copied byte for byte
            assert {**meta, "sha256": None} == {**legacy.manifest["parts"][part], "sha256": None}
            assert meta["sha256"] == hash_directory(copy / part)  # today's framing
        ref = cls_data[2]
        np.testing.assert_array_equal(new.predict(ref).predictions, legacy.predict(ref).predictions)

    def test_a_legacy_bundle_is_still_checked(self, copy: Path) -> None:
        self._as_legacy(copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["name"] = "renamed"
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(sidecar.BundleError, match=r"field `version`.*does not match"):
            sidecar.load(copy, allow_legacy=True)


# -- safe loaders: pickle and skops --------------------------------------------------------------


class TestSafeLoaders:
    def test_pickled_model_needs_allow_pickle(
        self, cls_data: tuple[Any, ...], tmp_path: Path
    ) -> None:
        model = models.FixedLinearClassifier(classes=LABELS)
        bundle = _wrap(model, cls_data, framework="pickle")
        assert isinstance(bundle.advanced, PicklePredictor)
        path = bundle.save(tmp_path / "pickled")
        assert bundle.info()["parts"]["advanced"]["framework"] == "pickle"
        with pytest.raises(sidecar.BundleError, match="allow_pickle"):
            sidecar.load(path)
        loaded = sidecar.load(path, allow_pickle=True)
        assert isinstance(loaded.advanced, PicklePredictor)
        assert loaded.version == bundle.version
        ref = cls_data[2]
        X = bundle.preprocessing.transform(ref)
        before, after = bundle.predict(ref), loaded.predict(ref)
        np.testing.assert_array_equal(after.predictions, before.predictions)
        np.testing.assert_array_equal(after.probabilities, before.probabilities)
        np.testing.assert_allclose(after.probabilities, model.predict_proba(X), rtol=0, atol=0)
        np.testing.assert_array_equal(after.predictions, model.predict(X))

    def test_pickle_is_never_guessed(self, cls_data: tuple[Any, ...]) -> None:
        with pytest.raises(sidecar.BundleError, match="framework"):
            _wrap(models.FixedLinearClassifier(classes=LABELS), cls_data)

    def test_skops_refuses_an_untrusted_function(
        self, cls_data: tuple[Any, ...], X_train: np.ndarray, tmp_path: Path
    ) -> None:
        name = "tests.models.double_features"
        model = Pipeline(
            [
                ("double", FunctionTransformer(models.double_features)),
                ("scale", StandardScaler()),
                ("clf", LogisticRegression(max_iter=1000)),
            ]
        ).fit(X_train, cls_data[1])
        bundle = _wrap(model, cls_data)
        path = bundle.save(tmp_path / "untrusted")
        with pytest.raises(sidecar.BundleError, match="not trusted") as info:
            sidecar.load(path)
        assert name in str(info.value)
        assert "trusted=" in str(info.value)
        loaded = sidecar.load(path, trusted=[name])
        assert loaded.version == bundle.version
        ref = cls_data[2]
        np.testing.assert_array_equal(
            loaded.predict(ref).predictions, bundle.predict(ref).predictions
        )
        np.testing.assert_array_equal(
            loaded.predict_proba(ref), model.predict_proba(bundle.preprocessing.transform(ref))
        )

    def test_trusting_another_name_does_not_help(
        self, cls_data: tuple[Any, ...], X_train: np.ndarray, tmp_path: Path
    ) -> None:
        model = make_pipeline(
            FunctionTransformer(models.double_features), LogisticRegression(max_iter=2000)
        ).fit(X_train, cls_data[1])
        path = _wrap(model, cls_data).save(tmp_path / "untrusted")
        with pytest.raises(sidecar.BundleError, match=re.escape("tests.models.double_features")):
            sidecar.load(path, trusted=["tests.models.softmax"])


# -- saving and versions ---------------------------------------------------------------------


class TestSaveAndVersion:
    def test_save_refuses_an_existing_directory(
        self, bundle: sidecar.Bundle, tmp_path: Path
    ) -> None:
        target = tmp_path / "b"
        bundle.save(target)
        with pytest.raises(sidecar.BundleError, match="already exists"):
            bundle.save(target)
        (tmp_path / "empty").mkdir()
        with pytest.raises(sidecar.BundleError, match="overwrite=True"):
            bundle.save(tmp_path / "empty")
        (target / "stray.txt").write_text("left over")
        assert bundle.save(target, overwrite=True) == target
        assert not (target / "stray.txt").exists()
        assert sidecar.load(target).version == bundle.version

    def test_save_is_atomic_and_leaves_no_temporaries(
        self, bundle: sidecar.Bundle, tmp_path: Path
    ) -> None:
        bundle.save(tmp_path / "b")
        bundle.save(tmp_path / "b", overwrite=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
            [*PARTS, "manifest.json", "plan.json"]
        )

    def test_version_is_content_derived(self, saved: Path, tmp_path: Path) -> None:
        loaded = sidecar.load(saved)
        a = loaded.save(tmp_path / "a")
        b = loaded.save(tmp_path / "b")
        va, vb = sidecar.load(a), sidecar.load(b)
        assert va.version == vb.version == loaded.version
        assert va.info()["parts"] == vb.info()["parts"]
        for part in PARTS:
            assert hash_directory(a / part) == hash_directory(b / part)
        assert json.loads((a / "manifest.json").read_text()) == json.loads(
            (b / "manifest.json").read_text()
        )

    def test_version_before_and_after_saving_agree(
        self, bundle: sidecar.Bundle, tmp_path: Path
    ) -> None:
        before = bundle.version  # computed from a private staging copy
        bundle.save(tmp_path / "b")
        assert bundle.version == before == sidecar.load(tmp_path / "b").version

    def test_saving_a_loaded_bundle_onto_itself(self, copy: Path) -> None:
        loaded = sidecar.load(copy)
        loaded.save(copy, overwrite=True)
        assert sidecar.load(copy).version == loaded.version

    def test_another_name_is_another_version(
        self, forest: RandomForestClassifier, cls_data: tuple[Any, ...], saved: Path
    ) -> None:
        other = _wrap(forest, cls_data, name="other")
        assert other.version != sidecar.load(saved).version

    def test_timestamps_do_not_change_the_reference_or_preprocessing_hash(
        self,
        forest: RandomForestClassifier,
        cls_data: tuple[Any, ...],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        versions = []
        for year, stamp in ((2020, 1_577_880_000.0), (2021, 1_609_502_400.0)):
            fake = types.SimpleNamespace(
                time=lambda stamp=stamp: stamp,
                localtime=lambda secs=None, stamp=stamp: time.localtime(stamp),
            )
            monkeypatch.setattr(zipfile, "time", fake)
            versions.append(_wrap(forest, cls_data).save(tmp_path / str(year)))
            monkeypatch.undo()
        a, b = (sidecar.load(p) for p in versions)
        # skops names its zip entries after object ids, so the model parts differ
        # between wraps; the parts sidecar writes itself are byte-stable.
        for part in ("preprocessing", "reference"):
            assert a.info()["parts"][part]["sha256"] == b.info()["parts"][part]["sha256"]


# -- a new preprocessing version ---------------------------------------------------------------


class TestWithPreprocessing:
    @pytest.fixture
    def old(self, saved: Path) -> sidecar.Bundle:
        return sidecar.load(saved)

    def test_unit_swap_makes_a_child_version(
        self, old: sidecar.Bundle, cls_data: tuple[Any, ...], tmp_path: Path
    ) -> None:
        new = old.with_preprocessing(_pre(weight={"unit": "kg", "input_unit": "lb"}))
        assert new.parent == old.version
        assert new.version != old.version
        old_parts, new_parts = old.info()["parts"], new.info()["parts"]
        for part in ("advanced", "baseline", "reference"):
            assert new_parts[part]["version"] == old_parts[part]["version"], part
            assert new_parts[part]["sha256"] == old_parts[part]["sha256"], part
        assert new_parts["preprocessing"]["version"] != old_parts["preprocessing"]["version"]
        assert new_parts["preprocessing"]["sha256"] != old_parts["preprocessing"]["sha256"]
        assert new.preprocessing_version == new_parts["preprocessing"]["version"]

        kg = cls_data[2]
        lb = [dict(r, weight=r["weight"] / LB) for r in kg]
        np.testing.assert_allclose(
            new.preprocessing.transform(lb), old.preprocessing.transform(kg), rtol=0, atol=1e-9
        )
        before, after = old.predict(kg), new.predict(lb)
        np.testing.assert_array_equal(after.predictions, before.predictions)
        np.testing.assert_allclose(after.probabilities, before.probabilities, rtol=0, atol=1e-9)
        assert after.bundle_version == new.version
        assert after.preprocessing_version == new.preprocessing_version

        path = new.save(tmp_path / "child")
        reloaded = sidecar.load(path)
        assert reloaded.version == new.version
        assert reloaded.parent == old.version
        np.testing.assert_array_equal(reloaded.predict(lb).predictions, before.predictions)

    def test_swap_on_an_unsaved_bundle(
        self, bundle: sidecar.Bundle, cls_data: tuple[Any, ...], tmp_path: Path
    ) -> None:
        new = bundle.with_preprocessing(_pre(weight={"unit": "kg", "input_unit": "lb"}))
        path = new.save(tmp_path / "child")
        assert sidecar.load(path).parent == bundle.version

    def test_swap_on_a_temporary_unsaved_bundle(
        self, forest: RandomForestClassifier, cls_data: tuple[Any, ...], tmp_path: Path
    ) -> None:
        new = _wrap(forest, cls_data).with_preprocessing(
            _pre(weight={"unit": "kg", "input_unit": "lb"})
        )
        gc.collect()
        path = new.save(tmp_path / "child")
        assert sidecar.load(path).parent == new.parent

    def test_other_features_are_refused(self, old: sidecar.Bundle) -> None:
        fewer = sidecar.TabularPreprocessor(columns=models.preprocessing_columns()[1:])
        with pytest.raises(sidecar.InputError, match="must emit the features"):
            old.with_preprocessing(fewer)
        onehot = sidecar.TabularPreprocessor(
            columns=[
                *models.preprocessing_columns()[:-1],
                sidecar.CategoricalColumn(name="color", encoding="onehot"),
            ]
        )
        with pytest.raises(sidecar.InputError, match="must emit the features"):
            old.with_preprocessing(onehot)

    def test_the_same_version_is_refused(self, old: sidecar.Bundle) -> None:
        same = sidecar.TabularPreprocessor(
            columns=models.preprocessing_columns(weight={"unit": "kg", "input_unit": "lb"}),
            version=old.preprocessing_version,
        )
        with pytest.raises(sidecar.InputError, match="new version"):
            old.with_preprocessing(same)

    def test_an_explicit_new_version_is_kept(self, old: sidecar.Bundle) -> None:
        new = old.with_preprocessing(
            sidecar.TabularPreprocessor(
                columns=models.preprocessing_columns(weight={"unit": "kg", "input_unit": "lb"}),
                version="lb-fix-1",
            )
        )
        assert new.preprocessing_version == "lb-fix-1"
        assert new.info()["parts"]["preprocessing"]["version"] == "lb-fix-1"


# -- the baseline ----------------------------------------------------------------------------------


class TestBaseline:
    def test_auto_is_a_standardised_logistic_regression(self, bundle: sidecar.Bundle) -> None:
        est = bundle.baseline.estimator  # type: ignore[attr-defined]
        assert isinstance(est, Pipeline)
        assert isinstance(est[0], StandardScaler)
        assert isinstance(est[-1], LogisticRegression)
        assert bundle.baseline.classes == LABELS

    def test_auto_is_a_standardised_ridge_for_regression(self, reg_data: tuple[Any, ...]) -> None:
        X = _pre().fit(reg_data[0]).transform(reg_data[0])
        model = Ridge().fit(X, reg_data[1])
        for kind in ("auto", "linear"):
            est = _wrap(model, reg_data, task="regression", baseline=kind).baseline.estimator
            assert isinstance(est, Pipeline)
            assert isinstance(est[0], StandardScaler)
            assert isinstance(est[-1], Ridge)

    def test_tree(
        self,
        forest: RandomForestClassifier,
        cls_data: tuple[Any, ...],
        reg_data: tuple[Any, ...],
    ) -> None:
        tree = _wrap(forest, cls_data, baseline="tree").baseline.estimator
        assert isinstance(tree, DecisionTreeClassifier)
        assert tree.get_depth() <= 4
        X = _pre().fit(reg_data[0]).transform(reg_data[0])
        reg = _wrap(Ridge().fit(X, reg_data[1]), reg_data, task="regression", baseline="tree")
        assert isinstance(reg.baseline.estimator, DecisionTreeRegressor)
        assert reg.baseline.estimator.get_depth() <= 4

    def test_a_user_fitted_baseline_is_kept(
        self,
        forest: RandomForestClassifier,
        cls_data: tuple[Any, ...],
        X_train: np.ndarray,
        tmp_path: Path,
    ) -> None:
        mine = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X_train, cls_data[1])
        bundle = _wrap(forest, cls_data, baseline=mine)
        assert bundle.baseline.estimator is mine
        loaded = sidecar.load(bundle.save(tmp_path / "b"))
        pair = loaded.predict_shadow(cls_data[2], timeout=10)
        assert pair.baseline is not None
        np.testing.assert_array_equal(
            pair.baseline.predictions, mine.predict(loaded.preprocessing.transform(cls_data[2]))
        )

    def test_a_baseline_with_other_classes_is_refused(
        self, forest: RandomForestClassifier, cls_data: tuple[Any, ...], X_train: np.ndarray
    ) -> None:
        y = cls_data[1]
        keep = y != "fox"
        two = DecisionTreeClassifier(max_depth=2).fit(X_train[keep], y[keep])
        with pytest.raises(sidecar.InputError, match="baseline must know the classes"):
            _wrap(forest, cls_data, baseline=two)

    def test_an_unknown_kind_is_refused(
        self, forest: RandomForestClassifier, cls_data: tuple[Any, ...]
    ) -> None:
        with pytest.raises(sidecar.InputError, match="`baseline` must be"):
            _wrap(forest, cls_data, baseline="forest")

    def test_fitting_one_needs_train(
        self, forest: RandomForestClassifier, cls_data: tuple[Any, ...]
    ) -> None:
        train, _, ref, y_ref = cls_data
        with pytest.raises(sidecar.InputError, match="`train` must be given"):
            sidecar.wrap(
                forest,
                task="classification",
                preprocessing=_pre().fit(train),
                reference=(ref, y_ref),
            )


# -- the shadow --------------------------------------------------------------------------------


def _assert_advanced_intact(bundle: sidecar.Bundle, pair: Any, records: Records) -> None:
    expected = bundle.predict(records)
    np.testing.assert_array_equal(pair.advanced.predictions, expected.predictions)
    np.testing.assert_array_equal(pair.advanced.probabilities, expected.probabilities)


class TestShadow:
    def test_a_baseline_that_raises(
        self,
        forest: RandomForestClassifier,
        cls_data: tuple[Any, ...],
        X_train: np.ndarray,
    ) -> None:
        exploding = models.ExplodingLogisticRegression(max_iter=5000).fit(X_train, cls_data[1])
        bundle = _wrap(forest, cls_data, baseline=exploding)
        huge = [dict(r, weight=1e6) for r in cls_data[2][:5]]
        pair = bundle.predict_shadow(huge, timeout=10)
        assert pair.baseline is None
        assert pair.baseline_latency_ms is not None
        assert pair.baseline_error == "RuntimeError: baseline exploded on a huge value"
        assert len(pair.advanced) == 5
        _assert_advanced_intact(bundle, pair, huge)
        assert bundle.shadow.counters.errors == 1
        # The shadow thread survives and serves the next batch.
        ok = bundle.predict_shadow(cls_data[2], timeout=10)
        assert ok.baseline is not None and ok.baseline_error is None
        assert bundle.shadow.counters.errors == 1

    def test_a_baseline_that_raises_via_monkeypatch(
        self, bundle: sidecar.Bundle, cls_data: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def boom(X: np.ndarray) -> Any:
            raise ValueError("the baseline is broken")

        monkeypatch.setattr(bundle.baseline, "infer", boom)
        ref = cls_data[2]
        pair = bundle.predict_shadow(ref, timeout=10)
        assert pair.baseline is None
        assert pair.baseline_error is not None and "the baseline is broken" in pair.baseline_error
        _assert_advanced_intact(bundle, pair, ref)
        assert bundle.shadow.counters.errors == 1
        # predict(shadow=True) never raises either; the error is only counted.
        pred = bundle.predict(ref, shadow=True)
        assert len(pred) == len(ref)
        assert bundle.shadow.drain(5)
        assert bundle.shadow.counters.errors == 2
        assert bundle.stats.shadow_compared == 0

    def test_a_baseline_that_hangs(
        self, bundle: sidecar.Bundle, cls_data: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = bundle.baseline.infer
        monkeypatch.setattr(bundle.baseline, "infer", lambda X: (time.sleep(2), real(X))[1])
        ref = cls_data[2]
        start = time.perf_counter()
        pair = bundle.predict_shadow(ref, timeout=0.2)
        elapsed = time.perf_counter() - start
        assert elapsed < 1.0
        assert pair.baseline is None
        assert pair.baseline_error is not None and "timeout" in pair.baseline_error
        _assert_advanced_intact(bundle, pair, ref)

    def test_a_late_baseline_is_counted_as_a_timeout(
        self, saved: Path, cls_data: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bundle = sidecar.load(saved, shadow_timeout=0.1)
        release = threading.Event()
        real = bundle.baseline.infer
        monkeypatch.setattr(bundle.baseline, "infer", lambda X: (release.wait(5), real(X))[1])
        pair = bundle.predict_shadow(cls_data[2])
        assert pair.baseline is None
        assert pair.baseline_error is not None and pair.baseline_error.startswith("timeout")
        release.set()
        assert bundle.shadow.drain(5)
        counters = bundle.shadow.counters.snapshot()
        assert counters["completed"] == 1
        assert counters["timeouts"] == 1
        assert counters["errors"] == 0

    def test_disagreements_are_counted(
        self, bundle: sidecar.Bundle, cls_data: tuple[Any, ...]
    ) -> None:
        ref = cls_data[2]
        pred = bundle.predict(ref, shadow=True)
        assert bundle.shadow.drain(5)
        X = bundle.preprocessing.transform(ref)
        baseline = bundle.baseline.estimator.predict(X)  # type: ignore[attr-defined]
        assert bundle.stats.shadow_compared == len(ref)
        assert bundle.stats.shadow_disagreements == int((baseline != pred.predictions).sum())
        assert bundle.shadow.counters.completed == 1


# -- the reference -------------------------------------------------------------------------------

N_MISSING_TEMP = 5
NUMERIC_SKETCH_KEYS = (
    *("count", "missing", "mean", "std", "min", "max", "quantiles", "histogram"),
    *("n_negative", "n_zero", "integer", "max_abs"),
)
UNKNOWN_COLORS = ("purple",) * 6 + ("violet",) * 3


@pytest.fixture(scope="module")
def reference_data(cls_data: tuple[Any, ...]) -> tuple[Records, np.ndarray, Records, np.ndarray]:
    """Reference records with missing ``temp`` values and unknown colours."""
    train, y_train, ref, y_ref = cls_data
    ref = [dict(r) for r in ref]
    for r in ref[:N_MISSING_TEMP]:
        r["temp"] = None
    for r, color in zip(ref[10:], UNKNOWN_COLORS, strict=False):
        r["color"] = color
    return train, y_train, ref, y_ref


def _reference_pre() -> sidecar.TabularPreprocessor:
    return _pre(temp={"allow_missing": True})


@pytest.fixture(scope="module")
def ref_bundle(reference_data: tuple[Any, ...], X_train: np.ndarray) -> sidecar.Bundle:
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    model.fit(X_train, reference_data[1])
    return _wrap(model, reference_data, preprocessing=_reference_pre())


class TestReference:
    def test_summary(self, ref_bundle: sidecar.Bundle, reference_data: tuple[Any, ...]) -> None:
        summary = ref_bundle.reference.summary
        assert summary["format"] == "sidecar.reference/1"
        assert summary["task"] == "classification"
        assert summary["n"] == len(reference_data[2])
        assert summary["classes"] == list(LABELS)
        assert set(summary["sketches"]) == {"raw", "features"}
        assert set(summary["sketches"]["raw"]) == {
            *(n for n, _, _ in models.COLUMNS_NUMERIC),
            "color",
        }
        assert list(summary["sketches"]["features"]) == list(
            ref_bundle.preprocessing.feature_names_out
        )
        json.dumps(summary)  # plain JSON all the way down

    @pytest.mark.parametrize("name", [n for n, _, _ in models.COLUMNS_NUMERIC])
    def test_numeric_sketch(
        self, ref_bundle: sidecar.Bundle, reference_data: tuple[Any, ...], name: str
    ) -> None:
        ref = reference_data[2]
        sketch = ref_bundle.reference.summary["sketches"]["raw"][name]
        values = np.array([math.nan if r[name] is None else r[name] for r in ref], dtype=float)
        present = values[~np.isnan(values)]
        assert set(NUMERIC_SKETCH_KEYS) <= set(sketch)
        assert sketch["count"] == len(ref)
        assert sketch["missing"] == (N_MISSING_TEMP if name == "temp" else 0)
        assert len(sketch["quantiles"]) == 101
        assert sketch["quantiles"][0] == sketch["min"] == present.min()
        assert sketch["quantiles"][100] == sketch["max"] == present.max()
        assert sketch["quantiles"][50] == pytest.approx(np.median(present), abs=1e-12)
        assert np.all(np.diff(sketch["quantiles"]) >= 0)
        hist = sketch["histogram"]
        assert len(hist["edges"]) == 21 and len(hist["counts"]) == 20
        assert sum(hist["counts"]) == len(present)
        assert sketch["mean"] == pytest.approx(present.mean(), abs=1e-12)
        assert sketch["n_negative"] == int((present < 0).sum())
        assert sketch["integer"] is (name == "age")
        if name == "temp":
            assert sketch["n_negative"] > 0

    def test_categorical_sketch(
        self, ref_bundle: sidecar.Bundle, reference_data: tuple[Any, ...]
    ) -> None:
        ref = reference_data[2]
        sketch = ref_bundle.reference.summary["sketches"]["raw"]["color"]
        assert sketch["count"] == len(ref)
        assert sketch["missing"] == 0
        assert sketch["counts"] == dict(Counter(r["color"] for r in ref))
        assert sketch["counts"]["purple"] == 6 and sketch["counts"]["violet"] == 3
        assert sketch["other"] == 0
        assert sketch["unknown_rate"] == pytest.approx(len(UNKNOWN_COLORS) / len(ref), abs=1e-15)

    def test_unknowns_are_counted_when_predicting_too(
        self, reference_data: tuple[Any, ...], X_train: np.ndarray
    ) -> None:
        model = LogisticRegression(max_iter=5000).fit(X_train, reference_data[1])
        bundle = _wrap(model, reference_data, preprocessing=_reference_pre())
        bundle.predict(reference_data[2])
        assert bundle.stats.unknown["color"] == len(UNKNOWN_COLORS)
        assert bundle.stats.missing["temp"] == N_MISSING_TEMP
        assert bundle.stats.records == len(reference_data[2])

    def test_arrays(self, ref_bundle: sidecar.Bundle, reference_data: tuple[Any, ...]) -> None:
        arrays = ref_bundle.reference.arrays
        n = len(reference_data[2])
        for model in ("advanced", "baseline"):
            for kind in ("prediction", "loss", "error"):
                assert arrays[f"{model}:{kind}"].shape == (n,), (model, kind)
            assert arrays[f"{model}:probabilities"].shape == (n, len(LABELS))
        np.testing.assert_array_equal(arrays["y"], reference_data[3])
        assert arrays["features"].shape == (n, len(ref_bundle.preprocessing.feature_names_out))
        assert "raw:color" not in arrays
        assert int(np.isnan(arrays["raw:temp"]).sum()) == N_MISSING_TEMP
        np.testing.assert_array_equal(
            arrays["advanced:probabilities"], ref_bundle.predict_proba(reference_data[2])
        )

    @pytest.mark.parametrize("model", ["advanced", "baseline"])
    def test_log_loss_matches_sklearn(
        self, ref_bundle: sidecar.Bundle, reference_data: tuple[Any, ...], model: str
    ) -> None:
        arrays = ref_bundle.reference.arrays
        y = reference_data[3]
        proba = arrays[f"{model}:probabilities"]
        expected = log_loss(y, proba, labels=list(LABELS))
        assert abs(arrays[f"{model}:loss"].mean() - expected) < 1e-9
        metrics = ref_bundle.reference.summary["metrics"][model]
        assert abs(metrics["mean_loss"] - expected) < 1e-9
        errors = (arrays[f"{model}:prediction"] != y).astype(float)
        np.testing.assert_array_equal(arrays[f"{model}:error"], errors)
        assert metrics["mean_error"] == pytest.approx(errors.mean(), abs=1e-12)

    def test_regression_losses(self, reg_data: tuple[Any, ...]) -> None:
        X = _pre().fit(reg_data[0]).transform(reg_data[0])
        bundle = _wrap(Ridge().fit(X, reg_data[1]), reg_data, task="regression")
        arrays, y = bundle.reference.arrays, reg_data[3]
        for model in ("advanced", "baseline"):
            pred = arrays[f"{model}:prediction"]
            assert f"{model}:probabilities" not in arrays
            np.testing.assert_allclose(arrays[f"{model}:loss"], (pred - y) ** 2, rtol=1e-12)
            np.testing.assert_allclose(arrays[f"{model}:error"], np.abs(pred - y), rtol=1e-12)
            assert abs(arrays[f"{model}:loss"].mean() - mean_squared_error(y, pred)) < 1e-9
        assert bundle.reference.summary["classes"] is None

    def test_arrays_reload_without_pickle(self, ref_bundle: sidecar.Bundle, tmp_path: Path) -> None:
        path = ref_bundle.save(tmp_path / "b")
        with np.load(path / "reference" / "arrays.npz", allow_pickle=False) as data:
            assert set(data.files) == set(ref_bundle.reference.arrays)
            for key in data.files:
                np.testing.assert_array_equal(data[key], ref_bundle.reference.arrays[key], key)
                assert data[key].dtype != object, key
        loaded = sidecar.load(path)
        assert loaded.reference.summary == ref_bundle.reference.summary
        assert set(loaded.reference.arrays) == set(ref_bundle.reference.arrays)

    def test_ignored_extra_fields_do_not_break_the_reference(
        self, forest: RandomForestClassifier, cls_data: tuple[Any, ...]
    ) -> None:
        train, y_train, ref, y_ref = cls_data
        ids = [dict(r, patient_id=f"p{i}") for i, r in enumerate(ref)]
        pre = sidecar.TabularPreprocessor(
            columns=models.preprocessing_columns(), extra_fields="ignore"
        )
        bundle = sidecar.wrap(
            forest,
            task="classification",
            preprocessing=pre,
            train=(train, y_train),
            reference=(ids, y_ref),
        )
        assert "weight" in bundle.reference.summary["sketches"]["raw"]
