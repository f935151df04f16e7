"""Cut a document into chunks along its own structure.

The cleaned text is read line by line. Headings (编/章/节, a standard's top-level ``6 施工``,
``附录A``, ``一、…``, docx heading styles) open a new heading path; articles ``第X条`` and
numbered clauses ``1.0.1`` / ``6.2.2.8`` open a new *unit*; every other line (``（一）`` items,
``1.`` sub-items, tables, continuation paragraphs) belongs to the unit above it. Units are then
packed in order into chunks of at most ``max_chars`` characters, never across a heading of
chapter rank; a unit larger than that is split at sentence ends (``。！？``, then ``；``,
then ``，``). Every line of the document lands in exactly one chunk, in order.

Structure is matched on a width-folded copy of each line (full-width ``６．２．１`` reads as
``6.2.1``; :func:`fold_width`) while chunk texts keep the original characters. Numbering order
decides what is a heading: a clause/article number followed by ``的``/``规定``/``所述``… is a
cross-reference (:data:`REFERENCE`), a number lower than the one before it opens a unit only
when the numbering then continues from it (a restart, or a misprint before it), and a run of
digits glued to the text (``7.2.4.42台以上``) is read as the label that continues the numbering
(``7.2.4.4``). Several articles/chapters on one line (a whole law on one line) are split at
``第X条``/``第X章`` that continue the numbering. A chunk never holds a numbering restart, so its
locator range never runs backwards.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
from dataclasses import dataclass, field

from coalqa.corpus.readers import Document
from coalqa.numbers import MEASURE_ALIASES, alias_regex, parse_chinese_number, starts_with_quantity

CN_NUM = "零〇一二三四五六七八九十百千两"
ARTICLE = re.compile(rf"^第([{CN_NUM}]+|\d+)条")
LAW_HEADING = re.compile(rf"^第[{CN_NUM}\d]+([编章节])")
LAW_LEVEL = {"编": 1, "章": 2, "节": 3}
ITEM = re.compile(r"^[（(]([一二三四五六七八九十]+)[)）]")
# A clause number is never directly followed by a unit (``2.2m。`` is a wrapped quantity, not clause 2.2). Units as
# written (case-sensitive), without the capital one-letter ones: ``4.3.1.1A级``, ``C.1.5D级`` are clauses.
_UNIT_AFTER = alias_regex(a for a in MEASURE_ALIASES if len(a) > 1 or a in "mhsdtgl")
CLAUSE = re.compile(
    rf"^((?:[1-9]\d?|[A-Z])(?:\.\d{{1,3}}){{1,4}})(?![\d.．~～%‰℃°×/\-–—)）:：,，、])(?!{_UNIT_AFTER})\s*(?=\S)"
)
TOP_SECTION = re.compile(rf"^([1-9]\d?)(?!{_UNIT_AFTER})\s*(?=[^\d\s.．、，。)）~～%])")
APPENDIX = re.compile(r"^附\s*录\s*[A-Z一二三四五六七八九十]?(?![\u4e00-\u9fff]{8})")
CN_SECTION = re.compile(r"^[一二三四五六七八九十]+、")
STANDARD_SECTION_NAMES = ("规范性引用文件", "术语和定义", "术语", "范围", "总则", "一般规定", "基本规定", "符号")
NUMBERED = re.compile(r"^((?:[1-9]\d?|[A-Z])(?:\.\d{1,3}){0,4})(?![\d.])")
SENTENCE_PUNCT = re.compile(r"[，,。；;：:！!？?]")
BREAK_LEVEL = 4  # headings of this level or higher (numerically lower) start a new chunk
FRONT = "卷首"  # locator of text before any heading/article (title, promulgation note)
# What follows a clause/article number that is cited, not headed: "11.5.14.2的试验…", "第二十条的规定…",
# "第四十四条规定的行政处罚…", "6.2.1和6.2.2…", "第三十九条、第四十条…".
REFERENCE = re.compile(r"\s*(?:的|规定|所述|所列|所指|之规定|中规定|中的|条的|条规定|款|[、,，和或及与]\s*(?:第|\d))")
# A 第X条/第X章 inside a line where a new article/chapter may begin: after a sentence end or a space.
INLINE_MARK = re.compile(rf"(?:(?<=[。；;！!？?])|(?<=\s))第([{CN_NUM}]+|\d+)([条章])")
_RAW_CLAUSE = re.compile(r"^((?:[1-9]\d*|[A-Z])(?:\.\d+){1,5})")
SENTENCE_END = "。！？!?；;：:"


def rejoin_wrapped_quantities(lines: list[str]) -> list[str]:
    """Join back a line that opens with a quantity (:func:`coalqa.numbers.starts_with_quantity`: ``2.2m。``,
    ``30%，``) to the line above when that one does not end a sentence (``不得低于`` / ``2.2m。``): a hard wrap
    before a number, never a new clause. Lines are joined without a separator; returns the new line list."""
    out: list[str] = []
    for line in lines:
        if out and out[-1] and out[-1][-1] not in SENTENCE_END and starts_with_quantity(line):
            out[-1] += line
        else:
            out.append(line)
    return out


def fold_width(text: str) -> str:
    """``text`` with full-width ASCII forms (U+FF01–FF5E) NFKC-folded to ASCII, same length.

    ``"６．２．１　主要通风机…３０ｍ３／ｓ"`` → ``"6.2.1　主要通风机…30m3/s"``. Only width is folded
    (circled ``①`` and ``⑴`` are not), so every index of the result is an index of ``text``.
    """
    return "".join(unicodedata.normalize("NFKC", ch) if "\uff01" <= ch <= "\uff5e" else ch for ch in text)


def label_key(label: str) -> tuple[int, ...] | None:
    """Sort key of an article/clause label: ``第五十八条`` → ``(0, 58)``, ``6.2.2.8`` → ``(1, 6, 2, 2, 8)``,
    ``A.0.1`` → ``(1, 1065, 0, 1)``; ``None`` for anything else. Keys of one family (0 articles, 1 clauses)
    compare in document numbering order."""
    m = re.fullmatch(rf"第([{CN_NUM}]+|\d+)条", label)
    if m:
        n = int(m.group(1)) if m.group(1).isdigit() else parse_chinese_number(m.group(1).replace("〇", "零"))
        return None if n is None else (0, n)
    if re.fullmatch(r"(?:\d+|[A-Z])(?:\.\d+)+", label):
        return (1, *(int(p) if p.isdigit() else 1000 + ord(p) for p in label.split(".")))
    return None


def _succeeds(label: str, prev: str | None) -> bool:
    """Is clause ``label`` what comes next after ``prev`` in a standard's numbering?

    The next sibling at some level (``6.2.3`` → ``6.2.4``, ``6.3``, ``7.1``…) or a first child
    (``6.2.3`` → ``6.2.3.1``), each optionally followed by first sub-levels (``.1``, ``.0.1``).
    """
    if prev is None:
        return True
    a, b = label_key(label), label_key(prev)
    if a is None or b is None or a[0] != 1 or b[0] != 1:
        return False
    a, b = a[1:], b[1:]
    for k in range(len(b) + 1):
        head = b[:k] + (b[k] + 1,) if k < len(b) else b
        if a[: len(head)] == head and all(x <= 1 for x in a[len(head):]) and (k < len(b) or len(a) > len(b)):
            return True
    return False


def _clause_label(folded: str, prev: str | None) -> str | None:
    """The clause number that opens ``folded``, read so that it continues ``prev`` where the digits run on
    into the text (``7.2.4.42台以上`` after ``7.2.4.3`` → ``7.2.4.4``); else what :data:`CLAUSE` reads."""
    c = CLAUSE.match(folded)
    raw = _RAW_CLAUSE.match(folded)
    if raw and not (c and _succeeds(c.group(1), prev)):
        run = raw.group(1)
        for end in range(len(run) - 1, 4, -1):  # cut inside the last digits, longest reading first
            cand = run[:end]
            if run[end].isdigit() and cand[-1].isdigit() and cand.count(".") >= 2 and _succeeds(cand, prev):
                return cand
    return c.group(1) if c else None


@dataclass
class Chunk:
    """One piece of a document, as written to chunks.jsonl.

    ``locator`` names the article(s)/clause(s) it holds (``第五十八条``, ``第五十八条–第六十条``,
    ``6.2.2.8``; parts of a split article carry item numbers, ``第八十条(三)–第八十条(六)``);
    ``heading`` is the 编/章/节 (or section) path it sits under, ``""`` when none. ``sha`` is the
    chunk's content hash (:func:`chunk_sha`): QA pairs made from it carry it as ``chunk_sha``, so a
    later run can tell which pairs a changed regulation makes stale. ``ocr`` is true when some of its text
    was OCR'd from a scan, ``ocr_confidence`` then the lowest recognition confidence (0-1) of its lines.
    """

    id: str
    source: str
    title: str
    locator: str
    text: str
    chars: int
    heading: str = ""
    sha: str = ""
    ocr: bool = False
    ocr_confidence: float | None = None

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = chunk_sha(self.source, self.title, self.locator, self.heading, self.text)


def chunk_sha(source: str, title: str, locator: str, heading: str, text: str) -> str:
    """Content hash of a chunk: the first 16 hex digits of SHA-256 over everything a QA pair is made from
    (source, title, locator, heading, text). Equal hashes mean the same text at the same place."""
    payload = json.dumps([source, title, locator, heading, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class _Unit:
    label: str | None
    heading: str
    breaks: bool  # a chapter-rank heading starts here: do not merge with what precedes
    lines: list[str] = field(default_factory=list)
    items: list[str | None] = field(default_factory=list)  # the （一） item each line sits in

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _split_heading_line(line: str, doc_headings: dict[str, int], last_top: int) -> tuple[int, str, str] | None:
    """If ``line`` starts with a heading, return (level, heading text, rest of line); else None."""
    if line in doc_headings:
        return min(doc_headings[line], BREAK_LEVEL), line, ""
    m = LAW_HEADING.match(line)
    if m and REFERENCE.match(line, m.end()):  # "第二章规定的…": cited, not a heading
        return None
    if m:
        inner = re.search(rf"第[{CN_NUM}\d]+[编章节条]", line[m.end():])
        if inner and inner.start() <= 30 and not SENTENCE_PUNCT.search(line[m.end() : m.end() + inner.start()]):
            cut = m.end() + inner.start()  # "第四章矿井防治水第一节地面防治水", "第一编总则第一条为…"
            return LAW_LEVEL[m.group(1)], line[:cut], line[cut:]
        art = re.search(rf"第[{CN_NUM}\d]+条", line[m.end():])
        if art and art.start() <= 30:
            cut = m.end() + art.start()
            return LAW_LEVEL[m.group(1)], line[:cut], line[cut:]
        if len(line) <= 40 and not re.search(r"[。；;，,]", line):
            return LAW_LEVEL[m.group(1)], line, ""
        return None
    m = TOP_SECTION.match(line)
    if m and not CLAUSE.match(line) and last_top < int(m.group(1)) <= last_top + 5:
        n, rest = m.group(1), line[m.end():]
        clause = re.search(rf"{n}\.\d", rest)
        if clause and 0 < clause.start() <= 30 and not SENTENCE_PUNCT.search(rest[: clause.start()]):
            return 2, line[: m.end() + clause.start()], rest[clause.start():]
        if len(rest) <= 30 and not SENTENCE_PUNCT.search(rest):
            return 2, line, ""
        for name in STANDARD_SECTION_NAMES:
            if rest.startswith(name):
                return 2, line[: m.end() + len(name)], rest[len(name):]
        stop = re.match(r"[^，,。；;：:]{2,15}。", rest)  # "9输浆管路。根据…"
        if stop and int(n) == last_top + 1:
            return 2, line[: m.end() + stop.end()], rest[stop.end():]
        return None
    c = CLAUSE.match(line)
    if c:  # "4.5基本功能4.5.1数据采集": a clause heading followed by its first sub-clause
        label, rest = c.group(1), line[c.end():]
        sub = re.search(rf"{re.escape(label)}\.\d", rest)
        if sub and 0 < sub.start() <= 30 and not SENTENCE_PUNCT.search(rest[: sub.start()]):
            return 5 + label.count("."), line[: c.end() + sub.start()], rest[sub.start():]
        return None
    if APPENDIX.match(line) and len(line) <= 40 and not SENTENCE_PUNCT.search(line):
        return 2, line, ""
    if CN_SECTION.match(line) and len(line) <= 30 and not re.search(r"[。；;，,]", line):
        return 4, line, ""
    return None


def _is_clause_heading(line: str, label: str, next_line: str) -> bool:
    """A short unpunctuated clause line followed by its own sub-clause (``6.2.2瓦斯防治`` then ``6.2.2.1…``)."""
    return (
        len(line) <= 40
        and not SENTENCE_PUNCT.search(line[len(label):])
        and next_line.startswith(label + ".")
    )


def _cn_int(number: str) -> int | None:
    """``"五十八"`` → 58, ``"58"`` → 58 (article/chapter numbers)."""
    return int(number) if number.isdigit() else parse_chinese_number(number)


def _next_label(lines: list[str], start: int, family: int, limit: int = 200) -> str | None:
    """The next article (family 0) or clause (family 1) number that opens one of ``lines[start:]``."""
    for line in lines[start : start + limit]:
        f = fold_width(line)
        m = ARTICLE.match(f) if family == 0 else CLAUSE.match(f)
        if m and not REFERENCE.match(f, m.end()):
            return m.group(0) if family == 0 else m.group(1)
    return None


def _next_numbered(lines: list[str], start: int, limit: int = 200) -> tuple[int, str] | None:
    """``(family, label)`` of the first of ``lines[start:]`` opened by an article (0) or a clause number (1)."""
    for line in lines[start : start + limit]:
        f = fold_width(line)
        m = ARTICLE.match(f)
        if m and not REFERENCE.match(f, m.end()):
            return 0, m.group(0)
        c = CLAUSE.match(f)
        if c and not REFERENCE.match(f, c.end()):
            return 1, c.group(1)
    return None


def _article(folded: str, lines: list[str], nxt: int, last: int) -> re.Match[str] | None:
    """The ``第X条`` opening ``folded`` if it heads an article: not a cross-reference, and not lower than the
    article before unless the numbering goes on from it (a restart, or a misprint before it)."""
    m = ARTICLE.match(folded)
    if not m or REFERENCE.match(folded, m.end()):
        return None
    n = _cn_int(m.group(1))
    if n is not None and n < last:
        after = _next_label(lines, nxt, 0)
        if after is None or label_key(after) != (0, n + 1):
            return None
    return m


def _clause(folded: str, lines: list[str], nxt: int, last: str | None) -> str | None:
    """The clause number opening ``folded`` if it heads a clause: read to continue ``last``
    (:func:`_clause_label`), not a cross-reference, not lower than ``last`` unless the next clause number
    continues from it (a restart such as a standard's explanatory notes, or a misprint before it)."""
    label = _clause_label(folded, last)
    if not label or REFERENCE.match(folded, len(label)):
        return None
    key, before = label_key(label), label_key(last) if last else None
    if key and before and key < before:
        after = _next_label(lines, nxt, 1)
        if after is None or not _succeeds(after, label):
            return None
    return label


def _inline_split(folded: str, last_article: int, last_chapter: int) -> int | None:
    """Where a second article/chapter starts inside ``folded`` (a law run together on one line), or None.

    Only a ``第X条``/``第X章`` after a sentence end or a space that continues the numbering (the article
    after the one this line opens, or after ``last_article``; the chapter after ``last_chapter``) and is
    not a cross-reference counts.
    """
    own = ARTICLE.match(folded)
    article = _cn_int(own.group(1)) if own and not REFERENCE.match(folded, own.end()) else last_article
    for m in INLINE_MARK.finditer(folded):
        if m.start() == 0 or REFERENCE.match(folded, m.end()):
            continue
        n = _cn_int(m.group(1))
        if n is not None and n == (article if m.group(2) == "条" else last_chapter) + 1:
            return m.start()
    return None


def _drop_stale(path: list[tuple[int, str]], number: str) -> None:
    """Forget (in place) the numbered headings of ``path`` that do not contain clause ``number`` (their end was not
    marked)."""
    path[:] = [
        (lv, t) for lv, t in path
        if (m := NUMBERED.match(fold_width(t))) is None or number == m.group(1) or number.startswith(m.group(1) + ".")
    ]


def _heading_numbers(text: str, level: int, last_top: int, last_chapter: int,
                     last_clause: str | None) -> tuple[int, int, str | None]:
    """``(last_top, last_chapter, last_clause)`` once the heading ``text`` at ``level`` is read: a top-level section
    number (level 2, not 第X章), a chapter number (第X章), a numbered heading's clause number (6.2)."""
    top = TOP_SECTION.match(fold_width(text))
    if top and level == 2 and not LAW_HEADING.match(text):
        last_top = int(top.group(1))
    law = LAW_HEADING.match(fold_width(text))
    if law and law.group(1) == "章":
        last_chapter = _cn_int(re.match(rf"第([{CN_NUM}\d]+)", fold_width(text)).group(1)) or last_chapter
    number = NUMBERED.match(fold_width(text))
    if number and not law:
        last_clause = number.group(1)
    return last_top, last_chapter, last_clause


def _line_label(folded: str, lines: list[str], nxt: int, last_article: int, last_clause: str | None,
                current: _Unit | None) -> tuple[re.Match[str] | None, str | None]:
    """``(article match, label)`` of the line ``folded`` (``lines[nxt]`` follows it): the 第X条 heading it
    (:func:`_article`), else the clause number heading it (:func:`_clause`), else ``(None, None)``."""
    m = _article(folded, lines, nxt, last_article)
    label = m.group(0) if m else _clause(folded, lines, nxt, last_clause)
    if label and not m and current is not None and (current.label or "").startswith("第"):
        # one system per run of units: a decimal clause inside an article counts only when the next
        # numbered line continues it (1.1 then 1.2), not when it is followed by the next 第X条
        after = _next_numbered(lines, nxt)
        if after is None or after[0] == 0 or not _succeeds(after[1], label):
            label = None
    return m, label


def _line_item(folded: str, m: re.Match[str] | None, item: str | None) -> str | None:
    """The item (``(一)``) the line ``folded`` belongs to: the one it opens, else none after an article's opening
    (``m``), else still ``item``."""
    im = ITEM.match(folded[m.end():] if m else folded)
    if im:
        return f"({im.group(1)})"
    if m:
        return None  # "第一百八十条通风瓦斯日报…": the article's own text again, outside any item
    return item


def parse_units(doc: Document) -> list[_Unit]:
    """Group the document's lines into units (one article/clause each, or unnumbered text under a heading)."""
    lines = rejoin_wrapped_quantities(doc.text.split("\n"))
    units: list[_Unit] = []
    path: list[tuple[int, str]] = []
    pending: list[str] = []  # heading lines waiting for the unit they introduce
    pending_break = False
    last_top = 0
    last_article, last_chapter = 0, 0  # numbers of the last 第X条 / 第X章 seen
    last_clause: str | None = None  # the last clause number seen (6.2.2.8), heading or unit
    item: str | None = None

    def heading_text() -> str:
        return " / ".join(text for _, text in path)

    def open_unit(label: str | None) -> _Unit:
        nonlocal pending, pending_break
        if label and not label.startswith("第"):
            _drop_stale(path, label)
        unit = _Unit(label, heading_text(), pending_break)
        unit.lines, unit.items = list(pending), [None] * len(pending)
        pending, pending_break = [], False
        units.append(unit)
        return unit

    def push_heading(level: int, text: str) -> None:
        nonlocal pending_break
        number = NUMBERED.match(fold_width(text))
        if number and level > BREAK_LEVEL:
            _drop_stale(path, number.group(1))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, text))
        pending.append(text)
        pending_break = pending_break or level <= BREAK_LEVEL

    i = 0
    while i < len(lines):
        line = lines[i]
        folded = fold_width(line)
        i += 1
        cut = _inline_split(folded, last_article, last_chapter)
        if cut:
            line, rest = line[:cut].rstrip(), line[cut:]
            lines.insert(i, rest)
            folded = fold_width(line)
        head = (min(doc.headings[line], BREAK_LEVEL), line, "") if line in doc.headings else None
        head = head or _split_heading_line(folded, doc.headings, last_top)
        if head:
            level, text, rest = head
            text, rest = line[: len(text)], line[len(text):]  # the same cut, in the original characters
            last_top, last_chapter, last_clause = _heading_numbers(text, level, last_top, last_chapter, last_clause)
            push_heading(level, text)
            if rest:
                lines.insert(i, rest)
            continue
        current = units[-1] if units and not pending else None
        m, label = _line_label(folded, lines, i, last_article, last_clause, current)
        if label and not m and i < len(lines) and _is_clause_heading(folded, label, fold_width(lines[i])):
            push_heading(5 + label.count("."), line)
            last_clause = label
            continue
        if m:
            last_article = _cn_int(m.group(1)) or last_article
            label = f"第{m.group(1)}条"
        elif label:
            last_clause = label
        if label and not (current is not None and current.label == label and m):
            current = open_unit(label)
            item = None
        elif current is None:
            current = open_unit(None)
        item = _line_item(folded, m, item)
        current.lines.append(line)
        current.items.append(item)
    if pending:  # headings at the very end
        (units[-1] if units else open_unit(None)).lines.extend(pending)
        units[-1].items.extend([None] * len(pending))
    return units


