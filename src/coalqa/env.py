"""``coalqa env``: what this machine is and what coalqa will do on it, paste-able into a bug report.

Follows the convention of ``transformers env`` and ``llamafactory-cli env``: library versions, then the hardware
facts that change what coalqa does — CPU model, cores, PyTorch's CPU capability and whether the CPU computes
bfloat16 natively (:mod:`coalqa.hardware`), the GPUs with memory and bf16 support — the compute dtype ``auto``
picks on each device, and where models are cached and how much they take.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

LIBRARIES = ("coalqa", "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")
ENV_VARS = ("COALQA_CPU_BF16", "COALQA_CACHE", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES",
            "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (``None`` when not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def folder_size(path: Path) -> int:
    """Total bytes of the regular files under ``path`` (0 when it does not exist); symlinks are not followed."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size if not os.path.islink(os.path.join(root, name)) else 0
    return total


def environment() -> dict[str, Any]:
    """Everything ``coalqa env`` reports, as plain JSON-able values.

    Keys: ``python``, ``platform``, ``libraries`` (name → version), ``cpu`` (model, cores, torch_threads,
    capability, native_bf16, reason, probe_ms), ``gpus`` (name, memory_gib, bf16, compute_capability),
    ``default_dtype`` (device → name and reason), ``caches`` (name → path and size in bytes), ``environment``.
    """
    import torch

    from coalqa.hardware import bf16_matmul_probe, choose_dtype, cpu_model, cpu_native_bf16
    from coalqa.offline import cache_dir

    native, why = cpu_native_bf16()
    fp32_ms, bf16_ms = bf16_matmul_probe()
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "compute_capability": f"{props.major}.{props.minor}",
                         "bf16": bool(torch.cuda.is_bf16_supported()) if i == 0 else props.major >= 8})
    dtypes = {"cpu": choose_dtype("auto", "cpu")}
    if gpus:
        dtypes["cuda"] = choose_dtype("auto", "cuda")
    try:
        from huggingface_hub import constants

        hub = Path(constants.HF_HUB_CACHE)
    except ImportError:
        hub = Path.home() / ".cache" / "huggingface" / "hub"
    caches = {"huggingface hub": hub, "coalqa (offline stand-ins)": cache_dir()}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": {name: v or "not installed" for name, v in library_versions().items()}
        | {"torch CUDA": torch.version.cuda or "none (CPU build)"},
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native, "reason": why,
                "probe_ms": {"float32": round(fp32_ms, 2), "bfloat16": round(bf16_ms, 2)}},
        "gpus": gpus,
        "default_dtype": {dev: {"dtype": c.name, "reason": c.reason} for dev, c in dtypes.items()},
        "caches": {name: {"path": str(path), "bytes": folder_size(path)} for name, path in caches.items()},
        "environment": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }


def format_environment(env: dict[str, Any]) -> str:
    """The report as Markdown (a bullet list per section), for pasting into an issue."""
    cpu = env["cpu"]
    lines = ["## coalqa environment", "", f"- Python: {env['python']}", f"- Platform: {env['platform']}"]
    lines += [f"- {name}: {version}" for name, version in env["libraries"].items()]
    lines += ["", "### CPU", f"- Model: {cpu['model']}", f"- Cores: {cpu['cores']} (torch threads {cpu['torch_threads']})",
              f"- PyTorch CPU capability: {cpu['capability']}",
              f"- Native bfloat16: {'yes' if cpu['native_bf16'] else 'no'} ({cpu['reason']})",
              (f"- Matmul probe (256×512 @ 512×512): float32 {cpu['probe_ms']['float32']} ms, "
              f"bfloat16 {cpu['probe_ms']['bfloat16']} ms")]
    lines += ["", "### GPUs"]
    lines += [f"- {g['name']}: {g['memory_gib']} GiB, compute capability {g['compute_capability']}, "
              f"bfloat16 {'yes' if g['bf16'] else 'no'}" for g in env["gpus"]] or ["- none"]
    lines += ["", "### Default compute dtype (`auto`)"]
    lines += [f"- {dev}: {d['dtype']} ({d['reason']})" for dev, d in env["default_dtype"].items()]
    lines += ["", "### Model caches"]
    lines += [f"- {name}: {c['path']} ({c['bytes'] / 2**20:,.0f} MiB)" for name, c in env["caches"].items()]
    lines += ["", "### Environment variables"]
    lines += [f"- {k}={v}" for k, v in env["environment"].items()] or ["- (none of coalqa's set)"]
    return "\n".join(lines)


def env_command(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON instead of Markdown")] = False,
) -> None:
    """Print versions, CPU/GPU facts, the compute dtype auto picks, and model caches (paste it into bug reports)."""
    import json

    env = environment()
    typer.echo(json.dumps(env, ensure_ascii=False, indent=2) if json_output else format_environment(env))
