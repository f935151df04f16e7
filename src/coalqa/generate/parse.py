"""Recover QA pairs from whatever an LLM replied, and say what could not be used.

Handles, in order: ``<think>…</think>`` reasoning blocks (also an unopened ``…</think>``, as
R1-style templates emit), markdown code fences, prose before/after the JSON, a truncated reply
(complete pairs are kept, the cut-off tail is dropped), JSON Lines, invalid JSON that
``json-repair`` can mend (unescaped quotes, trailing commas, single quotes), JSON syntax written in full-width
punctuation (``“input”：“…”，`` between members; :func:`ascii_json_syntax`), a dict wrapping the
list (``{"data": [...]}``), parallel lists (``{"questions": [...], "answers": [...]}``), and common
key aliases (question/answer, instruction/output, q/a, 问题/答案).
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair

QUESTION_KEYS = ("input", "question", "instruction", "q", "query", "prompt", "问题", "提问")
ANSWER_KEYS = ("output", "answer", "a", "response", "reply", "答案", "回答")

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", re.MULTILINE)


def problem(reason: str, detail: str) -> dict[str, str]:
    """One unusable item: a short machine ``reason`` and a human ``detail`` (clipped)."""
    return {"reason": reason, "detail": detail[:300]}


def clean_reply(text: str) -> str:
    """Drop reasoning blocks and code-fence lines; return the rest, stripped."""
    text = _THINK.sub("", text or "")
    if "</think>" in text.lower():  # opening tag was in the prompt (R1 template): keep what follows
        text = re.split(r"</think>", text, flags=re.IGNORECASE)[-1]
    if re.match(r"\s*<think>", text, re.IGNORECASE):  # reasoning never closed: the reply was cut inside it
        return ""
    return _FENCE.sub("", text).strip()


def _decode(text: str) -> tuple[Any, list[dict[str, str]]]:
    """Find the JSON value in ``text``; returns (value or None, problems)."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        return None, [problem("unparseable", f"no JSON found in reply: {text[:120]!r}")]
    body = text[min(starts):]
    problems: list[dict[str, str]] = []
    end = max(body.rfind("]"), body.rfind("}"))
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if len(lines) > 1 and all(ln.startswith("{") for ln in lines):  # JSON Lines
        items = []
        for n, ln in enumerate(lines, 1):
            if not ln.endswith("}"):
                problems.append(problem("truncated", f"line {n} is incomplete: {ln[:80]!r}"))
                continue
            items.append(json_repair.loads(ln))
        return items, problems
    try:  # fast path: valid JSON, maybe followed by prose
        return json.JSONDecoder().raw_decode(body)[0], problems
    except json.JSONDecodeError:
        pass
    last_close = body.rfind("}")
    if not body.rstrip().endswith(("]", "}")) and last_close >= 0:
        # cut off mid-array: keep what precedes the last complete object
        dropped = body[last_close + 1 :].strip(" \n\t,")
        if dropped:
            problems.append(problem("truncated", f"reply cut off; dropped incomplete tail {dropped[:80]!r}"))
        body = body[: last_close + 1]
        end = last_close
    value = json_repair.loads(body[: end + 1] if end > 0 else body)
    if value in ("", None, [], {}):
        return None, problems + [problem("unparseable", f"not repairable as JSON: {body[:120]!r}")]
    return value, problems


