"""Exact and near-duplicate questions, within and across chunks (first occurrence wins).

Questions are normalised (NFKC, lower case, letters and digits only). Exact duplicates share the
normalised text. Near-duplicates are found with ``datasketch`` MinHash LSH over character bigrams
and confirmed by the exact Jaccard similarity of the bigram sets (≥ ``threshold``); questions whose
numbers differ (``第五十八条`` vs ``第五十九条``, ``6.2.2`` vs ``6.2.3``) are never near-duplicates,
since they ask about different clauses; nor are two questions whose answers state different numbers
(``低瓦斯矿井，每班至少多少次？`` → 2 and ``高瓦斯矿井，每班至少多少次？`` → 3: one character apart,
two facts).
"""

from __future__ import annotations

import re
import unicodedata

_NUMBERS = re.compile(r"[0-9]+|[零〇一二三四五六七八九十百千万两]+")
NUM_PERM = 64


def normalize_for_dedup(question: str) -> str:
    """NFKC, lower case, keep only letters and digits (drops spaces and punctuation)."""
    text = unicodedata.normalize("NFKC", question).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def _bigrams(norm: str) -> set[str]:
    return {norm[i : i + 2] for i in range(len(norm) - 1)} or {norm}


def make_deduper(threshold: float = 0.8):
    """Return ``seen(question, answer="") -> None | "duplicate_exact" | "duplicate_near"``.

    Exact duplicates compare the question only; near-duplicates also need the same numbers in
    question and answer.

    Each call registers the question when it is new; call it in dataset order so the result is
    deterministic (MinHash uses a fixed seed).
    """
    exact: set[str] = set()
    from datasketch import (  # here: importing it takes ~1.5 s (scipy), every coalqa command paid it
        MinHash,
        MinHashLSH,
    )

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept: dict[str, tuple[set[str], list[str]]] = {}

    def seen(question: str, answer: str = "") -> str | None:
        norm = normalize_for_dedup(question)
        if norm in exact:
            return "duplicate_exact"
        grams, numbers = _bigrams(norm), _NUMBERS.findall(norm) + ["→"] + _NUMBERS.findall(normalize_for_dedup(answer))
        mh = MinHash(num_perm=NUM_PERM)
        mh.update_batch([g.encode("utf-8") for g in grams])
        for key in lsh.query(mh):
            other, other_numbers = kept[key]
            if other_numbers == numbers and len(grams & other) / len(grams | other) >= threshold:
                return "duplicate_near"
        key = str(len(kept))
        exact.add(norm)
        kept[key] = (grams, numbers)
        lsh.insert(key, mh)
        return None

    return seen
