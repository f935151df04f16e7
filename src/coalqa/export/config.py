"""Settings of ``coalqa export``, declared once with their help text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMATS = ("merged", "gguf", "ollama", "vllm")


class ExportConfig(BaseModel):
    """Every knob of the export stage; defaults < ``--config`` YAML < command-line flags.

    ``format`` picks what is written; a GGUF is converted from the merged model and a Modelfile points at the
    GGUF, so ``gguf`` also writes ``merged/`` and ``ollama`` also writes both.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["merged", "gguf", "ollama", "vllm", "all"] = Field(
        "all", description="what to write: merged (safetensors), gguf, ollama (GGUF + Modelfile), vllm (serve.sh), all"
    )
    gguf_type: Literal["f16", "q8_0"] = Field(
        "f16", description="GGUF weight type written by llama.cpp's converter (Q4_K_M: run the printed llama-quantize command)"
    )
    model_name_or_path: str | None = Field(
        None, description="base model (Hub id or folder); default: the base recorded in the adapter's train_config.yaml"
    )
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto",
        description="compute dtype for loading the base as trained and for the logit check; auto: float32 on every "
        "machine, because the check must see merge errors far below bfloat16 rounding (the demo adapter: max "
        "|Δlogit| 1.1e-4 in float32, 1.98 in bfloat16, greedy tokens identical in both)",
    )
    save_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto",
        description="dtype of the merged safetensors (the merge itself is computed in float32); auto: the base "
        "checkpoint's own dtype (bfloat16 for DeepSeek-R1-Distill), float32 for a float32 base",
    )
    llama_cpp: Path | None = Field(
        None,
        description="llama.cpp source for the HF→GGUF converter: a llama.cpp checkout, or a llama-cpp-python sdist "
        "(.tar.gz or unpacked); default: the pinned llama-cpp-python sdist from PyPI, fetched once into the cache",
    )
    name: str = Field(
        "coal-safety", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="model name for clients: the Ollama model (`ollama create NAME`) and the vLLM LoRA module",
    )
    vllm_4bit: bool | None = Field(
        None, description="serve.sh loads the base in 4-bit (vLLM --quantization bitsandbytes); default: as the "
        "adapter was trained (use_4bit)",
    )
    check_tokens: int = Field(
        32, ge=1, le=1024, description="greedy tokens generated per check prompt when comparing the merged model with base+adapter"
    )
