"""fine_tune_head on a small ResNet-style network meeting an input shift.

The champion learns scikit-learn's upright 8x8 digits; the recent data are
other digits turned by ~30 degrees with a duller contrast (see
``tests/adapters/resnets.py``). Every network is trained once per module, on
one CPU thread, with fixed seeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sidecar  # noqa: E402
from adapters._base import MIN_ROWS  # noqa: E402
from adapters._finetune import fine_tune_head  # noqa: E402
from adapters._finetune_solver import HEAD_L2_GRID  # noqa: E402
from sidecar.runtimes import as_predictor  # noqa: E402
from tests.adapters import resnets  # noqa: E402

RESNET = "tests.adapters.resnets:make_resnet"
TIMM = "tests.adapters.resnets:make_timm_resnet"
HEADLESS = "tests.adapters.resnets:make_headless_net"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shift() -> resnets.DigitsShift:
    return resnets.digits_shift(0)


@pytest.fixture(scope="module")
def recent(shift: resnets.DigitsShift) -> sidecar.RecentData:
    return shift.recent_data()


@pytest.fixture(scope="module")
def champion(shift: resnets.DigitsShift) -> sidecar.Bundle:
    return resnets.digits_bundle(shift, RESNET)


@pytest.fixture(scope="module")
def tuned(champion: sidecar.Bundle, recent: sidecar.RecentData) -> Any:
    return fine_tune_head(champion, recent)


def accuracy(bundle: sidecar.Bundle, part: tuple[np.ndarray, np.ndarray]) -> float:
    X, y = part
    return float(np.mean(bundle.advanced.infer(X).predictions == y))


def state(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def count_forwards(cls: type) -> Any:
    """A context manager counting forward calls of modules of ``cls``, anywhere."""
    from contextlib import contextmanager

    @contextmanager
    def counting() -> Iterator[list[int]]:
        calls = [0]

        def hook(module: Any, args: Any, output: Any) -> None:
            if isinstance(module, cls):
                calls[0] += 1

        handle = torch.nn.modules.module.register_module_forward_hook(hook)
        try:
            yield calls
        finally:
            handle.remove()

    return counting()


# --------------------------------------------------------------------------- the repair


def test_candidate_beats_the_champion_on_shifted_data(
    champion: sidecar.Bundle, tuned: Any, shift: resnets.DigitsShift
) -> None:
    report = tuned.report
    assert report.strategy == "fine-tune-head"
    assert report.materially_better, report.to_dict()
    # images no adapter saw, shifted like the recent ones
    before, after = accuracy(champion, shift.test), accuracy(tuned.candidate, shift.test)
    assert before < 0.5 < after - 0.2, (before, after)
    assert accuracy(champion, shift.reference) > 0.9  # it was a good model before the shift
    candidate = tuned.candidate
    assert candidate.parent == champion.version != candidate.version
    assert candidate.advanced.classes == champion.advanced.classes
    assert candidate.advanced.factory == RESNET
    assert candidate.advanced.factory_kwargs == champion.advanced.factory_kwargs
    assert candidate.preprocessing_version == champion.preprocessing_version


def test_report_says_what_was_trained(tuned: Any) -> None:
    report = tuned.report
    changes = report.changes
    assert changes["head"] == "fc" and changes["head_found_by"] == "torchvision fc"
    assert changes["trainable"] == ["fc"]
    assert changes["feature_cache"] is True and changes["backbone_passes"] == 1
    # a linear head on cached features is solved as logistic regression
    assert changes["solver"] == "lbfgs" and changes["l2"] in HEAD_L2_GRID
    assert changes["refitted_on_validation"] is True and changes["evaluations"] > 0
    assert changes["device"] == "cpu"
    assert "features cached" in report.summary and "BatchNorm in eval mode" in report.summary
    assert "L-BFGS" in report.summary and "refitted with that penalty" in report.summary
    assert [row["l2"] for row in report.search] == list(HEAD_L2_GRID)
    chosen = [row for row in report.search if row["chosen"]]
    assert [row["l2"] for row in chosen] == [changes["l2"]]
    assert chosen[0]["val_loss"] == min(row["val_loss"] for row in report.search)
    assert 0 < report.train_time_s <= report.wall_time_s
    assert report.to_dict()["what_changed"]["parameters"]["feature_cache"] is True


def test_only_the_head_moves_and_batchnorm_statistics_stay_bit_identical(
    champion: sidecar.Bundle, tuned: Any
) -> None:
    before = champion.advanced.module.state_dict()
    after = tuned.candidate.advanced.module.state_dict()
    assert changed(before, after) == {"fc.weight", "fc.bias"}
    norms = [
        n for n, m in champion.advanced.module.named_modules() if "BatchNorm" in type(m).__name__
    ]
    assert len(norms) == 9
    for name in norms:
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            key = f"{name}.{buffer}"
            assert torch.equal(before[key], after[key]), key


def test_backbone_features_are_computed_once_not_per_epoch(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    calls = {}
    for epochs in (3, 12):
        with count_forwards(resnets.BasicBlock) as counted:
            result = fine_tune_head(champion, recent, epochs=epochs, patience=100, solver="adam")
        assert result.report.changes["epochs_run"] == epochs
        calls[epochs] = counted[0]
    assert calls[3] == calls[12]
    # one pass over train + validation in batches of 128, plus the candidate's
    # holdout inference (reference and report), each through 3 blocks
    n_train, n_val = result.report.n_train, result.report.n_validation
    passes = -(-n_train // 128) + -(-n_val // 128)
    assert calls[3] <= 3 * (passes + 4)


@pytest.mark.parametrize("l2", [1e-1, 1e-3])
def test_the_head_solver_reaches_the_logistic_regression_optimum(l2: float) -> None:
    """Cross-entropy + l2 * ||W||^2 is scikit-learn's multinomial objective with C = 1/(2 n l2)."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from adapters._finetune_solver import lbfgs

    X, y = make_classification(
        n_samples=300, n_features=12, n_informative=6, n_classes=4, random_state=3
    )
    X = (X - X.mean(0)) / X.std(0)
    x, t = torch.from_numpy(X), torch.from_numpy(y)  # float64: the comparison is exact
    start = torch.zeros(4, 12, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    weight, bias, evaluations = lbfgs(*start, x, t, l2, max_iter=2000, tolerance=1e-9)
    assert bias is not None and evaluations > 1
    reference = LogisticRegression(C=1 / (2 * len(X) * l2), tol=1e-10, max_iter=10_000).fit(X, y)

    def objective(w: Any, b: Any) -> float:
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, t) + l2 * (w**2).sum()
        return float(loss)

    ours = objective(weight, bias)
    theirs = objective(torch.from_numpy(reference.coef_), torch.from_numpy(reference.intercept_))
    assert ours <= theirs + 1e-8, (ours, theirs)  # the same minimum, to float64 precision
    proba = torch.softmax(x @ weight.T + bias, dim=1).numpy()
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=1e-4)


