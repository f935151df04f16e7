"""coalqa.hardware: the compute dtype follows what the machine runs fast; every stage's ``auto`` uses it."""

from __future__ import annotations

import logging
import platform

import pytest
import torch

from coalqa import hardware
from coalqa.errors import CoalqaError
from coalqa.hardware import choose_dtype, cpu_native_bf16


@pytest.fixture
def fake_cpu(monkeypatch):
    """Pretend to be an x86 CPU with the given flags, PyTorch capability and probe timings (ms)."""

    def make(flags: set[str], capability: str = "AVX512", probe: tuple[float, float] = (1.0, 0.5), isa: str | None = None):
        monkeypatch.delenv(hardware.ENV_CPU_BF16, raising=False)
        if isa is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        monkeypatch.setattr(platform, "machine", lambda: "x86_64")
        monkeypatch.setattr(hardware, "_cpu_flags", lambda: set(flags) | {"avx2", "fma"})
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(hardware, "bf16_matmul_probe", lambda: probe)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        cpu_native_bf16.cache_clear()
        hardware._warn_slow_bf16.cache_clear()

    yield make
    cpu_native_bf16.cache_clear()
    hardware._warn_slow_bf16.cache_clear()


@pytest.mark.parametrize(
    ("flags", "capability", "isa", "expected", "why"),
    [
        ({"avx512f", "avx512_bf16"}, "AVX512", None, "bfloat16", "native bfloat16 (AVX512_BF16)"),
        ({"amx_bf16", "amx_tile"}, "AVX512", None, "bfloat16", "native bfloat16 (AMX)"),
        ({"avx512_bf16"}, "AVX512", "avx512_core_bf16", "bfloat16", "native bfloat16"),
        (set(), "AVX2", None, "float32", "no native bfloat16"),  # AMD Zen 3: issue 10's machine
        ({"avx512f"}, "AVX512", None, "float32", "no native bfloat16"),  # Skylake-X: AVX512 without BF16
        ({"avx512_bf16"}, "AVX2", None, "float32", "PyTorch runs AVX2 kernels"),  # ATEN_CPU_CAPABILITY=avx2
        ({"avx512_bf16"}, "AVX512", "AVX2", "float32", "ONEDNN_MAX_CPU_ISA=AVX2"),  # oneDNN limited
    ],
)
def test_cpu_auto_follows_native_bf16(fake_cpu, flags, capability, isa, expected, why):
    # a probe saying the opposite must not matter on x86: the decision uses no timing (same on a busy machine)
    fake_cpu(flags, capability, (1.0, 50.0) if expected == "bfloat16" else (1.0, 0.5), isa)
    choice = choose_dtype("auto")
    assert (choice.name, choice.device) == (expected, "cpu")
    assert why in choice.reason and choice.reason.startswith("auto: ")


def test_environment_variable_forces_either_path(fake_cpu, monkeypatch):
    fake_cpu({"avx512_bf16"})
    monkeypatch.setenv(hardware.ENV_CPU_BF16, "0")
    cpu_native_bf16.cache_clear()
    assert choose_dtype("auto").name == "float32" and "COALQA_CPU_BF16=0" in choose_dtype("auto").reason
    fake_cpu(set(), "AVX2", (39.0, 1363.0))
    monkeypatch.setenv(hardware.ENV_CPU_BF16, "1")
    cpu_native_bf16.cache_clear()
    assert choose_dtype("auto").name == "bfloat16"


def test_explicit_bf16_on_a_cpu_without_it_runs_and_warns_once_with_the_slowdown(fake_cpu, caplog):
    fake_cpu(set(), "AVX2", (39.0, 1363.0))
    with caplog.at_level(logging.WARNING, logger="coalqa.hardware"):
        assert choose_dtype("bfloat16").name == "bfloat16"
        assert choose_dtype("bf16").name == "bfloat16"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "35× the float32 time" in warnings[0] and "no native bfloat16" in warnings[0]


def test_explicit_float32_and_bad_names(fake_cpu):
    fake_cpu({"avx512_bf16"})
    assert choose_dtype("float32").name == choose_dtype("fp32").name == "float32"
    for bad in ("float16", "fp16", "int8"):
        with pytest.raises(CoalqaError, match="not supported"):
            choose_dtype(bad)


@pytest.mark.parametrize(("machine", "probe", "expected"), [("aarch64", (10.0, 6.0), "bfloat16"),
                                                          ("aarch64", (10.0, 90.0), "float32")])
def test_other_cpus_are_decided_by_the_probe(fake_cpu, monkeypatch, machine, probe, expected):
    fake_cpu(set(), "SVE256", probe)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    cpu_native_bf16.cache_clear()
    assert choose_dtype("auto").name == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_gpu_auto_is_bf16_where_supported_never_fp16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    choice = choose_dtype("auto")
    assert (choice.name, choice.device) == (expected, "cuda") and "Fake GPU" in choice.reason
    if not bf16:
        with pytest.raises(CoalqaError, match="no bfloat16"):
            choose_dtype("bfloat16")
    assert choose_dtype("auto", "cpu").device == "cpu"  # a CPU device asked for explicitly


def test_the_real_probe_measures_both_formats():
    fp32_ms, bf16_ms = hardware.bf16_matmul_probe()
    assert fp32_ms > 0 and bf16_ms > 0


def test_the_probe_reports_the_best_of_five_timings_in_milliseconds(monkeypatch):
    """A scripted clock: the probe times 5 runs per format (after a warm-up) and keeps the fastest, in ms."""
    durations = [0.005, 0.004, 0.003, 0.006, 0.007,  # float32: best 3 ms
                 0.050, 0.040, 0.030, 0.020, 0.060]  # bfloat16: best 20 ms
    ticks = iter([t for d in durations for t in (100.0, 100.0 + d)])
    monkeypatch.setattr(hardware.time, "perf_counter", lambda: next(ticks))
    fp32_ms, bf16_ms = hardware.bf16_matmul_probe.__wrapped__()  # not the cached real measurement
    assert fp32_ms == pytest.approx(3.0) and bf16_ms == pytest.approx(20.0)
    assert next(ticks, None) is None  # exactly 5 timings of each format


def test_test_suite_takes_the_float32_path():
    """conftest sets COALQA_CPU_BF16=0 so every CI machine runs the path a CPU without bf16 takes."""
    cpu_native_bf16.cache_clear()
    assert choose_dtype("auto", "cpu").name == "float32"
