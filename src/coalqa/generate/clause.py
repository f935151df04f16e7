"""The offline ``clause`` generator: questions from a chunk's structure, answers = its text verbatim.

No API, no randomness: the same chunks always give the same pairs. Two kinds of pairs:

- ``article``: the whole text of the article/clause. Questions name the document title, the
  article/clause locator and, when known, the chapter heading, e.g.
  ``《煤矿防治水规定》第五十八条是如何规定的？``. A text longer than ``max_answer_chars`` is split
  at sentence ends (。！？；or a line break) into parts of at most that many characters, each its
  own pair citing the same locator with ``（第i部分，共n部分）``; nothing is dropped, and a sentence
  is cut only when it alone exceeds the limit (then at a comma, or as a last resort at the limit).
- ``fact``: one short answer per sentence that states a number (a limit, a time, a count: what a
  safety answer must get right), asked two ways: as a cloze question, the sentence with each number
  replaced by ``多少`` (a Chinese numeral before a measure word by ``几``), and by its topic (the
  words before the first number). E.g. from ``发出的矿灯，最低应当能连续正常使用11h。``:
  ``根据《煤矿建设安全规程》第四百七十一条，发出的矿灯，最低应当能连续正常使用多少h？`` and
  ``《煤矿建设安全规程》第四百七十一条关于“发出的矿灯”有什么规定？``, both answered with the
  sentence. An item of a list (``1.``, ``（一）``, ``a)``) is prefixed with the sentence that
  introduced the list (``……检查次数如下：高瓦斯矿井，每班至少3次。``) so that it stands alone.
"""

from __future__ import annotations

import re
from typing import Any

from coalqa.corpus.chunking import fold_width

_SENTENCE = re.compile(r"(?<=[。！？；!?;\n])")
_CLAUSE = re.compile(r"(?<=[，、,：:])")
KINDS = ("article", "fact")
# A quantity: digits not glued to a letter (m3, CH4, s2 are units/formulas), not an ordinal (第3条),
# not a list marker (1． 2、 3) followed by text).
_NUMBER = re.compile(r"(?<![A-Za-z0-9.．第])\d+(?:\.\d+)?(?![.．、)）](?!\d))")
_MEASURE = r"个?(?:级|年|月|天|日|倍|道|次|人|名|小时|分钟|班)"
_CN_NUMBER = re.compile(rf"(?<![第])[一二三四五六七八九十两]+(?={_MEASURE})")
_CN_QUANTITY = re.compile(rf"(?<![第])[一二三四五六七八九十两]+{_MEASURE}")
# List markers, one group per style: （一） (1) 1. 1、 a) 一、 ——
_ITEM = re.compile(r"^\s*(?:(?P<cn_paren>[（(][一二三四五六七八九十]+[）)])|(?P<paren>[（(]\d+[）)])|(?P<dot>\d+[.．、)）](?!\d))"
                   r"|(?P<letter>[a-zA-Z][.．]?[)）])|(?P<cn>[一二三四五六七八九十]+、)|(?P<dash>[—\-]{1,2}))\s*")
_LEADING_LOCATOR = re.compile(r"^\s*(?:第[一二三四五六七八九十百千零〇]+条|\d+(?:\.\d+)+)\s*")


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
    title = re.sub(r"\.(txt|docx?|pdf|md)$", "", title, flags=re.IGNORECASE)
    return title.strip("《》 ")


def _opening(text: str) -> str:
    """The first words of ``text`` (up to the first punctuation, at most 20 characters), to point at it."""
    return re.split(r"[，。；：,;:\n]", text, maxsplit=1)[0][:20].strip()


def quantities(text: str) -> list[str]:
    """The numbers ``text`` states, as written, in order, without repeats: ``"在20h内排出24h的涌水量，不小于70％"`` →
    ``["20", "24", "70"]``. Unit exponents (``m3``), ordinals (``第3条``) and list markers (``1．``) are not
    quantities; Chinese numerals are, with their measure word (``三级`` → ``"三级"``)."""
    found = [text[m.start() : m.end()] for m in _NUMBER.finditer(fold_width(text))]
    found += [m.group() for m in _CN_QUANTITY.finditer(text)]
    return list(dict.fromkeys(found))


def _states_number(text: str) -> bool:
    return bool(_NUMBER.search(fold_width(text)) or _CN_NUMBER.search(text))


def _cloze(text: str) -> str:
    """``text`` with every quantity asked for: digits → ``多少``, ``三级``/``五年`` → ``几级``/``几年``."""
    out, last = [], 0
    for m in _NUMBER.finditer(fold_width(text)):  # matched width-folded (３０ｍ３ reads as 30m3), replaced in place
        out += [text[last : m.start()], "多少"]
        last = m.end()
    return _CN_NUMBER.sub("几", "".join(out) + text[last:])


def _topic(text: str) -> str:
    """The words before the first quantity, up to the last comma before it (``发出的矿灯，最低…11h`` → ``发出的矿灯``)."""
    first = min((m.start() for m in (_NUMBER.search(fold_width(text)), _CN_NUMBER.search(text)) if m), default=len(text))
    head = text[:first]
    cut = max(head.rfind("，"), head.rfind(","))
    return (head[:cut] if cut >= 4 else head).strip("，,：:、 ")


