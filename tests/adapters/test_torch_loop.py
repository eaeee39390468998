"""The adapters' one torch training loop (adapters/_torch_loop.py)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adapters._torch_loop import loss_function, tensor, train_epochs, validate  # noqa: E402


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    )


def _train(net: torch.nn.Module, rows: int, seed: int) -> None:
    x = tensor(np.random.default_rng(0).normal(size=(rows, 3)), np.float32)
    y = tensor(np.arange(rows) % 2, np.int64)
    train_epochs(
        net,
        [net],
        torch.optim.SGD(net.parameters(), lr=0.1),
        (x, y),
        loss_function("logits"),
        batch_size=2,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        epochs=3,
    )


def test_a_one_row_batch_is_skipped_when_batchnorm_trains() -> None:
    net = _net()
    _train(net, 5, seed=0)  # batches of 2, 2 and 1 row: BatchNorm cannot train on the last
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        net.train()(torch.zeros(1, 3))


def test_the_order_of_rows_follows_the_generator_alone() -> None:
    a, b, c = _net(), _net(), _net()
    _train(a, 8, seed=1)
    torch.manual_seed(123)  # the global random state does not matter
    _train(b, 8, seed=1)
    _train(c, 8, seed=2)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    same = [torch.equal(p, q) for p, q in pairs]
    assert all(same)
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize(
    ("output", "task"),
    [("logits", "classification"), ("probabilities", "classification"), ("logits", "regression")],
    ids=["logits", "probabilities", "regression"],
)
def test_the_loss_matches_its_definition(output: str, task: str) -> None:
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(6, 3, generator=gen)
    if task == "regression":
        y = torch.randn(6, generator=gen)
        expected = float(((out[:, 0] - y) ** 2).mean())
    else:
        y = torch.tensor([0, 1, 2, 0, 1, 2])
        if output == "probabilities":
            out = torch.softmax(out, dim=1)
            expected = float(-out[torch.arange(6), y].log().mean())
        else:
            expected = float(-torch.log_softmax(out, dim=1)[torch.arange(6), y].mean())
    assert float(loss_function(output, task)(out, y)) == pytest.approx(expected, rel=1e-6)


def test_validate_gives_the_mean_loss_and_the_accuracy() -> None:
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    loss, accuracy = validate(
        torch.nn.Identity(), (out, y), loss_function("logits"), 2, torch.device("cpu")
    )
    assert accuracy == pytest.approx(2 / 3)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)))
