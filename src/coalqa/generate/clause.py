"""The offline ``clause`` generator: questions from a chunk's structure, answers = its text verbatim.

No API, no randomness: the same chunks always give the same pairs. Questions name the document
title, the article/clause locator and, when known, the chapter heading, e.g.
``《煤矿防治水规定》第五十八条是如何规定的？``. A text longer than ``max_answer_chars`` is split
at sentence ends (。！？；or a line break) into parts of at most that many characters, each its
own pair citing the same locator with ``（第i部分，共n部分）``; nothing is dropped, and a sentence
is cut only when it alone exceeds the limit (then at a comma, or as a last resort at the limit).
"""

from __future__ import annotations

import re
from typing import Any

_SENTENCE = re.compile(r"(?<=[。！？；!?;\n])")
_CLAUSE = re.compile(r"(?<=[，、,：:])")


def _pieces(text: str, limit: int) -> list[str]:
    """``text`` cut after sentence ends, then commas, then hard at ``limit``; no piece exceeds it."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        if len(sentence) <= limit:
            out.append(sentence)
            continue
        for clause in _CLAUSE.split(sentence):
            out.extend(clause[i : i + limit] for i in range(0, len(clause), limit))
    return [p for p in out if p]


def split_text(text: str, limit: int) -> list[str]:
    """Greedily pack sentence pieces into parts of at most ``limit`` characters.

    ``"".join(split_text(t, n)) == t`` always holds: only the boundaries move. Each part is
    stripped of surrounding whitespace afterwards by the caller's validation.
    """
    if len(text) <= limit:
        return [text]
    parts, current = [], ""
    for piece in _pieces(text, limit):
        if current and len(current) + len(piece) > limit:
            parts.append(current)
            current = ""
        current += piece
    if current:
        parts.append(current)
    return parts


def _title(chunk: dict[str, Any]) -> str:
    title = str(chunk.get("title") or chunk.get("source") or "").strip()
    title = re.sub(r"\.(txt|docx?|pdf|md)$", "", title, flags=re.I)
    return title.strip("《》 ")


def clause_pairs(chunk: dict[str, Any], max_answer_chars: int, max_question_chars: int = 120,
                 occurrence: int = 0) -> list[dict[str, str]]:
    """Deterministic ``{"input", "output"}`` pairs for one chunk (see the module docstring).

    Phrasings: ``《T》L是如何规定的？`` always; plus ``根据《T》，H中L的内容是什么？`` when the
    chunk has a heading H (its innermost level) that fits in ``max_question_chars``, else
    ``《T》L的原文是什么？``. Without a locator, L is ``关于“<opening words>”的条文``. When an
    earlier chunk of the list had the same title and locator (``occurrence`` > 0: appendices,
    explanatory notes that reuse clause numbers), L also quotes the opening words, so that the
    questions stay distinct and no text is lost to de-duplication.
    """
    text = str(chunk.get("text") or "").strip()
    if not text:
        return []
    title, locator = _title(chunk), str(chunk.get("locator") or "").strip()
    heading = str(chunk.get("heading") or "").split(" / ")[-1].strip()
    if heading and (heading in locator or locator in heading):
        heading = ""
    opening = re.split(r"[，。；：,;:\n]", text, maxsplit=1)[0][:20].strip()
    if not locator:  # no article number: point at the text by its opening words
        locator = f"关于“{opening}”的条文"
    elif occurrence:
        locator = f"{locator}（以“{opening}”开头的部分）"
    parts = split_text(text, max_answer_chars)
    pairs = []
    for i, part in enumerate(parts, 1):
        where = f"{locator}（第{i}部分，共{len(parts)}部分）" if len(parts) > 1 else locator
        second = f"根据《{title}》，{heading}中{where}的内容是什么？"
        if not heading or len(second) > max_question_chars:
            second = f"《{title}》{where}的原文是什么？"
        for question in (f"《{title}》{where}是如何规定的？", second):
            pairs.append({"input": question, "output": part.strip()})
    return pairs


def occurrences(chunks: list[dict[str, Any]]) -> dict[str, int]:
    """``{chunk id: how many earlier chunks share its (title, locator)}``, in list order."""
    seen: dict[tuple[str, str], int] = {}
    out = {}
    for c in chunks:
        key = (_title(c), str(c.get("locator") or "").strip())
        out[c["id"]] = seen.get(key, 0)
        seen[key] = out[c["id"]] + 1
    return out
