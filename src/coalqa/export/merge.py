"""Merging a LoRA adapter into its base, and checking the merged model against base + adapter.

Method (:func:`merge_adapter`), chosen by measurement (issue 13, tiny Qwen2 with an NF4 base, r=64 on the 7
projections; max logit difference from "4-bit base + adapter", the model training optimised):

* an adapter trained on a **4-bit base** is merged into the *dequantized* 4-bit weights: the base is loaded in
  4-bit exactly as in training (:func:`coalqa.ask.load_model`, same NF4 settings), ``dequantize()`` turns every
  ``Linear4bit`` back into a float32 ``Linear`` holding the very values the 4-bit layers computed with, and the
  LoRA update is added to those (0.012). Merging onto the original bf16 base instead (what LLaMA-Factory does)
  gave 0.239, and ``merge_and_unload()`` on the 4-bit model (which re-quantizes the sum) 0.209;
* a **full-precision** adapter is merged directly into the base weights.

The sum is computed in float32 and cast once to the dtype the file is saved in (:func:`save_dtype_for`).
:func:`compare` then reloads the saved folder with plain ``AutoModelForCausalLM`` (no peft) and measures, on
fixed prompts in the adapter's prompt format, the logit difference from base + adapter and whether greedy
decoding gives the same tokens.
"""

from __future__ import annotations

import gc
import json
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coalqa.errors import CoalqaError
from coalqa.jsonio import share_saved_weights
from coalqa.template import SAVED_FORMAT_FILE, encode_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from coalqa.ask.inference import LoadedModel

# Fixed check prompts: questions of the kind the adapter was trained on (numbers, duties, intervals).
CHECK_QUESTIONS = [
    "主要通风机多久检查一次？",
    "井下爆破工作必须由谁担任？",
    "采掘工作面的进风流中，氧气浓度不低于多少？",
    "高瓦斯矿井采掘工作面每班至少检查甲烷浓度几次？",
]
# Serving defaults written to generation_config.json: DeepSeek-R1's usage recommendations (model card of
# deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B), the same defaults as `coalqa ask`.
SERVING_TEMPERATURE = 0.6
SERVING_TOP_P = 0.95
COPIED_RECORDS = ("train_config.yaml", "provenance.json", "run_card.md")


@dataclass
class CheckResult:
    """Merged model vs base + adapter on :data:`CHECK_QUESTIONS` (teacher-forced on the reference's greedy tokens).

    ``max_abs_logit_diff``/``mean_abs_logit_diff``: over every position and vocabulary entry; ``greedy_same``:
    prompts whose greedy tokens are identical; ``items``: per prompt, the two decoded continuations.
    """

    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    greedy_same: int
    prompts: int
    tokens: int
    items: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values for the export report."""
        return {
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "mean_abs_logit_diff": self.mean_abs_logit_diff,
            "greedy_same": self.greedy_same,
            "prompts": self.prompts,
            "tokens_per_prompt": self.tokens,
            "items": self.items,
        }


def save_dtype_for(base_config, requested: str = "auto") -> tuple[str, str]:
    """``(dtype name, reason)`` of the merged file.

    ``auto`` keeps the base checkpoint's own dtype (``config.dtype``/``torch_dtype``): bfloat16 for
    DeepSeek-R1-Distill, float32 for a float32 base; any other (float16) becomes bfloat16. The file is made for
    the machine that serves it, not the one that exports it: vLLM's ``--dtype auto`` runs float32 checkpoints in
    float16 (vLLM engine arguments), where Qwen2 overflows; ``coalqa ask`` and transformers pick the compute dtype
    when loading; llama.cpp converts to f16/q8_0 anyway. A float32 file keeps the merge exact at twice the size.
    """
    if requested != "auto":
        return requested, f"{requested} as requested"
    import torch

    own = getattr(base_config, "dtype", None) or getattr(base_config, "torch_dtype", None)
    name = str(own).removeprefix("torch.") if own is not None else None
    if name in ("bfloat16", "float32"):
        return name, f"auto: the base checkpoint is {name}"
    if isinstance(own, torch.dtype) or name:
        return "bfloat16", f"auto: the base checkpoint is {name}; bfloat16 keeps its range (Qwen2 overflows in float16)"
    return "bfloat16", "auto: the base checkpoint's dtype is not recorded; bfloat16 is DeepSeek-R1-Distill's own"


def merge_adapter(loaded: LoadedModel, adapter_dir: Path, save_dtype: str):
    """Merge the adapter of ``loaded`` (a :class:`coalqa.ask.LoadedModel` with a ``PeftModel``) into its base.

    The adapter is removed from ``loaded.model`` (which is unusable afterwards), a 4-bit base is dequantized to
    float32 and a full-precision one cast to float32, the adapter is loaded again on it and merged.

    Returns:
        ``(model, method)``: a plain ``PreTrainedModel`` in ``save_dtype``; ``method`` is
        ``"dequantize-then-merge"`` or ``"merge"``.

    Raises:
        CoalqaError: the adapter cannot be applied to the dequantized base.
    """
    import torch
    from peft import PeftModel

    base = loaded.model.unload()  # the base alone, adapter layers removed (not merged)
    if loaded.load_in_4bit:
        base = base.dequantize(dtype=torch.float32)
        method = "dequantize-then-merge"
    else:
        base = base.to(torch.float32)
        method = "merge"
    with warnings.catch_warnings():  # PEFT calls a transformers API that is deprecated in v5
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload(progressbar=True)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CoalqaError(f"cannot merge adapter {adapter_dir} into its base: {e}") from e
    return model.to(getattr(torch, save_dtype)).eval(), method


def save_merged(model, tokenizer: PreTrainedTokenizerBase, fmt, folder: Path, adapter_dir: Path, eos_ids: list[int]) -> None:
    """Write ``folder``: safetensors weights, ``config.json``, tokenizer + chat template, serving defaults.

    ``generation_config.json`` carries sampling with temperature 0.6, top_p 0.95 and the EOS ids;
    :data:`SAVED_FORMAT_FILE` records the adapter's prompt format (template, think policy, system prompt) so that
    ``coalqa ask --model_name_or_path FOLDER`` prompts the merged model as it was trained; the adapter's
    ``train_config.yaml``, ``provenance.json`` and ``run_card.md`` are copied for traceability.
    The folder is written as ``.<name>.partial`` and renamed when complete.
    """
    from transformers import GenerationConfig

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=SERVING_TEMPERATURE,
        top_p=SERVING_TOP_P,
    )
    model.save_pretrained(partial, safe_serialization=True)
    share_saved_weights(partial)
    tokenizer.save_pretrained(partial)
    record = {"prompt_format": fmt.model_dump(), "adapter": str(adapter_dir.resolve())}
    (partial / SAVED_FORMAT_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for name in COPIED_RECORDS:
        if (adapter_dir / name).is_file():
            shutil.copy2(adapter_dir / name, partial / name)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)


def eos_ids_of(tokenizer: PreTrainedTokenizerBase, model) -> list[int]:
    """EOS ids of the tokenizer and the model's generation config (sorted, no ``None``)."""
    ids = {tokenizer.eos_token_id}
    own = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(own if isinstance(own, list) else [own])
    ids.discard(None)
    if not ids:
        raise CoalqaError("the tokenizer has no EOS token: a served model would never stop")
    return sorted(ids)


