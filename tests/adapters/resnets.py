"""Small ResNet-style networks for the fine-tuning tests, and the data they see.

Every network takes the flat pixel matrix the bundle's preprocessing emits
(``(n, side * side)``, raw 0..16 grey levels for scikit-learn's 8x8 digits)
and reshapes it to ``(n, 1, side, side)`` itself. The factories are
module-level so that a bundle can save a network as a state dict plus
``"tests.adapters.resnets:make_resnet"`` and rebuild it on load.

- :func:`make_resnet`: torchvision's layout (``conv1``/``bn1``, ``layer1..``
  of ``BasicBlock``, global pooling, an ``fc`` head).
- :func:`make_timm_resnet`: the same trunk with timm's interface
  (``get_classifier()``, ``reset_classifier()``, ``forward_features()``,
  ``forward_head()``) and its head named ``head_fc``, so only that interface
  finds it.
- :func:`make_headless_net`: no ``fc`` and no timm interface; its last layer is
  ``classifier.1``, which a user has to name.
- :func:`make_resnet50`: ResNet-50's shape (``Bottleneck`` blocks [3, 4, 6, 3],
  3x224x224 input) for the GPU benchmark, without torchvision.

torch is needed to import this module; without it (torch is optional) the
import skips, so pytest's doctest collection skips the module too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "DigitsShift",
    "digits_bundle",
    "digits_records",
    "digits_shift",
    "make_fixed_resnet",
    "make_headless_net",
    "make_resnet",
    "make_resnet50",
    "make_softmax_resnet",
    "make_timm_resnet",
    "make_torchvision_resnet18",
    "pixel_columns",
    "shift_images",
    "train_network",
]

SIDE = 8
PIXELS = SIDE * SIDE


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with BatchNorm: ResNet-50's block."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, width, 1, stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stages(
    block: type[BasicBlock | Bottleneck], inplanes: int, widths: Any, depths: Any
) -> tuple[list[nn.Sequential], int]:
    stages = []
    for i, (planes, depth) in enumerate(zip(widths, depths, strict=True)):
        stride = 1 if i == 0 else 2
        layers: list[nn.Module] = []
        for j in range(depth):
            layers.append(block(inplanes, planes, stride if j == 0 else 1))
            inplanes = planes * block.expansion
        stages.append(nn.Sequential(*layers))
    return stages, inplanes


class SmallResNet(nn.Module):
    """torchvision's ResNet layout at digit scale: stem, stages of blocks, pool, ``fc``."""

    def __init__(
        self,
        n_classes: int = 10,
        widths: tuple[int, ...] = (32, 64, 128),
        depths: tuple[int, ...] = (1, 1, 1),
        side: int = SIDE,
        in_channels: int = 1,
        block: type[BasicBlock | Bottleneck] = BasicBlock,
        scale: float = 1.0 / 16.0,
        imagenet_stem: bool = False,
    ) -> None:
        super().__init__()
        self.side, self.in_channels, self.scale = side, in_channels, scale
        stem_width = widths[0]
        if imagenet_stem:  # 7x7/2 convolution, then a 3x3/2 max pool
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        stages, features = _stages(block, stem_width, widths, depths)
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.n_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(features, n_classes)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, self.in_channels, self.side, self.side) * self.scale
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.trunk(x)), 1))


class TimmStyleResNet(nn.Module):
    """The same trunk behind timm's classifier interface; the head is ``head_fc``."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = SmallResNet(n_classes=1, widths=widths)
        del self.body.fc
        self.num_features = widths[-1]
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_fc: nn.Module = nn.Linear(self.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head_fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head_fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.trunk(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.head_fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class HeadlessNet(nn.Module):
    """A ResNet-style trunk whose classifier hides in ``classifier`` (dropout, linear)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.body = SmallResNet(n_classes=1)
        del self.body.fc
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(128, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.body.trunk(x)), 1))


def make_resnet(
    n_classes: int = 10,
    widths: tuple[int, ...] = (32, 64, 128),
    depths: tuple[int, ...] = (1, 1, 1),
) -> SmallResNet:
    """A torchvision-style ResNet for flat 8x8 digits, with an ``fc`` head."""
    return SmallResNet(n_classes=n_classes, widths=tuple(widths), depths=tuple(depths))


def make_timm_resnet(num_classes: int = 10) -> TimmStyleResNet:
    """A timm-style ResNet for flat 8x8 digits (``get_classifier`` and friends)."""
    return TimmStyleResNet(num_classes=num_classes)


def make_headless_net(n_classes: int = 10) -> HeadlessNet:
    """A ResNet-style net for flat 8x8 digits whose head only a user can name."""
    return HeadlessNet(n_classes=n_classes)


class SoftmaxResNet(SmallResNet):
    """:class:`SmallResNet` emitting probabilities: a softmax after its ``fc`` head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(x), dim=1)


def make_softmax_resnet(n_classes: int = 10) -> SoftmaxResNet:
    """:func:`make_resnet` with a softmax after the head (wrap it with output='probabilities')."""
    return SoftmaxResNet(n_classes=n_classes)


def make_fixed_resnet() -> SmallResNet:
    """:func:`make_resnet` with ten classes and no argument to change that."""
    return make_resnet()


def make_torchvision_resnet18(n_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 for flat 8x8 digits: a 1-channel 3x3 stem and no max pool.

    ``resnet18(weights=None)`` is ``ResNet(BasicBlock, [2, 2, 2, 2])``; this is
    that class with a ``forward`` that reshapes the pixel matrix first. Needs
    torchvision, which is optional: only the test that uses it calls this.
    """
    from torchvision.models.resnet import BasicBlock as TorchvisionBlock
    from torchvision.models.resnet import ResNet

    class DigitsResNet18(ResNet):  # type: ignore[misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.reshape(-1, 1, SIDE, SIDE) / 16.0)

    net = DigitsResNet18(TorchvisionBlock, [2, 2, 2, 2], num_classes=n_classes)
    net.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net


