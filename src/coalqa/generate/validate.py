"""Keep only usable, faithful pairs.

Usable (:func:`check_pair`): non-empty strings within length bounds, answers that are not refusals.
Faithful to their chunk (:func:`check_faithful`): every number-with-unit the answer states occurs in the chunk
(compared by :func:`coalqa.numbers.unsupported_quantities`: NFKC, unit-aware, Chinese numerals, so ``11h`` in the
answer is supported by ``11小时`` in the chunk), up to ``max_numbers_not_in_chunk`` derived numbers; and the answer
is written in the chunk's language (:func:`text_language`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from coalqa.generate.config import GenerateConfig
from coalqa.numbers import unsupported_quantities

# Refusals and "the text does not say" non-answers, Chinese and English. Anchored or specific on
# purpose: regulations legitimately say "无法撤离时…", so a bare "无法" is not a refusal.
_REFUSAL = re.compile(
    r"^\s*(?:很?抱歉|对不起|不好意思|sorry|i'?m sorry|i apologi[sz]e|i cannot|i can'?t|as an ai)"
    r"|作为一?个?(?:ai|人工智能|语言模型|大模型)"
    r"|(?:无法|不能)(?:回答|提供(?:相关|该|此)?(?:信息|答案|回答))"
    r"|(?:文本|材料|原文|上文|所给内容)中?(?:并?没有|未)(?:提及|提到|涉及|给出|说明)",
    re.IGNORECASE,
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


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{4,}")  # words, not units or codes (m3, MPa, GB, CH4)
LANGUAGE_NAMES = {"zh": "Chinese", "en": "a Latin-script language"}


@lru_cache(maxsize=4096)  # chunk texts repeat for every pair of the chunk
def text_language(text: str) -> str | None:
    """``"zh"`` (Chinese), ``"en"`` (Latin script) or ``None`` (nothing to tell by).

    Counts Chinese characters and the letters of Latin words of four letters or more (so units and codes such
    as ``m/s``, ``MPa``, ``GB``, ``CH4`` count for nothing); one Chinese character weighs as three Latin letters,
    so a Chinese sentence quoting ``Standard`` stays Chinese and an English one quoting ``每班`` stays English.
    ``20%`` or ``4m/s`` alone give ``None``.
    """
    cjk = len(_CJK.findall(text))
    latin = sum(len(w) for w in _LATIN_WORD.findall(text))
    if not cjk and not latin:
        return None
    return "zh" if 3 * cjk >= latin else "en"


def check_faithful(pair: dict[str, Any], chunk_text: str, cfg: GenerateConfig) -> tuple[str, str] | None:
    """Return ``(reason, detail)`` when the answer of ``pair`` is not faithful to ``chunk_text``, else ``None``.

    Reasons:
        ``number_not_in_chunk``: the answer states more than ``cfg.max_numbers_not_in_chunk`` quantities that the
            chunk does not (detail: ``"15天, 18%"``, as written in the answer);
        ``language``: with ``cfg.check_language``, the answer's language differs from the chunk's
            (detail: ``"answer en, chunk zh"``).
    Expects a pair that passed :func:`check_pair` (string answer).
    """
    answer = pair["output"]
    missing = unsupported_quantities(answer, [chunk_text])
    if len(missing) > cfg.max_numbers_not_in_chunk:
        return "number_not_in_chunk", ", ".join(q.text for q in missing)
    if cfg.check_language:
        a, c = text_language(answer), text_language(chunk_text)
        if a and c and a != c:
            return "language", f"answer {a}, chunk {c}"
    return None
