"""Layouts as mines have them (issue 23): hard-wrapped lines that start with a quantity, tables that keep their
meaning (docx and PDF, merged cells, a table across pages, long tables split between rows) and bad PDFs. Every
fixture is made here."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalqa.corpus import Document, clean_text, read_document, split_into_chunks
from coalqa.corpus.chunking import rejoin_wrapped_quantities
from coalqa.corpus.report import document_report
from coalqa.numbers import starts_with_quantity

FONT = "STSong-Light"


def doc_of(text: str, source: str = "law.txt") -> Document:
    return Document(source=source, path=Path(source), title="T", text=clean_text(text), raw_text=text)


def _canvas(path: Path, pagesize=(420, 595)):
    pytest.importorskip("reportlab")
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return canvas.Canvas(str(path), pagesize=pagesize)


# ---------------------------------------------------------------- wrapped lines that start with a quantity


@pytest.mark.parametrize("line", ["2.2m。", "10m³/min的风量", "30%，", "24h内", "0.5％以下", "4m/S，"])
def test_lines_opening_with_a_quantity_are_recognised(line: str) -> None:
    assert starts_with_quantity(line)


@pytest.mark.parametrize("line", ["6.2.1 主要通风机", "1、", "1.", "1）", "2 安全要求", "9输浆管路。", "第十条", "4.3.1.1A级"])
def test_clause_and_list_numbers_are_not_quantities(line: str) -> None:
    assert not starts_with_quantity(line)


def test_wrapped_quantity_rejoins_and_no_locator_mixes_articles_with_decimals() -> None:
    text = ("第十八条巷道应当有足够的断面。\n"
            "第十九条主要运输巷道净高不得低于\n2.2m。采区巷道风量不得低于\n10m³/min，瓦斯浓度低于\n"
            "1.0%，检查应在\n24h内完成。\n"
            "第二十条斜巷内每隔30m应当设置躲避硐。")
    doc = doc_of(text)
    chunks = split_into_chunks(doc, max_chars=80)
    assert [c.locator for c in chunks] == ["第十八条–第十九条", "第二十条"]  # no 第十九条–2.2, no 1.0
    assert chunks[0].text.split("\n")[1] == ("第十九条主要运输巷道净高不得低于2.2m。采区巷道风量不得低于10m³/min，"
                                             "瓦斯浓度低于1.0%，检查应在24h内完成。")
    assert not document_report(doc, chunks)["warnings"]


def test_a_lone_decimal_line_between_articles_does_not_switch_the_numbering() -> None:
    # "2.2 倍" after a sentence end: not a continuation by punctuation, but a lone decimal number between two
    # articles is never a clause of its own (no 第十九条–2.2)
    text = "第十九条提升容器的安全系数：\n2.2 倍于最大静载荷时仍应安全。\n第二十条斜巷内每隔30m应当设置躲避硐。"
    chunks = split_into_chunks(doc_of(text), max_chars=40)
    assert [c.locator for c in chunks] == ["第十九条", "第二十条"]
    # a run of decimal clauses inside an article document stays clauses (1.1 then 1.2)
    text = "第一条总则。\n1.1 风速不得超过4m/s。\n1.2 瓦斯浓度不得超过1%。\n第二条附则。"
    locators = [c.locator for c in split_into_chunks(doc_of(text), max_chars=20)]
    assert "1.1" in locators and "1.2" in locators and all("第" not in x or "–" not in x for x in locators)


def test_rejoin_keeps_sentence_ends_and_list_markers() -> None:
    lines = ["风速不得低于", "0.25m/s。", "1、检查风门；", "2、检查风筒。", "10kV及以下线路不得共杆。"]
    assert rejoin_wrapped_quantities(lines) == ["风速不得低于0.25m/s。", "1、检查风门；", "2、检查风筒。",
                                                 "10kV及以下线路不得共杆。"]


WRAPPED = [
    "第十八条主要运输巷道应当有足够的断面，其净宽应当满足设备运输的要求。",
    "第十九条主要运输巷道和主要风巷的净高，自轨面起不得低于2.2m。采区内的上山、下山和平巷的净高不得低于2m。",
    "第二十条采煤工作面的风速不得低于0.25m/s，瓦斯浓度达到1.0%时，必须停止作业，在24h内查明原因。",
]


def _layout(paragraphs: list[str], width: float, size: float) -> list[str]:
    """Wrap like a layout engine: a number with its unit is one unbreakable word (moved to the next line whole)."""
    import re

    from reportlab.pdfbase.pdfmetrics import stringWidth

    lines = []
    for para in paragraphs:
        line = ""
        for word in re.findall(r"\d+(?:\.\d+)?(?:m/s|m|%|h)?[。，]?|.", para):
            if stringWidth(line + word, FONT, size) > width:
                lines.append(line)
                line = ""
            line += word
        lines.append(line)
    return lines


def test_hard_wrapped_pdf_rejoins_a_line_that_starts_with_a_quantity(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pdf"
    c = _canvas(path)
    size, width = 12, 324  # 27 characters: "…自轨面起不得低于" fills a line
    lines = _layout(WRAPPED, width, size)
    assert any(line.startswith("2.2m。") for line in lines), lines  # the case: a wrap right before a quantity
    for k, line in enumerate(lines):
        c.setFont(FONT, size)
        c.drawString(50, 540 - 20 * k, line)  # no indentation anywhere
    c.save()
    doc = read_document(path)
    assert doc.text.split("\n") == WRAPPED
    chunks = split_into_chunks(doc, max_chars=80)
    assert [ch.locator for ch in chunks] == ["第十八条", "第十九条", "第二十条"]
    assert "不得低于2.2m。" in chunks[1].text
    report = document_report(doc, chunks)
    assert report["numbers_missing_count"] == 0 and not report["warnings"]


# ---------------------------------------------------------------- tables

AIR = [["巷道名称", "最低风速（m/s）", "最高风速（m/s）"],
       ["采煤工作面", "0.25", "4.00"],
       ["主要进回风巷", "", "8"],  # 最高 8 merged down over the next row; 最低 empty
       ["架线电机车巷道", "1.00", None],  # None: covered by the merged cell above
       ["其他通风人行巷道", "0.15", "6"]]
AIR_ROWS = ["表5.1.2 巷道名称：采煤工作面；最低风速（m/s）：0.25；最高风速（m/s）：4.00",
            "表5.1.2 巷道名称：主要进回风巷；最高风速（m/s）：8",
            "表5.1.2 巷道名称：架线电机车巷道；最低风速（m/s）：1.00；最高风速（m/s）：8",
            "表5.1.2 巷道名称：其他通风人行巷道；最低风速（m/s）：0.15；最高风速（m/s）：6"]


def test_docx_table_rows_name_their_columns_and_repeat_a_merged_cell(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_paragraph("第一条井巷中的风流速度应当符合表5.1.2的要求。")
    d.add_paragraph("表5.1.2 井巷中的允许风流速度")
    t = d.add_table(rows=len(AIR), cols=3)
    for r, row in enumerate(AIR):
        for c, v in enumerate(row):
            t.cell(r, c).text = v or ""
    t.cell(2, 2).merge(t.cell(3, 2))  # w:vMerge restart / continue
    d.add_paragraph("第二条表后条文。")
    path = tmp_path / "air.docx"
    d.save(str(path))
    doc = read_document(path)
    assert doc.text.split("\n") == ["第一条井巷中的风流速度应当符合表5.1.2的要求。", "表5.1.2 井巷中的允许风流速度",
                                    "巷道名称 | 最低风速（m/s） | 最高风速（m/s）", *AIR_ROWS, "第二条表后条文。"]
    chunks = split_into_chunks(doc)
    report = document_report(doc, chunks)
    assert report["tables"] == 1 and report["table_cells"] == 13  # 15 positions: the merged cell once, one empty
    assert report["table_numbers"] == report["table_numbers_kept"] == 6 and not report["warnings"]


def _ruled_table(c, x: list[float], top: float, h: float, rows: list[list[str | None]], size: float = 9) -> float:
    """Draw a ruled table (reportlab, y up) with its top at ``top``; a ``None`` cell is covered by the cell above
    (no rule between them). Returns the y of its bottom."""
    n = len(rows)
    for k in range(n + 1):  # horizontal rules, left out under a cell merged down
        y = top - k * h
        for j in range(len(x) - 1):
            if 0 < k < n and rows[k][j] is None:
                continue
            c.line(x[j], y, x[j + 1], y)
    for xx in x:
        c.line(xx, top, xx, top - n * h)
    c.setFont(FONT, size)
    for r, row in enumerate(rows):
        for j, text in enumerate(row):
            if not text:
                continue
            span = 1
            while r + span < n and rows[r + span][j] is None:
                span += 1
            c.drawString(x[j] + 3, top - r * h - (span * h) / 2 - size / 3, text)
    return top - n * h


def test_pdf_table_rows_name_their_columns_and_repeat_a_merged_cell(tmp_path: Path) -> None:
    path = tmp_path / "air.pdf"
    c = _canvas(path)
    c.setFont(FONT, 11)
    c.drawString(40, 540, "第一条井巷中的风流速度应当符合表5.1.2的要求。")
    c.drawString(40, 515, "表5.1.2 井巷中的允许风流速度")
    bottom = _ruled_table(c, [40, 160, 270, 380], 505, 20, AIR)
    c.setFont(FONT, 11)
    c.drawString(40, bottom - 25, "第二条表后条文。")
    c.save()
    doc = read_document(path)
    assert doc.text.split("\n") == ["第一条井巷中的风流速度应当符合表5.1.2的要求。", "表5.1.2 井巷中的允许风流速度",
                                    "巷道名称 | 最低风速（m/s） | 最高风速（m/s）", *AIR_ROWS, "第二条表后条文。"]
    chunks = split_into_chunks(doc)
    assert [ch.locator for ch in chunks] == ["第一条–第二条"]
    report = document_report(doc, chunks)
    assert report["tables"] == 1 and report["table_numbers"] == report["table_numbers_kept"] == 6
    assert not report["warnings"]


GAS = [["地点", "瓦斯浓度（%）", "处置"]] + [[f"{k}号回风巷", f"{k / 10:.1f}", "停止作业"] for k in range(1, 9)]


def test_pdf_table_across_two_pages_is_one_table_header_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "gas.pdf"
    c = _canvas(path)
    c.setFont(FONT, 11)
    c.drawString(40, 540, "第三条回风流中瓦斯浓度超限时按表3处置。")
    c.drawString(40, 515, "表3 瓦斯浓度与处置")
    _ruled_table(c, [40, 160, 270, 380], 505, 20, GAS[:5])  # header + 4 rows on page 1
    c.showPage()
    c.setFont(FONT, 11)
    c.drawString(40, 560, "续表3")
    bottom = _ruled_table(c, [40, 160, 270, 380], 550, 20, [GAS[0]] + GAS[5:])  # header repeated + 4 rows
    c.setFont(FONT, 11)
    c.drawString(40, bottom - 25, "第四条表后条文。")
    c.save()
    doc = read_document(path)
    rows = [line for line in doc.text.split("\n") if line.startswith("表3 地点：")]
    assert rows == [f"表3 地点：{k}号回风巷；瓦斯浓度（%）：{k / 10:.1f}；处置：停止作业" for k in range(1, 9)]
    assert len(doc.tables) == 1 and doc.text.count("地点 | 瓦斯浓度（%） | 处置") == 1
    assert "续表3" in doc.text  # the continuation caption is kept as text
    assert doc.tables[0].repeat == "表3 瓦斯浓度与处置\n地点 | 瓦斯浓度（%） | 处置"
    report = document_report(doc, split_into_chunks(doc))
    assert report["table_numbers"] == report["table_numbers_kept"] and not report["warnings"]


def test_long_table_is_split_between_rows_with_its_header_repeated() -> None:
    from coalqa.corpus.tables import Cell, table_lines

    grid = [[Cell(t, (r, c)) for c, t in enumerate(row)] for r, row in enumerate(GAS)]
    t = table_lines(grid, "表3", "表3 瓦斯浓度与处置")
    doc = doc_of("\n".join(["第三条回风流中瓦斯浓度超限时按表3处置。", "表3 瓦斯浓度与处置", *t.lines]))
    doc.tables = [t]
    chunks = split_into_chunks(doc, max_chars=160)
    assert len(chunks) >= 3
    for ch in chunks[1:]:
        assert ch.text.startswith("表3 瓦斯浓度与处置\n地点 | 瓦斯浓度（%） | 处置\n")  # header repeated on top
    body = [line for ch in chunks for line in ch.text.split("\n") if line.startswith("表3 地点")]
    assert body == t.rows  # every row whole, once, in order
