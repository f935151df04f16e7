"""Which number format (dtype) this machine runs fast: the one decision every stage's ``auto`` dtype uses.

Rule (:func:`choose_dtype`):

* **GPU** (CUDA): bfloat16 where the GPU supports it (Ampere and newer), else float32. Never float16: Qwen2
  models overflow to NaN losses in fp16 (``../shared/notes/offline-models.md``).
* **CPU**: bfloat16 only where the CPU computes it natively — x86 with AVX512_BF16 or AMX (``/proc/cpuinfo`` flags,
  or PyTorch's cpuinfo elsewhere), with PyTorch's kernels allowed to use them (``get_cpu_capability()`` is an AVX512
  level and ``ONEDNN_MAX_CPU_ISA``, if set, reaches AVX512_CORE_BF16); on other CPUs (ARM) a tiny timed matmul probe
  decides — else float32. The x86 decision uses no timing, so it is the same on a busy machine as on an idle one
  (a probe run under load once took native bf16 for emulated). Without those instructions
  PyTorch emulates bf16: a 1024×576 @ 576×1536 matmul measured 39 ms in float32 and 1,363 ms in bfloat16 on an
  AMD EPYC (Zen 3, AVX2), 35× slower, which turned a 16-minute demo into 5 hours (issue 10).
* ``COALQA_CPU_BF16=0`` (or ``1``) overrides the CPU decision: ``0`` takes the float32 path on any machine
  (the test suite and ``bench/demo_dtype.py`` use it to measure that path), ``1`` forces bf16.

An explicit ``bfloat16`` on a CPU without native bf16 still runs, with one warning that gives the measured
slowdown. The choice and its reason are printed by each stage and saved in its run card / settings files.
To emulate a CPU without bf16 instructions on one that has them (for measurements), start Python with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from functools import cache, lru_cache

from coalqa.errors import CoalqaError

log = logging.getLogger(__name__)
ENV_CPU_BF16 = "COALQA_CPU_BF16"
# oneDNN ISA levels (ONEDNN_MAX_CPU_ISA, oneDNN's "CPU dispatcher controls" docs) that include native bf16.
ONEDNN_BF16_ISAS = {"ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                    "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"}
DTYPE_NAMES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float32": "float32", "fp32": "float32"}


@dataclass(frozen=True)
class DtypeChoice:
    """A decided compute dtype.

    Attributes:
        name: ``"bfloat16"`` or ``"float32"``.
        device: ``"cuda"`` or ``"cpu"``.
        reason: one deterministic sentence saying why (printed at start, saved in run cards and settings).
    """

    name: str
    device: str
    reason: str

    @property
    def torch_dtype(self):
        """The ``torch.dtype`` of :attr:`name`."""
        import torch

        return getattr(torch, self.name)


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of ``/proc/cpuinfo`` (Linux); ``None`` without one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


@lru_cache(maxsize=1)
def bf16_matmul_probe() -> tuple[float, float]:
    """``(float32_ms, bfloat16_ms)``: the best of 5 timings of a 256×512 @ 512×512 matmul on this CPU.

    Takes ~20 ms where bf16 is native and ~0.5 s where it is emulated; run once per process, only when needed
    (non-x86 CPUs, ``coalqa env``, and the warning for an explicit bf16 on a CPU without it).
    """
    import torch

    a, b = torch.randn(256, 512), torch.randn(512, 512)
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y  # warm-up (kernel selection, page faults)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            x @ y
            best = min(best, time.perf_counter() - t)
        out.append(best * 1000)
    return out[0], out[1]


def _cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


@lru_cache(maxsize=1)
def cpu_native_bf16() -> tuple[bool, str]:
    """``(native, why)``: whether this CPU computes bfloat16 natively (see the module docstring for the rule).

    ``why`` is deterministic (no timings), so it can be stored in settings that are compared on resume.
    """
    forced = os.environ.get(ENV_CPU_BF16, "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False, f"{ENV_CPU_BF16}={forced} forces the float32 path"
    if forced in ("1", "true", "yes", "on"):
        return True, f"{ENV_CPU_BF16}={forced} forces bfloat16"
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        flags = _cpu_flags()
        has = [name for name, flag in (("AVX512_BF16", "avx512_bf16"), ("AMX", "amx_bf16")) if flag in flags]
        if not flags:  # not Linux: ask PyTorch's cpuinfo
            has = [n for n, f in (("AVX512_BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
                   if getattr(torch.cpu, f, lambda: False)()]
        if not has:
            return False, f"CPU has no native bfloat16 (no AVX512_BF16/AMX; PyTorch CPU capability {capability})"
        if not capability.startswith("AVX512"):
            return False, f"CPU has {'/'.join(has)} but PyTorch runs {capability} kernels (ATEN_CPU_CAPABILITY?)"
        isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
        if isa and isa not in ONEDNN_BF16_ISAS:
            return False, f"CPU has {'/'.join(has)} but ONEDNN_MAX_CPU_ISA={isa} keeps oneDNN below AVX512_CORE_BF16"
        return True, f"CPU has native bfloat16 ({'/'.join(has)})"
    fp32_ms, bf16_ms = bf16_matmul_probe()  # ARM and others: measure
    if bf16_ms <= 1.5 * fp32_ms:
        return True, f"a bfloat16 matmul probe ran as fast as float32 on this {machine} CPU"
    return False, f"a bfloat16 matmul probe ran slower than float32 on this {machine} CPU"


def _on_gpu(device: str | None) -> bool:
    import torch

    if device is None:
        return torch.cuda.is_available()
    return str(device).startswith("cuda")


@cache
def _warn_slow_bf16(why: str) -> None:
    fp32_ms, bf16_ms = bf16_matmul_probe()
    log.warning(
        "bfloat16 was asked for, but %s: a bfloat16 matmul measured %.0f× the float32 time here (%.1f ms vs %.1f ms), "
        "so training and generation will be about that much slower. Use dtype auto or float32 for full speed.",
        why, bf16_ms / max(fp32_ms, 1e-6), bf16_ms, fp32_ms,
    )


def choose_dtype(requested: str = "auto", device: str | None = None) -> DtypeChoice:
    """Decide the compute dtype for ``device`` (``"cuda…"``/``"cpu"``; default: the GPU if any, else the CPU).

    Args:
        requested: ``"auto"`` (the rule in the module docstring), ``"bfloat16"``/``"bf16"`` or
            ``"float32"``/``"fp32"``. An explicit bf16 on a CPU without native bf16 is honoured with one warning
            giving the measured slowdown; on a GPU without bf16 it is an error.

    Raises:
        CoalqaError: an unknown name, float16 (NaN losses on Qwen2), or bf16 on a GPU that lacks it.
    """
    import torch

    gpu = _on_gpu(device)
    where = "cuda" if gpu else "cpu"
    if requested != "auto":
        name = DTYPE_NAMES.get(requested)
        if name is None:
            raise CoalqaError(f"dtype {requested!r} not supported; use auto, bfloat16 or float32 "
                              "(float16 gives NaN losses on Qwen2)")
        if name == "bfloat16" and gpu and not torch.cuda.is_bf16_supported():
            raise CoalqaError("this GPU has no bfloat16; use dtype float32 or auto (float16 is refused: NaN losses on Qwen2)")
        if name == "bfloat16" and not gpu:
            native, why = cpu_native_bf16()
            if not native:
                _warn_slow_bf16(why)
        return DtypeChoice(name, where, f"{name} as requested")
    if gpu:
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", where, f"auto: GPU {torch.cuda.get_device_name()} supports bfloat16")
        return DtypeChoice("float32", where, f"auto: GPU {torch.cuda.get_device_name()} has no bfloat16 (float16 is never used)")
    native, why = cpu_native_bf16()
    return DtypeChoice("bfloat16" if native else "float32", where, f"auto: {why}")
