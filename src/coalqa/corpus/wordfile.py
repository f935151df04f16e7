"""Read a Word .docx the way Word displays it: every visible run, numbering rendered, deleted text left out.

python-docx opens the package and parses the XML (lxml); the text is then read from the XML directly,
because ``paragraph.text`` skips runs nested in tracked insertions (``w:ins``), fields (``w:fldSimple``),
content controls (``w:sdt``), smart tags and other wrappers, and never shows automatic list numbering.

* Text: every ``w:t`` under a paragraph, whatever wraps it, except inside deleted content (``w:del``,
  ``w:moveFrom``), field codes (``w:instrText``) and the fallback copy of drawings (``mc:Fallback``);
  ``w:tab`` is a space and ``w:br``/``w:cr`` a line break.
* Blocks: paragraphs and tables in body order, also inside block-level content controls and custom XML.
  A table becomes a header line and one line per row naming its columns (:mod:`coalqa.corpus.tables`:
  ``w:vMerge`` cells repeated into every row they span, ``w:gridSpan`` cells under the columns they span,
  the number of a ``表5.1.2 …`` caption just above it on each row); nested tables follow their table.
* Numbering (``numbering.xml``, ECMA-376 Part 1 §17.9): a paragraph's ``w:numPr`` (or its style's) picks a
  list and level; the level's ``w:lvlText`` (``第%1条``, ``%1.%2``) is filled with the counters of the
  list's levels in their ``w:numFmt`` (decimal, chineseCounting 一…十一, chineseLegalSimplified 壹,
  ideographTraditional 甲, letters, roman, circled…), followed by a space unless ``w:suff`` is nothing.
  Lists sharing an abstract numbering continue each other; ``w:startOverride`` restarts one; a level
  restarts after any higher level is used (unless ``w:lvlRestart`` is 0). Bullets are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from coalqa.corpus.tables import Cell, TableLines, caption_label, table_lines

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_SKIP = {f"{{{W}}}{t}" for t in ("del", "moveFrom", "instrText", "delInstrText", "delText", "pPr", "rPr",
                                  "sdtPr", "sdtEndPr", "fldData")} | {MC_FALLBACK}
_CN_DIGITS = "零一二三四五六七八九"
_LEGAL_DIGITS = "零壹贰叁肆伍陆柒捌玖"


def _w(tag: str) -> str:
    return f"{{{W}}}{tag}"


def _val(el, tag: str, default: str | None = None) -> str | None:
    child = el.find(_w(tag)) if el is not None else None
    return child.get(_w("val"), default) if child is not None else default


def _cn_counting(n: int, digits: str = _CN_DIGITS, units: str = "十百千") -> str:
    """1 → 一, 10 → 十, 11 → 十一, 21 → 二十一, 101 → 一百零一, 110 → 一百一十 (Word's Chinese counting)."""
    if n <= 0:
        return digits[0]
    if n >= 10000:
        return str(n)
    parts, zero, started = [], False, False
    for power, unit in ((1000, units[2]), (100, units[1]), (10, units[0]), (1, "")):
        d = n // power % 10
        if d:
            if zero and started:
                parts.append(digits[0])
            parts.append(("" if (power == 10 and d == 1 and not started) else digits[d]) + unit)
            started, zero = True, False
        elif started:
            zero = True
    return "".join(parts)


def _letters(n: int, upper: bool) -> str:
    letter = chr(ord("A" if upper else "a") + (n - 1) % 26)
    return letter * ((n - 1) // 26 + 1)  # Word: A…Z, AA…ZZ


def _roman(n: int) -> str:
    out = ""
    for value, sym in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
                       (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out, n = out + sym, n - value
    return out


def format_number(n: int, fmt: str) -> str:
    """Counter ``n`` written in Word's ``w:numFmt`` ``fmt``; unknown formats fall back to decimal."""
    if fmt in ("chineseCounting", "chineseCountingThousand", "japaneseCounting", "taiwaneseCounting",
               "taiwaneseCountingThousand", "japaneseLegal"):
        return _cn_counting(n)
    if fmt == "chineseLegalSimplified":
        return _cn_counting(n, _LEGAL_DIGITS, "拾佰仟")
    if fmt in ("ideographDigital", "taiwaneseDigital", "japaneseDigitalTenThousand"):
        return "".join("〇一二三四五六七八九"[int(d)] for d in str(n))
    if fmt == "ideographTraditional" and 1 <= n <= 10:
        return "甲乙丙丁戊己庚辛壬癸"[n - 1]
    if fmt == "ideographZodiac" and 1 <= n <= 12:
        return "子丑寅卯辰巳午未申酉戌亥"[n - 1]
    if fmt in ("upperLetter", "lowerLetter"):
        return _letters(n, fmt == "upperLetter")
    if fmt in ("upperRoman", "lowerRoman"):
        return _roman(n) if fmt == "upperRoman" else _roman(n).lower()
    if fmt in ("decimalEnclosedCircle", "decimalEnclosedCircleChinese") and 1 <= n <= 20:
        return chr(0x2460 + n - 1)
    if fmt == "decimalEnclosedParen" and 1 <= n <= 20:
        return chr(0x2474 + n - 1)
    if fmt == "decimalEnclosedFullstop" and 1 <= n <= 20:
        return chr(0x2488 + n - 1)
    if fmt in ("decimalFullWidth", "decimalFullWidth2"):
        return "".join(chr(0xFF10 + int(d)) for d in str(n))
    if fmt == "decimalZero":
        return f"{n:02d}"
    return str(n)


@dataclass
class _Level:
    start: int = 1
    fmt: str = "decimal"
    text: str = ""
    suffix: str = " "
    legal: bool = False  # w:isLgl: every level written in decimal
    restart: bool = True


@dataclass
class Numbering:
    """Lists of one document (``numbering.xml``) and their running counters; see the module docstring."""

    abstract: dict[str, dict[int, _Level]] = field(default_factory=dict)
    nums: dict[str, tuple[str, dict[int, int]]] = field(default_factory=dict)  # numId -> (abstractId, start overrides)
    style_num: dict[str, tuple[str | None, int | None]] = field(default_factory=dict)  # styleId -> (numId, ilvl)
    style_level: dict[tuple[str, str], int] = field(default_factory=dict)  # (abstractId, styleId) -> ilvl
    counters: dict[str, dict[int, int]] = field(default_factory=dict)  # abstractId -> level -> counter
    used: set[str] = field(default_factory=set)  # numIds seen (their overrides applied)

    @classmethod
    def from_document(cls, document) -> Numbering:
        """Build from an opened python-docx ``Document`` (no numbering part: no lists)."""
        out = cls()
        try:
            root = document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):
            root = None
        if root is not None:
            for ab in root.findall(_w("abstractNum")):
                aid = ab.get(_w("abstractNumId"))
                levels = out.abstract.setdefault(aid, {})
                for lvl in ab.findall(_w("lvl")):
                    ilvl = int(lvl.get(_w("ilvl"), "0"))
                    levels[ilvl] = _parse_level(lvl)
                    style = _val(lvl, "pStyle")
                    if style:
                        out.style_level[(aid, style)] = ilvl
            for num in root.findall(_w("num")):
                overrides = {}
                for ov in num.findall(_w("lvlOverride")):
                    start = _val(ov, "startOverride")
                    if start is not None:
                        overrides[int(ov.get(_w("ilvl"), "0"))] = int(start)
                out.nums[num.get(_w("numId"))] = (_val(num, "abstractNumId"), overrides)
        styles = document.styles.element
        based: dict[str, str] = {}
        for st in styles.findall(_w("style")):
            sid = st.get(_w("styleId"))
            parent = _val(st, "basedOn")
            if parent:
                based[sid] = parent
            num_pr = st.find(f"{_w('pPr')}/{_w('numPr')}")
            if num_pr is not None:
                ilvl = _val(num_pr, "ilvl")
                out.style_num[sid] = (_val(num_pr, "numId"), int(ilvl) if ilvl is not None else None)
        for sid in list(based):  # inherit list membership through basedOn
            seen, cur = set(), sid
            while cur not in out.style_num and cur in based and cur not in seen:
                seen.add(cur)
                cur = based[cur]
            if cur in out.style_num and sid not in out.style_num:
                out.style_num[sid] = out.style_num[cur]
        return out

    def label(self, p) -> str:
        """The number Word shows before paragraph element ``p`` (advancing the counters), or ``""``."""
        ppr = p.find(_w("pPr"))
        num_pr = ppr.find(_w("numPr")) if ppr is not None else None
        style = _val(ppr, "pStyle")
        num_id = _val(num_pr, "numId") if num_pr is not None else None
        ilvl_s = _val(num_pr, "ilvl") if num_pr is not None else None
        if num_id is None and style in self.style_num:
            num_id, style_ilvl = self.style_num[style]
            ilvl_s = ilvl_s if ilvl_s is not None else (None if style_ilvl is None else str(style_ilvl))
        if not num_id or num_id == "0" or num_id not in self.nums:
            return ""
        aid, overrides = self.nums[num_id]
        levels = self.abstract.get(aid or "", {})
        ilvl = int(ilvl_s) if ilvl_s is not None else self.style_level.get((aid, style or ""), 0)
        if ilvl not in levels:
            return ""
        counters = self.counters.setdefault(aid, {})
        if num_id not in self.used:
            self.used.add(num_id)
            for lv, start in overrides.items():
                counters[lv] = start - 1
        level = levels[ilvl]
        counters[ilvl] = counters[ilvl] + 1 if ilvl in counters else level.start
        for deeper in [lv for lv in counters if lv > ilvl]:
            if levels.get(deeper, _Level()).restart:
                del counters[deeper]
        if level.fmt in ("bullet", "none") or not level.text:
            return ""

        def fill(m: re.Match[str]) -> str:
            k = int(m.group(1)) - 1
            lv = levels.get(k, _Level())
            n = counters.get(k, lv.start)
            return format_number(n, "decimal" if level.legal and k < ilvl else lv.fmt)

        return re.sub(r"%([1-9])", fill, level.text) + level.suffix


def _parse_level(lvl) -> _Level:
    suffix = {"nothing": "", "space": " ", "tab": " "}.get(_val(lvl, "suff", "tab") or "tab", " ")
    restart = _val(lvl, "lvlRestart")
    return _Level(
        start=int(_val(lvl, "start", "1") or 1),
        fmt=_val(lvl, "numFmt", "decimal") or "decimal",
        text=_val(lvl, "lvlText", "") or "",
        suffix=suffix,
        legal=lvl.find(_w("isLgl")) is not None,
        restart=restart != "0",
    )


def run_text(el) -> str:
    """Displayed text under ``el`` (a paragraph or any run wrapper), per the module docstring."""
    out: list[str] = []

    def walk(node) -> None:
        for child in node:
            tag = child.tag
            if not isinstance(tag, str) or tag in _SKIP:
                continue
            if tag == _w("t"):
                out.append(child.text or "")
            elif tag in (_w("tab"), _w("ptab")):
                out.append(" ")
            elif tag in (_w("br"), _w("cr")):
                out.append("\n")
            elif tag == _w("noBreakHyphen"):
                out.append("-")
            elif tag == _w("p"):  # a text box's paragraph inside a run
                out.append("\n")
                walk(child)
                out.append("\n")
            else:
                walk(child)

    walk(el)
    return "".join(out)


def docx_lines(path: Path) -> tuple[list[str], str, dict[str, int], str, list[TableLines]]:
    """Lines of a .docx in document order; returns ``(lines, title, heading texts -> level, raw text, tables)``.

    ``title`` is the core-properties title (else the first ``Title``-styled paragraph); headings are
    paragraphs styled ``Heading N``/``标题 N``. ``raw text`` is every displayed ``w:t`` of the body, one
    paragraph per line, without numbering: what the fidelity report counts numbers in.
    """
    import docx

    d = docx.Document(str(path))
    numbering = Numbering.from_document(d)
    styles = {s.style_id: s.name for s in d.styles if getattr(s, "style_id", None)}
    lines: list[str] = []
    tables: list[TableLines] = []
    headings: dict[str, int] = {}
    title = (d.core_properties.title or "").strip()

    def paragraph(p) -> None:
        nonlocal title
        text = run_text(p).strip()
        label = numbering.label(p)
        if not text:
            return
        text = (label + text) if label else text
        style = styles.get(_val(p.find(_w("pPr")), "pStyle") or "", "") or ""
        if style == "Title" and not title:
            title = text
        level = re.fullmatch(r"(?:Heading|heading|标题)\s*(\d)", style)
        if level:
            headings[" ".join(text.split())] = int(level.group(1))
        lines.append(text)

    def cell_paragraphs(parent):
        for child in parent:
            if child.tag == _w("p"):
                yield child
            elif child.tag in (_w("sdt"), _w("customXml"), _w("sdtContent")):
                yield from cell_paragraphs(child)

    def table(tbl) -> None:
        grid, marked, inner = _grid(tbl, cell_paragraphs)
        caption = lines[-1] if lines and caption_label(lines[-1]) else ""
        t = table_lines(grid, caption_label(caption) if caption else None, caption, marked)
        tables.append(t)
        lines.extend(t.lines)
        for t2 in inner:
            table(t2)

    def blocks(parent) -> None:
        for child in parent:
            if child.tag == _w("p"):
                paragraph(child)
            elif child.tag == _w("tbl"):
                table(child)
            elif child.tag in (_w("sdt"), _w("customXml"), _w("sdtContent"), _w("ins"), _w("moveTo")):
                blocks(child)

    blocks(d.element.body)
    return lines, title, headings, shown_text(d.element.body), tables


def _grid(tbl, cell_paragraphs) -> tuple[list[list[Cell]], int, list]:
    """``(grid, header rows marked w:tblHeader, nested tables)`` of ``w:tbl`` element ``tbl``: one
    :class:`~coalqa.corpus.tables.Cell` per row and grid column; a ``w:gridSpan`` cell fills the columns it
    spans (one origin), a ``w:vMerge`` continuation takes the text and origin of the cell above it."""
    grid: list[list[Cell]] = []
    inner: list = []
    marked, counting = 0, True
    for tr in tbl.iter(_w("tr")):
        if _owner_table(tr) is not tbl:
            continue
        r = len(grid)
        trpr = tr.find(_w("trPr"))
        header = trpr is not None and trpr.find(_w("tblHeader")) is not None and \
            (_val(trpr, "tblHeader", "true") or "true") not in ("0", "false")
        marked, counting = (marked + 1, True) if header and counting else (marked, False)
        row: list[Cell] = []
        before = int(_val(trpr, "gridBefore", "0") or 0) if trpr is not None else 0
        row.extend(Cell("", (r, k)) for k in range(before))
        for tc in tr.iter(_w("tc")):
            if _owner_table(tc) is not tbl:
                continue
            tcpr = tc.find(_w("tcPr"))
            span = int(_val(tcpr, "gridSpan", "1") or 1) if tcpr is not None else 1
            vmerge = tcpr.find(_w("vMerge")) if tcpr is not None else None
            text = " ".join(" ".join(run_text(p) for p in cell_paragraphs(tc)).split())
            c = len(row)
            if vmerge is not None and vmerge.get(_w("val"), "continue") == "continue" and r and c < len(grid[-1]):
                above = grid[-1][c]
                cell = Cell(above.text, above.origin)
            else:
                cell = Cell(text, (r, c))
            row.extend(Cell(cell.text, cell.origin) for _ in range(max(span, 1)))
            inner.extend(t2 for t2 in tc.iter(_w("tbl")) if _owner_table(t2.getparent()) is tbl)
        grid.append(row)
    width = max((len(row) for row in grid), default=0)
    for r, row in enumerate(grid):
        row.extend(Cell("", (r, k)) for k in range(len(row), width))
    return grid, marked, inner


def shown_text(body) -> str:
    """Every ``w:t`` of ``body`` outside deleted content, field codes and drawing fallbacks, one paragraph
    per line: a second, plain reading of the text (an XPath query, not the walk above) for the fidelity check."""
    from lxml import etree

    ns = {"w": W, "mc": MC_FALLBACK[1:].split("}")[0]}
    query = etree.XPath(
        ".//w:t[not(ancestor::w:del) and not(ancestor::w:moveFrom) and not(ancestor::mc:Fallback)]", namespaces=ns
    )
    texts = query(body)
    tree = body.getroottree()
    paragraphs: dict[str, list[str]] = {}
    order: list[str] = []
    for t in texts:
        p = next((a for a in t.iterancestors() if a.tag == _w("p")), None)
        key = tree.getpath(p) if p is not None else ""
        if key not in paragraphs:
            paragraphs[key] = []
            order.append(key)
        paragraphs[key].append(t.text or "")
    return "\n".join("".join(paragraphs[k]) for k in order)


def _owner_table(el):
    """The nearest ``w:tbl`` above ``el`` (``el`` itself when it is one)."""
    while el is not None and el.tag != _w("tbl"):
        el = el.getparent()
    return el
