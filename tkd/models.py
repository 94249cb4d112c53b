"""Teacher and student networks, built by name.

Every model is a `Classifier`: a convolutional `features` stack, an `embed` stack of fully
connected layers (possibly empty) and a linear `head`.

    forward_features(x): (batch, in_channels, image_size, image_size) -> (batch, d)
    forward(x):          (batch, in_channels, image_size, image_size) -> (batch, num_classes)

with `forward(x) == head(forward_features(x))`. The paper's teacher and student reproduce the
authors' public code exactly at 32x32 inputs; at other image sizes (8x8 digits, 28x28
Fashion-MNIST) the first fully connected layer takes whatever the convolutions give.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import Tensor, nn

from tkd.data import to_float

# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution with padding 1: (b, in, h, w) -> (b, out, h/stride, w/stride)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def conv_relu_bn(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Conv -> ReLU -> BatchNorm, the order of the paper's teacher (shape-preserving)."""
    return [conv3x3(in_channels, out_channels), nn.ReLU(), nn.BatchNorm2d(out_channels)]


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Conv -> BatchNorm -> ReLU, the order of the 2022 student (shape-preserving)."""
    return [conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU()]


def conv_relu_pool(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Conv -> ReLU -> 2x2 max-pool, the paper's student: (b, in, h, w) -> (b, out, h/2, w/2).

    Built as conv -> max-pool -> ReLU: the same function (ReLU is monotone, so it commutes with
    max), with the ReLU and its backward on a 4x smaller tensor. The state dict is unchanged.
    """
    return [conv3x3(in_channels, out_channels), nn.MaxPool2d(2), nn.ReLU()]


def fc_relu(in_features: int, out_features: int, dropout: float = 0.0) -> list[nn.Module]:
    """Linear -> ReLU (-> Dropout): (b, in) -> (b, out)."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class BasicBlock(nn.Module):
    """ResNet basic block (conv-BN-ReLU-conv-BN + shortcut, then ReLU).

    (b, in, h, w) -> (b, out, h/stride, w/stride); a 1x1 conv + BN shortcut when shapes change.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Wide-ResNet block (BN-ReLU-conv-BN-ReLU-conv + shortcut), no dropout.

    (b, in, h, w) -> (b, out, h/stride, w/stride); a 1x1 conv shortcut when shapes change.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(torch.relu(self.bn2(out)))
        # As in the reference WRN, the projection shortcut sees the pre-activated input.
        return out + (x if self.shortcut is None else self.shortcut(pre))


