"""pick_precision per device, with the GPU's compute capability faked."""

import pytest
import torch

from tkd import precision
from tkd.precision import autocast_dtype, make_scaler, pick_precision, supported_precisions

CUDA = torch.device("cuda", 0)
T4, A100, H100 = (7, 5), (8, 0), (9, 0)


@pytest.fixture
def gpu(monkeypatch):
    """Pretend CUDA is here with a GPU of the given compute capability."""

    def fake(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    return fake


@pytest.mark.parametrize("capability, expected", [(T4, "fp16"), (A100, "bf16"), (H100, "bf16"),
                                                  ((7, 0), "fp16"), ((8, 6), "bf16")])
def test_auto_on_gpus(gpu, capability, expected):
    gpu(capability)
    assert pick_precision(CUDA) == expected
    assert pick_precision("cuda", "auto") == expected


@pytest.mark.parametrize("device", ["cpu", "mps", torch.device("cpu")])
def test_auto_is_fp32_off_cuda(device):
    assert pick_precision(device) == "fp32"
    assert pick_precision(device, "fp32") == "fp32"
    assert supported_precisions(device) == ("fp32",)


@pytest.mark.parametrize("capability", [A100, H100])
@pytest.mark.parametrize("requested", ["bf16", "fp16", "fp32"])
def test_ampere_and_hopper_honour_every_request(gpu, capability, requested):
    gpu(capability)
    assert pick_precision(CUDA, requested) == requested


@pytest.mark.parametrize("requested", ["fp16", "fp32"])
def test_t4_honours_fp16_and_fp32(gpu, requested):
    gpu(T4)
    assert pick_precision(CUDA, requested) == requested


def test_bf16_on_a_t4_is_refused_with_the_reason(gpu):
    gpu(T4)
    with pytest.raises(ValueError) as error:
        pick_precision(CUDA, "bf16")
    message = str(error.value)
    for part in ("'bf16'", "cuda:0", "compute capability 7.5", "8.0 or newer", "fp16, fp32"):
        assert part in message


@pytest.mark.parametrize("device", ["cpu", "mps"])
@pytest.mark.parametrize("requested", ["bf16", "fp16"])
def test_mixed_precision_off_cuda_is_refused(device, requested):
    with pytest.raises(ValueError) as error:
        pick_precision(device, requested)
    message = str(error.value)
    for part in (repr(requested), f"on {device}", "only on CUDA GPUs", "Supported there: fp32"):
        assert part in message


def test_cuda_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_precision("cuda")


@pytest.mark.parametrize("bad", ["fp64", "BF16", "", "half"])
def test_unknown_names_are_refused(bad):
    with pytest.raises(ValueError, match="'auto', 'bf16', 'fp16', 'fp32'"):
        pick_precision("cpu", bad)
    with pytest.raises(ValueError, match="'bf16', 'fp16', 'fp32'"):
        autocast_dtype(bad)
    with pytest.raises(ValueError, match="must be one of"):
        make_scaler(bad, "cpu")


def test_autocast_dtype():
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("fp16") is torch.float16
    assert autocast_dtype("fp32") is None


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_only_fp16_gets_a_scaler():
    assert make_scaler("bf16", CUDA) is None
    assert make_scaler("fp32", "cpu") is None
    scaler = make_scaler("fp16", CUDA)
    assert isinstance(scaler, torch.amp.GradScaler)
    assert scaler._device == "cuda"


@pytest.mark.filterwarnings("ignore:.*CUDA is not available", "ignore::FutureWarning")
def test_scaler_on_torch_without_torch_amp_grad_scaler(monkeypatch):
    cuda_scaler = torch.cuda.amp.GradScaler
    monkeypatch.delattr(torch.amp, "GradScaler")
    assert isinstance(precision.make_scaler("fp16", CUDA), cuda_scaler)