def test_refit_on_validation_can_be_turned_off_and_adam_epochs_asked_for(
    champion: sidecar.Bundle, recent: sidecar.RecentData, tuned: Any, shift: resnets.DigitsShift
) -> None:
    train_only = fine_tune_head(champion, recent, refit=False)
    changes = train_only.report.changes
    assert changes["solver"] == "lbfgs" and changes["refitted_on_validation"] is False
    assert "refitted" not in train_only.report.summary
    # the refit moves the head: it has seen the validation rows too
    assert changed(
        state(train_only.candidate.advanced.module), state(tuned.candidate.advanced.module)
    ) == {"fc.weight", "fc.bias"}
    adam = fine_tune_head(champion, recent, solver="adam")
    changes = adam.report.changes
    assert changes["solver"] == "adam" and changes["refitted_on_validation"] is True
    assert 1 <= changes["best_epoch"] <= changes["epochs_run"] <= 30 and changes["lr"] == 1e-2
    assert f"refitted for {changes['best_epoch']} epoch(s)" in adam.report.summary
    chosen = [row["epoch"] for row in adam.report.search if row["chosen"]]
    assert chosen == [changes["best_epoch"]]
    for result in (train_only, adam):
        assert accuracy(result.candidate, shift.test) > accuracy(champion, shift.test) + 0.2


def test_unfreezing_the_last_block_trains_it_and_its_batchnorm(
    champion: sidecar.Bundle, recent: sidecar.RecentData, shift: resnets.DigitsShift
) -> None:
    with count_forwards(resnets.BasicBlock) as counted:
        short = fine_tune_head(champion, recent, unfreeze_blocks=1, epochs=2, patience=100)
    with count_forwards(resnets.BasicBlock) as counted_long:
        result = fine_tune_head(champion, recent, unfreeze_blocks=1, epochs=6, patience=100)
    assert counted_long[0] > counted[0]  # no cache: every epoch runs the network
    changes = result.report.changes
    assert changes["trainable"] == ["fc", "layer3.0"] and changes["feature_cache"] is False
    assert changes["lr"] == 1e-3
    moved = changed(champion.advanced.module.state_dict(), state(result.candidate.advanced.module))
    assert {k.split(".")[0] for k in moved} == {"fc", "layer3"}
    assert "layer3.0.bn1.running_mean" in moved  # trainable BatchNorm learns the new statistics
    assert accuracy(result.candidate, shift.test) > accuracy(champion, shift.test) + 0.2
    assert short.candidate.version != result.candidate.version


