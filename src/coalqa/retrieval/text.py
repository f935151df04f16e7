"""Text handling for retrieval: one normalisation, one tokeniser, the corpus' own terms, sentences.

* **Normalisation** — :func:`coalqa.numbers.nfkc_casefold` (NFKC + casefold), the same form the number check
  works on: full-width ``６０日``, ``％`` and ``ｍ３`` read as ``60日``, ``%``, ``m3``. jieba splits full-width
  digits one by one (``６/０/日``), so without it a question typed with half-width digits would miss the clause.
  Only the index and the queries see normalised text; chunks are stored and shown as written.
* **Tokens** — :func:`tokenize`: jieba's search mode (``lcut_for_search``: a long word and its dictionary
  sub-words, so ``采掘工作面`` matches both the term and ``工作面``) over normalised text, dropping whitespace,
  punctuation and a few function and question words (:data:`STOPWORDS`). The index and every query go through
  this one function with the same tokenizer object, so both sides always split alike. Questions also lose
  everyday question words and particles (:data:`QUESTION_WORDS`: 咋, 啥, 呢, 得 …), which the index keeps.
* **Character bigrams** — :func:`char_bigrams`: the overlapping pairs of Chinese characters of normalised text
  (runs of letters and digits whole), a second view of the same sentences that does not depend on where jieba cuts
  (``水袋子``/``水袋``, ``有煤尘爆炸性``, OCR slips such as ``抽釆``): the standard indexing unit of Chinese IR
  (Nie, Gao, Zhang & Zhou, "On the use of words and n-grams for Chinese information retrieval", IRAL 2000).
* **Domain terms** — :func:`corpus_terms` collects the corpus' own terms (document titles, chapter and section
  headings, quoted defined terms such as ``“煤尘爆炸性”``) into a jieba user dictionary saved with the index, so
  that they survive segmentation as whole tokens.
* **Sentences** — :func:`split_sentences` cuts a clause at ``。；！？`` and line breaks, keeping the original
  wording, for the evidence quoted beside an answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from coalqa.numbers import nfkc_casefold

# Bump when tokenisation changes: an index built with another version is refused (rebuild message).
TOKENIZER_VERSION = 1
STOPWORDS = frozenset(
    ["的", "了", "和", "与", "及", "或", "在", "是", "为", "对", "等", "其", "中", "应", "应当", "必须", "不得", "什么", "多少", "哪些", "怎样", "如何", "要求", "规定", "有", "时", "要", "会", "里", "吗", "呢", "哪", "几", "个"]
)
# Everyday question words and particles dropped from questions only (never from the index): a worker's 咋/啥/得/呢
# match nothing a clause says but, as rare tokens, can lift an unrelated chunk that happens to hold them.
QUESTION_WORDS = frozenset(
    ["咋", "啥", "么", "吧", "啊", "呀", "嘛", "请问", "得", "能", "该", "还", "就", "这", "那", "些", "这些", "那些", "一", "下", "上", "多", "怎么", "哪儿"]
)
_PUNCT = re.compile(r"^[\W_]+$")
_ORDINAL = re.compile(r"第[一二三四五六七八九十百千零〇\d]+[编章节条款项]")
_QUOTED = re.compile(r"[“\"「『]([\u4e00-\u9fff]{2,12})[”\"」』]")
_GRAM_RUN = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9.%]+")  # a run of Chinese characters, or of letters/digits (1.0%, 4m)
# Function characters left out of character unigrams: particles, conjunctions, prepositions and the modal verbs every
# clause repeats (chosen as a list of common function characters, not tuned on an evaluation set).
UNIGRAM_STOP = frozenset("的了是在和与或及等为对中个不有于以其之也应当必须时")
_SENTENCE_END = re.compile(r"(?<=[。；;！!？?])|\n+")


def normalize_for_index(text: str) -> str:
    """The form the index and the queries see: NFKC + casefold (``"３０ｍ３／ｓ"`` → ``"30m3/s"``)."""
    return nfkc_casefold(text)


def corpus_terms(chunks: Iterable[dict]) -> dict[str, int]:
    """The corpus' own terms → how often each was found, for a jieba user dictionary.

    Sources: each chunk's ``title`` (its Chinese characters, whole) and the parts of its ``heading`` (``第二章 矿井防治水 / 第一节 …``; ordinals such
    as ``第二章`` dropped, split at ``及 和 与 、 或 的`` and non-Chinese characters), plus terms the regulations
    quote (``“煤尘爆炸性”``). Pieces of 3 to 12 Chinese characters are kept; 2-character words are left to jieba's
    own dictionary.
    """
    terms: dict[str, int] = {}

    def add(piece: str) -> None:
        if 2 < len(piece) <= 12:
            terms[piece] = terms.get(piece, 0) + 1

    for c in chunks:
        add(re.sub(r"[^\u4e00-\u9fff]+", "", normalize_for_index(c.get("title") or "")))  # the title whole (防治煤与瓦斯突出细则)
        for part in re.split(r"\s*/\s*", c.get("heading") or ""):
            for piece in re.split(r"[^\u4e00-\u9fff]+|[及和与、或的]", _ORDINAL.sub(" ", normalize_for_index(part))):
                add(piece)
        for quoted in _QUOTED.findall(normalize_for_index(c.get("text") or "")):
            add(quoted)
    return terms


def write_user_dict(terms: dict[str, int], path: str | Path) -> None:
    """Write ``terms`` in jieba's user-dictionary format (``word freq`` per line, sorted)."""
    Path(path).write_text("".join(f"{t} {n}\n" for t, n in sorted(terms.items())), encoding="utf-8")