def _segments(unit: _Unit, max_chars: int, warnings: list[str]) -> list[tuple[int, str, str | None]]:
    """Split a unit into (line index, piece, item) no longer than ``max_chars``, at the gentlest boundary."""
    out: list[tuple[int, str, str | None]] = []

    def cut(text: str, level: int) -> list[str]:
        if len(text) <= max_chars:
            return [text]
        patterns = [r"[。！？!?]+[”’」』\"')）]*", r"[；;]+", r"[，,、：:]+"]
        if level < len(patterns):
            parts = re.findall(rf".*?(?:{patterns[level]})|.+", text)  # each part keeps its punctuation
            if len(parts) == 1:
                return cut(text, level + 1)
            return [piece for p in parts for piece in cut(p, level + 1)]
        warnings.append(f"a {len(text)}-character run without punctuation was cut at {max_chars} characters")
        return [text[k : k + max_chars] for k in range(0, len(text), max_chars)]

    for n, (line, item) in enumerate(zip(unit.lines, unit.items)):
        out.extend((n, piece, item) for piece in cut(line, 0))
    return out


def _split_unit(
    unit: _Unit, max_chars: int, warnings: list[str], repeats: dict[str, str] | None = None
) -> list[tuple[str, str | None, list[str | None], bool]]:
    """Pack an oversize unit's sentences into pieces: (text, label, items in the piece, holds the unit's lead).

    ``repeats`` maps a table's row lines to its caption and header (:attr:`TableLines.repeat`): a piece that
    starts on such a row begins with them, so a long table split between chunks keeps its header."""
    pieces: list[tuple[str, str | None, list[str | None], bool]] = []
    text, items, lead, last_line = "", [], False, -1
    repeats = repeats or {}
    for n, seg, item in _segments(unit, max_chars, warnings):
        sep = "" if n == last_line else "\n"
        if text and len(text) + len(sep) + len(seg) > max_chars:
            pieces.append((text, unit.label, items, lead))
            text, items, lead, sep = "", [], False, ""
            head = repeats.get(unit.lines[n], "") if seg == unit.lines[n] else ""
            if head and len(head) + 1 + len(seg) <= max_chars:
                text = head + "\n"
        text += (sep if text and not text.endswith("\n") else "") + seg
        items.append(item)
        lead = lead or item is None
        last_line = n
    if text:
        pieces.append((text, unit.label, items, lead))
    return pieces


