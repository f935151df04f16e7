"""Keep only usable pairs: non-empty strings within length bounds, answers that are not refusals."""

from __future__ import annotations

import re
from typing import Any

from coalqa.generate.config import GenerateConfig

# Refusals and "the text does not say" non-answers, Chinese and English. Anchored or specific on
# purpose: regulations legitimately say "无法撤离时…", so a bare "无法" is not a refusal.
_REFUSAL = re.compile(
    r"^\s*(?:很?抱歉|对不起|不好意思|sorry|i'?m sorry|i apologi[sz]e|i cannot|i can'?t|as an ai)"
    r"|作为一?个?(?:ai|人工智能|语言模型|大模型)"
    r"|(?:无法|不能)(?:回答|提供(?:相关|该|此)?(?:信息|答案|回答))"
    r"|(?:文本|材料|原文|上文|所给内容)中?(?:并?没有|未)(?:提及|提到|涉及|给出|说明)",
    re.I,
)


def is_refusal(answer: str) -> bool:
    """True when ``answer`` refuses or says the source lacks the information."""
    return bool(_REFUSAL.search(answer))


def check_pair(pair: dict[str, Any], cfg: GenerateConfig) -> str | None:
    """Return the reason ``pair`` is unusable, or ``None`` when it is fine.

    Reasons: ``not_string``, ``empty_question``, ``empty_answer``, ``question_too_short``,
    ``question_too_long``, ``answer_too_short``, ``answer_too_long``, ``refusal``.
    Lengths count characters of the whitespace-stripped text; bounds are inclusive.
    """
    q, a = pair.get("input"), pair.get("output")
    if not isinstance(q, str) or not isinstance(a, str):
        return "not_string"
    q, a = q.strip(), a.strip()
    if not q:
        return "empty_question"
    if not a:
        return "empty_answer"
    if len(q) < cfg.min_question_chars:
        return "question_too_short"
    if len(q) > cfg.max_question_chars:
        return "question_too_long"
    if len(a) < cfg.min_answer_chars:
        return "answer_too_short"
    if len(a) > cfg.max_answer_chars:
        return "answer_too_long"
    if is_refusal(a):
        return "refusal"
    return None
