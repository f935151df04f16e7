"""Tables as lines that keep their meaning: every row names its columns.

A table read from a .docx (``w:tbl``) or found on a PDF page (pdfplumber's table finder) arrives here as a
grid, one :class:`Cell` per row and grid column, and leaves as lines of text:

* a **header line**, the column names joined by `` | `` (``巷道名称 | 最低风速（m/s） | 最高风速（m/s）``);
* one **row line** per body row that names each value's column, prefixed with the table's number when its
  caption gives one: ``表5.1.2 巷道名称：采煤工作面；最低风速（m/s）：0.25；最高风速（m/s）：4.00``.

Merged cells: a cell merged down several rows (docx ``w:vMerge``, a PDF cell spanning rows) is repeated in
every row it spans, so no value moves into its neighbour's column; a cell merged across columns (``w:gridSpan``)
is written once under the names of the columns it spans (``要求、备注：…``). Header rows: the rows marked as
repeating headers (docx ``w:tblHeader``), else the first row, plus the second when the first has a cell merged
across columns and one merged down (a two-level header: ``风速（m/s）·最低``). Empty cells are left out of a row
line. A table of one row or one column has no header to name: its rows are written with cells joined by
`` | `` (a merged cell once).

``TableLines.repeat`` is what a chunk that starts inside the table repeats on top (the caption and the header
line), so a long table split between chunks keeps its header; chunking never cuts inside a row line.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

# A table caption: "表5.1.2 巷道最低风速", "表 A.1", "续表3"; group 1: "续" for a continuation, group 2: the number.
CAPTION = re.compile(r"^\s*(续)?\s*表\s*([A-Z]?\d+(?:\s*[.．\-－—]\s*\d+)*)(?!\d)")


@dataclass
class Cell:
    """One grid position of a table: its text and the cell it belongs to (``origin``: the (row, column) where
    a merged cell starts; equal origins in a row mean one cell spanning columns)."""

    text: str
    origin: tuple[int, int]


@dataclass
class TableLines:
    """A table turned into lines: ``header`` (column names joined by `` | ``, ``""`` when none), ``rows``
    (one line per body row) and ``repeat`` (caption and header, for a chunk that starts inside the table);
    ``cells`` counts the non-empty cells of the source table (each merged cell once)."""

    header: str
    rows: list[str]
    repeat: str
    cells: int = 0
    cell_texts: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return ([self.header] if self.header else []) + self.rows


def caption_label(line: str) -> str | None:
    """``"表5.1.2 巷道最低风速"`` → ``"表5.1.2"``; ``None`` when ``line`` is not a table caption (or is too long
    to be one: a sentence that starts with 表)."""
    m = CAPTION.match(line)
    if not m or len(line) > 60:
        return None
    return "表" + re.sub(r"\s+", "", m.group(2))


def header_rows(grid: list[list[Cell]], marked: int = 0) -> int:
    """How many of ``grid``'s first rows are header rows (see the module docstring); ``marked``: rows the
    source marks as headers."""
    if marked:
        return marked
    if len(grid) < 3:
        return 1
    first, second = grid[0], grid[1]
    across = any(a.origin == b.origin for a, b in itertools.pairwise(first))
    down = any(a.origin == b.origin for a, b in zip(first, second))
    return 2 if across and down else 1


def _dedupe(parts: list[str]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p and (not out or out[-1] != p):
            out.append(p)
    return out


def table_lines(grid: list[list[Cell]], label: str | None = None, caption: str = "", marked_headers: int = 0) -> TableLines:
    """Lines of one table (see the module docstring).

    Args:
        grid: rows × grid columns of :class:`Cell` (every row as long as the widest; pad with ``Cell("", …)``).
        label: the table's number from its caption (``"表5.1.2"``), prefixed to each row line.
        caption: the caption line itself, repeated (with the header) on top of a chunk that starts in the table.
        marked_headers: number of leading rows the source marks as repeated headers (docx ``w:tblHeader``).
    """
    grid = [row for row in grid if any(c.text for c in row)]
    origins = {c.origin: c.text for row in grid for c in row if c.text}
    cell_texts = list(origins.values())
    width = max((len(r) for r in grid), default=0)
    if len(grid) < 2 or width < 2:
        rows = [" | ".join(_dedupe([c.text for c in row])) for row in grid]
        return TableLines("", [r for r in rows if r], caption, len(origins), cell_texts)
    n_head = min(header_rows(grid, marked_headers), len(grid) - 1)
    names = ["·".join(_dedupe([grid[r][c].text for r in range(n_head)])) for c in range(width)]
    header = " | ".join(_dedupe(names))
    prefix = f"{label} " if label else ""
    rows = []
    for row in grid[n_head:]:
        fields, c = [], 0
        while c < width:
            end = c + 1
            while end < width and row[end].origin == row[c].origin:
                end += 1
            value = row[c].text
            name = "、".join(_dedupe(names[c:end]))
            if value:
                fields.append(f"{name}：{value}" if name and name != value else value)
            c = end
        if fields:
            rows.append(prefix + "；".join(fields))
    repeat = "\n".join(x for x in (caption, header) if x)
    return TableLines(header, rows, repeat, len(origins), cell_texts)