def _piece_locator(label: str | None, items: list[str | None], lead: bool) -> str | None:
    named = [it for it in items if it]
    if label is None or lead or not named:
        return label
    first, last = f"{label}{named[0]}", f"{label}{named[-1]}"
    return first if first == last else f"{first}–{last}"


def _goes_back(labels: list[str | None], label: str | None) -> bool:
    """Would adding ``label`` after ``labels`` make the range run backwards (a lower number of the same kind)?"""
    last = next((lab for lab in reversed(labels) if lab), None)
    a, b = (label_key(label) if label else None), (label_key(last) if last else None)
    return bool(a and b and a[0] == b[0] and a < b)


def _locator(labels: list[str | None], heading: str) -> str:
    named = [lab for lab in labels if lab]
    if not named:
        return heading.rsplit(" / ", 1)[-1] if heading else FRONT
    return named[0] if named[0] == named[-1] else f"{named[0]}–{named[-1]}"


UNCERTAIN = "（OCR条号存疑）"  # after a locator's label that OCR may have misread (see suspect_headings)
_STEP = 3  # consecutive article headings differ by 1; up to 3 allows one or two headings OCR did not see


def suspect_headings(doc: Document) -> list[dict[str, str]]:
    """Article headings (``第X条`` opening a line, not a cross-reference) of an OCR'd document whose number
    breaks the numbering order (``第二十条``, ``第十条``, ``第二十二条``: OCR read ``第二十一条`` as ``第十条``).

    A heading is suspect when (a) it is not on the longest run of headings that advance in order (between two
    headings ``k`` apart the number grows by ``k`` to ``_STEP × k``: a heading or two OCR did not see is allowed)
    and (b) its step from each neighbouring heading is not an advance of 1 to ``_STEP``. A ``第一条`` starts the
    numbering anew (two regulations in one file). Only headings on OCR'd lines are judged (all headings give the
    order); ``[]`` for a document with no OCR'd text: text layers are trusted as printed.

    Returns ``[{"label", "text" (the heading line), "why"}]`` in document order."""
    if not doc.ocr:
        return []
    heads = []
    for line in rejoin_wrapped_quantities(doc.text.split("\n")):
        folded = fold_width(line)
        m = ARTICLE.match(folded)
        n = _cn_int(m.group(1)) if m and not REFERENCE.match(folded, m.end()) else None
        if n is not None:
            heads.append((n, f"第{m.group(1)}条", line))
    on_run: set[int] = set()
    starts = [k for k, h in enumerate(heads) if h[0] == 1 or k == 0] + [len(heads)]
    for lo, hi in itertools.pairwise(starts):
        best: dict[int, tuple[int, int | None]] = {}  # index -> (run length ending here, previous index)
        for i in range(lo, hi):
            best[i] = (1, None)
            for j in range(max(lo, i - 5), i):
                if i - j <= heads[i][0] - heads[j][0] <= _STEP * (i - j) and best[j][0] + 1 > best[i][0]:
                    best[i] = (best[j][0] + 1, j)
        k: int | None = max(best, key=lambda i: (best[i][0], -i)) if best else None
        while k is not None:
            on_run.add(k)
            k = best[k][1]
    scanned = [line for line, conf in zip(doc.text.split("\n"), doc.confidence) if conf is not None]
    out = []
    for k, (n, label, line) in enumerate(heads):
        if doc.confidence and not any(s.startswith(line[:20]) or line.startswith(s[:20]) for s in scanned):
            continue  # a heading from a text layer of a partly scanned file: printed, not recognised
        steps = ([(n - heads[k - 1][0], f"after {heads[k - 1][1]}")] if k else []) + \
                ([(heads[k + 1][0] - n, f"before {heads[k + 1][1]}")] if k + 1 < len(heads) else [])
        if k not in on_run and all(not 1 <= step <= _STEP for step, _ in steps):
            out.append({"label": label, "text": line, "why": ", ".join(where for _, where in steps)})
    return out