_MAIN_DICT: tuple[dict[str, int], int] | None = None  # jieba's main dictionary (word → frequency, total) once loaded


def make_tokenizer(user_dict: str | Path | None = None):
    """A ``jieba.Tokenizer`` with the main dictionary and, if given, a user dictionary file.

    A fresh tokenizer object (not jieba's global one), so two indexes with different dictionaries never mix; each
    gets its own copy of the main dictionary, which is read from disk once a process.
    jieba keeps a user word as a whole token: each word gets at least the frequency jieba suggests for it.
    """
    import jieba

    global _MAIN_DICT
    jieba.setLogLevel(60)  # its "Building prefix dict" lines are noise on stderr
    tk = jieba.Tokenizer()
    if _MAIN_DICT is None:
        tk.initialize()  # reads jieba's main dictionary (~0.7 s idle): once a process, then copied
        _MAIN_DICT = (dict(tk.FREQ), tk.total)
    else:
        tk.FREQ, tk.total, tk.initialized = dict(_MAIN_DICT[0]), _MAIN_DICT[1], True
    if user_dict is not None:
        for line in Path(user_dict).read_text(encoding="utf-8").splitlines():
            word, _, freq = line.strip().rpartition(" ")
            if word:
                tk.add_word(word, freq=max(int(freq), tk.suggest_freq(word)))
    return tk


def _keep(words: list[str]) -> list[str]:
    return [w for w in words if w.strip() and not _PUNCT.match(w) and w not in STOPWORDS]


def tokenize(text: str, tokenizer, cache: dict[str, list[str]] | None = None) -> list[str]:
    """Index/query tokens of ``text`` (see the module docstring); ``[]`` when nothing is left.

    ``cache`` (building an index): a dict memoising the tokens of each block jieba segments on its own — jieba's
    ``cut`` splits the text at its ``re_han_default`` pattern (runs of Chinese characters, letters and digits
    between punctuation) and cuts each block independently, so the tokens of a text are those of its blocks in
    order, and the phrases regulations repeat (``严禁烟火``, ``应当每班检查``) are segmented once. Same tokens with
    or without it.
    """
    import jieba

    text = normalize_for_index(text)
    if cache is None:
        return _keep(tokenizer.lcut_for_search(text))
    out: list[str] = []
    for block in jieba.re_han_default.split(text):
        if block:
            words = cache.get(block)
            if words is None:
                words = cache[block] = _keep(tokenizer.lcut_for_search(block))
            out += words
    return out


