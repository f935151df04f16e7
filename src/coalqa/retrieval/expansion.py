"""Query expansion: a worker's everyday words → the words regulations use, added to the question at a lower weight.

A miner asks 多久查一次 where a clause says 检查周期 / 每班至少…次, 带 where it says 携带, 离…多远 where it says
距离…不得小于, 手机 where it says 移动电话; BM25 over the question's own words cannot bridge that. An expansion
table (:data:`BUILTIN`, ``colloquial.txt`` beside this module; one ``phrase<TAB>term term …`` a line, ``#`` comments)
lists such pairs. :func:`expand` finds its phrases in the normalised question, longest first, each character used by
at most one phrase, and returns the regulation terms; the index scores those terms at ``weight`` (default
:data:`DEFAULT_WEIGHT`) of an original word, so they can lift a clause that says it the regulation's way without
outweighing the words the worker actually used. Chunks are never expanded, nor the text shown, cited or quoted.

The table is general language and domain knowledge, not keyed on any evaluation question; ``coalqa index
--expansions FILE`` uses another table (same format), ``--expansions none`` none. The table used is copied into the
index folder (``expansions.txt``) and its SHA-256 recorded in ``index.json``, so an index answers the same later.
"""

from __future__ import annotations

from pathlib import Path

from coalqa.errors import CoalqaError
from coalqa.numbers import nfkc_casefold

BUILTIN = Path(__file__).with_name("colloquial.txt")
# README 2b (with 2-sentence windows), strict recall@1 dev / dev2: weight 0.5 → 0.833 / 0.675, 0.75 → 0.833 / 0.750,
# 1.0 → 0.800 / 0.750.
DEFAULT_WEIGHT = 0.75


def read_expansions(path: str | Path) -> dict[str, list[str]]:
    """Read an expansion table: normalised phrase → regulation terms, in file order.

    Raises:
        CoalqaError: the file is missing or unreadable, or a line has no TAB, an empty phrase or no terms (file
            and line named).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CoalqaError(f"expansion table {path}: cannot read it ({e}); give a UTF-8 text file of "
                          f"'phrase<TAB>term term …' lines, or --expansions none") from e
    table: dict[str, list[str]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        phrase, tab, terms = line.partition("\t")
        phrase, words = nfkc_casefold(phrase.strip()), terms.split()
        if not tab or not phrase or not words:
            raise CoalqaError(f"{path}:{n}: expected 'phrase<TAB>term term …' (everyday words, a TAB, the regulation's "
                              f"words separated by spaces), got {line!r}")
        table[phrase] = table.get(phrase, []) + [w for w in words if w not in table.get(phrase, [])]
    return table


def expand(question: str, table: dict[str, list[str]], tokenizer=None) -> list[str]:
    """The regulation terms ``table`` adds for ``question``: its phrases found in the normalised question, longest
    first, a character claimed by at most one phrase; terms in the order found, each once.

    With a jieba ``tokenizer``, a one-character phrase counts only where the tokenizer's precise mode cuts it out as
    a word of its own (``带`` in ``能带手机吗`` but not in ``带式输送机``; ``冲`` not in ``冲击地压``); without one,
    one-character phrases are not used. The cut is made without jieba's HMM for unknown words, which glues a
    one-character word to its neighbour (``得测`` in ``一个月起码得测几回``) and so hid
    it from the table (README 2b: dev2 MRR 0.851 → 0.856, its support gate 35 → 36 of 40 sources).
    """
    text = nfkc_casefold(question)
    used = [False] * len(text)
    singles: set[int] = set()
    if tokenizer is not None:
        pos = 0
        for word in tokenizer.lcut(text, HMM=False):
            if len(word) == 1:
                singles.add(pos)
            pos += len(word)
    out: list[str] = []
    for phrase in sorted(table, key=lambda p: (-len(p), p)):
        start = text.find(phrase)
        while start >= 0:
            end = start + len(phrase)
            if not any(used[start:end]) and (len(phrase) > 1 or start in singles):
                used[start:end] = [True] * len(phrase)
                out += [t for t in table[phrase] if t not in out]
            start = text.find(phrase, start + 1)
    return out