def make_resnet50(n_classes: int = 1000, side: int = 224) -> SmallResNet:
    """ResNet-50's shape: 7x7/2 stem and max pool, Bottleneck stages [3, 4, 6, 3], an ``fc``.

    It takes a flat ``(n, 3 * side * side)`` matrix (or images) of values in
    [0, 1]; ~25.6M parameters and ~4.1 GFLOPs per 224x224 image, as torchvision's.
    """
    return SmallResNet(
        n_classes=n_classes,
        widths=(64, 128, 256, 512),
        depths=(3, 4, 6, 3),
        side=side,
        in_channels=3,
        block=Bottleneck,
        scale=1.0,
        imagenet_stem=True,
    )


# -- data ---------------------------------------------------------------------


def pixel_columns() -> list[str]:
    """The raw field names of the 64 pixels, row by row."""
    return [f"p{i:02d}" for i in range(PIXELS)]


def digits_records(images: np.ndarray) -> list[dict[str, float]]:
    """One raw record per flat 8x8 image: ``{"p00": ..., "p63": ...}``."""
    names = pixel_columns()
    return [dict(zip(names, map(float, row), strict=True)) for row in images]


def shift_images(
    images: np.ndarray,
    *,
    angle: float = 30.0,
    jitter: float = 5.0,
    contrast: float = 0.6,
    seed: int = 0,
) -> np.ndarray:
    """Rotate each 8x8 image by ``angle`` +- ``jitter`` degrees and scale its contrast.

    The input shift of the tests: a camera turned and a duller, brighter
    sensor (``contrast`` < 1 squeezes the grey levels towards a lifted black).
    Values stay in the 0..16 range of the originals.
    """
    from scipy.ndimage import rotate

    rng = np.random.default_rng(seed)
    out = np.empty_like(images, dtype=np.float64)
    for i, flat in enumerate(images):
        turned = rotate(
            flat.reshape(SIDE, SIDE), angle + rng.uniform(-jitter, jitter), reshape=False, order=1
        )
        out[i] = np.clip(turned, 0.0, 16.0).ravel()
    return np.clip(out * contrast + 16.0 * (1 - contrast) * 0.25, 0.0, 16.0)


def train_network(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 15,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train every layer of ``module`` on ``(X, y)`` with Adam; returns it in eval mode."""
    torch.manual_seed(seed)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            opt.zero_grad()
            loss_fn(module(Xt[idx]), yt[idx]).backward()
            opt.step()
    return module.eval()


@dataclass(frozen=True)
class DigitsShift:
    """scikit-learn's digits, cut for an input-shift story (disjoint images throughout).

    ``train``/``reference``: upright originals the champion learns from and is
    wrapped with. ``recent``: shifted images with labels, in time order (what
    an adapter retrains on). ``test``: more shifted images no adapter sees.
    Each part is ``(images, labels)``; images are flat ``(n, 64)`` arrays.
    """

    train: tuple[np.ndarray, np.ndarray]
    reference: tuple[np.ndarray, np.ndarray]
    recent: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    def recent_data(self) -> Any:
        """The recent part as :class:`sidecar.RecentData`, one second apart."""
        import sidecar

        X, y = self.recent
        return sidecar.RecentData(
            records=digits_records(X), labels=y.astype(np.int64), ts=np.arange(len(y), dtype=float)
        )


def digits_shift(
    seed: int = 0,
    *,
    angle: float = 30.0,
    contrast: float = 0.6,
    n_train: int = 800,
    n_reference: int = 200,
    n_recent: int = 550,
) -> DigitsShift:
    """Shuffle the 1,797 digits with ``seed`` and cut them; the rest is the shifted test part."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order].astype(np.float64), y[order].astype(np.int64)
    a, b, c = n_train, n_train + n_reference, n_train + n_reference + n_recent
    shifted = shift_images(X[b:], angle=angle, contrast=contrast, seed=seed)
    return DigitsShift(
        train=(X[:a], y[:a]),
        reference=(X[a:b], y[a:b]),
        recent=(shifted[: c - b], y[b:c]),
        test=(shifted[c - b :], y[c:]),
    )


def digits_bundle(
    data: DigitsShift,
    factory: str = "tests.adapters.resnets:make_resnet",
    factory_kwargs: dict[str, Any] | None = None,
    *,
    epochs: int = 15,
    seed: int = 0,
) -> Any:
    """The champion: the factory's network trained on the upright digits, wrapped as a bundle.

    The preprocessing is a TabularPreprocessor of the 64 numeric pixel fields;
    the network reshapes them to 8x8 images itself.
    """
    import sidecar
    from sidecar.runtimes import import_object

    kwargs = dict(factory_kwargs or {})
    torch.manual_seed(seed)
    module = import_object(factory)(**kwargs)
    X, y = data.train
    train_network(module, X, y, epochs=epochs, seed=seed)
    pre = sidecar.TabularPreprocessor(
        columns=[sidecar.NumericColumn(name=c) for c in pixel_columns()]
    )
    X_ref, y_ref = data.reference
    return sidecar.wrap(
        module,
        task="classification",
        preprocessing=pre,
        reference=(digits_records(X_ref), y_ref),
        train=(digits_records(X), y),
        name="digits",
        framework="torch",
        model_options={"factory": factory, "factory_kwargs": kwargs},
    )
