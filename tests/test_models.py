"""Tests for tkd.models: shapes, the paper's exact layer sizes, argument checks."""

import pytest
import torch
from torch import nn

from tkd.models import MODELS, build_model, count_parameters, model_table

NAMES = list(MODELS)


def first_linear(model: nn.Module) -> nn.Linear:
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


def conv(c_in: int, c_out: int) -> int:
    """Parameters of a 3x3 conv with bias."""
    return c_in * c_out * 9 + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn(c: int) -> int:
    return 2 * c


@pytest.mark.parametrize("name", NAMES)
def test_logit_shapes(name):
    torch.manual_seed(0)
    for image_size in (8, 28, 32):
        for in_channels in (1, 3):
            model = build_model(name, num_classes=7, in_channels=in_channels,
                                image_size=image_size)
            x = torch.rand(2, in_channels, image_size, image_size)
            assert model(x).shape == (2, 7)
            assert model.forward_features(x).shape == (2, model.head.in_features)


def test_paper_teacher_sizes():
    model = build_model("paper-teacher", num_classes=10, in_channels=3, image_size=32)
    assert first_linear(model).in_features == 2048  # 128 channels * 4 * 4
    assert model.head.in_features == 128
    expected = (
        conv(3, 32) + bn(32)  # 896 + 64
        + conv(32, 32) + bn(32)  # 9248 + 64
        + conv(32, 64) + bn(64)  # 18496 + 128
        + conv(64, 64) + bn(64)  # 36928 + 128
        + conv(64, 128) + bn(128)  # 73856 + 256
        + fc(2048, 512)  # 1049088
        + fc(512, 128)  # 65664
        + fc(128, 10)  # 1290
    )
    assert expected == 1_256_106
    assert count_parameters(model) == expected
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 5


def test_paper_student_sizes():
    model = build_model("paper-student", num_classes=10, in_channels=3, image_size=32)
    assert first_linear(model).in_features == 1024  # 64 channels * 4 * 4
    expected = (
        conv(3, 32)  # 896
        + conv(32, 32)  # 9248
        + conv(32, 64)  # 18496
        + fc(1024, 128)  # 131200
        + fc(128, 10)  # 1290
    )
    assert expected == 161_130
    assert count_parameters(model) == expected
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in model.modules())


def test_student_2022_sizes():
    model = build_model("student-2022", num_classes=10, in_channels=3, image_size=32)
    assert first_linear(model).in_features == 1024  # 64 channels * adaptive 4 * 4
    expected = (conv(3, 16) + bn(16) + conv(16, 32) + bn(32) + conv(32, 64) + bn(64)
                + fc(1024, 128) + fc(128, 10))
    assert count_parameters(model) == expected


def test_resnet_parameter_ballpark():
    assert 1.1e6 < count_parameters(build_model("resnet8x4")) < 1.3e6
    assert 7.2e6 < count_parameters(build_model("resnet32x4")) < 7.6e6


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_head_of_features(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, in_channels=3, image_size=28).eval()
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.forward_features(x)))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_model("alexnet")
    for name in NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("kwargs, arg", [
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 2.5}, "num_classes"),
    ({"in_channels": 0}, "in_channels"),
    ({"image_size": 4}, "image_size"),
    ({"image_size": 0}, "image_size"),
])
@pytest.mark.parametrize("name", ["paper-teacher", "paper-student"])
def test_bad_arguments_name_the_argument(name, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        build_model(name, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_image_size_too_small(name):
    with pytest.raises(ValueError, match="image_size"):
        build_model(name, image_size=2)


def test_model_table():
    table = model_table()
    assert list(table.columns) == ["name", "parameters"]
    assert list(table["name"]) == NAMES
    assert (table["parameters"] > 0).all()


def test_student_pool_before_relu_is_the_papers_relu_before_pool():
    """conv -> max-pool -> ReLU (ours, faster) equals the paper's conv -> ReLU -> max-pool,
    outputs and gradients alike."""
    torch.manual_seed(0)
    ours = build_model("paper-student", 10, 1, 28)
    convs = [m for m in ours.features if isinstance(m, nn.Conv2d)]
    paper = nn.Sequential(*[layer for conv in convs
                            for layer in (conv, nn.ReLU(), nn.MaxPool2d(2))])
    x = torch.randn(16, 1, 28, 28)
    a, b = ours.features(x), paper(x)
    assert torch.equal(a, b)
    (ga,) = torch.autograd.grad(a.square().sum(), convs[0].weight)
    (gb,) = torch.autograd.grad(b.square().sum(), convs[0].weight)
    assert torch.equal(ga, gb)
