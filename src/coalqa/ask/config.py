"""Settings of ``coalqa ask`` (loading + generation), declared once with their help text.

Sampling defaults follow DeepSeek-R1's published usage recommendations (model card of
``deepseek-ai/DeepSeek-R1`` / ``DeepSeek-R1-Distill-Qwen-1.5B``, "Usage Recommendations"):
temperature in 0.5–0.7 with 0.6 recommended, and top-p 0.95. Temperature 0 means greedy decoding.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from coalqa.retrieval.config import GroundingConfig


class AskConfig(GroundingConfig):
    """Every knob of the ask stage; defaults < ``--config`` YAML < command-line flags.

    The grounding settings (``index``, ``context_k``, ``min_score``, ...) are :class:`GroundingConfig`'s.

    Loading settings (``model_name_or_path``, ``load_in_4bit``, ``dtype``) are used by the command
    when it calls :func:`coalqa.ask.load_model`; :func:`coalqa.ask.answer` reads the generation
    settings only. ``None`` means "as recorded in the adapter's ``train_config.yaml``".
    """

    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str | None = Field(
        None, description="base model (Hub id or folder); default: the base recorded in the adapter's train_config.yaml"
    )
    load_in_4bit: bool | None = Field(
        None, description="load the base in 4-bit NF4 (bitsandbytes); default: as the adapter was trained (use_4bit)"
    )
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto",
        description="weights/compute dtype (4-bit: the compute dtype); auto: bfloat16 on GPUs that support it and on "
        "CPUs with native bf16 (AVX512_BF16/AMX), else float32",
    )
    system_prompt: str | None = Field(
        None, description="system prompt for every question ('' = none); default: the one the adapter was trained "
        "with; a base model without an adapter gets none (DeepSeek recommends no system prompt for R1 models)",
    )
    temperature: float = Field(0.6, ge=0, le=2, description="sampling temperature (DeepSeek-R1: 0.5-0.7, 0.6 recommended); 0 = greedy")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling threshold (DeepSeek-R1: 0.95)")
    do_sample: bool | None = Field(None, description="sample (true) or greedy (false); default: sample when temperature > 0")
    # 1024 new tokens: trained answers are capped at 1024 characters by `coalqa generate` (≈ 700 Qwen2
    # tokens of Chinese) plus the empty <think> block; a longer reasoning of the untuned base is cut and
    # reported as finished_reasoning=False rather than running for minutes on a CPU.
    max_new_tokens: int = Field(1024, ge=1, description="most tokens generated per answer (reasoning included)")
    batch_size: int = Field(8, ge=1, description="questions generated together in batch mode (left padding)")
    show_think: bool = Field(False, description="show the model's <think> reasoning as well as the answer")
    seed: int | None = Field(0, description="random seed set before generating (sampling only); none = unseeded")

    @model_validator(mode="after")
    def _greedy_needs_no_temperature(self) -> AskConfig:
        if self.do_sample and self.temperature == 0:
            raise ValueError("do_sample true needs temperature > 0 (temperature 0 means greedy decoding)")
        return self

    @property
    def sampling(self) -> bool:
        """True when tokens are sampled, False for greedy decoding."""
        return self.temperature > 0 if self.do_sample is None else self.do_sample

    def generation_settings(self) -> dict:
        """The settings that change what is generated (recorded beside results, compared on resume)."""
        if not self.sampling:  # greedy: temperature, top_p and seed play no part
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        keys = ("temperature", "top_p", "max_new_tokens", "seed")
        return {"do_sample": True, **{k: getattr(self, k) for k in keys}}

    def grounding_settings(self) -> dict:
        """The grounding settings (recorded beside results, compared on resume); ``{}`` without an index."""
        if self.index is None:
            return {}
        return self.model_dump(mode="json", include=set(GroundingConfig.model_fields))