def greedy_and_logits(model, prompts: list[list[int]], tokens: int, eos_ids: list[int], pad_id: int,
                      forced: list[list[int]] | None = None, desc: str | None = None) -> tuple[list[list[int]], list]:
    """Greedy continuations of ``prompts`` and the float32 logits over ``prompt + continuation``.

    Args:
        forced: continuations to score instead of the model's own (teacher forcing); the greedy ones are
            still generated and returned.
        desc: label of a progress bar on stderr (none when ``None``).

    Returns:
        ``(continuations, logits)``: token id lists (up to ``tokens`` each, ending at EOS) and one CPU tensor
        ``[len(prompt) + len(continuation), vocab]`` per prompt.
    """
    import torch
    from transformers import GenerationConfig

    # neutral temperature/top_p: otherwise the model's own sampling defaults are merged in (and warned about)
    config = GenerationConfig(do_sample=False, max_new_tokens=tokens, eos_token_id=eos_ids, pad_token_id=pad_id,
                              temperature=1.0, top_p=1.0)
    from tqdm.auto import tqdm

    continuations, logits = [], []
    with torch.inference_mode():
        for i, ids in enumerate(tqdm(prompts, desc=desc, unit="prompt", disable=desc is None, file=sys.stderr)):
            x = torch.tensor([ids], device=model.device)
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=config)
            cont = out[0, len(ids):].tolist()
            continuations.append(cont)
            scored = ids + (forced[i] if forced is not None else cont)
            y = torch.tensor([scored], device=model.device)
            logits.append(model(input_ids=y, attention_mask=torch.ones_like(y)).logits[0].float().cpu())
    return continuations, logits


def check_prompts(tokenizer: PreTrainedTokenizerBase, fmt) -> list[list[int]]:
    """Token ids of :data:`CHECK_QUESTIONS` in the adapter's prompt format (:func:`coalqa.template.encode_prompt`)."""
    return [encode_prompt(tokenizer, q, fmt) for q in CHECK_QUESTIONS]


def compare(reference: tuple[list, list], merged: tuple[list, list], tokenizer: PreTrainedTokenizerBase, tokens: int) -> CheckResult:
    """Compare ``(continuations, logits)`` of base + adapter with those of the merged model (same prompts)."""
    ref_cont, ref_logits = reference
    new_cont, new_logits = merged
    diffs = [(a - b).abs() for a, b in zip(ref_logits, new_logits)]
    items = [
        {
            "question": q,
            "base_plus_adapter": tokenizer.decode(a, skip_special_tokens=False),
            "merged": tokenizer.decode(b, skip_special_tokens=False),
            "same": a == b,
        }
        for q, a, b in zip(CHECK_QUESTIONS, ref_cont, new_cont)
    ]
    return CheckResult(
        max_abs_logit_diff=max(float(d.max()) for d in diffs),
        mean_abs_logit_diff=float(sum(float(d.sum()) for d in diffs) / sum(d.numel() for d in diffs)),
        greedy_same=sum(i["same"] for i in items),
        prompts=len(items),
        tokens=tokens,
        items=items,
    )


def free_memory() -> None:
    """Return the memory of models no longer referenced (CPU and GPU) before the next one is loaded."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