def _items(value: Any) -> list[Any]:
    """The list of candidate pair objects inside a decoded value."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        qkey, question = _pick(value, QUESTION_KEYS)
        if qkey and not isinstance(question, list):
            return [value]  # a single pair
        _, qs = _pick(value, ("questions", "inputs") + QUESTION_KEYS)
        _, ans = _pick(value, ("answers", "outputs") + ANSWER_KEYS)
        if isinstance(qs, list) and isinstance(ans, list):  # parallel lists
            return [{"input": q, "output": a} for q, a in zip(qs, ans, strict=False)]
        for v in value.values():  # {"data": [...]}, {"qa_pairs": [...]}, ...
            if isinstance(v, list) and any(isinstance(x, dict) for x in v):
                return v
    return [value]


def _pick(obj: dict, names: tuple[str, ...]) -> tuple[str | None, Any]:
    lower = {str(k).strip().lower(): k for k in obj}
    for name in names:
        if name in lower:
            return name, obj[lower[name]]
    return None, None


_FULL_WIDTH_SYNTAX = {"，": ",", "：": ":", "［": "[", "］": "]", "｛": "{", "｝": "}"}
_FULL_WIDTH_QUOTES = "“”"
_CLOSES_STRING = re.compile(
    r"\s*(?:$|[}\]｝］]"  # the end of an object or list
    r"|[,，]\s*[\"“{｛]"  # the next member or object
    r"|[:：]\s*[\"“\[{［｛\d\-tfn])"  # a key's value
)


def _string_ends(text: str, i: int) -> bool:
    """Whether a quote at ``i - 1`` closes a JSON string: JSON syntax follows (``，“`` yes, ``，见`` no)."""
    return _CLOSES_STRING.match(text, i) is not None


def ascii_json_syntax(text: str) -> str:
    """``text`` with full-width JSON syntax outside string values written in ASCII.

    ``“input”：“…”，“output”：“…”`` becomes ``"input":"…","output":"…"``; ``［ ］ ｛ ｝ ， ：`` between members become
    ``[ ] { } , :``. String values keep every character (their ``，`` and ``“…”`` quotes are text). A string
    opened by ``“`` or ``"`` ends at a ``”``/``“``/``"`` followed by JSON syntax; ASCII quotes inside a
    full-width-quoted string are escaped.
    """
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"' or ch in _FULL_WIDTH_QUOTES:
            j = i + 1
            while j < n:
                if text[j] == "\\" and ch == '"':
                    j += 2
                    continue
                if (text[j] == '"' or text[j] in _FULL_WIDTH_QUOTES) and _string_ends(text, j + 1):
                    break
                j += 1
            body = text[i + 1 : j]
            out.append(f'"{body}"' if ch == '"' else json.dumps(body, ensure_ascii=False))
            i = j + 1
            continue
        out.append(_FULL_WIDTH_SYNTAX.get(ch, ch))
        i += 1
    return "".join(out)


def parse_pairs(text: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Parse an LLM reply into pairs.

    A reply that is not valid JSON as it stands is also read with its full-width JSON syntax written in ASCII
    (:func:`ascii_json_syntax`); the reading that yields more pairs wins.

    Returns:
        ``(pairs, problems)``: pairs are ``{"input": q, "output": a}`` with the values as found
        (validation of types and lengths is :func:`coalqa.generate.validate.check_pair`'s job);
        problems are ``{"reason", "detail"}`` dicts for what could not be used
        (``unparseable``, ``truncated``, ``not_an_object``, ``missing_fields``).
    """
    cleaned = clean_reply(text)
    if not cleaned:
        return [], [problem("unparseable", "empty reply (or only reasoning)")]
    pairs, problems = _pairs(cleaned)
    if problems or not pairs:
        fixed = ascii_json_syntax(cleaned)
        if fixed != cleaned:
            alt_pairs, alt_problems = _pairs(fixed)
            if len(alt_pairs) > len(pairs) or (len(alt_pairs) == len(pairs) and len(alt_problems) < len(problems)):
                return alt_pairs, alt_problems
    return pairs, problems


def _pairs(cleaned: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    value, problems = _decode(cleaned)
    if value is None:
        return [], problems
    pairs = []
    for n, item in enumerate(_items(value), 1):
        if not isinstance(item, dict):
            problems.append(problem("not_an_object", f"item {n} is {type(item).__name__}: {str(item)[:80]!r}"))
            continue
        qkey, question = _pick(item, ("instruction",) + QUESTION_KEYS)
        _, answer = _pick(item, ANSWER_KEYS)
        if qkey == "instruction":  # alpaca: instruction + optional context in "input"
            _, extra = _pick(item, ("input",))
            if isinstance(extra, str) and extra.strip() and isinstance(question, str):
                question = f"{question}\n{extra}"
        if question is None or answer is None:
            problems.append(problem("missing_fields", f"item {n} has keys {sorted(map(str, item))}"))
            continue
        pairs.append({"input": question, "output": answer})
    return pairs, problems
