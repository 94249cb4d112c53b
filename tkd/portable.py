"""The portable CPU mode: numerics that do not depend on the CPU model.

Three libraries under torch choose their kernels by the instructions the CPU has, and kernels
for other instructions round differently: ATen's vectorised kernels (``ATEN_CPU_CAPABILITY``),
oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's BLAS (``MKL_CBWR``, its conditional
numerical reproducibility, which also needs a fixed thread count and ``MKL_DYNAMIC=FALSE``).
The portable mode caps the first two at AVX2 (which Intel and AMD x86-64 CPUs of the last
decade share), puts MKL on its COMPATIBLE branch (:data:`MKL_BRANCH`, the one oneMKL documents
for every vendor) and fixes the threads, so that two machines of different CPU models can train
the same bits. The caps are read when torch initialises, so they must be in the environment
before ``import torch``: :func:`reexec_portable` restarts the command with them, and worker
processes (``--jobs``, spawned) inherit them. Each record states the mode it was trained in
(``environment["cpu_mode"]``, see :func:`cpu_mode`), with the CNR mode MKL says is in force.
"""

from __future__ import annotations

import os
import sys

LEVEL = "avx2"
MODES = ("portable", "native")
MKL_BRANCH = "COMPATIBLE"
"""MKL's CNR branch in the portable mode: the one oneMKL documents as giving the same results on
Intel and Intel-compatible (AMD) CPUs (SSE2 without the approximate rcpps/rsqrtps). Branches
other than AUTO and COMPATIBLE run on Intel CPUs only; elsewhere MKL falls back to AUTO, its
per-CPU dispatch, without a word, so the mode's former ``AVX2,STRICT`` left AMD CPUs to it.
(STRICT, reproducibility across thread counts, exists for the AVX2 and AVX-512 branches only;
the mode fixes the threads instead.)"""


def portable_environment(threads: int = 1) -> dict[str, str]:
    """The environment variables of the portable mode with ``threads`` threads per run."""
    return {
        "ATEN_CPU_CAPABILITY": LEVEL,
        "ONEDNN_MAX_CPU_ISA": LEVEL.upper(),
        "MKL_CBWR": MKL_BRANCH,
        "MKL_DYNAMIC": "FALSE",
        "MKL_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
    }


def is_portable(environ: dict | None = None) -> bool:
    """Whether ``environ`` (default: this process's) holds every cap of the portable mode."""
    environ = os.environ if environ is None else environ
    wanted = portable_environment(1)
    caps = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC")
    return all(environ.get(k, "").upper() == wanted[k].upper() for k in caps)


def cpu_mode() -> dict:
    """What a record states of the CPU numerics: ``mode`` (portable or native), the caps
    asked for (None where unset), the instruction set ATen's kernels use now and the CNR mode
    MKL says is in force (``mkl_cnr``, :func:`mkl_cnr`)."""
    import torch

    keys = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_DYNAMIC",
            "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    return {"mode": "portable" if is_portable() else "native",
            "aten": torch.backends.cpu.get_cpu_capability(),
            **{k.lower(): os.environ.get(k) for k in keys},
            "mkl_cnr": mkl_cnr()}


# oneMKL's CNR branches (mkl_service.h, MKL_CBWR_*), named as MKL_VERBOSE prints them (CNR:...)
CNR_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512",
                13: "AVX512_MIC_E1", 14: "AVX512_E1"}
CNR_STRICT = 0x10000


def mkl_cnr() -> str | None:
    """The conditional-numerical-reproducibility mode that MKL says is in force, as
    ``MKL_VERBOSE`` prints it (``"COMPATIBLE"``, ``"AVX2,STRICT"``, ``"OFF"``, ...): what
    ``mkl_cbwr_get(MKL_CBWR_ALL)`` returns from the MKL linked into torch. It can differ from
    ``MKL_CBWR``: MKL ignores a branch the CPU cannot run (one other than AUTO or COMPATIBLE on
    a non-Intel CPU) and falls back to AUTO without a word. None where torch has no MKL."""
    import ctypes

    import torch

    if not torch.backends.mkl.is_available():
        return None
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        try:
            get = ctypes.CDLL(os.path.join(lib, name)).mkl_serv_cbwr_get
        except (OSError, AttributeError):
            continue
        get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
        setting = get(~0)  # MKL_CBWR_ALL: the branch and the STRICT flag
        branch = CNR_BRANCHES.get(setting & 0xFFFF, f"branch {setting & 0xFFFF}")
        return f"{branch},STRICT" if setting & CNR_STRICT else branch
    return None


def reexec_portable(argv: list[str], threads: int = 1) -> None:
    """Restart ``python -m tkd <argv>`` in the portable mode, unless this process is already
    in it (then return). The caps must precede torch's initialisation, which has happened by
    the time a command is parsed, so the process replaces itself (``os.execve``)."""
    if is_portable():
        return
    environ = {**os.environ, **portable_environment(threads)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tkd", *argv], environ)