def _strip(rx: re.Pattern[str], text: str) -> str:
    """``text`` without what ``rx`` matches at its start, matched width-folded (``６．２．１`` is a clause number)."""
    m = rx.match(fold_width(text))
    return text[m.end():] if m else text


def fact_sentences(text: str, limit: int) -> list[str]:
    """The sentences of ``text`` that state a quantity, cleaned to stand alone, each ≤ ``limit`` characters.

    End punctuation, list markers (``1.``, ``（一）``, ``a)``, ``——``) and a leading article/clause
    number are removed; a list item gets the sentence that introduced the list (ending in ``：``)
    in front, joined by ``：``; a longer sentence is cut at commas (:func:`split_text`) and each
    part stating a quantity kept. Returns them in text order, without repeats.
    """
    out: list[str] = []
    lead, lead_style = "", None  # the sentence introducing a list, and the marker style of its items
    for raw in _SENTENCE.split(text):
        sentence = raw.strip().rstrip("。；;！？!?").strip()
        if not sentence:
            continue
        sentence = _strip(_LEADING_LOCATOR, sentence)
        item = _ITEM.match(fold_width(sentence))
        style = item.lastgroup if item else None
        body = _strip(_LEADING_LOCATOR, _strip(_ITEM, sentence)).strip()
        if body.endswith((":", "：")):
            lead, lead_style = body.rstrip(":：").strip(), None
            continue
        if style is None or (lead_style is not None and style != lead_style):
            lead = ""  # prose, or a sibling of the list's own heading item: the list has ended
        elif lead_style is None:
            lead_style = style
        if not _states_number(body):
            continue
        if style and lead:
            body = f"{lead}：{body}"
        for part in split_text(body, limit):
            part = part.strip().strip("，,")
            if len(part) >= 6 and _states_number(part) and part not in out:
                out.append(part)
    return out


def fact_pairs(chunk: dict[str, Any], max_answer_chars: int, max_question_chars: int = 120,
               occurrence: int = 0) -> list[dict[str, str]]:
    """``{"input", "output"}`` pairs asking for the quantities a chunk states (see the module docstring).

    Each sentence from :func:`fact_sentences` gives a cloze pair and, when its topic has at least
    4 characters, a topic pair; the answer is the sentence with ``。``. Sentences are cut so that
    the cloze question fits ``max_question_chars`` and the answer ``max_answer_chars``.
    """
    text = str(chunk.get("text") or "").strip()
    if not text:
        return []
    title, locator = _title(chunk), str(chunk.get("locator") or "").strip()
    if occurrence:
        locator = f"{locator}（以“{_opening(text)}”开头的部分）"
    prefix = f"根据《{title}》{locator}，"
    limit = min(max_answer_chars - 1, max_question_chars - len(prefix) - 1)
    pairs = []
    for sentence in fact_sentences(text, max(limit, 20)):
        answer = f"{sentence}。"
        question = f"{prefix}{_cloze(sentence)}？"
        if len(question) <= max_question_chars and len(answer) <= max_answer_chars:
            pairs.append({"input": question, "output": answer})
        topic = _topic(sentence)
        question = f"《{title}》{locator}关于“{topic}”有什么规定？"
        if len(topic) >= 4 and len(question) <= max_question_chars and len(answer) <= max_answer_chars:
            pairs.append({"input": question, "output": answer})
    return pairs


def clause_pairs(chunk: dict[str, Any], max_answer_chars: int, max_question_chars: int = 120,
                 occurrence: int = 0, kinds: tuple[str, ...] = ("article",)) -> list[dict[str, str]]:
    """Deterministic ``{"input", "output"}`` pairs for one chunk (see the module docstring).

    ``kinds``: which pairs, ``"article"`` (below) and/or ``"fact"`` (:func:`fact_pairs`), in that order.

    Phrasings: ``《T》L是如何规定的？`` always; plus ``根据《T》，H中L的内容是什么？`` when the
    chunk has a heading H (its innermost level) that fits in ``max_question_chars``, else
    ``《T》L的原文是什么？``. Without a locator, L is ``关于“<opening words>”的条文``. When an
    earlier chunk of the list had the same title and locator (``occurrence`` > 0: appendices,
    explanatory notes that reuse clause numbers), L also quotes the opening words, so that the
    questions stay distinct and no text is lost to de-duplication.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown clause pair kind(s) {sorted(unknown)}; expected some of {KINDS}")
    facts = fact_pairs(chunk, max_answer_chars, max_question_chars, occurrence) if "fact" in kinds else []
    if "article" not in kinds:
        return facts
    text = str(chunk.get("text") or "").strip()
    if not text:
        return []
    title, locator = _title(chunk), str(chunk.get("locator") or "").strip()
    heading = str(chunk.get("heading") or "").split(" / ")[-1].strip()
    if heading and (heading in locator or locator in heading):
        heading = ""
    opening = _opening(text)
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
    return pairs + facts


def occurrences(chunks: list[dict[str, Any]]) -> dict[str, int]:
    """``{chunk id: how many earlier chunks share its (title, locator)}``, in list order."""
    seen: dict[tuple[str, str], int] = {}
    out = {}
    for c in chunks:
        key = (_title(c), str(c.get("locator") or "").strip())
        out[c["id"]] = seen.get(key, 0)
        seen[key] = out[c["id"]] + 1
    return out
