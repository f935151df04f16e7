"""Serving the adapter with vLLM: check that vLLM will load it, and write ``serve.sh`` with the exact command.

Rules taken from vLLM's source and docs (main branch, 2026):

* ``--max-lora-rank`` must be one of ``MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]``
  (``vllm/config/lora.py``; the default is 16, so an r=64 adapter is refused without ``--max-lora-rank 64``);
  the adapter's rank (and every ``rank_pattern`` rank) must not exceed it (``vllm/lora/peft_helper.py``).
* ``vllm/lora/peft_helper.py`` refuses ``modules_to_save``, DoRA (``use_dora``), adapter bias (``bias`` other than
  ``"none"``, ``lora_bias``) and initialisations that change the base weights (PiSSA, OLoRA, CorDA, LoftQ).
* Qwen2/Llama LoRA layers are the attention and MLP projections (packed as ``qkv_proj`` and ``gate_up_proj``);
  this check refuses embedding or output layers (``embed_tokens``, ``lm_head``) and trainable tokens.
* Flags: ``vllm serve BASE --enable-lora --lora-modules NAME=PATH --max-lora-rank R`` (docs: features/lora);
  ``--quantization bitsandbytes`` quantizes the base in flight to NF4 with double quantization, the QLoRA
  format the adapter was trained on (docs: features/quantization/bnb; ``--load-format bitsandbytes`` is no longer
  needed); ``--reasoning-parser deepseek_r1`` returns the ``<think>`` part as ``reasoning`` (docs:
  features/reasoning_outputs; vLLM ≥ 0.10 — 0.7–0.9 also needed ``--enable-reasoning``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
LORA_MODULES = {
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
}
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq")


def max_lora_rank(rank: int) -> int:
    """The smallest value vLLM accepts for ``--max-lora-rank`` that is ≥ ``rank``.

    Raises:
        ValueError: ``rank`` < 1 or above vLLM's largest (512).
    """
    if rank < 1 or rank > VLLM_MAX_LORA_RANKS[-1]:
        raise ValueError(f"LoRA rank {rank} is outside vLLM's range 1–{VLLM_MAX_LORA_RANKS[-1]}")
    return next(r for r in VLLM_MAX_LORA_RANKS if r >= rank)


def check_adapter(adapter_cfg: dict, tensor_names: list[str], model_type: str) -> tuple[dict, list[str]]:
    """Whether vLLM can load this PEFT adapter.

    Args:
        adapter_cfg: ``adapter_config.json``.
        tensor_names: tensor names in ``adapter_model.safetensors``.
        model_type: the base's ``config.model_type`` (``qwen2``).

    Returns:
        ``(facts, problems)``: ``facts`` has ``rank`` (the largest, rank_pattern included), ``max_lora_rank``
        (rounded up to vLLM's set; ``None`` when out of range), ``alpha``, ``target_modules``; ``problems`` lists
        what vLLM would refuse (empty: loadable).
    """
    problems: list[str] = []
    if adapter_cfg.get("peft_type") != "LORA":
        problems.append(f"peft_type {adapter_cfg.get('peft_type')!r}: vLLM serves LoRA adapters only")
    ranks = [int(adapter_cfg.get("r") or 0), *(int(v) for v in (adapter_cfg.get("rank_pattern") or {}).values())]
    rank = max(ranks)
    try:
        rounded = max_lora_rank(rank)
    except ValueError as e:
        rounded = None
        problems.append(str(e))
    targets = adapter_cfg.get("target_modules")
    names = sorted(targets) if isinstance(targets, list) else targets
    if adapter_cfg.get("modules_to_save"):
        problems.append(f"modules_to_save {adapter_cfg['modules_to_save']}: vLLM only supports none")
    if adapter_cfg.get("use_dora"):
        problems.append("DoRA (use_dora): not supported by vLLM")
    if adapter_cfg.get("bias", "none") != "none" or adapter_cfg.get("lora_bias"):
        problems.append("adapter bias: not supported by vLLM")
    init = str(adapter_cfg.get("init_lora_weights", True)).lower()
    if init.startswith(BASE_CHANGING_INITS):
        problems.append(f"init_lora_weights {init!r} changes the base weights: not supported by vLLM")
    if adapter_cfg.get("trainable_token_indices"):
        problems.append("trainable_token_indices (trained token embeddings): not supported by vLLM")
    allowed = LORA_MODULES.get(model_type)
    if isinstance(targets, list) and allowed is not None:
        odd = sorted(set(targets) - allowed)
        if odd:
            problems.append(f"target modules {odd}: vLLM's {model_type} LoRA layers are {sorted(allowed)}")
    layers = sorted({part for n in tensor_names for part in n.split(".")
                     if part in ("embed_tokens", "lm_head") or part.startswith("lora_embedding")})
    if layers:
        problems.append(f"embedding/output layer tensors in the adapter ({', '.join(layers)})")
    facts = {"rank": rank, "max_lora_rank": rounded, "alpha": adapter_cfg.get("lora_alpha"),
             "target_modules": names, "use_rslora": bool(adapter_cfg.get("use_rslora"))}
    return facts, problems


def serve_command(base: str, name: str, adapter_ref: str, rank: int, quantize_4bit: bool) -> list[str]:
    """The ``vllm serve`` argument list (``adapter_ref`` as it should appear, e.g. ``"$HERE/adapter"``)."""
    cmd = ["vllm", "serve", base, "--enable-lora", "--lora-modules", f"{name}={adapter_ref}",
           "--max-lora-rank", str(rank)]
    if quantize_4bit:
        cmd += ["--quantization", "bitsandbytes"]
    return cmd + ["--reasoning-parser", "deepseek_r1"]


def _dq(text: str) -> str:
    """``text`` as the inside of a double-quoted shell word."""
    return "".join("\\" + c if c in '"$`\\' else c for c in text)


def serve_script(base: str, name: str, rank: int, quantize_4bit: bool, system_prompt: str, header: str = "") -> str:
    """``serve.sh``: serves the base with the adapter copied beside the script (``adapter/``) under ``name``.

    ``BASE`` in the environment overrides the base (e.g. a local copy of it); extra arguments are passed on to
    ``vllm serve``. The comment shows a request that sends the training system prompt, which vLLM does not add.
    """
    flags = ["--enable-lora", f'--lora-modules {name}="$HERE/adapter"', f"--max-lora-rank {rank}"]
    if quantize_4bit:
        flags.append("--quantization bitsandbytes")
    flags += ["--reasoning-parser deepseek_r1", '"$@"']
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": "主要通风机多久检查一次？"}]
    example = json.dumps({"model": name, "messages": messages}, ensure_ascii=False)
    return "\n".join([
        "#!/usr/bin/env bash",
        *[f"# {line}" for line in header.splitlines()],
        "#",
        "# Ask it (OpenAI-compatible API; send the training system prompt, vLLM does not add one):",
        f"#   curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' -d {shlex.quote(example)}",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f'BASE="${{BASE:-{_dq(base)}}}"',
        'exec vllm serve "$BASE" \\\n    ' + " \\\n    ".join(flags),
        "",
    ])


def adapter_files(adapter_dir: Path) -> list[Path]:
    """The files copied next to ``serve.sh``: the adapter weights and config, and its training records."""
    names = ("adapter_config.json", "adapter_model.safetensors", "train_config.yaml", "provenance.json", "run_card.md")
    return [adapter_dir / n for n in names if (adapter_dir / n).is_file()]
