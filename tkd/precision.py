"""Which floating-point precision to train in, chosen from the device.

* ``"bf16"``: autocast to bfloat16 on CUDA GPUs with native bf16 (compute capability 8.0 or
  newer: Ampere A100/RTX 30xx, Ada, Hopper H100). Same exponent range as fp32, so no scaler.
* ``"fp16"``: autocast to float16 on older CUDA GPUs (Volta V100, Turing T4 as on Colab), with a
  gradient scaler so that small gradients do not underflow to zero.
* ``"fp32"``: plain float32, the only choice on CPU and Apple MPS here (mixed precision there is
  slow or incomplete, and tkd does not test it).
"""

from __future__ import annotations

import torch

PRECISIONS = ("bf16", "fp16", "fp32")
BF16_CAPABILITY = (8, 0)  # Ampere: the first GPUs with bf16 tensor cores
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def _check_name(precision: str, allowed: tuple[str, ...]) -> None:
    if precision not in allowed:
        choices = ", ".join(repr(p) for p in allowed)
        raise ValueError(f"precision must be one of {choices}, got {precision!r}")


def _capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device; ValueError if CUDA is absent."""
    if not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but CUDA is not available here")
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def supported_precisions(device: torch.device | str) -> tuple[str, ...]:
    """The precisions tkd trains in on ``device``, best first (a subset of ``PRECISIONS``)."""
    device = torch.device(device)
    if device.type != "cuda":
        return ("fp32",)
    if _capability(device) >= BF16_CAPABILITY:
        return ("bf16", "fp16", "fp32")
    return ("fp16", "fp32")


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = _capability(device)
        return f"{device} (compute capability {major}.{minor})"
    return str(device)


def _refusal(precision: str, device: torch.device, supported: tuple[str, ...]) -> str:
    """The message for a precision ``device`` cannot train in: why, and what it can."""
    if device.type != "cuda":
        why = "tkd uses mixed precision only on CUDA GPUs; CPU and MPS train in fp32"
    else:  # only bf16 can be refused on a CUDA GPU
        why = (f"bf16 needs compute capability {BF16_CAPABILITY[0]}.{BF16_CAPABILITY[1]} or "
               "newer (Ampere, Ada, Hopper); older GPUs such as the T4 use fp16")
    return (f"precision {precision!r} is not supported on {_describe(device)}: {why}. "
            f"Supported there: {', '.join(supported)} (or 'auto').")


def pick_precision(device: torch.device | str, requested: str = "auto") -> str:
    """Return ``"bf16"``, ``"fp16"`` or ``"fp32"`` for training on ``device``.

    ``"auto"`` picks bf16 on CUDA GPUs of compute capability >= 8.0, fp16 on older CUDA GPUs
    (e.g. Colab's T4, 7.5) and fp32 on CPU and MPS. An explicit precision is returned as is if
    the device supports it; otherwise ``ValueError`` names the device and what it supports.
    """
    _check_name(requested, ("auto", *PRECISIONS))
    device = torch.device(device)
    supported = supported_precisions(device)
    if requested == "auto":
        return supported[0]
    if requested not in supported:
        raise ValueError(_refusal(requested, device, supported))
    return requested


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype for ``precision``; ``None`` for fp32 (no autocast)."""
    _check_name(precision, PRECISIONS)
    return _DTYPES[precision]


def make_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 training on ``device`` (CUDA); ``None`` for bf16 and fp32.

    Use it as ``scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()``.
    """
    _check_name(precision, PRECISIONS)
    if precision != "fp16":
        return None
    if not hasattr(torch.amp, "GradScaler"):  # torch 2.2 has only the CUDA one
        return torch.cuda.amp.GradScaler()
    return torch.amp.GradScaler(torch.device(device).type)


def set_tf32(precision: str, device: torch.device | str) -> None:
    """On CUDA, an fp32 run computes in true float32: TF32 matmuls and cuDNN convolutions are
    turned off (PyTorch lets cuDNN use TF32 by default). Other precisions and devices: no
    change. Not restored afterwards."""
    if precision == "fp32" and torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def tf32_state() -> dict:
    """Whether CUDA matmuls and cuDNN convolutions may use TF32 now."""
    return {"matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn": bool(torch.backends.cudnn.allow_tf32)}