def test_a_timm_style_head_is_found_through_get_classifier(
    shift: resnets.DigitsShift, recent: sidecar.RecentData
) -> None:
    champion = resnets.digits_bundle(shift, TIMM, epochs=8)
    result = fine_tune_head(champion, recent)
    changes = result.report.changes
    assert changes["head"] == "head_fc" and changes["head_found_by"] == "timm get_classifier()"
    assert changes["feature_cache"] is True
    assert accuracy(result.candidate, shift.test) > accuracy(champion, shift.test) + 0.2
    moved = changed(champion.advanced.module.state_dict(), state(result.candidate.advanced.module))
    assert moved == {"head_fc.weight", "head_fc.bias"}


@pytest.fixture(scope="module")
def headless(shift: resnets.DigitsShift) -> sidecar.Bundle:
    return resnets.digits_bundle(shift, HEADLESS, epochs=8)


def test_a_model_without_a_recognisable_head_is_refused(
    headless: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    with pytest.raises(
        sidecar.AdapterError, match=r"cannot find the head of HeadlessNet: looked for .*`fc`"
    ):
        fine_tune_head(headless, recent)
    with pytest.raises(
        sidecar.AdapterError, match=r"`head` must name a submodule .*'classifier\.7'"
    ):
        fine_tune_head(headless, recent, head="classifier.7")
    with pytest.raises(sidecar.AdapterError, match=r"without parameters"):
        fine_tune_head(headless, recent, head="classifier.0")


def test_a_head_named_by_the_user(
    headless: sidecar.Bundle, recent: sidecar.RecentData, shift: resnets.DigitsShift
) -> None:
    result = fine_tune_head(headless, recent, head="classifier.1")
    changes = result.report.changes
    assert changes["head"] == "classifier.1" and changes["head_found_by"] == "named"
    assert changes["feature_cache"] is True
    assert accuracy(result.candidate, shift.test) > accuracy(headless, shift.test) + 0.2
    moved = changed(headless.advanced.module.state_dict(), state(result.candidate.advanced.module))
    assert moved == {"classifier.1.weight", "classifier.1.bias"}


def test_a_softmax_after_the_head_trains_through_the_network_without_a_cache(
    champion: sidecar.Bundle, recent: sidecar.RecentData, shift: resnets.DigitsShift
) -> None:
    module = resnets.make_softmax_resnet()
    module.load_state_dict(champion.advanced.module.state_dict())
    X_ref, y_ref = shift.reference
    bundle = sidecar.wrap(
        module,
        task="classification",
        preprocessing=champion.preprocessing,
        reference=(resnets.digits_records(X_ref), y_ref),
        baseline=champion.baseline.estimator,
        framework="torch",
        model_options={
            "factory": "tests.adapters.resnets:make_softmax_resnet",
            "output": "probabilities",
        },
    )
    result = fine_tune_head(bundle, recent, epochs=8)
    changes = result.report.changes
    assert changes["feature_cache"] is False and changes["trainable"] == ["fc"]
    assert any("transforms the head's output" in note for note in result.report.notes)
    assert result.candidate.advanced.output == "probabilities"
    moved = changed(bundle.advanced.module.state_dict(), state(result.candidate.advanced.module))
    assert moved == {"fc.weight", "fc.bias"}
    assert accuracy(result.candidate, shift.test) > accuracy(bundle, shift.test) + 0.2


# --------------------------------------------------------------------------- new classes


def _relabel(recent: sidecar.RecentData, how: str) -> sidecar.RecentData:
    labels = np.asarray(recent.labels).copy()
    keep = np.ones(len(labels), dtype=bool)
    if how == "fewer":  # nines no longer come: a nine-less label set
        keep = labels != 9
    else:  # half the nines become a class of their own
        nines = np.flatnonzero(labels == 9)
        labels[nines[::2]] = 10
    return sidecar.RecentData(
        records=[r for r, k in zip(recent.records, keep, strict=True) if k],
        labels=labels[keep],
        ts=np.asarray(recent.ts)[keep],
    )


@pytest.mark.parametrize(
    ("how", "classes"),
    [("fewer", list(range(9))), ("more", [10, *range(10)])],
    ids=["nine-classes", "eleven-classes"],
)
def test_new_classes_replace_the_head_and_the_candidate_says_so(
    champion: sidecar.Bundle,
    recent: sidecar.RecentData,
    tmp_path: Path,
    how: str,
    classes: list[int],
) -> None:
    result = fine_tune_head(champion, _relabel(recent, how), new_classes=classes)
    candidate, report = result.candidate, result.report
    expected = sorted(classes)
    assert list(candidate.advanced.classes) == expected
    assert candidate.info()["classes"] == expected
    assert candidate.advanced.module.fc.out_features == len(expected)
    assert candidate.advanced.factory_kwargs == {"n_classes": len(expected)}
    assert report.changes["classes"] == {"from": list(range(10)), "to": expected}
    assert f"classes changed from {list(range(10))} to {expected}" in report.summary
    assert any("baseline" in note and "refitted" in note for note in report.notes)
    assert any("union of their classes" in note for note in report.notes)
    assert list(candidate.baseline.classes) == expected
    assert candidate.parent == champion.version
    assert candidate.preprocessing_version == champion.preprocessing_version
    assert candidate.plan.sha256 == champion.plan.sha256
    # kept classes start from the champion's rows; the candidate round-trips through disk
    loaded = sidecar.load(
        candidate.save(tmp_path / "candidate"), trusted=[candidate.advanced.factory]
    )
    X = np.asarray(resnets.digits_shift(0).test[0][:50])
    assert np.array_equal(
        loaded.advanced.infer(X).predictions, candidate.advanced.infer(X).predictions
    )
    if how == "fewer":
        assert report.materially_better, report.to_dict()


def test_new_classes_need_a_factory_that_takes_the_number_of_classes(
    shift: resnets.DigitsShift, recent: sidecar.RecentData
) -> None:
    bundle = resnets.digits_bundle(shift, "tests.adapters.resnets:make_fixed_resnet", epochs=1)
    with pytest.raises(
        sidecar.AdapterError, match=r"takes the number of classes as n_classes or num_classes"
    ):
        fine_tune_head(bundle, _relabel(recent, "fewer"), new_classes=list(range(9)))


def test_new_classes_must_cover_the_recent_labels(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    with pytest.raises(
        sidecar.AdapterError, match=r"class\(es\) \[9\] that are not in `new_classes`"
    ):
        fine_tune_head(champion, recent, new_classes=list(range(9)))
    with pytest.raises(sidecar.AdapterError, match=r"at least 2 distinct class labels"):
        fine_tune_head(champion, recent, new_classes=[1, 1])


# --------------------------------------------------------------------------- bad input


def test_a_class_missing_from_the_recent_data_is_an_error(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    labels = np.asarray(recent.labels)
    keep = labels != 3
    without_threes = sidecar.RecentData(
        records=[r for r, k in zip(recent.records, keep, strict=True) if k],
        labels=labels[keep],
        ts=np.asarray(recent.ts)[keep],
    )
    with pytest.raises(sidecar.AdapterError, match=r"no example of class\(es\) \[3\]"):
        fine_tune_head(champion, without_threes)


def test_too_few_recent_rows_are_an_error(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    n = MIN_ROWS - 1
    few = sidecar.RecentData(list(recent.records[:n]), recent.labels[:n], recent.ts[:n])
    with pytest.raises(sidecar.AdapterError, match=rf"at least {MIN_ROWS} labelled recent rows"):
        fine_tune_head(champion, few)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unfreeze_blocks": 4}, r"`unfreeze_blocks` must be at most .* \(3: .*got 4"),
        ({"unfreeze_blocks": -1}, r"`unfreeze_blocks` must be an integer >= 0; got -1"),
        ({"epochs": 0}, r"`epochs` must be an integer >= 1; got 0"),
        ({"lr": 0.0}, r"`lr` must be a positive float"),
        ({"batch_size": 1.5}, r"`batch_size` must be an integer >= 1; got 1.5"),
        ({"device": "tpu9"}, r"`device` must be a torch device"),
        ({"solver": "sgd"}, r"`solver` must be one of \['auto', 'adam'\]; got 'sgd'"),
        ({"refit": "yes"}, r"`refit` must be True or False; got 'yes'"),
    ],
    ids=[
        "too-many-blocks",
        "negative-blocks",
        "no-epochs",
        "zero-lr",
        "float-batch",
        "device",
        "solver",
        "refit",
    ],
)
def test_bad_options_are_refused(
    champion: sidecar.Bundle, recent: sidecar.RecentData, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(sidecar.AdapterError, match=message):
        fine_tune_head(champion, recent, **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_without_cuda_is_an_error(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    with pytest.raises(sidecar.AdapterError, match=r"CUDA is not available here"):
        fine_tune_head(champion, recent, device="cuda")


def test_a_model_that_is_not_torch_is_refused(recent: sidecar.RecentData) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = resnets.digits_shift(0).reference
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=c) for c in resnets.pixel_columns()]
    )
    records = resnets.digits_records(X)
    bundle = sidecar.wrap(
        LogisticRegression(max_iter=500).fit(X, y),
        task="classification",
        preprocessing=pre,
        reference=(records, y),
        train=(records, y),
    )
    with pytest.raises(sidecar.AdapterError, match=r"supports PyTorch networks.*sklearn model"):
        fine_tune_head(bundle, recent)


# --------------------------------------------------------------------------- the champion


def test_nothing_of_the_champion_is_changed(
    shift: resnets.DigitsShift, recent: sidecar.RecentData, tmp_path: Path
) -> None:
    champion = resnets.digits_bundle(shift, RESNET, epochs=2)
    path = champion.save(tmp_path / "champion")
    files = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    weights = state(champion.advanced.module)
    grads = [p.requires_grad for p in champion.advanced.module.parameters()]
    version = champion.version
    fine_tune_head(champion, recent, epochs=2)
    fine_tune_head(champion, recent, epochs=2, unfreeze_blocks=1)
    fine_tune_head(champion, _relabel(recent, "fewer"), epochs=2, new_classes=list(range(9)))
    assert not changed(weights, champion.advanced.module.state_dict())
    assert [p.requires_grad for p in champion.advanced.module.parameters()] == grads
    assert champion.advanced.module.training is False
    assert champion.version == version and champion.advanced.classes == tuple(range(10))
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == files
    assert sidecar.load(path, trusted=[champion.advanced.factory]).version == version


def test_same_seed_same_candidate_and_progress_is_reported(
    champion: sidecar.Bundle, recent: sidecar.RecentData, tuned: Any
) -> None:
    steps: list[tuple[str, float]] = []
    again = fine_tune_head(champion, recent, progress=lambda s, f: steps.append((s, f)))
    assert again.candidate.version == tuned.candidate.version
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and steps[-1] == ("done", 1.0)
    assert any(s.startswith("L2 penalty ") for s, _ in steps)


def test_torchvision_resnet18_if_installed(
    shift: resnets.DigitsShift, recent: sidecar.RecentData
) -> None:
    pytest.importorskip("torchvision")
    champion = resnets.digits_bundle(
        shift, "tests.adapters.resnets:make_torchvision_resnet18", epochs=4
    )
    result = fine_tune_head(champion, recent, unfreeze_blocks=1)
    changes = result.report.changes
    assert changes["head"] == "fc" and changes["trainable"] == ["fc", "layer4.1"]
    assert result.report.improved


def test_a_frozen_config_fine_tunes_as_the_keywords_do(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    import dataclasses

    from adapters._finetune import FineTuneConfig, fine_tune

    config = FineTuneConfig(solver="adam", refit=False, epochs=3, seed=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4  # type: ignore[misc]
    by_config = fine_tune(champion, recent, config)
    by_keywords = fine_tune_head(champion, recent, solver="adam", refit=False, epochs=3, seed=2)
    assert by_config.candidate.version == by_keywords.candidate.version
    assert by_config.report.changes == by_keywords.report.changes
    assert by_config.report.changes["epochs_run"] == 3


def test_new_classes_replace_a_baseline_that_is_not_scikit_learn(
    champion: sidecar.Bundle, recent: sidecar.RecentData
) -> None:
    # a torch baseline cannot be cloned and refitted; with the classes changed it
    # cannot be kept either, so fine-tuning fits the logistic fallback on the same rows
    torch.manual_seed(0)
    linear = as_predictor(
        torch.nn.Linear(64, 10),
        task="classification",
        classes=list(range(10)),
        factory="torch.nn:Linear",
        factory_kwargs={"in_features": 64, "out_features": 10},
    )
    odd = champion.with_models(baseline=linear)
    assert odd.baseline.framework == "torch"
    result = fine_tune_head(odd, _relabel(recent, "fewer"), new_classes=list(range(9)))
    baseline = result.candidate.baseline
    assert baseline.framework == "sklearn"
    steps = [type(step).__name__ for _, step in baseline.estimator.steps]
    assert steps == ["StandardScaler", "LogisticRegression"]
    assert list(baseline.classes) == list(range(9))
    assert any(
        "a torch baseline cannot be refitted here, so it was replaced by a "
        "StandardScaler + LogisticRegression fitted on" in note
        for note in result.report.notes
    ), result.report.notes
