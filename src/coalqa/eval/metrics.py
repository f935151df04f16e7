"""Answer-quality metrics for Chinese: character ROUGE-L, BLEU-4 and key-fact recall.

Tokenisation (stated in every report): the text is NFKC-normalised, whitespace is removed and each
remaining character is one token (``char``, the default), or the text is cut into words by
``jieba`` (``jieba``). Character level is the usual honest choice for Chinese: it needs no word
segmenter whose mistakes would move the score, and partial matches of technical terms still count.

Scores come from well-kept libraries fed our token lists:

* ROUGE-L F1 — ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], tokenizer=...)``; its default
  tokenizer keeps only ``[a-z0-9]`` and so silently scores every Chinese answer 0, hence the custom
  tokenizer;
* BLEU-4 — ``nltk.translate.bleu_score.sentence_bleu`` with smoothing method 1 (Chen & Cherry, 2014)
  and ``auto_reweigh`` (a hypothesis shorter than 4 tokens is scored on the n-grams it has), so an
  answer identical to the reference scores 1.0 at any length;
* key-fact recall — the fraction of the reference's ``key_facts`` found in the answer, written as they are
  or in other units and number forms (:func:`find_key_facts`).

All three are in [0, 1]; an empty answer scores 0 on each.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

Tokenization = Literal["char", "jieba"]
TOKENIZATION_NOTE = {
    "char": "NFKC-normalised, whitespace removed, one token per character",
    "jieba": "NFKC-normalised, segmented into words with jieba, whitespace tokens dropped",
}


def normalize_for_matching(text: str) -> str:
    """NFKC-normalise, casefold and drop all whitespace: ``"１１ H"`` → ``"11h"``, ``"m³"`` → ``"m3"``."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text or "").casefold())


def tokenize(text: str, tokenization: Tokenization = "char") -> list[str]:
    """Tokens of ``text`` for ROUGE/BLEU (see the module docstring); ``[]`` for empty text."""
    if tokenization == "char":
        return list(normalize_for_matching(text))
    if tokenization == "jieba":
        import jieba

        jieba.setLogLevel(60)  # its "Building prefix dict" lines are noise on stderr
        return [t for t in jieba.lcut(unicodedata.normalize("NFKC", text or "").casefold()) if t.strip()]
    raise ValueError(f"unknown tokenization {tokenization!r}; expected char or jieba")


class _Tokenizer:
    """The object ``rouge_score`` wants: anything with ``tokenize(text) -> list[str]``."""

    def __init__(self, tokenization: Tokenization) -> None:
        self.tokenization = tokenization

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.tokenization)


@lru_cache(maxsize=4)
def _rouge_scorer(tokenization: Tokenization):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer(tokenization))


def rouge_l(prediction: str, reference: str, tokenization: Tokenization = "char") -> float:
    """ROUGE-L F1 (longest common subsequence of tokens) of ``prediction`` against ``reference``."""
    return float(_rouge_scorer(tokenization).score(reference, prediction)["rougeL"].fmeasure)


def bleu4(prediction: str, reference: str, tokenization: Tokenization = "char") -> float:
    """Sentence BLEU-4 with smoothing method 1 (see the module docstring); 0.0 for an empty side."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, ref = tokenize(prediction, tokenization), tokenize(reference, tokenization)
    if not hyp or not ref:
        return 0.0
    return float(sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1, auto_reweigh=True))


def _fact_pattern(fact: str) -> re.Pattern[str]:
    """Regex for a normalised fact; a number may not continue into more digits on either side.

    ``"30℃"`` must not match inside ``"130℃"``, nor ``"1.0%"`` inside ``"11.0%"``, nor ``"0.74"``
    inside ``"0.745"``: in a safety answer a different number is a wrong answer.
    """
    body = re.escape(fact)
    if fact[0].isdigit():
        body = r"(?<![\d.])" + body
    if fact[-1].isdigit():
        body += r"(?!\.?\d)"
    return re.compile(body)


KEY_FACT_NOTE = (
    "a key fact is found when it occurs in the answer as written (NFKC, casefold, whitespace removed) or with "
    "every quantity of both rewritten in base units by coalqa.numbers.canonical_text (11小时 = 11h, 30摄氏度 = 30℃, "
    "1% = 1.0%, 三次 = 3次); numbers match whole (30℃ is not found in 130℃)"
)


def find_key_facts(answer: str, key_facts: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``key_facts`` into ``(found, missed)`` for ``answer``.

    A fact is found when it occurs in the answer, with the number boundaries of :func:`_fact_pattern`
    (``30℃`` is not in ``130℃``), in either of two forms of both texts:

    * as written: NFKC-normalised, casefolded, whitespace removed (``％``/``%``, ``４``/``4``, ``m³``/``m3``,
      ``11 h``/``11h`` match);
    * with every quantity in base units, :func:`coalqa.numbers.canonical_text` (``11小时``/``11h``/``660分钟``,
      ``30摄氏度``/``30℃``, ``1%``/``1.0%``, ``三次``/``3次``, ``五年``/``5年`` match; the aliases are
      :func:`coalqa.numbers.unit_table_markdown`'s table, printed in every report).

    The second form only adds matches to the first, so a fact found before units were normalised is still
    found. Facts that normalise to nothing are ignored.
    """
    from coalqa.numbers import canonical_text

    text, canon = normalize_for_matching(answer), None
    found, missed = [], []
    for fact in key_facts:
        norm = normalize_for_matching(fact)
        if not norm:
            continue
        hit = _fact_pattern(norm).search(text) is not None
        if not hit:
            canon = canonical_text(answer) if canon is None else canon
            fact_canon = canonical_text(fact)
            hit = bool(fact_canon) and _fact_pattern(fact_canon).search(canon) is not None
        (found if hit else missed).append(fact)
    return found, missed


def key_fact_recall(answer: str, key_facts: Sequence[str]) -> float | None:
    """Fraction of ``key_facts`` found in ``answer`` (:func:`find_key_facts`); ``None`` when there are none."""
    found, missed = find_key_facts(answer, key_facts)
    total = len(found) + len(missed)
    return len(found) / total if total else None


def score_answer(
    answer: str, reference: str, key_facts: Sequence[str] | None = None, tokenization: Tokenization = "char"
) -> dict:
    """All metrics for one answer.

    Returns:
        ``{"rouge_l", "bleu4", "key_fact_recall", "facts_found", "facts_missed"}``; the key-fact
        entries are ``None`` when the reference has no key facts (e.g. a held-out QA file).
    """
    out = {"rouge_l": rouge_l(answer, reference, tokenization), "bleu4": bleu4(answer, reference, tokenization)}
    if key_facts:
        found, missed = find_key_facts(answer, key_facts)
        total = len(found) + len(missed)
        out |= {"key_fact_recall": len(found) / total if total else None, "facts_found": found, "facts_missed": missed}
    else:
        out |= {"key_fact_recall": None, "facts_found": None, "facts_missed": None}
    return out