def stage(block: type[nn.Module], in_channels: int, out_channels: int, blocks: int,
          stride: int) -> list[nn.Module]:
    """`blocks` residual blocks; only the first one changes width and stride."""
    layers = [block(in_channels, out_channels, stride)]
    layers += [block(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return layers


class Classifier(nn.Module):
    """features -> flatten -> embed -> head.

    forward_features: (batch, C, H, W) -> (batch, head.in_features)
    forward:          (batch, C, H, W) -> (batch, num_classes) logits
    """

    def __init__(self, features: nn.Module, embed: nn.Module, head: nn.Linear):
        super().__init__()
        self.features = features
        self.embed = embed
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_args(num_classes: int, in_channels: int, image_size: int, min_image_size: int,
                name: str) -> None:
    """Raise ValueError naming the first bad argument."""
    for arg, value, low in [("num_classes", num_classes, 2), ("in_channels", in_channels, 1),
                            ("image_size", image_size, min_image_size)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an integer >= {low} for {name!r}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# The paper's networks (authors' public code, 2020 and 2022)
# ---------------------------------------------------------------------------------------------


def paper_teacher(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """The 2020 'AlexNet-like' teacher: five conv-ReLU-BN, FC 2048 -> 512 -> 128 -> classes.

    Max-pool after conv 1, 2 and 5, so the flattened size is 128 * (image_size // 8)^2
    (2048 at 32x32); ReLU + Dropout(0.5) after both hidden FC layers. Features: (batch, 128).
    """
    _check_args(num_classes, in_channels, image_size, 8, "paper-teacher")
    features = nn.Sequential(
        *conv_relu_bn(in_channels, 32), nn.MaxPool2d(2),
        *conv_relu_bn(32, 32), nn.MaxPool2d(2),
        *conv_relu_bn(32, 64),
        *conv_relu_bn(64, 64),
        *conv_relu_bn(64, 128), nn.MaxPool2d(2),
    )
    flat = 128 * (image_size // 8) ** 2
    embed = nn.Sequential(*fc_relu(flat, 512, dropout=0.5), *fc_relu(512, 128, dropout=0.5))
    return Classifier(features, embed, nn.Linear(128, num_classes))


def paper_student(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """The 2020 student: three conv-ReLU-maxpool (32, 32, 64), FC 1024 -> 128 -> classes.

    Flattened size 64 * (image_size // 8)^2 (1024 at 32x32); no BatchNorm, no dropout.
    Features: (batch, 128).
    """
    _check_args(num_classes, in_channels, image_size, 8, "paper-student")
    features = nn.Sequential(
        *conv_relu_pool(in_channels, 32), *conv_relu_pool(32, 32), *conv_relu_pool(32, 64)
    )
    flat = 64 * (image_size // 8) ** 2
    return Classifier(features, nn.Sequential(*fc_relu(flat, 128)), nn.Linear(128, num_classes))


def student_2022(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """The 2022 student: conv-BN-ReLU (16, 32, 64), max-pool after the first two,
    adaptive average pool to 4x4, FC 1024 -> 128 -> classes. Features: (batch, 128).

    The adaptive pool makes the FC sizes independent of image_size (>= 4).
    """
    _check_args(num_classes, in_channels, image_size, 4, "student-2022")
    features = nn.Sequential(
        *conv_bn_relu(in_channels, 16), nn.MaxPool2d(2),
        *conv_bn_relu(16, 32), nn.MaxPool2d(2),
        *conv_bn_relu(32, 64),
        nn.AdaptiveAvgPool2d(4),
    )
    return Classifier(features, nn.Sequential(*fc_relu(64 * 4 * 4, 128)),
                      nn.Linear(128, num_classes))


# ---------------------------------------------------------------------------------------------
# CIFAR ResNets of the KD benchmarks (RepDistiller naming)
# ---------------------------------------------------------------------------------------------


def cifar_resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int = 10,
                 in_channels: int = 3, image_size: int = 32) -> Classifier:
    """CIFAR ResNet of `depth` = 6n + 2 layers: stem conv (widths[0]), three stages of n basic
    blocks (widths[1:], strides 1, 2, 2), global average pool. Features: (batch, widths[3]).
    """
    if (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n + 2, got {depth}")
    _check_args(num_classes, in_channels, image_size, 4, f"resnet{depth}")
    n = (depth - 2) // 6
    features = nn.Sequential(
        conv3x3(in_channels, widths[0], bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
        *stage(BasicBlock, widths[0], widths[1], n, stride=1),
        *stage(BasicBlock, widths[1], widths[2], n, stride=2),
        *stage(BasicBlock, widths[2], widths[3], n, stride=2),
        nn.AdaptiveAvgPool2d(1),
    )
    return Classifier(features, nn.Identity(), nn.Linear(widths[3], num_classes))


def resnet8x4(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """ResNet-8 with 4x width (stem 32, stages 64/128/256, 1 block each). Features: (b, 256)."""
    return cifar_resnet(8, (32, 64, 128, 256), num_classes, in_channels, image_size)


def resnet32x4(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """ResNet-32 with 4x width (stem 32, stages 64/128/256, 5 blocks each). Features: (b, 256)."""
    return cifar_resnet(32, (32, 64, 128, 256), num_classes, in_channels, image_size)


def wide_resnet(depth: int, widen: int, num_classes: int = 10, in_channels: int = 3,
                image_size: int = 32) -> Classifier:
    """Wide ResNet WRN-depth-widen (depth = 6n + 4): stem conv 16, three stages of n
    pre-activation blocks (16k, 32k, 64k channels), BN-ReLU, global average pool.
    Features: (batch, 64 * widen).
    """
    if (depth - 4) % 6 != 0:
        raise ValueError(f"depth must be 6n + 4, got {depth}")
    _check_args(num_classes, in_channels, image_size, 4, f"wrn-{depth}-{widen}")
    n = (depth - 4) // 6
    widths = (16, 16 * widen, 32 * widen, 64 * widen)
    features = nn.Sequential(
        conv3x3(in_channels, widths[0], bias=False),
        *stage(PreActBlock, widths[0], widths[1], n, stride=1),
        *stage(PreActBlock, widths[1], widths[2], n, stride=2),
        *stage(PreActBlock, widths[2], widths[3], n, stride=2),
        nn.BatchNorm2d(widths[3]), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
    )
    return Classifier(features, nn.Identity(), nn.Linear(widths[3], num_classes))


def wrn_16_2(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> Classifier:
    """WRN-16-2 (2 blocks per stage, 32/64/128 channels). Features: (batch, 128)."""
    return wide_resnet(16, 2, num_classes, in_channels, image_size)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper-teacher": paper_teacher,
    "paper-student": paper_student,
    "student-2022": student_2022,
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    "wrn-16-2": wrn_16_2,
}


def build_model(name: str, num_classes: int = 10, in_channels: int = 3,
                image_size: int = 32) -> nn.Module:
    """Build the registered model `name` for (batch, in_channels, image_size, image_size)
    inputs and (batch, num_classes) logits. Raises ValueError for unknown names or bad sizes.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_table(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> pd.DataFrame:
    """One row per registered model: columns `name`, `parameters` (trainable)."""
    rows = []
    for name in MODELS:
        model = build_model(name, num_classes, in_channels, image_size)
        rows.append({"name": name, "parameters": count_parameters(model)})
    return pd.DataFrame(rows, columns=["name", "parameters"])


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 1000,
            dtype: torch.dtype | None = None, channels_last: bool = False,
            features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The one way to run a model over a split: logits (N, classes) float32 of an eval-mode
    ``model`` on uint8 images (N, C, H, W), in batches of ``batch_size``; with
    ``features=True`` the pair ``(logits, embeddings)``, the embeddings (N, dim) from
    :meth:`Classifier.forward_features`. ``dtype`` (e.g. ``torch.bfloat16``) runs the forward
    under autocast; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    logits, embeddings = [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast(images.device.type, dtype or torch.float32, enabled=dtype is not None):
            if features:
                f = model.forward_features(x)
                logits.append(model.head(f).float())
            else:
                logits.append(model(x).float())
        if features:
            embeddings.append(f.float())
    model.train(was_training)
    return (torch.cat(logits), torch.cat(embeddings)) if features else torch.cat(logits)