def char_bigrams(text: str) -> list[str]:
    """The character bigrams of ``text`` (:func:`normalize_for_index` first), in order: each run of Chinese characters
    gives its overlapping pairs (``反风风量`` → ``反风 风风 风量``; a lone character itself), each run of letters,
    digits, ``.`` and ``%`` one token (``1.0%``, ``4m``); punctuation and spaces separate runs. ``[]`` when none.
    """
    out: list[str] = []
    for run in _GRAM_RUN.findall(normalize_for_index(text)):
        if "\u4e00" <= run[0] <= "\u9fff" and len(run) > 1:
            out += [run[i:i + 2] for i in range(len(run) - 1)]
        else:
            out.append(run)
    return out


def char_unigrams(text: str) -> list[str]:
    """The single Chinese characters of ``text`` (:func:`normalize_for_index` first), in order, less
    :data:`UNIGRAM_STOP`; each run of letters, digits, ``.`` and ``%`` one token, as in :func:`char_bigrams`.
    ``"喝了两杯酒，1.0%"`` → ``喝 两 杯 酒 1.0%``: a question's ``喝…酒`` still meets a clause's ``喝酒``."""
    out: list[str] = []
    for run in _GRAM_RUN.findall(normalize_for_index(text)):
        if "\u4e00" <= run[0] <= "\u9fff":
            out += [ch for ch in run if ch not in UNIGRAM_STOP]
        else:
            out.append(run)
    return out


def split_sentences(text: str) -> list[str]:
    """``text`` cut after ``。；！？`` and at line breaks; pieces stripped, empty ones dropped, wording unchanged."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


_CONTENT_CHAR = re.compile(r"[\u4e00-\u9fff0-9a-z]")


def coverage(question: str, text: str, tokenizer, table: dict[str, list[str]] | None = None) -> float:
    """The share of ``question``'s content characters that ``text`` states, directly or in the regulation's wording.

    Content characters: Chinese characters, letters and digits of the question's words (jieba's precise cut without
    HMM, as :func:`coalqa.retrieval.expand` cuts) other than :data:`QUESTION_WORDS` and :data:`STOPWORDS`. One is covered when it is part
    of a character bigram of the question that ``text`` holds (``井下`` in ``井下严禁吸烟``), or of a phrase of two or
    more characters of the expansion ``table`` one of whose terms ``text`` holds (``抽烟`` → ``吸烟``). Both texts
    are normalised (:func:`normalize_for_index`). Returns a float in [0, 1]; 0 when the question has no content
    character. A short question in everyday words (井下能不能抽烟？) scores low on BM25 however well its clause answers
    it; this says whether the clause answers *all* of it.
    """
    q, t = normalize_for_index(question), normalize_for_index(text)
    content = [False] * len(q)
    pos = 0
    for word in tokenizer.lcut(q, HMM=False):
        if word not in QUESTION_WORDS and word not in STOPWORDS:
            for i in range(pos, pos + len(word)):
                content[i] = bool(_CONTENT_CHAR.match(q[i]))
        pos += len(word)
    covered = [False] * len(q)
    for i in range(len(q) - 1):
        if content[i] and content[i + 1] and q[i:i + 2] in t:
            covered[i] = covered[i + 1] = True
    for phrase, terms in (table or {}).items():
        start = q.find(phrase) if len(phrase) > 1 else -1
        while start >= 0:
            if any(term in t for term in terms):
                covered[start:start + len(phrase)] = [True] * len(phrase)
            start = q.find(phrase, start + 1)
    n = sum(content)
    return sum(c and k for c, k in zip(content, covered)) / n if n else 0.0