def _mark_uncertain(locator: str, text: str, suspects: list[dict[str, str]]) -> str:
    """``locator`` with :data:`UNCERTAIN` after each suspect label it names whose heading line ``text`` holds;
    after the whole locator when the suspect heading was not taken as a label (its text sits in this chunk)."""
    for h in suspects:
        if h["text"][:30] not in text:
            continue
        marked = re.sub(rf"{re.escape(h['label'])}(?![（(]OCR)", h["label"] + UNCERTAIN, locator)
        if marked == locator and UNCERTAIN not in locator:
            marked = locator + UNCERTAIN
        locator = marked
    return locator


def split_into_chunks(doc: Document, max_chars: int = 1500) -> list[Chunk]:
    """Cut ``doc`` into chunks that follow its structure.

    Neighbouring units are merged up to ``max_chars``; a chapter-rank heading always starts a new
    chunk, and so does a change of a standard's top-level section (``4.x`` → ``5.x``); an oversize
    unit is split at sentence boundaries, a table in it between rows (a row line is cut only when it alone
    exceeds ``max_chars``), each piece that starts inside the table beginning with the table's caption and
    header again. The chunks' texts, joined, hold every non-whitespace character of ``doc.text`` in order
    (nothing dropped; duplicated only the repeated table headers).

    In an OCR'd document, a label whose article number breaks the numbering order (:func:`suspect_headings`)
    is marked :data:`UNCERTAIN` in the locator (``第十条（OCR条号存疑）``), so questions and citations made from
    the chunk say so.

    Returns chunks in document order, each with ``chars <= max_chars``. Ids are content hashes,
    stable across runs for the same input. A run of text with no punctuation longer than
    ``max_chars`` is cut hard and reported in ``doc.warnings``.
    """
    groups: list[tuple[list[str], list[str | None], list[str]]] = []  # (texts, labels, headings)
    repeats = {row: t.repeat for t in doc.tables for row in t.rows if t.repeat}
    size = 0
    prev_top: str | None = None
    for unit in parse_units(doc):
        text = unit.text
        top = unit.label.split(".")[0] if unit.label and not unit.label.startswith("第") else None
        new_section = top is not None and prev_top is not None and top != prev_top  # 4.x -> 5.x
        prev_top = top or prev_top
        if len(text) > max_chars:
            for piece, label, items, lead in _split_unit(unit, max_chars, doc.warnings, repeats):
                groups.append(([piece], [_piece_locator(label, items, lead)], [unit.heading]))
            size = max_chars + 1  # nothing merges into a split article
            continue
        front = bool(groups) and not any(groups[-1][1]) and not any(groups[-1][2])  # title, preamble
        restart = bool(groups) and _goes_back(groups[-1][1], unit.label)  # numbering restarts: new chunk
        if groups and (front or not unit.breaks) and not new_section and not restart and size + 1 + len(text) <= max_chars:
            groups[-1][0].append(text)
            groups[-1][1].append(unit.label)
            groups[-1][2].append(unit.heading)
            size += 1 + len(text)
        else:
            groups.append(([text], [unit.label], [unit.heading]))
            size = len(text)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    suspects = suspect_headings(doc)
    for texts, labels, headings in groups:
        text = "\n".join(texts)
        heading = next((h for h, lab in zip(headings, labels) if lab), "") or next(filter(None, headings), "")
        locator = _locator(labels, heading)
        if suspects:
            locator = _mark_uncertain(locator, text, suspects)
        digest = hashlib.sha1(f"{doc.source}\n{locator}\n{text}".encode()).hexdigest()[:16]
        cid, k = digest, 1
        while cid in seen:
            k += 1
            cid = f"{digest}-{k}"
        seen.add(cid)
        chunks.append(Chunk(cid, doc.source, doc.title, locator, text, len(text), heading))
    if doc.confidence:
        _mark_ocr(doc, chunks, repeats)
    return chunks


def _mark_ocr(doc: Document, chunks: list[Chunk], repeats: dict[str, str]) -> None:
    """Set ``ocr``/``ocr_confidence`` of each chunk from the confidences of the document lines it holds, found
    by position in the document's non-whitespace characters (which the chunks hold in order; a repeated table
    header is not counted)."""
    spans, total = [], 0  # (start, end offset, confidence) per OCR'd document line
    for line, conf in zip(doc.text.split("\n"), doc.confidence):
        n = sum(1 for ch in line if not ch.isspace())
        if conf is not None:
            spans.append((total, total + n, conf))
        total += n
    heads = set(repeats.values())
    pos = 0
    for c in chunks:
        text = c.text
        for head in heads:
            if pos > 0 and text.startswith(head + "\n"):
                text = text[len(head) + 1 :]
                break
        n = sum(1 for ch in text if not ch.isspace())
        confs = [conf for a, b, conf in spans if a < pos + n and b > pos]
        if confs:
            c.ocr, c.ocr_confidence = True, round(min(confs), 4)
        pos += n
