"""Settings of ``coalqa eval``, declared once with their help text."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from coalqa.ask.config import AskConfig


class EvalConfig(AskConfig):
    """Knobs for scoring answers against references; defaults < ``--config`` YAML < flags.

    Inherits the answering settings of :class:`coalqa.ask.AskConfig` (declared there once).
    """

    model_config = ConfigDict(extra="forbid")

    tokenization: Literal["char", "jieba"] = Field(
        "char", description="ROUGE-L/BLEU-4 tokens: char (one per character, the default for Chinese) or jieba words"
    )
    # answering (only when the answers are generated here, i.e. without --predictions): the ask stage's
    # settings, with eval's defaults: greedy (reproducible scores) and shorter answers (reference answers
    # are one or two sentences; 512 tokens leave room for a reasoning model's think block).
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature; 0 = greedy, reproducible (default for eval)")
    max_new_tokens: int = Field(512, ge=1, description="longest generated answer in tokens (reasoning included)")
    limit: int | None = Field(None, ge=1, description="only the first N references (a quick trial)")
    # optional LLM-as-judge, through the generate stage's provider layer
    judge: bool = Field(False, description="also ask an LLM to grade each answer 1-5 against the reference (needs an API key)")
    judge_provider: Literal["zhipuai", "openai"] = Field(
        "zhipuai", description="judge provider: zhipuai (ZHIPUAI_API_KEY) or openai-compatible (OPENAI_API_KEY)"
    )
    judge_model: str = Field("glm-4", description="judge model name sent to the API")
    judge_base_url: str | None = Field(None, description="judge API base URL (default: the SDK's)")
    judge_concurrency: int = Field(4, ge=1, le=64, description="judge requests in parallel")
